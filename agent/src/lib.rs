//! The `warden` agent: a Patroni-compatible high-availability sidecar for PostgreSQL
//! and Redis.
//!
//! Layout: `ha` holds the loop that feeds the pure decision core (`warden-ha`) for
//! either engine; `probe` is what the rest reads of the local server; `api` serves the
//! REST API from the cached `state`; `cli` starts the engine the config names. See
//! ARCHITECTURE.md for the invariants.

pub mod api;
pub mod backups;
pub mod cli;
pub mod ha;
pub mod probe;
pub mod redis_mode;

pub mod state;
mod unique_name;
