//! `backup.jobs`: backups of the rest of the stack in the same repository, sealed with
//! the same key and codec, listed, verified, pruned and drilled like dumps.
//!
//! Objects (under `<scope>/jobs/<job>/`, beside the PostgreSQL cluster's
//! `<scope>/<system_identifier>/`: a job's data belongs to no PostgreSQL cluster, and
//! must survive a fresh initdb):
//!
//! ```text
//! <id>/stream.<n>    sealed parts of the job's output stream (n = 00000..)
//! <id>/job.json      sealed JobRecord: written LAST, the commit marker
//! drills/<id>.json   sealed JobDrillRecord
//! ```
//!
//! A set is committed only after its parts were read back, authenticated and matched
//! against their digests. Retention and leftovers follow the dump rules
//! (`retention::decide`, incomplete sets older than a day).
//!
//! - [`command`]: `kind: command` (a program's stdout is the backup; restore and drill).
//! - [`restic`]: `kind: restic` (restic's own repository; each run recorded here).
//! - [`mariadb`]: `kind: mariadb`/`mysql` (dumps; drills in a scratch server);
//!   [`mariadb_physical`]: their `method: physical` (`mariadb-backup`).
//! - [`schedule`]: the runs on the archiver, retention, alerts.

pub mod command;
pub mod mariadb;
pub mod mariadb_physical;
pub mod restic;
pub mod schedule;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError, CheckResult, HasFormat, Part};
use crate::key::EncryptionKey;
use crate::layout::Layout;
use crate::parts::{self, PartsReader, Problem};
use crate::repo::{RepoError, Repository};
use warden_config::{BackupConfig, Retention, StackJob};

/// The record that commits a set.
pub const JOB_RECORD: &str = "job.json";
/// Base name of a set's parts (`stream.00000`, ...).
pub const PART_BASE: &str = "stream";
/// Plaintext bytes per part object.
pub const PART_SIZE: u64 = 256 * 1024 * 1024;

/// One committed run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub format: u32,
    pub id: String,
    pub job: String,
    /// `command`, `restic`, `mariadb`, `mysql`.
    pub kind: String,
    /// Who ran it (the member name, or `wardenctl@<host>`).
    pub member: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Plaintext bytes of the stream and bytes stored.
    pub size: u64,
    pub stored_size: u64,
    pub compression_level: i32,
    pub parts: Vec<Part>,
    /// The last lines the backup program wrote on stderr (it succeeded: informational).
    #[serde(default)]
    pub stderr: String,
    /// restic: the snapshot in restic's repository this set records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// restic: bytes of the files backed up (the set itself holds restic's summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_bytes: Option<u64>,
    /// mariadb/mysql: how the stream was made, `dump` (SQL) or `physical` (an
    /// `mbstream` of `mariadb-backup`): restore and drills go by this, not by the job's
    /// current config (its method may have changed since). Absent: a dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl HasFormat for JobRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

/// One drill of a job, committed or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDrillRecord {
    pub format: u32,
    pub id: String,
    pub job: String,
    pub member: String,
    pub backup_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub error: Option<String>,
    /// Fetch + restore command, then start + checks, seconds; their sum is the RTO.
    pub restore_seconds: Option<f64>,
    pub checks_seconds: Option<f64>,
    pub rto_seconds: Option<f64>,
    pub checks: Vec<CheckResult>,
}

impl HasFormat for JobDrillRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("repository: {0}")]
    Repo(String),
    #[error("job {job}: no set \"{id}\" in the repository")]
    NoSuchSet { job: String, id: String },
    #[error("job {job}: the repository holds no committed set")]
    NoSet { job: String },
    #[error("set {id}: {} part problem(s), first {}: {}", .problems.len(), .problems[0].object, .problems[0].problem)]
    Parts { id: String, problems: Vec<Problem> },
    #[error("set {id}: {problem}")]
    Read { id: String, problem: String },
}

