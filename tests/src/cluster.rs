//! A whole local cluster: etcd + N nodes (each a `warden` agent owning a
//! PostgreSQL) + HAProxy, on loopback ports, in one directory.
//!
//! Dropping a [`Cluster`] kills everything in an order that cannot cause a
//! spurious failover or leave a process behind: every agent first (so none
//! reacts to another's PostgreSQL dying), then every postmaster, then
//! HAProxy, then etcd, then the directory is removed.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::config::{
    NodeConfig, DEFAULT_LOOP_WAIT, DEFAULT_RETRY_TIMEOUT, DEFAULT_SCOPE, DEFAULT_TTL,
};
use crate::etcd::EtcdCluster;
use crate::haproxy::{Backend, Haproxy};
use crate::node::Node;
use crate::workdir::WorkDir;
use crate::{bins, ports, wait};

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
    ports: Option<ClusterPorts>,
    dir: Option<PathBuf>,
    haproxy_config: Option<String>,
    customize: Vec<Customize>,
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
            ports: None,
            dir: None,
            haproxy_config: None,
            customize: Vec::new(),
        }
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

    /// Use this HAProxy config text verbatim (its ports must be the
    /// `haproxy_write`/`haproxy_read` of [`ClusterSpec::fixed_ports`]).
    pub fn haproxy_config(mut self, text: &str) -> Self {
        self.haproxy_config = Some(text.to_string());
        self
    }

    /// Adjust node `i`'s config (0-based): tags, extra YAML, broken keys...
    pub fn customize(
        mut self,
        f: impl Fn(usize, NodeConfig) -> NodeConfig + Send + Sync + 'static,
    ) -> Self {
        self.customize.push(Arc::new(f));
        self
    }

    fn resolve_ports(&self) -> Result<ClusterPorts> {
        if let Some(p) = &self.ports {
            if p.pg.len() != self.nodes
                || p.api.len() != self.nodes
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
        let mut free = ports::free_ports(2 * self.etcd_members + 2 * self.nodes + 2)?.into_iter();
        let mut next = || free.next().unwrap_or(0); // exactly as many as requested
        Ok(ClusterPorts {
            etcd: (0..self.etcd_members).map(|_| (next(), next())).collect(),
            pg: (0..self.nodes).map(|_| next()).collect(),
            api: (0..self.nodes).map(|_| next()).collect(),
            haproxy_write: next(),
            haproxy_read: next(),
        })
    }
}

/// A running cluster. See the module docs for the teardown order.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order after `Drop::drop`: nodes, HAProxy, etcd, dir.
    nodes: Vec<Node>,
    haproxy: Option<Haproxy>,
    etcd: EtcdCluster,
    dir: WorkDir,
    scope: String,
    ttl: u32,
    loop_wait: u32,
    agents_started: Instant,
}

impl Cluster {
    /// Start etcd, write every node's config, start all agents at once (they
    /// race for the `initialize` key), then HAProxy. Does not wait for the
    /// cluster to form: see [`Cluster::wait_formed`].
    pub fn start(spec: ClusterSpec) -> Result<Cluster> {
        if spec.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let warden = bins::warden_bin()?;
        let ports = spec.resolve_ports()?;
        let dir = match &spec.dir {
            Some(d) => WorkDir::fixed(d)?,
            None => WorkDir::temp()?,
        };
        let etcd = EtcdCluster::start_with_ports(dir.path(), &ports.etcd)?;
        let mut nodes = Vec::new();
        for i in 0..spec.nodes {
            let name = format!("node{}", i + 1);
            let mut cfg = NodeConfig::new(
                &name,
                &dir.path().join(&name),
                ports.pg[i],
                ports.api[i],
                &etcd.hosts(),
            )
            .scope(&spec.scope)
            .ttl(spec.ttl)
            .loop_wait(spec.loop_wait)
            .retry_timeout(spec.retry_timeout);
            for f in &spec.customize {
                cfg = f(i, cfg);
            }
            nodes.push(Node::create(cfg, &warden)?);
        }
        let agents_started = Instant::now();
        for n in &mut nodes {
            n.start()?;
        }
        let haproxy = if spec.haproxy {
            let backends: Vec<Backend> = nodes
                .iter()
                .map(|n| Backend {
                    name: n.name().to_string(),
                    pg_port: n.pg_port(),
                    api_port: n.api_port(),
                })
                .collect();
            let text = match &spec.haproxy_config {
                Some(t) => t.clone(),
                None => crate::haproxy::render_config(
                    ports.haproxy_write,
                    ports.haproxy_read,
                    &backends,
                ),
            };
            Some(Haproxy::start_with_config(
                dir.path(),
                &text,
                ports.haproxy_write,
                ports.haproxy_read,
            )?)
        } else {
            None
        };
        Ok(Cluster {
            nodes,
            haproxy,
            etcd,
            dir,
            scope: spec.scope,
            ttl: spec.ttl,
            loop_wait: spec.loop_wait,
            agents_started,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl))
    }

    pub fn loop_wait(&self) -> Duration {
        Duration::from_secs(u64::from(self.loop_wait))
    }

    /// When the agents were started (the origin of time-to-formed).
    pub fn agents_started(&self) -> Instant {
        self.agents_started
    }

    pub fn etcd(&self) -> &EtcdCluster {
        &self.etcd
    }

