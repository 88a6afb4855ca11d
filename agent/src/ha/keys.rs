//! The DCS side of the decision's actions: the bootstrap race and `initialize`, the
//! leader key (taken, renewed, released) with the local deadline and the watchdog that
//! follow it, and failsafe mode's `/failsafe` key. None of it touches the database.

use super::execute::{failed, ActError};
use super::run::Agent;
use std::time::Duration;
use warden_consensus::Cluster;
use warden_consensus::LeaseId;
use warden_ha::Database;

impl<D: Database> Agent<D> {
    /// Creates `initialize` empty: whoever creates it runs the bootstrap.
    pub(super) async fn race_initialize(&mut self) -> Result<(), ActError> {
        let won = self
            .dcs
            .create(&self.keys.initialize(), Vec::new(), None)
            .await
            .map_err(failed)?;
        if won {
            tracing::info!("won the bootstrap race");
            Ok(())
        } else {
            Err(failed("another member won the bootstrap race"))
        }
    }

    pub(super) async fn acquire_leader(
        &mut self,
        cluster: Option<&Cluster>,
    ) -> Result<(), ActError> {
        let (lease, ttl) = self.renewed_lease()?;
        // Guarded by /history as we saw it: if another member was promoted since (we
        // may have been paused between looking and acting), our decision rests on a
        // stale timeline and must be taken again.
        let seen = cluster.map_or(0, |c| c.history_revision);
        let won = self
            .dcs
            .create_unless_changed(
                &self.keys.leader(),
                self.cfg.name.clone().into_bytes(),
                Some(lease),
                (&self.keys.history(), seen),
            )
            .await
            .map_err(failed)?;
        if !won {
            return Err(failed(
                "another member took the leader key first, or /history changed since we looked",
            ));
        }
        self.leadership_confirmed(ttl);
        tracing::info!("acquired the leader key");
        Ok(())
    }

    pub(super) async fn renew_leader(&mut self) -> Result<(), ActError> {
        let (lease, ttl) = self.renewed_lease()?;
        let me = self.cfg.name.clone().into_bytes();
        let kept = self
            .dcs
            .put_if_value(&self.keys.leader(), &me, me.clone(), Some(lease))
            .await
            .map_err(failed)?;
        if !kept {
            self.holds_leader = false;
            self.shared.deadline.clear();
            return Err(failed("the leader key is no longer ours"));
        }
        self.leadership_confirmed(ttl);
        Ok(())
    }
}

impl<D: Database> Agent<D> {
    /// Failsafe mode: every member confirmed us, so the deadline runs on from the start
    /// of that confirmation round.
    pub(super) fn failsafe_hold(&mut self, cluster: Option<&Cluster>) {
        let ttl = self.dynamic(cluster).ttl_duration();
        if let Some(started) = self.failsafe_round.take() {
            self.shared.deadline.renewed(started.into_std(), ttl);
            self.shared
                .update(|s| s.failsafe_confirmed_at = Some(started.into_std()));
            self.failsafe_shown = true;
            // Still the leader, confirmed by every member: keep the watchdog fed.
            self.feed_watchdog(ttl);
        }
    }

    pub(super) async fn release_leader(&mut self) -> Result<(), ActError> {
        self.holds_leader = false;
        self.shared.deadline.clear();
        let me = self.cfg.name.as_bytes();
        self.dcs
            .delete_if_value(&self.keys.leader(), me)
            .await
            .map_err(failed)?;
        tracing::warn!("released the leader key");
        Ok(())
    }
}

impl<D: Database> Agent<D> {
    /// Our lease, if it was renewed this turn: the local deadline is computed from that
    /// renewal, so taking or re-asserting the leader key without it would be unsafe.
    pub(super) fn renewed_lease(&self) -> Result<(LeaseId, Duration), ActError> {
        match self.lease {
            Some(l) if self.renewed_this_turn => Ok(l),
            _ => Err(failed(
                "our lease was not renewed this turn; not touching the leader key",
            )),
        }
    }

