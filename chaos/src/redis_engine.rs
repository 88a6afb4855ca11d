//! The Redis side of the harness (`--redis`): the same workload, faults and
//! checks against Redis members, through the same kinds of port.
//!
//! * [`RedisWriter`]: through HAProxy's write port, `SET k<id> <id>` one at a
//!   time, recording the kit's [`Outcome`]s (so the rest of the run treats it
//!   like the PostgreSQL writer). The server behind a connection is known from
//!   its `INFO server` `tcp_port`, asked once per connection (HAProxy relays a
//!   TCP connection to one backend for its whole life). With `sync`, a write
//!   counts only once `WAIT 1 1000` reports a replica has it.
//! * [`probe_loop`]: the direct writes on one node's redis port (`READONLY` on
//!   a replica or a fenced primary), `WAIT`-confirmed with `sync`.
//! * [`present`]: which acknowledged ids the final primary holds (`MGET`).
//! * [`converged_replication`]: the Redis half of convergence: `INFO
//!   replication` instead of `pg_stat_replication`.
//! * [`server_pid`], [`promote_behind_agent`]: what the PostgreSQL-specific
//!   faults need (the server process, a promotion behind the agent's back).
//!
//! Writer and probes use disjoint ids (probes from 10^12), so both use keys
//! `k<id>` holding `<id>`, the kit's convention (`lost_writes_as`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::redis::{connect_as, lost_writes_as, Ack as KitAck};
use warden_tests::workload::{Ack, Failure, Outcome};
use warden_tests::{process, Cluster, Node};

use crate::events::{EventLog, ProbeAck, ProbeError};
use crate::workload::{pause, Clock, ID_BLOCK, PROBE_CONNECT_TIMEOUT, PROBE_INTERVAL};

/// Connect bound of the writer (as the PostgreSQL writer's).
const WRITER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Read and write bound of the writer: above `WAIT`'s own bound.
const WRITER_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// `WAIT 1 <ms>` of the writer in synchronous mode.
const WRITER_WAIT_MS: u64 = 1000;
/// Read bound of a probe: a paused or frozen server fails the probe here,
/// under the checker's 1 s link limit.
const PROBE_IO_TIMEOUT: Duration = Duration::from_millis(900);
/// `WAIT 1 <ms>` of a probe in synchronous mode (as PostgreSQL's probes'
/// 500 ms statement timeout bounds their wait for a synchronous standby).
const PROBE_WAIT_MS: u64 = 400;
/// Bound for the writer thread to notice a stop request.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the `INFO` and `MGET` calls of the checks.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// True if the cluster's members are Redis members (they serve a Sentinel port).
pub fn is_redis(cluster: &Cluster) -> bool {
    cluster
        .nodes()
        .first()
        .is_some_and(|n| n.sentinel_port().is_some())
}

fn connect(port: u16, connect_timeout: Duration, io: Duration) -> Result<redis::Connection> {
    let c = connect_as(port, Some(REDIS_PASSWORD), connect_timeout)?;
    c.set_read_timeout(Some(io))?;
    c.set_write_timeout(Some(io))?;
    Ok(c)
}

/// `SET k<id> <id>`, then with `wait = Some(ms)` `WAIT 1 ms`: `Ok(true)` if
/// confirmed (or not asked), `Ok(false)` if no replica confirmed in time.
fn set_and_wait(c: &mut redis::Connection, id: i64, wait: Option<u64>) -> redis::RedisResult<bool> {
    redis::cmd("SET")
        .arg(format!("k{id}"))
        .arg(id)
        .query::<()>(c)?;
    match wait {
        None => Ok(true),
        Some(ms) => Ok(redis::cmd("WAIT").arg(1).arg(ms).query::<i64>(c)? >= 1),
    }
}

/// The port the server behind `c` listens on (`INFO server`'s `tcp_port`).
fn server_port(c: &mut redis::Connection) -> Result<u16> {
    let text: String = redis::cmd("INFO").arg("server").query(c)?;
    text.lines()
        .find_map(|l| l.strip_prefix("tcp_port:"))
        .and_then(|p| p.trim().parse().ok())
        .context("INFO server has no tcp_port")
}

