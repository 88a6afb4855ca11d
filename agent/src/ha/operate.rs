//! Carrying out operator actions: the coordinated switchover hand-over, restarts,
//! reinitialisation, and clearing the `failover` key.

use super::execute::{keep_lease_during, ActError};
use super::observation::{Observation, Tags};
use super::run::Agent;
use std::time::Duration;
use tokio::time::Instant;
use warden_api::client as http_client;
use warden_consensus::types::MemberState;
use warden_consensus::types::Status;
use warden_consensus::Cluster;
use warden_ha::{Database, RoleConfig, StopMode};
use warden_pg::lsn::Lsn;

use super::LocalEngine;

/// How long the candidate has to report that it received our shutdown checkpoint.
const HANDOVER_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
const HANDOVER_POLL: Duration = Duration::from_millis(25);
const CANDIDATE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// A hold on writes outlasts the candidate's confirmation by this much, so it never
/// lifts by itself while the hand-over is still deciding.
const PAUSE_MARGIN: Duration = Duration::from_secs(5);
/// A hand-over with writes held gives up this long before our lease deadline, so that
/// resuming writes comes before the fence.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);
/// A restart without its own `timeout` waits this long for PostgreSQL to come back.
const DEFAULT_RESTART_TIMEOUT: Duration = Duration::from_secs(120);

fn failed(e: impl std::fmt::Display) -> ActError {
    ActError::Failed(e.to_string())
}

impl<D: LocalEngine> Agent<D> {
    /// The planned switchover from this primary to `candidate` (DESIGN §3): no write is
    /// acknowledged after the shutdown checkpoint, the candidate confirms it holds that
    /// checkpoint before the key is released, so nothing acknowledged is lost and the old
    /// primary can follow the new one without a rewind.
    pub(super) async fn hand_over(
        &mut self,
        candidate: &str,
        obs: &Observation<D::Facts>,
    ) -> Result<(), ActError> {
        let cluster = obs.cluster.as_ref();
        let api = cluster
            .and_then(|c| c.member(candidate))
            .map(|m| m.api_url.clone())
            .ok_or_else(|| failed(format!("candidate {candidate} is not a member")))?;
        let dynamic = self.dynamic(cluster);
        let lease = self.lease.map(|(id, _)| id);
        // An engine that can hold writes without stopping (Redis) hands over running.
        let bound = HANDOVER_CONFIRM_TIMEOUT + PAUSE_MARGIN;
        let paused = self
            .db
            .pause_for_handover(bound)
            .await
            .map_err(|e| failed(format!("switchover: holding writes failed: {e}")))?;
        if let Some(position) = paused {
            return self.hand_over_paused(candidate, obs, &api, position).await;
        }
        // A standby leader (standby cluster) writes nothing of its own: the candidate
        // needs what we received from the remote, which we know before stopping (a
        // standby's shutdown writes no checkpoint record of its own).
        let standby = self.standby_cluster;
        let received = obs.local.db().and_then(|d| d.position).unwrap_or(0);
        if standby {
            tracing::warn!(
                candidate,
                "switchover in a standby cluster: shutting down the standby leader"
            );
        } else {
            tracing::warn!(
                candidate,
                "switchover: checkpoint, then shut down the primary"
            );
            // A checkpoint now makes the shutdown checkpoint (taken while writes are
            // already refused) short.
            self.db
                .checkpoint(CHECKPOINT_TIMEOUT)
                .await
                .map_err(|e| failed(format!("switchover: CHECKPOINT failed: {e}")))?;
        }

        // From here on we are no primary for anyone: health checks answer 503 at once.
        self.shared.deadline.clear();
        self.state = MemberState::Stopping;
        self.shared.update(|s| {
            s.is_leader = false;
            s.probe = None;
            s.state = MemberState::Stopping;
        });
        let stop = self.db.stop(StopMode::Fast, STOP_TIMEOUT);
        keep_lease_during(self.dcs.clone(), lease, dynamic.loop_wait, stop)
            .await
            .map_err(|e| failed(format!("switchover: stopping the primary failed: {e}")))?;
        self.state = MemberState::Stopped;

        let (checkpoint, confirm_past) = if standby {
            // The candidate confirms it has everything we had: past the byte before.
            (Lsn(received), received.saturating_sub(1))
        } else {
            let c = self.shutdown_checkpoint().await?;
            (c, c.0)
        };
        tracing::info!(%checkpoint, candidate, "stopped; waiting for the candidate to confirm our last position");
        // Racers compare themselves with the last leader position: make it exact.
        self.publish_optime(cluster, checkpoint.0).await;

        let conn = cluster
            .and_then(|c| c.member(candidate))
            .and_then(warden_consensus::types::Member::conn_host_port);
        let confirmed = keep_lease_during(
            self.dcs.clone(),
            lease,
            dynamic.loop_wait,
            wait_for_position(&self.db, &api, conn, confirm_past, HANDOVER_CONFIRM_TIMEOUT),
        )
        .await;
        if let Err(why) = confirmed {
            self.clear_failover(cluster).await;
            if standby {
                tracing::error!(candidate, reason = %why, "switchover aborted: restarting as the standby leader");
                let remote = self.remote_source(cluster);
                self.write_config(
                    cluster,
                    &RoleConfig::Replica {
                        source: Some(remote),
                    },
                )?;
                self.db.start().map_err(failed)?;
                self.state = MemberState::Starting;
                return Err(failed(format!(
                    "switchover to {candidate} aborted: {why}; restarted as the standby leader"
                )));
            }
            tracing::error!(candidate, reason = %why, "switchover aborted: restarting as primary");
            self.write_config(cluster, &RoleConfig::Primary)?;
            self.db.start().map_err(failed)?;
            self.state = MemberState::Starting;
            return Err(failed(format!(
                "switchover to {candidate} aborted: {why}; restarted as primary"
            )));
        }

        self.mark_handover(cluster, checkpoint.0).await;
        match self
            .dcs
            .delete_if_value(&self.keys.leader(), self.cfg.name.as_bytes())
            .await
        {
            Ok(_) => tracing::warn!(candidate, "switchover: leader key released"),
            Err(e) => {
                tracing::error!(error = %e, "switchover: could not release the leader key; it expires with our lease")
            }
        }
        self.holds_leader = false;
        self.watchdog = None;
        // The candidate has every byte of our WAL: nothing to rewind.
        self.rewound = true;
        let role = RoleConfig::Replica {
            source: self.source(candidate, cluster),
        };
        self.write_config(cluster, &role)?;
        self.db.start().map_err(failed)?;
        self.state = MemberState::Starting;
        self.callbacks.fire("on_role_change", "replica");
        Ok(())
    }

