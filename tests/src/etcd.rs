//! Real etcd for tests: a single member ([`Etcd`]) or a 3-member cluster
//! ([`EtcdCluster`]) whose members can be killed and restarted one by one.
//!
//! Every URL is explicit (no defaults on 2379/2380), so clusters of parallel
//! tests never meet. Readiness is etcd's own `GET /health`, polled with a
//! deadline. Keys are read through etcd's v3 JSON gateway, so tests can check what
//! agents wrote without an etcd client library: over plain HTTP, or, for a cluster
//! started with [`EtcdTlsFiles`], over https with the kit's own client
//! certificate and, once RBAC is on, a token of etcd's root user.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::process::Managed;
use crate::tls::CertFiles;
use crate::{bins, http, ports, wait};

/// What an etcd started over TLS uses: clients must present a certificate signed
/// by `ca`; `server` is what etcd serves; `client` is the kit's own, without a CN
/// (see [`RootLogin`]).
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub server: CertFiles,
    pub client: CertFiles,
}

/// The etcd user agents of a [`crate::ClusterSpec::with_etcd_tls`] cluster log in as
/// (its role: readwrite on the cluster's prefix only).
pub const AGENT_USER: &str = "warden";
pub const AGENT_PASSWORD: &str = "warden-etcd-pw";
/// A user whose role covers another prefix only (`/elsewhere/`): permission tests.
pub const STRANGER_USER: &str = "stranger";
pub const STRANGER_PASSWORD: &str = "stranger-etcd-pw";

/// An etcd user and the key prefix its role may read and write.
#[derive(Debug, Clone)]
pub struct EtcdUserSpec {
    pub name: String,
    pub password: String,
    pub prefix: String,
}

/// Bound for a fresh member or cluster to report healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One etcd member: its ports, its files and (while running) its process.
#[derive(Debug)]
pub struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    initial_cluster: String,
    token: String,
    tls: Option<EtcdTlsFiles>,
    proc: Option<Managed>,
}

impl EtcdMember {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// `http://127.0.0.1:<client port>` (`https://` over TLS).
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// `127.0.0.1:<client port>`, the form `etcd3.hosts` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Start the process (again). An existing data dir makes etcd ignore the
    /// initial-cluster flags and rejoin with its stored membership.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("etcd member {} is already running", self.name);
        }
        let mut cmd = Command::new(bins::tool("etcd")?);
        // Our own environment must not configure etcd behind our back.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        let client = self.client_url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // etcd says nothing useful at warn level about refused handshakes.
            .args(self.tls.iter().flat_map(|t| {
                [
                    "--cert-file".into(),
                    t.server.cert.clone().into_os_string(),
                    "--key-file".into(),
                    t.server.key.clone().into_os_string(),
                    "--client-cert-auth".into(),
                    "--trusted-ca-file".into(),
                    t.ca.clone().into_os_string(),
                    // Auth tokens die after 2 idle seconds instead of 300, so clients
                    // that pause between requests (agents between turns, the kit between
                    // polls) must re-authenticate all the time, not once in five minutes.
                    "--auth-token-ttl".into(),
                    "2".into(),
                ]
            }))
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            // Info level is a page per start; failure dumps need the agents' lines.
            .args(["--log-level", "warn"]);
        self.proc = Some(Managed::spawn(
            &format!("etcd {}", self.name),
            &mut cmd,
            &self.log,
        )?);
        wait::register_log(&self.log);
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Managed::is_running)
    }

    pub fn pid(&self) -> Option<i32> {
        self.proc.as_ref().map(Managed::pid)
    }

    /// Send `sig` to the member (SIGSTOP/SIGCONT to freeze it, for example).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        match &self.proc {
            Some(p) => p.signal(sig),
            None => bail!("etcd member {} was never started", self.name),
        }
    }

    /// SIGKILL the member (its data dir stays, so it can be restarted).
    pub fn kill(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill_tree();
        }
    }

    /// SIGTERM, waiting up to 10 s, then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.stop(Signal::SIGTERM, Duration::from_secs(10));
        }
    }

    /// `GET /health` answers `{"health":"true"}`.
    pub fn is_healthy(&self) -> bool {
        let url = format!("{}/health", self.client_url());
        let body = match &self.tls {
            Some(t) => tls_agent(t)
                .and_then(|a| tls_request(&a, &url, None, None))
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|(_, b)| b),
            None => http::get(&url).ok().map(|r| r.body),
        };
        body.and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .is_some_and(|v| v["health"] == "true")
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
        wait::unregister_log(&self.log);
    }
}

