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
//! Faults: processes are killed or frozen through [`Node`] and
//! [`EtcdCluster`]; network partitions go through fault-injecting TCP
//! proxies ([`proxy`], wired per node by [`ClusterSpec::with_proxies`]).
//! [`workload`] and [`observe`] timestamp what clients and the cluster saw,
//! [`failover`] turns that into ordering checks, and
//! [`Cluster::assert_converged`] is how a scenario ends.
//!
//! ```no_run
//! use std::time::Duration;
//! use warden_tests::cluster::{Cluster, ClusterSpec};
//!
//! let cluster = Cluster::start(ClusterSpec::new(3)).expect("start");
//! let took = cluster.wait_formed(Duration::from_secs(90));
//! println!("formed in {took:?}, primary {}", cluster.primary().unwrap().name());
//! ```

pub mod backupkit;
pub mod bins;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod etcd;
pub mod failover;
pub mod haproxy;
pub mod http;
pub mod ipc;
pub mod node;
pub mod observe;
pub mod pgserver;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod s3;
pub mod sql;
pub mod stats;
pub mod tls;
pub mod wait;
pub mod walfile;
pub mod workdir;
pub mod workload;

pub use cluster::{Cluster, ClusterPorts, ClusterSpec, Converged, NodeProxies};
pub use config::NodeConfig;
pub use etcd::{Etcd, EtcdCluster};
pub use haproxy::Haproxy;
pub use node::Node;
pub use proxy::Proxy;
pub use wait::wait_until;
