//! A committed snapshot re-read from the repository: [`verify`] (authenticate, decrypt,
//! run the RDB's own checks, compare with the record) and [`restore`] (the same into a
//! new data directory's `dump.rdb`, through `RestoreTarget`).
//!
//! The codec catches a flipped byte in a sealed object; the RDB's CRC-64 catches one
//! in the plaintext (a snapshot sealed corrupt): both refuse.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, Part, RdbRecord};
use crate::parts::{PartsReader, Problem};
use crate::verify::read_parts;
use warden_redis::rdb::fetch::CHUNK;
use warden_redis::rdb::{
    RdbError, RdbSummary, RdbVerifier, RestoreError, RestoreOptions, RestoreTarget, Restored,
};

#[derive(Debug, thiserror::Error)]
pub enum RdbCheckError {
    #[error("snapshot {id}: {} part problem(s), first {}: {}", .problems.len(), .problems[0].object, .problems[0].problem)]
    Parts { id: String, problems: Vec<Problem> },
    #[error("snapshot {id}: reading its parts: {problem}")]
    Read { id: String, problem: String },
    /// The plaintext is not a valid RDB: `RdbError::ChecksumMismatch` for a CRC-64
    /// that does not match the bytes.
    #[error("snapshot {id}: {source}")]
    Rdb {
        id: String,
        #[source]
        source: RdbError,
    },
    #[error(
        "snapshot {id}: the RDB read back has CRC-64 {found:016x} and {found_len} bytes, the record says {recorded:016x} and {recorded_len} bytes"
    )]
    NotTheRecorded {
        id: String,
        found: u64,
        found_len: u64,
        recorded: u64,
        recorded_len: u64,
    },
    #[error("snapshot {id}: restoring: {source}")]
    Restore {
        id: String,
        #[source]
        source: RestoreError,
    },
}

impl RdbCheckError {
    /// The RDB's verdict, when that is what refused the snapshot.
    pub fn rdb(&self) -> Option<&RdbError> {
        match self {
            Self::Rdb { source, .. } => Some(source),
            Self::Restore {
                source: RestoreError::Invalid(e),
                ..
            } => Some(e),
            _ => None,
        }
    }
}

/// A verified snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub id: String,
    pub parts_checked: usize,
    pub summary: RdbSummary,
}

/// What reading the parts into a verifier gave, before the record is consulted.
pub(super) enum ReadError {
    Parts(Vec<Problem>),
    Read(String),
    Rdb(RdbError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Parts(p) => {
                let first = p
                    .first()
                    .map_or_else(String::new, |p| format!("{}: {}", p.object, p.problem));
                write!(f, "{} part problem(s), first {first}", p.len())
            }
            Self::Read(s) => f.write_str(s),
            Self::Rdb(e) => write!(f, "{e}"),
        }
    }
}

/// Feeds the plaintext of `parts` (under `dir`) to an `RdbVerifier`.
fn verify_stream(r: &mut PartsReader) -> Result<RdbSummary, ReadError> {
    let mut v = RdbVerifier::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Read(e.to_string())),
        };
        v.update(&buf[..n]).map_err(ReadError::Rdb)?;
    }
    v.finish().map_err(ReadError::Rdb)
}

/// Reads `parts` back and verifies the RDB they hold; part problems win over what the
/// stream looked like (a part that failed cut it short).
pub(super) async fn read_back(
    catalog: &Catalog,
    dir: &str,
    parts: &[Part],
) -> Result<RdbSummary, ReadError> {
    let (reader, verdict) = read_parts(catalog, dir, parts, verify_stream).await;
    if !reader.problems.is_empty() {
        return Err(ReadError::Parts(reader.problems));
    }
    verdict
}

/// Re-reads `record`'s parts, authenticates and decrypts them, verifies the RDB
/// (header, EOF opcode, CRC-64) and compares it with the record.
pub async fn verify(catalog: &Catalog, record: &RdbRecord) -> Result<Checked, RdbCheckError> {
    let dir = catalog.rdb_dir(&record.id);
    let id = record.id.clone();
    let (reader, verdict) = read_parts(catalog, &dir, &record.parts, verify_stream).await;
    if !reader.problems.is_empty() {
        return Err(RdbCheckError::Parts {
            id,
            problems: reader.problems,
        });
    }
    let summary = match verdict {
        Ok(s) => s,
        Err(ReadError::Rdb(source)) => return Err(RdbCheckError::Rdb { id, source }),
        Err(ReadError::Parts(problems)) => return Err(RdbCheckError::Parts { id, problems }),
        Err(ReadError::Read(problem)) => return Err(RdbCheckError::Read { id, problem }),
    };
    not_the_recorded(record, &summary)?;
    tracing::info!(snapshot = %id, bytes = summary.len, "RDB snapshot verified");
    Ok(Checked {
        id,
        parts_checked: reader.checked,
        summary,
    })
}

fn not_the_recorded(record: &RdbRecord, s: &RdbSummary) -> Result<(), RdbCheckError> {
    if s.crc == record.crc64 && s.len == record.size {
        return Ok(());
    }
    Err(RdbCheckError::NotTheRecorded {
        id: record.id.clone(),
        found: s.crc,
        found_len: s.len,
        recorded: record.crc64,
        recorded_len: record.size,
    })
}

/// Restores `record` as `<data_dir>/dump.rdb`: `data_dir` must be absent or empty; the
/// RDB is verified on the way and only a verified file becomes `dump.rdb`.
pub async fn restore(
    catalog: &Catalog,
    record: &RdbRecord,
    data_dir: &Path,
) -> Result<Restored, RdbCheckError> {
    let id = record.id.clone();
    let restore_err = |source| RdbCheckError::Restore {
        id: id.clone(),
        source,
    };
    // Refuse a non-empty target before downloading anything.
    let target = {
        let dir = data_dir.to_owned();
        tokio::task::spawn_blocking(move || RestoreTarget::create(&dir, RestoreOptions::default()))
            .await
            .map_err(|e| RdbCheckError::Read {
                id: id.clone(),
                problem: format!("restore task: {e}"),
            })?
            .map_err(restore_err)?
    };
    let dir = catalog.rdb_dir(&record.id);
    let (reader, verdict) = read_parts(catalog, &dir, &record.parts, move |r| {
        // `put` and `commit` give the RDB's verdict by name; dropped uncommitted, the
        // target removes what it wrote.
        let mut target = target;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Step::Read(e.to_string())),
            };
            target.put(&buf[..n]).map_err(Step::Target)?;
        }
        target.commit().map_err(Step::Target)
    })
    .await;
    if !reader.problems.is_empty() {
        return Err(RdbCheckError::Parts {
            id,
            problems: reader.problems,
        });
    }
    let restored = match verdict {
        Ok(r) => r,
        Err(Step::Read(problem)) => return Err(RdbCheckError::Read { id, problem }),
        Err(Step::Target(source)) => return Err(RdbCheckError::Restore { id, source }),
    };
    if let Err(e) = not_the_recorded(record, &restored.summary) {
        let _ = std::fs::remove_file(&restored.path);
        return Err(e);
    }
    tracing::info!(snapshot = %id, path = %restored.path.display(), "RDB snapshot restored");
    Ok(restored)
}

/// Where a restore stopped.
enum Step {
    Read(String),
    Target(RestoreError),
}

/// `<data_dir>/dump.rdb`.
pub fn dump_path(data_dir: &Path) -> PathBuf {
    data_dir.join(warden_redis::rdb::DUMP_FILE)
}
