//! The backup side of a Redis member: RDB snapshots taken over the replication
//! protocol from the member holding the snapshot role, on `backup.schedule`, on
//! `POST /backup`, and the RDB drill on `backup.drill.schedule`.
//!
//! Who snapshots: the PostgreSQL archiver election, unchanged (`warden/archiver`,
//! `warden_backup::archiver::elect`): the first healthy (streaming) replica by name
//! among members with a backup section and no `noarchive` tag. The primary is a
//! candidate only while it is the cluster's only member (unlike the WAL archiver, it
//! does not stand in while the replicas are not streaming: snapshots wait). The holder
//! fetches from its own `redis-server`, so a snapshot never forks the primary of a
//! cluster that has replicas. The key is bound to the holder's lease, as for
//! PostgreSQL.
//!
//! The catalog's identity is the cluster's `initialize` value (the marker's
//! `cluster`, reported by the loop as the system identifier).

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;
use warden_backup::archiver::elect::{self, Candidate, Step};
use warden_backup::catalog::Catalog;
use warden_backup::jobs::Runner;
use warden_backup::key::EncryptionKey;
use warden_backup::layout::Layout;
use warden_backup::rdb::service::RdbService;
use warden_backup::repo::Repository;
use warden_config::Config;
use warden_consensus::{Dcs, Keys};
use warden_redis::adapter::RedisSettings;
use warden_redis::rdb::fetch::Auth;
use warden_redis::rdb::FetchOptions;

use super::archiver::{candidate, may_archive};
use super::{Handle, TurnReport};
use crate::state::Shared;

/// What the Redis backup side needs that does not change from turn to turn.
#[derive(Debug, Clone)]
pub struct Parts {
    pub dcs: Arc<dyn Dcs>,
    pub keys: Keys,
    pub shared: Arc<Shared>,
    pub redis: RedisSettings,
}

static SERVICE: OnceLock<Arc<RdbService>> = OnceLock::new();

/// This process's snapshot service (a Redis member with a backup section), for the
/// REST API.
pub fn service() -> Option<Arc<RdbService>> {
    SERVICE.get().cloned()
}

/// How the agent fetches a snapshot from its own server: the address it uses for its
/// own commands, the member's credentials and TLS.
pub fn fetch_options(s: &RedisSettings) -> anyhow::Result<FetchOptions> {
    let mut f = FetchOptions::new(s.local_host(), s.port);
    f.auth = s.password.clone().map(|password| Auth {
        username: s.username.clone(),
        password,
    });
    if let Some(tls) = &s.tls {
        f.tls = Some(
            tls.client_config()
                .map_err(|e| anyhow::anyhow!("redis.{}: {}", e.setting, e.why))?,
        );
    }
    Ok(f)
}

impl Handle {
    /// Starts the Redis backup side; it acts on the first report. `Err`: the snapshot
    /// connection cannot be set up (a TLS file), naming the setting.
    pub fn start_redis(parts: Parts, member: &str) -> anyhow::Result<Self> {
        let service = RdbService::new(member, fetch_options(&parts.redis)?);
        let service = SERVICE.get_or_init(|| service).clone();
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(
            RdbSupervisor {
                parts,
                service,
                cfg: None,
                jobs: None,
            }
            .run(rx),
        );
        Ok(Self { tx, task })
    }
}

/// Follows the turn reports: the snapshot role's election and the scheduled jobs.
struct RdbSupervisor {
    parts: Parts,
    service: Arc<RdbService>,
    /// The configuration of the last report (a new one means a reload).
    cfg: Option<Arc<Config>>,
    /// Scheduled snapshot and drill jobs, while we hold the role.
    jobs: Option<Runner>,
}

impl RdbSupervisor {
    async fn run(mut self, mut rx: watch::Receiver<Option<Arc<TurnReport>>>) {
        while rx.changed().await.is_ok() {
            let Some(report) = rx.borrow_and_update().clone() else {
                continue;
            };
            let reloaded = self
                .cfg
                .as_ref()
                .is_none_or(|c| !Arc::ptr_eq(c, &report.cfg));
            self.cfg = Some(report.cfg.clone());
            if reloaded {
                // New schedules, checks or repository: the jobs start again below.
                self.stop_jobs();
                self.set_catalog(&report);
            } else if self.service.catalog().is_none() {
                self.set_catalog(&report);
            }
            self.turn(&report).await;
        }
        self.stop_jobs();
    }

    fn cfg(&self) -> &Config {
        self.cfg.as_deref().expect("set before the first turn")
    }

