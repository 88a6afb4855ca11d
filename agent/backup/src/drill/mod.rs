//! Restore drills: prove the latest backup (or a named one) restores and serves.
//!
//! 1. Restore it into a scratch directory (`scratch`), with no recovery target, so
//!    PostgreSQL replays every archived WAL file, then promotes.
//! 2. Start PostgreSQL there on a free loopback port (`archive_mode=off`, no unix
//!    socket, no upstream: `primary_conninfo` is blanked by the restore) and wait until
//!    recovery ended (bounded by `backup.drill.timeout`). Settings such as
//!    `max_wal_senders` keep the source's values: recovery refuses lower ones.
//! 3. Run `backup.drill.checks` (`checks`): the first column of the first row, as
//!    text, must equal `expect`.
//! 4. Read the newest heartbeat (`warden.heartbeat`): RPO = drill start − that.
//!    RTO = fetch (restore) + replay + checks, each measured.
//! 5. Write a [`DrillRecord`] to the catalog, ok or failed with the error; stop the
//!    server and remove the directory on every path.

pub mod checks;
pub mod scratch;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};

use crate::catalog::{id_at, Catalog, DrillRecord, FORMAT};
use crate::heartbeat;
use crate::jobs::Job;
use crate::restore::{self, Recovery, Target};
use warden_config::{Config, DrillCheck, DrillConfig};

/// What a drill needs besides the catalog.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// Backup id, or `None` for the newest.
    pub backup: Option<String>,
    /// The member running it (recorded).
    pub member: String,
    /// PostgreSQL's binaries.
    pub bin_dir: PathBuf,
    /// `restore_command` for the restored copy.
    pub restore_command: String,
    pub checks: Vec<DrillCheck>,
    pub timeout: Duration,
    /// Superuser name and password for the checks (the restored copy has the source's
    /// roles and `pg_hba.conf`).
    pub user: String,
    pub password: Option<String>,
    /// Where the scratch directory goes (`None`: the system's temp dir).
    pub scratch_parent: Option<PathBuf>,
}

impl DrillOptions {
    /// The settings of `cfg` (which must have a backup section); `config_path` is the
    /// file `restore_command` hands to `warden wal-fetch`.
    /// A drill of a PostgreSQL backup; a Redis member's config is refused (its drills
    /// are the RDB drills).
    pub fn from_config(
        cfg: &Config,
        config_path: &Path,
        backup: Option<String>,
    ) -> anyhow::Result<Self> {
        let pg = cfg
            .require_postgresql("a PostgreSQL drill")
            .map_err(anyhow::Error::msg)?;
        let drill = cfg
            .backup
            .as_ref()
            .map(|b| b.drill.clone())
            .unwrap_or(DrillConfig {
                schedule: None,
                checks: Vec::new(),
                timeout: Duration::from_secs(3600),
            });
        let su = &pg.authentication.superuser;
        Ok(DrillOptions {
            backup,
            member: cfg.name.clone(),
            bin_dir: pg.bin_dir.clone().unwrap_or_default(),
            restore_command: restore::recovery::restore_command(
                &restore::source::warden_binary(),
                config_path,
            ),
            checks: drill.checks,
            timeout: drill.timeout,
            user: su.username.clone(),
            password: su.password.clone(),
            scratch_parent: None,
        })
    }
}

/// A scheduled drill (`backup.drill.schedule`), run by the member holding the
/// archiver key: the newest backup, the result logged and recorded.
pub async fn scheduled(cfg: std::sync::Arc<Config>, config_path: PathBuf) {
    let catalog = match restore::source::catalog(&cfg, None, None).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "scheduled drill not started");
            return;
        }
    };
    let opts = match DrillOptions::from_config(&cfg, &config_path, None) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "scheduled drill not started");
            return;
        }
    };
    if let Err(e) = run(&catalog, &opts).await {
        tracing::error!(error = %format!("{e:#}"), "scheduled drill");
    }
}

