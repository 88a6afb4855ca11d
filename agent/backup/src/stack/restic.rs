//! `kind: restic`: files and configs backed up by `restic` into restic's own
//! repository (so plain `restic` reads them), each run recorded in Warden's.
//!
//! - [`backup`]: `restic init` when the repository has no config yet, `restic backup
//!   --json` with the job's paths, excludes and tags (`warden`, `warden-job=<name>`
//!   and the job's), then the run's summary (snapshot id, sizes) is sealed into a set
//!   of Warden's repository like any job, and the job's retention is applied with
//!   `restic forget --prune` on the job's tag; Warden's sets whose snapshot restic no
//!   longer has are removed.
//! - [`check`]: `restic check --read-data-subset`.
//! - [`restore`]: `restic restore <snapshot> --target DIR`; [`drill_steps`]: the same
//!   into a scratch directory, then the file checks (exists, size, SHA-256).
//!
//! restic reads its password from the job's `password_file` (`--password-file`): the
//! password is never on argv, in the environment or in logs.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::command::{std_command, CommandJobError};
use super::{JobCatalog, JobDrillRecord, JobRecord, JOB_RECORD, PART_BASE, PART_SIZE};
use crate::catalog::{CheckResult, FORMAT};
use warden_config::{ResticJob, StackJob, StackJobKind};

/// Share of the pack files `backup verify --job` reads back in full.
const CHECK_SUBSET: &str = "10%";
/// Bound on restic's bookkeeping commands (init, snapshots, forget).
const SHORT: Duration = Duration::from_secs(600);

pub(super) fn the_restic(job: &StackJob) -> Option<&ResticJob> {
    match &job.kind {
        StackJobKind::Restic(r) => Some(r),
        _ => None,
    }
}

/// Whether `job` is a restic job.
pub fn the_restic_kind(job: &StackJob) -> bool {
    the_restic(job).is_some()
}

fn restic(r: &ResticJob, args: &[String]) -> tokio::process::Command {
    let mut argv = vec![
        "restic".to_owned(),
        "--repo".to_owned(),
        r.repository.clone(),
        "--password-file".to_owned(),
        r.password_file.display().to_string(),
    ];
    argv.extend(args.iter().cloned());
    let mut cmd = tokio::process::Command::from(std_command(&argv, &[], &[]));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs restic; its stdout, or the failure with the end of its stderr.
async fn run(
    job: &str,
    r: &ResticJob,
    args: &[String],
    timeout: Duration,
) -> Result<String, CommandJobError> {
    let out = tokio::time::timeout(timeout, restic(r, args).output()).await;
    let what = "restic";
    match out {
        Err(_) => Err(CommandJobError::TimedOut {
            job: job.to_owned(),
            what,
            timeout,
            stderr: String::new(),
        }),
        Ok(Err(e)) => Err(CommandJobError::Start {
            job: job.to_owned(),
            what,
            problem: e.to_string(),
        }),
        Ok(Ok(o)) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            let start = err.len().saturating_sub(4096);
            Err(CommandJobError::Failed {
                job: job.to_owned(),
                what,
                status: format!("{} {}", args.first().map_or("", String::as_str), o.status),
                stderr: err.get(start..).unwrap_or_default().trim().to_owned(),
            })
        }
        Ok(Ok(o)) => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
    }
}

fn job_tag(job: &StackJob) -> String {
    format!("warden-job={}", job.name)
}

/// Backs the job's paths up with restic and records the run.
pub async fn backup(
    jc: &JobCatalog,
    job: &StackJob,
    level: i32,
    member: &str,
) -> Result<JobRecord, CommandJobError> {
    let name = job.name.clone();
    let Some(r) = the_restic(job) else {
        return Err(CommandJobError::Other {
            job: name,
            problem: "not a restic job".into(),
        });
    };
    let started_at = Utc::now();
    // A repository restic cannot open is initialised; any other failure of `init`
    // (it exists but the password is wrong, the backend is down) is reported.
    if run(&name, r, &["cat".into(), "config".into()], SHORT)
        .await
        .is_err()
    {
        run(&name, r, &["init".into()], SHORT).await?;
        tracing::info!(job = %name, "restic repository initialised");
    }
    let mut args = vec!["backup".to_owned(), "--json".to_owned()];
    for t in ["warden".to_owned(), job_tag(job)]
        .into_iter()
        .chain(r.tags.iter().cloned())
    {
        args.push("--tag".into());
        args.push(t);
    }
    for e in &r.exclude {
        args.push("--exclude".into());
        args.push(e.clone());
    }
    args.extend(r.paths.iter().map(|p| p.display().to_string()));
    let out = run(&name, r, &args, job.timeout).await?;
    let summary = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .ok_or_else(|| CommandJobError::Other {
            job: name.clone(),
            problem: "restic backup printed no summary".into(),
        })?;
    let snapshot = summary["snapshot_id"]
        .as_str()
        .ok_or_else(|| CommandJobError::Other {
            job: name.clone(),
            problem: "restic backup's summary has no snapshot_id".into(),
        })?
        .to_owned();
    // Warden's record of the run: the summary, sealed like any job's set.
    let id = super::command::fresh_id(jc, &name, started_at).await?;
    let dir = jc.set_dir(&id);
    let body = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    let (stored_result, stored) =
        crate::rdb::parts::store_named(&jc.catalog, level, &dir, PART_BASE, PART_SIZE, &body[..])
            .await;
    stored_result.map_err(|e| CommandJobError::Other {
        job: name.clone(),
        problem: format!("recording the run: {e}"),
    })?;
    let record = JobRecord {
        format: FORMAT,
        id: id.clone(),
        job: name.clone(),
        kind: "restic".into(),
        member: member.to_owned(),
        started_at,
        finished_at: Utc::now(),
        size: stored.parts.iter().map(|p| p.plain_size).sum(),
        stored_size: stored.parts.iter().map(|p| p.stored_size).sum(),
        compression_level: level,
        parts: stored.parts,
        stderr: String::new(),
        snapshot: Some(snapshot.clone()),
        source_bytes: summary["total_bytes_processed"].as_u64(),
        method: None,
    };
    jc.catalog
        .put_record(&format!("{dir}/{JOB_RECORD}"), &record)
        .await
        .map_err(|e| CommandJobError::Stack {
            job: name.clone(),
            error: Box::new(e.into()),
        })?;
    tracing::info!(job = %name, set = %id, %snapshot, "restic snapshot recorded");
    forget(jc, job, r).await?;
    Ok(record)
}

