//! RDB snapshots taken from a replica over the replication protocol, checked by their
//! CRC-64, and placed into a new data directory for a restore.
//!
//! - [`crc64`]: Redis's CRC-64 (Jones polynomial, reflected, initial value 0).
//! - [`verify`]: the RDB's header and trailer (`REDIS00xx` … `0xFF` + CRC-64), in one
//!   pass over a stream ([`RdbVerifier`]) or over bytes and files.
//! - [`fetch`]: [`fetch_rdb`] does what `redis-cli --rdb -` does (`REPLCONF capa eof`,
//!   `REPLCONF rdb-only 1`, `SYNC`) and streams the payload to any `AsyncWrite`,
//!   verifying it on the way, with a connect timeout, an idle timeout and a deadline.
//! - [`restore`]: a verified RDB written as `dump.rdb` of a new data directory (a
//!   temporary file, fsync, rename, fsync of the directory).
//!
//! Nothing here keeps a whole snapshot in memory: buffers are [`fetch::CHUNK`] bytes.

pub mod crc64;
pub mod fetch;
pub mod restore;
pub mod verify;

pub use crc64::{crc64, Crc64};
pub use fetch::{fetch_rdb, FetchError, FetchOptions, Fetched, Transfer};
pub use restore::{restore_rdb, RestoreError, RestoreOptions, RestoreTarget, Restored, DUMP_FILE};
pub use verify::{verify_rdb, verify_rdb_file, FileCheckError, RdbError, RdbSummary, RdbVerifier};
