//! The repository's catalog: what a committed base backup, logical dump and drill
//! result look like, and how they are found.
//!
//! Objects (under `<scope>/<system_identifier>/`, see `layout`):
//!
//! ```text
//! backups/<id>/base.tar.<n>      sealed parts of pg_basebackup's tar stream, n = 00000..
//! backups/<id>/backup_manifest   sealed copy of PostgreSQL's manifest
//! backups/<id>/backup.json       sealed BackupRecord: written LAST, the commit marker
//! dumps/<id>/<database>.dump.<n> sealed parts of pg_dump --format=custom
//! dumps/<id>/dump.json           sealed DumpRecord: written last
//! drills/<id>.json               sealed DrillRecord
//! ```
//!
//! A backup (dump) without its record is incomplete — still running, or abandoned —
//! and is neither listed nor restored; retention may delete its leftovers. Every object
//! is sealed with its own repository path as context (`codec`), so a part cannot be
//! swapped for another backup's part unnoticed. Ids are the UTC start time
//! (`20261202T031500Z`), so they sort by age.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{self, CodecError};
use super::key::EncryptionKey;
use super::layout::Layout;
use super::repo::{RepoError, Repository};

/// Version of the records below; a reader refuses records newer than it knows.
pub const FORMAT: u32 = 1;
pub const BACKUP_RECORD: &str = "backup.json";
pub const DUMP_RECORD: &str = "dump.json";
/// The record of a Redis RDB snapshot (`<cluster>/rdb/<id>/rdb.json`).
pub const RDB_RECORD: &str = "rdb.json";
pub const MANIFEST: &str = "backup_manifest";

/// An id for something starting at `t`: `20261202T031500Z`.
pub fn id_at(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// One sealed object holding a slice of a larger stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Object name inside the backup's (dump's) directory.
    pub name: String,
    /// Bytes of the plaintext slice.
    pub plain_size: u64,
    /// Bytes stored (compressed, encrypted).
    pub stored_size: u64,
    /// SHA-256 (hex) of the plaintext slice, also sealed in the object's trailer.
    pub sha256: String,
}

/// One file of the data directory as it was in the backup's tar stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A committed base backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub format: u32,
    pub id: String,
    /// The member that took it (the archiver replica, normally).
    pub member: String,
    pub system_identifier: u64,
    /// `server_version_num` of the server it was taken from.
    pub pg_version: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// WAL range the backup needs (from `backup_manifest`'s WAL-Ranges): a restore
    /// must replay at least to `end_lsn`.
    pub timeline: u32,
    pub start_lsn: String,
    pub end_lsn: String,
    /// First and last WAL segment needed (names on `timeline`).
    pub start_wal: String,
    pub end_wal: String,
    /// Plaintext bytes of the tar stream and bytes stored.
    pub size: u64,
    pub stored_size: u64,
    pub compression_level: i32,
    pub parts: Vec<Part>,
    pub files: Vec<FileSum>,
    /// Files in the tar stream. Set since the per-file checksums are
    /// backup_manifest's (`files` empty); older records count `files` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
}

/// A committed logical dump of one or more databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpRecord {
    pub format: u32,
    pub id: String,
    pub member: String,
    pub system_identifier: u64,
    pub pg_version: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub databases: Vec<DumpedDatabase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedDatabase {
    pub name: String,
    pub size: u64,
    pub stored_size: u64,
    pub parts: Vec<Part>,
    /// Entries `pg_restore --list` reported when the dump was verified.
    pub toc_entries: u64,
}

/// A committed Redis RDB snapshot, fetched from a replica and read back through the
/// codec with the same CRC-64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdbRecord {
    pub format: u32,
    pub id: String,
    /// The member that took it.
    pub member: String,
    /// `host:port` of the server it was fetched from.
    pub source: String,
    /// The `redis-ver` the RDB itself carries (the server that wrote it), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
    pub rdb_version: u32,
    /// The RDB's CRC-64 (its trailer), as the fetch computed it and the read-back
    /// confirmed it.
    pub crc64: u64,
    /// Plaintext bytes (the RDB file) and bytes stored.
    pub size: u64,
    pub stored_size: u64,
    pub compression_level: i32,
    pub parts: Vec<Part>,
    /// The fetch's start: the snapshot is no older than this (its fork came later).
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// The result of one restore drill, committed or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub format: u32,
    pub id: String,
    pub member: String,
    pub backup_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    /// Why it failed (`ok == false`).
    pub error: Option<String>,
    /// RTO and its parts, seconds.
    pub fetch_seconds: Option<f64>,
    pub replay_seconds: Option<f64>,
    pub checks_seconds: Option<f64>,
    pub rto_seconds: Option<f64>,
    /// Newest heartbeat found in the restored server and how far it was behind the
    /// end of replay (the RPO the archive would have given at that moment).
    pub restored_heartbeat: Option<DateTime<Utc>>,
    pub rpo_seconds: Option<f64>,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    /// What the query returned, or its error.
    pub got: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{path}: {source}")]
    Codec {
        path: String,
        #[source]
        source: CodecError,
    },
    #[error("{path}: not a valid record ({source})")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: record format {found} is newer than this Warden understands ({FORMAT})")]
    Format { path: String, found: u32 },
    #[error("no backup \"{0}\" in the repository")]
    NoSuchBackup(String),
    #[error("the repository holds no committed backup of this cluster")]
    NoBackup,
}

/// Reads and writes records; knows where they live.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub repo: Repository,
    pub layout: Layout,
    pub key: EncryptionKey,
}

impl Catalog {
    pub fn backup_dir(&self, id: &str) -> String {
        self.layout.backup(id)
    }

