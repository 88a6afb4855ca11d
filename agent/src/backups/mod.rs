//! The backup side of the daemon, outside the HA loop: the loop publishes what it
//! learned each turn ([`TurnReport`]) on a watch channel, and a [`Supervisor`] task of
//! its own follows it — the archiver election, the WAL streamer, the scheduled jobs and
//! the heartbeat writer. A slow repository or a stuck backup therefore never delays a
//! turn, and the loop knows nothing of backups but the channel.
//!
//! A Redis member's side is [`rdb`]: the same election picks the member that takes
//! RDB snapshots (`Handle::start_redis`).

mod archiver;
mod heartbeat;
pub mod objectives;
pub mod rdb;

pub use archiver::{may_archive, MEMBER_FIELD, SLOT};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warden_config::Config;
use warden_consensus::{Cluster, Dcs, Keys, LeaseId};
use warden_pg::process::Programs;
use warden_pg::Settings;

use crate::state::Shared;

/// What one turn of the HA loop learned, as the backup side needs it.
#[derive(Debug, Clone)]
pub struct TurnReport {
    /// The configuration in force (replaced on reload).
    pub cfg: Arc<Config>,
    /// The DCS view this turn; `None`: the DCS could not be read.
    pub cluster: Option<Cluster>,
    /// Our lease, when it was renewed this turn (keys bound to it may be created).
    pub lease: Option<LeaseId>,
    /// We hold the leader key.
    pub holds_leader: bool,
    /// The local server's answer to this turn's probe.
    pub probe: Option<crate::probe::ServerProbe>,
    /// How long our replica has run without streaming from its upstream.
    pub not_streaming_for: Option<Duration>,
    /// The cluster's `ttl`.
    pub ttl: Duration,
    /// The cluster's system identifier, once known.
    pub system_identifier: Option<String>,
}

/// What the supervisor needs that does not change from turn to turn.
#[derive(Debug, Clone)]
pub struct Parts {
    pub dcs: Arc<dyn Dcs>,
    pub keys: Keys,
    pub shared: Arc<Shared>,
    pub settings: Settings,
    pub programs: Programs,
    /// Base backups of this member (with a backup section).
    pub backups: Option<Arc<warden_backup::base::Service>>,
    /// The YAML file the config came from (scheduled drills re-read it).
    pub config_path: Option<PathBuf>,
}

/// The loop's end of the channel and the supervisor task.
#[derive(Debug)]
pub struct Handle {
    tx: watch::Sender<Option<Arc<TurnReport>>>,
    task: JoinHandle<()>,
}

/// How long shutdown waits for the supervisor to stop the streamer and the jobs.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

impl Handle {
    /// Starts the supervisor; it acts on the first report.
    pub fn start(parts: Parts) -> Self {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(Supervisor::new(parts).run(rx));
        Self { tx, task }
    }

    /// Publishes this turn's report (replacing one not yet acted on: only the newest
    /// view matters).
    pub fn report(&self, report: TurnReport) {
        self.tx.send_replace(Some(Arc::new(report)));
    }

    /// Stops the streamer, the jobs and the heartbeat, and waits (bounded) until they
    /// have stopped: before PostgreSQL stops, since the streamer reads from it.
    pub async fn stop(self) {
        drop(self.tx);
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            tracing::warn!("the backup supervisor did not stop in time");
        }
    }
}

/// Follows the turn reports: archiver election, streamer, jobs, heartbeat.
pub struct Supervisor {
    parts: Parts,
    /// The configuration of the last report (a new one means a reload).
    cfg: Option<Arc<Config>>,
    /// The streaming WAL archiver, while we hold `warden/archiver`.
    archiver: Option<warden_backup::archiver::stream::Streamer>,
    /// Out of the archiver election until then (our archiver failed).
    archiver_cooldown: Option<tokio::time::Instant>,
    /// Scheduled backup jobs, while we hold `warden/archiver`.
    jobs: Option<warden_backup::jobs::Runner>,
    /// The repository copier (`backup.copies`), while we hold `warden/archiver`.
    copier: Option<warden_backup::copies::Copier>,
    /// The heartbeat writer, while we lead a writable primary (`backup.heartbeat`).
    heartbeat: Option<warden_backup::heartbeat::Heartbeat>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("archiving", &self.archiver.is_some())
            .field("heartbeat", &self.heartbeat.is_some())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    fn new(parts: Parts) -> Self {
        Self {
            parts,
            cfg: None,
            archiver: None,
            archiver_cooldown: None,
            jobs: None,
            copier: None,
            heartbeat: None,
        }
    }

    async fn run(mut self, mut rx: watch::Receiver<Option<Arc<TurnReport>>>) {
        while rx.changed().await.is_ok() {
            let Some(report) = rx.borrow_and_update().clone() else {
                continue;
            };
            let reloaded = self
                .cfg
                .as_ref()
                .is_some_and(|c| !Arc::ptr_eq(c, &report.cfg));
            self.cfg = Some(report.cfg.clone());
            objectives::follow(&self.parts.shared, &report.cfg);
            if reloaded {
                self.reschedule_jobs();
            }
            // Boxed: it holds repository and child-process futures.
            Box::pin(self.archiver_turn(&report)).await;
            self.heartbeat_turn(&report);
        }
        // The loop is shutting down.
        self.stop_archiver();
        if self.heartbeat.take().is_some() {
            tracing::info!("stopped the heartbeat writer");
        }
    }

    fn cfg(&self) -> &Config {
        self.cfg.as_deref().expect("set before the first turn")
    }
}
