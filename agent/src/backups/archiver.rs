//! The daemon's side of the archiver election: after each turn report, read
//! `warden/archiver`, ask the pure rule (`warden_backup::archiver::elect`) what to do,
//! take or release the key, and start or stop the streaming worker to match. The key is
//! bound to our lease, so it disappears with a dead agent, and we never run the worker
//! without holding it.

use super::{Supervisor, TurnReport};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use warden_backup::archiver::elect::{self, Candidate, Step};
use warden_backup::archiver::stream::Streamer;
use warden_backup::key::EncryptionKey;
use warden_backup::layout::Layout;
use warden_backup::repo::Repository;
use warden_backup::wal::Archive;
use warden_config::Config;
use warden_consensus::types::{Member, Role};
use warden_pg::receivewal::ReceiveWal;

/// The physical slot the archiver streams through, on the archiving member. Member
/// slots are named after members (`[a-z0-9_]`), so this name cannot collide with one
/// unless a member is called `warden_archiver`.
pub const SLOT: &str = "warden_archiver";
/// The member-key field that says "I have a backup section and may archive".
pub const MEMBER_FIELD: &str = "warden_archive";
/// A member tag that keeps a member with a backup section out of the election.
pub const NOARCHIVE_TAG: &str = "noarchive";
/// After the worker failed (and we gave the key up), stay out of the election this
/// long so another member gets its turn.
const COOLDOWN: Duration = Duration::from_secs(60);

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "yes"),
        _ => false,
    }
}

/// Another member as the election sees it, from its member key.
pub fn candidate(name: &str, m: &Member) -> Candidate {
    let role = match m.role {
        Role::Primary | Role::Promoted | Role::StandbyLeader => elect::Role::Primary,
        Role::Replica => elect::Role::Replica,
        Role::Demoted | Role::Uninitialized => elect::Role::Other,
    };
    let healthy = m.state.is_running()
        && (role == elect::Role::Primary || m.replication_state.as_deref() == Some("streaming"));
    Candidate {
        name: name.to_owned(),
        role,
        healthy,
        eligible: truthy(m.extra.get(MEMBER_FIELD)) && !m.tag_bool(NOARCHIVE_TAG),
    }
}

/// Has a backup section and is not tagged `noarchive` (published in the member key).
pub fn may_archive(cfg: &Config) -> bool {
    cfg.backup.is_some() && !truthy(cfg.tags.other.get(NOARCHIVE_TAG))
}

impl Supervisor {
    /// Ourselves, from this turn's probe.
    fn me(&self, r: &TurnReport) -> Candidate {
        // A replica whose upstream just went away (the primary died; it may be about
        // to be promoted) keeps the role for a ttl rather than churning the key, the
        // slot and the stream.
        let briefly_not_streaming = r.not_streaming_for.is_some_and(|d| d < r.ttl);
        let (role, healthy) = match &r.probe {
            Some(p) if p.in_recovery() => (
                elect::Role::Replica,
                p.streaming() || (self.archiver.is_some() && briefly_not_streaming),
            ),
            Some(_) => (elect::Role::Primary, r.holds_leader),
            None => (elect::Role::Other, false),
        };
        let cooling = self.archiver_cooldown.is_some_and(|t| t > Instant::now());
        let failed = self.archiver.as_ref().is_some_and(Streamer::failed);
        Candidate {
            name: self.cfg().name.clone(),
            role,
            healthy: healthy && !failed,
            eligible: may_archive(self.cfg()) && !cooling,
        }
    }

