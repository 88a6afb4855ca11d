//! `warden-bench-sentinel`: the Redis Sentinel baseline for issue 13's side-by-side
//! benchmark — how long writes stop, and how many acknowledged writes are lost, when
//! real Redis Sentinel fails over.
//!
//! Each run starts a fresh 1 primary + 2 replicas + 3 Sentinels (quorum 2) on loopback
//! and a Sentinel-aware writer ([`SentinelWriter`]: `SET k<i> <i>` one at a time to the
//! primary `SENTINEL get-master-addr-by-name` names, rediscovering on any error).
//!
//! * `kill`: SIGKILL the primary; measure from the kill to the first write acknowledged
//!   by a new primary.
//! * `failover`: `SENTINEL FAILOVER mymaster` on one Sentinel; measure the write gap,
//!   from the last write acknowledged by the old primary to the first by the new one.
//!
//! Both also report the time from the fault to the first write acknowledged by the new
//! primary, how long after the fault the old primary still acknowledged writes, and the
//! acknowledged writes missing on the final primary (lost). The writer only rediscovers
//! on an error, so after `SENTINEL FAILOVER` it keeps writing to the old primary, which
//! stays writable until Sentinel demotes it; those writes are wiped by its resync. One
//! line per run, then median and max. Usage:
//! `warden-bench-sentinel [--runs N] [--down-after MS] [--scenario kill|failover]`
//! (defaults 5, 5000 — the value operators copy from the guides; 30000 is Sentinel's
//! default — and `kill`). failover-timeout is 60000, parallel-syncs 1.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use warden_tests::redis::{
    discover_primary, info, lost_writes, sentinel_failover, SentinelOptions, SentinelSetup,
    SentinelWriter,
};
use warden_tests::stats::median;
use warden_tests::wait::poll_until;

const USAGE: &str =
    "usage: warden-bench-sentinel [--runs N] [--down-after MS] [--scenario kill|failover]";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Writes before the fault, so the writer is at full rate when it happens.
const WARM_UP: Duration = Duration::from_secs(1);
/// Writes the new primary must acknowledge before the run ends.
const AFTER_ACKS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    Kill,
    Failover,
}

