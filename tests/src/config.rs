//! Patroni-format YAML for one node, as a user would write it.
//!
//! [`NodeConfig`] produces the "typical member config" of the Patroni contract
//! (same keys a Patroni user brings) for a node whose files all live in one
//! directory. Tests tweak it through [`NodeConfig::set`], [`NodeConfig::remove`]
//! and [`NodeConfig::merge_yaml`], which also serve to produce deliberately
//! broken configs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_yaml::{Mapping, Value};

/// Scope used when a test does not choose one.
pub const DEFAULT_SCOPE: &str = "warden-test";
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "postgres";
pub const REPLICATION_USER: &str = "replicator";
pub const REPLICATION_PASSWORD: &str = "replicator-secret";
pub const REWIND_USER: &str = "rewind_user";
pub const REWIND_PASSWORD: &str = "rewind-secret";
/// `redis.authentication.password` of the kit's Redis members (`requirepass`).
pub const REDIS_PASSWORD: &str = "redis-secret";

/// Warden's recommended timing (DESIGN §3), used by tests, demo and examples.
pub const DEFAULT_TTL: u32 = 10;
pub const DEFAULT_LOOP_WAIT: u32 = 1;
pub const DEFAULT_RETRY_TIMEOUT: u32 = 3;

/// PostgreSQL 15 binaries; `WARDEN_PG_BIN_DIR` overrides.
pub fn pg_bin_dir() -> PathBuf {
    std::env::var_os("WARDEN_PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// `pg_hba.conf` lines every node gets: trust only on the unix socket, and
/// passwords over TCP (what a production cluster would have).
pub const PG_HBA: &[&str] = &[
    "local all all trust",
    "host replication replicator 127.0.0.1/32 scram-sha-256",
    "host all all 127.0.0.1/32 scram-sha-256",
];

/// One change applied on top of the generated YAML, in order.
#[derive(Debug, Clone)]
enum Edit {
    /// Set a dotted path (creating maps on the way).
    Set(String, Value),
    /// Delete a dotted path.
    Remove(String),
    /// Deep-merge a YAML mapping (a `null` value deletes the key).
    Merge(Value),
}

/// Builder for one node's Patroni YAML.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub scope: String,
    pub namespace: String,
    pub name: String,
    /// `etcd3.hosts`, e.g. `127.0.0.1:2379` or a comma-separated list.
    pub etcd_hosts: String,
    pub pg_port: u16,
    pub api_port: u16,
    /// Directory holding everything of this node: `data/` (the data_dir, not
    /// created by the kit), the config, the log, the pgpass file, the socket.
    pub node_dir: PathBuf,
    pub pg_bin_dir: PathBuf,
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub tags: Mapping,
    /// A Redis member (a `redis` section instead of `postgresql`, `pg_port` being
    /// redis-server's port) serving the Sentinel port on this port.
    pub sentinel_port: Option<u16>,
    edits: Vec<Edit>,
    /// Extra environment variables for the agent (e.g. Patroni's `PATRONI_*`).
    pub env: Vec<(String, String)>,
}

impl NodeConfig {
    pub fn new(name: &str, node_dir: &Path, pg_port: u16, api_port: u16, etcd_hosts: &str) -> Self {
        NodeConfig {
            scope: DEFAULT_SCOPE.to_string(),
            namespace: "/service/".to_string(),
            name: name.to_string(),
            etcd_hosts: etcd_hosts.to_string(),
            pg_port,
            api_port,
            node_dir: node_dir.to_path_buf(),
            pg_bin_dir: pg_bin_dir(),
            ttl: DEFAULT_TTL,
            loop_wait: DEFAULT_LOOP_WAIT,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            tags: Mapping::new(),
            sentinel_port: None,
            edits: Vec::new(),
            env: Vec::new(),
        }
    }

    /// A Redis member: redis-server on `pg_port`, the Sentinel port on
    /// `sentinel_port`.
    pub fn redis(mut self, sentinel_port: u16) -> Self {
        self.sentinel_port = Some(sentinel_port);
        self
    }

    /// Sets an environment variable for the agent.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_string();
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

    /// Set a tag (`nofailover`, `noloadbalance`, `clonefrom`, `nosync`,
    /// `failover_priority`, or any user tag).
    pub fn tag(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.tags.insert(Value::from(key), value.into());
        self
    }

    /// Set the value at a dotted path, e.g. `set("restapi.listen", "x")`.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        self.edits.push(Edit::Set(path.to_string(), value.into()));
        self
    }

    /// Set the value at a dotted path from a YAML snippet, e.g.
    /// `set_yaml("postgresql.callbacks", "{on_start: /bin/true}")`.
    pub fn set_yaml(self, path: &str, yaml: &str) -> Result<Self> {
        let v: Value = serde_yaml::from_str(yaml).with_context(|| format!("parsing {yaml:?}"))?;
        Ok(self.set(path, v))
    }

    /// Delete the key at a dotted path, e.g. `remove("scope")`.
    pub fn remove(mut self, path: &str) -> Self {
        self.edits.push(Edit::Remove(path.to_string()));
        self
    }

    /// Deep-merge a YAML mapping into the config; `null` deletes a key.
    pub fn merge_yaml(mut self, yaml: &str) -> Result<Self> {
        let v: Value = serde_yaml::from_str(yaml).with_context(|| format!("parsing {yaml:?}"))?;
        if !v.is_mapping() {
            bail!("merge_yaml needs a mapping, got {yaml:?}");
        }
        self.edits.push(Edit::Merge(v));
        Ok(self)
    }

    /// `postgresql.data_dir`: `data` inside the node directory. Not created
    /// by the kit; the agent runs initdb or pg_basebackup into it.
    pub fn data_dir(&self) -> PathBuf {
        self.node_dir.join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.node_dir.join("warden.yml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.node_dir.join("warden.log")
    }

    /// `https://` once `restapi.certfile` is set (as the agent publishes it).
    pub fn api_url(&self) -> String {
        let tls = self
            .edits
            .iter()
            .any(|e| matches!(e, Edit::Set(path, _) if path == "restapi.certfile"));
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.api_port)
    }

    /// The full config as a YAML value, edits applied.
    pub fn to_value(&self) -> Result<Value> {
        let mut v = self.base();
        for e in &self.edits {
            match e {
                Edit::Set(path, value) => set_path(&mut v, path, value.clone())?,
                Edit::Remove(path) => remove_path(&mut v, path),
                Edit::Merge(overlay) => merge(&mut v, overlay.clone()),
            }
        }
        Ok(v)
    }

    /// The full config as YAML text.
    pub fn render(&self) -> Result<String> {
        serde_yaml::to_string(&self.to_value()?).context("serialising node config")
    }

    /// The `redis` section of a Redis member.
    fn redis_section(&self, sentinel_port: u16) -> Value {
        let addr = format!("127.0.0.1:{}", self.pg_port);
        map([
            ("listen", addr.as_str().into()),
            ("connect_address", addr.as_str().into()),
            ("data_dir", self.data_dir().display().to_string().into()),
            ("authentication", map([("password", REDIS_PASSWORD.into())])),
            (
                "parameters",
                // Snapshots only when asked: the tests' writes need no disk.
                map([("save", "".into()), ("appendonly", "no".into())]),
            ),
            (
                "sentinel",
                map([
                    ("listen", format!("127.0.0.1:{sentinel_port}").into()),
                    ("master_name", "mymaster".into()),
                ]),
            ),
        ])
    }

    fn base(&self) -> Value {
        let api = format!("127.0.0.1:{}", self.api_port);
        let pg = format!("127.0.0.1:{}", self.pg_port);
        let dir = self.node_dir.display().to_string();
        let parameters = map([
            ("wal_level", "replica".into()),
            ("hot_standby", "on".into()),
            ("max_wal_senders", 10.into()),
            ("max_replication_slots", 10.into()),
            ("wal_log_hints", "on".into()),
        ]);
        let dcs = map([
            ("ttl", self.ttl.into()),
            ("loop_wait", self.loop_wait.into()),
            ("retry_timeout", self.retry_timeout.into()),
            ("maximum_lag_on_failover", 1_048_576.into()),
            (
                "postgresql",
                map([
                    ("use_pg_rewind", true.into()),
                    ("use_slots", true.into()),
                    ("parameters", parameters),
                ]),
            ),
        ]);
        let initdb = Value::Sequence(vec![
            map([("encoding", "UTF8".into())]),
            "data-checksums".into(),
        ]);
        let user = |u: &str, p: &str| map([("username", u.into()), ("password", p.into())]);
        let mut tags = map([
            ("nofailover", false.into()),
            ("noloadbalance", false.into()),
            ("clonefrom", false.into()),
            ("nosync", false.into()),
        ]);
        if let Value::Mapping(t) = &mut tags {
            for (k, v) in &self.tags {
                t.insert(k.clone(), v.clone());
            }
        }
        if let Some(sentinel_port) = self.sentinel_port {
            let dcs = map([
                ("ttl", self.ttl.into()),
                ("loop_wait", self.loop_wait.into()),
                ("retry_timeout", self.retry_timeout.into()),
                // Bytes of replication offset.
                ("maximum_lag_on_failover", 1_048_576.into()),
            ]);
            return map([
                ("scope", self.scope.as_str().into()),
                ("namespace", self.namespace.as_str().into()),
                ("name", self.name.as_str().into()),
                ("log", map([("level", "INFO".into())])),
                (
                    "restapi",
                    map([
                        ("listen", api.as_str().into()),
                        ("connect_address", api.as_str().into()),
                    ]),
                ),
                ("etcd3", map([("hosts", self.etcd_hosts.as_str().into())])),
                ("bootstrap", map([("dcs", dcs)])),
                ("redis", self.redis_section(sentinel_port)),
                ("tags", tags),
            ]);
        }
        map([
            ("scope", self.scope.as_str().into()),
            ("namespace", self.namespace.as_str().into()),
            ("name", self.name.as_str().into()),
            ("log", map([("level", "INFO".into())])),
            (
                "restapi",
                map([
                    ("listen", api.as_str().into()),
                    ("connect_address", api.as_str().into()),
                ]),
            ),
            ("etcd3", map([("hosts", self.etcd_hosts.as_str().into())])),
            ("bootstrap", map([("dcs", dcs), ("initdb", initdb)])),
            (
                "postgresql",
                map([
                    ("listen", pg.as_str().into()),
                    ("connect_address", pg.as_str().into()),
                    ("data_dir", self.data_dir().display().to_string().into()),
                    ("bin_dir", self.pg_bin_dir.display().to_string().into()),
                    ("pgpass", format!("{dir}/pgpass").into()),
                    (
                        "authentication",
                        map([
                            ("superuser", user(SUPERUSER, SUPERUSER_PASSWORD)),
                            ("replication", user(REPLICATION_USER, REPLICATION_PASSWORD)),
                            ("rewind", user(REWIND_USER, REWIND_PASSWORD)),
                        ]),
                    ),
                    // The socket lives in the node directory: /var/run/postgresql
                    // may not exist or belong to a system cluster.
                    (
                        "parameters",
                        map([("unix_socket_directories", dir.as_str().into())]),
                    ),
                    (
                        "pg_hba",
                        Value::Sequence(PG_HBA.iter().map(|&l| l.into()).collect()),
                    ),
                ]),
            ),
            ("tags", tags),
        ])
    }
}

