//! One chaos run: start the cluster, start the workload, inject the
//! schedule, converge, stop, collect. Produces the [`EventLog`]; checking and
//! reporting are separate (and pure).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use warden_tests::wait::poll_until;
use warden_tests::workload::{self, Outcome, Writer, WriterOptions};
use warden_tests::{sql, Cluster, ClusterSpec};

use crate::cli::Options;
use crate::converge;
use crate::events::{to_ranges, EventLog, NodeInfo, RunInfo, WriteAck, WriteFailure};
use crate::inject::{self, Ctx};
use crate::redis_engine::{self, RedisWriter};
use crate::schedule::{Order, Schedule};
use crate::workload::{pause, Clock, Engine, HaWriter, PrimaryRounds, Probes, PROBE_TABLE};

/// The writer's table.
pub const WRITER_TABLE: &str = "chaos_writes";
/// Bound for the cluster to form (bootstrap, two clones) and converge.
const FORM_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound for the workload's first acknowledgements.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for a write through HAProxy after the final convergence.
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The scope of the chaos cluster in etcd.
const SCOPE: &str = "chaos";
/// The writer's pacing: a write every ~10 ms resolves gaps well enough and
/// leaves the two cores to the cluster.
const WRITER_PAUSE_AFTER_ACK: Duration = Duration::from_millis(10);
const WRITER_PAUSE_AFTER_ERROR: Duration = Duration::from_millis(50);

/// Progress on stdout, stamped with the time since `start`.
pub fn say(start: Instant, msg: &str) {
    println!("[{:7.1} s] {msg}", start.elapsed().as_secs_f64());
}

/// The cluster: 3 etcd members, 3 nodes (PostgreSQL, or Redis with
/// `--redis`) with proxies, HAProxy; the mode flags go into every node's
/// `bootstrap.dcs`.
pub fn spec(opts: &Options) -> ClusterSpec {
    let (sync, strict, failsafe) = (opts.sync, opts.sync_strict, opts.failsafe);
    let quorum = opts.sync_quorum;
    let spec = if opts.redis {
        ClusterSpec::new(3).redis()
    } else {
        ClusterSpec::new(3)
    };
    spec.scope(SCOPE)
        .etcd_members(3)
        .with_proxies()
        .customize(move |_, mut c| {
            if quorum {
                c = c.set("bootstrap.dcs.synchronous_mode", "quorum");
            } else if sync {
                c = c.set("bootstrap.dcs.synchronous_mode", true);
            }
            if strict {
                c = c.set("bootstrap.dcs.synchronous_mode_strict", true);
            }
            if failsafe {
                c = c.set("bootstrap.dcs.failsafe_mode", true);
            }
            c
        })
}

/// Run everything; problems of the harness end up in
/// [`EventLog::harness_errors`], never in a panic or an early exit.
pub fn run(opts: &Options, stop: &AtomicBool, start: Instant) -> EventLog {
    let mut log = EventLog {
        info: Some(RunInfo {
            seed: opts.seed,
            sync: opts.sync,
            sync_strict: opts.sync_strict,
            sync_quorum: opts.sync_quorum,
            failsafe: opts.failsafe,
            require_no_loss: opts.require_no_loss,
            converge_bound_s: opts.converge_timeout.as_secs(),
            ttl_s: u64::from(warden_tests::config::DEFAULT_TTL),
            started_at: String::new(),
            unsafe_test: opts.unsafe_test,
            dynamic_config: None,
            redis: opts.redis,
        }),
        ..EventLog::default()
    };
    let engine = if opts.redis { "Redis" } else { "PostgreSQL" };
    say(
        start,
        &format!("starting 3 etcd members, 3 {engine} nodes with agents, HAProxy"),
    );
    let mut cluster = match Cluster::start(spec(opts)) {
        Ok(c) => c,
        Err(e) => {
            log.harness_errors
                .push(format!("starting the cluster: {e:#}"));
            return log;
        }
    };
    log.nodes = cluster
        .nodes()
        .iter()
        .map(|n| NodeInfo {
            name: n.name().to_string(),
            pg_port: n.pg_port(),
        })
        .collect();
    if let Err(e) = drive(&mut cluster, opts, stop, start, &mut log) {
        log.harness_errors.push(format!("{e:#}"));
    }
    if let Err(e) = copy_logs(&cluster, &opts.out.join("logs")) {
        log.harness_errors.push(format!("copying the logs: {e:#}"));
    }
    say(start, "stopping the cluster");
    drop(cluster);
    log
}

