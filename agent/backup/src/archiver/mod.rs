//! Streamed WAL archiving by one elected member (issue 6, part B).
//!
//! - `elect`: the pure rule for the `warden/archiver` key.
//! - `spool`: the pure plan over `pg_receivewal`'s spool directory.
//! - `stream`: the supervised `pg_receivewal` and the uploader.

pub mod elect;
pub mod spool;
pub mod stream;
