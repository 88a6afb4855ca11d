//! `--job NAME`: the `backup.jobs` side of `backup create|list|verify`, `drill` and
//! `restore`. wardenctl runs these itself from the config file (`-c`): a job's data is
//! not the PostgreSQL cluster's, so no DCS or archiver is involved; the scheduled runs
//! happen on the archiver (`warden_backup::stack::schedule`).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::args::BackupCommand;
use super::backup::human_bytes;
use super::Ctl;
use warden_backup::stack::{self, command, JobCatalog, JobDrillRecord, JobRecord};
use warden_config::{BackupConfig, StackJob};

impl BackupCommand {
    /// The `--job` of a subcommand that has one.
    pub fn job(&self) -> Option<&str> {
        match self {
            BackupCommand::Create(a) => a.job.as_deref(),
            BackupCommand::List(a) => a.job.as_deref(),
            BackupCommand::Verify(a) => a.job.as_deref(),
            BackupCommand::Delete(_) => None,
        }
    }
}

fn set_summary(r: &JobRecord) -> Value {
    json!({
        "id": r.id,
        "job": r.job,
        "kind": r.kind,
        "member": r.member,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "size": r.size,
        "stored_size": r.stored_size,
        "parts": r.parts.len(),
        "snapshot": r.snapshot,
        "source_bytes": r.source_bytes,
        "method": r.method,
    })
}

