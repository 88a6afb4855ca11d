//! Synchronous replication on the leader, carried out: the engine plans
//! ([`warden_ha::Database::plan_synchronous`]; PostgreSQL: Patroni's `on` and `quorum`
//! rules), the loop writes `/sync` and has the engine put its setting in place, step by
//! step in the plan's order (stopping at the first that fails).

use super::execute::{failed, ActError};
use super::observation::Observation;
use super::run::Agent;
use super::LocalEngine;
use warden_consensus::types::SyncState;
use warden_consensus::Cluster;
use warden_ha::{RoleConfig, SyncSetting, SyncStep};

impl<D: LocalEngine> Agent<D> {
    /// Synchronous mode on the leader, once per turn. With synchronous mode off, drops
    /// both `/sync` (if ours) and the engine's synchronous setting.
    pub(super) async fn sync_replication(
        &mut self,
        obs: &Observation<D::Facts>,
    ) -> Result<(), ActError> {
        self.sync_recheck = false;
        let Some(c) = obs.cluster.as_ref() else {
            return Ok(());
        };
        let d = self.dynamic(Some(c));
        if !d.synchronous_mode.is_enabled() {
            self.db.not_leading();
            return self.sync_off(c).await;
        }
        let plan = self
            .db
            .plan_synchronous(c, &self.cfg.name, &d, &obs.local.engine)
            .await
            .map_err(failed)?;
        self.sync_recheck = plan.pending;
        for step in plan.steps {
            match step {
                SyncStep::Key { quorum, voters } => {
                    self.write_sync_state(c, quorum, &voters).await?
                }
                SyncStep::Setting(s) => {
                    self.db.set_synchronous(SyncSetting::Planned(s));
                    self.configure(Some(c), &RoleConfig::Primary).await?;
                }
            }
        }
        Ok(())
    }

    async fn sync_off(&mut self, c: &Cluster) -> Result<(), ActError> {
        if self.db.set_synchronous(SyncSetting::Configured) {
            tracing::info!("synchronous mode is off: back to the configured synchronous setting");
            self.configure(Some(c), &RoleConfig::Primary).await?;
        }
        if let Some(s) = &c.sync {
            if s.value.leader.as_deref() == Some(self.cfg.name.as_str()) {
                self.dcs
                    .delete(&self.keys.sync())
                    .await
                    .map_err(|e| failed(format!("cannot delete /sync: {e}")))?;
            }
        }
        Ok(())
    }

    /// Writes `/sync` = us as leader, `quorum` (0: every listed standby has every
    /// commit) and `standbys` (sorted, comma-joined, as Patroni writes it), by
    /// compare-and-swap on the revision we read.
    pub(super) async fn write_sync_state(
        &self,
        c: &Cluster,
        quorum: u32,
        standbys: &[String],
    ) -> Result<(), ActError> {
        let mut sorted = standbys.to_vec();
        sorted.sort();
        let value = SyncState {
            leader: Some(self.cfg.name.clone()),
            quorum: Some(quorum),
            sync_standby: (!sorted.is_empty()).then(|| sorted.join(",")),
            extra: serde_json::Map::new(),
        };
        let body = serde_json::to_vec(&value).map_err(failed)?;
        let written = match &c.sync {
            Some(s) => {
                self.dcs
                    .compare_and_swap(&self.keys.sync(), body, s.mod_revision, None)
                    .await
            }
            None => self.dcs.create(&self.keys.sync(), body, None).await,
        }
        .map_err(|e| failed(format!("cannot write /sync: {e}")))?;
        if written {
            Ok(())
        } else {
            Err(failed("/sync changed concurrently; retrying next turn"))
        }
    }
}
