//! A whole local cluster: etcd + N nodes (each a `warden` agent owning a
//! PostgreSQL) + HAProxy, on loopback ports, in one directory.
//!
//! Dropping a [`Cluster`] kills everything in an order that cannot cause a
//! spurious failover or leave a process behind: every agent first (so none
//! reacts to another's PostgreSQL dying), then every postmaster, then
//! HAProxy, then etcd, then the directory is removed.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::config::NodeConfig;
use crate::etcd::EtcdCluster;
use crate::haproxy::{Backend, Haproxy};
use crate::node::Node;
use crate::observe::{KeyWatch, PrimaryWatch};
use crate::tls::TlsMaterial;
use crate::workdir::WorkDir;
use crate::{bins, sql, wait};

mod proxies;
mod spec;
pub use proxies::NodeProxies;
pub use spec::{ClusterPorts, ClusterSpec};

/// What [`Cluster::assert_converged`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converged {
    /// Index of the one writable primary.
    pub primary: usize,
    /// Its timeline, which every replica follows.
    pub timeline: u64,
    /// Time the check took (waiting included).
    pub took: Duration,
}

impl Converged {
    /// `(primary, every other node)` of `cluster`, by index.
    pub fn primary_and_replicas(&self, cluster: &Cluster) -> (usize, Vec<usize>) {
        let others = (0..cluster.nodes().len())
            .filter(|&i| i != self.primary)
            .collect();
        (self.primary, others)
    }
}

