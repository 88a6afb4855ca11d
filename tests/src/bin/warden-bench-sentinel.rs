//! `warden-bench-sentinel`: issue 13's side-by-side benchmark — Warden's Redis mode
//! against real Redis Sentinel, on the same machine, with the same writer, in one run.
//!
//! Sentinel side, per run: a fresh 1 primary + 2 replicas + 3 `redis-server
//! --sentinel` (quorum 2, `down-after-milliseconds` `--down-after`, failover-timeout
//! 60000, parallel-syncs one). Warden side: a fresh 3-member Redis cluster of the kit (one etcd, ttl
//! `--ttl`, loop_wait 1), each agent running its redis-server and a Sentinel-compatible
//! port. The writer is the same on both: [`SentinelWriter`] (`SET k<i> <i>` one at a
//! time to the primary the Sentinel ports name, rediscovering on any error), or, for
//! `partition`, a client that writes straight to the primary's port.
//!
//! * `kill`: SIGKILL the primary (Warden: the primary's node, agent and redis-server);
//!   gap = kill → first write acknowledged by another server.
//! * `switchover` (alias `failover`): Sentinel `SENTINEL FAILOVER mymaster`, Warden
//!   `wardenctl switchover --force`; gap = last ack by the old primary → first ack by
//!   the new one. Also: how long after the command the old primary still acknowledged.
//! * `partition`: the primary and one client (writing straight to the primary's port
//!   and reconnecting there on any error) are cut off from everything else for `--cut`
//!   seconds, then healed. Sentinel: a fault proxy in front of the primary carries the
//!   Sentinels' and the replicas' connections. Warden: the kit's per-node proxies (the
//!   node's etcd, the connections other members open to its redis-server, its REST
//!   API). Reports how long after the cut the old primary acknowledged writes and how
//!   many acknowledged writes the final primary lacks once the old one has rejoined.
//!   `--wait` makes the client follow every `SET` with `WAIT 1 500` and count only
//!   writes a replica confirmed.
//! * `idle`: both sides formed and idle for `--idle` seconds; RSS (`VmRSS`) at the end
//!   and CPU (utime + stime) over the window of each Warden agent (and its guard) and
//!   each Sentinel.
//!
//! Every acknowledged write is checked on the final primary (`MGET`): missing = lost.
//! One line per run and target, then median and max per target. Usage:
//! `warden-bench-sentinel [--runs N] [--target both|warden|sentinel]
//! [--scenario kill|switchover|partition|idle] [--down-after MS] [--ttl S] [--cut S]
//! [--idle S] [--wait]` (defaults 5, both, kill, 5000, 10, 30, 30). The agents are
//! those of `WARDEN_BIN_DIR` (or a debug build, see `warden_tests::bins`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::Signal;
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::proxy::Proxy;
use warden_tests::redis::{
    connect_as, discover_primary, info, lost_writes_as, sentinel_failover, sentinel_master, Ack,
    RedisServer, Sentinel, SentinelOptions, SentinelSetup, SentinelWriter,
};
use warden_tests::stats::median;
use warden_tests::wait::poll_until;
use warden_tests::{Cluster, ClusterSpec};

const USAGE: &str = "usage: warden-bench-sentinel [--runs N] [--target both|warden|sentinel] \
     [--scenario kill|switchover|partition|idle] [--down-after MS] [--ttl S] [--cut S] \
     [--idle S] [--wait]";
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound for each later step (a leader, a rejoin, more writes).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Writes before the fault, so the writer is at full rate when it happens.
const WARM_UP: Duration = Duration::from_secs(1);
/// Writes the new primary must acknowledge before the run ends.
const AFTER_ACKS: usize = 1000;
/// Bound on each operation of the partition's direct client.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// `WAIT 1 <ms>` after each write with `--wait`.
const WAIT_MS: u64 = 500;
/// Pause between the direct client's reconnect attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    Kill,
    Switchover,
    Partition,
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Sentinel,
    Warden,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Sentinel => "sentinel",
            Target::Warden => "warden",
        }
    }
}

