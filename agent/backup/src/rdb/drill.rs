//! Restore drills for Redis snapshots: prove the newest snapshot (or a named one)
//! restores and serves, and measure how long that takes.
//!
//! 1. Restore it into a scratch directory ([`super::restore`], verified on the way).
//! 2. Start `redis-server --port <free loopback port> --dir <scratch> --dbfilename
//!    dump.rdb --appendonly no --save ''` and poll, past `-LOADING`, until `PING`
//!    answers.
//! 3. Run the checks (`DBSIZE` at least n, `GET key` equal to a value).
//! 4. RTO = restore + load + checks. RPO = the snapshot's age at the drill's start,
//!    from the fetch's start (the fork came later, so this is an upper bound): Redis
//!    has no WAL to replay past the snapshot.
//! 5. Write a [`DrillRecord`] (the PostgreSQL drills' shape: `fetch_seconds` is the
//!    restore, `replay_seconds` the load), ok or failed with the error; the server is
//!    killed and the directory removed on every path.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::resp::{Conn, Reply};
use crate::catalog::{Catalog, CheckResult, DrillRecord};

/// Bound on one command to the scratch server (and on one connect).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two looks at a loading server.
const POLL: Duration = Duration::from_millis(50);
/// Bound on stopping the scratch server.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One check against the restored server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdbCheck {
    /// `DBSIZE` (keys of the current database, 0) is at least this.
    DbSizeAtLeast(u64),
    /// `GET key` returns exactly `value`.
    Get { key: String, value: String },
}

impl RdbCheck {
    fn name(&self) -> String {
        match self {
            Self::DbSizeAtLeast(n) => format!("DBSIZE >= {n}"),
            Self::Get { key, value } => format!("GET {key} == {value:?}"),
        }
    }
}

/// What a drill needs besides the catalog.
#[derive(Debug, Clone)]
pub struct RdbDrillOptions {
    /// Snapshot id, or `None` for the newest.
    pub snapshot: Option<String>,
    /// The member running it (recorded).
    pub member: String,
    /// The `redis-server` binary.
    pub redis_server: PathBuf,
    pub checks: Vec<RdbCheck>,
    /// Bound on the whole drill.
    pub timeout: Duration,
    /// Where the scratch directory goes (`None`: the system's temp dir).
    pub scratch_parent: Option<PathBuf>,
}

impl RdbDrillOptions {
    pub fn new(member: impl Into<String>) -> Self {
        Self {
            snapshot: None,
            member: member.into(),
            redis_server: PathBuf::from("redis-server"),
            checks: Vec::new(),
            timeout: Duration::from_secs(3600),
            scratch_parent: None,
        }
    }
}

/// The scratch directory and the server running on it; killed and removed on drop.
struct Scratch {
    dir: tempfile::TempDir,
    server: Option<tokio::process::Child>,
    port: u16,
}

impl Scratch {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server (SIGKILL: the scratch copy is thrown away) and waits for it.
    async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.server.take() {
            child.start_kill().ok();
            tokio::time::timeout(STOP_TIMEOUT, child.wait())
                .await
                .map_err(|_| {
                    anyhow!("the scratch redis-server did not exit within {STOP_TIMEOUT:?}")
                })?
                .context("waiting for the scratch redis-server")?;
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free loopback port")?
        .port())
}

/// Runs one drill and records its result in the catalog. `Err` only when the record
/// itself cannot be written; a failed drill is `Ok` with `ok == false`.
pub async fn run(catalog: &Catalog, opts: &RdbDrillOptions) -> Result<DrillRecord> {
    let mut record = crate::drill::new_record(opts.member.clone(), opts.snapshot.clone());
    let mut scratch = None;
    let outcome = tokio::time::timeout(
        opts.timeout,
        drill(catalog, opts, &mut record, &mut scratch),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow!("the drill timed out after {:?}", opts.timeout)));
    let cleaned = match scratch.as_mut() {
        Some(s) => s.stop().await,
        None => Ok(()),
    };
    drop(scratch);
    crate::drill::finish(catalog, record, outcome.and(cleaned), "RDB restore drill").await
}