/// A mapping from string keys, in the given order.
fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// Deep merge: mappings merge key by key, a `null` overlay value deletes the
/// key, anything else replaces.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(existing) = b.get_mut(&k) {
                    merge(existing, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn set_path(root: &mut Value, path: &str, value: Value) -> Result<()> {
    let mut cur = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Value::Mapping(m) = cur else {
            bail!("cannot set {path}: {part} is under a non-mapping value");
        };
        let key = Value::from(part);
        if parts.peek().is_none() {
            m.insert(key, value);
            return Ok(());
        }
        cur = m
            .entry(key)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    bail!("empty path")
}

fn remove_path(root: &mut Value, path: &str) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let mut cur = root;
    for part in parent.into_iter().flat_map(|p| p.split('.')) {
        match cur.get_mut(part) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Mapping(m) = cur {
        m.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig::new(
            "node1",
            Path::new("/tmp/w/node1"),
            15432,
            8008,
            "127.0.0.1:2379",
        )
    }

    #[test]
    fn base_config_has_the_contract_shape() {
        let v = cfg().to_value().unwrap();
        assert_eq!(v["scope"], "warden-test");
        assert_eq!(v["namespace"], "/service/");
        assert_eq!(v["name"], "node1");
        assert_eq!(v["restapi"]["listen"], "127.0.0.1:8008");
        assert_eq!(v["etcd3"]["hosts"], "127.0.0.1:2379");
        let dcs = &v["bootstrap"]["dcs"];
        assert_eq!(dcs["ttl"], 10);
        assert_eq!(dcs["loop_wait"], 1);
        assert_eq!(dcs["retry_timeout"], 3);
        assert_eq!(dcs["postgresql"]["use_pg_rewind"], true);
        assert_eq!(dcs["postgresql"]["parameters"]["wal_log_hints"], "on");
        assert_eq!(v["bootstrap"]["initdb"][0]["encoding"], "UTF8");
        assert_eq!(v["bootstrap"]["initdb"][1], "data-checksums");
        let pg = &v["postgresql"];
        assert_eq!(pg["listen"], "127.0.0.1:15432");
        assert_eq!(pg["data_dir"], "/tmp/w/node1/data");
        assert_eq!(pg["parameters"]["unix_socket_directories"], "/tmp/w/node1");
        assert_eq!(pg["authentication"]["superuser"]["username"], "postgres");
        assert_eq!(
            pg["authentication"]["replication"]["username"],
            "replicator"
        );
        assert_eq!(
            pg["pg_hba"][1],
            "host replication replicator 127.0.0.1/32 scram-sha-256"
        );
        assert_eq!(v["tags"]["nofailover"], false);
    }

    #[test]
    fn rendered_yaml_round_trips() {
        let text = cfg().render().unwrap();
        let back: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, cfg().to_value().unwrap());
        assert!(text.starts_with("scope: warden-test\n"), "{text}");
    }

    #[test]
    fn edits_apply_in_order() {
        let v = cfg()
            .ttl(30)
            .tag("nofailover", true)
            .tag("failover_priority", 0)
            .set("restapi.lisen", "127.0.0.1:1")
            .set("bootstrap.dcs.ttl", 1)
            .remove("scope")
            .remove("no.such.key")
            .merge_yaml("postgresql: {parameters: {max_connections: 50}, pgpass: null}")
            .unwrap()
            .set_yaml("postgresql.callbacks", "{on_start: /bin/true}")
            .unwrap()
            .to_value()
            .unwrap();
        assert!(v.get("scope").is_none());
        assert_eq!(v["restapi"]["lisen"], "127.0.0.1:1");
        assert_eq!(v["restapi"]["listen"], "127.0.0.1:8008");
        assert_eq!(v["bootstrap"]["dcs"]["ttl"], 1);
        assert_eq!(v["tags"]["nofailover"], true);
        assert_eq!(v["tags"]["failover_priority"], 0);
        assert_eq!(v["postgresql"]["parameters"]["max_connections"], 50);
        assert_eq!(
            v["postgresql"]["parameters"]["unix_socket_directories"],
            "/tmp/w/node1"
        );
        assert!(v["postgresql"].get("pgpass").is_none());
        assert_eq!(v["postgresql"]["callbacks"]["on_start"], "/bin/true");
    }

    #[test]
    fn set_through_a_scalar_is_an_error() {
        let c = cfg().set("scope.x", 1);
        assert!(c.to_value().is_err());
    }
}
