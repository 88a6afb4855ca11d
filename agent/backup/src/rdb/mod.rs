//! Redis RDB snapshots in the backup repository, as `dump` does for `pg_dump`.
//!
//! [`RdbJob::run`]: the snapshot is fetched from a replica over the replication
//! protocol (`warden_redis::rdb::fetch_rdb`, CRC-64 checked on the fly) and streamed
//! through a bounded in-memory pipe straight into sealed parts
//! (`<cluster>/rdb/<id>/dump.rdb.<n>`), nothing staged on disk. Then the parts are
//! read back, authenticated, decrypted and run through an `RdbVerifier`; only when
//! the CRC read back equals the one the fetch computed is the [`RdbRecord`] written
//! (last: the commit marker). A failed job deletes the parts it wrote; whatever a
//! crash leaves is an incomplete directory the prune removes after a day.
//!
//! - [`check`]: verify a committed snapshot, restore it into a new data directory.
//! - [`drill`]: restore into a scratch directory, start `redis-server` on it, check it,
//!   and record RTO and RPO.
//! - Retention: `prune` plans snapshots with the same rules as dumps.
//! - [`service`]: the agent's one-at-a-time snapshot runner behind the schedule and
//!   `POST /backup`; [`source`]: a Redis member's config turned into the catalog (the
//!   cluster identity) and the drill's options.

pub mod check;
pub mod drill;
pub mod parts;
mod resp;
pub mod service;
pub mod source;

use chrono::Utc;

use crate::catalog::{self, Catalog, RdbRecord, FORMAT, RDB_RECORD};
use warden_redis::rdb::{FetchError, FetchOptions};

pub use check::{restore, verify, Checked, RdbCheckError};

/// Plaintext bytes per part object.
pub const PART_SIZE: u64 = 256 * 1024 * 1024;
/// The pipe between the fetch and the sealing side: the fetch waits when it is full.
const PIPE_SIZE: usize = 256 * 1024;

/// What a snapshot job needs.
#[derive(Debug, Clone)]
pub struct RdbJob {
    pub catalog: Catalog,
    /// The replica (address, credentials, timeouts).
    pub fetch: FetchOptions,
    /// The member running the job (recorded).
    pub member: String,
    pub compression_level: i32,
    /// Plaintext bytes per part ([`PART_SIZE`] normally).
    pub part_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RdbJobError {
    #[error("fetching the RDB: {0}")]
    Fetch(#[from] FetchError),
    #[error("repository: {0}")]
    Repo(String),
    #[error("snapshot {id}: reading it back from the repository: {problem}")]
    ReadBack { id: String, problem: String },
    #[error(
        "snapshot {id}: read back from the repository it has CRC-64 {read_back:016x} and {read_back_len} bytes, the fetch computed {fetched:016x} and {fetched_len} bytes"
    )]
    CrcMismatch {
        id: String,
        fetched: u64,
        fetched_len: u64,
        read_back: u64,
        read_back_len: u64,
    },
}

impl RdbJob {
    /// A job with the default part size and compression level 3 (RDB values are
    /// LZF-compressed already: a low level is enough).
    pub fn new(catalog: Catalog, fetch: FetchOptions, member: impl Into<String>) -> Self {
        Self {
            catalog,
            fetch,
            member: member.into(),
            compression_level: 3,
            part_size: PART_SIZE,
        }
    }

    /// Fetches, stores, reads back and commits under a fresh id; returns the record.
    pub async fn run(&self) -> Result<RdbRecord, RdbJobError> {
        self.run_as(&catalog::id_at(Utc::now())).await
    }