/// The job's retention through `restic forget --prune` on its tag, then Warden's
/// records of snapshots restic no longer has are deleted.
async fn forget(jc: &JobCatalog, job: &StackJob, r: &ResticJob) -> Result<(), CommandJobError> {
    let name = &job.name;
    let keep = &job.retention;
    if keep.keeps_everything() {
        return Ok(());
    }
    let mut args = vec![
        "forget".to_owned(),
        "--prune".to_owned(),
        "--tag".to_owned(),
        job_tag(job),
    ];
    for (flag, n) in [
        ("--keep-last", keep.keep_last),
        ("--keep-daily", keep.keep_daily),
        ("--keep-weekly", keep.keep_weekly),
        ("--keep-monthly", keep.keep_monthly),
    ] {
        if let Some(n) = n {
            args.push(flag.into());
            args.push(n.to_string());
        }
    }
    run(name, r, &args, job.timeout).await?;
    let listed = run(
        name,
        r,
        &[
            "snapshots".into(),
            "--json".into(),
            "--tag".into(),
            job_tag(job),
        ],
        SHORT,
    )
    .await?;
    let alive: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&listed)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    let stack_err = |e: super::StackError| CommandJobError::Stack {
        job: name.clone(),
        error: Box::new(e),
    };
    for rec in jc.records().await.map_err(stack_err)? {
        // restic's summary names a snapshot by its short id; the listing by its full id.
        if rec
            .snapshot
            .as_ref()
            .is_some_and(|s| !alive.iter().any(|a| a.starts_with(s.as_str())))
        {
            let repo = &jc.catalog.repo;
            let dir = jc.set_dir(&rec.id);
            repo.delete(&format!("{dir}/{JOB_RECORD}"))
                .await
                .map_err(|e| stack_err(e.into()))?;
            for p in &rec.parts {
                repo.delete(&format!("{dir}/{}", p.name))
                    .await
                    .map_err(|e| stack_err(e.into()))?;
            }
            tracing::info!(job = %name, set = %rec.id, "forgotten by restic: record deleted");
        }
    }
    Ok(())
}

/// `restic check --read-data-subset`: restic's own proof that its repository reads.
pub async fn check(job: &StackJob) -> Result<String, CommandJobError> {
    let Some(r) = the_restic(job) else {
        return Ok(String::new());
    };
    run(
        &job.name,
        r,
        &["check".into(), format!("--read-data-subset={CHECK_SUBSET}")],
        job.timeout,
    )
    .await
}

/// `restic restore <snapshot> --target DIR`.
pub async fn restore(
    job: &StackJob,
    record: &JobRecord,
    target: &Path,
) -> Result<u64, CommandJobError> {
    let Some(r) = the_restic(job) else {
        return Ok(0);
    };
    let snapshot = record
        .snapshot
        .clone()
        .ok_or_else(|| CommandJobError::Other {
            job: job.name.clone(),
            problem: format!("set {} names no restic snapshot", record.id),
        })?;
    run(
        &job.name,
        r,
        &[
            "restore".into(),
            snapshot,
            "--target".into(),
            target.display().to_string(),
        ],
        job.timeout,
    )
    .await?;
    Ok(record.source_bytes.unwrap_or(0))
}

fn file_sha256(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// The restic drill: restore into the scratch directory, then each file check.
pub(super) async fn drill_steps(
    jc: &JobCatalog,
    job: &StackJob,
    id: &str,
    scratch: &Path,
    rec: &mut JobDrillRecord,
    t0: Instant,
) -> Result<(), String> {
    let record = jc.record(id).await.map_err(|e| e.to_string())?;
    rec.backup_id = Some(record.id.clone());
    let target = scratch.join("restore");
    restore(job, &record, &target)
        .await
        .map_err(|e| e.to_string())?;
    rec.restore_seconds = Some(t0.elapsed().as_secs_f64());
    let t1 = Instant::now();
    let mut failed = Vec::new();
    for c in &job.drill.checks {
        let Some(p) = &c.path else { continue };
        let file = target.join(p.trim_start_matches('/'));
        let (ok, got) = match file_sha256(&file) {
            Err(e) => (false, format!("{p}: {e}")),
            Ok((size, sum)) => {
                let size_ok = c.size.is_none_or(|s| s == size);
                let sum_ok = c.sha256.as_ref().is_none_or(|s| *s == sum);
                (size_ok && sum_ok, format!("{size} bytes, sha256 {sum}"))
            }
        };
        if !ok {
            failed.push(format!("{} (got {got})", c.name));
        }
        rec.checks.push(CheckResult {
            name: c.name.clone(),
            ok,
            got,
        });
    }
    rec.checks_seconds = Some(t1.elapsed().as_secs_f64());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("check(s) failed: {}", failed.join(", ")))
    }
}
