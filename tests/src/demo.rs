//! The demo cluster's fixed layout, shared by the `warden-demo` binary and by
//! the test that keeps `deploy/` consistent with it.
//!
//! PostgreSQL uses 15432-15434 rather than 5432-5434 so the demo runs next to
//! a system PostgreSQL on its default port.

use std::path::Path;

use crate::cluster::{ClusterPorts, ClusterSpec};

/// `deploy/haproxy.cfg`, compiled in: the demo runs HAProxy with exactly the
/// file users copy.
pub const HAPROXY_CFG: &str = include_str!("../../deploy/haproxy.cfg");
/// `deploy/haproxy-redis.cfg`, compiled in, for the Redis demo.
pub const HAPROXY_REDIS_CFG: &str = include_str!("../../deploy/haproxy-redis.cfg");

pub const SCOPE: &str = "demo";
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const PG_PORTS: [u16; 3] = [15432, 15433, 15434];
pub const API_PORTS: [u16; 3] = [8008, 8009, 8010];
pub const HAPROXY_WRITE_PORT: u16 = 5000;
pub const HAPROXY_READ_PORT: u16 = 5001;
pub const DEFAULT_DIR: &str = "/tmp/warden-demo";
/// The Redis demo (`--redis`): redis-server and Sentinel ports; the rest is the
/// PostgreSQL demo's (so the two do not run at once).
pub const REDIS_PORTS: [u16; 3] = [16379, 16380, 16381];
pub const SENTINEL_PORTS: [u16; 3] = [26379, 26380, 26381];
pub const REDIS_SCOPE: &str = "demo-redis";
pub const REDIS_DEFAULT_DIR: &str = "/tmp/warden-demo-redis";

/// The demo's ports as a [`ClusterPorts`].
pub fn ports() -> ClusterPorts {
    ClusterPorts {
        etcd: vec![(ETCD_CLIENT_PORT, ETCD_PEER_PORT)],
        pg: PG_PORTS.to_vec(),
        api: API_PORTS.to_vec(),
        haproxy_write: HAPROXY_WRITE_PORT,
        haproxy_read: HAPROXY_READ_PORT,
        sentinel: Vec::new(),
    }
}

/// The Redis demo's ports.
pub fn redis_ports() -> ClusterPorts {
    ClusterPorts {
        pg: REDIS_PORTS.to_vec(),
        sentinel: SENTINEL_PORTS.to_vec(),
        ..ports()
    }
}

/// Every fixed port of the Redis demo with what it is for.
pub fn labelled_redis_ports() -> Vec<(u16, String)> {
    let mut out: Vec<(u16, String)> = labelled_ports()
        .into_iter()
        .filter(|(p, _)| !PG_PORTS.contains(p))
        .collect();
    for i in 0..3 {
        out.push((REDIS_PORTS[i], format!("node{} redis-server", i + 1)));
        out.push((SENTINEL_PORTS[i], format!("node{} Sentinel port", i + 1)));
    }
    out
}

/// Every fixed port with what it is for, for the "port taken" check.
pub fn labelled_ports() -> Vec<(u16, String)> {
    let mut out = vec![
        (ETCD_CLIENT_PORT, "etcd client".to_string()),
        (ETCD_PEER_PORT, "etcd peer".to_string()),
        (HAPROXY_WRITE_PORT, "HAProxy write".to_string()),
        (HAPROXY_READ_PORT, "HAProxy read".to_string()),
    ];
    for i in 0..3 {
        out.push((PG_PORTS[i], format!("node{} PostgreSQL", i + 1)));
        out.push((API_PORTS[i], format!("node{} REST API", i + 1)));
    }
    out
}

/// The demo cluster: 3 nodes, single etcd, HAProxy from deploy/haproxy.cfg,
/// Warden's recommended timing, everything under `dir`.
pub fn spec(dir: &Path) -> ClusterSpec {
    ClusterSpec::new(3)
        .scope(SCOPE)
        .dir(dir)
        .fixed_ports(ports())
        .haproxy_config(HAPROXY_CFG)
}

/// The Redis demo: the same layout with redis-server instead of PostgreSQL, a
/// Sentinel port per agent, HAProxy from deploy/haproxy-redis.cfg.
pub fn redis_spec(dir: &Path) -> ClusterSpec {
    ClusterSpec::new(3)
        .redis()
        .scope(REDIS_SCOPE)
        .dir(dir)
        .fixed_ports(redis_ports())
        .haproxy_config(HAPROXY_REDIS_CFG)
}