    pub fn dump_dir(&self, id: &str) -> String {
        format!("{}/dumps/{id}", self.layout.cluster())
    }

    pub fn rdb_dir(&self, id: &str) -> String {
        format!("{}/rdb/{id}", self.layout.cluster())
    }

    pub fn drill_path(&self, id: &str) -> String {
        format!("{}/drills/{id}.json", self.layout.cluster())
    }

    /// Seals `record` as JSON under `path`. Overwrites: records are written once by the
    /// single job that owns their id.
    pub async fn put_record<T: Serialize>(
        &self,
        path: &str,
        record: &T,
    ) -> Result<(), CatalogError> {
        let json = serde_json::to_vec_pretty(record).map_err(|source| CatalogError::Json {
            path: path.to_owned(),
            source,
        })?;
        let (sealed, _) =
            codec::seal_bytes(&self.key, 3, path, &json).map_err(|source| CatalogError::Codec {
                path: path.to_owned(),
                source,
            })?;
        self.repo.put(path, sealed.into()).await?;
        Ok(())
    }

    pub async fn get_record<T: for<'de> Deserialize<'de> + HasFormat>(
        &self,
        path: &str,
    ) -> Result<T, CatalogError> {
        let sealed = self.repo.get(path).await?;
        let (plain, _) =
            codec::open_bytes(&self.key, path, &sealed).map_err(|source| CatalogError::Codec {
                path: path.to_owned(),
                source,
            })?;
        let record: T = serde_json::from_slice(&plain).map_err(|source| CatalogError::Json {
            path: path.to_owned(),
            source,
        })?;
        if record.format() > FORMAT {
            return Err(CatalogError::Format {
                path: path.to_owned(),
                found: record.format(),
            });
        }
        Ok(record)
    }

    /// Every committed base backup, oldest first. A record that cannot be read is an
    /// error (a corrupt catalog must be noticed, not skipped).
    pub async fn backups(&self) -> Result<Vec<BackupRecord>, CatalogError> {
        self.records(
            &format!("{}/backups/", self.layout.cluster()),
            BACKUP_RECORD,
        )
        .await
    }

    /// Every committed logical dump, oldest first.
    pub async fn dumps(&self) -> Result<Vec<DumpRecord>, CatalogError> {
        self.records(&format!("{}/dumps/", self.layout.cluster()), DUMP_RECORD)
            .await
    }

    /// Every committed Redis RDB snapshot, oldest first.
    pub async fn rdbs(&self) -> Result<Vec<RdbRecord>, CatalogError> {
        self.records(&format!("{}/rdb/", self.layout.cluster()), RDB_RECORD)
            .await
    }

    /// One RDB snapshot by id, or the newest for `latest`.
    pub async fn rdb(&self, id: &str) -> Result<RdbRecord, CatalogError> {
        if id == "latest" {
            return self.rdbs().await?.pop().ok_or(CatalogError::NoBackup);
        }
        let path = format!("{}/{RDB_RECORD}", self.rdb_dir(id));
        match self.get_record(&path).await {
            Err(CatalogError::Repo(RepoError::NotFound { .. })) => {
                Err(CatalogError::NoSuchBackup(id.to_owned()))
            }
            other => other,
        }
    }

    /// Every drill result, oldest first.
    pub async fn drills(&self) -> Result<Vec<DrillRecord>, CatalogError> {
        let prefix = format!("{}/drills/", self.layout.cluster());
        let mut paths: Vec<String> = self
            .repo
            .list(&prefix)
            .await?
            .into_iter()
            .map(|o| o.path)
            .filter(|p| p.ends_with(".json"))
            .collect();
        paths.sort();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.get_record(&p).await?);
        }
        Ok(out)
    }

    /// One backup by id, or the newest for `latest`.
    pub async fn backup(&self, id: &str) -> Result<BackupRecord, CatalogError> {
        if id == "latest" {
            return self.backups().await?.pop().ok_or(CatalogError::NoBackup);
        }
        let path = format!("{}/{BACKUP_RECORD}", self.backup_dir(id));
        match self.get_record(&path).await {
            Err(CatalogError::Repo(RepoError::NotFound { .. })) => {
                Err(CatalogError::NoSuchBackup(id.to_owned()))
            }
            other => other,
        }
    }

    async fn records<T: for<'de> Deserialize<'de> + HasFormat>(
        &self,
        prefix: &str,
        record: &str,
    ) -> Result<Vec<T>, CatalogError> {
        let suffix = format!("/{record}");
        let mut paths: Vec<String> = self
            .repo
            .list(prefix)
            .await?
            .into_iter()
            .map(|o| o.path)
            .filter(|p| p.ends_with(&suffix))
            .collect();
        paths.sort();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.get_record(&p).await?);
        }
        Ok(out)
    }
}

/// Records carry their format version.
pub trait HasFormat {
    fn format(&self) -> u32;
}

impl HasFormat for BackupRecord {
    fn format(&self) -> u32 {
        self.format
    }
}
impl HasFormat for DumpRecord {
    fn format(&self) -> u32 {
        self.format
    }
}
impl HasFormat for RdbRecord {
    fn format(&self) -> u32 {
        self.format
    }
}
impl HasFormat for DrillRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_sort_by_time() {
        let a = id_at(Utc.with_ymd_and_hms(2026, 12, 2, 3, 15, 0).unwrap());
        let b = id_at(Utc.with_ymd_and_hms(2026, 12, 10, 0, 0, 0).unwrap());
        assert_eq!(a, "20261202T031500Z");
        assert!(a < b);
    }
}
