//! `warden-bench-failover`: repeat the node-crash failover and measure it.
//!
//! Each run starts a fresh 3-node cluster (single etcd, HAProxy), runs a
//! writer through HAProxy's write port (one insert at a time, unique ids,
//! every acknowledgement timestamped, reconnecting on error), SIGKILLs the
//! primary's node (agent, guard and postmaster together), and measures:
//!
//! * the remaining lease at the kill: when etcd will expire the old leader's
//!   lease, estimated from `LeaseTimeToLive` polled every 20 ms after the kill
//!   (see `observe::LeaseWatch`) — the physical floor of an unplanned
//!   failover;
//! * the failover time: from the kill to the first write acknowledged by the
//!   new primary (through HAProxy, so its health-check interval is included);
//! * acknowledged writes lost: after the old node was restarted and the
//!   cluster converged, acknowledged ids missing on the new primary.
//!
//! One line per run, then median and max. Usage:
//! `warden-bench-failover [--runs N] [--ttl SECONDS] [--tls]` (defaults 5 and 10;
//! `--tls`: etcd, the REST API and replication over verified TLS, as in production).
//! Set WARDEN_BIN_DIR to use prebuilt binaries. Ctrl-C stops after cleaning
//! up.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use warden_tests::observe::LeaseWatch;
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{process, wait, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for the first write on the new primary after the kill.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);
/// Acknowledged writes before the kill, so the writer is in its steady state.
const WARMUP_ACKS: usize = 200;
/// Polls of the lease after the kill are used from this offset on, so a
/// keep-alive already in flight at the kill cannot skew the estimate.
const IN_FLIGHT: Duration = Duration::from_millis(100);

struct Args {
    runs: usize,
    ttl: u32,
    tls: bool,
}

fn parse_args() -> Result<Args> {
    let usage = "usage: warden-bench-failover [--runs N] [--ttl SECONDS] [--tls]";
    let mut a = Args {
        runs: 5,
        ttl: 10,
        tls: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next()
                .with_context(|| format!("{name} needs a value ({usage})"))
        };
        match arg.as_str() {
            "--runs" => {
                a.runs = value("--runs")?.parse().context("--runs: not a number")?;
            }
            "--ttl" => a.ttl = value("--ttl")?.parse().context("--ttl: not a number")?,
            "--tls" => a.tls = true,
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} ({usage})"),
        }
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !(3..=60).contains(&a.ttl) {
        bail!("--ttl must be between 3 and 60");
    }
    Ok(a)
}