/// One key-value pair as stored in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Lease id, 0 when the key is not leased.
    pub lease: i64,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// An etcd cluster of one or more members on loopback.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    /// Once RBAC is on: root's password and the current token for gateway requests.
    root: Arc<Mutex<Option<RootLogin>>>,
}

/// etcd's gateway never maps a client certificate's CN to a user (CVE-2018-16886):
/// with RBAC on it refuses any certificate that has a CN, so the kit presents one
/// without a CN and logs in as root with a password, keeping the token it gets.
#[derive(Debug, Clone)]
struct RootLogin {
    password: String,
    token: Option<String>,
}

impl EtcdCluster {
    /// Start `size` members on fresh ports under `dir` and wait until every
    /// one reports healthy.
    pub fn start(dir: &Path, size: usize) -> Result<EtcdCluster> {
        let ports = ports::free_ports(size * 2)?;
        let pairs: Vec<(u16, u16)> = ports.chunks(2).map(|c| (c[0], c[1])).collect();
        Self::start_with_ports(dir, &pairs)
    }

    /// Start one member per `(client port, peer port)` pair under `dir`.
    pub fn start_with_ports(dir: &Path, ports: &[(u16, u16)]) -> Result<EtcdCluster> {
        Self::start_with_ports_tls(dir, ports, None)
    }