fn drive(
    cluster: &mut Cluster,
    opts: &Options,
    stop: &AtomicBool,
    start: Instant,
    log: &mut EventLog,
) -> Result<()> {
    let (formed, _) = converge::wait(cluster, FORM_TIMEOUT, stop)
        .map_err(|e| anyhow!("the cluster did not form within {FORM_TIMEOUT:?}: {e}"))?;
    say(
        start,
        &format!(
            "formed: primary {}{}",
            cluster.node(formed.primary).name(),
            formed.on_timeline()
        ),
    );
    let engine = if opts.redis {
        Engine::Redis { sync: opts.sync }
    } else {
        create_probe_table(cluster)?;
        Engine::Postgres
    };
    let config = dynamic_config(cluster, formed.primary, opts)?;

    let clock = Clock::start();
    if let Some(info) = log.info.as_mut() {
        info.started_at = chrono::Utc::now().to_rfc3339();
        info.dynamic_config = Some(config);
    }
    let nodes: Vec<(usize, u16)> = cluster
        .nodes()
        .iter()
        .map(|n| n.pg_port())
        .enumerate()
        .collect();
    let apis: Vec<(usize, String)> = cluster
        .nodes()
        .iter()
        .map(|n| n.api_url())
        .enumerate()
        .collect();
    let rounds = PrimaryRounds::start(&apis, clock)?;
    let probes = Probes::start(&nodes, clock, engine)?;
    let writer = match engine {
        Engine::Postgres => HaWriter::Postgres(Writer::start(
            cluster.write_port(),
            WRITER_TABLE,
            WriterOptions {
                pause_after_ack: WRITER_PAUSE_AFTER_ACK,
                pause_after_error: WRITER_PAUSE_AFTER_ERROR,
                ..WriterOptions::default()
            },
        )?),
        Engine::Redis { sync } => HaWriter::Redis(RedisWriter::start(
            cluster.write_port(),
            sync,
            WRITER_PAUSE_AFTER_ACK,
            WRITER_PAUSE_AFTER_ERROR,
        )?),
    };
    poll_until(WARMUP_TIMEOUT, || writer.acked_any().then_some(()))
        .context("no write acknowledged through HAProxy after the start")?;
    say(
        start,
        "workload running: writer through HAProxy, direct-write probes, /primary rounds",
    );

    run_schedule(
        cluster,
        opts,
        stop,
        start,
        clock,
        &writer,
        &probes,
        formed.primary,
        log,
    );

    // The end: nothing may be left broken, then one last convergence.
    log.harness_errors.extend(inject::heal_everything(cluster));
    if stop.load(Ordering::SeqCst) {
        log.harness_errors
            .push("interrupted: the schedule did not run to its end".into());
    }
    let fin_start = Instant::now();
    log.final_state.converge_started = clock.us(fin_start);
    say(start, "waiting for the final convergence");
    // An interrupt must not cut the final checks short.
    let no_stop = AtomicBool::new(false);
    match converge::wait(cluster, opts.converge_timeout, &no_stop) {
        Ok((c, at)) => {
            log.final_state.converged = Some(clock.us(at));
            log.final_state.primary = Some(c.primary);
            log.final_state.writes_after_convergence = poll_until(FINAL_WRITE_TIMEOUT, || {
                (!writer.acks_since(at).is_empty()).then_some(())
            })
            .is_some();
            say(
                start,
                &format!(
                    "converged: primary {}{} ({:.1} s)",
                    cluster.node(c.primary).name(),
                    c.on_timeline(),
                    at.duration_since(fin_start).as_secs_f64()
                ),
            );
        }
        Err(e) => {
            say(start, &format!("NOT converged: {e}"));
            log.final_state.converge_error = Some(e);
            // Lost writes can still be counted on a node that alone answers
            // 200 on /primary, converged or not.
            log.final_state.primary = cluster.primary_index();
        }
    }

    let outcomes = writer.stop();
    probes.stop(log);
    rounds.stop(log);
    log.ended = clock.now();
    record_writes(log, &outcomes, clock);
    read_final_rows(cluster, log);
    Ok(())
}