impl From<RepoError> for StackError {
    fn from(e: RepoError) -> Self {
        Self::Repo(e.to_string())
    }
}

/// One job's place in the repository.
#[derive(Debug, Clone)]
pub struct JobCatalog {
    /// Repository and key (its layout is not used: jobs live under `<scope>/jobs/`).
    pub catalog: Catalog,
    pub scope: String,
    pub job: String,
}

/// The job `name` of `backup`, or an error listing the names there are.
pub fn find<'a>(backup: &'a BackupConfig, name: &str) -> anyhow::Result<&'a StackJob> {
    backup.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
        let known: Vec<&str> = backup.jobs.iter().map(|j| j.name.as_str()).collect();
        anyhow::anyhow!(
            "no job \"{name}\" in backup.jobs (the config names: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )
    })
}

impl JobCatalog {
    /// Opens the repository and key of `backup` for job `job` of cluster `scope`.
    pub fn open(backup: &BackupConfig, scope: &str, job: &str) -> anyhow::Result<Self> {
        let key = EncryptionKey::load(backup.encryption_key_file.as_deref())?;
        let repo = Repository::open(&backup.repository)?;
        Ok(Self::new(repo, key, scope, job))
    }

    pub fn new(repo: Repository, key: EncryptionKey, scope: &str, job: &str) -> Self {
        Self {
            catalog: Catalog {
                repo,
                layout: Layout::new(scope, 0),
                key,
            },
            scope: scope.to_owned(),
            job: job.to_owned(),
        }
    }

    /// `<scope>/jobs/<job>`.
    pub fn dir(&self) -> String {
        format!("{}/jobs/{}", self.scope, self.job)
    }

    pub fn set_dir(&self, id: &str) -> String {
        format!("{}/{id}", self.dir())
    }

    pub fn drill_path(&self, id: &str) -> String {
        format!("{}/drills/{id}.json", self.dir())
    }