fn drill_line(d: &JobDrillRecord) -> String {
    let checks: Vec<String> = d
        .checks
        .iter()
        .map(|c| format!("{} {}", c.name, if c.ok { "ok" } else { "FAILED" }))
        .collect();
    format!(
        "drill {} of {}: {}{}{}",
        d.id,
        d.backup_id.as_deref().unwrap_or("-"),
        if d.ok { "passed" } else { "FAILED" },
        d.rto_seconds
            .map(|s| format!(", RTO {s:.1}s"))
            .unwrap_or_default(),
        if checks.is_empty() {
            d.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        } else {
            format!(
                " ({}){}",
                checks.join(", "),
                d.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        }
    )
}

impl Ctl<'_> {
    /// The job's config and catalog, in the main repository or in the copy `repository`
    /// names (`main` or `None`: the main one).
    fn job_context(
        &self,
        name: &str,
        repository: Option<&str>,
    ) -> Result<(BackupConfig, String, StackJob, JobCatalog)> {
        let backup = self
            .backup_config()?
            .for_repository(repository)
            .map_err(|e| anyhow!("--repository: {e}"))?;
        let scope = self.config.scope_for(None)?;
        let job = stack::find(&backup, name)?.clone();
        let jc = JobCatalog::open(&backup, &scope, name)?;
        Ok((backup, scope, job, jc))
    }

    /// `backup create|list|verify --job NAME`.
    pub async fn backup_job(&mut self, cmd: BackupCommand) -> Result<()> {
        match cmd {
            BackupCommand::Create(a) => {
                let name = a.job.expect("dispatched on --job");
                let (backup, scope, job, _) = self.job_context(&name, None)?;
                let record =
                    stack::schedule::run_and_prune(&backup, &scope, &stack::ctl_member(), &job)
                        .await?;
                if a.json {
                    self.io
                        .println(serde_json::to_string_pretty(&set_summary(&record))?)?;
                } else {
                    self.io.println(format!(
                        "Job {name}: set {} committed: {} ({} stored)",
                        record.id,
                        human_bytes(record.size),
                        human_bytes(record.stored_size)
                    ))?;
                }
                Ok(())
            }
            BackupCommand::List(a) => self.list_job(a).await,
            BackupCommand::Verify(a) => {
                let name = a.job.clone().expect("dispatched on --job");
                let (_, _, job, jc) = self.job_context(&name, a.repository.as_deref())?;
                let sets = match a.id.as_deref() {
                    None => jc.records().await?,
                    Some(id) => vec![jc.record(id).await?],
                };
                let mut results = Vec::new();
                let mut bad = 0;
                for s in &sets {
                    let r = jc.verify(s).await;
                    if r.is_err() {
                        bad += 1;
                    }
                    results.push((s.id.clone(), r));
                }
                if a.json {
                    let v: Vec<Value> = results
                        .iter()
                        .map(|(id, r)| match r {
                            Ok(n) => json!({"id": id, "ok": true, "bytes": n}),
                            Err(e) => json!({"id": id, "ok": false, "error": e.to_string()}),
                        })
                        .collect();
                    self.io.println(serde_json::to_string_pretty(
                        &json!({"job": name, "sets": v}),
                    )?)?;
                } else {
                    for (id, r) in &results {
                        match r {
                            Ok(n) => self
                                .io
                                .println(format!("set {id}: ok ({})", human_bytes(*n)))?,
                            Err(e) => self.io.println(format!("set {id}: FAILED: {e}"))?,
                        }
                    }
                }
                // restic's own repository: its check reads a share of the data back.
                if stack::restic::the_restic_kind(&job) {
                    match stack::restic::check(&job).await {
                        Ok(_) => self.io.println(format!(
                            "restic check --read-data-subset of job {name}'s repository: ok"
                        ))?,
                        Err(e) => {
                            self.io.println(format!("restic check: FAILED: {e}"))?;
                            bad += 1;
                        }
                    }
                }
                if sets.is_empty() {
                    bail!("job {name}: the repository holds no committed set to verify");
                }
                if bad > 0 {
                    bail!(
                        "job {name}: {bad} of {} set(s) failed verification",
                        sets.len()
                    );
                }
                Ok(())
            }
            BackupCommand::Delete(_) => Err(anyhow!("backup delete has no --job")),
        }
    }

    /// `backup list --job NAME`: the job's sets and its last drill.
    async fn list_job(&mut self, a: super::args::BackupListArgs) -> Result<()> {
        let name = a.job.expect("dispatched on --job");
        let (_, _, job, jc) = self.job_context(&name, a.repository.as_deref())?;
        let where_ = jc.catalog.repo.url().to_string();
        let sets = jc
            .records()
            .await
            .with_context(|| format!("reading job {name}'s sets in {where_}"))?;
        let drill = jc.drills().await?.pop();
        if a.json {
            self.io.println(serde_json::to_string_pretty(&json!({
                "job": name,
                "kind": job.kind.name(),
                "repository": where_,
                "location": jc.dir(),
                "sets": sets.iter().map(set_summary).collect::<Vec<_>>(),
                "last_drill": drill,
            }))?)?;
            return Ok(());
        }
        let mut out = format!("Job {name} ({}), {where_} {}/\n", job.kind.name(), jc.dir());
        if sets.is_empty() {
            out.push_str("  no committed set\n");
        }
        for s in &sets {
            out.push_str(&format!(
                "  {}  {:>10}  {:>10} stored  {}\n",
                s.id,
                human_bytes(s.size),
                human_bytes(s.stored_size),
                s.member
            ));
        }
        if let Some(d) = &drill {
            out.push_str(&format!("  last {}\n", drill_line(d)));
        }
        self.io.println(out.trim_end())?;
        Ok(())
    }

    /// `drill --job NAME [--backup ID] [--scratch-dir DIR]`.
    pub async fn drill_job(
        &mut self,
        name: &str,
        backup: Option<&str>,
        scratch: Option<&Path>,
        repository: Option<&str>,
        json_out: bool,
    ) -> Result<()> {
        let (_, _, job, jc) = self.job_context(name, repository)?;
        let record = command::drill(
            &jc,
            &job,
            backup.unwrap_or("latest"),
            &stack::ctl_member(),
            scratch,
        )
        .await?;
        if json_out {
            self.io.println(serde_json::to_string_pretty(&record)?)?;
        } else {
            self.io
                .println(format!("Job {name}: {}", drill_line(&record)))?;
        }
        if !record.ok {
            bail!(
                "the drill failed: {}",
                record.error.as_deref().unwrap_or("unknown error")
            );
        }
        Ok(())
    }

    /// `restore --job NAME --to DIR [--backup ID]`.
    pub async fn restore_job(
        &mut self,
        name: &str,
        backup: &str,
        to: &Path,
        repository: Option<&str>,
        json_out: bool,
    ) -> Result<()> {
        let (_, _, job, jc) = self.job_context(name, repository)?;
        if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
            bail!(
                "--to {}: exists and is not empty; restore into a new directory",
                to.display()
            );
        }
        let record = jc.record(backup).await?;
        let scratch = tempfile::Builder::new()
            .prefix(&format!("warden-restore-{name}-"))
            .tempdir()
            .context("creating a scratch directory")?;
        let to_abs = std::path::absolute(to).unwrap_or_else(|_| to.to_path_buf());
        let n = command::restore(&jc, &job, &record, &to_abs, scratch.path(), &[]).await?;
        let next = stack::mariadb::restore_next_steps(&job, &record, &to_abs);
        if json_out {
            self.io.println(serde_json::to_string_pretty(&json!({
                "job": name, "set": record.id, "method": record.method, "to": to_abs,
                "bytes": n, "next": next,
            }))?)?;
        } else {
            self.io.println(format!(
                "Job {name}: set {} restored into {} ({})",
                record.id,
                to_abs.display(),
                human_bytes(n)
            ))?;
            if let Some(next) = next {
                self.io.println(next)?;
            }
        }
        Ok(())
    }
}