async fn drill(
    catalog: &Catalog,
    opts: &RdbDrillOptions,
    record: &mut DrillRecord,
    slot: &mut Option<Scratch>,
) -> Result<()> {
    let snapshot = catalog
        .rdb(opts.snapshot.as_deref().unwrap_or("latest"))
        .await?;
    record.backup_id = Some(snapshot.id.clone());
    // No WAL: what the snapshot holds is all a restore gets.
    record.rpo_seconds = Some(
        (record.started_at - snapshot.started_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6,
    );
    let mut builder = tempfile::Builder::new();
    builder.prefix("warden-rdb-drill-");
    let dir = match &opts.scratch_parent {
        Some(p) => builder.tempdir_in(p),
        None => builder.tempdir(),
    }
    .context("creating the drill's scratch directory")?;
    let scratch = slot.insert(Scratch {
        dir,
        server: None,
        port: 0,
    });
    let data = scratch.data_dir();

    let restore_started = Instant::now();
    super::restore(catalog, &snapshot, &data).await?;
    record.fetch_seconds = Some(restore_started.elapsed().as_secs_f64());

    let load_started = Instant::now();
    scratch.port = free_port()?;
    let child = tokio::process::Command::new(&opts.redis_server)
        .arg("--port")
        .arg(scratch.port.to_string())
        .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
        .arg("--dir")
        .arg(&data)
        .args(["--dbfilename", warden_redis::rdb::DUMP_FILE])
        .args(["--appendonly", "no", "--save", "", "--daemonize", "no"])
        .arg("--logfile")
        .arg(scratch.dir.path().join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", opts.redis_server.display()))?;
    scratch.server = Some(child);
    let mut conn = loop {
        if let Some(status) = scratch
            .server
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            bail!(
                "the scratch redis-server exited ({status}) while loading: {}",
                scratch.log_tail()
            );
        }
        if let Ok(mut c) = Conn::connect(scratch.port, COMMAND_TIMEOUT).await {
            // `-LOADING` while the RDB is read; any other error is final.
            match c.command(&["PING"]).await {
                Ok(Reply::Simple(s)) if s == "PONG" => break c,
                Ok(Reply::Error(e)) if e.starts_with("LOADING") => {}
                Ok(other) => bail!("the scratch redis-server answered PING with {other:?}"),
                Err(_) => {}
            }
        }
        tokio::time::sleep(POLL).await;
    };
    record.replay_seconds = Some(load_started.elapsed().as_secs_f64());

    let checks_started = Instant::now();
    for check in &opts.checks {
        let (ok, got) = run_check(&mut conn, check).await;
        record.checks.push(CheckResult {
            name: check.name(),
            ok,
            got,
        });
    }
    record.checks_seconds = Some(checks_started.elapsed().as_secs_f64());
    let failed: Vec<String> = record
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} (got {:?})", c.name, c.got))
        .collect();
    if !failed.is_empty() {
        bail!("checks failed: {}", failed.join(", "));
    }
    Ok(())
}

async fn run_check(conn: &mut Conn, check: &RdbCheck) -> (bool, String) {
    match check {
        RdbCheck::DbSizeAtLeast(n) => match conn.command(&["DBSIZE"]).await {
            Ok(Reply::Int(size)) => (u64::try_from(size).is_ok_and(|s| s >= *n), size.to_string()),
            Ok(other) => (false, format!("{other:?}")),
            Err(e) => (false, format!("error: {e:#}")),
        },
        RdbCheck::Get { key, value } => match conn.command(&["GET", key]).await {
            Ok(Reply::Bulk(Some(v))) => {
                let got = String::from_utf8_lossy(&v).into_owned();
                (got == *value, got)
            }
            Ok(Reply::Bulk(None)) => (false, "(nil)".to_owned()),
            Ok(other) => (false, format!("{other:?}")),
            Err(e) => (false, format!("error: {e:#}")),
        },
    }
}

/// A Redis drill result in a few lines.
pub fn render(r: &DrillRecord) -> String {
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{s:.2} s"));
    let mut out = format!(
        "Drill {} of RDB snapshot {}: {}\n",
        r.id,
        r.backup_id.as_deref().unwrap_or("-"),
        if r.ok { "OK" } else { "FAILED" }
    );
    if let Some(e) = &r.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    out.push_str(&format!(
        "  RTO {} = restore {} + load {} + checks {}\n",
        secs(r.rto_seconds),
        secs(r.fetch_seconds),
        secs(r.replay_seconds),
        secs(r.checks_seconds)
    ));
    out.push_str(&format!(
        "  RPO {} (the snapshot's age when the drill started; Redis has no WAL)\n",
        secs(r.rpo_seconds)
    ));
    for c in &r.checks {
        out.push_str(&format!(
            "  check {}: {} (got {:?})\n",
            c.name,
            if c.ok { "ok" } else { "FAILED" },
            c.got
        ));
    }
    out
}
