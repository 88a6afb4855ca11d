//! Scheduled backup jobs, run by the member holding the archiver key.
//!
//! A job is a name, a cron schedule (UTC) and a function. [`Runner::start`] runs one
//! task per job: sleep until the next occurrence, run the job, repeat. The agent starts
//! the runner when it takes the archiver key and stops it when it loses the key (the
//! base backup in flight is cancelled separately, through its `Service`).
//!
//! To add a job (dumps, drills), push another [`Job`] in [`standard`]; a Redis
//! member's jobs (RDB snapshots, RDB drills) are [`redis`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::base::{Service, StartError};
use super::catalog::Catalog;
use warden_config::{Config, CronSchedule, Retention};

pub type JobFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
pub type JobFn = Arc<dyn Fn() -> JobFuture + Send + Sync>;

/// One scheduled job.
#[derive(Clone)]
pub struct Job {
    pub name: String,
    pub schedule: CronSchedule,
    pub run: JobFn,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// The jobs `cfg` asks for: the base backup schedule, the logical dump schedule,
/// `backup.jobs` (the rest of the stack).
pub fn standard(cfg: &Config, backups: &Arc<Service>) -> Vec<Job> {
    let mut jobs = Vec::new();
    let Some(b) = &cfg.backup else {
        return jobs;
    };
    let retention = Arc::new(b.retention.clone());
    if let Some(schedule) = &b.schedule {
        let service = backups.clone();
        let retention = retention.clone();
        jobs.push(Job {
            name: "base backup".into(),
            schedule: schedule.clone(),
            run: Arc::new(move || {
                let service = service.clone();
                let retention = retention.clone();
                Box::pin(async move { scheduled_backup(&service, &retention).await })
            }),
        });
    }
    jobs.extend(super::stack::schedule::jobs(cfg));
    if let Some(dump) = &b.dump {
        let service = backups.clone();
        jobs.push(Job {
            name: "logical dump".into(),
            schedule: dump.schedule.clone(),
            run: Arc::new(move || {
                let service = service.clone();
                let retention = retention.clone();
                Box::pin(async move { scheduled_dump(&service, retention).await })
            }),
        });
    }
    jobs
}

/// The jobs a Redis member's `cfg` asks for, run by the member holding the snapshot
/// role: `backup.schedule` takes an RDB snapshot (then the retention prune), and
/// `backup.drill.schedule` runs the RDB drill of the newest snapshot.
pub fn redis(cfg: &Config, service: &Arc<super::rdb::service::RdbService>) -> Vec<Job> {
    let mut jobs = Vec::new();
    let Some(b) = &cfg.backup else {
        return jobs;
    };
    jobs.extend(super::stack::schedule::jobs(cfg));
    if let Some(schedule) = &b.schedule {
        let service = service.clone();
        let retention = Arc::new(b.retention.clone());
        jobs.push(Job {
            name: "RDB snapshot".into(),
            schedule: schedule.clone(),
            run: Arc::new(move || {
                let service = service.clone();
                let retention = retention.clone();
                Box::pin(async move { scheduled_rdb(&service, &retention).await })
            }),
        });
    }
    if let Some(schedule) = &b.drill.schedule {
        let service = service.clone();
        let opts = super::rdb::source::drill_options(cfg, None);
        jobs.push(Job {
            name: "RDB restore drill".into(),
            schedule: schedule.clone(),
            run: Arc::new(move || {
                let service = service.clone();
                let opts = opts.as_ref().map_err(|e| format!("{e:#}")).cloned();
                Box::pin(async move {
                    let Some(catalog) = service.catalog() else {
                        tracing::error!("scheduled RDB drill not started: the cluster identity is not known yet");
                        return;
                    };
                    match opts {
                        Ok(opts) => {
                            if let Err(e) = super::rdb::drill::run(&catalog, &opts).await {
                                tracing::error!(error = %format!("{e:#}"), "scheduled RDB drill");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "scheduled RDB drill not started"),
                    }
                })
            }),
        });
    }
    jobs
}

/// One scheduled RDB snapshot: skipped while another one runs; then the retention
/// prune.
async fn scheduled_rdb(service: &Arc<super::rdb::service::RdbService>, retention: &Retention) {
    use super::rdb::service::StartError as RdbStart;
    match service.start("schedule") {
        Ok((_, handle)) => {
            if let (Ok(Ok(_)), Some(catalog)) = (handle.await, service.catalog()) {
                prune_after(catalog, retention).await;
            }
        }
        Err(RdbStart::Busy(id) | RdbStart::SameSecond(id)) => {
            tracing::warn!(
                running = id,
                "scheduled RDB snapshot skipped: one is running"
            );
        }
        Err(e) => tracing::error!(error = %e, "scheduled RDB snapshot not started"),
    }
}

/// After a scheduled job committed: the retention prune (`backup.retention` set is
/// the confirmation; no rule, no prune). Errors are logged: the next run retries.
async fn prune_after(catalog: Catalog, retention: &Retention) {
    if let Err(e) = super::prune::after_backup(&catalog, retention).await {
        tracing::error!(error = %format!("{e:#}"), "retention prune after the scheduled job failed");
    }
}

/// One scheduled logical dump: skipped while another one runs.
async fn scheduled_dump(service: &Arc<Service>, retention: Arc<Retention>) {
    let job = match service.dump_job() {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "scheduled dump not started");
            return;
        }
    };
    let catalog = job.catalog.clone();
    let after = move |_| async move { prune_after(catalog, &retention).await };
    match super::dump::run::start(job, "schedule", after) {
        Ok((_, handle)) => {
            let _ = handle.await;
        }
        Err(running) => tracing::warn!(running, "scheduled dump skipped: one is running"),
    }
}

