//! The `warden` agent: a Patroni-compatible high-availability sidecar for PostgreSQL.
//!
//! Layout: `config` reads the Patroni YAML; `ha` holds the pure decision core and the
//! loop that feeds it; `pg` is the PostgreSQL adapter; `api` serves the REST API from
//! the cached `state`. See ARCHITECTURE.md for the invariants.

pub mod api;
pub mod backups;
pub mod cli;
pub mod ha;

pub mod state;
mod unique_name;