/// The scheduled drill job for the jobs runner, when `backup.drill.schedule` is set.
/// `config_path`: the agent's config file, for the restored copy's `restore_command`.
pub fn job(cfg: &std::sync::Arc<Config>, config_path: Option<&Path>) -> Option<Job> {
    let schedule = cfg.backup.as_ref()?.drill.schedule.clone()?;
    let Some(path) = config_path.and_then(|p| std::fs::canonicalize(p).ok()) else {
        tracing::warn!(
            "backup.drill.schedule is set but the config file path is unknown: no scheduled drills"
        );
        return None;
    };
    let cfg = cfg.clone();
    Some(Job {
        name: "restore drill".into(),
        schedule,
        run: std::sync::Arc::new(move || Box::pin(scheduled(cfg.clone(), path.clone()))),
    })
}

/// Runs one drill and records its result in the catalog. `Err` only when the record
/// itself cannot be written; a failed drill is `Ok` with `ok == false`.
pub async fn run(catalog: &Catalog, opts: &DrillOptions) -> Result<DrillRecord> {
    let mut record = new_record(opts.member.clone(), opts.backup.clone());
    let mut scratch = None;
    let outcome = tokio::time::timeout(
        opts.timeout,
        drill(catalog, opts, &mut record, &mut scratch),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow!("the drill timed out after {:?}", opts.timeout)));
    // Clean up before recording: the record says whether the cleanup worked too.
    // Stopping PostgreSQL waits (bounded): not on the async workers.
    let cleaned = match scratch.take() {
        Some(mut s) => tokio::task::spawn_blocking(move || s.cleanup())
            .await
            .unwrap_or_else(|e| Err(anyhow!("drill cleanup: {e}"))),
        None => Ok(()),
    };
    finish(catalog, record, outcome.and(cleaned), "restore drill").await
}

/// A drill's record as it starts: nothing measured yet, not ok.
pub(crate) fn new_record(member: String, backup_id: Option<String>) -> DrillRecord {
    let started_at = Utc::now();
    DrillRecord {
        format: FORMAT,
        id: id_at(started_at),
        member,
        backup_id,
        started_at,
        finished_at: started_at,
        ok: false,
        error: None,
        fetch_seconds: None,
        replay_seconds: None,
        checks_seconds: None,
        rto_seconds: None,
        restored_heartbeat: None,
        rpo_seconds: None,
        checks: Vec::new(),
    }
}

/// Completes a drill's record with its outcome (RTO = fetch + replay + checks when
/// all three were measured), logs it, alerts on failure and writes it to the catalog.
/// `Err` only when the record cannot be written. `what` names the drill in the log.
pub(crate) async fn finish(
    catalog: &Catalog,
    mut record: DrillRecord,
    result: Result<()>,
    what: &str,
) -> Result<DrillRecord> {
    record.ok = result.is_ok();
    record.error = result.err().map(|e| format!("{e:#}"));
    record.finished_at = Utc::now();
    if let (Some(f), Some(r), Some(c)) = (
        record.fetch_seconds,
        record.replay_seconds,
        record.checks_seconds,
    ) {
        record.rto_seconds = Some(f + r + c);
    }
    match &record.error {
        None => {
            tracing::info!(id = %record.id, rto = ?record.rto_seconds, rpo = ?record.rpo_seconds, "{what} passed")
        }
        Some(e) => {
            tracing::error!(id = %record.id, error = %e, "{what} failed");
            // Only where the agent installed the webhook; `wardenctl drill` reports
            // through its exit code.
            crate::notify::alert(
                crate::notify::Kind::Drill,
                &format!("drill {}: {e}", record.id),
            );
        }
    }
    catalog
        .put_record(&catalog.drill_path(&record.id), &record)
        .await
        .map_err(|e| anyhow!("recording the drill result: {e}"))?;
    Ok(record)
}

