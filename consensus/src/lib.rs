//! The distributed configuration store (DCS) as Warden sees it.
//!
//! Warden speaks Patroni's etcd v3 key layout (`/<namespace>/<scope>/...`) and JSON
//! values, so Patroni tooling reads a Warden cluster unchanged. This crate is the only
//! place that knows etcd: the agent talks to the [`Dcs`] trait, and tests of pure logic
//! use [`memory::MemoryDcs`].

pub mod cluster;
pub mod dcs;
pub mod dynamic_config;
pub mod etcd;
pub mod keys;
pub mod memory;
pub mod transitions;
pub mod types;

pub use cluster::{Cluster, LeaderKey, Versioned};
pub use dcs::{Dcs, DcsError, KeyValue, LeaseId, Snapshot, WatchEvent, WatchKind};
pub use dynamic_config::DynamicConfig;
pub use keys::Keys;

/// Per-request DCS timeout: half of `retry_timeout`, so a request and one retry fit in
/// it, and at least one second.
pub fn request_timeout(retry_timeout: u32) -> std::time::Duration {
    (std::time::Duration::from_secs(u64::from(retry_timeout)) / 2)
        .max(std::time::Duration::from_secs(1))
}
