//! What a test asks for: the [`ClusterSpec`] a [`Cluster`](super::Cluster) is started
//! from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::config::{
    NodeConfig, DEFAULT_LOOP_WAIT, DEFAULT_RETRY_TIMEOUT, DEFAULT_SCOPE, DEFAULT_TTL,
};
use crate::ports;

type Customize = Arc<dyn Fn(usize, NodeConfig) -> NodeConfig + Send + Sync>;

/// Fixed ports instead of allocated ones (the demo's well-known ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPorts {
    /// `(client, peer)` per etcd member.
    pub etcd: Vec<(u16, u16)>,
    /// PostgreSQL port per node.
    pub pg: Vec<u16>,
    /// REST API port per node.
    pub api: Vec<u16>,
    pub haproxy_write: u16,
    pub haproxy_read: u16,
    /// Sentinel port per node (Redis clusters only; empty otherwise).
    pub sentinel: Vec<u16>,
}

/// What to start.
#[derive(Clone)]
pub struct ClusterSpec {
    pub nodes: usize,
    pub scope: String,
    /// 1 (default) or 3 (so a test can lose one etcd member).
    pub etcd_members: usize,
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub haproxy: bool,
    /// Give every node its own fault-injecting proxies (see [`NodeProxies`]).
    ///
    /// [`NodeProxies`]: super::NodeProxies
    pub proxies: bool,
    /// etcd over https with client certificates and RBAC (see [`crate::tls`]).
    pub etcd_tls: bool,
    /// The agents' REST API over https.
    pub rest_tls: bool,
    /// PostgreSQL with `ssl = on` and replication over verified TLS.
    pub pg_tls: bool,
    /// Redis members instead of PostgreSQL (redis-server on the `pg` ports, a
    /// Sentinel port each).
    pub redis: bool,
    /// With `redis`: redis-server speaks only TLS (client certificates required,
    /// replication included) and so do the Sentinel ports.
    pub redis_tls: bool,
    pub(super) ports: Option<ClusterPorts>,
    pub(super) dir: Option<PathBuf>,
    pub(super) haproxy_config: Option<String>,
    pub(super) customize: Vec<Customize>,
}

impl std::fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("nodes", &self.nodes)
            .field("scope", &self.scope)
            .field("etcd_members", &self.etcd_members)
            .field("ttl", &self.ttl)
            .field("loop_wait", &self.loop_wait)
            .field("retry_timeout", &self.retry_timeout)
            .field("haproxy", &self.haproxy)
            .field("proxies", &self.proxies)
            .field("etcd_tls", &self.etcd_tls)
            .field("rest_tls", &self.rest_tls)
            .field("pg_tls", &self.pg_tls)
            .field("redis", &self.redis)
            .field("redis_tls", &self.redis_tls)
            .field("ports", &self.ports)
            .field("dir", &self.dir)
            .field("customize", &self.customize.len())
            .finish_non_exhaustive()
    }
}

impl ClusterSpec {
    /// `nodes` nodes, one etcd member, HAProxy, Warden's default timing.
    pub fn new(nodes: usize) -> Self {
        ClusterSpec {
            nodes,
            scope: DEFAULT_SCOPE.to_string(),
            etcd_members: 1,
            ttl: DEFAULT_TTL,
            loop_wait: DEFAULT_LOOP_WAIT,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            haproxy: true,
            proxies: false,
            etcd_tls: false,
            rest_tls: false,
            pg_tls: false,
            redis: false,
            redis_tls: false,
            ports: None,
            dir: None,
            haproxy_config: None,
            customize: Vec::new(),
        }
    }

