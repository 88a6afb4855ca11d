//! `warden-bench-switchover`: N planned switchovers under a steady write load, and the
//! write unavailability each one costs.
//!
//! One 3-node cluster (single etcd, HAProxy from the kit). A writer inserts unique ids
//! through HAProxy's write port, one at a time, timestamping every acknowledgement and
//! reconnecting on error. Each run asks the leader (`POST /switchover`) to hand over to
//! the next member and measures the write unavailability: from the last write
//! acknowledged by the old primary to the first acknowledged by the new one. After the
//! last run, every acknowledged id must be on the final primary.
//!
//! One line per run, then median and max. Usage:
//! `warden-bench-switchover [--runs N] [--tls]` (default 10; `--tls`: etcd, the REST API
//! and replication over verified TLS, as in production). Set WARDEN_BIN_DIR to use prebuilt
//! binaries.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use warden_tests::stats::median;
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{http, wait, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
const TABLE: &str = "bench_switchover";

/// The number of runs, and whether everything runs over TLS.
fn parse_args() -> Result<(usize, bool)> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let tls = args.iter().any(|a| a == "--tls");
    args.retain(|a| a != "--tls");
    Ok((parse_runs(&args)?, tls))
}

fn parse_runs(args: &[String]) -> Result<usize> {
    let usage = "usage: warden-bench-switchover [--runs N] [--tls]";
    match args {
        [] => Ok(10),
        [flag, n] if flag == "--runs" => {
            let n: usize = n
                .parse()
                .with_context(|| format!("--runs: {n:?} is not a number"))?;
            ensure!(n > 0, "--runs must be at least 1");
            Ok(n)
        }
        [h] if h == "-h" || h == "--help" => {
            println!("{usage}");
            std::process::exit(0)
        }
        other => bail!("unexpected arguments {other:?} ({usage})"),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-bench-switchover: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let (runs, tls) = parse_args()?;
    let over = if tls {
        ", etcd/REST/replication over TLS"
    } else {
        ""
    };
    println!("warden-bench-switchover: {runs} switchovers, 3 nodes, writes through HAProxy{over}");
    let mut spec = ClusterSpec::new(3);
    if tls {
        spec = spec.with_tls_everywhere();
    }
    let cluster = Cluster::start(spec).context("start cluster")?;
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let writer = Writer::start(cluster.write_port(), TABLE, WriterOptions::default())
        .context("start the writer")?;
    wait::wait_until(T, "the writer's first acknowledgements", || {
        (writer.acks().len() >= 100).then_some(())
    });
    let mut gaps = Vec::new();
    for i in 1..=runs {
        let (leader, _) = cluster.wait_leader(T);
        let li = cluster.index_of(&leader).context("leader is a node")?;
        let candidate = cluster.node((li + 1) % 3).name().to_string();
        let old_port = cluster.node(li).pg_port();
        let new_port = cluster.node((li + 1) % 3).pg_port();
        let asked = Instant::now();
        let url = format!("{}/switchover", cluster.node(li).api_url());
        let body = json!({"leader": leader, "candidate": candidate}).to_string();
        let r = http::send("POST", &url, Some(body.as_bytes()), None, REQUEST_TIMEOUT)?;
        let answered = asked.elapsed();
        ensure!(
            r.status == 200,
            "run {i}: switchover refused: {} {}",
            r.status,
            r.body
        );
        let first_new = wait::wait_until(T, "a write acknowledged by the new primary", || {
            writer
                .acks_since(asked)
                .into_iter()
                .filter(|a| a.server_port == new_port)
                .map(|a| a.acked)
                .min()
        });
        let last_old = writer
            .acks()
            .into_iter()
            .filter(|a| a.server_port == old_port && a.acked <= first_new)
            .map(|a| a.acked)
            .max()
            .context("no write was acknowledged by the old primary")?;
        let gap = first_new.saturating_duration_since(last_old);
        println!(
            "run {i}/{runs}: {leader} -> {candidate}: writes unavailable for {:.3} s \
             (API answered after {:.2} s)",
            gap.as_secs_f64(),
            answered.as_secs_f64()
        );
        gaps.push(gap.as_secs_f64());
        cluster.assert_converged(T);
    }
    let outcomes = writer.stop();
    let acks = workload::acks_of(&outcomes);
    let primary = cluster.assert_converged(T).primary;
    let present = workload::ids_in(cluster.node(primary).pg_port(), TABLE)?;
    let lost = workload::lost(&acks, &present);
    let max = gaps.iter().copied().fold(0.0, f64::max);
    println!(
        "summary: {} switchovers; write unavailability median {:.3} s, max {:.3} s; \
         {} writes acknowledged, {} lost",
        gaps.len(),
        median(gaps.clone()),
        max,
        acks.len(),
        lost.len()
    );
    ensure!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    Ok(())
}