#[derive(Debug)]
struct Args {
    runs: usize,
    targets: Vec<Target>,
    scenario: Scenario,
    down_after_ms: u64,
    ttl: u32,
    cut: Duration,
    idle: Duration,
    wait: bool,
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T> {
    value
        .parse()
        .ok()
        .with_context(|| format!("{flag}: {value:?} is not a number"))
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 5,
        targets: vec![Target::Sentinel, Target::Warden],
        scenario: Scenario::Kill,
        down_after_ms: 5000,
        ttl: 10,
        cut: Duration::from_secs(30),
        idle: Duration::from_secs(30),
        wait: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--wait" => {
                args.wait = true;
                continue;
            }
            _ => {}
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value ({USAGE})"))?;
        match flag.as_str() {
            "--runs" => {
                args.runs = number(&flag, &value)?;
                ensure!(args.runs > 0, "--runs must be at least 1");
            }
            "--down-after" => args.down_after_ms = number(&flag, &value)?,
            "--ttl" => args.ttl = number(&flag, &value)?,
            "--cut" => args.cut = Duration::from_secs(number(&flag, &value)?),
            "--idle" => args.idle = Duration::from_secs(number(&flag, &value)?),
            "--target" => {
                args.targets = match value.as_str() {
                    "both" => vec![Target::Sentinel, Target::Warden],
                    "warden" => vec![Target::Warden],
                    "sentinel" => vec![Target::Sentinel],
                    other => bail!("--target: {other:?} is not both, warden or sentinel"),
                }
            }
            "--scenario" => {
                args.scenario = match value.as_str() {
                    "kill" => Scenario::Kill,
                    "switchover" | "failover" => Scenario::Switchover,
                    "partition" => Scenario::Partition,
                    "idle" => Scenario::Idle,
                    other => {
                        bail!("--scenario: {other:?} is not kill, switchover, partition or idle")
                    }
                }
            }
            other => bail!("unexpected argument {other:?} ({USAGE})"),
        }
    }
    Ok(args)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-bench-sentinel: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One measured quantity of a run.
#[derive(Debug, Clone, Copy)]
struct Metric {
    name: &'static str,
    value: f64,
    unit: &'static str,
    digits: usize,
}

fn secs(name: &'static str, d: Duration) -> Metric {
    Metric {
        name,
        value: d.as_secs_f64(),
        unit: " s",
        digits: 3,
    }
}

// Counts far below 2^52: exact as f64.
#[allow(clippy::cast_precision_loss)]
fn count(name: &'static str, n: usize) -> Metric {
    Metric {
        name,
        value: n as f64,
        unit: "",
        digits: 0,
    }
}

fn value(name: &'static str, value: f64, unit: &'static str, digits: usize) -> Metric {
    Metric {
        name,
        value,
        unit,
        digits,
    }
}