fn retention_words(r: &warden_config::Retention) -> String {
    if r.keeps_everything() {
        return "keep everything (no retention rule)".into();
    }
    [
        ("keep_last", r.keep_last),
        ("keep_daily", r.keep_daily),
        ("keep_weekly", r.keep_weekly),
        ("keep_monthly", r.keep_monthly),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|n| format!("{k} {n}")))
    .collect::<Vec<_>>()
    .join(", ")
}

/// The DR report's rows for `backup.jobs`: one schedule row per job (frequency,
/// retention, location) and its facts (last success, last drill), read from the
/// repository. A job whose catalog cannot be read says so in its facts.
pub(super) async fn dr_rows(
    cfg: &BackupConfig,
    scope: &str,
    repo_url: &str,
) -> (
    Vec<super::dr_report::ScheduleRow>,
    Vec<super::dr_report::Fact>,
) {
    use super::dr_report::{Fact, ScheduleRow};
    let mut rows = Vec::new();
    let mut facts = Vec::new();
    for job in &cfg.jobs {
        let method = match &job.kind {
            warden_config::StackJobKind::Command(c) => {
                format!("command `{}`", c.backup_command.join(" "))
            }
            other => other.name().to_owned(),
        };
        rows.push(ScheduleRow {
            component: format!("job {}", job.name),
            method,
            frequency: job.schedule.as_ref().map_or_else(
                || "on demand (wardenctl backup create --job)".to_owned(),
                |c| format!("cron \"{}\" (UTC)", c.0),
            ) + &job
                .drill
                .schedule
                .as_ref()
                .map(|c| format!("; drill cron \"{}\" (UTC)", c.0))
                .unwrap_or_default(),
            retention: retention_words(&job.retention),
            location: format!("{repo_url} {scope}/jobs/{}/", job.name),
        });
        let read = async {
            let jc = JobCatalog::open(cfg, scope, &job.name)?;
            let sets = jc.records().await?;
            let drills = jc.drills().await?;
            anyhow::Ok((sets, drills))
        };
        match read.await {
            Ok((sets, drills)) => {
                let last = sets.last();
                facts.push(Fact {
                    name: format!("job {} last success", job.name),
                    value: last.map_or_else(
                        || "never".to_owned(),
                        |s| format!("set {} ({})", s.id, human_bytes(s.size)),
                    ),
                    at: last.map(|s| s.finished_at),
                });
                let d = drills.last();
                facts.push(Fact {
                    name: format!("job {} last drill", job.name),
                    value: d.map_or_else(|| "never".to_owned(), drill_line),
                    at: d.map(|d| d.finished_at),
                });
            }
            Err(e) => facts.push(Fact {
                name: format!("job {}", job.name),
                value: format!("unknown: {e:#}"),
                at: None,
            }),
        }
    }
    (rows, facts)
}

/// `backup list`'s overview of `backup.jobs` (main repository only): per job its kind,
/// committed sets, newest set and last drill; JSON and the human lines.
pub(super) async fn jobs_overview(cfg: &BackupConfig, scope: &str) -> (Value, String) {
    let mut list = Vec::new();
    let mut text = String::new();
    if !cfg.jobs.is_empty() {
        text.push_str("Jobs (details: backup list --job NAME):\n");
    }
    for job in &cfg.jobs {
        let read = async {
            let jc = JobCatalog::open(cfg, scope, &job.name)?;
            anyhow::Ok((jc.records().await?, jc.drills().await?.pop()))
        };
        match read.await {
            Ok((sets, drill)) => {
                let newest = sets.last();
                text.push_str(&format!(
                    "  {} ({}): {} set(s), newest {}{}\n",
                    job.name,
                    job.kind.name(),
                    sets.len(),
                    newest.map_or("none", |s| s.id.as_str()),
                    drill
                        .as_ref()
                        .map(|d| format!("; last {}", drill_line(d)))
                        .unwrap_or_default()
                ));
                list.push(json!({
                    "job": job.name,
                    "kind": job.kind.name(),
                    "sets": sets.len(),
                    "newest": newest.map(set_summary),
                    "last_drill": drill,
                }));
            }
            Err(e) => {
                text.push_str(&format!("  {}: cannot read: {e:#}\n", job.name));
                list.push(json!({"job": job.name, "error": format!("{e:#}")}));
            }
        }
    }
    (Value::Array(list), text)
}
