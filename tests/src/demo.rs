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

pub const SCOPE: &str = "demo";
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const PG_PORTS: [u16; 3] = [15432, 15433, 15434];
pub const API_PORTS: [u16; 3] = [8008, 8009, 8010];
pub const HAPROXY_WRITE_PORT: u16 = 5000;
pub const HAPROXY_READ_PORT: u16 = 5001;
pub const DEFAULT_DIR: &str = "/tmp/warden-demo";

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