fn describe(what: Scenario, a: &Args, opts: SentinelOptions) -> String {
    let sentinel = format!(
        "Sentinel: redis-server 1 primary + 2 replicas, 3 Sentinels (quorum {}, down-after \
         {} ms, failover-timeout {} ms, parallel-syncs 1)",
        opts.quorum, opts.down_after_ms, opts.failover_timeout_ms
    );
    let warden = format!(
        "Warden: 3 agents with redis-server, 1 etcd (ttl {} s, loop_wait 1 s)",
        a.ttl
    );
    let scenario = match what {
        Scenario::Kill => {
            "SIGKILL of the primary; gap = kill -> first ack by another server".to_string()
        }
        Scenario::Switchover => "planned switchover (SENTINEL FAILOVER / wardenctl switchover \
             --force); gap = last ack by the old primary -> first ack by the new"
            .to_string(),
        Scenario::Partition => format!(
            "the primary and a direct client cut off for {} s{}",
            a.cut.as_secs(),
            if a.wait {
                format!(", every write followed by WAIT 1 {WAIT_MS}")
            } else {
                String::new()
            }
        ),
        Scenario::Idle => format!("{} s idle; RSS and CPU per process", a.idle.as_secs()),
    };
    format!("{sentinel}; {warden}; {scenario}")
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let opts = SentinelOptions {
        down_after_ms: args.down_after_ms,
        ..SentinelOptions::default()
    };
    println!(
        "warden-bench-sentinel: {} runs; {}",
        args.runs,
        describe(args.scenario, &args, opts)
    );
    let mut all: Vec<(Target, Vec<Metric>)> = Vec::new();
    let mut report = |i: usize, t: Target, m: Vec<Metric>| {
        let line: Vec<String> = m
            .iter()
            .map(|m| format!("{} {:.*}{}", m.name, m.digits, m.value, m.unit))
            .collect();
        println!("run {i} {}: {}", t.name(), line.join("; "));
        all.push((t, m));
    };
    for i in 1..=args.runs {
        if args.scenario == Scenario::Idle {
            for (t, m) in idle_run(&args, opts).with_context(|| format!("run {i}"))? {
                report(i, t, m);
            }
            continue;
        }
        for &t in &args.targets {
            let m = one_run(t, &args, opts).with_context(|| format!("run {i}, {}", t.name()))?;
            report(i, t, m);
        }
    }
    for &t in &args.targets {
        let runs: Vec<&Vec<Metric>> = all
            .iter()
            .filter(|(x, _)| *x == t)
            .map(|(_, m)| m)
            .collect();
        let Some(first) = runs.first() else { continue };
        let parts: Vec<String> = first
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let v: Vec<f64> = runs.iter().map(|r| r[k].value).collect();
                let max = v.iter().copied().fold(f64::MIN, f64::max);
                format!(
                    "{} median {:.*}, max {:.*}{}",
                    m.name,
                    m.digits,
                    median(v),
                    m.digits,
                    max,
                    m.unit
                )
            })
            .collect();
        println!(
            "summary {} ({} runs): {}",
            t.name(),
            runs.len(),
            parts.join("; ")
        );
    }
    Ok(())
}

fn one_run(target: Target, args: &Args, opts: SentinelOptions) -> Result<Vec<Metric>> {
    match (target, args.scenario) {
        (Target::Sentinel, Scenario::Kill | Scenario::Switchover) => {
            sentinel_fault(args.scenario, opts)
        }
        (Target::Warden, Scenario::Kill | Scenario::Switchover) => {
            warden_fault(args.scenario, args.ttl)
        }
        (Target::Sentinel, Scenario::Partition) => sentinel_partition(args, opts),
        (Target::Warden, Scenario::Partition) => warden_partition(args),
        (_, Scenario::Idle) => bail!("idle runs both targets together"),
    }
}

/// Writes per second acknowledged before `at`.
fn rate_before(acks: &[Ack], at: Instant) -> f64 {
    let before = acks.partition_point(|a| a.at <= at);
    let span = acks
        .first()
        .map_or(0.0, |f| at.saturating_duration_since(f.at).as_secs_f64());
    // Counts far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    if span > 0.0 {
        before as f64 / span
    } else {
        0.0
    }
}

/// Let the writer reach full rate; fail if it got nowhere.
fn warm_up(acked: impl Fn() -> usize, dir: &Path) -> Result<()> {
    std::thread::sleep(WARM_UP);
    ensure!(
        acked() > 0,
        "the writer got no acknowledgement in {WARM_UP:?} (logs in {})",
        dir.display()
    );
    Ok(())
}

/// After the fault: the first write on a new primary, then [`AFTER_ACKS`] more, so
/// that writes still landing on the old primary would show up as lost. Returns the
/// first ack elsewhere.
fn follow_writer(writer: &SentinelWriter, fault_at: Instant, old: u16, dir: &Path) -> Result<Ack> {
    let first_new = poll_until(STEP_TIMEOUT + Duration::from_secs(30), || {
        writer.first_ack_elsewhere(fault_at, old)
    })
    .with_context(|| {
        format!(
            "no write acknowledged by a new primary (logs in {})",
            dir.display()
        )
    })?;
    let start_count = writer.ack_count();
    poll_until(STEP_TIMEOUT, || {
        (writer.ack_count() >= start_count + AFTER_ACKS).then_some(())
    })
    .with_context(|| {
        format!(
            "the writer stalled on the new primary (logs in {})",
            dir.display()
        )
    })?;
    Ok(first_new)
}

