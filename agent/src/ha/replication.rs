//! Synchronous replication on the leader, carried out: `synchronous_mode: on` through
//! [`warden_pg::sync::plan`], `quorum` through [`warden_pg::quorum::plan`], each changing
//! `synchronous_standby_names` and the `/sync` key in the order its plan gives.

use super::execute::ActError;
use super::observation::Observation;
use super::run::Agent;
use super::Pg;
use std::collections::BTreeSet;
use warden_consensus::dynamic_config::SynchronousMode;
use warden_consensus::types::SyncState;
use warden_consensus::{Cluster, DynamicConfig, Versioned};
use warden_pg::quorum::{self, Names, Step};
use warden_pg::sql::Probe;
use warden_pg::sync::{Standby, SyncSettings, SyncTags};

fn failed(e: impl std::fmt::Display) -> ActError {
    ActError::Failed(e.to_string())
}

impl<D: Pg> Agent<D> {
    /// Synchronous mode on the leader, once per turn. With synchronous mode off, drops
    /// both `/sync` (if ours) and our `synchronous_standby_names`.
    pub(super) async fn sync_replication(&mut self, obs: &Observation) -> Result<(), ActError> {
        self.watched_standbys.clear();
        self.sync_recheck = false;
        let Some(c) = obs.cluster.as_ref() else {
            return Ok(());
        };
        let d = self.dynamic(Some(c));
        if !d.synchronous_mode.is_enabled() {
            self.names_mark = None;
            return self.sync_off(c).await;
        }
        let Some(probe) = obs.local.engine.probe.as_ref().filter(|p| !p.in_recovery) else {
            return Ok(());
        };
        let standbys = standbys(c, probe);
        let settings = SyncSettings {
            mode: d.synchronous_mode,
            strict: d.synchronous_mode_strict,
            node_count: d.synchronous_node_count,
            max_lag: d.maximum_lag_on_syncnode,
        };
        let result = if d.synchronous_mode == SynchronousMode::Quorum {
            self.quorum_replication(c, probe, &standbys, &d).await
        } else {
            self.sync_on(c, probe, &standbys, settings).await
        };
        // Watch the standbys the names now in place depend on (see `standby_watch`).
        if let Some(names) = &self.sync_names {
            self.watched_standbys = super::standby_watch::watch_list(names, &probe.replication);
        }
        result
    }