/// A running cluster. See the module docs for the teardown order.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order after `Drop::drop`: nodes, proxies, HAProxy,
    // etcd, dir. Proxies go after the agents are dead, so closing them cannot
    // make a live agent lose etcd.
    nodes: Vec<Node>,
    proxies: Vec<NodeProxies>,
    haproxy: Option<Haproxy>,
    etcd: EtcdCluster,
    /// Certificates when any part runs over TLS; files live in `dir`.
    tls: Option<TlsMaterial>,
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
        let tls = if spec.any_tls() {
            Some(TlsMaterial::create(&dir.path().join("tls"))?)
        } else {
            None
        };
        let etcd_tls = match (&tls, spec.etcd_tls) {
            (Some(t), true) => Some(crate::etcd::EtcdTlsFiles {
                ca: t.ca.cert.clone(),
                server: t.server.clone(),
                // No CN: etcd's gateway refuses CN certificates once RBAC is on.
                client: t.ca.client("")?,
            }),
            _ => None,
        };
        let etcd = EtcdCluster::start_with_ports_tls(dir.path(), &ports.etcd, etcd_tls.as_ref())?;
        // etcd over TLS also gets RBAC: agents log in as a user limited to the prefix.
        let agent_client = match (&tls, spec.etcd_tls) {
            (Some(t), true) => {
                etcd.enable_auth(&crate::etcd::rbac_users(&spec.scope))?;
                Some((t.ca.cert.clone(), t.ca.client(crate::etcd::AGENT_USER)?))
            }
            _ => None,
        };
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
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
            if spec.redis {
                cfg = cfg.redis(ports.sentinel[i]);
            }
            if let Some((ca, client)) = &agent_client {
                cfg = crate::etcd::agent_tls_config(cfg, ca, client);
            }
            if spec.proxies {
                let p = NodeProxies::start(&etcd, ports.pg[i], ports.api[i])?;
                cfg = p.route(cfg);
                proxies.push(p);
            }
            if let (true, Some(t)) = (spec.pg_tls, &tls) {
                cfg = pg_tls(cfg, t);
            }
            if let (true, Some(t)) = (spec.rest_tls, &tls) {
                cfg = rest_tls(cfg, t);
            }
            if let (true, Some(t)) = (spec.redis_tls, &tls) {
                cfg = redis_tls(cfg, t);
            }
            for f in &spec.customize {
                cfg = f(i, cfg);
            }
            nodes.push(Node::create(cfg, &warden)?);
        }
        if let (Some(t), true) = (&tls, spec.rest_tls) {
            // The kit's own REST calls (crate::http) trust the cluster CA and present
            // its root client certificate.
            crate::http::use_tls(&t.ca.cert, &t.root_client)?;
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
            let check_tls = match (&tls, spec.rest_tls) {
                (Some(t), true) => Some(haproxy_check_tls(dir.path(), t)?),
                _ => None,
            };
            let text = match &spec.haproxy_config {
                Some(t) => t.clone(),
                None => crate::haproxy::render_config_with_tls(
                    ports.haproxy_write,
                    ports.haproxy_read,
                    &backends,
                    check_tls.as_ref(),
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
            proxies,
            haproxy,
            etcd,
            tls,
            dir,
            scope: spec.scope,
            ttl: spec.ttl,
            loop_wait: spec.loop_wait,
            agents_started,
        })
    }

    /// The cluster's certificates, when it runs anything over TLS.
    pub fn tls(&self) -> Option<&TlsMaterial> {
        self.tls.as_ref()
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

    /// Write a patronictl/wardenctl config for this cluster to `path`: the scope, the
    /// etcd hosts, and whatever TLS the cluster runs — etcd over https (the CA, the
    /// kit's CN-less client certificate, which etcd's JSON gateway that patronictl
    /// uses requires once RBAC is on, and the agents' user), and the REST API's `ctl`
    /// side (the CA and the root client certificate).
    pub fn write_ctl_config(&self, path: &Path) -> Result<()> {
        let mut text = format!(
            "scope: {}\netcd3:\n  hosts: {}\n",
            self.scope,
            self.etcd.hosts()
        );
        if let Some(etcd) = self.etcd.tls_files() {
            text.push_str(&format!(
                "  protocol: https\n  cacert: {}\n  cert: {}\n  key: {}\n  username: {}\n  \
                 password: {}\n",
                etcd.ca.display(),
                etcd.client.cert.display(),
                etcd.client.key.display(),
                crate::etcd::AGENT_USER,
                crate::etcd::AGENT_PASSWORD,
            ));
        }
        let rest_tls = self.nodes.iter().any(|n| n.api_url().starts_with("https"));
        if let (true, Some(tls)) = (rest_tls, &self.tls) {
            text.push_str(&format!(
                "ctl:\n  cacert: {}\n  certfile: {}\n  keyfile: {}\n",
                tls.ca.cert.display(),
                tls.root_client.cert.display(),
                tls.root_client.key.display()
            ));
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
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

    /// Node `i`'s proxies. Panics unless the cluster was started
    /// [`ClusterSpec::with_proxies`] — a test bug.
    pub fn proxies(&self, i: usize) -> &NodeProxies {
        self.proxies.get(i).unwrap_or_else(|| {
            panic!("cluster started without proxies (ClusterSpec::with_proxies)");
        })
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

    /// `GET /cluster` from the first node that answers with one, typed.
    pub fn cluster_status(&self) -> Option<warden_api::ClusterStatus> {
        self.nodes.iter().find_map(Node::cluster_status)
    }

    /// Wait until `/cluster` lists every node, one `leader` and all others
    /// (`replica`, `sync_standby`, `quorum_standby`) with state `streaming`.
    /// Returns the JSON.
    pub fn wait_replicas_streaming(&self, timeout: Duration) -> Value {
        let n = self.nodes.len();
        wait::wait_until(
            timeout,
            "/cluster: one leader and all other members streaming",
            || {
                let v = self.cluster_json()?;
                let c = warden_api::ClusterStatus::from_json(&v).ok()?;
                let leaders = c.members.iter().filter(|m| m.is_leader()).count();
                let streaming = c
                    .members
                    .iter()
                    .filter(|m| !m.is_leader() && m.is_streaming())
                    .count();
                (c.members.len() == n && leaders == 1 && streaming == n - 1).then_some(v)
            },
        )
    }

    /// The `members/<name>` JSON as stored in etcd, `None` if absent or unreadable.
    pub fn member_key(&self, name: &str) -> Option<Value> {
        let kv = self
            .etcd()
            .get(&format!("{}members/{name}", self.key_prefix()))
            .ok()??;
        serde_json::from_str(&kv.value).ok()
    }

    /// The `sync` key's JSON, `None` if absent or unreadable.
    pub fn sync_key(&self) -> Option<Value> {
        let kv = self
            .etcd()
            .get(&format!("{}sync", self.key_prefix()))
            .ok()??;
        serde_json::from_str(&kv.value).ok()
    }

    /// Waits until `/sync` names exactly one synchronous standby of `leader` and the
    /// leader's PostgreSQL reports that standby as `sync`; returns its name.
    pub fn wait_sync_standby(&self, leader: &str, timeout: Duration) -> String {
        wait::wait_until(timeout, "one confirmed synchronous standby", || {
            let key = self.sync_key()?;
            if key["leader"] != leader {
                return None;
            }
            let standby = key["sync_standby"].as_str()?.to_string();
            let port = self.node(self.index_of(leader)?).pg_port();
            let state = sql::query_text(
                port,
                &format!(
                    "SELECT sync_state FROM pg_stat_replication \
                     WHERE application_name = '{standby}'"
                ),
            )
            .ok()??;
            (state == "sync").then_some(standby)
        })
    }

    /// Every node has a member key and it satisfies `check`.
    pub fn every_member(&self, check: impl Fn(&Value) -> bool) -> bool {
        self.nodes
            .iter()
            .all(|n| self.member_key(n.name()).is_some_and(|m| check(&m)))
    }

    /// Waits until [`Cluster::every_member`] holds (e.g. every member flags
    /// `pending_restart`); panics with the logs after `timeout`.
    pub fn wait_every_member(&self, timeout: Duration, what: &str, check: impl Fn(&Value) -> bool) {
        wait::wait_until(timeout, what, || self.every_member(&check).then_some(()));
    }

    pub fn leader_key(&self) -> Result<Option<crate::etcd::KeyValue>> {
        self.etcd.get(&format!("{}leader", self.key_prefix()))
    }

    /// Start polling every node's `/primary` in the background.
    pub fn watch_primaries(&self) -> PrimaryWatch {
        let nodes: Vec<(String, String)> = self
            .nodes
            .iter()
            .map(|n| (n.name().to_string(), n.api_url()))
            .collect();
        PrimaryWatch::start(&nodes)
    }

    /// Start polling the leader key in the background.
    pub fn watch_leader_key(&self) -> KeyWatch {
        KeyWatch::start(&self.etcd, &format!("{}leader", self.key_prefix()))
    }

    /// The leader key's `(holder, create_revision)`, waiting up to `timeout`
    /// for it to be held by someone.
    pub fn wait_leader(&self, timeout: Duration) -> (String, i64) {
        wait::wait_until(timeout, "leader key held", || {
            self.leader_key()
                .ok()
                .flatten()
                .map(|kv| (kv.value, kv.create_revision))
        })
    }

    /// Check, waiting at most `timeout`, that the cluster has converged:
    ///
    /// * exactly one node answers 200 on `/primary`, every other one 200 on
    ///   `/replica`, and the leader key names that node;
    /// * a row written on the primary (directly, on its real port) appears on
    ///   every other node;
    /// * every other node's `/patroni` says `replication_state: streaming` on
    ///   the primary's timeline, and the primary's `pg_stat_replication`
    ///   lists each of them (by `application_name`) as `streaming`;
    /// * still the same single primary at the end.
    ///
    /// Panics with every log otherwise. Tests end with this.
    pub fn assert_converged(&self, timeout: Duration) -> Converged {
        let start = Instant::now();
        let left = || timeout.saturating_sub(start.elapsed());
        let (p, replicas) = wait::wait_until(
            left(),
            "converged: one /primary 200, the others /replica 200",
            || self.formation(),
        );
        let primary = &self.nodes[p];
        let port = primary.pg_port();
        let token = format!(
            "converged-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        wait::wait_until(
            left(),
            &format!("a write on the primary {}", primary.name()),
            || {
                sql::execute(
                    port,
                    &format!(
                        "CREATE TABLE IF NOT EXISTS warden_converged \
                         (token text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now()); \
                         INSERT INTO warden_converged (token) VALUES ('{token}')"
                    ),
                )
                .ok()
            },
        );
        let timeline = wait::wait_until(
            left(),
            &format!("{} reports role primary with a timeline", primary.name()),
            || {
                let v = primary.patroni()?;
                (v.role == "primary").then_some(())?;
                v.timeline.map(u64::from)
            },
        );
        let holder = wait::wait_until(left(), "leader key readable", || self.leader_key().ok())
            .map(|kv| kv.value);
        assert_eq!(
            holder.as_deref(),
            Some(primary.name()),
            "leader key does not name the node answering /primary\n{}",
            self.dump_logs()
        );
        for &r in &replicas {
            let n = &self.nodes[r];
            let what = format!(
                "{} streams from {} on timeline {timeline} and has the row {token}",
                n.name(),
                primary.name()
            );
            wait::wait_until(left(), &what, || {
                let v = n.patroni()?;
                let ok = v.role == "replica"
                    && v.replication_state.as_deref() == Some("streaming")
                    && v.timeline.map(u64::from) == Some(timeline);
                ok.then_some(())?;
                let q =
                    format!("SELECT count(*)::text FROM warden_converged WHERE token = '{token}'");
                (sql::query_text(n.pg_port(), &q).ok()??.as_str() == "1").then_some(())?;
                sql::is_in_recovery(n.pg_port()).ok()?.then_some(())
            });
        }
        let names: Vec<&str> = replicas.iter().map(|&r| self.nodes[r].name()).collect();
        wait::wait_until(
            left(),
            &format!("{} lists {names:?} as streaming", primary.name()),
            || {
                let mut c = sql::connect(port).ok()?;
                let rows = c
                    .query(
                        "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
                        &[],
                    )
                    .ok()?;
                let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                names
                    .iter()
                    .all(|n| got.iter().any(|g| g == n))
                    .then_some(())
            },
        );
        let again = self.formation();
        assert_eq!(
            again.as_ref().map(|(q, _)| *q),
            Some(p),
            "the primary changed while checking convergence\n{}",
            self.dump_logs()
        );
        Converged {
            primary: p,
            timeline,
            took: start.elapsed(),
        }
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
        crate::ipc::sweep_postgres_orphans();
        // Then fields drop in order: nodes (already dead), HAProxy, etcd, dir.
    }
}

/// The REST API over https: the loopback server certificate, client certificates
/// required (checked against the cluster CA), and the `ctl` side members and
/// wardenctl/patronictl use to call each other (CA + the root client certificate).
fn rest_tls(cfg: NodeConfig, tls: &TlsMaterial) -> NodeConfig {
    let ca = tls.ca.cert.display().to_string();
    cfg.set("restapi.certfile", tls.server.cert.display().to_string())
        .set("restapi.keyfile", tls.server.key.display().to_string())
        .set("restapi.cafile", ca.as_str())
        .set("restapi.verify_client", "required")
        .set("ctl.cacert", ca.as_str())
        .set("ctl.certfile", tls.root_client.cert.display().to_string())
        .set("ctl.keyfile", tls.root_client.key.display().to_string())
}

/// HAProxy's `check-ssl` files: the CA and one PEM holding the client certificate and
/// its key (HAProxy's `crt` format).
fn haproxy_check_tls(dir: &Path, tls: &TlsMaterial) -> Result<crate::haproxy::CheckTls> {
    let crt = dir.join("tls").join("haproxy-client.pem");
    let mut pem = std::fs::read(&tls.root_client.cert)?;
    pem.extend(std::fs::read(&tls.root_client.key)?);
    std::fs::write(&crt, pem)?;
    Ok(crate::haproxy::CheckTls {
        ca_file: tls.ca.cert.clone(),
        crt,
    })
}

/// Redis over TLS: redis-server's port speaks only TLS with client certificates from
/// the cluster CA required (`auth_clients` defaults to yes; the agent and replicas
/// present the loopback certificate, which is also a client certificate), and the
/// Sentinel port speaks only TLS and requires a client certificate too.
fn redis_tls(cfg: NodeConfig, tls: &TlsMaterial) -> NodeConfig {
    let ca = tls.ca.cert.display().to_string();
    let cert = tls.server.cert.display().to_string();
    let key = tls.server.key.display().to_string();
    cfg.set("redis.tls.cert_file", cert.as_str())
        .set("redis.tls.key_file", key.as_str())
        .set("redis.tls.ca_file", ca.as_str())
        .set("redis.sentinel.tls.cert_file", cert.as_str())
        .set("redis.sentinel.tls.key_file", key.as_str())
        .set("redis.sentinel.tls.client_ca_file", ca.as_str())
        .set("redis.sentinel.tls.require_client_cert", true)
}

/// PostgreSQL over TLS: the server certificate (its key is 0600 and owned by
/// `postgres`, outside the data directory that initdb and clones recreate),
/// replication only over TLS (a plain replication connection is rejected), and every
/// role of the agent connecting with `verify-full` against the cluster CA. The kit's
/// own SQL (plain, `NoTls`) stays allowed for non-replication connections.
fn pg_tls(cfg: NodeConfig, tls: &TlsMaterial) -> NodeConfig {
    let ca = tls.ca.cert.display().to_string();
    let hba: Vec<serde_yaml::Value> = [
        "local all all trust",
        "hostnossl replication all 127.0.0.1/32 reject",
        "hostssl replication replicator 127.0.0.1/32 scram-sha-256",
        "host all all 127.0.0.1/32 scram-sha-256",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    let mut cfg = cfg
        .set("postgresql.parameters.ssl", "on")
        .set(
            "postgresql.parameters.ssl_cert_file",
            tls.server.cert.display().to_string(),
        )
        .set(
            "postgresql.parameters.ssl_key_file",
            tls.server.key.display().to_string(),
        )
        .set("postgresql.parameters.ssl_ca_file", ca.as_str())
        .set("postgresql.pg_hba", serde_yaml::Value::Sequence(hba));
    for role in ["superuser", "replication", "rewind"] {
        cfg = cfg
            .set(
                &format!("postgresql.authentication.{role}.sslmode"),
                "verify-full",
            )
            .set(
                &format!("postgresql.authentication.{role}.sslrootcert"),
                ca.as_str(),
            );
    }
    cfg
}