    /// Like [`EtcdCluster::start_with_ports`]; with `tls`, clients speak https and must
    /// present a certificate signed by its CA (peers stay on loopback http).
    pub fn start_with_ports_tls(
        dir: &Path,
        ports: &[(u16, u16)],
        tls: Option<&EtcdTlsFiles>,
    ) -> Result<EtcdCluster> {
        if ports.is_empty() {
            bail!("an etcd cluster needs at least one member");
        }
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("etcd{}=http://127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        // Unique per cluster so members of different tests can never join
        // each other even if a port were reused.
        let token = format!("warden-{}-{}", std::process::id(), ports[0].0);
        let mut members = Vec::new();
        for (i, &(client_port, peer_port)) in ports.iter().enumerate() {
            let name = format!("etcd{}", i + 1);
            let data_dir = dir.join(format!("{name}.data"));
            members.push(EtcdMember {
                log: dir.join(format!("{name}.log")),
                name,
                client_port,
                peer_port,
                data_dir,
                initial_cluster: initial_cluster.clone(),
                token: token.clone(),
                tls: tls.cloned(),
                proc: None,
            });
        }
        let mut cluster = EtcdCluster {
            members,
            root: Arc::new(Mutex::new(None)),
        };
        for m in &mut cluster.members {
            m.start()?;
        }
        cluster.wait_healthy(START_TIMEOUT)?;
        Ok(cluster)
    }

    /// Poll until every running member is healthy; an error naming the
    /// unhealthy members (with their logs) after `timeout`.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let ok = wait::poll_until(timeout, || {
            let mut all = true;
            for m in &mut self.members {
                if m.is_running() {
                    all &= m.is_healthy();
                } else if m.proc.is_some() {
                    return Some(false); // exited: no point in waiting
                }
            }
            all.then_some(true)
        });
        if ok != Some(true) {
            let bad: Vec<String> = self
                .members
                .iter_mut()
                .filter(|m| !m.is_healthy())
                .map(|m| m.name.clone())
                .collect();
            let logs: Vec<PathBuf> = self.members.iter().map(|m| m.log.clone()).collect();
            bail!(
                "etcd not healthy within {timeout:?}: {bad:?}\n{}",
                wait::dump_logs(&logs)
            );
        }
        Ok(())
    }

    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    pub fn member(&self, i: usize) -> &EtcdMember {
        &self.members[i]
    }

    pub fn member_mut(&mut self, i: usize) -> &mut EtcdMember {
        &mut self.members[i]
    }

    /// `etcd3.hosts` for an agent: every member, comma-separated.
    pub fn hosts(&self) -> String {
        self.members
            .iter()
            .map(EtcdMember::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first member's client URL (what patronictl's `-d etcd3://` gets).
    pub fn client_url(&self) -> String {
        self.members[0].client_url()
    }

    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.members.iter().map(|m| m.log.clone()).collect()
    }

    /// Turns on etcd's RBAC: a `root` user (the kit logs in as it for its own reads),
    /// and for each of `users` a user whose role may read and write only its prefix.
    /// Then `auth enable`.
    pub fn enable_auth(&self, users: &[EtcdUserSpec]) -> Result<()> {
        // Only the kit knows root's password; it never reaches a node's config.
        let root_password = format!("root-{}", std::process::id());
        self.gateway(
            "/v3/auth/user/add",
            &json!({"name": "root", "password": root_password}),
        )?;
        self.gateway(
            "/v3/auth/user/grant",
            &json!({"user": "root", "role": "root"}),
        )?;
        for u in users {
            self.gateway("/v3/auth/role/add", &json!({"name": u.name}))?;
            self.gateway(
                "/v3/auth/role/grant",
                &json!({"name": u.name, "perm": {
                    "permType": "READWRITE",
                    "key": B64.encode(&u.prefix),
                    "range_end": B64.encode(prefix_end(&u.prefix)),
                }}),
            )?;
            self.gateway(
                "/v3/auth/user/add",
                &json!({"name": u.name, "password": u.password}),
            )?;
            self.gateway(
                "/v3/auth/user/grant",
                &json!({"user": u.name, "role": u.name}),
            )?;
        }
        self.gateway("/v3/auth/enable", &json!({}))?;
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = Some(RootLogin {
            password: root_password,
            token: None,
        });
        Ok(())
    }

    /// Log in as `user` through the first member's gateway (TLS clusters); the token.
    pub fn authenticate(&self, user: &str, password: &str) -> Result<String> {
        let tls = self.tls_files().context("etcd is not running over TLS")?;
        let url = format!("{}/v3/auth/authenticate", self.members[0].client_url());
        let body = json!({"name": user, "password": password});
        match tls_request(&tls_agent(tls)?, &url, Some(&body), None)? {
            (200, b) => serde_json::from_str::<Value>(&b)?["token"]
                .as_str()
                .map(str::to_string)
                .context("no token in the answer"),
            (status, b) => bail!("authenticate {user}: {status} {b}"),
        }
    }

    /// Read `key` with `token` through the first member's gateway: `(status, body)`.
    pub fn range_with_token(&self, key: &str, token: &str) -> Result<(u16, String)> {
        let tls = self.tls_files().context("etcd is not running over TLS")?;
        let url = format!("{}/v3/kv/range", self.members[0].client_url());
        tls_request(
            &tls_agent(tls)?,
            &url,
            Some(&json!({"key": B64.encode(key)})),
            Some(token),
        )
    }

    /// The TLS files of an etcd started over TLS: the CA and the kit's CN-less client
    /// certificate (what a gateway client such as patronictl can present too).
    pub fn tls_files(&self) -> Option<&EtcdTlsFiles> {
        self.members.first().and_then(|m| m.tls.as_ref())
    }

    /// A reader of this cluster's keys that owns what it needs (URLs, TLS, root's
    /// login), for observer threads that must not borrow the cluster.
    pub fn reader(&self) -> Gateway {
        Gateway {
            urls: self.members.iter().map(EtcdMember::client_url).collect(),
            tls: self.tls_files().cloned(),
            root: self.root.clone(),
        }
    }

    /// POST to the JSON gateway of the first member that answers.
    fn gateway(&self, path: &str, body: &Value) -> Result<Value> {
        self.reader().post(path, body, http::TIMEOUT)
    }

    /// Read one key.
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let v = self.gateway("/v3/kv/range", &json!({ "key": B64.encode(key) }))?;
        Ok(parse_kvs(&v)?.into_iter().next())
    }

    /// Read every key starting with `prefix`, in key order.
    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        let body =
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) });
        parse_kvs(&self.gateway("/v3/kv/range", &body)?)
    }

    /// Write one key (not leased).
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.gateway(
            "/v3/kv/put",
            &json!({ "key": B64.encode(key), "value": B64.encode(value) }),
        )
        .map(drop)
    }

    /// Index of the member that is the raft leader, asking each running
    /// member (`/v3/maintenance/status`) until one answers.
    pub fn leader_index(&self) -> Result<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for m in &self.members {
            let one = Gateway {
                urls: vec![m.client_url()],
                ..self.reader()
            };
            match one.post("/v3/maintenance/status", &json!({}), http::TIMEOUT) {
                Ok(v) => {
                    ids.push(uint(&v["header"]["member_id"]));
                    leader = leader.or(uint(&v["leader"]));
                }
                Err(_) => ids.push(None),
            }
        }
        let leader = leader.context("no etcd member answered /v3/maintenance/status")?;
        ids.iter()
            .position(|id| *id == Some(leader))
            .with_context(|| format!("raft leader {leader} is not among the answering members"))
    }

    /// Remaining time to live of a lease, in whole seconds as etcd reports
    /// it (`LeaseTimeToLive`, rounded down), `None` once the lease is gone.
    pub fn lease_ttl(&self, lease: i64) -> Result<Option<i64>> {
        parse_lease_ttl(&self.gateway("/v3/lease/timetolive", &json!({ "ID": lease }))?)
    }

    /// Delete one key.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.gateway("/v3/kv/deleterange", &json!({ "key": B64.encode(key) }))
            .map(drop)
    }
}

