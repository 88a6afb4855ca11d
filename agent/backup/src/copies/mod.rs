//! Repository copies (`backup.copies`, 3-2-1): the member holding `warden/archiver`
//! copies every committed object of the cluster from the main repository into each
//! copy, one task per copy, by a periodic listing diff ([`plan`]).
//!
//! Each pass lists both repositories under `<scope>/<sysid>/`, plans what the copy
//! lacks (WAL in order, parts of committed sets, then their records), and copies at
//! most [`PAGE`] objects, each authenticated on the way ([`transfer`]). A transient
//! failure ends the pass (so WAL is never copied past a gap that a retry would fill);
//! the next pass comes after a backoff doubling from [`INTERVAL`] to [`MAX_BACKOFF`].
//! An object that does not authenticate in the main repository is never copied: it
//! is reported (log, webhook, `refused` count) and skipped, with its set's record.
//!
//! Deleting in the main repository deletes nothing in a copy: a copy is pruned by its
//! own retention, by this task, whenever a new backup or dump record reached it.
//!
//! Status per copy (lag, last success, refused objects) is kept process-wide for
//! `/metrics` ([`status`]).

pub mod plan;
pub mod transfer;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use warden_config::{BackupConfig, Retention};

pub use plan::{lag, Lag};

use crate::catalog::Catalog;
use crate::key::EncryptionKey;
use crate::notify::{self, Kind};
use crate::repo::{ObjectInfo, Repository};
use transfer::{Seal, TransferError};

/// Pause between passes while all is well.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// The longest pause after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Objects copied per pass at most (then the next pass starts at once).
pub const PAGE: usize = 100;
/// Failed passes in a row before the copy counts as failing (alert).
const FAILURES_TO_ALERT: u32 = 3;

/// One copy as the copier drives it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub repo: Repository,
    /// The copy's key (the main one unless it has its own).
    pub key: EncryptionKey,
    pub seal: Seal,
    pub retention: Retention,
    pub max_lag: Duration,
    /// Each backup job's retention, applied to its sets in the copy.
    pub jobs: Vec<(String, Retention)>,
}

/// The copies of `backup`, opened (keys loaded). An error names the copy.
pub fn targets(backup: &BackupConfig, main_key: &EncryptionKey) -> anyhow::Result<Vec<Target>> {
    backup
        .copies
        .iter()
        .map(|c| {
            let repo = Repository::open(&c.repository)
                .map_err(|e| anyhow::anyhow!("backup.copies {}: {e}", c.name))?;
            let (key, seal) = match &c.encryption_key_file {
                None => (main_key.clone(), Seal::Verbatim),
                Some(path) => {
                    let k = EncryptionKey::load(Some(path))
                        .map_err(|e| anyhow::anyhow!("backup.copies {}: {e}", c.name))?;
                    (k.clone(), Seal::Reseal(k, backup.compression_level))
                }
            };
            Ok(Target {
                name: c.name.clone(),
                repo,
                key,
                seal,
                retention: c.retention.clone(),
                max_lag: c.max_lag,
                jobs: backup
                    .jobs
                    .iter()
                    .map(|j| (j.name.clone(), j.retention.clone()))
                    .collect(),
            })
        })
        .collect()
}

/// The lag of the copy in `copy` behind `main` (its cluster) now: both listed, then
/// [`lag`]. For `wardenctl backup list` and the DR report.
pub async fn measure(main: &Catalog, copy: &Repository) -> Result<Lag, crate::repo::RepoError> {
    let cluster = main.layout.cluster();
    let (m, c) = tokio::try_join!(list(&main.repo, &cluster), list(copy, &cluster))?;
    Ok(lag(&cluster, &m, &c, Utc::now()))
}

/// Everything a copy holds for `cluster`: its objects and its scope's backup jobs'.
async fn list(repo: &Repository, cluster: &str) -> Result<Vec<ObjectInfo>, crate::repo::RepoError> {
    let (own, jobs) = (
        format!("{cluster}/"),
        format!("{}/", plan::jobs_root(cluster)),
    );
    let (mut objects, jobs) = tokio::try_join!(repo.list(&own), repo.list(&jobs))?;
    objects.extend(jobs);
    Ok(objects)
}