    pub fn etcd_mut(&mut self) -> &mut EtcdCluster {
        &mut self.etcd
    }

    /// etcd key prefix of this cluster: `/service/<scope>/`.
    pub fn key_prefix(&self) -> String {
        format!("/service/{}/", self.scope)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// Index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name() == name)
    }

    pub fn haproxy(&self) -> Option<&Haproxy> {
        self.haproxy.as_ref()
    }

    /// HAProxy's write port (routes to the primary). Panics if the cluster
    /// was started without HAProxy — a test bug.
    pub fn write_port(&self) -> u16 {
        self.haproxy
            .as_ref()
            .map(Haproxy::write_port)
            .unwrap_or_else(|| {
                panic!("cluster started without haproxy");
            })
    }

    /// HAProxy's read port (balances over replicas). Panics without HAProxy.
    pub fn read_port(&self) -> u16 {
        self.haproxy
            .as_ref()
            .map(Haproxy::read_port)
            .unwrap_or_else(|| {
                panic!("cluster started without haproxy");
            })
    }

    /// `(primary index, replica indexes)` if right now exactly one node answers
    /// 200 on `/primary` and every other one 200 on `/replica`.
    pub fn formation(&self) -> Option<(usize, Vec<usize>)> {
        let mut primary = None;
        let mut replicas = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_primary() {
                if primary.replace(i).is_some() {
                    return None;
                }
            } else if n.is_replica() {
                replicas.push(i);
            } else {
                return None;
            }
        }
        primary.map(|p| (p, replicas))
    }

    /// Wait until [`Cluster::formation`] holds; returns the time since the
    /// agents were started. Panics with every log after `timeout`.
    pub fn wait_formed(&self, timeout: Duration) -> Duration {
        wait::wait_until(
            timeout,
            "cluster formed: one /primary 200, the others /replica 200",
            || self.formation(),
        );
        self.agents_started.elapsed()
    }

    /// The node answering 200 on `/primary`, if exactly one does.
    pub fn primary(&self) -> Option<&Node> {
        let mut it = self.nodes.iter().filter(|n| n.is_primary());
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }

    /// Index of the node answering 200 on `/primary`, if exactly one does.
    pub fn primary_index(&self) -> Option<usize> {
        self.primary().and_then(|p| self.index_of(p.name()))
    }

    /// Nodes answering 200 on `/replica`.
    pub fn replicas(&self) -> Vec<&Node> {
        self.nodes.iter().filter(|n| n.is_replica()).collect()
    }

    /// `GET /cluster` from the first node that answers with JSON.
    pub fn cluster_json(&self) -> Option<Value> {
        self.nodes
            .iter()
            .filter_map(|n| n.get("/cluster").ok())
            .filter(|r| r.status == 200)
            .find_map(|r| r.json().ok())
    }

    /// Wait until `/cluster` lists every node, one `leader` and all others
    /// `replica`/`sync_standby` with state `streaming`. Returns the JSON.
    pub fn wait_replicas_streaming(&self, timeout: Duration) -> Value {
        let n = self.nodes.len();
        wait::wait_until(
            timeout,
            "/cluster: one leader and all other members streaming",
            || {
                let v = self.cluster_json()?;
                let members = v["members"].as_array()?;
                let leaders = members.iter().filter(|m| m["role"] == "leader").count();
                let streaming = members
                    .iter()
                    .filter(|m| {
                        (m["role"] == "replica" || m["role"] == "sync_standby")
                            && m["state"] == "streaming"
                    })
                    .count();
                (members.len() == n && leaders == 1 && streaming == n - 1).then_some(v)
            },
        )
    }

    /// Every log file: agents, etcd, HAProxy.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = self.nodes.iter().map(Node::log_path).collect();
        logs.extend(self.etcd.log_paths());
        if let Some(h) = &self.haproxy {
            logs.push(h.log_path().to_path_buf());
        }
        logs
    }

    /// The tail of every log, for failure messages.
    pub fn dump_logs(&self) -> String {
        wait::dump_logs(&self.log_paths())
    }

    /// Graceful stop (the demo's Ctrl-C): SIGTERM replicas first, then the
    /// primary (so the shutdown causes no failover), each bounded by
    /// `timeout` and killed after it; then HAProxy and etcd. Returns each
    /// agent's name and how it ended.
    pub fn stop(&mut self, timeout: Duration) -> Vec<(String, Result<ExitStatus>)> {
        let primary = self.primary_index();
        let mut order: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| Some(i) != primary)
            .collect();
        order.extend(primary);
        let mut out = Vec::new();
        for i in order {
            let n = &mut self.nodes[i];
            let res = if n.is_running() {
                n.sigterm_and_wait(timeout)
            } else {
                n.exit_status()
                    .ok_or_else(|| anyhow::anyhow!("agent {} was not started", n.name()))
            };
            // A clean agent stop leaves no postmaster; this is a no-op then.
            n.kill_postmaster();
            out.push((n.name().to_string(), res));
        }
        if let Some(h) = self.haproxy.as_mut() {
            h.stop();
        }
        for i in 0..self.etcd.members().len() {
            self.etcd.member_mut(i).stop();
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill_agent_tree();
        }
        for n in &self.nodes {
            n.kill_postmaster();
        }
        // Then fields drop in order: nodes (already dead), HAProxy, etcd, dir.
    }
}