/// The Redis writer through HAProxy. Dropping it stops it (bounded).
#[derive(Debug)]
pub struct RedisWriter {
    log: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl RedisWriter {
    /// Start writing through `port`; `sync`: count only `WAIT`-confirmed
    /// writes. Paced like the PostgreSQL writer: `after_ack` after each
    /// acknowledgement, `after_error` after a failure.
    pub fn start(
        port: u16,
        sync: bool,
        after_ack: Duration,
        after_error: Duration,
    ) -> Result<RedisWriter> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (Arc::clone(&log), Arc::clone(&stop));
        let wait = sync.then_some(WRITER_WAIT_MS);
        let handle = std::thread::Builder::new()
            .name(format!("redis-writer-{port}"))
            .spawn(move || writer_loop(port, wait, after_ack, after_error, &l, &s))
            .context("spawning the Redis writer thread")?;
        Ok(RedisWriter {
            log,
            stop,
            handle: Some(handle),
        })
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stop (bounded: a write blocked on a frozen server is abandoned) and
    /// return every outcome.
    pub fn stop(mut self) -> Vec<Outcome> {
        self.halt();
        self.outcomes()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let Some(h) = self.handle.take() else { return };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
}

impl Drop for RedisWriter {
    fn drop(&mut self) {
        self.halt();
    }
}

fn writer_loop(
    port: u16,
    wait: Option<u64>,
    after_ack: Duration,
    after_error: Duration,
    log: &Mutex<Vec<Outcome>>,
    stop: &AtomicBool,
) {
    let push = |o: Outcome| log.lock().unwrap_or_else(PoisonError::into_inner).push(o);
    let mut conn: Option<(redis::Connection, u16)> = None;
    let mut id: i64 = 1;
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        // A new id per attempt: a failed SET may or may not have been applied,
        // and is never counted.
        let this = id;
        id += 1;
        let result = (|| -> Result<Option<u16>, String> {
            if conn.is_none() {
                let mut c = connect(port, WRITER_CONNECT_TIMEOUT, WRITER_IO_TIMEOUT)
                    .map_err(|e| format!("{e:#}"))?;
                let server = server_port(&mut c).map_err(|e| format!("{e:#}"))?;
                conn = Some((c, server));
            }
            let Some((c, server)) = conn.as_mut() else {
                return Err("no connection".into());
            };
            match set_and_wait(c, this, wait) {
                Ok(true) => Ok(Some(*server)),
                Ok(false) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })();
        let at = Instant::now();
        match result {
            Ok(Some(server_port)) => {
                push(Outcome::Ack(Ack {
                    id: this,
                    sent,
                    acked: at,
                    server_port,
                }));
                if !after_ack.is_zero() {
                    std::thread::sleep(after_ack);
                }
            }
            Ok(None) => {
                // Applied on the primary, confirmed by no replica within the
                // bound: like PostgreSQL's cancelled synchronous wait, not an
                // acknowledgement. The connection stays.
                push(Outcome::Fail(Failure {
                    id: this,
                    sent,
                    at,
                    error: format!(
                        "WAIT 1 {WRITER_WAIT_MS}: no replica confirmed the write; not counted \
                         as acknowledged"
                    ),
                }));
                std::thread::sleep(after_error);
            }
            Err(error) => {
                // READONLY (a demoted primary HAProxy still routes to), a
                // timeout, a reset: reconnect, so HAProxy picks the backend anew.
                push(Outcome::Fail(Failure {
                    id: this,
                    sent,
                    at,
                    error,
                }));
                conn = None;
                std::thread::sleep(after_error);
            }
        }
    }
}

/// Why a probe's `SET` failed, and whether its connection is still usable.
fn classify(e: &redis::RedisError) -> (ProbeError, bool) {
    if e.code() == Some("READONLY") {
        (ProbeError::ReadOnly, true)
    } else if e.is_timeout() {
        // The reply may still arrive later: the connection is out of step.
        (ProbeError::Timeout, false)
    } else {
        (ProbeError::Other, false)
    }
}

/// Direct writes on node `node`'s redis port every [`PROBE_INTERVAL`] until
/// `stop`; `sync`: count only `WAIT`-confirmed ones.
pub fn probe_loop(
    node: usize,
    port: u16,
    sync: bool,
    clock: Clock,
    log: &Mutex<EventLog>,
    stop: &AtomicBool,
) {
    let wait = sync.then_some(PROBE_WAIT_MS);
    let mut conn: Option<redis::Connection> = None;
    let mut seq: i64 = 0;
    let record = |r: Result<ProbeAck, ProbeError>, sent: Instant| {
        let mut l = log.lock().unwrap_or_else(PoisonError::into_inner);
        match r {
            Ok(a) => l.probes.push(a),
            Err(e) => l.push_probe_failure(node, e, clock.us(sent), clock.now()),
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        if conn.is_none() {
            match connect(port, PROBE_CONNECT_TIMEOUT, PROBE_IO_TIMEOUT) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    record(Err(ProbeError::Connect), sent);
                    pause(PROBE_INTERVAL.saturating_sub(sent.elapsed()), stop);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        seq += 1;
        let id = (node as i64 + 1) * ID_BLOCK + seq;
        let outcome = match set_and_wait(c, id, wait) {
            Ok(true) => Ok(ProbeAck {
                node,
                id,
                sent: clock.us(sent),
                acked: clock.now(),
            }),
            Ok(false) => Err(ProbeError::SyncWaitCancelled),
            Err(e) => {
                let (why, keep) = classify(&e);
                if !keep {
                    conn = None;
                }
                Err(why)
            }
        };
        record(outcome, sent);
        pause(PROBE_INTERVAL.saturating_sub(sent.elapsed()), stop);
    }
}

/// The ids of `acked` whose key holds the id on the server at `port`.
pub fn present(port: u16, acked: &[i64]) -> Result<Vec<i64>> {
    let now = Instant::now();
    let acks: Vec<KitAck> = acked
        .iter()
        .filter_map(|&id| {
            Some(KitAck {
                id: u64::try_from(id).ok()?,
                at: now,
                port,
            })
        })
        .collect();
    let lost: std::collections::HashSet<u64> = lost_writes_as(port, Some(REDIS_PASSWORD), &acks)?
        .into_iter()
        .collect();
    Ok(acked
        .iter()
        .copied()
        .filter(|&id| u64::try_from(id).is_ok_and(|u| !lost.contains(&u)))
        .collect())
}

/// `INFO replication` of the server on `port`, as field → value.
pub fn replication(port: u16) -> Result<HashMap<String, String>> {
    let mut c = connect(port, CHECK_TIMEOUT, CHECK_TIMEOUT)?;
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut c)
        .with_context(|| format!("INFO replication on port {port}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// The Redis half of convergence, once `/primary`, `/replica`, the leader
/// key and `/patroni` agree that `primary` leads: its redis-server is a
/// master with every other node connected and online, and each of them a
/// replica with its link up on the primary's replication id (a replica of a
/// replica would share the id, but then the primary would count fewer
/// replicas). The engine's counterpart of `pg_stat_replication` and of the
/// timeline.
pub fn converged_replication(cluster: &Cluster, primary: usize) -> Result<(), String> {
    let p = cluster.node(primary);
    let info = replication(p.redis_port()).map_err(|e| format!("{}: {e:#}", p.name()))?;
    let get = |m: &HashMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    if get(&info, "role") != "master" {
        return Err(format!(
            "{}'s redis-server has role {:?}",
            p.name(),
            get(&info, "role")
        ));
    }
    let replid = get(&info, "master_replid");
    let online = (0..)
        .map_while(|i| info.get(&format!("slave{i}")))
        .filter(|s| s.split(',').any(|f| f == "state=online"))
        .count();
    let others = cluster.nodes().len() - 1;
    if online < others {
        return Err(format!(
            "{}'s INFO replication lists {online} online replicas, not {others}",
            p.name()
        ));
    }
    for (i, n) in cluster.nodes().iter().enumerate() {
        if i == primary {
            continue;
        }
        let r = replication(n.redis_port()).map_err(|e| format!("{}: {e:#}", n.name()))?;
        let ok = get(&r, "role") == "slave"
            && get(&r, "master_link_status") == "up"
            && get(&r, "master_replid") == replid;
        if !ok {
            return Err(format!(
                "{}'s redis-server does not stream from {}: role {:?} link {:?} replid {:?} \
                 (primary's {replid:?})",
                n.name(),
                p.name(),
                get(&r, "role"),
                get(&r, "master_link_status"),
                get(&r, "master_replid")
            ));
        }
    }
    Ok(())
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

/// True for redis-server and the children it forks (named `redis-*`).
pub fn is_redis_process(pid: i32) -> bool {
    comm(pid).starts_with("redis-")
}

/// The pid of the node's running redis-server: its pid file (checked to be a
/// live redis-server), else the redis-server among the agent's descendants.
pub fn server_pid(node: &Node) -> Option<i32> {
    let from_file = read_pid(&node.data_dir().join("redis.pid"))
        .filter(|&p| process::is_alive(p) && comm(p) == "redis-server");
    from_file.or_else(|| {
        process::descendants(node.pid()?)
            .into_iter()
            .find(|&p| process::is_alive(p) && comm(p) == "redis-server")
    })
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// TEST-ONLY (`rogue-promote`): `REPLICAOF NO ONE` on the replica's
/// redis-server, whose agent the caller has frozen.
pub fn promote_behind_agent(port: u16) -> Result<()> {
    let mut c = connect(port, CHECK_TIMEOUT, CHECK_TIMEOUT)?;
    let r: String = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut c)
        .with_context(|| format!("REPLICAOF NO ONE on port {port}"))?;
    if r != "OK" {
        bail!("REPLICAOF NO ONE on port {port} answered {r:?}");
    }
    Ok(())
}