/// The users a TLS cluster of scope `scope` gets: the agents' and a stranger's.
pub fn rbac_users(scope: &str) -> Vec<EtcdUserSpec> {
    vec![
        EtcdUserSpec {
            name: AGENT_USER.into(),
            password: AGENT_PASSWORD.into(),
            prefix: format!("/service/{scope}/"),
        },
        EtcdUserSpec {
            name: STRANGER_USER.into(),
            password: STRANGER_PASSWORD.into(),
            prefix: "/elsewhere/".into(),
        },
    ]
}

/// A node's etcd3 section for a TLS cluster: https, the CA, a client certificate,
/// the agents' user.
pub fn agent_tls_config(
    cfg: crate::NodeConfig,
    ca: &Path,
    client: &CertFiles,
) -> crate::NodeConfig {
    let path = |p: &Path| p.display().to_string();
    cfg.set("etcd3.protocol", "https")
        .set("etcd3.cacert", path(ca))
        .set("etcd3.cert", path(&client.cert))
        .set("etcd3.key", path(&client.key))
        .set("etcd3.username", AGENT_USER)
        .set("etcd3.password", AGENT_PASSWORD)
}

/// Reads and writes through etcd's v3 JSON gateway, owning everything it needs, so
/// observer threads can poll without borrowing an [`EtcdCluster`]: over plain HTTP,
/// or over https with the kit's CN-less client certificate and, once RBAC is on, a
/// token of root's (renewed when etcd says it expired).
#[derive(Debug, Clone)]
pub struct Gateway {
    urls: Vec<String>,
    tls: Option<EtcdTlsFiles>,
    root: Arc<Mutex<Option<RootLogin>>>,
}

