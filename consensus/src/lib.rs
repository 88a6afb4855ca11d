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
pub mod types;

pub use cluster::{Cluster, LeaderKey, Versioned};
pub use dcs::{Dcs, DcsError, KeyValue, LeaseId, Snapshot, WatchEvent, WatchKind};
pub use dynamic_config::DynamicConfig;
pub use keys::Keys;