    pub(super) fn leadership_confirmed(&mut self, ttl: Duration) {
        self.holds_leader = true;
        self.feed_watchdog(ttl);
        if let Some(started) = self.renewed_at {
            self.shared.deadline.renewed(started.into_std(), ttl);
        }
    }

    /// Arms (first time) or feeds the watchdog while we lead. Its timeout is
    /// `ttl - safety_margin` (half the ttl with Patroni's `-1`), so a hung machine
    /// resets before its lease can expire.
    pub(super) fn feed_watchdog(&mut self, ttl: Duration) {
        let wd = &self.cfg.watchdog;
        if wd.mode == warden_config::WatchdogMode::Off {
            return;
        }
        if let Some(dog) = self.watchdog.as_mut() {
            if let Err(e) = dog.keepalive() {
                tracing::error!(error = %e, "cannot feed the watchdog");
            }
            return;
        }
        let margin = wd
            .safety_margin
            .map_or(ttl / 2, |m| Duration::from_secs(u64::from(m)));
        let timeout = ttl.saturating_sub(margin).max(Duration::from_secs(1));
        match self.env.watchdog.open(timeout) {
            Ok(dog) => {
                tracing::info!(device = %wd.device.display(), ?timeout, "watchdog armed");
                self.watchdog = Some(dog);
            }
            Err(e) => tracing::debug!(error = %e, "no watchdog armed"),
        }
    }
}

impl<D: Database> Agent<D> {
    pub(super) async fn set_initialize(
        &mut self,
        sysid: &str,
        cluster: Option<&Cluster>,
    ) -> Result<(), ActError> {
        // The config first (create-only: an existing one stays): a cluster whose
        // `initialize` is set must have it, or its leader could decide without, e.g.
        // promote the copy a standby cluster just bootstrapped from its remote.
        let cfg_json = serde_json::to_vec(&self.cfg.bootstrap.dcs.to_json()).map_err(failed)?;
        self.dcs
            .create(&self.keys.config(), cfg_json, None)
            .await
            .map_err(failed)?;
        let key = self.keys.initialize();
        let written = match cluster.and_then(|c| c.initialize.as_deref()) {
            None => self.dcs.create(&key, sysid.as_bytes().to_vec(), None).await,
            Some(_) => {
                self.dcs
                    .put_if_value(&key, b"", sysid.as_bytes().to_vec(), None)
                    .await
            }
        }
        .map_err(failed)?;
        if !written {
            return Err(failed("the initialize key changed under us"));
        }
        self.bootstrapped_here = false;
        tracing::info!(
            system_identifier = sysid,
            "recorded the cluster's system identifier"
        );
        Ok(())
    }
}

impl<D: Database> Agent<D> {
    /// With failsafe mode on, keeps `/failsafe` listing every member's REST API, so a
    /// leader cut off from the DCS knows whom to ask; removes it when the mode is off.
    pub(super) async fn write_failsafe(
        &mut self,
        cluster: Option<&Cluster>,
    ) -> Result<(), ActError> {
        let Some(c) = cluster else { return Ok(()) };
        if !self.dynamic(Some(c)).failsafe_mode {
            if c.failsafe.is_some() {
                self.dcs
                    .delete(&self.keys.failsafe())
                    .await
                    .map_err(failed)?;
            }
            return Ok(());
        }
        let mut wanted: std::collections::BTreeMap<String, String> = c
            .members
            .iter()
            .map(|(n, m)| (n.clone(), m.value.api_url.clone()))
            .collect();
        wanted.insert(self.cfg.name.clone(), self.cfg.restapi.api_url());
        if c.failsafe.as_ref() != Some(&wanted) {
            let body = serde_json::to_vec(&wanted).map_err(failed)?;
            self.dcs
                .put(&self.keys.failsafe(), body, None)
                .await
                .map_err(failed)?;
        }
        self.failsafe_written = Some(wanted);
        Ok(())
    }
}