impl Gateway {
    /// POST `body` to `path` on the first member that answers 200, each request
    /// bounded by `timeout`.
    pub fn post(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value> {
        let mut last = None;
        let agent = match &self.tls {
            Some(t) => Some(tls_agent_with(t, timeout)?),
            None => None,
        };
        for url in &self.urls {
            let url = format!("{url}{path}");
            let answer = match &agent {
                Some(a) => self.post_tls(a, &url, body),
                None => {
                    http::post_json_with_timeout(&url, body, timeout).map(|r| (r.status, r.body))
                }
            };
            match answer {
                Ok((200, b)) => {
                    return serde_json::from_str(&b).with_context(|| format!("{path}: {b}"))
                }
                Ok((status, b)) => last = Some(anyhow::anyhow!("{path}: status {status} {b}")),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no etcd member")))
    }

    /// One request with root's token when RBAC is on, logging in again once if etcd
    /// says the token is no longer valid (idle tokens expire; a restarted member
    /// forgets them).
    fn post_tls(&self, agent: &ureq::Agent, url: &str, body: &Value) -> Result<(u16, String)> {
        let token = self.root_token(agent, false)?;
        let first = tls_request(agent, url, Some(body), token.as_deref())?;
        if first.1.contains("invalid auth token") {
            let token = self.root_token(agent, true)?;
            return tls_request(agent, url, Some(body), token.as_deref());
        }
        Ok(first)
    }

    /// root's token, logging in when there is none yet (or `fresh`); `None` before
    /// RBAC is enabled.
    fn root_token(&self, agent: &ureq::Agent, fresh: bool) -> Result<Option<String>> {
        let mut guard = self.root.lock().unwrap_or_else(|e| e.into_inner());
        let Some(login) = guard.as_mut() else {
            return Ok(None);
        };
        if login.token.is_some() && !fresh {
            return Ok(login.token.clone());
        }
        let body = json!({"name": "root", "password": login.password});
        let mut last = None;
        for url in &self.urls {
            let url = format!("{url}/v3/auth/authenticate");
            match tls_request(agent, &url, Some(&body), None) {
                Ok((200, b)) => {
                    let v: Value = serde_json::from_str(&b)?;
                    login.token = v["token"].as_str().map(str::to_string);
                    return Ok(login.token.clone());
                }
                Ok((status, b)) => last = Some(anyhow::anyhow!("authenticate: {status} {b}")),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no etcd member")))
    }

    /// Read one key.
    pub fn get(&self, key: &str, timeout: Duration) -> Result<Option<KeyValue>> {
        let v = self.post("/v3/kv/range", &json!({ "key": B64.encode(key) }), timeout)?;
        Ok(parse_kvs(&v)?.into_iter().next())
    }

    /// A lease's remaining time to live in whole seconds, `None` once it is gone.
    pub fn lease_ttl(&self, lease: i64, timeout: Duration) -> Result<Option<i64>> {
        parse_lease_ttl(&self.post("/v3/lease/timetolive", &json!({ "ID": lease }), timeout)?)
    }
}

/// An https client trusting the cluster's CA and presenting the kit's certificate.
fn tls_agent(tls: &EtcdTlsFiles) -> Result<ureq::Agent> {
    tls_agent_with(tls, http::TIMEOUT)
}

fn tls_agent_with(tls: &EtcdTlsFiles, timeout: Duration) -> Result<ureq::Agent> {
    let config = http::tls_config(&tls.ca, Some(&tls.client))?;
    Ok(http::agent_with(timeout, Some(config)))
}

/// One https request (a POST of `body`, or a GET without one): `(status, body)`.
fn tls_request(
    agent: &ureq::Agent,
    url: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Result<(u16, String)> {
    let answer = match body {
        Some(b) => {
            let mut req = agent.post(url).header("content-type", "application/json");
            if let Some(t) = token {
                req = req.header("authorization", t);
            }
            req.send(b.to_string())
        }
        None => agent.get(url).call(),
    };
    let mut resp = answer.with_context(|| format!("request to {url}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok((status, text))
}

fn parse_lease_ttl(v: &Value) -> Result<Option<i64>> {
    let ttl = int(&v["TTL"]);
    Ok((ttl >= 0 && v.get("grantedTTL").is_some()).then_some(ttl))
}

/// The smallest key greater than every key with this prefix.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // empty prefix: "\0" means "to the end of the keyspace"
}

/// The gateway encodes 64-bit integers as JSON strings.
fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// A 64-bit unsigned id (member ids use the whole range), `None` if absent.
fn uint(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn decode(v: &Value) -> Result<String> {
    let bytes = B64
        .decode(v.as_str().unwrap_or(""))
        .context("etcd gateway: bad base64")?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn parse_kvs(v: &Value) -> Result<Vec<KeyValue>> {
    let Some(kvs) = v.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new()); // the gateway omits `kvs` when nothing matched
    };
    kvs.iter()
        .map(|kv| {
            Ok(KeyValue {
                key: decode(&kv["key"])?,
                value: decode(&kv["value"])?,
                lease: int(&kv["lease"]),
                create_revision: int(&kv["create_revision"]),
                mod_revision: int(&kv["mod_revision"]),
            })
        })
        .collect()
}

/// A single-member etcd: an [`EtcdCluster`] of one.
#[derive(Debug)]
pub struct Etcd(EtcdCluster);

impl Etcd {
    /// Start a single member on fresh ports under `dir`, waiting until healthy.
    pub fn start(dir: &Path) -> Result<Etcd> {
        EtcdCluster::start(dir, 1).map(Etcd)
    }

    /// Start a single member on fixed ports (the demo's 2379/2380).
    pub fn start_with_ports(dir: &Path, client_port: u16, peer_port: u16) -> Result<Etcd> {
        EtcdCluster::start_with_ports(dir, &[(client_port, peer_port)]).map(Etcd)
    }

    pub fn into_cluster(self) -> EtcdCluster {
        self.0
    }
}

impl Deref for Etcd {
    type Target = EtcdCluster;
    fn deref(&self) -> &EtcdCluster {
        &self.0
    }
}

impl DerefMut for Etcd {
    fn deref_mut(&mut self) -> &mut EtcdCluster {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/service/a/"), b"/service/a0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn parses_lease_time_to_live() {
        let ttl = |v: Value| parse_lease_ttl(&v).unwrap();
        assert_eq!(
            ttl(json!({"ID":"7", "TTL":"4", "grantedTTL":"10"})),
            Some(4)
        );
        // Less than a second left: TTL 0 is omitted.
        assert_eq!(ttl(json!({"ID":"7", "grantedTTL":"10"})), Some(0));
        assert_eq!(ttl(json!({"ID":"7", "TTL":"-1"})), None);
    }

    #[test]
    fn parses_gateway_ranges() {
        let v = json!({"header":{}, "kvs":[{"key": B64.encode("/k"), "value": B64.encode("node1"),
            "lease":"7587", "create_revision":"5", "mod_revision":"9"}], "count":"1"});
        let kvs = parse_kvs(&v).unwrap();
        assert_eq!(
            kvs,
            vec![KeyValue {
                key: "/k".into(),
                value: "node1".into(),
                lease: 7587,
                create_revision: 5,
                mod_revision: 9
            }]
        );
        assert!(parse_kvs(&json!({"header":{}})).unwrap().is_empty());
    }
}
