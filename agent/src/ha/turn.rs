//! One turn of the HA loop, phase by phase: renew the lease, read the DCS, check our
//! leadership, observe (local probe, operator request, peers, timers), decide, act
//! (stopping at the first failed action), answer the request, publish and report.

use super::execute::ActError;
use super::observation::{Local, ManualTask, Observation, Tags};
use super::request::Reply;
use super::run::{Agent, Fatal};
use super::LocalEngine;
use super::{decide, Action, Decision};
use crate::probe::EngineFacts as _;
use std::time::Duration;
use tokio::sync::oneshot;
use warden_consensus::Cluster;
use warden_ha::DataState;

/// The operator request being carried out this turn, and where its answer goes.
type PendingReply = Option<(oneshot::Sender<Reply>, ManualTask)>;

impl<D: LocalEngine> Agent<D> {
    /// One turn. Returns the cluster view it acted on.
    pub(super) async fn turn(&mut self) -> Result<Option<Cluster>, Fatal> {
        let cluster_cfg = self.shared.snapshot().cluster;
        let ttl = self.dynamic(cluster_cfg.as_deref()).ttl_duration();
        let lease_renewed = self.refresh_lease(ttl).await;
        self.renewed_this_turn = lease_renewed;
        let cluster = self.read_cluster().await;
        let now = self.env.clock.now();
        self.transitions
            .observe(cluster.as_ref(), &self.cfg.name, now);
        self.check_leadership(cluster.as_ref());
        self.apply_dynamic(cluster.as_ref());
        let (obs, reply) = self
            .observe(cluster, cluster_cfg.as_deref(), lease_renewed, ttl)
            .await;
        let d = decide(&obs);
        if d.note != self.last_note {
            tracing::info!(note = %d.note, "decision");
            self.last_note.clone_from(&d.note);
        }
        let (changed_local, outcome) = self.act(&d, &obs, ttl).await?;
        answer_request(reply, &d, outcome);
        let Observation { cluster, local, .. } = obs;
        let local = if changed_local {
            self.observe_local(cluster.as_ref()).await
        } else {
            local
        };
        self.write_transition(&local);
        if !self.holds_leader {
            // Not leading: the watchdog is disarmed (magic close) when dropped.
            self.watchdog = None;
            // Synchronous replication state is the leader's; a later leadership starts
            // afresh (an old mark would count stale flushes as confirmation).
            self.db.not_leading();
            self.sync_recheck = false;
        }
        self.publish(cluster.as_ref(), &local, &d.note).await;
        self.feed_guard(ttl).await;
        self.report_turn(cluster.as_ref(), &local, ttl);
        Ok(cluster)
    }

