//! `warden-bench-backup`: base backup throughput, Warden against plain pg_basebackup.
//!
//! A 2-node cluster (primary + replica; the replica holds the archiver key) with a
//! filesystem repository. `pgbench -i -s SCALE` fills the primary (scale 150 ≈ 2.2
//! GB), the replica catches up and the archive with it. Then, on the replica:
//!
//! 1. `pg_basebackup -D - -Ft -X none --checkpoint=fast`, its stdout counted and
//!    discarded: the ceiling (PostgreSQL reading and sending the files);
//! 2. a Warden backup through `POST /backup`: the same stream, checksummed per file,
//!    compressed, encrypted and written to the repository.
//!
//! Prints both rates in MiB/s and Warden's share of the ceiling (streaming phase, and
//! end to end including the WAL wait and the commit). Usage:
//! `warden-bench-backup [--scale N]` (default 150). Set WARDEN_BIN_DIR to use
//! prebuilt (release) binaries: the agent's codec is much slower in a debug build.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use warden_tests::backupkit::key_file;
use warden_tests::config::{
    pg_bin_dir, REPLICATION_PASSWORD, REPLICATION_USER, SUPERUSER, SUPERUSER_PASSWORD,
};
use warden_tests::stats::median;
use warden_tests::workdir::{create_node_dir, postgres_owner, WorkDir};
use warden_tests::{http, sql, wait, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const ARCHIVER_TIMEOUT: Duration = Duration::from_secs(90);
/// Loading, replaying and archiving a few GB on a small machine.
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// `--scale N` (pgbench scale), `--rounds N` (pairs of backups measured) and
/// `--compression-level N` (`backup.compression_level`).
fn parse_args() -> Result<(u32, u32, u32)> {
    let usage = "usage: warden-bench-backup [--scale N] [--rounds N] [--compression-level N]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut scale, mut rounds, mut level) = (150u32, 3u32, 3u32);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let target = match flag.as_str() {
            "--scale" => &mut scale,
            "--rounds" => &mut rounds,
            "--compression-level" => &mut level,
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0)
            }
            other => bail!("unexpected argument {other:?} ({usage})"),
        };
        let v = it
            .next()
            .with_context(|| format!("{flag} needs a value ({usage})"))?;
        *target = v
            .parse()
            .with_context(|| format!("{flag}: {v:?} is not a number"))?;
        ensure!(*target > 0, "{flag} must be at least 1");
    }
    Ok((scale, rounds, level))
}

/// CPU seconds used by `pid` and its reaped children (pg_basebackup), from
/// /proc/PID/stat (utime, stime, cutime, cstime in clock ticks of 1/100 s).
fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f
        .get(11..15)?
        .iter()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Some(ticks as f64 / 100.0)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-bench-backup: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// A PostgreSQL client program, run as the `postgres` OS user when we are root.
fn pg_program(name: &str) -> Result<Command> {
    let mut cmd = Command::new(pg_bin_dir().join(name));
    if let Some((uid, gid)) = postgres_owner()? {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    cmd.current_dir("/tmp");
    Ok(cmd)
}

fn lsn(port: u16, sql_text: &str) -> Result<u64> {
    let text = sql::query_text(port, sql_text)?.context("no LSN")?;
    let (hi, lo) = text.split_once('/').context("bad LSN")?;
    Ok((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?)
}

fn find_file(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                find_file(&p, name)
            } else {
                p.file_name().is_some_and(|n| n == name)
            }
        })
    })
}

/// Bytes of every file under `dir`.
fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk_size(&p)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                }
            })
            .sum()
    })
}

/// Plain pg_basebackup to a counter: bytes and seconds.
fn raw_basebackup(port: u16) -> Result<(u64, f64)> {
    let mut cmd = pg_program("pg_basebackup")?;
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        REPLICATION_USER,
    ])
    .args([
        "-D",
        "-",
        "-F",
        "t",
        "-X",
        "none",
        "--checkpoint=fast",
        "-w",
    ])
    .env("PGPASSWORD", REPLICATION_PASSWORD)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting pg_basebackup")?;
    let mut out = child.stdout.take().context("no stdout")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let status = child.wait()?;
    ensure!(status.success(), "pg_basebackup failed: {status}");
    Ok((total, started.elapsed().as_secs_f64()))
}

