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
//! 3. when `pgbackrest` is installed (Debian package `pgbackrest`): a full pgBackRest
//!    backup with `--backup-standby` of the same cluster, repository on local disk,
//!    zstd at the same level, AES-256-CBC, `process-max` = 2.
//!
//! Then the last backups are restored: `wardenctl restore` and `pgbackrest restore`.
//!
//! Prints the rates in MiB/s, Warden's share of the ceiling (streaming phase, and end
//! to end including the WAL wait and the commit), and CPU-seconds per GiB of each
//! (the bench's reaped children, both agents, both postmasters and their reaped
//! backends, e.g. the walsender). Usage: `warden-bench-backup [--scale N] [--rounds N]
//! [--compression-level N]` (default 150, 3, 3; negative levels are zstd's fast
//! levels). Set WARDEN_BIN_DIR to use prebuilt (release) binaries: the agent's codec
//! is much slower in a debug build.

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
/// `--compression-level N` (`backup.compression_level`, may be negative).
fn parse_args() -> Result<(u32, u32, i32)> {
    let usage = "usage: warden-bench-backup [--scale N] [--rounds N] [--compression-level N]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut scale, mut rounds, mut level) = (150u32, 3u32, 3i32);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--compression-level" {
            let v = it
                .next()
                .with_context(|| format!("{flag} needs a value ({usage})"))?;
            level = v
                .parse()
                .with_context(|| format!("{flag}: {v:?} is not a number"))?;
            ensure!(level != 0, "{flag} must not be 0");
            continue;
        }
        let target = match flag.as_str() {
            "--scale" => &mut scale,
            "--rounds" => &mut rounds,
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

/// CPU seconds of everything a measured run may use: this process's reaped children
/// (pg_basebackup, wardenctl, pgbackrest and their children), both agents (with their
/// reaped pg_basebackup) and both postmasters (with their reaped backends: walsenders,
/// pgBackRest's connections). Long-lived children (WAL receivers, checkpointer) only
/// count once reaped, which is the same for every tool measured.
fn cpu_meter(cluster: &Cluster) -> f64 {
    let mut total = cpu_seconds(i32::try_from(std::process::id()).unwrap_or(0)).unwrap_or(0.0);
    for i in 0..2 {
        let node = cluster.node(i);
        total += node.pid().and_then(cpu_seconds).unwrap_or(0.0);
        total += node.postmaster_pid().and_then(cpu_seconds).unwrap_or(0.0);
    }
    total
}

/// The PIDs of the postmasters' children (backends, walsenders, workers).
fn postmaster_children(cluster: &Cluster) -> Vec<u32> {
    (0..2)
        .filter_map(|i| cluster.node(i).postmaster_pid())
        .flat_map(|pm| {
            std::fs::read_to_string(format!("/proc/{pm}/task/{pm}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Runs `work` and returns its result with the CPU-seconds the machine's measured
/// processes spent on it. A backend's CPU reaches its postmaster's count only once
/// the postmaster reaps it, which can be after the client saw the end: wait (bounded)
/// for every backend started during `work` to be gone before reading the meter, or
/// a walsender's seconds land in the next tool's figure.
fn measured<T>(cluster: &Cluster, work: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let before: std::collections::HashSet<u32> = postmaster_children(cluster).into_iter().collect();
    let cpu0 = cpu_meter(cluster);
    let out = work()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while postmaster_children(cluster)
        .iter()
        .any(|p| !before.contains(p))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((out, cpu_meter(cluster) - cpu0))
}

/// CPU-seconds per GiB.
fn per_gib(cpu: f64, bytes: u64) -> f64 {
    cpu / (mib(bytes) / 1024.0)
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

/// The names of every file under `dir`.
fn file_names(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            file_names(&p, out);
        } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
            out.push(n.to_string());
        }
    }
}

/// The segment number of a WAL segment name on `timeline` (16 MiB segments).
fn segno(name: &str, timeline: &str) -> Option<u64> {
    let name = name.get(..24)?;
    if name.len() != 24 || &name[..8] != timeline {
        return None;
    }
    let hi = u64::from_str_radix(&name[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some(hi * 256 + lo)
}

/// The repository holds every segment of `last`'s timeline from the oldest it holds
/// through `last` (sealed objects keep the segment's name as their file name's start).
fn archived_through(repo: &Path, last: &str) -> bool {
    let timeline = &last[..8];
    let Some(end) = segno(last, timeline) else {
        return false;
    };
    let mut names = Vec::new();
    file_names(repo, &mut names);
    let held: std::collections::BTreeSet<u64> = names
        .iter()
        .filter(|n| n.len() >= 24 && n[..24].chars().all(|c| c.is_ascii_hexdigit()))
        .filter_map(|n| segno(n, timeline))
        .filter(|s| *s <= end)
        .collect();
    held.first()
        .is_some_and(|first| held.len() as u64 == end - first + 1)
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
/// sync); the directory is removed afterwards.
fn restore_throughput(cluster: &Cluster, backup_id: &str) -> Result<(u64, f64)> {
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
    result
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
    let pgbr = PgBackRest::setup(&cluster, primary, replica, work.path(), level)?;
    measure_rounds(&cluster, replica, rounds, pgbr.as_ref())?;
    let stored: u64 = walk_size(&repo.join(cluster.scope()));
    println!(
        "repository after the run: {:.0} MiB (WAL and {rounds} backups)",
        mib(stored)
    );
    if let Some(p) = &pgbr {
        println!(
            "pgBackRest repository after the run: {:.0} MiB ({rounds} backups)",
            mib(walk_size(&p.work.join("repo")))
        );
    }
    Ok(())
}

/// The 2-node cluster backing up into `repo`, formed, once the replica holds the
/// archiver key (backups run on the archiver). Returns the cluster, its primary and
/// its replica.
fn start_cluster(work: &Path, repo: &Path, level: i32) -> Result<(Cluster, usize, usize)> {
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
    // Every segment up to the switched one, not only that one: the archiver uploads
    // in parallel, and a backlog left over would be archived (and counted) during
    // the measured backups.
    wait::wait_until(LOAD_TIMEOUT, "the archive to catch up", || {
        archived_through(repo, &seg).then_some(())
    });
    println!(
        "replica and archive caught up ({:.0}s more)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Medians of each tool's figures over the rounds.
#[derive(Debug, Default)]
struct Figures {
    raw: Vec<f64>,
    raw_cpu: Vec<f64>,
    stream: Vec<f64>,
    total: Vec<f64>,
    warden_cpu: Vec<f64>,
    pgbr: Vec<f64>,
    pgbr_cpu: Vec<f64>,
    warden_restore: Vec<f64>,
    warden_restore_cpu: Vec<f64>,
    pgbr_restore: Vec<f64>,
    pgbr_restore_cpu: Vec<f64>,
}

/// `rounds` of backups on the replica, plain pg_basebackup, Warden, then pgBackRest
/// (when set up), then both restores, each printed, then their medians. A tool that
/// fails is an error: the smoke test in CI relies on it.
fn measure_rounds(
    cluster: &Cluster,
    replica: usize,
    rounds: u32,
    pgbr: Option<&PgBackRest>,
) -> Result<()> {
    let rport = cluster.node(replica).pg_port();
    // Alternate the tools so that load from elsewhere on the machine hits all alike.
    let mut f = Figures::default();
    for round in 1..=rounds {
        let ((bytes, secs), cpu) = measured(cluster, || raw_basebackup(rport))?;
        let raw = mib(bytes) / secs;
        println!(
            "round {round}: pg_basebackup -D - -Ft -X none > counter: {:.0} MiB in {secs:.1}s \
             = {raw:.1} MiB/s, {:.2} CPU-s/GiB",
            mib(bytes),
            per_gib(cpu, bytes)
        );
        f.raw.push(raw);
        f.raw_cpu.push(per_gib(cpu, bytes));

        let (out, cpu) = measured(cluster, || warden_backup(&cluster.node(replica).api_url()))?;
        let wbytes = out["bytes"].as_u64().unwrap_or(0);
        let stream_s = out["stream_seconds"].as_f64().unwrap_or(f64::NAN);
        let total_s = out["seconds"].as_f64().unwrap_or(f64::NAN);
        println!(
            "round {round}: Warden backup (sealed into the repository): {:.0} MiB, streaming \
             {stream_s:.1}s = {:.1} MiB/s, end to end {total_s:.1}s = {:.1} MiB/s, {:.2} CPU-s/GiB",
            mib(wbytes),
            mib(wbytes) / stream_s,
            mib(wbytes) / total_s,
            per_gib(cpu, wbytes)
        );
        f.stream.push(mib(wbytes) / stream_s);
        f.total.push(mib(wbytes) / total_s);
        f.warden_cpu.push(per_gib(cpu, wbytes));
        let id = out["id"].as_str().unwrap_or_default().to_string();

        if let Some(p) = pgbr {
            let ((bytes, secs), cpu) =
                measured(cluster, || p.backup().context("pgBackRest backup"))?;
            println!(
                "round {round}: pgBackRest backup --backup-standby: {:.0} MiB in {secs:.1}s \
                 = {:.1} MiB/s, {:.2} CPU-s/GiB",
                mib(bytes),
                mib(bytes) / secs,
                per_gib(cpu, bytes)
            );
            f.pgbr.push(mib(bytes) / secs);
            f.pgbr_cpu.push(per_gib(cpu, bytes));
        }
        restores(cluster, round, &id, pgbr, &mut f)?;
    }
    print_medians(rounds, f);
    Ok(())
}

fn print_medians(rounds: u32, f: Figures) {
    let (raw, stream, total) = (median(f.raw), median(f.stream), median(f.total));
    println!(
        "median of {rounds}: pg_basebackup {raw:.1} MiB/s ({:.2} CPU-s/GiB), Warden streaming \
         {stream:.1} MiB/s, end to end {total:.1} MiB/s ({:.2} CPU-s/GiB)",
        median(f.raw_cpu.clone()),
        median(f.warden_cpu.clone())
    );
    if !f.pgbr.is_empty() {
        println!(
            "median of {}: pgBackRest {:.1} MiB/s ({:.2} CPU-s/GiB)",
            f.pgbr.len(),
            median(f.pgbr.clone()),
            median(f.pgbr_cpu.clone())
        );
    }
    println!(
        "ratio Warden / pg_basebackup (medians): streaming {:.0}%, end to end {:.0}% (goal >= 80%)",
        100.0 * stream / raw,
        100.0 * total / raw
    );
    // One table of medians, the form docs/benchmarks.md quotes.
    let cell = |v: Vec<f64>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", median(v))
        }
    };
    let cpu = |v: Vec<f64>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2}", median(v))
        }
    };
    println!("| medians of {rounds} | backup MiB/s | backup CPU-s/GiB | restore MiB/s | restore CPU-s/GiB |");
    println!("|---|---|---|---|---|");
    println!(
        "| pg_basebackup -Ft -X none | {raw:.0} | {} | - | - |",
        cpu(f.raw_cpu)
    );
    println!(
        "| Warden (end to end) | {total:.0} | {} | {} | {} |",
        cpu(f.warden_cpu),
        cell(f.warden_restore),
        cpu(f.warden_restore_cpu)
    );
    println!(
        "| pgBackRest --backup-standby | {} | {} | {} | {} |",
        cell(f.pgbr),
        cpu(f.pgbr_cpu),
        cell(f.pgbr_restore),
        cpu(f.pgbr_restore_cpu)
    );
}

/// pgBackRest against the kit's cluster: stanza `bench`, the primary as pg1 and the
/// replica as pg2 (both local, reached over their unix sockets, where the kit trusts
/// local connections), repository on local disk, run as the `postgres` OS user.
#[derive(Debug)]
struct PgBackRest {
    conf: std::path::PathBuf,
    work: std::path::PathBuf,
}

const PGBACKREST: &str = "/usr/bin/pgbackrest";

impl PgBackRest {
    /// `None` (with the reason printed) when pgBackRest is not installed.
    fn setup(
        cluster: &Cluster,
        primary: usize,
        replica: usize,
        work: &Path,
        level: i32,
    ) -> Result<Option<Self>> {
        if !Path::new(PGBACKREST).exists() {
            println!("pgBackRest: not measured ({PGBACKREST} missing; apt-get install pgbackrest)");
            return Ok(None);
        }
        Self::try_setup(cluster, primary, replica, work, level)
            .map(Some)
            .context("setting up pgBackRest")
    }

    fn try_setup(
        cluster: &Cluster,
        primary: usize,
        replica: usize,
        work: &Path,
        level: i32,
    ) -> Result<Self> {
        let dir = work.join("pgbackrest");
        for d in ["", "repo", "lock", "spool", "log"] {
            let p = dir.join(d);
            create_node_dir(&p)?;
            warden_tests::workdir::chown_to_postgres(&p)?;
        }
        let mut pass = [0u8; 24];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut pass)?;
        let pass: String = pass.iter().map(|b| format!("{b:02x}")).collect();
        let (p, r) = (cluster.node(primary), cluster.node(replica));
        let conf = format!(
            "[global]\nrepo1-path={repo}\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={pass}\n\
             repo1-retention-full=100\ncompress-type=zst\ncompress-level={level}\nprocess-max=2\n\
             start-fast=y\nbackup-standby=y\narchive-check=n\narchive-copy=n\n\
             log-level-console=warn\nlog-level-file=off\nlock-path={lock}\nspool-path={spool}\n\
             log-path={log}\n\n[bench]\npg1-path={p1}\npg1-port={p1port}\npg1-socket-path={p1sock}\n\
             pg1-user={user}\npg2-path={p2}\npg2-port={p2port}\npg2-socket-path={p2sock}\npg2-user={user}\n",
            repo = dir.join("repo").display(),
            lock = dir.join("lock").display(),
            spool = dir.join("spool").display(),
            log = dir.join("log").display(),
            p1 = p.data_dir().display(),
            p1port = p.pg_port(),
            p1sock = p.node_dir().display(),
            p2 = r.data_dir().display(),
            p2port = r.pg_port(),
            p2sock = r.node_dir().display(),
            user = SUPERUSER,
        );
        let path = dir.join("pgbackrest.conf");
        std::fs::write(&path, conf)?;
        warden_tests::workdir::chown_to_postgres(&path)?;
        let me = Self {
            conf: path,
            work: dir,
        };
        me.run(&["stanza-create"])?;
        Ok(me)
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new(PGBACKREST);
        if let Some((uid, gid)) = postgres_owner()? {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let out = cmd
            .current_dir("/tmp")
            .arg(format!("--config={}", self.conf.display()))
            .arg("--stanza=bench")
            .args(args)
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .output()
            .context("running pgbackrest")?;
        ensure!(
            out.status.success(),
            "pgbackrest {args:?}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// A full backup: (database bytes as pgBackRest reports them, seconds).
    fn backup(&self) -> Result<(u64, f64)> {
        let t = Instant::now();
        self.run(&["--type=full", "backup"])?;
        let secs = t.elapsed().as_secs_f64();
        Ok((self.last_size()?, secs))
    }

    fn last_size(&self) -> Result<u64> {
        let mut cmd = Command::new(PGBACKREST);
        if let Some((uid, gid)) = postgres_owner()? {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let out = cmd
            .current_dir("/tmp")
            .arg(format!("--config={}", self.conf.display()))
            .args(["--stanza=bench", "--output=json", "info"])
            .output()?;
        let v: Value = serde_json::from_slice(&out.stdout).context("pgbackrest info")?;
        v[0]["backup"]
            .as_array()
            .and_then(|b| b.last())
            .and_then(|b| b["info"]["size"].as_u64())
            .context("no backup size in pgbackrest info")
    }

    /// Restores the newest backup into a scratch directory: (bytes, seconds).
    fn restore(&self, bytes: u64) -> Result<(u64, f64)> {
        let dir = self.work.join("restore");
        create_node_dir(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        warden_tests::workdir::chown_to_postgres(&dir)?;
        let t = Instant::now();
        let r = self.run(&[&format!("--pg1-path={}", dir.display()), "restore"]);
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&dir);
        r.map(|()| (bytes, secs))
    }
}

/// Restores this round's Warden backup and pgBackRest's newest backup.
/// Prints one restore's figures and returns (MiB/s, CPU-s/GiB).
fn restore_figures(round: u32, tool: &str, (bytes, secs): (u64, f64), cpu: f64) -> (f64, f64) {
    let (rate, cpu) = (mib(bytes) / secs, per_gib(cpu, bytes));
    println!(
        "round {round}: restore: {tool} {:.0} MiB in {secs:.1}s = {rate:.1} MiB/s, {cpu:.2} CPU-s/GiB",
        mib(bytes)
    );
    (rate, cpu)
}

fn restores(
    cluster: &Cluster,
    round: u32,
    id: &str,
    pgbr: Option<&PgBackRest>,
    f: &mut Figures,
) -> Result<()> {
    let warden = |f: &mut Figures| -> Result<()> {
        let (run, cpu) = measured(cluster, || {
            restore_throughput(cluster, id).context("Warden restore")
        })?;
        let (rate, cpu) = restore_figures(round, "Warden", run, cpu);
        f.warden_restore.push(rate);
        f.warden_restore_cpu.push(cpu);
        Ok(())
    };
    let Some(p) = pgbr else { return warden(f) };
    let pgbackrest = |f: &mut Figures| -> Result<()> {
        let bytes = p.last_size()?;
        let (run, cpu) = measured(cluster, || p.restore(bytes).context("pgBackRest restore"))?;
        let (rate, cpu) = restore_figures(round, "pgBackRest", run, cpu);
        f.pgbr_restore.push(rate);
        f.pgbr_restore_cpu.push(cpu);
        Ok(())
    };
    // Alternate which restores first: the first writes into memory the page cache
    // has not used yet, which on a VM can cost more than reusing what the previous
    // restore freed.
    if round % 2 == 1 {
        warden(f)?;
        pgbackrest(f)
    } else {
        pgbackrest(f)?;
        warden(f)
    }
}
