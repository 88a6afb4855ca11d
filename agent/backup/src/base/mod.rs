//! Base backups (issue 6): taken by the archiver member from its own PostgreSQL.
//!
//! - `take`: one backup — pg_basebackup's tar stream sealed in parts into the
//!   repository, the manifest, the WAL wait, the record last.
//! - `parts`: cutting the stream into sealed parts and uploading them (bounded memory).
//! - `tar_stream`: the manifest and backup_label, read as the stream passes.
//! - `filesums`: what restored and verified files must match (the manifest's
//!   checksums, or an older record's SHA-256 list).
//! - `wal_range`: the segments a backup needs, from its manifest.
//! - `progress`: what is running, shared with `GET /backup`.
//!
//! [`Service`] is the one entry point: the REST API and the scheduler (`jobs`) both
//! start backups through it, so at most one runs on a member.

pub mod files;
pub mod filesums;
pub mod lowlevel;
pub mod pages;
pub mod parts;
pub mod progress;
pub mod take;
pub mod tar_stream;
pub mod wal_range;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::catalog::{self, BackupRecord, Catalog};
use super::key::EncryptionKey;
use super::layout::Layout;
use super::repo::Repository;
pub use progress::{Progress, Snapshot};
pub use take::{BaseError, Target};
use warden_config::Config;
use warden_pg::process::Programs;
use warden_pg::Settings;

/// Something to run after each committed backup (retention, say). Errors are its own
/// to log.
pub type AfterBackup =
    Arc<dyn Fn(BackupRecord) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Why a backup could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("backup {0} is already running on this member")]
    Busy(String),
    #[error("{0}")]
    Setup(String),
}

/// What a backup needs from the daemon's latest view of the cluster. A trait rather
/// than the daemon's state, so that backups do not depend on the daemon.
pub trait View: Send + Sync + std::fmt::Debug {
    /// This cluster's system identifier, once the loop has read it.
    fn system_identifier(&self) -> Option<u64>;
    /// Where the primary accepts SQL (host, port): a backup on a replica asks the
    /// primary to switch WAL.
    fn leader_address(&self) -> Option<(String, u16)>;
}