/// One scheduled base backup: skipped (not queued) while another one runs; then the
/// retention prune.
async fn scheduled_backup(service: &Arc<Service>, retention: &Retention) {
    match service.start("schedule").await {
        Ok((_, handle)) => {
            // The outcome is logged and kept in the progress by the service.
            if let Ok(Ok(record)) = handle.await {
                if let Ok(catalog) = service.catalog_for(record.system_identifier) {
                    prune_after(catalog, retention).await;
                }
            }
        }
        Err(StartError::Busy(id)) => {
            tracing::warn!(
                running = id,
                "scheduled base backup skipped: one is running"
            );
        }
        Err(e) => tracing::error!(error = %e, "scheduled base backup not started"),
    }
}

/// The next time `schedule` fires strictly after `after`.
pub fn next_after(schedule: &CronSchedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.cron().find_next_occurrence(&after, false).ok()
}

/// Running job tasks. Dropping it leaves them running: call [`Runner::stop`].
#[derive(Debug)]
pub struct Runner {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Runner {
    pub fn start(jobs: Vec<Job>) -> Self {
        let cancel = CancellationToken::new();
        let tasks = jobs
            .into_iter()
            .map(|job| tokio::spawn(run_job(job, cancel.clone())))
            .collect();
        Self { cancel, tasks }
    }

    /// Stops scheduling at once; a job in progress is dropped at its next await
    /// (work that must clean up runs in its own task, like the base backup).
    pub fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            t.abort();
        }
    }

    /// [`Runner::stop`], then waits until every job task has ended: after it returns,
    /// nothing of this runner can fire.
    pub async fn stop_and_wait(self) {
        self.cancel.cancel();
        for t in self.tasks {
            t.abort();
            // An aborted task ends at its next await; Err is the cancellation itself.
            let _ = t.await;
        }
    }
}

async fn run_job(job: Job, cancel: CancellationToken) {
    let mut after = Utc::now();
    loop {
        let Some(next) = next_after(&job.schedule, after) else {
            tracing::warn!(
                job = job.name,
                schedule = job.schedule.0,
                "the schedule never fires again"
            );
            return;
        };
        tracing::debug!(job = job.name, %next, "next run");
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return,
        }
        tracing::info!(job = job.name, "scheduled job starting");
        tokio::select! {
            () = (job.run)() => {}
            () = cancel.cancelled() => return,
        }
        // A job that ran past later occurrences does not run again for each of them.
        after = next.max(Utc::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn next_occurrence_in_utc() {
        let s: CronSchedule = "15 3 * * *".parse().unwrap();
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 3, 15, 0).unwrap();
        assert_eq!(
            next_after(&s, t),
            Some(Utc.with_ymd_and_hms(2026, 12, 3, 3, 15, 0).unwrap()),
            "strictly after"
        );
        let s: CronSchedule = "*/5 * * * * *".parse().unwrap();
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 3, 15, 1).unwrap();
        assert_eq!(
            next_after(&s, t),
            Some(Utc.with_ymd_and_hms(2026, 12, 2, 3, 15, 5).unwrap())
        );
    }

    #[tokio::test]
    async fn a_job_runs_on_schedule_and_stops_with_the_runner() {
        let count = Arc::new(AtomicU32::new(0));
        let c = count.clone();
        let job = Job {
            name: "tick".into(),
            schedule: "* * * * * *".parse().unwrap(),
            run: Arc::new(move || {
                let c = c.clone();
                Box::pin(async move {
                    c.fetch_add(1, Ordering::SeqCst);
                })
            }),
        };
        let runner = Runner::start(vec![job]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the job did not fire twice"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::timeout(Duration::from_secs(10), runner.stop_and_wait())
            .await
            .expect("the job tasks end once the runner is stopped");
        // Every job task has ended: whatever the count is now, it stays.
        let stopped_at = count.load(Ordering::SeqCst);
        tokio::task::yield_now().await;
        assert_eq!(count.load(Ordering::SeqCst), stopped_at);
    }
}