    /// The repository, key and layout, once the cluster identity is known; the
    /// webhook and the metrics' catalog reader once per process.
    fn set_catalog(&self, r: &TurnReport) {
        let cfg = self.cfg();
        let Some(backup) = cfg.backup.as_ref() else {
            return;
        };
        let Some(identity) = r
            .system_identifier
            .as_deref()
            .and_then(warden_backup::rdb::source::parse_identity)
        else {
            return;
        };
        let catalog = (|| -> anyhow::Result<Catalog> {
            Ok(Catalog {
                repo: Repository::open(&backup.repository)?,
                layout: Layout::new(&cfg.scope, identity),
                key: EncryptionKey::load(backup.encryption_key_file.as_deref())?,
            })
        })();
        match catalog {
            Ok(c) => {
                if !warden_backup::facts::refresher_started() {
                    if let Some(url) = backup.webhook_url.clone() {
                        warden_backup::notify::install(url, &cfg.scope, &cfg.name);
                    }
                    warden_backup::facts::ensure_refresher(c.clone());
                }
                self.service.set_catalog(c, backup.compression_level);
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot take RDB snapshots"),
        }
    }

    /// Ourselves, from this turn's probe. A primary is a candidate only while it is
    /// the only member (`alone`): a snapshot forks its source, and the primary's fork
    /// is the one that costs the clients. (PostgreSQL's archiver also falls back to the
    /// primary while the replicas are not streaming yet; snapshots wait instead.)
    fn me(&self, r: &TurnReport, alone: bool) -> Candidate {
        let (role, healthy) = match &r.probe {
            Some(p) if p.in_recovery() => (elect::Role::Replica, p.streaming()),
            Some(_) => (elect::Role::Primary, r.holds_leader),
            None => (elect::Role::Other, false),
        };
        Candidate {
            name: self.cfg().name.clone(),
            role,
            healthy,
            eligible: may_archive(self.cfg()) && (role != elect::Role::Primary || alone),
        }
    }

    async fn turn(&mut self, r: &TurnReport) {
        if self.cfg().backup.is_none() {
            self.stop_jobs();
            return;
        }
        // Without a DCS view nothing changes: the key lives or dies with our lease.
        let Some(c) = r.cluster.as_ref() else { return };
        let name = self.cfg().name.clone();
        let others: Vec<Candidate> = c
            .members
            .iter()
            .filter(|(n, _)| **n != name)
            .map(|(n, m)| candidate(n, &m.value))
            .collect();
        let me = self.me(r, others.is_empty());
        let step = elect::decide(&elect::View {
            me: &me,
            others: &others,
            holder: c.archiver.as_deref(),
        });
        let key = self.parts.keys.archiver();
        match step {
            Step::Acquire => {
                let Some(lease) = r.lease else { return };
                match self
                    .parts
                    .dcs
                    .create(&key, name.clone().into_bytes(), Some(lease))
                    .await
                {
                    Ok(true) => {
                        tracing::info!(role = ?me.role, "took the snapshot role (the archiver key)");
                        self.start_jobs();
                    }
                    Ok(false) => tracing::debug!("another member took the archiver key first"),
                    Err(e) => tracing::warn!(error = %e, "cannot take the archiver key"),
                }
            }
            Step::Keep => self.start_jobs(),
            Step::Release => {
                tracing::info!(role = ?me.role, healthy = me.healthy, "releasing the snapshot role (the archiver key)");
                self.stop_jobs();
                if let Err(e) = self.parts.dcs.delete_if_value(&key, name.as_bytes()).await {
                    tracing::warn!(error = %e, "cannot release the archiver key; it expires with our lease");
                }
            }
            Step::Idle => self.stop_jobs(),
        }
        let holding = self.jobs.is_some();
        self.parts.shared.update(|s| s.archiver = holding);
    }

    fn start_jobs(&mut self) {
        if self.jobs.is_some() {
            return;
        }
        let jobs = warden_backup::jobs::redis(self.cfg(), &self.service);
        if !jobs.is_empty() {
            tracing::info!(jobs = jobs.len(), "starting scheduled RDB jobs");
        }
        self.jobs = Some(Runner::start(jobs));
    }

    fn stop_jobs(&mut self) {
        if let Some(jobs) = self.jobs.take() {
            jobs.stop();
        }
    }
}

/// The Redis backup side for `cfg`: `None` without a backup section.
pub fn side(
    cfg: &Config,
    dcs: &Arc<dyn Dcs>,
    shared: &Arc<Shared>,
    redis: &RedisSettings,
) -> anyhow::Result<Option<Handle>> {
    if cfg.backup.is_none() {
        return Ok(None);
    }
    let parts = Parts {
        dcs: dcs.clone(),
        keys: Keys::new(&cfg.namespace, &cfg.scope),
        shared: shared.clone(),
        redis: redis.clone(),
    };
    Handle::start_redis(parts, &cfg.name).map(Some)
}
