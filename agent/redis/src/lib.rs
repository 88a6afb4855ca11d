//! The Redis engine: what Warden needs to run Redis primaries and replicas under the
//! same lease, race and fencing as PostgreSQL (see docs/engines.md).
//!
//! - [`adapter`]: `redis-server` as a child process, its configuration, `ROLE`/`INFO`,
//!   `REPLICAOF`, `CLIENT PAUSE`; the `Database` adapter the loop drives.
//! - [`policy`]: the engine's facts and its answers to the HA core (`Engine`).
//! - [`sentinel`]: the Sentinel-compatible port clients discover the primary through.
//! - [`rdb`]: RDB snapshots streamed from a replica over the replication protocol, and
//!   their CRC-64.

pub mod adapter;
pub mod policy;
pub mod rdb;
pub mod sentinel;