    /// This turn's DCS view; `None` when it cannot be read. Invalid values are logged
    /// once per change and otherwise ignored.
    async fn read_cluster(&mut self) -> Option<Cluster> {
        match self.dcs.get_prefix(self.keys.prefix()).await {
            Ok(snap) => {
                let mut c = Cluster::from_snapshot(&self.keys, &snap);
                self.keep_valid_config(&mut c);
                if c.errors != self.last_errors {
                    for e in &c.errors {
                        tracing::warn!(problem = %e, "ignoring an invalid DCS value");
                    }
                    self.last_errors = c.errors.clone();
                }
                if self.failsafe_shown {
                    self.shared.update(|s| s.failsafe_confirmed_at = None);
                    self.failsafe_shown = false;
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the DCS");
                None
            }
        }
    }

    /// A `config` key that cannot be read (a bad value written by hand or by another
    /// tool) does not send the agent back to `bootstrap.dcs`: that would drop a runtime
    /// `pause`, failsafe or synchronous mode. The last valid configuration stays in
    /// force; with none seen yet, `bootstrap.dcs` applies in maintenance mode (no
    /// automatic action) until the key is fixed. The bad sub-key is in `c.errors`.
    fn keep_valid_config(&mut self, c: &mut Cluster) {
        if !c.config_invalid {
            self.last_valid_config.clone_from(&c.config);
            return;
        }
        c.config = Some(match &self.last_valid_config {
            Some(last) => last.clone(),
            None => {
                let mut value = self.cfg.bootstrap.dcs.clone();
                value.pause = true;
                warden_consensus::Versioned {
                    value,
                    mod_revision: 0,
                }
            }
        });
    }

    /// We lead only while our deadline is valid and the DCS shows our key.
    fn check_leadership(&mut self, cluster: Option<&Cluster>) {
        if self.holds_leader && !self.shared.deadline.valid_at(self.now_std()) {
            // The deadline passed (and the fence timer acted): we lead again only after
            // a successful renewal.
            self.holds_leader = false;
        }
        if let Some(c) = cluster {
            if c.leader_name() != Some(self.cfg.name.as_str()) && self.holds_leader {
                tracing::warn!(leader = ?c.leader_name(), "the DCS no longer shows us as leader");
                self.holds_leader = false;
                self.shared.deadline.clear();
            }
        }
    }

    /// Everything the decision needs: the local probe, an operator request, peers
    /// (during a race or a due switchover), the timers and failsafe confirmations.
    async fn observe(
        &mut self,
        cluster: Option<Cluster>,
        cluster_cfg: Option<&Cluster>,
        lease_renewed: bool,
        ttl: Duration,
    ) -> (Observation<D::Facts>, PendingReply) {
        let local = self.observe_local(cluster.as_ref()).await;
        let (manual, reply) = self.take_request(cluster.as_ref(), &local).await;
        // Publish the fresh probe before any race: peers racing at the same moment read
        // our WAL position from /patroni, and a turn-old value would mislead them.
        let server_pid = self.db.server_pid();
        self.shared.update(|s| {
            s.running = local.running;
            s.server_pid = server_pid;
            s.probe = local.engine.probe();
        });
        let peers = self.gather_peers(cluster.as_ref(), &local).await;
        self.track_timers(cluster.as_ref(), &local);
        let primary_ok = local.db().is_some_and(|d| d.writable);
        let failsafe_confirmed = self
            .failsafe_round(cluster.as_ref(), cluster_cfg, primary_ok)
            .await;
        let failsafe_leader_active = self
            .shared
            .snapshot()
            .failsafe_leader
            .is_some_and(|(_, at)| self.now_std().saturating_duration_since(at) < ttl);
        let obs = Observation {
            now: chrono::Utc::now(),
            manual,
            me: self.cfg.name.clone(),
            tags: Tags {
                nofailover: !self.cfg.tags.can_failover(),
                failover_priority: self.cfg.tags.failover_priority,
                clonefrom: self.cfg.tags.clonefrom,
                nostream: self.cfg.tags.nostream,
            },
            cluster,
            lease_renewed,
            lease_valid: self.shared.deadline.valid_at(self.now_std()),
            local,
            peers,
            bootstrapped_here: self.bootstrapped_here,
            primary_down_for: self.primary_down_since.map(|t| self.since(t)),
            failsafe_confirmed,
            failsafe_leader_active,
            watchdog_missing: self.watchdog_missing.clone(),
            not_streaming_for: self
                .not_streaming_since
                .as_ref()
                .map(|(t, _)| self.since(*t)),
            local_standby_cluster: self.cfg.bootstrap.dcs.is_standby_cluster(),
        };
        (obs, reply)
    }

    /// Peers' `/patroni`, only when a race is possible (the key is vacant and we are a
    /// replica) or our switchover is due (to check the candidate).
    async fn gather_peers(
        &self,
        cluster: Option<&Cluster>,
        local: &Local<D::Facts>,
    ) -> Vec<warden_ha::Peer> {
        let Some(c) = cluster else { return Vec::new() };
        let named_candidate = c.failover.as_ref().and_then(|f| f.value.member.as_deref())
            == Some(self.cfg.name.as_str());
        let race_possible = c.leader.is_none()
            && c.initialize.is_some()
            && local.db().is_some_and(|d| !d.writable)
            // The named candidate of a switchover does not compare itself with peers,
            // unless quorum commit needs their votes.
            && (!named_candidate || super::race::candidate_needs_votes(c));
        let switchover_due = c.leader_name() == Some(self.cfg.name.as_str())
            && switchover_due(c, chrono::Utc::now());
        if race_possible || switchover_due {
            self.env.peers.probe(&self.cfg.name, c).await
        } else {
            Vec::new()
        }
    }

    /// How long our primary has been down while we lead, and how long our replica has
    /// gone without streaming from the current leader.
    fn track_timers(&mut self, cluster: Option<&Cluster>, local: &Local<D::Facts>) {
        let leads = cluster.and_then(Cluster::leader_name) == Some(self.cfg.name.as_str());
        let primary_ok = local.db().is_some_and(|d| d.writable);
        // A standby leader runs read-only by design: its primary is not "down".
        if leads && !primary_ok && !self.standby_cluster && local.data == DataState::Initialized {
            let now = self.env.clock.now();
            self.primary_down_since.get_or_insert(now);
        } else {
            self.primary_down_since = None;
        }
        let not_streaming = local.db().is_some_and(|d| !d.writable && !d.streaming);
        if !not_streaming {
            self.not_streaming_since = None;
            return;
        }
        // Measured per leader: time spent without an upstream before this leader
        // existed says nothing about whether we can stream from it.
        let leader = cluster.and_then(|c| c.leader_name().map(str::to_string));
        if self
            .not_streaming_since
            .as_ref()
            .is_none_or(|(_, l)| *l != leader)
        {
            self.not_streaming_since = Some((self.env.clock.now(), leader));
        }
    }

    /// Carries out the decision's actions in order, stopping at the first failure.
    /// Returns whether the local database changed (so it is probed again) and the
    /// outcome for an operator waiting on a restart.
    async fn act(
        &mut self,
        d: &Decision,
        obs: &Observation<D::Facts>,
        ttl: Duration,
    ) -> Result<(bool, Result<(), String>), Fatal> {
        let mut changed_local = false;
        for action in &d.actions {
            changed_local |= matches!(
                action,
                Action::Bootstrap
                    | Action::Clone { .. }
                    | Action::Start(_)
                    | Action::Promote { .. }
                    | Action::Demote { .. }
            );
            let result = self.execute(action, obs).await;
            // Re-arm the guard after every step, not only at the end of the turn: if
            // the agent freezes right after a promotion, its new primary is covered.
            self.feed_guard(ttl).await;
            match result {
                Ok(()) => {}
                Err(ActError::Fatal(msg)) => return Err(Fatal(msg)),
                Err(ActError::Failed(msg)) => {
                    tracing::warn!(action = ?action, error = %msg, "action failed; skipping the rest of this turn");
                    return Ok((changed_local, Err(msg)));
                }
            }
        }
        Ok((changed_local, Ok(())))
    }
}

/// Tells the operator waiting on a restart or reinitialize how it went.
fn answer_request(reply: PendingReply, d: &Decision, outcome: Result<(), String>) {
    let Some((tx, what)) = reply else { return };
    let restarted = d
        .actions
        .iter()
        .any(|a| matches!(a, Action::Restart { .. }));
    let answer = match (what, outcome) {
        (ManualTask::Restart { .. }, Ok(())) if restarted => {
            Ok("restarted successfully".to_string())
        }
        (ManualTask::Restart { .. }, Ok(())) => {
            Err((503, format!("restart not carried out: {}", d.note)))
        }
        (ManualTask::Restart { .. }, Err(e)) => {
            // Patroni's text; the cause goes to the log.
            tracing::warn!(error = %e, "restart failed");
            Err((503, "restart failed".to_string()))
        }
        (ManualTask::Reinitialize { .. }, _) => Ok("reinitialize started".to_string()),
    };
    let _ = tx.send(answer);
}

/// The leader's switchover request is due now (or has no schedule).
fn switchover_due(c: &Cluster, now: chrono::DateTime<chrono::Utc>) -> bool {
    c.failover
        .as_ref()
        .filter(|f| !f.value.is_empty())
        .is_some_and(|f| match f.value.scheduled_at.as_deref() {
            None => true,
            Some(t) => chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|at| at <= now),
        })
}
