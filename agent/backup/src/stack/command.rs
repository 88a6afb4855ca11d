//! `kind: command`: a program whose stdout is the backup, and one whose stdin is.
//!
//! - [`backup`]: runs `backup_command` in a private scratch directory
//!   (`$WARDEN_SCRATCH`), seals its stdout into parts as it arrives (nothing staged on
//!   disk: the dump writer's part store), reads the parts back, and only then writes
//!   the record. A non-zero exit, no output, or the timeout fail the run with the exit
//!   status and the end of stderr; the parts written are deleted.
//! - [`restore`]: the set's parts, authenticated and decrypted, piped into
//!   `restore_command` with `$WARDEN_RESTORE_DIR` (and `$WARDEN_SCRATCH`).
//! - [`drill`]: restore into a scratch directory, start `drill.start_command` on it
//!   (two free ports in `$WARDEN_DRILL_PORT`, `$WARDEN_DRILL_PORT2`), run the checks
//!   until they pass or the drill's timeout, stop everything, remove the scratch
//!   directory, and record the result in the repository.
//!
//! Children get the agent's environment minus every secret (the backup key variable,
//! anything named like a password): a job must read its credentials from its own
//! files.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{JobCatalog, JobDrillRecord, JobRecord, StackError, JOB_RECORD, PART_BASE, PART_SIZE};
use crate::catalog::{self, CheckResult, FORMAT};
use crate::parts::{self, PartsReader};
use warden_config::{StackJob, StackJobKind};

/// Kept of a failing program's stderr, for the error.
const STDERR_MAX: usize = 4096;
/// Bound on one drill check command.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two attempts of a check that has not passed yet (the started service may
/// still be coming up).
const CHECK_RETRY: Duration = Duration::from_millis(500);
/// How long a drill's started service gets to stop on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CommandJobError {
    #[error("job {job}: {what} could not start: {problem}")]
    Start {
        job: String,
        what: &'static str,
        problem: String,
    },
    #[error("job {job}: {what} failed ({status}); stderr: {stderr}")]
    Failed {
        job: String,
        what: &'static str,
        status: String,
        stderr: String,
    },
    #[error("job {job}: {what} timed out after {timeout:?}; stderr: {stderr}")]
    TimedOut {
        job: String,
        what: &'static str,
        timeout: Duration,
        stderr: String,
    },
    #[error(
        "job {job}: the backup command exited 0 but wrote nothing on stdout; stderr: {stderr}"
    )]
    Empty { job: String, stderr: String },
    /// The repository side failed; its error is part of the message (and not a
    /// `source` too, or reports with the error chain would print it twice).
    #[error("job {job}: {error}")]
    Stack { job: String, error: Box<StackError> },
    #[error("job {job}: {problem}")]
    Other { job: String, problem: String },
}

fn the_command(job: &StackJob) -> Result<&warden_config::CommandJob, CommandJobError> {
    match &job.kind {
        StackJobKind::Command(c) => Ok(c),
        other => Err(CommandJobError::Other {
            job: job.name.clone(),
            problem: format!("is a {} job, not a command job", other.name()),
        }),
    }
}

/// The environment a job's child gets: the parent's without secrets.
fn scrub_env(cmd: &mut std::process::Command) {
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy().to_ascii_uppercase();
        if name == crate::key::KEY_ENV
            || name.contains("PASSWORD")
            || name.contains("SECRET")
            || name.contains("TOKEN")
            || name == "PGPASSWORD"
        {
            cmd.env_remove(&k);
        }
    }
}

pub(super) fn std_command(
    argv: &[String],
    env: &[(&str, &Path)],
    extra: &[(String, String)],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    scrub_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    // Its own process group, so a timeout stops what a shell started too.
    cmd.process_group(0);
    cmd
}