/// The kill and switchover metrics from what the writer saw.
fn fault_metrics(
    scenario: Scenario,
    fault_at: Instant,
    first_new: Ack,
    last_old: Ack,
    acks: &[Ack],
    lost: usize,
) -> Vec<Metric> {
    let to_new = first_new.at.duration_since(fault_at);
    let gap = match scenario {
        Scenario::Kill => to_new,
        _ => first_new.at.saturating_duration_since(last_old.at),
    };
    vec![
        secs("gap", gap),
        secs("fault -> first ack on the new primary", to_new),
        secs(
            "old primary acknowledged until (after the fault)",
            last_old.at.saturating_duration_since(fault_at),
        ),
        count("lost", lost),
        count("acknowledged", acks.len()),
        value("rate before", rate_before(acks, fault_at), " writes/s", 0),
    ]
}

fn sentinel_fault(scenario: Scenario, opts: SentinelOptions) -> Result<Vec<Metric>> {
    let mut setup = SentinelSetup::start(2, 3, opts)?;
    setup.wait_ready(READY_TIMEOUT)?;
    let sentinels = setup.sentinel_ports();
    let old = setup.servers[0].port();
    let writer = SentinelWriter::start(sentinels.clone());
    warm_up(|| writer.ack_count(), setup.dir())?;
    let fault_at = Instant::now();
    match scenario {
        Scenario::Kill => setup.server_mut(old).context("primary not found")?.kill()?,
        _ => sentinel_failover(sentinels[0])?,
    }
    let first_new = follow_writer(&writer, fault_at, old, setup.dir())?;
    if scenario == Scenario::Switchover {
        // The old primary must have been turned into a replica, else nothing
        // it acknowledged after the promotion can be counted as lost yet.
        poll_until(STEP_TIMEOUT, || {
            (info(old, "replication").ok()?.get("role")? == "slave").then_some(())
        })
        .context("the old primary was not reconfigured as a replica")?;
    }
    let last_old = writer
        .last_ack_on(old)
        .context("no write acknowledged by the old primary")?;
    let acks = writer.stop();
    let final_primary = discover_primary(&sentinels).context("no Sentinel names a primary")?;
    ensure!(
        final_primary == first_new.port,
        "Sentinels name port {final_primary}, the writer's new primary was {}",
        first_new.port
    );
    let lost = lost_writes_as(final_primary, None, &acks)?.len();
    Ok(fault_metrics(
        scenario, fault_at, first_new, last_old, &acks, lost,
    ))
}