    /// One round of the election, after a turn's report.
    pub(super) async fn archiver_turn(&mut self, r: &TurnReport) {
        if self.cfg().backup.is_none() {
            self.stop_archiver();
            return;
        }
        self.start_backup_side_tasks(r);
        // Without a DCS view nothing changes: the key lives or dies with our lease.
        let Some(c) = r.cluster.as_ref() else { return };
        let me = self.me(r);
        let others: Vec<Candidate> = c
            .members
            .iter()
            .filter(|(n, _)| **n != self.cfg().name)
            .map(|(n, m)| candidate(n, &m.value))
            .collect();
        let holder = c.archiver.as_deref();
        let step = elect::decide(&elect::View {
            me: &me,
            others: &others,
            holder,
        });
        let key = self.parts.keys.archiver();
        let name = self.cfg().name.clone();
        match step {
            Step::Acquire => {
                let Some(lease) = r.lease else {
                    return;
                };
                match self
                    .parts
                    .dcs
                    .create(&key, name.into_bytes(), Some(lease))
                    .await
                {
                    Ok(true) => {
                        tracing::info!("took the archiver key");
                        self.start_archiver(r);
                    }
                    Ok(false) => tracing::debug!("another member took the archiver key first"),
                    Err(e) => tracing::warn!(error = %e, "cannot take the archiver key"),
                }
            }
            Step::Keep => self.start_archiver(r),
            Step::Release => {
                if self.archiver.as_ref().is_some_and(Streamer::failed) {
                    tracing::error!(
                        "the archiver keeps failing; giving the role to another member"
                    );
                    self.archiver_cooldown = Some(Instant::now() + COOLDOWN);
                }
                tracing::info!(
                    role = ?me.role,
                    healthy = me.healthy,
                    "releasing the archiver key"
                );
                // Stop streaming before the key goes, so two streams overlap as little
                // as possible.
                self.stop_archiver();
                if let Err(e) = self.parts.dcs.delete_if_value(&key, name.as_bytes()).await {
                    tracing::warn!(error = %e, "cannot release the archiver key; it expires with our lease");
                }
            }
            Step::Idle => self.stop_archiver(),
        }
        if self.archiver.is_none() {
            self.drop_leftover_slot(r).await;
        }
        let status = self.archiver.as_ref().map(Streamer::status);
        self.parts.shared.update(|s| {
            s.archiver = status.is_some();
            s.archive = status;
        });
    }

    fn start_archiver(&mut self, r: &TurnReport) {
        if self.archiver.is_some() {
            return;
        }
        match self.archive_target(r) {
            Ok(archive) => {
                let data_dir = &self.parts.settings.data_dir;
                let spool_name = format!(
                    "{}_wal_spool",
                    data_dir
                        .file_name()
                        .map_or_else(|| "data".into(), |n| n.to_string_lossy())
                );
                let spool = data_dir
                    .parent()
                    .map_or_else(|| spool_name.clone().into(), |p| p.join(&spool_name));
                let receiver = ReceiveWal::new(
                    &self.parts.settings,
                    self.parts.programs.clone(),
                    SLOT,
                    spool,
                );
                let live_every = self
                    .cfg()
                    .backup
                    .as_ref()
                    .and_then(|b| b.partial_upload_interval);
                self.start_copier(&archive);
                self.archiver = Some(Streamer::start(archive, receiver, live_every));
                self.start_jobs();
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot archive WAL");
                self.archiver_cooldown = Some(Instant::now() + COOLDOWN);
            }
        }
    }

    /// Scheduled backup jobs run only alongside the streamer (the archiver key).
    fn start_jobs(&mut self) {
        if self.jobs.is_some() {
            return;
        }
        if let Some(service) = &self.parts.backups {
            let mut jobs = warden_backup::jobs::standard(self.cfg(), service);
            let cfg = self.cfg.clone().expect("set before the first turn");
            jobs.extend(warden_backup::drill::job(
                &cfg,
                self.parts.config_path.as_deref(),
            ));
            if !jobs.is_empty() {
                tracing::info!(jobs = jobs.len(), "starting scheduled backup jobs");
            }
            self.jobs = Some(warden_backup::jobs::Runner::start(jobs));
        }
    }

    /// After a reload: the schedules may have changed. A backup in flight goes on.
    pub(super) fn reschedule_jobs(&mut self) {
        if let Some(jobs) = self.jobs.take() {
            jobs.stop();
            self.start_jobs();
        }
        // The copies may have changed too.
        if let Some(copier) = self.copier.take() {
            let main = copier.main().clone();
            copier.stop();
            self.start_copier_from(main);
        }
    }

    fn stop_jobs(&mut self) {
        if let Some(jobs) = self.jobs.take() {
            jobs.stop();
        }
        // A backup must not go on on a member that is no longer the archiver (its
        // WAL wait would rely on an archiver that moved elsewhere).
        if let Some(service) = &self.parts.backups {
            service.cancel_running();
        }
    }