    /// Every committed set, oldest first. An unreadable record is an error.
    pub async fn records(&self) -> Result<Vec<JobRecord>, StackError> {
        let suffix = format!("/{JOB_RECORD}");
        let mut paths: Vec<String> = self
            .catalog
            .repo
            .list(&format!("{}/", self.dir()))
            .await?
            .into_iter()
            .map(|o| o.path)
            .filter(|p| p.ends_with(&suffix))
            .collect();
        paths.sort();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.catalog.get_record(&p).await?);
        }
        Ok(out)
    }

    /// One set by id, or the newest for `latest`.
    pub async fn record(&self, id: &str) -> Result<JobRecord, StackError> {
        if id == "latest" {
            return self
                .records()
                .await?
                .pop()
                .ok_or_else(|| StackError::NoSet {
                    job: self.job.clone(),
                });
        }
        let path = format!("{}/{JOB_RECORD}", self.set_dir(id));
        match self.catalog.get_record(&path).await {
            Err(CatalogError::Repo(RepoError::NotFound { .. })) => Err(StackError::NoSuchSet {
                job: self.job.clone(),
                id: id.to_owned(),
            }),
            other => Ok(other?),
        }
    }

    /// Every drill of this job, oldest first.
    pub async fn drills(&self) -> Result<Vec<JobDrillRecord>, StackError> {
        let mut paths: Vec<String> = self
            .catalog
            .repo
            .list(&format!("{}/drills/", self.dir()))
            .await?
            .into_iter()
            .map(|o| o.path)
            .filter(|p| p.ends_with(".json"))
            .collect();
        paths.sort();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.catalog.get_record(&p).await?);
        }
        Ok(out)
    }

    /// The (object path, record entry) of each part of `record`, in order.
    pub fn part_list(&self, record: &JobRecord) -> Vec<(String, Part)> {
        let dir = self.set_dir(&record.id);
        record
            .parts
            .iter()
            .map(|p| (format!("{dir}/{}", p.name), p.clone()))
            .collect()
    }

    /// Reads every part of `record` back: authenticated, decrypted, digest and sizes
    /// against the record. Returns the plaintext bytes read.
    pub async fn verify(&self, record: &JobRecord) -> Result<u64, StackError> {
        let list = self.part_list(record);
        let rx = parts::download(
            self.catalog.repo.clone(),
            list.iter().map(|(p, _)| p.clone()).collect(),
        );
        let key = self.catalog.key.clone();
        let id = record.id.clone();
        let want = record.size;
        let task = tokio::task::spawn_blocking(move || {
            let mut reader = PartsReader::new(rx, key, list);
            let copied = std::io::copy(&mut reader, &mut std::io::sink());
            if copied.is_err() {
                reader.drain();
            }
            (copied, reader.problems, reader.bytes)
        });
        let (copied, problems, _) = task.await.map_err(|e| StackError::Read {
            id: id.clone(),
            problem: format!("verification task failed: {e}"),
        })?;
        if !problems.is_empty() {
            return Err(StackError::Parts { id, problems });
        }
        let n = copied.map_err(|e| StackError::Read {
            id: id.clone(),
            problem: e.to_string(),
        })?;
        if n != want {
            return Err(StackError::Read {
                id,
                problem: format!("{n} bytes read back, the record says {want}"),
            });
        }
        Ok(n)
    }

    /// Deletes the sets `retention` does not keep (record first, then parts) and
    /// incomplete sets older than a day. Returns the ids deleted.
    pub async fn prune(&self, retention: &Retention) -> Result<Vec<String>, StackError> {
        let records = self.records().await?;
        let objects = self.catalog.repo.list(&format!("{}/", self.dir())).await?;
        let plan = plan_prune(
            retention,
            &records,
            objects.iter().map(|o| o.path.as_str()),
            &self.dir(),
            Utc::now(),
        );
        let repo = &self.catalog.repo;
        for (id, record, objs) in &plan {
            if let Some(r) = record {
                repo.delete(r).await?;
            }
            for o in objs {
                repo.delete(o).await?;
            }
            tracing::info!(job = %self.job, set = %id, "deleted a job's set");
        }
        Ok(plan.into_iter().map(|(id, _, _)| id).collect())
    }
}