async fn drill(
    catalog: &Catalog,
    opts: &DrillOptions,
    record: &mut DrillRecord,
    slot: &mut Option<scratch::Scratch>,
) -> Result<()> {
    let backup = catalog
        .backup(opts.backup.as_deref().unwrap_or("latest"))
        .await?;
    record.backup_id = Some(backup.id.clone());
    let scratch = slot.insert(scratch::Scratch::create(opts.scratch_parent.as_deref())?);
    let data = scratch.data_dir();
    let recovery = Recovery {
        target: Target::Latest,
        restore_command: opts.restore_command.clone(),
        action: "promote",
        archive_off: true,
        standby: false,
    };
    let report = restore::restore(catalog, &backup, &data, &recovery).await?;
    record.fetch_seconds = Some(report.total_seconds);
    scratch.run_as = restore::owner_for(&data)?;

    let replay_started = Instant::now();
    scratch.start(&opts.bin_dir)?;
    let port = scratch.port;
    let conn = |db: &str| {
        let mut s = format!(
            "host=127.0.0.1 port={} user='{}' dbname='{}' connect_timeout=3 application_name=warden-drill",
            port,
            opts.user.replace('\'', "\\'"),
            db.replace('\'', "\\'")
        );
        if let Some(p) = &opts.password {
            s.push_str(&format!(
                " password='{}'",
                p.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
        s
    };
    // Recovery ends with a promotion: poll until the server is out of recovery.
    loop {
        scratch.check_alive()?;
        if let Ok(v) =
            checks::first_value(&conn("postgres"), "SELECT pg_is_in_recovery()::text").await
        {
            if v.as_deref() == Some("false") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    record.replay_seconds = Some(replay_started.elapsed().as_secs_f64());
    // The archive a drill replays keeps growing while it runs (the archiver uploads the
    // live segment every second), so the RPO is measured against the moment replay
    // ended — what the repository held then — not the drill's start: a heartbeat
    // written during the fetch is in the restored copy.
    let recovered_at = Utc::now();

    let checks_started = Instant::now();
    record.checks = checks::run(&opts.checks, conn).await;
    if let Ok(Some(ts)) = checks::first_value(&conn("postgres"), heartbeat::NEWEST).await {
        if let Ok(t) = DateTime::parse_from_rfc3339(&ts) {
            let t = t.with_timezone(&Utc);
            record.restored_heartbeat = Some(t);
            record.rpo_seconds =
                Some((recovered_at - t).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
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

/// A drill result in a few lines, for `wardenctl drill`.
pub fn render(r: &DrillRecord) -> String {
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{s:.2} s"));
    let mut out = format!(
        "Drill {} of backup {}: {}\n",
        r.id,
        r.backup_id.as_deref().unwrap_or("-"),
        if r.ok { "OK" } else { "FAILED" }
    );
    if let Some(e) = &r.error {
        out.push_str(&format!("  error: {e}\n"));
    }
    out.push_str(&format!(
        "  RTO {} = fetch {} + replay {} + checks {}\n",
        secs(r.rto_seconds),
        secs(r.fetch_seconds),
        secs(r.replay_seconds),
        secs(r.checks_seconds)
    ));
    match (r.rpo_seconds, r.restored_heartbeat) {
        (Some(rpo), Some(t)) => out.push_str(&format!(
            "  RPO {rpo:.2} s (newest heartbeat in the restored copy: {})\n",
            t.to_rfc3339()
        )),
        _ => out.push_str("  RPO unknown (no heartbeat in the restored copy)\n"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_job_only_with_a_schedule_and_a_config_file() {
        let yaml = "scope: demo\nname: n1\nrestapi: {listen: 127.0.0.1:8008}\n\
                    etcd3: {host: 127.0.0.1:2379}\npostgresql:\n  listen: 127.0.0.1:5432\n  \
                    data_dir: /nonexistent/d\n  authentication:\n    superuser: {username: p}\n    \
                    replication: {username: r}\nbackup:\n  repository: {type: filesystem, path: /r}\n";
        let parse = |text: &str| {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), text).unwrap();
            warden_config::load(f.path()).unwrap().config
        };
        let plain = parse(yaml);
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(job(&std::sync::Arc::new(plain), Some(file.path())).is_none());
        let scheduled = format!("{yaml}  drill: {{schedule: \"0 5 * * 0\"}}\n");
        let cfg = std::sync::Arc::new(parse(&scheduled));
        assert!(
            job(&cfg, None).is_none(),
            "no config path, no restore_command"
        );
        let j = job(&cfg, Some(file.path())).unwrap();
        assert_eq!(j.name, "restore drill");
        assert_eq!(j.schedule.0, "0 5 * * 0");
    }
}