    /// The repository copier (`backup.copies`) runs alongside the streamer: the
    /// archiver is the one member writing the main repository.
    fn start_copier(&mut self, archive: &Archive) {
        let Some(backup) = self.cfg().backup.as_ref() else {
            return;
        };
        if self.copier.is_some() || backup.copies.is_empty() {
            return;
        }
        self.start_copier_from(warden_backup::catalog::Catalog {
            repo: archive.repo.clone(),
            layout: archive.layout.clone(),
            key: archive.key.clone(),
        });
    }

    fn start_copier_from(&mut self, main: warden_backup::catalog::Catalog) {
        let Some(backup) = self.cfg().backup.as_ref() else {
            return;
        };
        if backup.copies.is_empty() {
            return;
        }
        match warden_backup::copies::targets(backup, &main.key) {
            Ok(targets) => {
                self.copier = Some(warden_backup::copies::Copier::start(main, targets));
            }
            Err(e) => tracing::error!(error = %e, "cannot start the repository copier"),
        }
    }

    pub(super) fn stop_archiver(&mut self) {
        if let Some(c) = self.copier.take() {
            c.stop();
        }
        self.stop_jobs();
        if let Some(s) = self.archiver.take() {
            s.stop();
            self.parts.shared.update(|st| {
                st.archiver = false;
                st.archive = None;
            });
        }
    }

    /// The repository, key and this cluster's layout.
    fn archive_target(&self, r: &TurnReport) -> anyhow::Result<Archive> {
        let backup = self
            .cfg()
            .backup
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no backup section"))?;
        let sysid: u64 = r
            .system_identifier
            .as_deref()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("the system identifier is not known yet"))?;
        Ok(Archive {
            repo: Repository::open(&backup.repository)?,
            layout: Layout::new(&self.cfg().scope, sysid),
            key: EncryptionKey::load(backup.encryption_key_file.as_deref())?,
            compression_level: backup.compression_level,
        })
    }

    /// Once per process, when the system identifier is known: the failure webhook and
    /// the background catalog reader behind the backup metrics (every member with a
    /// backup section reports the cluster's backups).
    fn start_backup_side_tasks(&self, r: &TurnReport) {
        if warden_backup::facts::refresher_started() {
            return;
        }
        let Ok(a) = self.archive_target(r) else {
            return;
        };
        let cfg = self.cfg();
        if let Some(url) = cfg.backup.as_ref().and_then(|b| b.webhook_url.clone()) {
            warden_backup::notify::install(url, &cfg.scope, &cfg.name);
        }
        warden_backup::facts::ensure_refresher(warden_backup::catalog::Catalog {
            repo: a.repo,
            layout: a.layout,
            key: a.key,
        });
    }

    /// A former archiver's slot would hold WAL on this node forever.
    async fn drop_leftover_slot(&mut self, r: &TurnReport) {
        let has_slot = r
            .probe
            .as_ref()
            .and_then(crate::probe::ServerProbe::pg)
            .is_some_and(|p| p.physical_slots.contains_key(SLOT));
        if has_slot {
            match warden_pg::drop_slot(&self.parts.settings, SLOT).await {
                Ok(()) => tracing::info!(
                    slot = SLOT,
                    "dropped the archiver slot of a former archiver"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot drop the former archiver slot"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(json: serde_json::Value) -> Member {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn candidates_from_member_keys() {
        let base = serde_json::json!({
            "conn_url": "postgres://h:5432/postgres", "api_url": "http://h:8008/patroni",
            "state": "running", "role": "replica", "version": "4.0.0",
            "replication_state": "streaming", "warden_archive": true,
        });
        let c = candidate("n2", &member(base.clone()));
        assert_eq!(c.role, elect::Role::Replica);
        assert!(c.healthy && c.eligible, "{c:?}");

        let mut m = base.clone();
        m["replication_state"] = "in archive recovery".into();
        assert!(!candidate("n2", &member(m)).healthy);

        let mut m = base.clone();
        m["tags"] = serde_json::json!({"noarchive": true});
        assert!(!candidate("n2", &member(m)).eligible);

        // A Patroni member (no backup section announced) never archives.
        let mut m = base.clone();
        m.as_object_mut().unwrap().remove("warden_archive");
        assert!(!candidate("n2", &member(m)).eligible);

        let mut m = base;
        m["role"] = "primary".into();
        m.as_object_mut().unwrap().remove("replication_state");
        let c = candidate("n1", &member(m));
        assert_eq!(c.role, elect::Role::Primary);
        assert!(c.healthy);
    }
}
