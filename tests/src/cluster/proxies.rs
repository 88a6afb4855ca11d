//! The fault-injecting proxies a node can be given.

use anyhow::Result;

use crate::config::NodeConfig;
use crate::etcd::EtcdCluster;
use crate::proxy::Proxy;

/// One node's proxies ([`ClusterSpec::with_proxies`]).
///
/// What goes through them is exactly what crosses the network between this
/// node and the rest of the cluster; what clients use does not:
///
/// | proxy | target | used by |
/// |---|---|---|
/// | `etcd[k]` | etcd member `k` | this node's agent (`etcd3.hosts`) |
/// | `pg` | this node's PostgreSQL | other members: `conn_url` (`postgresql.connect_address`) for pg_basebackup, streaming replication, pg_rewind |
/// | `api` | this node's REST API | other members: `api_url` (`restapi.connect_address`) for the peer probes of a leader race |
///
/// HAProxy's backends and health checks, test SQL ([`Node::sql`]) and test
/// HTTP ([`Node::get`]) use the real ports, so with everything cut the node
/// is partitioned from etcd and from its peers but still reachable by
/// clients.
///
/// [`ClusterSpec::with_proxies`]: super::ClusterSpec::with_proxies
/// [`Node::sql`]: crate::node::Node::sql
/// [`Node::get`]: crate::node::Node::get
#[derive(Debug)]
pub struct NodeProxies {
    /// One per etcd member, in member order.
    pub etcd: Vec<Proxy>,
    pub pg: Proxy,
    pub api: Proxy,
}

impl NodeProxies {
    pub(super) fn start(etcd: &EtcdCluster, pg_port: u16, api_port: u16) -> Result<NodeProxies> {
        let etcd = etcd
            .members()
            .iter()
            .map(|m| Proxy::start(m.client_port()))
            .collect::<Result<Vec<_>>>()?;
        Ok(NodeProxies {
            etcd,
            pg: Proxy::start(pg_port)?,
            api: Proxy::start(api_port)?,
        })
    }

    /// Point a node's config at these proxies.
    pub(super) fn route(&self, cfg: NodeConfig) -> NodeConfig {
        let hosts: Vec<String> = self.etcd.iter().map(Proxy::endpoint).collect();
        // Members reach the database server through the proxy too (a Redis member's
        // `redis.connect_address`).
        let db = if cfg.sentinel_port.is_some() {
            "redis.connect_address"
        } else {
            "postgresql.connect_address"
        };
        let mut cfg = cfg
            .set(db, self.pg.endpoint())
            .set("restapi.connect_address", self.api.endpoint());
        cfg.etcd_hosts = hosts.join(",");
        cfg
    }

    /// Cut this node off from every etcd member.
    pub fn cut_etcd(&self) {
        self.etcd.iter().for_each(Proxy::cut);
    }

    pub fn heal_etcd(&self) {
        self.etcd.iter().for_each(Proxy::heal);
    }

    /// Cut this node off from etcd and from its peers (replication to and
    /// from it through its `pg` proxy, peer probes of its REST API). Its
    /// own outgoing replication connection goes to the *leader's* `pg`
    /// proxy, so a replica cut off this way keeps streaming; cut the
    /// leader's `pg` proxy to stop that.
    pub fn isolate(&self) {
        self.cut_etcd();
        self.pg.cut();
        self.api.cut();
    }

    /// Undo every fault on this node's proxies.
    pub fn heal(&self) {
        self.heal_etcd();
        self.pg.heal();
        self.api.heal();
    }
}
