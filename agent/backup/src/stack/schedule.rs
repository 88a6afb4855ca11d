//! `backup.jobs` on the archiver's cron runner (`jobs::standard`): each job's backup
//! schedule (then its retention prune) and its drill schedule.
//!
//! A failed run is logged, counted in the backup facts (metrics, DR report) and sent
//! to the webhook once (one notification per failed run: the message names the run).

use std::sync::Arc;

use chrono::Utc;

use super::{command, JobCatalog};
use crate::jobs::Job;
use crate::{facts, notify};
use warden_config::{Config, StackJob, StackJobKind};

/// The cron jobs `cfg`'s `backup.jobs` ask for.
pub fn jobs(cfg: &Config) -> Vec<Job> {
    let Some(b) = &cfg.backup else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for job in &b.jobs {
        super::register(&job.name);
        let ctx = Arc::new(Ctx {
            backup: b.clone(),
            scope: cfg.scope.clone(),
            member: cfg.name.clone(),
            job: job.clone(),
        });
        if let Some(schedule) = &job.schedule {
            let ctx = ctx.clone();
            out.push(Job {
                name: format!("job {}", job.name),
                schedule: schedule.clone(),
                run: Arc::new(move || {
                    let ctx = ctx.clone();
                    Box::pin(async move {
                        let _ = run_backup(&ctx).await;
                    })
                }),
            });
        }
        if let Some(schedule) = &job.drill.schedule {
            out.push(Job {
                name: format!("job {} drill", job.name),
                schedule: schedule.clone(),
                run: Arc::new(move || {
                    let ctx = ctx.clone();
                    Box::pin(async move { run_drill(&ctx).await })
                }),
            });
        }
    }
    out
}

struct Ctx {
    backup: warden_config::BackupConfig,
    scope: String,
    member: String,
    job: StackJob,
}

/// One run of `job` (scheduled, or `POST`-less from `wardenctl`): the backup, then
/// its retention prune. Failures are alerted once and counted.
pub async fn run_and_prune(
    backup: &warden_config::BackupConfig,
    scope: &str,
    member: &str,
    job: &StackJob,
) -> anyhow::Result<super::JobRecord> {
    let jc = JobCatalog::open(backup, scope, &job.name)?;
    let result = match &job.kind {
        StackJobKind::Command(_) => command::backup(&jc, job, backup.compression_level, member)
            .await
            .map_err(anyhow::Error::from),
        StackJobKind::Mariadb(_) => {
            super::mariadb::backup(&jc, job, backup.compression_level, member)
                .await
                .map_err(anyhow::Error::from)
        }
        StackJobKind::Restic(_) => {
            super::restic::backup(&jc, job, backup.compression_level, member)
                .await
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(record) => {
            super::note_run(&job.name, Some(&record));
            facts::job_succeeded();
            // restic's retention already ran (`forget --prune`) and took Warden's
            // records along; here only leftovers go.
            let rules = if matches!(job.kind, StackJobKind::Restic(_)) {
                warden_config::Retention::default()
            } else {
                job.retention.clone()
            };
            if let Err(e) = jc.prune(&rules).await {
                tracing::error!(job = %job.name, error = %e, "retention prune after the job failed");
            }
            Ok(record)
        }
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!(job = %job.name, error = %msg, "job run failed");
            super::note_run(&job.name, None);
            facts::job_failed(Utc::now());
            notify::alert(notify::Kind::Job, &msg);
            Err(e)
        }
    }
}

async fn run_backup(ctx: &Ctx) -> anyhow::Result<()> {
    run_and_prune(&ctx.backup, &ctx.scope, &ctx.member, &ctx.job)
        .await
        .map(|_| ())
}

async fn run_drill(ctx: &Ctx) {
    let jc = match JobCatalog::open(&ctx.backup, &ctx.scope, &ctx.job.name) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(job = %ctx.job.name, error = %format!("{e:#}"), "scheduled job drill not started");
            return;
        }
    };
    match command::drill(&jc, &ctx.job, "latest", &ctx.member, None).await {
        Ok(d) => super::note_drill(&ctx.job.name, &d),
        Err(e) => {
            tracing::error!(job = %ctx.job.name, error = %e, "scheduled job drill could not be recorded");
            notify::alert(notify::Kind::Drill, &e.to_string());
        }
    }
}