/// What one run measured.
#[derive(Debug, Clone)]
struct RunResult {
    old: String,
    new: String,
    /// Remaining lease at the kill: (estimate, ± half-width).
    remaining: Option<(Duration, Duration)>,
    lease_gone: Option<Duration>,
    promoted: Option<Duration>,
    failover: Duration,
    acked: usize,
    lost: usize,
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn signed(d: f64) -> String {
    format!("{d:+.2} s")
}

impl RunResult {
    fn line(&self, i: usize, runs: usize) -> String {
        let remaining = self.remaining.map_or("n/a".into(), |(r, w)| {
            format!("{} (±{:.2})", secs(r), w.as_secs_f64())
        });
        let over = self.remaining.map_or("n/a".into(), |(r, _)| {
            signed(self.failover.as_secs_f64() - r.as_secs_f64())
        });
        format!(
            "run {i}/{runs}: killed {} with {remaining} of lease left; lease gone at +{}, \
             {} answered /primary 200 at +{}, first write acknowledged by {} at +{} \
             (remaining lease {over}); {} writes acknowledged, {} lost",
            self.old,
            self.lease_gone.map_or("?".into(), secs),
            self.new,
            self.promoted.map_or("?".into(), secs),
            self.new,
            secs(self.failover),
            self.acked,
            self.lost,
        )
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("warden-bench-failover: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    let args = parse_args()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    // Children must not get the terminal's Ctrl-C: the runs clean up.
    process::detach_process_groups();
    println!(
        "warden-bench-failover: {} runs, ttl {} s, loop_wait 1 s, retry_timeout 3 s, 3 nodes, \
         writes through HAProxy{}",
        args.runs,
        args.ttl,
        if args.tls {
            ", etcd/REST/replication over TLS"
        } else {
            ""
        }
    );
    let mut results = Vec::new();
    let mut failed = 0;
    for i in 1..=args.runs {
        if stop.load(Ordering::SeqCst) {
            println!("interrupted");
            break;
        }
        let out =
            std::panic::catch_unwind(AssertUnwindSafe(|| run_once(args.ttl, args.tls, &stop)));
        match out {
            Ok(Ok(Some(r))) => {
                println!("{}", r.line(i, args.runs));
                results.push(r);
            }
            Ok(Ok(None)) => println!("run {i}/{}: interrupted", args.runs),
            Ok(Err(e)) => {
                failed += 1;
                println!("run {i}/{}: FAILED: {e:#}", args.runs);
            }
            Err(_) => {
                failed += 1;
                println!("run {i}/{}: FAILED (panic above)", args.runs);
            }
        }
    }
    summary(&results, failed);
    Ok(failed == 0 && !results.is_empty())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().max_by(f64::total_cmp)
}

fn summary(results: &[RunResult], failed: usize) {
    let fmt = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{x:.2} s"));
    let fmt_signed = |x: Option<f64>| x.map_or("n/a".into(), signed);
    let failover: Vec<f64> = results.iter().map(|r| r.failover.as_secs_f64()).collect();
    let remaining: Vec<f64> = results
        .iter()
        .filter_map(|r| r.remaining.map(|(d, _)| d.as_secs_f64()))
        .collect();
    let over: Vec<f64> = results
        .iter()
        .filter_map(|r| {
            r.remaining
                .map(|(d, _)| r.failover.as_secs_f64() - d.as_secs_f64())
        })
        .collect();
    let lost: Vec<f64> = results.iter().map(|r| r.lost as f64).collect();
    println!(
        "summary over {} runs ({failed} failed): kill -> first write on the new primary: median {}, max {}; \
         remaining lease at kill: median {}; failover minus remaining lease: median {}, max {}; \
         acknowledged writes lost: median {}, max {}, total {}",
        results.len(),
        fmt(median(failover.clone())),
        fmt(max(&failover)),
        fmt(median(remaining)),
        fmt_signed(median(over.clone())),
        fmt_signed(max(&over)),
        median(lost.clone()).map_or("n/a".into(), |x| format!("{x}")),
        max(&lost).map_or("n/a".into(), |x| format!("{x}")),
        results.iter().map(|r| r.lost).sum::<usize>(),
    );
}

/// Poll `f` until it returns `Some`, at most `timeout`; `Ok(None)` if
/// interrupted, an error on timeout.
fn poll<T>(
    stop: &AtomicBool,
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> Result<Option<T>> {
    let mut interrupted = false;
    let v = wait::poll_until(timeout, || {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            return Some(None);
        }
        f().map(Some)
    });
    match v {
        Some(v) => Ok(v),
        None if interrupted => Ok(None),
        None => bail!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            wait::dump_registered_logs()
        ),
    }
}

fn run_once(ttl: u32, tls: bool, stop: &AtomicBool) -> Result<Option<RunResult>> {
    let mut spec = ClusterSpec::new(3).ttl(ttl);
    if tls {
        spec = spec.with_tls_everywhere();
    }
    let mut cluster = Cluster::start(spec)?;
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let p = before.primary;
    let old = cluster.node(p).name().to_string();
    let old_port = cluster.node(p).pg_port();
    let kv = cluster
        .leader_key()?
        .context("leader key vacant after convergence")?;
    if kv.value != old {
        bail!("leader key names {}, /primary says {old}", kv.value);
    }
    let opts = WriterOptions {
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(1),
        pause_after_error: Duration::from_millis(10),
        ..WriterOptions::default()
    };
    let writer = Writer::start(cluster.write_port(), "bench_writes", opts)?;
    let warm = poll(
        stop,
        Duration::from_secs(30),
        "writes through HAProxy",
        || (writer.acks().len() >= WARMUP_ACKS).then_some(()),
    )?;
    if warm.is_none() {
        return Ok(None);
    }
    let lease = LeaseWatch::start(cluster.etcd(), kv.lease);
    let primaries = cluster.watch_primaries();

    let t_kill = Instant::now();
    cluster.node_mut(p).kill(Signal::SIGKILL)?;

    let first = poll(
        stop,
        FAILOVER_TIMEOUT,
        "the first write acknowledged by the new primary",
        || {
            writer
                .acks_since(t_kill)
                .into_iter()
                .find(|a| a.server_port != old_port)
        },
    )?;
    let Some(first) = first else {
        return Ok(None);
    };
    let failover = first.acked - t_kill;
    let new = cluster
        .nodes()
        .iter()
        .position(|n| n.pg_port() == first.server_port)
        .context("the first write after the kill came from an unknown port")?;
    // Once the lease is gone nothing more is learnt about it.
    poll(stop, Duration::from_secs(5), "the old lease gone", || {
        lease.gone(t_kill)
    })?;
    let remaining = lease.expiry(t_kill + IN_FLIGHT).map(|(lo, hi)| {
        let mid = lo + (hi - lo) / 2;
        (mid.saturating_duration_since(t_kill), (hi - lo) / 2)
    });
    let lease_gone = lease.gone(t_kill).map(|t| t.seen - t_kill);
    let promoted = primaries
        .first_other_200(p, t_kill)
        .map(|(_, t)| t.seen - t_kill);
    lease.stop();
    primaries.stop();
    let outcomes = writer.stop();
    let acks = workload::acks_of(&outcomes);

    // Bring the old node back so the run ends converged, then count.
    cluster.node_mut(p).start()?;
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    if after.primary != new {
        bail!(
            "converged on {} although {} acknowledged the first write after the kill",
            cluster.node(after.primary).name(),
            cluster.node(new).name()
        );
    }
    let present = workload::ids_in(cluster.node(new).pg_port(), "bench_writes")?;
    let lost = workload::lost(&acks, &present).len();
    Ok(Some(RunResult {
        old,
        new: cluster.node(new).name().to_string(),
        remaining,
        lease_gone,
        promoted,
        failover,
        acked: acks.len(),
        lost,
    }))
}