/// Starts, tracks and cancels this member's base backups.
pub struct Service {
    /// Replaced on reload (`set_config`).
    cfg: Mutex<Arc<Config>>,
    settings: Settings,
    programs: Programs,
    view: Arc<dyn View>,
    progress: Progress,
    /// Cancels the running backup.
    running: Mutex<Option<CancellationToken>>,
    after: Mutex<Vec<AfterBackup>>,
    /// Plaintext bytes per part.
    part_size: u64,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// The repository, key and layout for `cfg`'s cluster, once its system identifier is
/// known.
pub fn open_catalog(cfg: &Config, system_identifier: u64) -> anyhow::Result<Catalog> {
    let backup = cfg
        .backup
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no backup section in the configuration"))?;
    Ok(Catalog {
        repo: Repository::open(&backup.repository)?,
        layout: Layout::new(&cfg.scope, system_identifier),
        key: EncryptionKey::load(backup.encryption_key_file.as_deref())?,
    })
}

impl Service {
    pub fn new(
        cfg: Arc<Config>,
        settings: Settings,
        programs: Programs,
        view: Arc<dyn View>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg: Mutex::new(cfg),
            settings,
            programs,
            view,
            progress: Progress::default(),
            running: Mutex::new(None),
            after: Mutex::new(Vec::new()),
            part_size: parts::PART_SIZE,
        })
    }

    /// The configuration after a reload; the next backup uses it.
    pub fn set_config(&self, cfg: Arc<Config>) {
        *self
            .cfg
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cfg;
    }

    fn config(&self) -> Arc<Config> {
        self.cfg
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs `hook` after every committed backup, in the order added.
    pub fn after_backup(&self, hook: AfterBackup) {
        self.after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }

    pub fn progress(&self) -> Snapshot {
        self.progress.snapshot()
    }

    /// Cancels the running backup, if any (it cleans up after itself).
    pub fn cancel_running(&self) {
        if let Some(token) = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            tracing::info!("cancelling the running base backup");
            token.cancel();
        }
    }

    fn target(&self) -> Result<Target, StartError> {
        let cfg = self.config();
        let backup = cfg
            .backup
            .as_ref()
            .ok_or_else(|| StartError::Setup("no backup section in the configuration".into()))?;
        let sysid: u64 = self
            .view
            .system_identifier()
            .ok_or_else(|| StartError::Setup("the system identifier is not known yet".into()))?;
        let catalog = open_catalog(&cfg, sysid).map_err(|e| StartError::Setup(format!("{e:#}")))?;
        Ok(Target {
            catalog,
            system_identifier: sysid,
            compression_level: backup.compression_level,
            wal_wait_timeout: backup.wal_wait_timeout,
            member: cfg.name.clone(),
            settings: self.settings.clone(),
            programs: self.programs.clone(),
            view: self.view.clone(),
            part_size: self.part_size,
            method: backup.base_method,
        })
    }

    /// The catalog of this member's cluster.
    pub fn catalog_for(&self, system_identifier: u64) -> anyhow::Result<Catalog> {
        open_catalog(&self.config(), system_identifier)
    }

    /// A logical dump job against this member's PostgreSQL (`backup.dump`).
    pub fn dump_job(&self) -> Result<super::dump::DumpJob, StartError> {
        let t = self.target()?;
        let databases = self
            .config()
            .backup
            .as_ref()
            .and_then(|b| b.dump.as_ref())
            .map(|d| d.databases.clone())
            .unwrap_or_default();
        Ok(super::dump::DumpJob {
            catalog: t.catalog,
            programs: t.programs,
            settings: t.settings,
            compression_level: t.compression_level,
            databases,
            member: t.member,
            system_identifier: t.system_identifier,
        })
    }

    /// A fresh id: the start time, never the same as the previous backup's.
    async fn new_id(&self) -> String {
        let last = self.progress.snapshot().last.map(|o| o.id);
        for _ in 0..30 {
            let id = catalog::id_at(chrono::Utc::now());
            if last.as_deref() != Some(id.as_str()) {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        catalog::id_at(chrono::Utc::now() + chrono::Duration::seconds(1))
    }

    /// Starts a backup in the background; `trigger` says who asked (`api`,
    /// `schedule`). Returns its id and a handle to its result.
    pub async fn start(
        self: &Arc<Self>,
        trigger: &str,
    ) -> Result<(String, JoinHandle<Result<BackupRecord, String>>), StartError> {
        let target = self.target()?;
        let id = self.new_id().await;
        self.progress
            .begin(&id, trigger)
            .map_err(StartError::Busy)?;
        let token = CancellationToken::new();
        *self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.clone());
        tracing::info!(id, trigger, "base backup started");
        let me = self.clone();
        let job_id = id.clone();
        let handle = tokio::spawn(async move {
            let result = take::take(&target, &job_id, &me.progress, &token).await;
            *me.running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            match result {
                Ok(record) => {
                    let out = me.progress.end(None);
                    tracing::info!(
                        id = job_id,
                        bytes = record.size,
                        stored = record.stored_size,
                        seconds = out.as_ref().map(|o| o.seconds),
                        mb_per_s = out.as_ref().map(|o| o.mb_per_s),
                        "base backup committed"
                    );
                    // The metrics' catalog snapshot is re-read now, not in a minute.
                    crate::facts::job_succeeded();
                    let hooks: Vec<AfterBackup> = me
                        .after
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    for hook in hooks {
                        hook(record.clone()).await;
                    }
                    Ok(record)
                }
                Err(e) => {
                    let msg = e.to_string();
                    let cancelled = matches!(e, BaseError::Cancelled);
                    tracing::error!(id = job_id, error = %msg, "base backup failed");
                    me.progress.end(Some(msg.clone()));
                    // A cancel (the archiver role moved, the agent stops) is not a
                    // failure to alert on.
                    if !cancelled {
                        crate::facts::job_failed(chrono::Utc::now());
                        crate::notify::alert(
                            crate::notify::Kind::Backup,
                            &format!("base backup {job_id}: {msg}"),
                        );
                    }
                    Err(msg)
                }
            }
        });
        Ok((id, handle))
    }
}