    /// The hand-over of an engine whose server keeps running with writes held
    /// ([`Database::pause_for_handover`]): the candidate confirms it holds `position`,
    /// the key is released, this server follows no one (the next turn points it at the
    /// new leader), and the held writes are released to be refused and their clients
    /// disconnected. If the candidate does not confirm in time, writes resume here
    /// under the key we never gave up.
    async fn hand_over_paused(
        &mut self,
        candidate: &str,
        obs: &Observation<D::Facts>,
        api: &str,
        position: u64,
    ) -> Result<(), ActError> {
        let cluster = obs.cluster.as_ref();
        let lease = self.lease.map(|(id, _)| id);
        let loop_wait = self.dynamic(cluster).loop_wait;
        tracing::warn!(
            candidate,
            position,
            "switchover: writes held; waiting for the candidate"
        );
        // Health checks stop routing writes here at once.
        self.shared.update(|s| s.is_leader = false);
        self.publish_optime(cluster, position).await;
        let conn = cluster
            .and_then(|c| c.member(candidate))
            .and_then(warden_consensus::types::Member::conn_host_port);
        // The server keeps running as the primary meanwhile, so the wait must end before
        // our local lease deadline: past it the fence would demote it (and the guard
        // kill it) in the middle of the hand-over, and an abort could not resume.
        let limit = self
            .shared
            .deadline
            .deadline()
            .map_or(HANDOVER_CONFIRM_TIMEOUT, |d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .saturating_sub(DEADLINE_MARGIN)
            })
            .min(HANDOVER_CONFIRM_TIMEOUT);
        let confirmed = keep_lease_during(
            self.dcs.clone(),
            lease,
            loop_wait,
            wait_for_position(&self.db, api, conn, position, limit),
        )
        .await;
        if let Err(why) = confirmed {
            tracing::error!(candidate, reason = %why, "switchover aborted: resuming writes as primary");
            self.clear_failover(cluster).await;
            let resumed = self.db.resume_writes(false).await;
            self.shared.update(|s| s.is_leader = true);
            resumed.map_err(|e| {
                failed(format!(
                    "switchover aborted, and resuming writes failed: {e}"
                ))
            })?;
            return Err(failed(format!(
                "switchover to {candidate} aborted: {why}; writes resumed here"
            )));
        }
        self.mark_handover(cluster, position).await;
        match self
            .dcs
            .delete_if_value(&self.keys.leader(), self.cfg.name.as_bytes())
            .await
        {
            Ok(_) => tracing::warn!(candidate, "switchover: leader key released"),
            Err(e) => {
                tracing::error!(error = %e, "switchover: could not release the leader key; it expires with our lease")
            }
        }
        self.holds_leader = false;
        self.watchdog = None;
        self.shared.deadline.clear();
        // No source yet: the candidate may not have promoted, and following a replica
        // that follows us would make a loop; the next turn points us at the leader.
        self.write_config(cluster, &RoleConfig::Replica { source: None })?;
        let demoted = self.db.reload().await;
        let resumed = self.db.resume_writes(true).await;
        demoted.map_err(|e| failed(format!("switchover: following no one failed: {e}")))?;
        resumed.map_err(|e| failed(format!("switchover: releasing held writes failed: {e}")))?;
        self.callbacks.fire("on_role_change", "replica");
        Ok(())
    }

    /// Tells the candidate (in the failover key) that it was confirmed to hold `lsn`,
    /// the shutdown checkpoint: under quorum commit it then needs no votes. Without
    /// this mark it asks for votes, which is slower but just as safe.
    async fn mark_handover(&self, cluster: Option<&Cluster>, lsn: u64) {
        let Some(f) = cluster.and_then(|c| c.failover.as_ref()) else {
            return;
        };
        let mut value = f.value.clone();
        value.set_handover_lsn(lsn);
        let written = match serde_json::to_vec(&value) {
            Ok(body) => {
                self.dcs
                    .compare_and_swap(&self.keys.failover(), body, f.mod_revision, None)
                    .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "switchover: cannot encode the failover key");
                return;
            }
        };
        match written {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "switchover: the failover key changed meanwhile; the candidate will ask for votes"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "switchover: could not mark the hand-over in the failover key")
            }
        }
    }

    /// The location of the checkpoint written by a clean shutdown.
    async fn shutdown_checkpoint(&self) -> Result<Lsn, ActError> {
        self.db
            .shutdown_position()
            .await
            .map(Lsn)
            .map_err(|e| failed(format!("switchover: {e}")))
    }

    async fn publish_optime(&self, cluster: Option<&Cluster>, optime: u64) {
        let mut status = cluster.and_then(|c| c.status.clone()).unwrap_or_default();
        status.optime = Some(optime);
        let status: Status = status;
        match serde_json::to_vec(&status) {
            Ok(body) => {
                if let Err(e) = self.dcs.put(&self.keys.status(), body, None).await {
                    tracing::warn!(error = %e, "could not publish the shutdown checkpoint as optime");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode status"),
        }
    }

    /// Writes `{}` to the `failover` key if it still holds what we read (Patroni clears
    /// it this way rather than deleting it).
    pub(super) async fn clear_failover(&self, cluster: Option<&Cluster>) {
        let Some(f) = cluster.and_then(|c| c.failover.as_ref()) else {
            return;
        };
        match self
            .dcs
            .compare_and_swap(&self.keys.failover(), b"{}".to_vec(), f.mod_revision, None)
            .await
        {
            Ok(true) => tracing::info!("cleared the failover key"),
            Ok(false) => tracing::info!("the failover key changed meanwhile; leaving it"),
            Err(e) => tracing::warn!(error = %e, "could not clear the failover key"),
        }
    }

    /// Restarts PostgreSQL in its current role and waits for it to accept connections.
    pub(super) async fn restart_postgres(
        &mut self,
        as_primary: bool,
        timeout: Option<Duration>,
        obs: &Observation<D::Facts>,
    ) -> Result<(), ActError> {
        let cluster = obs.cluster.as_ref();
        let timeout = timeout.unwrap_or(DEFAULT_RESTART_TIMEOUT);
        let dynamic = self.dynamic(cluster);
        let lease = self.lease.map(|(id, _)| id);
        // A standby cluster's leader comes back following the remote primary.
        let standby_leader = !as_primary && self.holds_leader && self.standby_cluster;
        let role = if as_primary {
            "primary"
        } else if standby_leader {
            "standby_leader"
        } else {
            "replica"
        };
        tracing::warn!(role, "restarting the database as requested");
        self.state = MemberState::Restarting;
        self.publish_state().await;
        let wanted = if as_primary {
            RoleConfig::Primary
        } else if standby_leader {
            RoleConfig::Replica {
                source: Some(self.remote_source(cluster)),
            }
        } else {
            let leader = cluster.and_then(Cluster::leader_name);
            RoleConfig::Replica {
                source: leader.and_then(|l| self.source(l, cluster)),
            }
        };
        let db = &mut self.db;
        let stop = async {
            db.stop(StopMode::Fast, STOP_TIMEOUT).await?;
            Ok::<_, D::Error>(())
        };
        keep_lease_during(self.dcs.clone(), lease, dynamic.loop_wait, stop)
            .await
            .map_err(|e| {
                self.state = MemberState::RestartFailed;
                failed(format!("restart: stopping PostgreSQL failed: {e}"))
            })?;
        self.write_config(cluster, &wanted)?;
        let db = &mut self.db;
        let start = async {
            db.start()?;
            db.wait_ready(timeout).await
        };
        let started = keep_lease_during(self.dcs.clone(), lease, dynamic.loop_wait, start).await;
        match started {
            Ok(()) => {
                self.state = MemberState::Running;
                self.callbacks.fire("on_restart", role);
                Ok(())
            }
            Err(e) => {
                self.state = MemberState::RestartFailed;
                Err(failed(format!("restart: {e}")))
            }
        }
    }

    /// Stops PostgreSQL, removes the data directory and clones it afresh from `from`.
    pub(super) async fn reinitialize(
        &mut self,
        from: &str,
        obs: &Observation<D::Facts>,
    ) -> Result<(), ActError> {
        tracing::warn!(
            from,
            "reinitializing: removing the data directory and cloning it again"
        );
        self.db
            .stop(StopMode::Immediate, STOP_TIMEOUT)
            .await
            .map_err(|e| failed(format!("reinitialize: stopping PostgreSQL failed: {e}")))?;
        self.db.remove_data().map_err(failed)?;
        self.system_identifier = None;
        self.clone_from(from, obs.cluster.as_ref()).await
    }
}

/// Polls the candidate until it reports WAL received past `position`: over SQL when we
/// can reach its PostgreSQL (its agent's `/patroni` is up to a loop old, which would
/// cost the switchover up to `loop_wait`), else through its `/patroni`.
async fn wait_for_position<D: Database + Sync>(
    db: &D,
    api_url: &str,
    conn: Option<(String, u16)>,
    position: u64,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut sql_works = conn.is_some();
    loop {
        if sql_works {
            if let Some((host, port)) = conn.as_ref() {
                match db.received_by(host, *port, CANDIDATE_PROBE_TIMEOUT).await {
                    Ok(lsn) if lsn > position => return Ok(()),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!(error = %e, "cannot ask the candidate's PostgreSQL; asking its REST API instead");
                        sql_works = false;
                    }
                }
            }
        }
        let last = match http_client::get_json(api_url, CANDIDATE_PROBE_TIMEOUT).await {
            Ok(body) => match super::peers::parse_status(&body, &Tags::default()) {
                // The record starting at `position` is complete only past it.
                Some(s) if s.position > position => return Ok(()),
                Some(s) if s.is_primary => return Err("the candidate runs as a primary".into()),
                Some(s) => format!("it has WAL up to {}", Lsn(s.position)),
                None => "its status has no WAL position".into(),
            },
            Err(e) => format!("it did not answer: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "the candidate did not confirm the shutdown checkpoint {} within {limit:?} ({last})",
                Lsn(position)
            ));
        }
        tokio::time::sleep(HANDOVER_POLL).await;
    }
}