    /// The same under `id` (the start time, from [`catalog::id_at`]).
    pub async fn run_as(&self, id: &str) -> Result<RdbRecord, RdbJobError> {
        let started_at = Utc::now();
        let dir = self.catalog.rdb_dir(id);
        let source = format!("{}:{}", self.fetch.host, self.fetch.port);
        tracing::info!(snapshot = %id, %source, "RDB snapshot starting");
        let (mut tx, rx) = tokio::io::duplex(PIPE_SIZE);
        let fetch = async {
            let r = warden_redis::rdb::fetch_rdb(&self.fetch, &mut tx).await;
            // The end of the stream for the sealing side, whatever happened.
            drop(tx);
            r
        };
        let store = parts::store(
            &self.catalog,
            self.compression_level,
            &dir,
            self.part_size,
            rx,
        );
        let (fetched, (stored_result, stored)) = tokio::join!(fetch, store);
        let outcome = match (fetched, stored_result) {
            // The sealing side failing shows up as a write error of the fetch: the
            // repository's error is the one worth reporting.
            (Err(FetchError::Write(_)), Err(e)) | (Ok(_), Err(e)) => Err(e),
            (Err(e), _) => Err(RdbJobError::Fetch(e)),
            (Ok(f), Ok(())) => Ok(f),
        };
        let fetched = match outcome {
            Ok(f) => f,
            Err(e) => {
                self.discard(&dir, &stored.parts).await;
                return Err(e);
            }
        };
        let read = check::read_back(&self.catalog, &dir, &stored.parts).await;
        let summary = match read {
            Ok(s) => s,
            Err(e) => {
                self.discard(&dir, &stored.parts).await;
                return Err(RdbJobError::ReadBack {
                    id: id.to_owned(),
                    problem: e.to_string(),
                });
            }
        };
        if summary.crc != fetched.crc || summary.len != fetched.bytes {
            self.discard(&dir, &stored.parts).await;
            return Err(RdbJobError::CrcMismatch {
                id: id.to_owned(),
                fetched: fetched.crc,
                fetched_len: fetched.bytes,
                read_back: summary.crc,
                read_back_len: summary.len,
            });
        }
        let record = RdbRecord {
            format: FORMAT,
            id: id.to_owned(),
            member: self.member.clone(),
            source,
            redis_version: aux_field(&stored.head, b"redis-ver"),
            rdb_version: summary.version,
            crc64: summary.crc,
            size: summary.len,
            stored_size: stored.parts.iter().map(|p| p.stored_size).sum(),
            compression_level: self.compression_level,
            parts: stored.parts,
            started_at,
            finished_at: Utc::now(),
        };
        self.catalog
            .put_record(&format!("{dir}/{RDB_RECORD}"), &record)
            .await
            .map_err(|e| RdbJobError::Repo(e.to_string()))?;
        tracing::info!(snapshot = %id, size = record.size, stored = record.stored_size,
            crc = %format_args!("{:016x}", record.crc64), "RDB snapshot committed");
        Ok(record)
    }

    /// Deletes the parts of a failed job (best effort: the prune removes what is left).
    async fn discard(&self, dir: &str, parts: &[crate::catalog::Part]) {
        for p in parts {
            let path = format!("{dir}/{}", p.name);
            if let Err(e) = self.catalog.repo.delete(&path).await {
                tracing::warn!(%path, error = %e, "cannot delete a part of a failed snapshot; the prune will");
            }
        }
    }
}

/// The value of the auxiliary field `name` (`0xFA` key value, right after the header,
/// where Redis writes `redis-ver` first), if `head` holds it. Only the string
/// encodings Redis uses for these fields are read; anything else ends the search.
pub fn aux_field(head: &[u8], name: &[u8]) -> Option<String> {
    let mut at = warden_redis::rdb::verify::HEADER_LEN;
    while head.get(at) == Some(&0xFA) {
        at += 1;
        let key = rdb_string(head, &mut at)?;
        let value = rdb_string(head, &mut at)?;
        if key == name {
            return Some(String::from_utf8_lossy(&value).into_owned());
        }
    }
    None
}

/// One RDB string at `*at`: a 6- or 14-bit length and the bytes, or an 8/16/32-bit
/// integer.
fn rdb_string(b: &[u8], at: &mut usize) -> Option<Vec<u8>> {
    let first = *b.get(*at)?;
    *at += 1;
    let len = match first >> 6 {
        0 => usize::from(first & 0x3F),
        1 => {
            let second = *b.get(*at)?;
            *at += 1;
            (usize::from(first & 0x3F) << 8) | usize::from(second)
        }
        3 => {
            let width = match first & 0x3F {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => return None,
            };
            let bytes = b.get(*at..*at + width)?;
            *at += width;
            let mut v = [0u8; 8];
            v[..width].copy_from_slice(bytes);
            let n = match width {
                1 => i64::from(i8::from_le_bytes([v[0]])),
                2 => i64::from(i16::from_le_bytes([v[0], v[1]])),
                _ => i64::from(i32::from_le_bytes([v[0], v[1], v[2], v[3]])),
            };
            return Some(n.to_string().into_bytes());
        }
        _ => return None,
    };
    let s = b.get(*at..*at + len)?.to_vec();
    *at += len;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let _check: fn(&RdbJob) = |job| assert_send(&job.run());
    }

    #[test]
    fn aux_fields_are_read_from_the_head() {
        let mut b = b"REDIS0010".to_vec();
        b.extend_from_slice(b"\xfa\x09redis-ver\x067.0.15");
        b.extend_from_slice(b"\xfa\x0aredis-bits\xc0\x40");
        b.extend_from_slice(b"\xfa\x05ctime\xc2\x00\x01\x02\x03");
        b.extend_from_slice(b"\xfe\x00");
        assert_eq!(aux_field(&b, b"redis-ver").as_deref(), Some("7.0.15"));
        assert_eq!(aux_field(&b, b"redis-bits").as_deref(), Some("64"));
        assert_eq!(aux_field(&b, b"ctime").as_deref(), Some("50462976"));
        assert_eq!(aux_field(&b, b"absent"), None);
        // Cut in the middle of a field: nothing, no panic.
        assert_eq!(aux_field(&b[..15], b"redis-ver"), None);
        assert_eq!(aux_field(b"REDIS", b"redis-ver"), None);
    }
}
