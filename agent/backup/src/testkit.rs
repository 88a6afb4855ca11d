//! Shared setup for the backup modules' unit tests (`prune`, `restore`, `verify`):
//! a catalog over a filesystem repository in a test's directory, and a minimal
//! base backup record.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::catalog::{BackupRecord, Catalog, FORMAT};
use crate::key::EncryptionKey;
use crate::layout::Layout;
use crate::repo::Repository;
use warden_config::{RepositoryConfig, RepositoryKind};

/// The unit tests' encryption key (64 hex digits).
pub(crate) const KEY: &str = "8f3a1c9e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f13";

/// A catalog for cluster `demo/42` over the filesystem repository `<dir>/repo`
/// (5 s per operation), sealed with [`KEY`].
pub(crate) fn catalog(dir: &Path) -> Catalog {
    Catalog {
        repo: Repository::open(&RepositoryConfig {
            kind: RepositoryKind::Filesystem {
                path: dir.join("repo"),
            },
            timeout: Duration::from_secs(5),
        })
        .unwrap(),
        layout: Layout::new("demo", 42),
        key: EncryptionKey::parse(KEY, "test").unwrap(),
    }
}

/// A backup record of no parts and no files, started and finished at `finished`,
/// whose WAL is the one segment `start_wal` (timeline 1).
pub(crate) fn backup_record(id: &str, finished: DateTime<Utc>, start_wal: &str) -> BackupRecord {
    BackupRecord {
        format: FORMAT,
        id: id.into(),
        member: "m".into(),
        system_identifier: 42,
        pg_version: 150000,
        started_at: finished,
        finished_at: finished,
        timeline: 1,
        start_lsn: "0/0".into(),
        end_lsn: "0/0".into(),
        start_wal: start_wal.into(),
        end_wal: start_wal.into(),
        size: 0,
        stored_size: 0,
        compression_level: 3,
        parts: vec![],
        files: vec![],
        file_count: None,
    }
}
