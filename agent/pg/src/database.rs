//! PostgreSQL's adapter: [`Postgres`] as the [`warden_ha::Database`] the loop drives.
//! Each method says which PostgreSQL program, file or SQL carries the neutral
//! operation out; the building blocks are [`Postgres`]'s own methods.

use crate::conf::{slot_name, Upstream};
use crate::lsn::Lsn;
use crate::policy::PgLocal;
use crate::process::StopMode as PgStop;
use crate::{PgError, Postgres};
use std::collections::BTreeMap;
use std::time::Duration;
use warden_consensus::{Cluster, DynamicConfig};
use warden_ha::{
    DataState, Database, Local, RepairOutcome, Retained, RoleConfig, StopMode, SyncPlan,
    SyncSetting,
};

/// How long a bootstrapped PostgreSQL has to accept connections.
const BOOTSTRAP_START_TIMEOUT: Duration = Duration::from_secs(120);

impl Database for Postgres {
    type Facts = PgLocal;
    type Error = PgError;

    fn data_state(&self) -> DataState {
        self.data_dir_state()
    }

    fn is_running(&mut self) -> bool {
        Postgres::is_running(self)
    }

    fn server_pid(&mut self) -> Option<i32> {
        self.postmaster_pid()
    }

    /// `pg_controldata` when the data is initialized and either the system identifier
    /// is not known yet or the server is stopped (its cluster state tells whether it
    /// last ran as a primary, its timelines which timeline a stopped node is on); then
    /// the status query when the postmaster runs. A server that runs but does not
    /// answer yet (starting, recovering) keeps the timeline last read while it was
    /// stopped: its member key then still says where its data stands. `use_pg_rewind`:
    /// the local file's, else the dynamic config's.
    async fn observe(&mut self, repaired: bool, dynamic: &DynamicConfig) -> Local<PgLocal> {
        let data = self.data_dir_state();
        let running = Postgres::is_running(self);
        let mut was_primary = false;
        let mut stopped_timeline = None;
        if data == DataState::Initialized && (self.known_system_identifier.is_none() || !running) {
            match self.programs.controldata().await {
                Ok(cd) => {
                    self.known_system_identifier = cd.get("Database system identifier").cloned();
                    // A fresh base backup carries the source primary's control file
                    // ("in production") plus a backup_label: it is not a former primary.
                    let fresh_clone = self.settings.data_dir.join("backup_label").exists();
                    was_primary = !fresh_clone
                        && cd.get("Database cluster state").is_some_and(|s| {
                            matches!(
                                s.as_str(),
                                "in production" | "shut down" | "in crash recovery"
                            )
                        });
                    if !running && !fresh_clone {
                        let tli =
                            |key: &str| cd.get(key).and_then(|v| v.trim().parse::<u32>().ok());
                        // 0 means "no minimum recovery point".
                        stopped_timeline = tli("Latest checkpoint's TimeLineID")
                            .max(tli("Min recovery ending loc's timeline").filter(|&t| t > 0))
                            .max(newest_history_file(&self.settings.data_dir.join("pg_wal")));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the control file"),
            }
        } else if data != DataState::Initialized {
            self.known_system_identifier = None;
        }
        let probe = if running {
            match self.sql().probe().await {
                Ok(mut p) => {
                    // A receiver that is down reports nothing: keep the last figure
                    // (forgotten once the server runs writable).
                    if !p.in_recovery {
                        self.last_upstream_end = None;
                    } else if p.upstream_end_lsn.is_some() {
                        self.last_upstream_end = p.upstream_end_lsn;
                    } else {
                        p.upstream_end_lsn = self.last_upstream_end;
                    }
                    Some(p)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "PostgreSQL did not answer the probe");
                    None
                }
            }
        } else {
            None
        };
        if data != DataState::Initialized || probe.is_some() {
            self.stopped_timeline = None;
        } else if !running {
            self.stopped_timeline = stopped_timeline;
        } else {
            stopped_timeline = self.stopped_timeline;
        }
        let mut rewound = repaired;
        if let Some(p) = &probe {
            was_primary = !p.in_recovery;
            if was_primary {
                rewound = false;
            }
        }
        Local {
            data,
            system_identifier: self.known_system_identifier.clone(),
            was_primary,
            running,
            engine: PgLocal {
                probe,
                rewound,
                stopped_timeline,
                use_pg_rewind: self
                    .settings
                    .use_pg_rewind
                    .unwrap_or(dynamic.postgresql.use_pg_rewind),
            },
        }
    }

    /// initdb (data checksums on), the configuration from `initial` with no
    /// synchronous names, start, wait for connections, then the replication and rewind
    /// roles.
    async fn bootstrap(&mut self, initial: &DynamicConfig) -> Result<(), PgError> {
        self.initdb().await?;
        self.start_bootstrapped(initial, BOOTSTRAP_START_TIMEOUT)
            .await?;
        self.create_roles().await
    }

    async fn clone_from(
        &mut self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<(), PgError> {
        self.write_pgpass(Some((host, port)))?;
        self.basebackup(host, port, timeout).await
    }

    /// `.pgpass`, then `postgresql.conf` (parameters from the dynamic config and the
    /// local file, `primary_conninfo` through our slot on a replica,
    /// `synchronous_standby_names`), `pg_hba.conf` and `standby.signal`.
    fn configure(
        &mut self,
        role: &RoleConfig,
        cluster: Option<&Cluster>,
        dynamic: &DynamicConfig,
    ) -> Result<bool, PgError> {
        let names = self.names_for(matches!(role, RoleConfig::Primary), cluster, dynamic);
        self.set_dynamic_recovery_conf(dynamic);
        let remote = match role {
            RoleConfig::Replica { source: Some(s) } if s.is_remote() => {
                dynamic.standby_cluster.as_ref()
            }
            _ => None,
        };
        if let Some(sc) = remote {
            // The standby leader's own recovery settings (Patroni's: they apply to it
            // alone, over `recovery_conf`).
            for (k, v) in [
                ("restore_command", &sc.restore_command),
                ("archive_cleanup_command", &sc.archive_cleanup_command),
                ("recovery_min_apply_delay", &sc.recovery_min_apply_delay),
            ] {
                if let Some(v) = v {
                    self.dynamic_recovery_conf.insert(k.into(), v.clone());
                }
            }
        }
        let standby = match role {
            RoleConfig::Primary => None,
            RoleConfig::Replica { source } => {
                Some(source.as_ref().filter(|s| s.streams()).map(|s| {
                    let me = &self.settings;
                    // Patroni's rule: a slot only with `use_slots`; on the remote primary
                    // only the one `standby_cluster.primary_slot_name` names.
                    let slot = if s.is_remote() {
                        remote.and_then(|sc| sc.primary_slot_name.clone())
                    } else {
                        Some(slot_name(&me.name))
                    };
                    Upstream {
                        host: s.host.clone(),
                        port: s.port,
                        user: me.replication.username.clone(),
                        passfile: me.pgpass.display().to_string(),
                        application_name: me.name.clone(),
                        slot: slot.filter(|_| dynamic.postgresql.use_slots),
                        tls: me.replication.tls.clone(),
                    }
                }))
            }
        };
        let peer = standby.as_ref().and_then(Option::as_ref);
        self.write_pgpass(peer.map(|u| (u.host.as_str(), u.port)))?;
        self.write_config(
            &dynamic.postgresql.parameters,
            dynamic.postgresql.pg_hba.as_deref(),
            standby.as_ref(),
            names.as_deref(),
        )
    }

    fn start(&mut self) -> Result<(), PgError> {
        Postgres::start(self)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), PgError> {
        Postgres::wait_ready(self, timeout).await
    }

    async fn stop(&mut self, mode: StopMode, timeout: Duration) -> Result<(), PgError> {
        let mode = match mode {
            StopMode::Fast => PgStop::Fast,
            StopMode::Immediate => PgStop::Immediate,
        };
        Postgres::stop(self, mode, timeout).await
    }

    async fn promote(&mut self, timeout: Duration) -> Result<(), PgError> {
        Postgres::promote(self, timeout).await
    }

    async fn reload(&mut self) -> Result<(), PgError> {
        Postgres::reload(self).await
    }

    /// `.pgpass`, the source's checkpoint since its promotion (pg_rewind reads its
    /// timeline from the control file), no recovery signal files (pg_rewind's crash
    /// recovery runs in single-user mode, which refuses standby mode), then pg_rewind.
    /// A failed pg_rewind is [`RepairOutcome::Unrepairable`]: the loop clones afresh.
    async fn repair(
        &mut self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<RepairOutcome<PgError>, PgError> {
        self.write_pgpass(Some((host, port)))?;
        self.source_checkpointed(host, port).await?;
        self.clear_recovery_signals()?;
        tracing::warn!(host, port, "rewinding the former primary with pg_rewind");
        Ok(match self.rewind(host, port, timeout).await {
            Ok(()) => RepairOutcome::Repaired,
            Err(e) => RepairOutcome::Unrepairable(e),
        })
    }

    fn remove_data(&mut self) -> Result<(), PgError> {
        self.remove_data_dir()?;
        self.known_system_identifier = None;
        Ok(())
    }

    async fn checkpoint(&mut self, timeout: Duration) -> Result<(), PgError> {
        self.sql().query_with_timeout("CHECKPOINT", timeout).await?;
        Ok(())
    }

    async fn shutdown_position(&self) -> Result<u64, PgError> {
        let cd = self.programs.controldata().await?;
        let state = cd.get("Database cluster state").map_or("", String::as_str);
        if state != "shut down" {
            return Err(PgError::Files(format!(
                "the primary did not shut down cleanly (control file says {state:?})"
            )));
        }
        cd.get("Latest checkpoint location")
            .and_then(|t| Lsn::parse(t))
            .map(|l| l.0)
            .ok_or_else(|| PgError::Files("no checkpoint location in the control file".into()))
    }

    /// `synchronous_standby_names` for the next [`Database::configure`] of the primary.
    fn set_synchronous(&mut self, setting: SyncSetting) -> bool {
        self.set_sync_setting(setting)
    }

    /// Patroni's rules through `crate::sync` (`on`) and `crate::quorum` (`quorum`); reads
    /// the names PostgreSQL enforces (`SHOW synchronous_standby_names` and the flush
    /// position) to confirm standbys.
    async fn plan_synchronous(
        &mut self,
        cluster: &Cluster,
        me: &str,
        dynamic: &DynamicConfig,
        facts: &PgLocal,
    ) -> Result<SyncPlan, PgError> {
        self.plan_sync(cluster, me, dynamic, facts.probe.as_ref())
            .await
    }

    fn not_leading(&mut self) {
        self.forget_leader_state();
    }

    /// Polls `pg_stat_replication` every half second.
    async fn lost_standby(&mut self) -> String {
        self.watch_standbys().await
    }

    /// Physical replication slots named after the members, with `member_slots_ttl`.
    async fn retain(
        &mut self,
        members: &[String],
        leader_positions: Option<&BTreeMap<String, u64>>,
        dynamic: &DynamicConfig,
        facts: &PgLocal,
    ) -> Result<(), PgError> {
        self.retain_slots(members, leader_positions, dynamic, facts.probe.as_ref())
            .await
    }

    fn retained(&self, facts: &PgLocal) -> Retained {
        self.retained_slots(facts.probe.as_ref())
    }

    /// Renames the data directory to `<dir>.failed-<time>` beside it.
    fn set_aside(&mut self) -> Result<Option<String>, PgError> {
        let dir = &self.settings.data_dir;
        if !dir.exists() {
            return Ok(None);
        }
        let aside = crate::aside_path(dir);
        std::fs::rename(dir, &aside)
            .map_err(|e| PgError::Files(format!("cannot move {} aside: {e}", dir.display())))?;
        Ok(Some(aside.display().to_string()))
    }

    async fn received_by(&self, host: &str, port: u16, timeout: Duration) -> Result<u64, PgError> {
        self.peer_received(host, port, timeout).await
    }
}

/// The newest timeline with a history file (`0000000T.history`) in `pg_wal`: a
/// promotion writes it at once, before any checkpoint names the new timeline.
fn newest_history_file(pg_wal: &std::path::Path) -> Option<u32> {
    std::fs::read_dir(pg_wal)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let hex = name.to_str()?.strip_suffix(".history")?;
            (hex.len() == 8)
                .then(|| u32::from_str_radix(hex, 16).ok())
                .flatten()
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::newest_history_file;

    #[test]
    fn newest_history_file_reads_timeline_ids_in_hex() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_history_file(dir.path()), None);
        for f in [
            "00000002.history",
            "0000000A.history",
            "000000010000000000000003",
            "x.history",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        assert_eq!(newest_history_file(dir.path()), Some(10));
        assert_eq!(newest_history_file(&dir.path().join("missing")), None);
    }
}