/// A Warden backup through the archiver's REST API; its outcome from `GET /backup`.
fn warden_backup(api_url: &str) -> Result<Value> {
    let started = http::post_json_with_timeout(
        &format!("{api_url}/backup"),
        &json!({}),
        Duration::from_secs(30),
    )?;
    ensure!(
        started.status == 202,
        "POST /backup: {} {}",
        started.status,
        started.body
    );
    let id = started.json()?["id"]
        .as_str()
        .context("no id in the answer")?
        .to_string();
    let outcome = wait::wait_until(LOAD_TIMEOUT, "the Warden backup to finish", || {
        let v = http::get(&format!("{api_url}/backup")).ok()?.json().ok()?;
        (v["last"]["id"] == id.as_str()).then(|| v["last"].clone())
    });
    ensure!(
        outcome["ok"] == true,
        "the Warden backup failed: {}",
        outcome["error"]
    );
    Ok(outcome)
}

/// Restores `backup_id` with `wardenctl restore --immediate` into a scratch directory
/// and returns (tar bytes, seconds of the restore: download, open, check, extract,
/// sync); the directory is removed afterwards. `None` (with the reason printed) when
/// the restore failed.
fn restore_throughput(cluster: &Cluster, backup_id: &str) -> Option<(u64, f64)> {
    let dir = cluster.dir().join("bench-restore");
    let run = || -> Result<(u64, f64)> {
        create_node_dir(&dir)?;
        let data = dir.join("data");
        let report = warden_tests::backupkit::wardenctl_json(
            &cluster.node(0).config_path(),
            &[
                "restore",
                "--backup",
                backup_id,
                "--immediate",
                "--json",
                "--to",
                data.to_str().context("path")?,
            ],
        )?;
        let bytes = report["bytes"].as_u64().context("no bytes in the report")?;
        let seconds = report["total_seconds"]
            .as_f64()
            .context("no total_seconds in the report")?;
        println!(
            "restore report: fetch {:.1}s (waiting for the repository), extract {:.1}s, total {seconds:.1}s",
            report["fetch_seconds"].as_f64().unwrap_or(0.0),
            report["extract_seconds"].as_f64().unwrap_or(0.0)
        );
        Ok((bytes, seconds))
    };
    let result = run();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(r) => Some(r),
        Err(e) => {
            println!("restore failed: {e:#}");
            None
        }
    }
}

fn run() -> Result<()> {
    let (scale, rounds, level) = parse_args()?;
    println!(
        "warden-bench-backup: pgbench scale {scale}, {rounds} rounds, compression level \
         {level}, 2 nodes, filesystem repository, {} CPUs",
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get)
    );
    let work = WorkDir::temp()?;
    let repo = work.path().join("repo");
    create_node_dir(&repo)?;
    let (cluster, primary, replica) = start_cluster(work.path(), &repo, level)?;
    load(&cluster, primary, replica, scale, &repo)?;
    let last_id = measure_rounds(&cluster, replica, rounds)?;
    let stored: u64 = walk_size(&repo.join(cluster.scope()));
    println!(
        "repository after the run: {:.0} MiB (WAL and {rounds} backups)",
        mib(stored)
    );
    match restore_throughput(&cluster, &last_id) {
        Some((b, s)) => println!(
            "restore: {:.0} MiB in {s:.1}s = {:.1} MiB/s",
            mib(b),
            mib(b) / s
        ),
        None => println!("restore: not measured by this build"),
    }
    Ok(())
}

/// The 2-node cluster backing up into `repo`, formed, once the replica holds the
/// archiver key (backups run on the archiver). Returns the cluster, its primary and
/// its replica.
fn start_cluster(work: &Path, repo: &Path, level: u32) -> Result<(Cluster, usize, usize)> {
    let key = key_file(work)?;
    let yaml = format!(
        "backup:\n  repository:\n    type: filesystem\n    path: {}\n  encryption_key_file: \
         {}\n  wal_wait_timeout: 600s\n  compression_level: {level}\n",
        repo.display(),
        key.display()
    );
    let cluster = Cluster::start(
        ClusterSpec::new(2)
            .without_haproxy()
            .customize(move |_, c| c.merge_yaml(&yaml).unwrap()),
    )
    .context("start cluster")?;
    cluster.wait_formed(FORM_TIMEOUT);
    let (primary, replicas) = cluster.formation().context("no formation")?;
    let replica = replicas[0];
    let replica_name = cluster.node(replica).name().to_string();
    let key_name = format!("{}warden/archiver", cluster.key_prefix());
    wait::wait_until(ARCHIVER_TIMEOUT, "the replica archives", || {
        let holder = cluster.etcd().get(&key_name).ok().flatten()?.value;
        let flagged = cluster.node(replica).patroni()?.is_archiver();
        (holder == replica_name && flagged).then_some(())
    });
    Ok((cluster, primary, replica))
}