/// What `/metrics` shows of one copy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The last pass's lag (after it copied what it could); `None` before the first.
    pub lag: Option<Lag>,
    /// When the main repository was listed by the last pass that then left nothing
    /// to copy: the copy holds everything the main repository held at that time (a
    /// pass can take a while, and what was committed during it is the next pass's).
    pub last_success: Option<DateTime<Utc>>,
    /// Objects refused so far (they did not authenticate in the main repository).
    pub refused: u64,
    /// Objects copied so far.
    pub copied: u64,
    /// Of the objects the last pass that copied any copied, the longest time one
    /// waited (main repository write → in the copy): the copy's delay in practice.
    pub delay_seconds: Option<f64>,
    /// The last pass failed (listing or copying), with why.
    pub error: Option<String>,
    /// An alert was sent and no recovery notice yet.
    pub alerted: bool,
}

static STATUS: Mutex<BTreeMap<String, Status>> = Mutex::new(BTreeMap::new());

fn with_status<T>(name: &str, f: impl FnOnce(&mut Status) -> T) -> T {
    let mut all = STATUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(all.entry(name.to_owned()).or_default())
}

/// Every copy this process drives, by name.
pub fn status() -> BTreeMap<String, Status> {
    STATUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// The running copier: one task per copy.
#[derive(Debug)]
pub struct Copier {
    stop: watch::Sender<bool>,
    main: Catalog,
}

impl Copier {
    /// Starts one task per target, copying from `main`.
    pub fn start(main: Catalog, targets: Vec<Target>) -> Self {
        let (stop, rx) = watch::channel(false);
        for t in targets {
            tracing::info!(copy = %t.name, to = %t.repo.url(), "starting the repository copier");
            tokio::spawn(run(main.clone(), t, rx.clone()));
        }
        Self { stop, main }
    }

    /// The main repository it copies from (to restart it with a reloaded config).
    pub fn main(&self) -> &Catalog {
        &self.main
    }

    /// Asks the tasks to stop: each ends after the object in flight (bounded by the
    /// repositories' timeouts); a half-copied object is never visible.
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn run(main: Catalog, t: Target, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    // Objects refused (they did not authenticate): reported once, not tried again by
    // this task.
    let mut refused: BTreeSet<String> = BTreeSet::new();
    // The copy's last listing: while the copy cannot be listed, the lag still grows
    // against it.
    let mut known: Vec<ObjectInfo> = Vec::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let outcome = pass(&main, &t, &mut refused, &mut known).await;
        let pause = match &outcome {
            Ok(more) => {
                failures = 0;
                if *more {
                    Duration::ZERO
                } else {
                    INTERVAL
                }
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(copy = %t.name, error = %e, failures, "repository copy pass failed");
                with_status(&t.name, |s| s.error = Some(e.to_string()));
                backoff(failures)
            }
        };
        judge(&t, failures);
        if pause.is_zero() {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    // Another member may copy now: this one stops reporting the copy.
    STATUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&t.name);
    tracing::info!(copy = %t.name, "stopped the repository copier");
}

/// `INTERVAL` doubled per failure in a row after the first, up to `MAX_BACKOFF`.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    (INTERVAL * factor).min(MAX_BACKOFF)
}

/// Alerts once when the copy turns unhealthy (too far behind, or failing), and says
/// once when it has recovered.
fn judge(t: &Target, failures: u32) {
    let (alerted, lag, error) = with_status(&t.name, |s| (s.alerted, s.lag, s.error.clone()));
    let behind = lag.is_some_and(|l| l.seconds > t.max_lag.as_secs_f64());
    let failing = failures >= FAILURES_TO_ALERT;
    match plan::notice(alerted, behind || failing) {
        Some(plan::Notice::Alert) => {
            let why = if failing {
                format!(
                    "failing: {}",
                    error.unwrap_or_else(|| "unknown error".to_owned())
                )
            } else {
                let l = lag.unwrap_or(Lag {
                    objects: 0,
                    bytes: 0,
                    seconds: 0.0,
                    oldest: None,
                });
                format!(
                    "{} object(s) and {:.0} s behind (max_lag {} s)",
                    l.objects,
                    l.seconds,
                    t.max_lag.as_secs()
                )
            };
            let message = format!("repository copy {} ({}) is {why}", t.name, t.repo.url());
            tracing::error!(copy = %t.name, "{message}");
            notify::alert(Kind::Copy, &message);
            with_status(&t.name, |s| s.alerted = true);
        }
        Some(plan::Notice::Recovered) => {
            let message = format!(
                "repository copy {} ({}) has caught up",
                t.name,
                t.repo.url()
            );
            tracing::info!(copy = %t.name, "{message}");
            notify::recovered(Kind::Copy, &message);
            with_status(&t.name, |s| s.alerted = false);
        }
        None => {}
    }
}

/// One pass: list, plan, copy up to a page. `Ok(true)`: more is waiting.
async fn pass(
    main: &Catalog,
    t: &Target,
    refused: &mut BTreeSet<String>,
    known: &mut Vec<ObjectInfo>,
) -> anyhow::Result<bool> {
    let cluster = main.layout.cluster();
    let listed_at = Utc::now();
    let main_list = list(&main.repo, &cluster).await?;
    let copy_list = match list(&t.repo, &cluster).await {
        Ok(l) => l,
        Err(e) => {
            let l = lag(&cluster, &without(&main_list, refused), known, Utc::now());
            with_status(&t.name, |s| s.lag = Some(l));
            return Err(e.into());
        }
    };
    let steps: Vec<plan::Step> = plan::plan(&cluster, &main_list, &copy_list)
        .into_iter()
        .filter(|s| !refused.contains(&s.path))
        .collect();
    let mut held_back: BTreeSet<String> = BTreeSet::new();
    let mut copied = 0usize;
    let mut delay: Option<f64> = None;
    let mut new_record = false;
    // Jobs whose new sets reached the copy: their retention runs there.
    let mut new_job_sets: BTreeSet<String> = BTreeSet::new();
    let newest_copied_record = newest_record(&cluster, &copy_list);
    let mut result: anyhow::Result<()> = Ok(());
    for step in steps.iter().take(PAGE) {
        if step
            .set
            .as_ref()
            .is_some_and(|s| held_back.contains(s.as_str()))
        {
            continue;
        }
        match transfer::copy_object(&main.repo, &main.key, &t.repo, &t.seal, &step.path).await {
            Ok(_) => {
                copied += 1;
                // How long this object waited for the copy.
                let waited = (Utc::now() - step.modified).num_milliseconds().max(0);
                #[allow(clippy::cast_precision_loss)]
                let waited = waited as f64 / 1000.0;
                delay = Some(delay.map_or(waited, |d: f64| d.max(waited)));
                let job = step
                    .set
                    .as_deref()
                    .and_then(|set| set.strip_prefix("jobs/"))
                    .and_then(|rest| rest.split_once('/'))
                    .map(|(job, _)| job.to_owned());
                if let (plan::Class::Record, Some(job)) = (step.class, &job) {
                    new_job_sets.insert(job.clone());
                } else if step.class == plan::Class::Record
                    && newest_copied_record
                        .as_deref()
                        .is_none_or(|n| step.path.as_str() > n)
                {
                    new_record = true;
                }
            }
            Err(TransferError::Corrupt { path, source }) => {
                if let Some(set) = &step.set {
                    held_back.insert(set.clone());
                }
                let message = format!(
                    "not copied to {}: {path} does not authenticate in the main repository ({source})",
                    t.name
                );
                tracing::error!(copy = %t.name, object = %path, error = %source, "refusing to copy an object that does not authenticate");
                notify::alert(Kind::Copy, &message);
                refused.insert(path);
                let n = refused.len() as u64;
                with_status(&t.name, |s| s.refused = n);
            }
            Err(TransferError::Repo(crate::repo::RepoError::NotFound { .. })) => {
                // Deleted from the main repository since the listing (its retention
                // pruned it): nothing to copy, and no failure. Its set is going away,
                // so its record is not copied either.
                if let Some(set) = &step.set {
                    held_back.insert(set.clone());
                }
            }
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    with_status(&t.name, |s| {
        s.copied += copied as u64;
        if delay.is_some() {
            s.delay_seconds = delay;
        }
    });
    if new_record && !t.retention.keeps_everything() {
        prune(main, t).await;
    }
    for job in &new_job_sets {
        prune_job(main, t, job).await;
    }
    for path in plan::retired_live(&cluster, &main_list, &copy_list) {
        // Best effort: a stale live copy is only served when the complete segment is
        // missing, which it is not; the next pass tries again.
        if let Err(e) = t.repo.delete(&path).await {
            tracing::debug!(copy = %t.name, object = %path, error = %e, "could not delete a retired live segment");
        }
    }
    // The lag after this pass: re-list the copy only if something changed.
    let copy_now = if copied > 0 {
        list(&t.repo, &cluster).await?
    } else {
        copy_list
    };
    known.clone_from(&copy_now);
    let now = Utc::now();
    // Refused objects are reported on their own (`refused`), not as lag: they will
    // never be copied, and would otherwise keep the copy "behind" forever.
    let l = lag(&cluster, &without(&main_list, refused), &copy_now, now);
    let more = steps.len() > PAGE && result.is_ok();
    with_status(&t.name, |s| {
        s.lag = Some(l);
        if result.is_ok() {
            s.error = None;
            if l.objects == 0 {
                s.last_success = Some(listed_at);
            }
        }
    });
    result.map(|()| more)
}

fn without(list: &[ObjectInfo], refused: &BTreeSet<String>) -> Vec<ObjectInfo> {
    list.iter()
        .filter(|o| !refused.contains(&o.path))
        .cloned()
        .collect()
}

/// The newest record path of the cluster's own sets already in the copy (records sort
/// by set id; backup jobs' are pruned on their own).
fn newest_record(cluster: &str, copy: &[ObjectInfo]) -> Option<String> {
    copy.iter()
        .filter(|o| o.path.starts_with(&format!("{cluster}/")))
        .filter(|o| matches!(plan::class_of(cluster, &o.path), Some(plan::Class::Record)))
        .map(|o| o.path.clone())
        .max()
}

/// A backup job's retention applied to its sets in the copy, after a new set of the
/// job reached it (the job's own rules: a copy keeps what the main repository keeps).
async fn prune_job(main: &Catalog, t: &Target, job: &str) {
    let Some((_, retention)) = t.jobs.iter().find(|(name, _)| name == job) else {
        // A job no longer configured: its sets stay until an operator deletes them,
        // as in the main repository.
        return;
    };
    if retention.keeps_everything() {
        return;
    }
    let scope = plan::jobs_root(&main.layout.cluster());
    let scope = scope.strip_suffix("/jobs").unwrap_or(&scope);
    let catalog = crate::stack::JobCatalog::new(t.repo.clone(), t.key.clone(), scope, job);
    match tokio::time::timeout(MAX_BACKOFF * 5, catalog.prune(retention)).await {
        Ok(Ok(ids)) if !ids.is_empty() => {
            tracing::info!(copy = %t.name, job = %job, sets = ?ids, "pruned the job's sets in the repository copy by its retention");
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(copy = %t.name, job = %job, error = %e, "retention prune of the job's sets in the repository copy failed; retried after its next set");
        }
        Err(_) => {
            tracing::warn!(copy = %t.name, job = %job, "retention prune of the job's sets in the repository copy timed out")
        }
    }
}

/// The copy's own retention, after a new backup or dump record reached it.
async fn prune(main: &Catalog, t: &Target) {
    let catalog = Catalog {
        repo: t.repo.clone(),
        layout: main.layout.clone(),
        key: t.key.clone(),
    };
    let result = async {
        let plan = crate::prune::plan_prune(
            &catalog,
            &t.retention,
            crate::walchain::DEFAULT_SEGMENT_SIZE,
        )
        .await?;
        crate::prune::execute(&catalog, &plan).await?;
        Ok::<_, anyhow::Error>(crate::prune::Report::of(&plan, false))
    };
    match tokio::time::timeout(MAX_BACKOFF * 5, result).await {
        Ok(Ok(report)) => {
            tracing::info!(copy = %t.name, report = %report.human().trim_end(), "pruned the repository copy by its retention");
        }
        Ok(Err(e)) => {
            tracing::warn!(copy = %t.name, error = %e, "retention prune of the repository copy failed; retried after the next backup");
        }
        Err(_) => {
            tracing::warn!(copy = %t.name, "retention prune of the repository copy timed out")
        }
    }
}
