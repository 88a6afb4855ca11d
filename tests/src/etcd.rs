//! Real etcd for tests: a single member ([`Etcd`]) or a 3-member cluster
//! ([`EtcdCluster`]) whose members can be killed and restarted one by one.
//!
//! Every URL is explicit (no defaults on 2379/2380), so clusters of parallel
//! tests never meet. Readiness is etcd's own `GET /health`, polled with a
//! deadline. Keys are read through etcd's v3 JSON gateway over plain HTTP, so
//! tests can check what agents wrote without an etcd client library.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::process::Managed;
use crate::{bins, http, ports, wait};

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

    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
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
        http::get(&format!("{}/health", self.client_url()))
            .ok()
            .and_then(|r| r.json().ok())
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
                proc: None,
            });
        }
        let mut cluster = EtcdCluster { members };
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

    /// POST to the JSON gateway of the first member that answers.
    fn gateway(&self, path: &str, body: &Value) -> Result<Value> {
        let mut last = None;
        for m in &self.members {
            // The short bound: these reads sit in polling loops, some with a member frozen.
            match http::post_json_with_timeout(
                &format!("{}{path}", m.client_url()),
                body,
                http::TIMEOUT,
            ) {
                Ok(r) if r.status == 200 => return r.json(),
                Ok(r) => last = Some(anyhow::anyhow!("{path}: status {} {}", r.status, r.body)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no etcd member")))
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
            let url = format!("{}/v3/maintenance/status", m.client_url());
            match http::post_json_with_timeout(&url, &json!({}), http::TIMEOUT) {
                Ok(r) if r.status == 200 => {
                    let v = r.json()?;
                    ids.push(uint(&v["header"]["member_id"]));
                    leader = leader.or(uint(&v["leader"]));
                }
                _ => ids.push(None),
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

/// Read one key through the JSON gateway of the first of `client_urls` that
/// answers, each request bounded by `timeout`. For observer threads that
/// must not borrow an [`EtcdCluster`].
pub fn get_via(client_urls: &[String], key: &str, timeout: Duration) -> Result<Option<KeyValue>> {
    let body = json!({ "key": B64.encode(key) });
    let mut last = None;
    for url in client_urls {
        match http::post_json_with_timeout(&format!("{url}/v3/kv/range"), &body, timeout) {
            Ok(r) if r.status == 200 => return Ok(parse_kvs(&r.json()?)?.into_iter().next()),
            Ok(r) => last = Some(anyhow::anyhow!("status {} {}", r.status, r.body)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no etcd member")))
}

/// Remaining TTL of `lease` in whole seconds through the JSON gateway of
/// the first of `client_urls` that answers (`None` once the lease is gone).
/// See [`EtcdCluster::lease_ttl`].
pub fn lease_ttl_via(client_urls: &[String], lease: i64, timeout: Duration) -> Result<Option<i64>> {
    let body = json!({ "ID": lease });
    let mut last = None;
    for url in client_urls {
        match http::post_json_with_timeout(&format!("{url}/v3/lease/timetolive"), &body, timeout) {
            Ok(r) if r.status == 200 => return parse_lease_ttl(&r.json()?),
            Ok(r) => last = Some(anyhow::anyhow!("status {} {}", r.status, r.body)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no etcd member")))
}

/// The gateway omits a zero TTL and answers `TTL: -1` without `grantedTTL`
/// for a lease that is gone.
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