fn kill_group(pid: i32, sig: nix::sys::signal::Signal) {
    if pid > 0 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Reads a child's stderr, keeping the last [`STDERR_MAX`] bytes.
async fn tail(mut r: impl AsyncRead + Unpin) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > STDERR_MAX {
            kept.drain(..kept.len() - STDERR_MAX);
        }
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

fn scratch_dir(job: &StackJob) -> Result<tempfile::TempDir, CommandJobError> {
    tempfile::Builder::new()
        .prefix(&format!("warden-job-{}-", job.name))
        .tempdir()
        .map_err(|e| CommandJobError::Other {
            job: job.name.clone(),
            problem: format!("cannot create a scratch directory: {e}"),
        })
}

/// An id no set uses yet: two runs in the same second (wardenctl and the schedule)
/// must not share a directory, so a taken second moves to the next one.
pub(super) async fn fresh_id(
    jc: &JobCatalog,
    job: &str,
    at: chrono::DateTime<Utc>,
) -> Result<String, CommandJobError> {
    for k in 0..60 {
        let id = catalog::id_at(at + chrono::Duration::seconds(k));
        let taken = jc
            .catalog
            .repo
            .list(&format!("{}/", jc.set_dir(&id)))
            .await
            .map_err(|e| CommandJobError::Stack {
                job: job.to_owned(),
                error: Box::new(e.into()),
            })?;
        if taken.is_empty() {
            return Ok(id);
        }
    }
    Err(CommandJobError::Other {
        job: job.to_owned(),
        problem: "no free set id in the next minute".into(),
    })
}

/// Runs the job's backup command and commits its stdout as a new set.
pub async fn backup(
    jc: &JobCatalog,
    job: &StackJob,
    level: i32,
    member: &str,
) -> Result<JobRecord, CommandJobError> {
    let argv = the_command(job)?.backup_command.clone();
    backup_argv(jc, job, &argv, level, member, None).await
}

/// [`backup`] of `argv`'s stdout (the MariaDB kind builds its dump command);
/// `method` goes into the record (MariaDB: `dump` or `physical`).
pub(super) async fn backup_argv(
    jc: &JobCatalog,
    job: &StackJob,
    argv: &[String],
    level: i32,
    member: &str,
    method: Option<&str>,
) -> Result<JobRecord, CommandJobError> {
    let started_at = Utc::now();
    let id = fresh_id(jc, &job.name, started_at).await?;
    let scratch = scratch_dir(job)?;
    let dir = jc.set_dir(&id);
    let mut cmd = tokio::process::Command::from(std_command(
        argv,
        &[("WARDEN_SCRATCH", scratch.path())],
        &[("WARDEN_JOB".into(), job.name.clone())],
    ));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(scratch.path())
        .kill_on_drop(true);
    let name = job.name.clone();
    let mut child = cmd.spawn().map_err(|e| CommandJobError::Start {
        job: name.clone(),
        what: "the backup command",
        problem: e.to_string(),
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    tracing::info!(job = %name, set = %id, pid, "job backup command started");
    let stdout = child.stdout.take().expect("piped");
    let stderr = tokio::spawn(tail(child.stderr.take().expect("piped")));
    let work = async {
        let (stored, status) = tokio::join!(
            crate::rdb::parts::store_named(&jc.catalog, level, &dir, PART_BASE, PART_SIZE, stdout),
            child.wait()
        );
        (stored, status)
    };
    let outcome = tokio::time::timeout(job.timeout, work).await;
    let discard = |parts: Vec<crate::catalog::Part>| async move {
        for p in parts {
            let path = format!("{dir}/{}", p.name);
            if let Err(e) = jc.catalog.repo.delete(&path).await {
                tracing::warn!(%path, error = %e, "cannot delete a part of a failed job run; the prune will");
            }
        }
    };
    let ((result, stored), status) = match outcome {
        Ok(r) => r,
        Err(_) => {
            kill_group(pid, nix::sys::signal::Signal::SIGKILL);
            let stderr = stderr.await.unwrap_or_default();
            return Err(CommandJobError::TimedOut {
                job: name,
                what: "the backup command",
                timeout: job.timeout,
                stderr,
            });
        }
    };
    let err_text = stderr.await.unwrap_or_default();
    let status = status.map_err(|e| CommandJobError::Other {
        job: name.clone(),
        problem: format!("waiting for the backup command: {e}"),
    })?;
    if !status.success() {
        discard(stored.parts).await;
        return Err(CommandJobError::Failed {
            job: name,
            what: "the backup command",
            status: status.to_string(),
            stderr: err_text,
        });
    }
    if let Err(e) = result {
        discard(stored.parts).await;
        return Err(CommandJobError::Other {
            job: name,
            problem: format!("storing the output: {e}"),
        });
    }
    if stored.parts.is_empty() {
        return Err(CommandJobError::Empty {
            job: name,
            stderr: err_text,
        });
    }
    let mut record = JobRecord {
        format: FORMAT,
        id: id.clone(),
        job: name.clone(),
        kind: job.kind.name().to_owned(),
        member: member.to_owned(),
        started_at,
        finished_at: Utc::now(),
        size: stored.parts.iter().map(|p| p.plain_size).sum(),
        stored_size: stored.parts.iter().map(|p| p.stored_size).sum(),
        compression_level: level,
        parts: stored.parts,
        stderr: err_text,
        snapshot: None,
        source_bytes: None,
        method: method.map(str::to_owned),
    };
    // Read back before it counts: what is committed is known to come back.
    if let Err(e) = jc.verify(&record).await {
        discard(record.parts.clone()).await;
        return Err(CommandJobError::Stack {
            job: name,
            error: Box::new(e),
        });
    }
    record.finished_at = Utc::now();
    jc.catalog
        .put_record(&format!("{}/{JOB_RECORD}", jc.set_dir(&id)), &record)
        .await
        .map_err(|e| CommandJobError::Stack {
            job: name.clone(),
            error: Box::new(e.into()),
        })?;
    tracing::info!(job = %name, set = %id, size = record.size, stored = record.stored_size, "job set committed");
    Ok(record)
}

/// Pipes set `record` into the job's restore command with `$WARDEN_RESTORE_DIR` =
/// `target` and `$WARDEN_SCRATCH` = `scratch`; `extra` more variables (the drill's
/// ports). Bounded by the job's timeout.
pub async fn restore(
    jc: &JobCatalog,
    job: &StackJob,
    record: &JobRecord,
    target: &Path,
    scratch: &Path,
    extra: &[(String, String)],
) -> Result<u64, CommandJobError> {
    if super::restic::the_restic(job).is_some() {
        return super::restic::restore(job, record, target).await;
    }
    if super::mariadb::the_mariadb(job).is_some() {
        // The SQL dump (`DIR/dump.sql`), or a prepared datadir for a physical set.
        return super::mariadb::restore_into(jc, job, record, target).await;
    }
    let c = the_command(job)?;
    let name = job.name.clone();
    let Some(argv) = c.restore_command.clone() else {
        return Err(CommandJobError::Other {
            job: name,
            problem: "has no restore_command (backup.jobs[].restore_command)".into(),
        });
    };
    let list = jc.part_list(record);
    let rx = parts::download(
        jc.catalog.repo.clone(),
        list.iter().map(|(p, _)| p.clone()).collect(),
    );
    let key = jc.catalog.key.clone();
    let mut cmd = std_command(
        &argv,
        &[("WARDEN_RESTORE_DIR", target), ("WARDEN_SCRATCH", scratch)],
        extra,
    );
    cmd.env("WARDEN_JOB", &name)
        .current_dir(scratch)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let pid = Arc::new(AtomicI32::new(0));
    let pid_in = pid.clone();
    let job_name = name.clone();
    let id = record.id.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<u64, CommandJobError> {
        let mut child = cmd.spawn().map_err(|e| CommandJobError::Start {
            job: job_name.clone(),
            what: "the restore command",
            problem: e.to_string(),
        })?;
        pid_in.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
        let mut stderr = child.stderr.take().expect("piped");
        let errs = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            let start = text.len().saturating_sub(STDERR_MAX);
            String::from_utf8_lossy(&text[start..]).trim().to_owned()
        });
        let mut reader = PartsReader::new(rx, key, list);
        let mut stdin = child.stdin.take().expect("piped");
        let copied = std::io::copy(&mut reader, &mut stdin);
        drop(stdin);
        let status = child.wait();
        let err_text = errs.join().unwrap_or_default();
        if let Some(p) = reader.problems.first() {
            return Err(CommandJobError::Stack {
                job: job_name,
                error: Box::new(StackError::Parts {
                    id,
                    problems: vec![p.clone()],
                }),
            });
        }
        let status = status.map_err(|e| CommandJobError::Other {
            job: job_name.clone(),
            problem: format!("waiting for the restore command: {e}"),
        })?;
        if !status.success() {
            return Err(CommandJobError::Failed {
                job: job_name,
                what: "the restore command",
                status: status.to_string(),
                stderr: err_text,
            });
        }
        copied.map_err(|e| CommandJobError::Other {
            job: job_name,
            problem: format!("the restore command stopped reading: {e}"),
        })
    });
    match tokio::time::timeout(job.timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(CommandJobError::Other {
            job: name,
            problem: format!("restore task failed: {e}"),
        }),
        Err(_) => {
            kill_group(
                pid.load(Ordering::SeqCst),
                nix::sys::signal::Signal::SIGKILL,
            );
            Err(CommandJobError::TimedOut {
                job: name,
                what: "the restore command",
                timeout: job.timeout,
                stderr: String::new(),
            })
        }
    }
}