    async fn sync_off(&mut self, c: &Cluster) -> Result<(), ActError> {
        if self.sync_names.take().is_some() {
            tracing::info!(
                "synchronous mode is off: back to the configured synchronous_standby_names"
            );
            self.configure(Some(c), None).await?;
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

    /// `synchronous_mode: on`: shrink `/sync`, then `synchronous_standby_names`, then grow
    /// `/sync` — one key write per turn (the next turn reads the new revision).
    async fn sync_on(
        &mut self,
        c: &Cluster,
        probe: &Probe,
        standbys: &[Standby],
        settings: SyncSettings,
    ) -> Result<(), ActError> {
        let mine = self.my_sync_key(c);
        let in_key: Vec<String> = mine
            .map(|s| s.value.standbys().iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        // A quorum left by quorum mode does not mean every listed standby has every
        // commit, which is what `on` reads into the list: start it afresh.
        let from_quorum = mine.is_some_and(|s| s.value.quorum.unwrap_or(0) > 0);
        let plan = warden_pg::sync::plan(standbys, &in_key, settings);
        let wanted = warden_pg::sync::pick(standbys, settings);
        // /sync must name us as leader before anything else relies on it.
        if mine.is_none() || from_quorum {
            tracing::warn!("claiming /sync for this leader, with no synchronous standby yet");
            self.sync_recheck = true;
            return self.write_sync_key(c, &[]).await;
        }
        if let Some(set) = &plan.shrink_key_to {
            tracing::warn!(standbys = ?set, "synchronous standbys in /sync reduced");
            self.sync_recheck = true;
            return self.write_sync_key(c, set).await;
        }
        if self.sync_names.as_deref() != Some(plan.names.as_str()) {
            tracing::info!(names = %plan.names, "setting synchronous_standby_names");
            self.sync_names = Some(plan.names.clone());
            self.names_mark = None;
            self.configure(Some(c), None).await?;
        }
        let mut in_key_now = in_key;
        in_key_now.sort();
        let grow = match &plan.grow_key_to {
            Some(set) => {
                self.confirmed_growth(probe, &in_key_now, set, &plan.names)
                    .await?
            }
            None => None,
        };
        if let Some(set) = &grow {
            tracing::info!(standbys = ?set, "synchronous standbys confirmed; recording them in /sync");
            self.write_sync_key(c, set).await?;
            in_key_now.clone_from(set);
        }
        // A standby named but not confirmed yet: look again in a second, not a loop_wait.
        self.sync_recheck = in_key_now != wanted;
        Ok(())
    }

    /// The `synchronous_standby_names` PostgreSQL enforces, and their mark: the WAL
    /// flush position when we first saw them in force. A standby flushed past the mark
    /// holds every commit acknowledged before them.
    async fn names_in_force(&mut self) -> Result<(String, u64), ActError> {
        let (text, flush) = self
            .db
            .pg()
            .sql()
            .sync_names_in_force()
            .await
            .map_err(|e| failed(format!("cannot read synchronous_standby_names: {e}")))?;
        match &self.names_mark {
            Some((t, mark)) if *t == text => Ok((text, *mark)),
            _ => {
                self.names_mark = Some((text.clone(), flush));
                Ok((text, flush))
            }
        }
    }

    /// The part of a planned `/sync` growth that is safe now. PostgreSQL reports a
    /// standby `sync` as soon as the names list it, but commits acknowledged before
    /// those names took effect may not be on it: a new standby joins `/sync` only once
    /// it flushed past the primary's flush position of the moment we first saw the
    /// names in force (a later moment than they took effect, so on the safe side).
    async fn confirmed_growth(
        &mut self,
        probe: &Probe,
        in_key: &[String],
        planned: &[String],
        names: &str,
    ) -> Result<Option<Vec<String>>, ActError> {
        let (text, mark) = self.names_in_force().await?;
        let mark = (text == names).then_some(mark);
        let flushed = |name: &str| {
            probe.replication.iter().any(|r| {
                r.application_name.as_deref() == Some(name)
                    && matches!((r.flush_lsn, mark), (Some(f), Some(m)) if f >= m)
            })
        };
        let set: Vec<String> = planned
            .iter()
            .filter(|n| in_key.contains(n) || flushed(n))
            .cloned()
            .collect();
        Ok((set.as_slice() != in_key).then_some(set))
    }

    /// `synchronous_mode: quorum`: reads the names PostgreSQL enforces (and takes their
    /// mark), then carries out [`quorum::plan`]'s steps in order.
    async fn quorum_replication(
        &mut self,
        c: &Cluster,
        probe: &Probe,
        standbys: &[Standby],
        d: &DynamicConfig,
    ) -> Result<(), ActError> {
        let (text, mark) = self.names_in_force().await?;
        let in_force = Names::parse(&text).unwrap_or_else(|| {
            tracing::warn!(names = %text, "cannot parse synchronous_standby_names; treating it as asynchronous");
            Names::none()
        });
        // The probe's flush positions are older than the mark: at worst too low.
        let confirmed: BTreeSet<String> = probe
            .replication
            .iter()
            .filter(|r| r.flush_lsn.is_some_and(|f| f >= mark))
            .filter_map(|r| r.application_name.clone())
            .collect();
        // Settled: what we set is what PostgreSQL enforces (no reload pending). A fresh
        // leader (after a restart) keeps what is in force until its plan changes it.
        let settled = self.sync_names.as_deref().and_then(Names::parse).as_ref() == Some(&in_force);
        if self.sync_names.is_none() {
            self.sync_names = Some(text);
        }
        let settings = SyncSettings {
            mode: d.synchronous_mode,
            strict: d.synchronous_mode_strict,
            node_count: d.synchronous_node_count,
            max_lag: d.maximum_lag_on_syncnode,
        };
        let input = quorum::Input {
            key: self.my_sync_key(c).map(|s| quorum::Key {
                quorum: usize::try_from(s.value.quorum.unwrap_or(0)).unwrap_or(usize::MAX),
                voters: s.value.standbys().iter().map(|n| n.to_string()).collect(),
            }),
            in_force,
            settled,
            active: quorum::pick(standbys, settings),
            confirmed,
            node_count: d.synchronous_node_count,
            strict: d.synchronous_mode_strict,
        };
        let plan = quorum::plan(&input);
        self.sync_recheck = plan.pending;
        for step in plan.steps {
            match step {
                Step::Key(k) => {
                    tracing::info!(quorum = k.quorum, voters = ?k.voters, "quorum commit: writing /sync");
                    let voters: Vec<String> = k.voters.into_iter().collect();
                    self.write_sync_state(c, k.quorum, &voters).await?;
                }
                Step::Names(n) => {
                    let names = n.render();
                    tracing::info!(names = %names, "quorum commit: setting synchronous_standby_names");
                    self.sync_names = Some(names);
                    // A fresh mark once these are seen in force, even if the same text
                    // was in force before (it may have been replaced meanwhile).
                    self.names_mark = None;
                    self.configure(Some(c), None).await?;
                }
            }
        }
        Ok(())
    }

    /// `/sync`, if it names us as leader.
    fn my_sync_key<'c>(&self, c: &'c Cluster) -> Option<&'c Versioned<SyncState>> {
        c.sync
            .as_ref()
            .filter(|s| s.value.leader.as_deref() == Some(self.cfg.name.as_str()))
    }

    /// Writes `/sync` = us as leader with `standbys` and quorum 0 (every listed standby
    /// has every commit), by compare-and-swap on what we read.
    pub(super) async fn write_sync_key(
        &self,
        c: &Cluster,
        standbys: &[String],
    ) -> Result<(), ActError> {
        self.write_sync_state(c, 0, standbys).await
    }

    /// Writes `/sync` = us as leader, `quorum` and `standbys` (sorted, comma-joined, as
    /// Patroni writes it), by compare-and-swap on the revision we read.
    async fn write_sync_state(
        &self,
        c: &Cluster,
        quorum: usize,
        standbys: &[String],
    ) -> Result<(), ActError> {
        let mut sorted = standbys.to_vec();
        sorted.sort();
        let value = SyncState {
            leader: Some(self.cfg.name.clone()),
            quorum: Some(u32::try_from(quorum).map_err(failed)?),
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

/// The cluster members among the standbys connected to us, with their tags.
fn standbys(c: &Cluster, probe: &Probe) -> Vec<Standby> {
    let leader_wal = probe.wal_position.unwrap_or(0);
    probe
        .replication
        .iter()
        .filter_map(|row| {
            Standby::from_row(row, leader_wal, |name| {
                let m = c.member(name)?;
                let priority = m
                    .tags
                    .as_ref()
                    .and_then(|t| t.get("sync_priority"))
                    .and_then(serde_json::Value::as_u64)
                    .map_or(1, |p| u32::try_from(p).unwrap_or(u32::MAX));
                Some(SyncTags {
                    nosync: m.tag_bool("nosync"),
                    nofailover: m.tag_bool("nofailover")
                        || m.tags
                            .as_ref()
                            .and_then(|t| t.get("failover_priority"))
                            .and_then(serde_json::Value::as_u64)
                            == Some(0),
                    priority,
                })
            })
        })
        .collect()
}
