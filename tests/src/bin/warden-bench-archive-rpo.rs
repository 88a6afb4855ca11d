//! `warden-bench-archive-rpo`: how far behind the primary the backup repository is
//! under a steady write load — the data a restore from the repository would lose if
//! the whole cluster vanished at a random moment.
//!
//! A 2-node cluster (the replica is the elected archiver) with a filesystem
//! repository. A writer commits a small row every 20 ms on the primary and records,
//! per commit, when it was acknowledged and the WAL position after it. Every 250 ms a
//! sampler looks at the repository as a restore would — `warden wal-fetch` of the
//! current and previous segment, then `pg_waldump` for where the valid WAL ends — and
//! computes the RPO at that instant: the age of the oldest acknowledged commit that is
//! not in the repository (0 if all are). Nothing of Warden's own bookkeeping is used.
//!
//! Usage: `warden-bench-archive-rpo [--seconds N] [--interval DURATION]` (defaults 60
//! and 1s: `backup.partial_upload_interval`). Set WARDEN_BIN_DIR to use prebuilt
//! binaries.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use warden_tests::backupkit::key_file;
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::{sql, wait, walfile, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const WRITE_EVERY: Duration = Duration::from_millis(20);
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
const SEGMENT: u64 = 16 * 1024 * 1024;

struct Args {
    seconds: u64,
    interval: String,
}

fn parse_args() -> Result<Args> {
    let usage = "usage: warden-bench-archive-rpo [--seconds N] [--interval DURATION]";
    let mut args = Args {
        seconds: 60,
        interval: "1s".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                args.seconds = v
                    .parse()
                    .with_context(|| format!("--seconds: {v:?} is not a number"))?;
                ensure!(args.seconds >= 5, "--seconds must be at least 5");
            }
            "--interval" => {
                let v = it.next().context("--interval needs a value")?;
                humantime::parse_duration(&v)
                    .with_context(|| format!("--interval: {v:?} is not a duration"))?;
                args.interval = v;
            }
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0)
            }
            other => bail!("unexpected argument {other:?} ({usage})"),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-bench-archive-rpo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One acknowledged commit: when, and the WAL position just after it.
type Ack = (Instant, u64);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let work = WorkDir::temp()?;
    let repo = work.path().join("repo");
    create_node_dir(&repo)?;
    let key = key_file(work.path())?;
    let yaml = format!(
        "backup:\n  repository: {{type: filesystem, path: {}}}\n  encryption_key_file: {}\n  \
         partial_upload_interval: {}\n",
        repo.display(),
        key.display(),
        args.interval
    );
    println!(
        "warden-bench-archive-rpo: {} s of commits every {:?}, samples every {:?}, \
         partial_upload_interval {}",
        args.seconds, WRITE_EVERY, SAMPLE_EVERY, args.interval
    );
    let cluster = Cluster::start(
        ClusterSpec::new(2)
            .without_haproxy()
            .customize(move |_, c| c.merge_yaml(&yaml).expect("backup section")),
    )
    .context("start cluster")?;
    cluster.wait_formed(FORM_TIMEOUT);
    let formed = cluster.assert_converged(FORM_TIMEOUT);
    let primary = formed.primary;
    let replica = 1 - primary;
    wait::wait_until(FORM_TIMEOUT, "the replica archives", || {
        cluster
            .node(replica)
            .patroni()
            .is_some_and(|p| p.is_archiver())
            .then_some(())
    });
    let port = cluster.node(primary).pg_port();
    sql::execute(port, "CREATE TABLE rpo (t timestamptz, pad text)")?;

    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acks, stop) = (acks.clone(), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            let mut c = sql::connect(port)?;
            while !stop.load(Ordering::Relaxed) {
                let rows = c.simple_query(
                    "INSERT INTO rpo VALUES (now(), repeat('x', 200)); \
                     SELECT pg_current_wal_lsn()::text",
                )?;
                let lsn = rows
                    .iter()
                    .find_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                        _ => None,
                    })
                    .context("no LSN")?;
                let ack = Instant::now();
                acks.lock().unwrap().push((ack, walfile::parse_lsn(&lsn)?));
                std::thread::sleep(WRITE_EVERY);
            }
            Ok(())
        })
    };

    let node = cluster.node(primary);
    let (config, data_dir) = (node.config_path(), node.data_dir());
    let scratch = work.path().join("scratch");
    create_node_dir(&scratch)?;
    let mut samples = Vec::new();
    let end_at = Instant::now() + Duration::from_secs(args.seconds);
    // Sample only once the load runs (a hundred commits, about 2 s).
    wait::wait_until(FORM_TIMEOUT, "the writer's first commits", || {
        (acks.lock().unwrap().len() >= 100).then_some(())
    });
    while Instant::now() < end_at {
        let t = Instant::now();
        let newest = acks
            .lock()
            .unwrap()
            .last()
            .map(|a| a.1)
            .context("no commit yet")?;
        let seg_no = newest / SEGMENT;
        let mut archived_to = 0u64;
        for no in [seg_no.saturating_sub(1), seg_no] {
            let name = format!("00000001{:08X}{:08X}", no >> 8, no & 0xFF);
            // pg_waldump reads the segment number from the file name.
            let dest = scratch.join(&name);
            let _ = std::fs::remove_file(&dest);
            if walfile::fetch(&config, &data_dir, &name, &dest)? {
                let end = match walfile::valid_end(&dest) {
                    walfile::WalEnd::At(end) => end,
                    walfile::WalEnd::WholeSegment => (no + 1) * SEGMENT,
                    walfile::WalEnd::Unreadable(why) => bail!("{name}: {why}"),
                };
                archived_to = archived_to.max(end);
            }
        }
        let rpo = acks
            .lock()
            .unwrap()
            .iter()
            .find(|(ack, lsn)| *ack <= t && *lsn > archived_to)
            .map_or(0.0, |(ack, _)| (t - *ack).as_secs_f64());
        samples.push(rpo);
        let spent = t.elapsed();
        if spent < SAMPLE_EVERY {
            std::thread::sleep(SAMPLE_EVERY - spent);
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread")?;
    let commits = acks.lock().unwrap().len();
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    ensure!(!sorted.is_empty(), "no samples");
    println!(
        "commits: {commits}; samples: {}; RPO seconds: median {:.3}, p95 {:.3}, p99 {:.3}, max {:.3}",
        sorted.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.95),
        percentile(&sorted, 0.99),
        sorted[sorted.len() - 1]
    );
    Ok(())
}