#[derive(Debug)]
struct Args {
    runs: usize,
    down_after_ms: u64,
    scenario: Scenario,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 5,
        down_after_ms: 5000,
        scenario: Scenario::Kill,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value ({USAGE})"))?;
        match flag.as_str() {
            "--runs" => {
                args.runs = value
                    .parse()
                    .with_context(|| format!("--runs: {value:?} is not a number"))?;
                ensure!(args.runs > 0, "--runs must be at least 1");
            }
            "--down-after" => {
                args.down_after_ms = value
                    .parse()
                    .with_context(|| format!("--down-after: {value:?} is not a number"))?;
            }
            "--scenario" => {
                args.scenario = match value.as_str() {
                    "kill" => Scenario::Kill,
                    "failover" => Scenario::Failover,
                    other => bail!("--scenario: {other:?} is not kill or failover"),
                }
            }
            other => bail!("unexpected argument {other:?} ({USAGE})"),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-bench-sentinel: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What one run measured.
struct Outcome {
    /// Kill → first ack by the new primary, or last ack by the old → first by the new.
    gap: Duration,
    /// Fault (kill or command) → first write acknowledged by the new primary.
    to_new: Duration,
    /// Fault → last write acknowledged by the old primary (zero if none after it).
    old_after: Duration,
    lost: usize,
    acked: usize,
    /// The writer's rate before the fault.
    rate: f64,
}

/// Median and max of `v`, formatted with `digits` decimals.
fn med_max(v: &[f64], digits: usize) -> String {
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    format!("median {:.digits$}, max {max:.digits$}", median(v.to_vec()))
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let opts = SentinelOptions {
        down_after_ms: args.down_after_ms,
        ..SentinelOptions::default()
    };
    let what = match args.scenario {
        Scenario::Kill => "SIGKILL of the primary; gap = kill -> first ack by the new primary",
        Scenario::Failover => {
            "SENTINEL FAILOVER; gap = last ack by the old primary -> first ack by the new"
        }
    };
    println!(
        "warden-bench-sentinel: {} runs, redis-server 1 primary + 2 replicas, 3 Sentinels \
         (quorum {}, down-after {} ms, failover-timeout {} ms, parallel-syncs 1), {what}",
        args.runs, opts.quorum, opts.down_after_ms, opts.failover_timeout_ms
    );
    let mut outcomes = Vec::new();
    for i in 1..=args.runs {
        let o = one_run(args.scenario, opts).with_context(|| format!("run {i}"))?;
        println!(
            "run {i}: gap {:.3} s; first ack by the new primary {:.3} s after the fault; \
             old primary acknowledged until {:.3} s after it; lost {} of {} acknowledged \
             writes ({:.0} writes/s before the fault)",
            o.gap.as_secs_f64(),
            o.to_new.as_secs_f64(),
            o.old_after.as_secs_f64(),
            o.lost,
            o.acked,
            o.rate
        );
        outcomes.push(o);
    }
    let secs = |f: fn(&Outcome) -> Duration| -> Vec<f64> {
        outcomes.iter().map(|o| f(o).as_secs_f64()).collect()
    };
    // Counts far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let lost: Vec<f64> = outcomes.iter().map(|o| o.lost as f64).collect();
    println!(
        "summary ({} runs): gap {} s; fault -> new primary {} s; old primary acknowledged \
         for {} s after the fault; lost writes {}",
        outcomes.len(),
        med_max(&secs(|o| o.gap), 3),
        med_max(&secs(|o| o.to_new), 3),
        med_max(&secs(|o| o.old_after), 3),
        med_max(&lost, 0),
    );
    Ok(())
}

fn one_run(scenario: Scenario, opts: SentinelOptions) -> Result<Outcome> {
    let mut setup = SentinelSetup::start(2, 3, opts)?;
    setup.wait_ready(READY_TIMEOUT)?;
    let sentinels = setup.sentinel_ports();
    let old = setup.servers[0].port();
    let writer = SentinelWriter::start(sentinels.clone());
    std::thread::sleep(WARM_UP);
    ensure!(
        writer.ack_count() > 0,
        "the writer got no acknowledgement in {WARM_UP:?} ({} errors; logs in {})",
        writer.errors(),
        setup.dir().display()
    );
    let fault_at = Instant::now();
    match scenario {
        Scenario::Kill => setup.server_mut(old).context("primary not found")?.kill()?,
        Scenario::Failover => sentinel_failover(sentinels[0])?,
    }
    // Sentinel needs down-after, then an election (up to its 10 s timeout on a
    // failed round), then the promotion; a minute on top is ample.
    let bound = Duration::from_millis(opts.down_after_ms) + Duration::from_secs(60);
    let first_new =
        poll_until(bound, || writer.first_ack_elsewhere(fault_at, old)).with_context(|| {
            format!(
                "no write acknowledged by a new primary within {bound:?} (logs in {})",
                setup.dir().display()
            )
        })?;
    // Keep writing on the new primary for a while: writes still landing on a
    // demoted old primary would show up as lost.
    let start_count = writer.ack_count();
    poll_until(Duration::from_secs(30), || {
        (writer.ack_count() >= start_count + AFTER_ACKS).then_some(())
    })
    .context("the writer stalled on the new primary")?;
    if scenario == Scenario::Failover {
        // The old primary must have been turned into a replica, else nothing
        // it acknowledged after the promotion can be counted as lost yet.
        poll_until(Duration::from_secs(30), || {
            (info(old, "replication").ok()?.get("role")? == "slave").then_some(())
        })
        .context("the old primary was not reconfigured as a replica")?;
    }
    let to_new = first_new.at.duration_since(fault_at);
    let last_old = writer
        .last_ack_on(old)
        .context("no write acknowledged by the old primary")?;
    let old_after = last_old.at.saturating_duration_since(fault_at);
    let gap = match scenario {
        Scenario::Kill => to_new,
        Scenario::Failover => first_new.at.saturating_duration_since(last_old.at),
    };
    let acks = writer.stop();
    let final_primary = discover_primary(&sentinels).context("no Sentinel names a primary")?;
    ensure!(
        final_primary == first_new.port,
        "Sentinels name port {final_primary}, the writer's new primary was {}",
        first_new.port
    );
    let lost = lost_writes(final_primary, &acks)?.len();
    let before = acks.partition_point(|a| a.at <= fault_at);
    let span = acks
        .first()
        .map_or(0.0, |f| fault_at.duration_since(f.at).as_secs_f64());
    #[allow(clippy::cast_precision_loss)]
    let rate = if span > 0.0 {
        before as f64 / span
    } else {
        0.0
    };
    Ok(Outcome {
        gap,
        to_new,
        old_after,
        lost,
        acked: acks.len(),
        rate,
    })
}