/// Fills the primary with pgbench, then waits until the replica has replayed the load
/// and the archive holds it, so that the backups measure copying, not catching up.
fn load(cluster: &Cluster, primary: usize, replica: usize, scale: u32, repo: &Path) -> Result<()> {
    let (pport, rport) = (
        cluster.node(primary).pg_port(),
        cluster.node(replica).pg_port(),
    );

    let t = Instant::now();
    let mut pgbench = pg_program("pgbench")?;
    let status = pgbench
        .args(["-i", "-q", "-s", &scale.to_string(), "-h", "127.0.0.1"])
        .args(["-p", &pport.to_string(), "-U", SUPERUSER, "postgres"])
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .stdout(Stdio::null())
        .status()
        .context("running pgbench")?;
    ensure!(status.success(), "pgbench -i failed: {status}");
    let size = sql::query_text(pport, "SELECT pg_database_size('postgres')")?.unwrap_or_default();
    println!(
        "loaded: pgbench -i -s {scale} in {:.0}s, database {:.0} MiB",
        t.elapsed().as_secs_f64(),
        mib(size.parse().unwrap_or(0))
    );
    sql::execute(pport, "CHECKPOINT")?;
    let seg =
        sql::query_text(pport, "SELECT pg_walfile_name(pg_switch_wal())")?.context("no segment")?;
    let target = lsn(pport, "SELECT pg_current_wal_lsn()::text")?;
    wait::wait_until(LOAD_TIMEOUT, "the replica to replay the load", || {
        (lsn(rport, "SELECT pg_last_wal_replay_lsn()::text").ok()? >= target).then_some(())
    });
    let t = Instant::now();
    wait::wait_until(LOAD_TIMEOUT, "the archive to catch up", || {
        find_file(repo, &seg).then_some(())
    });
    println!(
        "replica and archive caught up ({:.0}s more)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `rounds` pairs of backups on the replica, plain pg_basebackup then Warden, each
/// printed, then their medians. Returns the id of the last Warden backup.
fn measure_rounds(cluster: &Cluster, replica: usize, rounds: u32) -> Result<String> {
    let rport = cluster.node(replica).pg_port();
    // Alternate the two so that load from elsewhere on the machine hits both alike.
    let (mut raws, mut streams, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_id = String::new();
    for round in 1..=rounds {
        let (bytes, secs) = raw_basebackup(rport)?;
        let raw = mib(bytes) / secs;
        println!(
            "round {round}: pg_basebackup -D - -Ft -X none > counter: {:.0} MiB in {secs:.1}s \
             = {raw:.1} MiB/s",
            mib(bytes)
        );
        let agent = cluster
            .node(replica)
            .pid()
            .context("the replica's agent pid")?;
        let cpu_before = cpu_seconds(agent);
        let out = warden_backup(&cluster.node(replica).api_url())?;
        let cpu = cpu_before.zip(cpu_seconds(agent)).map(|(a, b)| b - a);
        let wbytes = out["bytes"].as_u64().unwrap_or(0);
        let stream_s = out["stream_seconds"].as_f64().unwrap_or(f64::NAN);
        let total_s = out["seconds"].as_f64().unwrap_or(f64::NAN);
        println!(
            "round {round}: Warden backup (sealed into the repository): {:.0} MiB, streaming \
             {stream_s:.1}s = {:.1} MiB/s, end to end {total_s:.1}s = {:.1} MiB/s",
            mib(wbytes),
            mib(wbytes) / stream_s,
            mib(wbytes) / total_s
        );
        if let Some(cpu) = cpu {
            println!(
                "round {round}: the agent and its pg_basebackup used {cpu:.1} CPU-seconds \
                 ({:.2} per GiB)",
                cpu / (mib(wbytes) / 1024.0)
            );
        }
        raws.push(raw);
        streams.push(mib(wbytes) / stream_s);
        totals.push(mib(wbytes) / total_s);
        last_id = out["id"].as_str().unwrap_or_default().to_string();
    }
    let (raw, stream, total) = (median(raws), median(streams), median(totals));
    println!(
        "median of {rounds}: pg_basebackup {raw:.1} MiB/s, Warden streaming {stream:.1} MiB/s, \
         end to end {total:.1} MiB/s"
    );
    println!(
        "ratio Warden / pg_basebackup (medians): streaming {:.0}%, end to end {:.0}% (goal >= 80%)",
        100.0 * stream / raw,
        100.0 * total / raw
    );
    Ok(last_id)
}