    /// Redis members (see [`ClusterSpec::redis`]).
    pub fn redis(mut self) -> Self {
        self.redis = true;
        self
    }

    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_string();
        self
    }

    pub fn etcd_members(mut self, n: usize) -> Self {
        self.etcd_members = n;
        self
    }

    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn loop_wait(mut self, loop_wait: u32) -> Self {
        self.loop_wait = loop_wait;
        self
    }

    pub fn retry_timeout(mut self, retry_timeout: u32) -> Self {
        self.retry_timeout = retry_timeout;
        self
    }

    pub fn without_haproxy(mut self) -> Self {
        self.haproxy = false;
        self
    }

    /// Route each node's etcd traffic, the connections other members open to
    /// its PostgreSQL (replication, pg_basebackup, pg_rewind) and their
    /// probes of its REST API through proxies of its own, so a test can cut
    /// one node off from etcd and from its peers while clients (HAProxy, test
    /// SQL, test HTTP) still reach it on its real ports. See [`NodeProxies`].
    ///
    /// [`NodeProxies`]: super::NodeProxies
    pub fn with_proxies(mut self) -> Self {
        self.proxies = true;
        self
    }

    /// Use these ports instead of allocating free ones.
    pub fn fixed_ports(mut self, ports: ClusterPorts) -> Self {
        self.ports = Some(ports);
        self
    }

    /// Put everything in `dir` (kept afterwards) instead of a temp dir.
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// etcd over https, client certificates required, RBAC on (see [`ClusterSpec::etcd_tls`]).
    pub fn with_etcd_tls(mut self) -> Self {
        self.etcd_tls = true;
        self
    }

    /// The agents' REST API over https (see [`ClusterSpec::rest_tls`]).
    pub fn with_rest_tls(mut self) -> Self {
        self.rest_tls = true;
        self
    }

    /// PostgreSQL over TLS (see [`ClusterSpec::pg_tls`]).
    pub fn with_pg_tls(mut self) -> Self {
        self.pg_tls = true;
        self
    }

    /// Redis members over TLS (see [`ClusterSpec::redis_tls`]); implies
    /// [`ClusterSpec::redis`].
    pub fn with_redis_tls(mut self) -> Self {
        self.redis = true;
        self.redis_tls = true;
        self
    }

    /// etcd (client certificates, RBAC), the REST API (`verify_client: required`) and
    /// replication (`verify-full`) over TLS: a production-like deployment.
    pub fn with_tls_everywhere(self) -> Self {
        self.with_etcd_tls().with_rest_tls().with_pg_tls()
    }

    /// True when any part runs over TLS: the cluster then has a [`crate::tls::TlsMaterial`].
    pub fn any_tls(&self) -> bool {
        self.etcd_tls || self.rest_tls || self.pg_tls || self.redis_tls
    }

    /// Use this HAProxy config text verbatim (its ports must be the
    /// `haproxy_write`/`haproxy_read` of [`ClusterSpec::fixed_ports`]).
    pub fn haproxy_config(mut self, text: &str) -> Self {
        self.haproxy_config = Some(text.to_string());
        self
    }

    /// Make the cluster a standby cluster of the remote primary at `host:port`: every
    /// member's `bootstrap.dcs.standby_cluster` names it, so the member that wins the
    /// bootstrap race copies the remote instead of running initdb.
    pub fn standby_of(self, host: &str, port: u16) -> Self {
        let host = host.to_string();
        self.customize(move |_, cfg| {
            cfg.set("bootstrap.dcs.standby_cluster.host", host.as_str())
                .set("bootstrap.dcs.standby_cluster.port", u64::from(port))
        })
    }

    /// Adjust node `i`'s config (0-based): tags, extra YAML, broken keys...
    pub fn customize(
        mut self,
        f: impl Fn(usize, NodeConfig) -> NodeConfig + Send + Sync + 'static,
    ) -> Self {
        self.customize.push(Arc::new(f));
        self
    }

    pub(super) fn resolve_ports(&self) -> Result<ClusterPorts> {
        if let Some(p) = &self.ports {
            if p.pg.len() != self.nodes
                || p.api.len() != self.nodes
                || (self.redis && p.sentinel.len() != self.nodes)
                || p.etcd.len() != self.etcd_members
            {
                bail!(
                    "fixed ports do not match {} nodes / {} etcd members",
                    self.nodes,
                    self.etcd_members
                );
            }
            return Ok(p.clone());
        }
        let sentinels = if self.redis { self.nodes } else { 0 };
        let mut free =
            ports::free_ports(2 * self.etcd_members + 2 * self.nodes + 2 + sentinels)?.into_iter();
        let mut next = || free.next().unwrap_or(0); // exactly as many as requested
        Ok(ClusterPorts {
            etcd: (0..self.etcd_members).map(|_| (next(), next())).collect(),
            pg: (0..self.nodes).map(|_| next()).collect(),
            api: (0..self.nodes).map(|_| next()).collect(),
            haproxy_write: next(),
            haproxy_read: next(),
            sentinel: (0..sentinels).map(|_| next()).collect(),
        })
    }
}
