//! Backups and WAL archiving (issue 6). This is the foundation: the repository, the
//! object codec and layout, and WAL push/fetch for `archive_command` and
//! `restore_command`. Base backups, retention, restore and drills build on these.
//!
//! - `repo`: one [`repo::Repository`] over a directory or an S3-compatible bucket,
//!   every call bounded.
//! - `codec`: streaming zstd + XChaCha20-Poly1305 STREAM, with the plaintext SHA-256
//!   encrypted inside each object (format 2; format 1, with a clear one, still read).
//! - `layout`: object paths (`<scope>/<system_identifier>/wal/<timeline>/<file>`).
//! - `key`: the encryption key (file or `WARDEN_BACKUP_KEY`), never logged.
//! - `wal`: push and fetch with PostgreSQL's archiver rules.
//! - `wal_live`: the archiver's live `.partial`, uploaded every second or so.
//! - `command`: `warden wal-push` and `warden wal-fetch`.
//! - `archiver`: the elected archiver streaming WAL into the repository.
//! - `catalog`: committed backups, dumps and drill results (records written last).
//! - `copies`: repository copies (`backup.copies`): the copier, its plan and lag.
//! - `rdb`: Redis RDB snapshots from a replica, sealed into parts; verify, restore,
//!   drill (retention through `prune`, like dumps).

pub mod archiver;
pub mod base;
pub mod catalog;
pub mod codec;
pub mod command;
pub mod copies;
pub mod drill;
pub mod dump;
pub mod facts;
pub mod heartbeat;
pub mod jobs;
pub mod key;
pub mod layout;
pub mod notify;
pub mod objectives;
pub mod parts;
pub mod prune;
pub mod rdb;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod stack;
#[cfg(test)]
pub(crate) mod testkit;
pub mod verify;
pub mod wal;
pub mod wal_live;
pub mod walchain;