/// `INFO replication` of a Warden member's redis-server.
fn replication(port: u16) -> Option<std::collections::HashMap<String, String>> {
    let mut c = connect_as(port, Some(REDIS_PASSWORD), IO_TIMEOUT).ok()?;
    let text: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

fn sentinel_ports(cluster: &Cluster) -> Vec<u16> {
    cluster
        .nodes()
        .iter()
        .filter_map(warden_tests::node::Node::sentinel_port)
        .collect()
}

/// The leader key's holder, as a node index.
fn leader_index(cluster: &Cluster) -> Option<usize> {
    let kv = cluster.leader_key().ok()??;
    cluster.index_of(&kv.value)
}

/// A formed 3-member Redis cluster: a leader answering 200 on `/primary`, two
/// replicas on `/replica` and streaming from it, every Sentinel port naming it. Returns the cluster and the leader's index.
fn start_warden(ttl: u32, proxies: bool) -> Result<(Cluster, usize)> {
    let mut spec = ClusterSpec::new(3).redis().ttl(ttl).without_haproxy();
    if proxies {
        spec = spec.with_proxies();
    }
    let cluster = Cluster::start(spec)?;
    let dir = cluster.dir().display().to_string();
    let p = poll_until(READY_TIMEOUT, || {
        let p = leader_index(&cluster)?;
        // Formed by the agents' own account (200 on /primary and /replica): a member
        // still cloning could not take over.
        (cluster.formation()?.0 == p).then_some(())?;
        let port = cluster.node(p).redis_port();
        let i = replication(port)?;
        (i.get("role")? == "master" && i.get("connected_slaves")? == "2").then_some(())?;
        // The ports name the leader's `redis.connect_address`: its proxy, if it has one.
        let named = if proxies {
            cluster.proxies(p).pg.port()
        } else {
            port
        };
        sentinel_ports(&cluster)
            .into_iter()
            .all(|s| discover_primary(&[s]) == Some(named))
            .then_some(p)
    })
    .with_context(|| format!("the Redis cluster did not form (logs in {dir})"))?;
    Ok((cluster, p))
}

/// `wardenctl switchover --force` from node `o` to the next one.
fn wardenctl_switchover(cluster: &Cluster, o: usize) -> Result<()> {
    let old = cluster.node(o).name();
    let candidate = cluster.node((o + 1) % cluster.nodes().len()).name();
    let mut cmd = warden_tests::bins::wardenctl_command()?;
    cmd.arg("-c").arg(cluster.node(o).config_path()).args([
        "switchover",
        cluster.scope(),
        "--leader",
        old,
        "--candidate",
        candidate,
        "--force",
    ]);
    let out = warden_tests::process::run_bounded(&mut cmd, Duration::from_secs(40))?;
    ensure!(
        out.status.is_some_and(|s| s.success()),
        "wardenctl switchover: {}",
        out.describe()
    );
    Ok(())
}

fn warden_fault(scenario: Scenario, ttl: u32) -> Result<Vec<Metric>> {
    let (mut cluster, p) = start_warden(ttl, false)?;
    let dir = cluster.dir().to_path_buf();
    let old = cluster.node(p).redis_port();
    let writer = SentinelWriter::start_as(sentinel_ports(&cluster), Some(REDIS_PASSWORD.into()));
    warm_up(|| writer.ack_count(), &dir)?;
    let fault_at = Instant::now();
    match scenario {
        Scenario::Kill => cluster.node_mut(p).kill(Signal::SIGKILL)?,
        _ => wardenctl_switchover(&cluster, p)?,
    }
    let first_new = follow_writer(&writer, fault_at, old, &dir)?;
    if scenario == Scenario::Switchover {
        poll_until(STEP_TIMEOUT, || {
            let i = replication(old)?;
            (i.get("role")? == "slave" && i.get("master_link_status")? == "up").then_some(())
        })
        .context("the old primary does not stream from the new one")?;
    }
    let last_old = writer
        .last_ack_on(old)
        .context("no write acknowledged by the old primary")?;
    let acks = writer.stop();
    let leader = leader_index(&cluster).context("no leader")?;
    let final_primary = cluster.node(leader).redis_port();
    ensure!(
        final_primary == first_new.port,
        "the leader's redis port is {final_primary}, the writer's new primary was {}",
        first_new.port
    );
    let lost = lost_writes_as(final_primary, Some(REDIS_PASSWORD), &acks)?.len();
    Ok(fault_metrics(
        scenario, fault_at, first_new, last_old, &acks, lost,
    ))
}

#[derive(Debug, Default)]
struct DirectState {
    acks: Vec<Ack>,
    /// Writes `WAIT` reported as reaching no replica (not acknowledged).
    unconfirmed: usize,
}

/// A client that writes `SET k<i> <i>` straight to one port, reconnecting to the same
/// port on any error: a client on the primary's side of a partition.
#[derive(Debug)]
struct DirectWriter {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<DirectState>>,
    handle: Option<JoinHandle<()>>,
}

impl DirectWriter {
    fn start(port: u16, password: Option<&'static str>, wait: bool) -> DirectWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(DirectState::default()));
        let (s, st) = (stop.clone(), state.clone());
        let handle = std::thread::spawn(move || direct_loop(port, password, wait, &s, &st));
        DirectWriter {
            stop,
            state,
            handle: Some(handle),
        }
    }

    fn ack_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .acks
            .len()
    }

    fn stop(mut self) -> DirectState {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn direct_loop(
    port: u16,
    password: Option<&str>,
    wait: bool,
    stop: &AtomicBool,
    state: &Mutex<DirectState>,
) {
    let mut conn: Option<redis::Connection> = None;
    let mut id: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(c) = conn.as_mut() else {
            conn = connect_as(port, password, IO_TIMEOUT).ok();
            if conn.is_none() {
                std::thread::sleep(RETRY_PAUSE);
            }
            continue;
        };
        // A new id per attempt: a failed SET may or may not have been applied.
        id += 1;
        let set = redis::cmd("SET")
            .arg(format!("k{id}"))
            .arg(id)
            .query::<()>(c);
        let confirmed = match (set, wait) {
            (Ok(()), false) => Ok(true),
            (Ok(()), true) => redis::cmd("WAIT")
                .arg(1)
                .arg(WAIT_MS)
                .query::<i64>(c)
                .map(|n| n >= 1),
            (Err(e), _) => Err(e),
        };
        let at = Instant::now();
        let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
        match confirmed {
            Ok(true) => s.acks.push(Ack { id, at, port }),
            Ok(false) => s.unconfirmed += 1,
            Err(_) => {
                drop(s);
                conn = None;
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// The partition metrics: `new_at` when another primary was named, `acks` all on
/// the old primary, `lost` their ids missing on the final primary.
fn partition_metrics(
    cut_at: Instant,
    new_at: Option<Instant>,
    st: &DirectState,
    lost: &[u64],
) -> Vec<Metric> {
    let after = |a: &Ack| a.at.saturating_duration_since(cut_at);
    let last = st.acks.last().map_or(Duration::ZERO, after);
    let last_lost = lost
        .last()
        .and_then(|id| st.acks.iter().rev().find(|a| a.id == *id))
        .map_or(Duration::ZERO, after);
    let acked_after = st.acks.len() - st.acks.partition_point(|a| a.at <= cut_at);
    vec![
        secs(
            "new primary named after",
            new_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(cut_at)),
        ),
        secs("old primary acknowledged until (after the cut)", last),
        count("acknowledged after the cut", acked_after),
        count("lost", lost.len()),
        secs("last lost write acknowledged at (after the cut)", last_lost),
        count("acknowledged", st.acks.len()),
        count("not confirmed by WAIT", st.unconfirmed),
        value("rate before", rate_before(&st.acks, cut_at), " writes/s", 0),
    ]
}

/// Sleep until `at` (the end of a fault window; not a synchronisation).
fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

/// Primary, proxy in front of it, replicas and Sentinels that reach the primary only
/// through the proxy. Killed on drop (fields drop in order, the directory last).
struct ProxiedSentinels {
    servers: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
    proxy: Proxy,
    dir: tempfile::TempDir,
}

impl ProxiedSentinels {
    fn start(opts: SentinelOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("warden-sentinel-")
            .tempdir()
            .context("creating temporary directory")?;
        let primary = RedisServer::start(&dir.path().join("redis0"), "redis0", None)?;
        let proxy = Proxy::start(primary.port())?;
        let mut servers = vec![primary];
        for i in 1..=2 {
            let name = format!("redis{i}");
            let d = dir.path().join(&name);
            servers.push(RedisServer::start(&d, &name, Some(proxy.port()))?);
        }
        let sentinels = (0..3)
            .map(|i| {
                let name = format!("sentinel{i}");
                Sentinel::start(&dir.path().join(&name), &name, proxy.port(), opts)
            })
            .collect::<Result<Vec<_>>>()?;
        let s = ProxiedSentinels {
            servers,
            sentinels,
            proxy,
            dir,
        };
        // As SentinelSetup::wait_ready: replicas linked, every Sentinel knowing the
        // primary, both replicas and the two other Sentinels.
        poll_until(READY_TIMEOUT, || {
            for r in &s.servers[1..] {
                (info(r.port(), "replication")
                    .ok()?
                    .get("master_link_status")?
                    == "up")
                    .then_some(())?;
            }
            for t in &s.sentinels {
                let m = sentinel_master(t.port()).ok()?;
                (m.get("flags")? == "master"
                    && m.get("num-slaves")? == "2"
                    && m.get("num-other-sentinels")? == "2")
                    .then_some(())?;
            }
            Some(())
        })
        .with_context(|| format!("Sentinels not ready (logs in {})", s.dir.path().display()))?;
        Ok(s)
    }
}

fn sentinel_partition(args: &Args, opts: SentinelOptions) -> Result<Vec<Metric>> {
    let s = ProxiedSentinels::start(opts)?;
    let dir = s.dir.path().to_path_buf();
    let ports: Vec<u16> = s.sentinels.iter().map(Sentinel::port).collect();
    let old = s.servers[0].port();
    let writer = DirectWriter::start(old, None, args.wait);
    warm_up(|| writer.ack_count(), &dir)?;
    let cut_at = Instant::now();
    s.proxy.cut();
    let proxied = s.proxy.port();
    let new_at = poll_until(args.cut, || {
        discover_primary(&ports)
            .filter(|&p| p != proxied)
            .map(|_| Instant::now())
    });
    sleep_until(cut_at + args.cut);
    s.proxy.heal();
    poll_until(STEP_TIMEOUT, || {
        let i = info(old, "replication").ok()?;
        (i.get("role")? == "slave" && i.get("master_link_status")? == "up").then_some(())
    })
    .with_context(|| {
        format!(
            "the old primary did not rejoin as a replica (logs in {})",
            dir.display()
        )
    })?;
    let st = writer.stop();
    let fin = discover_primary(&ports).context("no Sentinel names a primary")?;
    ensure!(fin != proxied, "the Sentinels still name the old primary");
    let lost = lost_writes_as(fin, None, &st.acks)?;
    Ok(partition_metrics(cut_at, new_at, &st, &lost))
}

fn warden_partition(args: &Args) -> Result<Vec<Metric>> {
    let (cluster, p) = start_warden(args.ttl, true)?;
    let dir = cluster.dir().to_path_buf();
    let old = cluster.node(p).redis_port();
    let writer = DirectWriter::start(old, Some(REDIS_PASSWORD), args.wait);
    warm_up(|| writer.ack_count(), &dir)?;
    let cut_at = Instant::now();
    cluster.proxies(p).isolate();
    let new_at = poll_until(args.cut, || {
        leader_index(&cluster)
            .filter(|&l| l != p)
            .map(|_| Instant::now())
    });
    sleep_until(cut_at + args.cut);
    cluster.proxies(p).heal();
    poll_until(STEP_TIMEOUT, || {
        let i = replication(old)?;
        (i.get("role")? == "slave" && i.get("master_link_status")? == "up").then_some(())
    })
    .with_context(|| {
        format!(
            "the old primary did not rejoin as a replica (logs in {})",
            dir.display()
        )
    })?;
    let st = writer.stop();
    let l = leader_index(&cluster).context("no leader after the heal")?;
    ensure!(l != p, "the cut-off node is the leader again");
    let lost = lost_writes_as(cluster.node(l).redis_port(), Some(REDIS_PASSWORD), &st.acks)?;
    Ok(partition_metrics(cut_at, new_at, &st, &lost))
}

/// `VmRSS` of `pid`, in kB.
fn rss_kb(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    field(14)
        .zip(field(15))
        .map(|(u, s)| u + s)
        .with_context(|| format!("no utime/stime in {path}"))
}

/// Clock ticks per second (`getconf CLK_TCK`).
fn clk_tck() -> Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK: not a number")
}

/// The `warden guard` child of agent `pid`.
fn guard_of(pid: i32) -> Option<i32> {
    warden_tests::process::children(pid).into_iter().find(|c| {
        std::fs::read(format!("/proc/{c}/cmdline"))
            .is_ok_and(|b| b.split(|&x| x == 0).nth(1) == Some(b"guard".as_slice()))
    })
}

/// RSS median and max (MB) of `pids` at the end, CPU max (% of one core) over the
/// window that started with `ticks0`.
fn idle_metrics(
    pids: &[i32],
    ticks0: &[u64],
    window: Duration,
    hz: f64,
    what: [&'static str; 3],
) -> Result<Vec<Metric>> {
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    for (&pid, &t0) in pids.iter().zip(ticks0) {
        // kB and ticks far below 2^52: exact as f64.
        #[allow(clippy::cast_precision_loss)]
        {
            rss.push(rss_kb(pid)? as f64 / 1000.0);
            cpu.push((cpu_ticks(pid)? - t0) as f64 / hz / window.as_secs_f64() * 100.0);
        }
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::MIN, f64::max);
    Ok(vec![
        value(what[0], median(rss.clone()), " MB", 1),
        value(what[1], max(&rss), " MB", 1),
        value(what[2], max(&cpu), " % of a core", 2),
    ])
}

/// Both sides formed side by side, idle together for `--idle`.
fn idle_run(args: &Args, opts: SentinelOptions) -> Result<Vec<(Target, Vec<Metric>)>> {
    let hz = clk_tck()?;
    let sentinel = if args.targets.contains(&Target::Sentinel) {
        let s = SentinelSetup::start(2, 3, opts)?;
        s.wait_ready(READY_TIMEOUT)?;
        Some(s)
    } else {
        None
    };
    let warden = if args.targets.contains(&Target::Warden) {
        Some(start_warden(args.ttl, false)?.0)
    } else {
        None
    };
    let mut sentinel_pids = Vec::new();
    for port in sentinel.iter().flat_map(SentinelSetup::sentinel_ports) {
        let i = info(port, "server")?;
        let pid = i.get("process_id").and_then(|p| p.parse().ok());
        sentinel_pids.push(pid.with_context(|| format!("no process_id from Sentinel {port}"))?);
    }
    let agent_pids: Vec<i32> = warden
        .iter()
        .flat_map(|c| c.nodes().iter().filter_map(warden_tests::node::Node::pid))
        .collect();
    let guard_pids = agent_pids
        .iter()
        .map(|&p| guard_of(p).with_context(|| format!("agent {p} has no guard child")))
        .collect::<Result<Vec<_>>>()?;
    let ticks = |pids: &[i32]| {
        pids.iter()
            .map(|&p| cpu_ticks(p))
            .collect::<Result<Vec<_>>>()
    };
    let (s0, a0, g0) = (
        ticks(&sentinel_pids)?,
        ticks(&agent_pids)?,
        ticks(&guard_pids)?,
    );
    let start = Instant::now();
    std::thread::sleep(args.idle);
    let window = start.elapsed();
    let mut out = Vec::new();
    if sentinel.is_some() {
        let m = idle_metrics(
            &sentinel_pids,
            &s0,
            window,
            hz,
            [
                "Sentinel RSS (median of 3)",
                "Sentinel RSS (max of 3)",
                "Sentinel CPU (max of 3)",
            ],
        )?;
        out.push((Target::Sentinel, m));
    }
    if warden.is_some() {
        let mut m = idle_metrics(
            &agent_pids,
            &a0,
            window,
            hz,
            [
                "agent RSS (median of 3)",
                "agent RSS (max of 3)",
                "agent CPU (max of 3)",
            ],
        )?;
        m.extend(idle_metrics(
            &guard_pids,
            &g0,
            window,
            hz,
            [
                "guard RSS (median of 3)",
                "guard RSS (max of 3)",
                "guard CPU (max of 3)",
            ],
        )?);
        out.push((Target::Warden, m));
    }
    Ok(out)
}