/// A port nobody listens on right now (the drill's service takes it soon after).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A started service, stopped (its whole process group) when dropped.
struct Started {
    pid: i32,
    child: std::process::Child,
}

impl Drop for Started {
    fn drop(&mut self) {
        kill_group(self.pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_group(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Runs one check command; its trimmed stdout (or its failure).
async fn run_check(
    argv: &[String],
    env: &[(&str, &Path)],
    extra: &[(String, String)],
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::from(std_command(argv, env, extra));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(CHECK_TIMEOUT, cmd.output()).await {
        Err(_) => Err(format!("timed out after {CHECK_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("cannot run: {e}")),
        Ok(Ok(out)) if !out.status.success() => Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Ok(out)) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
    }
}

/// Restores set `id` (`latest`) into a scratch directory under `scratch_root` (the
/// system's temporary directory when `None`), starts it, runs the checks, cleans up,
/// and records the result in the repository. `Err` only when nothing could be
/// recorded; a failed drill is an `Ok` record with `ok == false`.
pub async fn drill(
    jc: &JobCatalog,
    job: &StackJob,
    id: &str,
    member: &str,
    scratch_root: Option<&Path>,
) -> Result<JobDrillRecord, CommandJobError> {
    let started_at = Utc::now();
    // Two drills in one second (wardenctl and the schedule) must not share a record.
    let mut drill_id = catalog::id_at(started_at);
    for k in 1..60 {
        if !jc
            .catalog
            .repo
            .exists(&jc.drill_path(&drill_id))
            .await
            .unwrap_or(false)
        {
            break;
        }
        drill_id = catalog::id_at(started_at + chrono::Duration::seconds(k));
    }
    let t0 = Instant::now();
    let mut rec = JobDrillRecord {
        format: FORMAT,
        id: drill_id.clone(),
        job: job.name.clone(),
        member: member.to_owned(),
        backup_id: None,
        started_at,
        finished_at: started_at,
        ok: false,
        error: None,
        restore_seconds: None,
        checks_seconds: None,
        rto_seconds: None,
        checks: Vec::new(),
    };
    let result = tokio::time::timeout(
        job.drill.timeout,
        drill_steps(jc, job, id, scratch_root, &mut rec, t0),
    )
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => rec.error = Some(e),
        Err(_) => rec.error = Some(format!("the drill timed out after {:?}", job.drill.timeout)),
    }
    rec.ok = rec.error.is_none();
    rec.finished_at = Utc::now();
    if rec.ok {
        rec.rto_seconds = Some(t0.elapsed().as_secs_f64());
    }
    jc.catalog
        .put_record(&jc.drill_path(&drill_id), &rec)
        .await
        .map_err(|e| CommandJobError::Stack {
            job: job.name.clone(),
            error: Box::new(e.into()),
        })?;
    if rec.ok {
        tracing::info!(job = %job.name, drill = %drill_id, rto = ?rec.rto_seconds, "job drill passed");
    } else {
        let why = rec.error.clone().unwrap_or_default();
        tracing::error!(job = %job.name, drill = %drill_id, error = %why, "job drill failed");
        crate::notify::alert(
            crate::notify::Kind::Drill,
            &format!("job {} drill {drill_id}: {why}", job.name),
        );
    }
    Ok(rec)
}

async fn drill_steps(
    jc: &JobCatalog,
    job: &StackJob,
    id: &str,
    scratch_root: Option<&Path>,
    rec: &mut JobDrillRecord,
    t0: Instant,
) -> Result<(), String> {
    let record = jc.record(id).await.map_err(|e| e.to_string())?;
    rec.backup_id = Some(record.id.clone());
    let scratch = match scratch_root {
        Some(root) => tempfile::Builder::new()
            .prefix(&format!("warden-drill-{}-", job.name))
            .tempdir_in(root),
        None => tempfile::Builder::new()
            .prefix(&format!("warden-drill-{}-", job.name))
            .tempdir(),
    }
    .map_err(|e| format!("cannot create the scratch directory: {e}"))?;
    if super::restic::the_restic(job).is_some() {
        return super::restic::drill_steps(jc, job, id, scratch.path(), rec, t0).await;
    }
    if super::mariadb::the_mariadb(job).is_some() {
        return super::mariadb::drill_steps(jc, job, id, scratch.path(), rec, t0).await;
    }
    // The restore directory does not exist yet: restore tools (etcdctl snapshot
    // restore) refuse an existing one.
    let target: PathBuf = scratch.path().join("restore");
    let work = scratch.path().join("work");
    std::fs::create_dir(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let ports = [free_port(), free_port()];
    let extra: Vec<(String, String)> = match ports {
        [Ok(a), Ok(b)] => vec![
            ("WARDEN_DRILL_PORT".into(), a.to_string()),
            ("WARDEN_DRILL_PORT2".into(), b.to_string()),
        ],
        _ => return Err("cannot find free ports for the drill".into()),
    };
    restore(jc, job, &record, &target, &work, &extra)
        .await
        .map_err(|e| e.to_string())?;
    rec.restore_seconds = Some(t0.elapsed().as_secs_f64());
    let t1 = Instant::now();
    let env = [
        ("WARDEN_RESTORE_DIR", target.as_path()),
        ("WARDEN_SCRATCH", work.as_path()),
    ];
    let started = match &job.drill.start_command {
        None => None,
        Some(argv) => {
            let log = std::fs::File::create(scratch.path().join("start.log"))
                .map_err(|e| format!("creating the start log: {e}"))?;
            let mut cmd = std_command(argv, &env, &extra);
            cmd.env("WARDEN_JOB", &job.name)
                .current_dir(&work)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log);
            let child = cmd
                .spawn()
                .map_err(|e| format!("the start command could not start: {e}"))?;
            let pid = i32::try_from(child.id()).unwrap_or(0);
            Some(Started { pid, child })
        }
    };
    let mut failed = Vec::new();
    for check in &job.drill.checks {
        // Retried until it passes: the started service may take a while to answer.
        let mut last;
        loop {
            last = run_check(&check.command, &env, &extra).await;
            let pass = match (&last, &check.expect) {
                (Ok(got), Some(want)) => got == want.trim(),
                (Ok(_), None) => true,
                (Err(_), _) => false,
            };
            if pass {
                break;
            }
            if deadline_near(job, t0) {
                break;
            }
            tokio::time::sleep(CHECK_RETRY).await;
            if deadline_near(job, t0) {
                break;
            }
        }
        let ok = match (&last, &check.expect) {
            (Ok(got), Some(want)) => got == want.trim(),
            (Ok(_), None) => true,
            (Err(_), _) => false,
        };
        let got = match last {
            Ok(s) => s,
            Err(e) => e,
        };
        if !ok {
            failed.push(format!("{} (got {got:?})", check.name));
        }
        rec.checks.push(CheckResult {
            name: check.name.clone(),
            ok,
            got,
        });
    }
    rec.checks_seconds = Some(t1.elapsed().as_secs_f64());
    // Stopping waits (bounded) for the process group: off the async threads.
    if let Some(s) = started {
        let _ = tokio::task::spawn_blocking(move || drop(s)).await;
    }
    if !failed.is_empty() {
        return Err(format!("check(s) failed: {}", failed.join(", ")));
    }
    Ok(())
}

/// Checks stop retrying a little before the drill's timeout, so their results are
/// recorded rather than cut off.
fn deadline_near(job: &StackJob, t0: Instant) -> bool {
    t0.elapsed() + CHECK_TIMEOUT.min(job.drill.timeout / 4) >= job.drill.timeout
}
