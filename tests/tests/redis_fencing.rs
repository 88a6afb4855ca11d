//! Redis mode's fencing against real processes: a primary that can no longer renew its
//! lease stops acknowledging writes *before* any other member can be promoted.
//!
//! Two faults on the primary of a three-member Redis cluster (ttl 10):
//!
//! * its agent is frozen with SIGSTOP while redis-server keeps serving: the agent's own
//!   fence timer is frozen too, so only the guard process (`warden guard`, fed the lease
//!   deadline every turn) can stop the server, by killing redis-server before etcd can
//!   expire the lease. After SIGCONT the old node rejoins as a replica of the new primary.
//! * its node is cut off from etcd and from the other members (its etcd, redis and REST
//!   proxies) while clients still reach its redis-server directly: the agent's deadline
//!   timer must fence it (CLIENT PAUSE WRITE, a replica of no one, clients disconnected)
//!   before the lease can expire. After the heal it rejoins as a replica.
//!
//! In both, a client writes `SET` in a loop straight to the old primary's redis port and
//! never rediscovers (the client a fence exists for), while observers timestamp every
//! member's `INFO replication` role, `/primary` answer and the leader key. The evidence
//! is conservative on both sides: the writer's last acknowledgement is an instant at
//! which the old primary had certainly still accepted a write, and a [`Transition`]'s
//! `not_before` is the instant the previous poll (which did not see the change yet) was
//! sent. Without a working fence the old primary keeps acknowledging after the
//! promotion and the ordering assertions fail. In the cut-off case the fenced server
//! must also still run as a replica refusing writes (`READONLY`), and an idle connection
//! opened before the fault must have been closed (clients are disconnected so they
//! rediscover; a write held by CLIENT PAUSE WRITE may instead be answered `READONLY`
//! when the server turns replica, so the writer's own connection is no witness).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::failover::{secs, since};
use warden_tests::observe::{KeyWatch, PrimaryWatch, Transition};
use warden_tests::redis::{self as kit_redis, Ack, SentinelWriter};
use warden_tests::wait::wait_until;
use warden_tests::{Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const TTL: u32 = 10;
/// Bound on each connect, read and write of the test's own clients.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on one role poll (a frozen or killed server must not stall the series).
const POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Interval between two role polls of one member.
const POLL: Duration = Duration::from_millis(50);
/// Pause after a failed attempt of the direct writer: pacing, so a dead port is not a
/// busy loop.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Pause after each acknowledged direct write: about a thousand writes a second time
/// the fence to the millisecond without a writer spinning on a core the cluster's
/// processes need (pacing, not synchronisation).
const PAUSE_AFTER_ACK: Duration = Duration::from_millis(1);
/// The direct writer's ids start here, so its keys (`k<id>`, like the Sentinel
/// writer's) never collide with the Sentinel writer's.
const DIRECT_IDS: u64 = 1_000_000_000;
/// Attempts the direct writer must make after the promotion was seen: if the fence
/// failed, these are acknowledged and the ordering assertions catch it.
const ATTEMPTS_AFTER_PROMOTION: usize = 20;

/// Both tests start a cluster with timing-sensitive assertions: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `INFO <section>` of the member's redis-server on `port`, as field → value.
fn info(port: u16, section: &str, timeout: Duration) -> Option<HashMap<String, String>> {
    let mut c = kit_redis::connect_as(port, Some(REDIS_PASSWORD), timeout).ok()?;
    let text: String = redis::cmd("INFO").arg(section).query(&mut c).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// One write attempt of a [`DirectWriter`]: `SET k<id> <id>` sent at `sent`, its answer
/// (or error) received at `at`. A connect failure is an attempt without a write.
#[derive(Debug, Clone)]
struct Attempt {
    id: u64,
    sent: Instant,
    at: Instant,
    result: Result<(), String>,
    /// The error code when the server answered with an error (`READONLY`); `None` when
    /// it acknowledged, or the connection failed (refused, dropped, timed out).
    code: Option<String>,
}

/// A client that writes to one redis port only, reconnecting to the same port after
/// any error: it never rediscovers, so only the server itself (fenced or killed) can
/// stop it from writing to a deposed primary.
#[derive(Debug)]
struct DirectWriter {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    handle: Option<JoinHandle<()>>,
}

impl DirectWriter {
    fn start(port: u16) -> DirectWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (Arc::clone(&stop), Arc::clone(&attempts));
        let handle = std::thread::Builder::new()
            .name(format!("direct-writer-{port}"))
            .spawn(move || direct_write_loop(port, &s, &a))
            .expect("spawn the direct writer");
        DirectWriter {
            stop,
            attempts,
            handle: Some(handle),
        }
    }

    fn with_attempts<T>(&self, f: impl FnOnce(&[Attempt]) -> T) -> T {
        f(&self.attempts.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn ack_count(&self) -> usize {
        self.with_attempts(|v| v.iter().filter(|a| a.result.is_ok()).count())
    }

    /// Attempts sent at or after `t`.
    fn attempts_since(&self, t: Instant) -> usize {
        self.with_attempts(|v| v.len() - v.partition_point(|a| a.sent < t))
    }

    fn stop(mut self) -> Vec<Attempt> {
        self.halt();
        std::mem::take(&mut *self.attempts.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        self.halt();
    }
}

fn direct_write_loop(port: u16, stop: &AtomicBool, attempts: &Mutex<Vec<Attempt>>) {
    let mut conn: Option<redis::Connection> = None;
    let mut id = DIRECT_IDS;
    let record = |a: Attempt| {
        let mut v = attempts.lock().unwrap_or_else(PoisonError::into_inner);
        // A bound, not a limit a test reaches: stop recording rather than grow forever.
        if v.len() < 5_000_000 {
            v.push(a);
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        let Some(c) = conn.as_mut() else {
            match kit_redis::connect_as(port, Some(REDIS_PASSWORD), IO_TIMEOUT) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    record(Attempt {
                        id: 0,
                        sent,
                        at: Instant::now(),
                        result: Err(format!("connect: {e:#}")),
                        code: None,
                    });
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
            continue;
        };
        id += 1;
        let r = redis::cmd("SET")
            .arg(format!("k{id}"))
            .arg(id)
            .query::<()>(c);
        let at = Instant::now();
        let failed = r.is_err();
        let code = r.as_ref().err().and_then(|e| e.code()).map(str::to_string);
        record(Attempt {
            id,
            sent,
            at,
            result: r.map_err(|e| e.to_string()),
            code,
        });
        if failed {
            conn = None;
            std::thread::sleep(RETRY_PAUSE);
        } else {
            std::thread::sleep(PAUSE_AFTER_ACK);
        }
    }
}

/// One role poll: `INFO replication`'s `role` (`None`: no answer), sent at `sent`,
/// answered at `got`.
#[derive(Debug, Clone)]
struct RoleSample {
    sent: Instant,
    got: Instant,
    role: Option<String>,
}

/// Polls every member's redis-server for its replication role, one thread each.
#[derive(Debug)]
struct RoleWatch {
    series: Vec<Arc<Mutex<Vec<RoleSample>>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl RoleWatch {
    fn start(ports: &[u16]) -> RoleWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let mut series = Vec::new();
        let mut handles = Vec::new();
        for &port in ports {
            let samples = Arc::new(Mutex::new(Vec::new()));
            let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
            let h = std::thread::Builder::new()
                .name(format!("role-{port}"))
                .spawn(move || {
                    while !st.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        let role = info(port, "replication", POLL_TIMEOUT)
                            .and_then(|i| i.get("role").cloned());
                        let got = Instant::now();
                        s.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(RoleSample { sent, got, role });
                        std::thread::sleep(POLL);
                    }
                })
                .expect("spawn a role poller");
            series.push(samples);
            handles.push(h);
        }
        RoleWatch {
            series,
            stop,
            handles,
        }
    }

    fn samples(&self, i: usize) -> Vec<RoleSample> {
        self.series[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When member `i`'s role first satisfied `pred` at or after `since`.
    fn first(
        &self,
        i: usize,
        since: Instant,
        pred: impl Fn(Option<&str>) -> bool,
    ) -> Option<Transition> {
        let mut prev_sent = None;
        for s in self.samples(i) {
            if s.sent >= since && pred(s.role.as_deref()) {
                return Some(Transition {
                    not_before: prev_sent.unwrap_or(since).max(since),
                    seen: s.got,
                });
            }
            prev_sent = Some(s.sent);
        }
        None
    }

    /// The member other than `old` first seen as `master` at or after `since`.
    fn first_other_master(&self, old: usize, since: Instant) -> Option<(usize, Transition)> {
        (0..self.series.len())
            .filter(|&i| i != old)
            .filter_map(|i| {
                self.first(i, since, |r| r == Some("master"))
                    .map(|t| (i, t))
            })
            .min_by_key(|(_, t)| t.seen)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for RoleWatch {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A cluster with writes flowing: the direct writer on the primary's redis port, a
/// Sentinel-aware writer, and the observers.
struct Setup {
    p: usize,
    leader: String,
    token: i64,
    /// The primary's port as the Sentinel ports name it (its proxy port with proxies).
    advertised: u16,
    direct: DirectWriter,
    sentinel: SentinelWriter,
    roles: RoleWatch,
    primaries: PrimaryWatch,
    key: KeyWatch,
}

/// The Sentinel ports, the primary `p`'s last: a frozen or isolated member's port must
/// not slow the Sentinel writer's discovery down.
fn sentinel_ports(cluster: &Cluster, p: usize) -> Vec<u16> {
    let mut order: Vec<usize> = (0..cluster.nodes().len()).filter(|&i| i != p).collect();
    order.push(p);
    order
        .into_iter()
        .filter_map(|i| cluster.node(i).sentinel_port())
        .collect()
}

fn start_writing(cluster: &Cluster) -> Setup {
    cluster.wait_formed(FORM_TIMEOUT);
    let (leader, token) = cluster.wait_leader(T);
    let p = cluster.index_of(&leader).unwrap();
    let port = cluster.node(p).redis_port();
    wait_until(T, "two replicas online on the primary", || {
        let i = info(port, "replication", IO_TIMEOUT)?;
        (i.get("role")? == "master" && i.get("connected_slaves")? == "2").then_some(())
    });
    let sentinels = sentinel_ports(cluster, p);
    let advertised = wait_until(T, "the Sentinel ports name a primary", || {
        kit_redis::discover_primary(&sentinels)
    });
    let direct = DirectWriter::start(port);
    let sentinel = SentinelWriter::start_as(sentinels, Some(REDIS_PASSWORD.into()));
    wait_until(T, "writes acknowledged by both writers", || {
        (direct.ack_count() >= 200 && sentinel.ack_count() >= 200).then_some(())
    });
    assert!(
        sentinel.last_ack_on(advertised).is_some(),
        "the Sentinel writer writes to {advertised}"
    );
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.redis_port()).collect();
    Setup {
        p,
        leader,
        token,
        advertised,
        direct,
        sentinel,
        roles: RoleWatch::start(&ports),
        primaries: cluster.watch_primaries(),
        key: cluster.watch_leader_key(),
    }
}

/// What happened after the fault at `t0`.
#[derive(Debug)]
struct Order {
    t0: Instant,
    new: usize,
    /// A member other than the old primary reported `role:master`.
    promoted: Transition,
    /// The leader key stopped being the old primary's (expired, or taken).
    key_changed: Transition,
    /// The new primary answered 200 on `/primary`.
    primary_200: Transition,
    /// The old primary's redis-server stopped answering `role:master`.
    old_not_master: Transition,
    /// The Sentinel writer's first write acknowledged by another server.
    resumed: Ack,
    last_ack: Attempt,
    first_failure: Attempt,
    acked_after_fault: usize,
}

impl Order {
    /// The earliest instant anything says another member may have taken over.
    fn takeover_not_before(&self) -> Instant {
        self.promoted
            .not_before
            .min(self.key_changed.not_before)
            .min(self.primary_200.not_before)
    }

    fn report(&self, names: &[String], old: usize) -> String {
        let err = self
            .first_failure
            .result
            .as_ref()
            .err()
            .map_or("", |e| e.lines().next().unwrap_or(""));
        format!(
            "fault on {} at 0 s: {} writes acknowledged by it after the fault, the last at {}; \
             first failed write at {} ({err}); it stopped reporting role:master at {}; \
             leader key changed at {} (not before {}); {} reported role:master at {} \
             (not before {}), /primary 200 at {}; Sentinel-discovered writes resumed on it at {}; \
             margin from the last ack to the earliest takeover {}",
            names[old],
            self.acked_after_fault,
            since(self.t0, self.last_ack.at),
            since(self.t0, self.first_failure.at),
            since(self.t0, self.old_not_master.seen),
            since(self.t0, self.key_changed.seen),
            since(self.t0, self.key_changed.not_before),
            names[self.new],
            since(self.t0, self.promoted.seen),
            since(self.t0, self.promoted.not_before),
            since(self.t0, self.primary_200.seen),
            since(self.t0, self.resumed.at),
            self.takeover_not_before()
                .checked_duration_since(self.last_ack.at)
                .map_or("none".into(), secs),
        )
    }
}

/// Wait for another member to be promoted after the fault at `t0`, let the direct
/// writer try [`ATTEMPTS_AFTER_PROMOTION`] more times, and collect the evidence. The
/// writers and observers are stopped; the direct writer's attempts are returned.
fn measure(cluster: &Cluster, s: Setup, t0: Instant) -> (Order, Vec<Attempt>, Vec<Ack>) {
    let ttl = Duration::from_secs(u64::from(TTL));
    let (new, promoted) = wait_until(3 * ttl, "another member reports role:master", || {
        s.roles.first_other_master(s.p, t0)
    });
    let primary_200 = wait_until(T, "the new primary answers 200 on /primary", || {
        s.primaries.first_200(new, t0)
    });
    let key_changed = wait_until(T, "the leader key changes hands", || {
        s.key.first_change_from(t0, &(s.leader.clone(), s.token))
    });
    let resumed = wait_until(T, "Sentinel-discovered writes resume elsewhere", || {
        s.sentinel.first_ack_elsewhere(t0, s.advertised)
    });
    let seen = promoted.seen;
    wait_until(
        T,
        "more direct writes attempted after the promotion",
        || (s.direct.attempts_since(seen) >= ATTEMPTS_AFTER_PROMOTION).then_some(()),
    );
    let old_not_master = s
        .roles
        .first(s.p, t0, |r| r != Some("master"))
        .unwrap_or_else(|| {
            panic!(
                "the old primary still reports role:master after {} was promoted\n{}",
                cluster.node(new).name(),
                cluster.dump_logs()
            )
        });
    let Setup {
        direct,
        sentinel,
        mut roles,
        primaries,
        key,
        ..
    } = s;
    let attempts = direct.stop();
    let acks = sentinel.stop();
    roles.halt();
    primaries.stop();
    key.stop();
    let last_ack = attempts
        .iter()
        .rev()
        .find(|a| a.result.is_ok())
        .cloned()
        .expect("the old primary acknowledged writes");
    let first_failure = attempts
        .iter()
        .find(|a| a.sent >= t0 && a.result.is_err())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no direct write failed after the fault\n{}",
                cluster.dump_logs()
            )
        });
    let acked_after_fault = attempts
        .iter()
        .filter(|a| a.sent >= t0 && a.result.is_ok())
        .count();
    let order = Order {
        t0,
        new,
        promoted,
        key_changed,
        primary_200,
        old_not_master,
        resumed,
        last_ack,
        first_failure,
        acked_after_fault,
    };
    (order, attempts, acks)
}

/// The ordering every fence must guarantee, with the logs on failure.
fn assert_fenced_in_time(order: &Order, names: &[String], old: usize, logs: &str) {
    let report = order.report(names, old);
    assert!(
        order.acked_after_fault > 0,
        "{report}: no write was acknowledged after the fault, the test did not exercise the \
         fence\n{logs}"
    );
    let takeover = order.takeover_not_before();
    assert!(
        order.last_ack.at < takeover,
        "{report}: the old primary acknowledged a write after another member may have taken \
         over\n{logs}"
    );
    assert!(
        order.first_failure.at < takeover,
        "{report}: writes to the old primary first failed after another member may have taken \
         over\n{logs}"
    );
    assert!(
        order.old_not_master.seen < takeover,
        "{report}: the old primary still reported role:master after another member may have \
         taken over\n{logs}"
    );
}

/// The new leader holds the key with a higher fencing token, the Sentinel writer
/// resumed on it.
fn assert_new_leader(cluster: &Cluster, order: &Order, token: i64, advertised_new: u16) {
    let (holder, token2) = cluster.wait_leader(T);
    assert_eq!(
        holder,
        cluster.node(order.new).name(),
        "the promoted member holds the key"
    );
    assert!(
        token2 > token,
        "fencing token did not increase: {token} -> {token2}"
    );
    assert_eq!(
        order.resumed.port, advertised_new,
        "Sentinel-discovered writes resumed on the new primary"
    );
}

/// Wait until `old` streams from the new primary `new` and every Sentinel port names
/// `advertised_new`; the key has not moved again.
fn wait_rejoined(cluster: &Cluster, old: usize, new: usize, advertised_new: u16) {
    let old_port = cluster.node(old).redis_port();
    let new_ports = [cluster.node(new).redis_port(), advertised_new];
    wait_until(T, "the old primary streams from the new one", || {
        let i = info(old_port, "replication", IO_TIMEOUT)?;
        let master: u16 = i.get("master_port")?.parse().ok()?;
        (i.get("role")? == "slave"
            && new_ports.contains(&master)
            && i.get("master_link_status")? == "up")
            .then_some(())
    });
    wait_until(T, "the new primary has both replicas online", || {
        let i = info(new_ports[0], "replication", IO_TIMEOUT)?;
        (i.get("role")? == "master" && i.get("connected_slaves")? == "2").then_some(())
    });
    wait_until(T, "every Sentinel port names the new primary", || {
        sentinel_ports(cluster, old)
            .into_iter()
            .all(|s| kit_redis::discover_primary(&[s]) == Some(advertised_new))
            .then_some(())
    });
    let (holder, _) = cluster.wait_leader(T);
    assert_eq!(holder, cluster.node(new).name(), "the leader changed again");
}

/// The direct writer's acknowledged writes, as the kit's [`Ack`]s (for the loss check).
fn direct_acks(attempts: &[Attempt], port: u16) -> Vec<Ack> {
    attempts
        .iter()
        .filter(|a| a.result.is_ok())
        .map(|a| Ack {
            id: a.id,
            at: a.at,
            port,
        })
        .collect()
}

/// How the direct writer's attempts since `t0` failed: `READONLY 1234, dropped 1, ...`.
fn failure_kinds(attempts: &[Attempt], t0: Instant) -> String {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for a in attempts.iter().filter(|a| a.sent >= t0) {
        let kind = match (&a.result, &a.code) {
            (Ok(()), _) => continue,
            (Err(_), Some(code)) => code.clone(),
            (Err(e), None) if e.starts_with("connect:") => "connect failed".into(),
            (Err(_), None) => "connection dropped or timed out".into(),
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

/// The state of process `pid` per `/proc`, `None` once it is gone or reaped.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .and_then(|s| s.chars().next())
}

#[test]
fn frozen_agent_old_primary_stops_acknowledging_before_promotion() {
    let _serial = serial();
    let cluster = Cluster::start(ClusterSpec::new(3).redis().ttl(TTL).without_haproxy())
        .expect("start a Redis cluster");
    let s = start_writing(&cluster);
    let p = s.p;
    let old_port = cluster.node(p).redis_port();
    let token = s.token;
    let server_pid: i32 = info(old_port, "server", IO_TIMEOUT)
        .and_then(|i| i.get("process_id")?.parse().ok())
        .expect("redis-server's process_id");

    let t0 = Instant::now();
    cluster
        .node(p)
        .signal(Signal::SIGSTOP)
        .expect("SIGSTOP the primary's agent");
    let (order, attempts, sentinel_acks) = measure(&cluster, s, t0);
    // Checked at once, long after the promotion: a zombie is a killed server its frozen
    // parent has not reaped yet.
    let state_after = proc_state(server_pid);
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name().into()).collect();
    println!("frozen agent: {}", order.report(&names, p));
    println!("failed direct writes: {}", failure_kinds(&attempts, t0));
    let logs = cluster.dump_logs();
    assert_fenced_in_time(&order, &names, p, &logs);
    assert!(
        matches!(state_after, None | Some('Z' | 'X')),
        "the old primary's redis-server (pid {server_pid}) still runs (state {state_after:?}) \
         after another member was promoted: the guard did not kill it\n{logs}"
    );
    let new = order.new;
    let new_port = cluster.node(new).redis_port();
    assert_new_leader(&cluster, &order, token, new_port);

    let t_cont = Instant::now();
    cluster
        .node(p)
        .signal(Signal::SIGCONT)
        .expect("SIGCONT the agent");
    wait_rejoined(&cluster, p, new, new_port);
    println!(
        "rejoined as a replica of {} {} after SIGCONT",
        names[new],
        secs(t_cont.elapsed())
    );
    // The guard kills redis-server outright: what it acknowledged in its last moments may
    // not have reached a replica. Report, do not assert.
    let acks = direct_acks(&attempts, old_port);
    let lost = kit_redis::lost_writes_as(new_port, Some(REDIS_PASSWORD), &acks).expect("check");
    let lost_s =
        kit_redis::lost_writes_as(new_port, Some(REDIS_PASSWORD), &sentinel_acks).expect("check");
    println!(
        "direct writer: {} acknowledged, {} lost; Sentinel writer: {} acknowledged, {} lost",
        acks.len(),
        lost.len(),
        sentinel_acks.len(),
        lost_s.len()
    );
}

#[test]
fn primary_cut_off_from_etcd_and_replicas_stops_acknowledging_before_promotion() {
    let _serial = serial();
    let cluster = Cluster::start(
        ClusterSpec::new(3)
            .redis()
            .ttl(TTL)
            .with_proxies()
            .without_haproxy(),
    )
    .expect("start a Redis cluster");
    let s = start_writing(&cluster);
    let p = s.p;
    let old_port = cluster.node(p).redis_port();
    let token = s.token;

    // etcd, the redis proxy the replicas stream through and the REST proxy their peer
    // probes use; the direct writer and the observers use the real ports.
    // A client that only reads, connected before the fault.
    let mut idle = kit_redis::connect_as(old_port, Some(REDIS_PASSWORD), IO_TIMEOUT)
        .expect("an idle connection to the primary");
    let pong: String = redis::cmd("PING").query(&mut idle).expect("PING");
    assert_eq!(pong, "PONG");

    let t0 = Instant::now();
    cluster.proxies(p).isolate();
    let (order, attempts, sentinel_acks) = measure(&cluster, s, t0);
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name().into()).collect();
    println!("cut off: {}", order.report(&names, p));
    println!("failed direct writes: {}", failure_kinds(&attempts, t0));
    let logs = cluster.dump_logs();
    assert_fenced_in_time(&order, &names, p, &logs);
    // The fence disconnects the clients of the demoted primary so they rediscover (a
    // write held by CLIENT PAUSE WRITE may instead be refused with READONLY when the
    // server turns replica, and the writer then drops its connection itself: the idle
    // connection is the witness), and a client that reconnects anyway is refused.
    let idle_answered = redis::cmd("PING").query::<String>(&mut idle);
    assert!(
        idle_answered.is_err(),
        "a connection opened before the fault still answers after the fence \
         ({idle_answered:?}): clients of the demoted primary were not disconnected\n{logs}"
    );
    assert!(
        attempts
            .iter()
            .any(|a| a.sent > order.first_failure.at && a.code.as_deref() == Some("READONLY")),
        "no write to the fenced old primary was refused with READONLY: {}\n{logs}",
        failure_kinds(&attempts, t0)
    );
    // Fenced, not dead: the server still runs and refuses writes as a replica.
    let fenced = info(old_port, "replication", IO_TIMEOUT);
    assert_eq!(
        fenced
            .as_ref()
            .and_then(|i| i.get("role"))
            .map(String::as_str),
        Some("slave"),
        "the fenced old primary is a replica (of no one): {fenced:?}\n{logs}"
    );
    let new = order.new;
    let advertised_new = cluster.proxies(new).pg.port();
    assert_new_leader(&cluster, &order, token, advertised_new);

    let t_heal = Instant::now();
    cluster.proxies(p).heal();
    wait_rejoined(&cluster, p, new, advertised_new);
    println!(
        "rejoined as a replica of {} {} after the heal",
        names[new],
        secs(t_heal.elapsed())
    );
    // Writes the isolated primary acknowledged after the cut never reached a replica:
    // they are the price of the fence deadline, and they are lost. Report them.
    let acks = direct_acks(&attempts, old_port);
    let after_cut = acks.iter().filter(|a| a.at >= t0).count();
    let lost =
        kit_redis::lost_writes_as(cluster.node(new).redis_port(), Some(REDIS_PASSWORD), &acks)
            .expect("check");
    let lost_s = kit_redis::lost_writes_as(
        cluster.node(new).redis_port(),
        Some(REDIS_PASSWORD),
        &sentinel_acks,
    )
    .expect("check");
    println!(
        "direct writer: {} acknowledged ({after_cut} after the cut, the last at {}), {} lost; \
         Sentinel writer: {} acknowledged, {} lost",
        acks.len(),
        since(t0, order.last_ack.at),
        lost.len(),
        sentinel_acks.len(),
        lost_s.len()
    );
}