/// `GET /config` from the primary; an error unless it carries the mode the
/// command line asked for (a run must not pass in a mode it did not test).
fn dynamic_config(cluster: &Cluster, primary: usize, opts: &Options) -> Result<serde_json::Value> {
    let node = cluster.node(primary);
    let config: serde_json::Value =
        poll_until(WARMUP_TIMEOUT, || node.get("/config").ok()?.json().ok())
            .with_context(|| format!("GET /config from {}", node.name()))?;
    let on = |key: &str| config[key] == true || config[key] == "on" || config[key] == "quorum";
    for (wanted, key) in [
        (opts.sync, "synchronous_mode"),
        (opts.sync_strict, "synchronous_mode_strict"),
        (opts.failsafe, "failsafe_mode"),
    ] {
        if wanted && !on(key) {
            anyhow::bail!("the dynamic configuration does not have {key} on: {config}");
        }
    }
    Ok(config)
}

/// The direct writes' table, created through HAProxy and awaited on every
/// node (replicas get it by replication).
fn create_probe_table(cluster: &Cluster) -> Result<()> {
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (id bigint PRIMARY KEY, node int NOT NULL, \
         at timestamptz NOT NULL DEFAULT now())"
    );
    poll_until(WARMUP_TIMEOUT, || {
        sql::execute(cluster.write_port(), &ddl).ok()
    })
    .context("creating the probes' table through HAProxy")?;
    let q = format!("SELECT (to_regclass('{PROBE_TABLE}') IS NOT NULL)::text");
    for n in cluster.nodes() {
        poll_until(WARMUP_TIMEOUT, || {
            (sql::query_text(n.pg_port(), &q).ok()??.as_str() == "true").then_some(())
        })
        .with_context(|| format!("the probes' table did not reach {}", n.name()))?;
    }
    Ok(())
}

/// Steps until the schedule (or its duration) ends, an interrupt, or a step
/// after which the cluster did not converge.
#[allow(clippy::too_many_arguments)]
fn run_schedule(
    cluster: &mut Cluster,
    opts: &Options,
    stop: &AtomicBool,
    start: Instant,
    clock: Clock,
    writer: &HaWriter,
    probes: &Probes,
    mut primary: usize,
    log: &mut EventLog,
) {
    let mut schedule = Schedule::new(opts.seed, opts.order.clone());
    let listed = match &opts.order {
        Order::Listed(k) => Some(k.len()),
        Order::Random(_) => None,
    };
    let mut ctx = Ctx {
        cluster,
        clock,
        writer,
        probes,
        stop,
        converge_timeout: opts.converge_timeout,
        sync: opts.sync,
    };
    loop {
        let step = schedule.next_step();
        let done = match (opts.duration, listed) {
            (Some(d), _) => clock.t0().elapsed() >= d,
            (None, Some(n)) => step.index > n,
            (None, None) => true,
        };
        if done || stop.load(Ordering::SeqCst) {
            return;
        }
        say(start, &format!("{step}"));
        log.steps.push(step.clone());
        pause(step.pause(), stop);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (records, next) = inject::execute(&mut ctx, &step, primary);
        for r in &records {
            let error = r
                .error
                .as_deref()
                .map_or(String::new(), |e| format!(" ERROR: {e}"));
            say(
                start,
                &format!(
                    "  {} {}: injected at t={:.1} s{error}",
                    r.kind,
                    r.target,
                    r.injected as f64 / 1e6
                ),
            );
        }
        let settled = records
            .last()
            .map(|r| (r.converged, r.converge_error.clone()));
        log.faults.extend(records);
        match (next, settled) {
            (Some(p), Some((Some(at), _))) => {
                say(
                    start,
                    &format!(
                        "  converged at t={:.1} s: primary {}",
                        at as f64 / 1e6,
                        ctx.cluster.node(p).name()
                    ),
                );
                primary = p;
            }
            (_, settled) => {
                let why = settled.and_then(|s| s.1).unwrap_or_default();
                say(start, &format!("  NOT converged: {why}; no further faults"));
                return;
            }
        }
    }
}

