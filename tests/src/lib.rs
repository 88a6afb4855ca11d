//! Black-box test kit for Warden.
//!
//! Starts real processes on loopback — etcd, `warden` agents (which start
//! PostgreSQL), HAProxy — and talks to them only through ports, files and
//! binaries, never through agent internals. Used by the integration tests in
//! `tests/tests/`, by the `warden-demo` binary and by the chaos harness.
//!
//! Everything started is killed when its handle drops, also when a test
//! panics. Synchronisation is always polling with a deadline ([`wait`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use warden_tests::cluster::{Cluster, ClusterSpec};
//!
//! let cluster = Cluster::start(ClusterSpec::new(3)).expect("start");
//! let took = cluster.wait_formed(Duration::from_secs(90));
//! println!("formed in {took:?}, primary {}", cluster.primary().unwrap().name());
//! ```

pub mod bins;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod etcd;
pub mod haproxy;
pub mod http;
pub mod node;
pub mod ports;
pub mod process;
pub mod sql;
pub mod wait;
pub mod workdir;

pub use cluster::{Cluster, ClusterPorts, ClusterSpec};
pub use config::NodeConfig;
pub use etcd::{Etcd, EtcdCluster};
pub use haproxy::Haproxy;
pub use node::Node;
pub use wait::wait_until;