/// What a prune deletes: (id, its record if committed, its other objects). Pure.
pub fn plan_prune<'a>(
    retention: &Retention,
    records: &[JobRecord],
    objects: impl Iterator<Item = &'a str>,
    dir: &str,
    now: DateTime<Utc>,
) -> Vec<(String, Option<String>, Vec<String>)> {
    use std::collections::BTreeMap;
    let prefix = format!("{dir}/");
    let mut by_id: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for o in objects {
        if let Some((id, _)) = o.strip_prefix(&prefix).and_then(|r| r.split_once('/')) {
            if id != "drills" {
                by_id.entry(id).or_default().push(o.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    if !retention.keeps_everything() {
        let times: Vec<DateTime<Utc>> = records.iter().map(|r| r.finished_at).collect();
        for (r, d) in records
            .iter()
            .zip(crate::retention::decide(retention, &times))
        {
            if d.keep() {
                continue;
            }
            let record = format!("{prefix}{}/{JOB_RECORD}", r.id);
            let mut objs: Vec<String> = by_id
                .get(r.id.as_str())
                .into_iter()
                .flatten()
                .filter(|p| **p != record)
                .cloned()
                .collect();
            objs.sort();
            out.push((r.id.clone(), Some(record), objs));
        }
    }
    // Leftovers: a directory without a record, older than a running job could be.
    for (id, objs) in &by_id {
        let committed = records.iter().any(|r| r.id == *id);
        let old =
            crate::prune::plan::id_time(id).is_some_and(|t| now - t > crate::prune::LEFTOVER_AGE);
        if !committed && old {
            out.push(((*id).to_owned(), None, objs.clone()));
        }
    }
    out
}

/// What this process saw of each job (the archiver's runs), for the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStatus {
    pub last_success: Option<DateTime<Utc>>,
    pub last_size: u64,
    pub last_failure: Option<DateTime<Utc>>,
    pub failures: u64,
    pub last_drill: Option<DateTime<Utc>>,
    pub last_drill_ok: Option<bool>,
    pub last_rto_seconds: Option<f64>,
}

static STATUS: std::sync::Mutex<std::collections::BTreeMap<String, JobStatus>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn with_status<T>(job: &str, f: impl FnOnce(&mut JobStatus) -> T) -> T {
    let mut m = STATUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(m.entry(job.to_owned()).or_default())
}

/// Every job's status in this process, by name.
pub fn status() -> std::collections::BTreeMap<String, JobStatus> {
    STATUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Makes `job` appear in the metrics before its first run.
pub fn register(job: &str) {
    with_status(job, |_| ());
}

pub(crate) fn note_run(job: &str, ok: Option<&JobRecord>) {
    with_status(job, |s| match ok {
        Some(r) => {
            s.last_success = Some(r.finished_at);
            s.last_size = r.size;
        }
        None => {
            s.last_failure = Some(Utc::now());
            s.failures += 1;
        }
    });
}

pub(crate) fn note_drill(job: &str, d: &JobDrillRecord) {
    with_status(job, |s| {
        s.last_drill = Some(d.finished_at);
        s.last_drill_ok = Some(d.ok);
        s.last_rto_seconds = d.rto_seconds;
    });
}

/// Who runs a job from `wardenctl`: `wardenctl@<host>`.
pub fn ctl_member() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("wardenctl@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::FORMAT;
    use chrono::TimeZone;

    fn rec(id: &str, t: DateTime<Utc>) -> JobRecord {
        JobRecord {
            format: FORMAT,
            id: id.into(),
            job: "j".into(),
            kind: "command".into(),
            member: "m".into(),
            started_at: t,
            finished_at: t,
            size: 1,
            stored_size: 1,
            compression_level: 3,
            parts: vec![],
            stderr: String::new(),
            snapshot: None,
            source_bytes: None,
            method: None,
        }
    }

    #[test]
    fn prune_keeps_by_retention_and_removes_old_leftovers_only() {
        let t = |h| Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap();
        let records = vec![
            rec("20261201T010000Z", t(1)),
            rec("20261201T020000Z", t(2)),
            rec("20261201T030000Z", t(3)),
        ];
        let objects = [
            "s/jobs/j/20261201T010000Z/stream.00000",
            "s/jobs/j/20261201T010000Z/job.json",
            "s/jobs/j/20261201T020000Z/stream.00000",
            "s/jobs/j/20261201T020000Z/job.json",
            "s/jobs/j/20261201T030000Z/stream.00000",
            "s/jobs/j/20261201T030000Z/job.json",
            // Incomplete: old, and young (maybe still running).
            "s/jobs/j/20261130T000000Z/stream.00000",
            "s/jobs/j/20261201T035900Z/stream.00000",
            "s/jobs/j/drills/20261201T040000Z.json",
        ];
        let retention = Retention {
            keep_last: Some(2),
            ..Retention::default()
        };
        let now = t(4);
        let plan = plan_prune(&retention, &records, objects.into_iter(), "s/jobs/j", now);
        let ids: Vec<&str> = plan.iter().map(|(i, _, _)| i.as_str()).collect();
        assert_eq!(ids, ["20261201T010000Z", "20261130T000000Z"]);
        assert_eq!(
            plan[0].1.as_deref(),
            Some("s/jobs/j/20261201T010000Z/job.json")
        );
        assert_eq!(plan[0].2, ["s/jobs/j/20261201T010000Z/stream.00000"]);
        assert_eq!(plan[1].1, None);
        // No rule: no committed set is deleted, leftovers still are.
        let plan = plan_prune(
            &Retention::default(),
            &records,
            objects.into_iter(),
            "s/jobs/j",
            now,
        );
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].0, "20261130T000000Z");
    }
}