fn record_writes(log: &mut EventLog, outcomes: &[Outcome], clock: Clock) {
    for o in outcomes {
        match o {
            Outcome::Ack(a) => log.writes.push(WriteAck {
                id: a.id,
                sent: clock.us(a.sent),
                acked: clock.us(a.acked),
                node: log.node_of_port(a.server_port),
            }),
            Outcome::Fail(f) => log.write_failures.push(WriteFailure {
                id: f.id,
                sent: clock.us(f.sent),
                at: clock.us(f.at),
                error: f
                    .error
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect(),
            }),
        }
    }
}

/// The ids present on the final primary (read directly on its port): the
/// tables' rows, or for Redis which acknowledged ids' keys hold their id
/// (`MGET`).
fn read_final_rows(cluster: &Cluster, log: &mut EventLog) {
    let Some(p) = log.final_state.primary else {
        log.final_state.read_error = Some("no final primary".into());
        return;
    };
    let port = cluster.node(p).pg_port();
    let read = if redis_engine::is_redis(cluster) {
        let writes: Vec<i64> = log.writes.iter().map(|w| w.id).collect();
        let probes: Vec<i64> = log.probes.iter().map(|a| a.id).collect();
        (
            redis_engine::present(port, &writes),
            redis_engine::present(port, &probes),
        )
    } else {
        (
            workload::ids_in(port, WRITER_TABLE),
            workload::ids_in(port, PROBE_TABLE),
        )
    };
    match read {
        (Ok(w), Ok(p)) => {
            log.final_state.writer_present = Some(to_ranges(&w));
            log.final_state.probe_present = Some(to_ranges(&p));
        }
        (Err(e), _) | (_, Err(e)) => {
            log.final_state.read_error = Some(format!("{e:#}"));
        }
    }
}

/// Every log of the cluster (agents, PostgreSQL or redis-server, etcd,
/// HAProxy) into `dir`, so a failed run can be diagnosed after its directory
/// is gone.
fn copy_logs(cluster: &Cluster, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files: Vec<(PathBuf, String)> = cluster
        .log_paths()
        .into_iter()
        .map(|f| {
            let parent = f
                .parent()
                .and_then(Path::file_name)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // node1/warden.log -> node1-warden.log; etcd logs sit in the top dir.
            let target = if name.starts_with("etcd") || name.starts_with("haproxy") {
                name
            } else {
                format!("{parent}-{name}")
            };
            (f, target)
        })
        .collect();
    for n in cluster.nodes() {
        // The server's own log: PostgreSQL's in the node's directory, or
        // redis-server's in its data directory.
        for (f, name) in [
            (n.node_dir().join("postgresql.log"), "postgresql.log"),
            (n.data_dir().join("redis.log"), "redis.log"),
        ] {
            if f.is_file() {
                files.push((f, format!("{}-{name}", n.name())));
            }
        }
    }
    for (f, target) in files {
        if let Err(e) = std::fs::copy(&f, dir.join(&target)) {
            eprintln!("warden-chaos: copying {}: {e}", f.display());
        }
    }
    Ok(())
}
