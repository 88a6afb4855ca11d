//! Carrying out the decision's actions through the DCS and PostgreSQL adapters.

use super::action::{Action, StartAs};
use super::observation::Observation;
use super::run::Agent;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::AbortOnDropHandle;
use warden_config::ReplicaMethod;
use warden_consensus::types::MemberState;
use warden_consensus::types::{HistoryEntry, Status};
use warden_consensus::Cluster;
use warden_consensus::{Dcs, LeaseId};
use warden_ha::Engine as _;
use warden_ha::{RepairOutcome, RoleConfig, Source, StopMode, SyncSetting};

use super::LocalEngine;

const CLONE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(120);
const REWIND_TIMEOUT: Duration = Duration::from_secs(3600);
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub enum ActError {
    /// The agent must stop.
    Fatal(String),
    /// This action failed; the rest of the turn is skipped.
    Failed(String),
}

pub(super) fn failed(e: impl std::fmt::Display) -> ActError {
    ActError::Failed(e.to_string())
}

impl<D: LocalEngine> Agent<D> {
    pub(super) async fn execute(
        &mut self,
        action: &Action,
        obs: &Observation<D::Facts>,
    ) -> Result<(), ActError> {
        let cluster = obs.cluster.as_ref();
        // A decision made before a freeze must not act on leadership that has since
        // lapsed: writable-primary actions need a valid local deadline right now.
        let needs_lease = matches!(
            action,
            Action::Promote { .. } | Action::Start(StartAs::Primary) | Action::WriteStatus
        );
        if needs_lease && !self.shared.deadline.valid_at(self.now_std()) {
            return Err(failed(
                "our lease deadline is not valid; refusing a leader-only action",
            ));
        }
        match action {
            Action::Fatal(msg) => Err(ActError::Fatal(msg.clone())),
            Action::HandOver { candidate } => self.hand_over(candidate, obs).await,
            Action::SyncReplication => self.sync_replication(obs).await,
            Action::ClearFailover => {
                self.clear_failover(cluster).await;
                Ok(())
            }
            Action::Restart {
                as_primary,
                timeout,
            } => self.restart_postgres(*as_primary, *timeout, obs).await,
            Action::Reinitialize { from } => self.reinitialize(from, obs).await,
            Action::RaceInitialize => self.race_initialize().await,
            Action::Bootstrap => self.bootstrap().await,
            Action::SetInitialize { system_identifier } => {
                self.set_initialize(system_identifier, cluster).await
            }
            Action::Clone { from } => self.clone_from(from, cluster).await,
            Action::AcquireLeader => self.acquire_leader(cluster).await,
            Action::RenewLeader => self.renew_leader().await,
            Action::Start(start_as) => self.start(start_as, cluster),
            Action::Promote { reason } => self.promote(reason, obs).await,
            Action::Demote { upstream } => self.demote(upstream.as_deref(), cluster).await,
            Action::FailsafeHold => {
                self.failsafe_hold(cluster);
                Ok(())
            }
            Action::ReleaseLeader => self.release_leader().await,
            Action::Repair { from } => self.repair(from, cluster).await,
            Action::Follow { leader } => {
                let role = RoleConfig::Replica {
                    source: self.stream_source(leader, cluster),
                };
                self.configure(cluster, &role).await?;
                self.retain_for_leader(leader, obs).await
            }
            Action::FollowRemote => {
                let role = RoleConfig::Replica {
                    source: Some(self.remote_source(cluster)),
                };
                // A replica restored from the repository that now leads the standby
                // cluster: `standby_cluster`'s recovery settings, not the restore's.
                if self.db.drop_restore_settings().map_err(failed)? {
                    self.db.reload().await.map_err(failed)?;
                }
                self.configure(cluster, &role).await
            }
            Action::StopPrimary => self.stop_primary().await,
            Action::RepairFromRemote => self.repair_from_remote(cluster).await,
            Action::ConfigurePrimary => self.configure(cluster, &RoleConfig::Primary).await,
            Action::Retain { members } => self.retain(members, obs).await,
            Action::WriteStatus => self.write_status(obs).await,
        }
    }
}

/// `members` less those tagged `nostream`: they never stream, so no slot is kept
/// for them anywhere (Patroni's rule).
fn streaming_members(c: &Cluster, members: &[String]) -> Vec<String> {
    members
        .iter()
        .filter(|m| !c.member(m).is_some_and(|m| m.tag_bool("nostream")))
        .cloned()
        .collect()
}

impl<D: LocalEngine> Agent<D> {
    fn start(&mut self, start_as: &StartAs, cluster: Option<&Cluster>) -> Result<(), ActError> {
        let role = match start_as {
            StartAs::Primary => RoleConfig::Primary,
            StartAs::Replica { upstream } => RoleConfig::Replica {
                source: upstream
                    .as_deref()
                    .and_then(|u| self.stream_source(u, cluster)),
            },
            StartAs::StandbyLeader => {
                // Patroni's rule: the standby leader's recovery settings are
                // `standby_cluster`'s; a restore's own (a copy's wal-fetch) would
                // shadow them.
                self.db.drop_restore_settings().map_err(failed)?;
                RoleConfig::Replica {
                    source: Some(self.remote_source(cluster)),
                }
            }
        };
        self.write_config(cluster, &role)?;
        self.db.start().map_err(failed)?;
        self.state = MemberState::Starting;
        let role = match start_as {
            StartAs::Primary => "primary",
            StartAs::Replica { .. } => "replica",
            StartAs::StandbyLeader => "standby_leader",
        };
        self.callbacks.fire("on_start", role);
        Ok(())
    }

    async fn demote(
        &mut self,
        upstream: Option<&str>,
        cluster: Option<&Cluster>,
    ) -> Result<(), ActError> {
        self.holds_leader = false;
        self.shared.deadline.clear();
        self.state = MemberState::Stopping;
        self.db
            .stop(StopMode::Fast, Duration::from_secs(60))
            .await
            .map_err(failed)?;
        self.state = MemberState::Stopped;
        tracing::warn!(?upstream, "demoted: PostgreSQL stopped");
        self.callbacks.fire("on_role_change", "replica");
        if upstream.is_none() {
            // No DCS: come back read-only at once, following nobody.
            self.write_config(cluster, &RoleConfig::Replica { source: None })?;
            self.db.start().map_err(failed)?;
            self.state = MemberState::Starting;
        }
        Ok(())
    }
}

impl<D: LocalEngine> Agent<D> {
    /// The remote primary of the standby cluster, from the dynamic config in force.
    pub(super) fn remote_source(&self, cluster: Option<&Cluster>) -> Source {
        let dynamic = self.dynamic(cluster);
        Source::remote(dynamic.standby_cluster.and_then(|s| s.address()))
    }

    /// The cluster became a standby cluster: stop our primary, keeping the leader key
    /// (the next turn starts it as the standby leader).
    async fn stop_primary(&mut self) -> Result<(), ActError> {
        self.state = MemberState::Stopping;
        self.publish_state().await;
        self.db
            .stop(StopMode::Fast, Duration::from_secs(60))
            .await
            .map_err(failed)?;
        self.state = MemberState::Stopped;
        tracing::warn!("the cluster became a standby cluster: primary stopped, restarting as the standby leader");
        self.callbacks.fire("on_role_change", "standby_leader");
        Ok(())
    }

    /// Repairs our data (a former primary) from the standby cluster's remote primary;
    /// if it cannot be repaired in place, copies the remote afresh (old data kept aside).
    async fn repair_from_remote(&mut self, cluster: Option<&Cluster>) -> Result<(), ActError> {
        let remote = self.remote_source(cluster);
        if !remote.streams() {
            // Nothing to rewind from: replaying the archive decides.
            self.rewound = true;
            return Ok(());
        }
        let outcome = self
            .db
            .repair(&remote.host, remote.port, REWIND_TIMEOUT)
            .await
            .map_err(failed)?;
        if let RepairOutcome::Unrepairable(e) = outcome {
            tracing::error!(error = %e, host = remote.host, port = remote.port, "pg_rewind from the remote primary failed; copying it afresh (the old data directory is kept aside)");
            let methods = self.standby_methods(cluster)?;
            self.clone_with(
                &methods,
                "the remote primary",
                &remote.host,
                remote.port,
                None,
            )
            .await?;
        }
        self.rewound = true;
        Ok(())
    }

    /// `standby_cluster.create_replica_methods` by name: `basebackup`, `warden_restore`
    /// (the newest backup in the member's `backup.repository`: the primary cluster's,
    /// for a standby fed from the repository alone), or a method of the member's
    /// `postgresql` section (default: `basebackup`).
    fn standby_methods(&self, cluster: Option<&Cluster>) -> Result<Vec<ReplicaMethod>, ActError> {
        let names = self
            .dynamic(cluster)
            .standby_cluster
            .map(|s| s.create_replica_methods)
            .unwrap_or_default();
        if names.is_empty() {
            return Ok(vec![ReplicaMethod::Basebackup]);
        }
        let configured = self
            .cfg
            .postgresql()
            .map(|pg| pg.create_replica_methods.clone())
            .unwrap_or_default();
        names
            .iter()
            .map(|n| match configured.iter().find(|m| m.name() == n) {
                Some(m) => Ok(m.clone()),
                None if n == "basebackup" => Ok(ReplicaMethod::Basebackup),
                None if n == "warden_restore" => Ok(ReplicaMethod::WardenRestore),
                None => Err(failed(format!(
                    "standby_cluster.create_replica_methods: {n} is neither basebackup, warden_restore nor a method of this member's postgresql section"
                ))),
            })
            .collect()
    }

    /// Bootstraps a new standby cluster: a copy of the remote primary (through
    /// `standby_cluster.create_replica_methods`), started following it.
    async fn bootstrap_standby(&mut self) -> Result<(), ActError> {
        let remote = self.remote_source(None);
        let methods = self.standby_methods(None)?;
        let from = if remote.streams() {
            "the remote primary"
        } else {
            "the primary cluster's repository"
        };
        self.clone_with(&methods, from, &remote.host, remote.port, None)
            .await?;
        self.start(&StartAs::StandbyLeader, None)?;
        self.db.wait_ready(START_TIMEOUT).await.map_err(failed)?;
        tracing::info!("bootstrapped a standby cluster from the remote primary");
        self.bootstrapped_here = true;
        self.state = MemberState::Running;
        Ok(())
    }

    /// Repairs our data from `from` ([`Database::repair`]; PostgreSQL: pg_rewind); if it
    /// cannot be repaired in place, clone afresh (the old data kept aside).
    async fn repair(&mut self, from: &str, cluster: Option<&Cluster>) -> Result<(), ActError> {
        let (host, port) = cluster
            .and_then(|c| c.member(from))
            .and_then(warden_consensus::types::Member::conn_host_port)
            .ok_or_else(|| failed(format!("member {from} has no usable conn_url")))?;
        let outcome = self
            .db
            .repair(&host, port, REWIND_TIMEOUT)
            .await
            .map_err(failed)?;
        if let RepairOutcome::Unrepairable(e) = outcome {
            tracing::error!(error = %e, from, "pg_rewind failed; cloning afresh (the old data directory is kept aside)");
            self.clone_from(from, cluster).await?;
        }
        self.rewound = true;
        Ok(())
    }
}

impl<D: LocalEngine> Agent<D> {
    /// Where to stream from when following `member` (`None`: it has no usable
    /// `conn_url`).
    /// Whom a replica of `leader` streams from (Patroni's rules): nobody with the
    /// `nostream` tag (it replays the archive only, through `restore_command`); the
    /// member `replicatefrom` names while that member's key exists (cascading
    /// replication); else the leader.
    pub(super) fn stream_source(&self, leader: &str, cluster: Option<&Cluster>) -> Option<Source> {
        let tags = &self.cfg.tags;
        if tags.nostream {
            return None;
        }
        let upstream = tags
            .replicatefrom
            .as_deref()
            .filter(|from| *from != self.cfg.name && *from != leader)
            .and_then(|from| self.source(from, cluster));
        upstream.or_else(|| self.source(leader, cluster))
    }

    pub(super) fn source(&self, member: &str, cluster: Option<&Cluster>) -> Option<Source> {
        let (host, port) = cluster?.member(member)?.conn_host_port()?;
        Some(Source {
            member: member.to_string(),
            host,
            port,
        })
    }

    /// Writes the server's configuration for `role` ([`warden_ha::Database::configure`]).
    pub(super) fn write_config(
        &mut self,
        cluster: Option<&Cluster>,
        role: &RoleConfig,
    ) -> Result<bool, ActError> {
        let dynamic = self.dynamic(cluster);
        self.db.configure(role, cluster, &dynamic).map_err(failed)
    }

    /// Rewrites the config of a running server and reloads it if anything changed.
    pub(super) async fn configure(
        &mut self,
        cluster: Option<&Cluster>,
        role: &RoleConfig,
    ) -> Result<(), ActError> {
        if self.write_config(cluster, role)? {
            tracing::info!("configuration changed; reloading the database server");
            self.db.reload().await.map_err(failed)?;
            let role = match role {
                RoleConfig::Primary => "primary",
                RoleConfig::Replica { .. } => "replica",
            };
            self.callbacks.fire("on_reload", role);
        }
        Ok(())
    }

    async fn bootstrap(&mut self) -> Result<(), ActError> {
        if self.cfg.bootstrap.dcs.is_standby_cluster() {
            let result = self.bootstrap_standby().await;
            if let Err(ActError::Failed(e) | ActError::Fatal(e)) = &result {
                tracing::error!(error = %e, "bootstrapping the standby cluster failed");
                let _ = self
                    .db
                    .stop(StopMode::Immediate, Duration::from_secs(10))
                    .await;
                if let Ok(Some(to)) = self.db.set_aside() {
                    tracing::warn!(to, "moved the failed standby bootstrap's data aside");
                }
                let _ = self.dcs.delete_if_value(&self.keys.initialize(), b"").await;
            }
            return result;
        }
        let custom = self.cfg.bootstrap.custom.is_some();
        self.state = if custom {
            MemberState::RunningCustomBootstrapScript
        } else {
            MemberState::InitializingNewCluster
        };
        self.publish_state().await;
        let dcs_cfg = self.cfg.bootstrap.dcs.clone();
        let cfg = self.cfg.clone();
        let config_path = self.config_path.clone();
        let db = &mut self.db;
        let job = async {
            if let Some(spec) = &cfg.bootstrap.restore {
                db.bootstrap_from_repository(&cfg, config_path.as_deref(), spec, &dcs_cfg)
                    .await?;
            } else if let Some(spec) = &cfg.bootstrap.custom {
                db.bootstrap_custom(spec, &dcs_cfg).await?;
            } else {
                db.bootstrap(&dcs_cfg).await.map_err(|e| e.to_string())?;
            }
            match &cfg.bootstrap.post_bootstrap {
                Some(cmd) => db.post_bootstrap(cmd).await,
                None => Ok(()),
            }
        };
        let dcs = self.dcs.clone();
        let lease = self.lease.map(|(id, _)| id);
        let result = keep_lease_during(dcs, lease, self.cfg.bootstrap.dcs.loop_wait, job).await;
        match result {
            Ok(()) => {
                tracing::info!("bootstrapped a new cluster");
                self.bootstrapped_here = true;
                self.state = MemberState::Running;
                Ok(())
            }
            Err(e) => {
                self.state = if custom {
                    MemberState::CustomBootstrapFailed
                } else {
                    MemberState::InitdbFailed
                };
                let _ = self
                    .db
                    .stop(StopMode::Immediate, Duration::from_secs(10))
                    .await;
                match self.db.set_aside() {
                    Ok(Some(to)) => {
                        tracing::warn!(to, "moved the failed bootstrap's data aside");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot move the failed bootstrap's data aside")
                    }
                }
                // Let another member (or our next turn) try again.
                let _ = self.dcs.delete_if_value(&self.keys.initialize(), b"").await;
                Err(failed(format!("bootstrap failed: {e}")))
            }
        }
    }
}

impl<D: LocalEngine> Agent<D> {
    pub(super) async fn clone_from(
        &mut self,
        from: &str,
        cluster: Option<&Cluster>,
    ) -> Result<(), ActError> {
        let (host, port) = cluster
            .and_then(|c| c.member(from))
            .and_then(warden_consensus::types::Member::conn_host_port)
            .ok_or_else(|| failed(format!("member {from} has no usable conn_url")))?;
        // PostgreSQL's create_replica_methods; other engines copy through the
        // adapter's `clone_from` (the `basebackup` entry).
        let methods = match self.cfg.postgresql() {
            Some(pg) if !pg.create_replica_methods.is_empty() => pg.create_replica_methods.clone(),
            _ => vec![ReplicaMethod::Basebackup],
        };
        let sysid: Option<u64> = cluster
            .and_then(|c| c.initialize.as_deref())
            .and_then(|s| s.parse().ok());
        self.clone_with(&methods, from, &host, port, sysid).await
    }

    /// Copies `from` (at `host:port`) with the first of `methods` that succeeds.
    async fn clone_with(
        &mut self,
        methods: &[ReplicaMethod],
        from: &str,
        host: &str,
        port: u16,
        sysid: Option<u64>,
    ) -> Result<(), ActError> {
        self.state = MemberState::CreatingReplica;
        self.publish_state().await;
        let (host, port) = (host.to_string(), port);
        let mut errors = Vec::new();
        for method in methods.iter().cloned() {
            let dcs = self.dcs.clone();
            let lease = self.lease.map(|(id, _)| id);
            let loop_wait = self.cfg.bootstrap.dcs.loop_wait;
            let result = match method {
                ReplicaMethod::WardenRestore => {
                    tracing::info!("creating the replica from the backup repository");
                    let job = self.db.replica_from_repository(
                        &self.cfg,
                        self.config_path.as_deref(),
                        sysid,
                    );
                    keep_lease_during(dcs, lease, loop_wait, job)
                        .await
                        .map(|id| format!("restored backup {id}"))
                }
                ReplicaMethod::Custom(ref m) => {
                    tracing::info!(from, method = %m.name, command = %m.command, "creating the replica with a custom method");
                    let job = self.db.replica_custom(m, (&host, port));
                    keep_lease_during(dcs, lease, loop_wait, job)
                        .await
                        .map(|()| format!("{} from {from}", m.name))
                }
                ReplicaMethod::Basebackup => {
                    // The engine's own copy: pg_basebackup, or Redis's full sync.
                    let how = if self.cfg.redis().is_some() {
                        "a full sync"
                    } else {
                        "pg_basebackup"
                    };
                    tracing::info!(from, host, port, "cloning with {how}");
                    let job = self.db.clone_from(&host, port, CLONE_TIMEOUT);
                    keep_lease_during(dcs, lease, loop_wait, job)
                        .await
                        .map(|()| format!("{how} from {from}"))
                        .map_err(|e| e.to_string())
                }
            };
            match result {
                Ok(how) => {
                    tracing::info!(from, how, "replica created");
                    // A fresh copy of the leader never needs a rewind.
                    self.rewound = true;
                    self.state = MemberState::Stopped;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(method = method.name(), error = %e, "creating the replica failed");
                    errors.push(format!("{}: {e}", method.name()));
                }
            }
        }
        self.state = MemberState::Stopped;
        Err(failed(format!(
            "creating a replica of {from} failed: {}",
            errors.join("; ")
        )))
    }

    async fn promote(&mut self, reason: &str, obs: &Observation<D::Facts>) -> Result<(), ActError> {
        let fork = obs.local.engine.fork_point();
        if let Err(why) = self.callbacks.pre_promote().await {
            // Patroni's rule: a vetoed promotion gives the leader key back at once.
            tracing::error!(reason = %why, "pre_promote refused the promotion; releasing the leader key");
            self.holds_leader = false;
            self.shared.deadline.clear();
            let _ = self
                .dcs
                .delete_if_value(&self.keys.leader(), self.cfg.name.as_bytes())
                .await;
            return Err(failed(why));
        }
        let dynamic = self.dynamic(obs.cluster.as_ref());
        if dynamic.synchronous_mode.is_enabled() {
            // Before the first commit on the new timeline, /sync names only us: until a
            // standby is confirmed synchronous, nobody else may be promoted.
            let claimed = match obs.cluster.as_ref() {
                Some(c) => self.write_sync_state(c, 0, &[]).await,
                None => Err(failed("no DCS view")),
            };
            if let Err(ActError::Failed(why) | ActError::Fatal(why)) = claimed {
                tracing::error!(reason = %why, "cannot claim /sync before promoting; releasing the leader key");
                self.holds_leader = false;
                self.shared.deadline.clear();
                let _ = self
                    .dcs
                    .delete_if_value(&self.keys.leader(), self.cfg.name.as_bytes())
                    .await;
                return Err(failed(format!("promotion postponed: {why}")));
            }
            self.db.set_synchronous(SyncSetting::Nobody {
                strict: dynamic.synchronous_mode_strict,
            });
        }
        if let Some(fork) = fork {
            self.reserve_fork(obs.cluster.as_ref(), fork, reason)
                .await?;
        }
        // Before the promotion: afterwards there is no remote to be behind.
        let standby_lag = super::transitions::standby_lag(&self.shared);
        tracing::warn!(?fork, "promoting the replica");
        self.db
            .promote(Duration::from_secs(10))
            .await
            .map_err(failed)?;
        self.note_promotion(fork, standby_lag, obs.cluster.as_ref());
        // Writable from now on: tell health checks at once rather than at the end of
        // the turn (the checkpoint and DCS writes below take a while).
        self.state = MemberState::Running;
        self.shared.update(|s| {
            s.is_leader = true;
            s.state = MemberState::Running;
            if let Some(p) = s.probe.as_mut() {
                p.mark_primary();
            }
        });
        self.callbacks.fire("on_role_change", "primary");
        self.configure(obs.cluster.as_ref(), &RoleConfig::Primary)
            .await?;
        // pg_rewind reads the source's timeline from its control file, which names the
        // new timeline only after the first checkpoint: without it a former primary
        // would be "rewound" against the old timeline and never catch up.
        if let Err(e) = self.db.checkpoint(CHECKPOINT_TIMEOUT).await {
            tracing::warn!(error = %e, "checkpoint after promotion failed");
        }
        Ok(())
    }

    /// On the primary: retain the stream for `members` ([`warden_ha::Database::retain`]).
    async fn retain(
        &mut self,
        members: &[String],
        obs: &Observation<D::Facts>,
    ) -> Result<(), ActError> {
        let dynamic = self.dynamic(obs.cluster.as_ref());
        let Some(c) = obs.cluster.as_ref() else {
            return self
                .db
                .retain(members, None, &dynamic, &obs.local.engine)
                .await
                .map_err(failed);
        };
        let streaming = streaming_members(c, members);
        // A member cascading from another replica does not use its slot here; it is
        // kept (the member falls back to us if its upstream goes) at the position the
        // member reports, so it holds no more WAL than the member needs (Patroni's
        // rule for PostgreSQL 11 and later).
        let cascaded: std::collections::BTreeMap<String, u64> = streaming
            .iter()
            .filter_map(|name| {
                let m = c.member(name)?;
                let from = m.tags.as_ref()?.get("replicatefrom")?.as_str()?;
                let elsewhere =
                    from != self.cfg.name && from != name && c.members.contains_key(from);
                elsewhere.then(|| Some((warden_pg::conf::slot_name(name), m.xlog_location?)))?
            })
            .collect();
        self.db
            .retain(
                &streaming,
                (!cascaded.is_empty()).then_some(&cascaded),
                &dynamic,
                &obs.local.engine,
            )
            .await
            .map_err(failed)
    }

    /// On a replica: retain the stream for every other member where the leader's
    /// `/status` reports it, never ahead of what we replayed. If we are promoted, the
    /// others (the old leader too) then find their history still here.
    async fn retain_for_leader(
        &mut self,
        leader: &str,
        obs: &Observation<D::Facts>,
    ) -> Result<(), ActError> {
        let Some(c) = obs.cluster.as_ref() else {
            return Ok(());
        };
        // Every other member, the leader included: a former leader rejoins through
        // the slot we kept for it (Patroni's rule for PostgreSQL 11 and later).
        let others: Vec<String> = c
            .members
            .keys()
            .filter(|n| **n != self.cfg.name)
            .cloned()
            .collect();
        let others = streaming_members(c, &others);
        let source = self.source(leader, Some(c)).map(|s| (s.host, s.port));
        self.db.note_leader(source);
        let reported = c
            .status
            .as_ref()
            .and_then(|s| s.slots.clone())
            .unwrap_or_default();
        let dynamic = self.dynamic(Some(c));
        self.db
            .retain(&others, Some(&reported), &dynamic, &obs.local.engine)
            .await
            .map_err(failed)
    }

    /// Reserves the generation our promotion creates in `/history` (PostgreSQL: the
    /// timeline we leave, the LSN, and us as the new leader) before the promotion: a
    /// promotion the cluster does not know of could be repeated onto the same timeline
    /// ID by another member, two histories under one name that pg_rewind cannot tell
    /// apart. Written only under a valid lease deadline (a view that outlived its lease
    /// is stale) and by compare-and-swap on the `/history` the decision rested on. Our
    /// own earlier reservation of the same fork (we stopped before promoting) stands.
    async fn reserve_fork(
        &self,
        cluster: Option<&Cluster>,
        (timeline, lsn): (u32, u64),
        reason: &str,
    ) -> Result<(), ActError> {
        if !self.shared.deadline.valid_at(self.now_std()) {
            return Err(failed(
                "our lease deadline passed before the promotion: not reserving it in /history",
            ));
        }
        let c = cluster.ok_or_else(|| failed("no DCS view to record the promotion in"))?;
        let me = self.cfg.name.as_str();
        if c.history
            .iter()
            .any(|h| h.timeline == timeline && h.new_leader.as_deref() == Some(me))
        {
            return Ok(());
        }
        let mut history = c.history.clone();
        history.push(HistoryEntry {
            timeline,
            lsn,
            reason: reason.to_string(),
            timestamp: Some(
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
            ),
            new_leader: Some(me.to_string()),
        });
        let body = serde_json::to_vec(&history).map_err(failed)?;
        let key = self.keys.history();
        let written = if c.history_revision > 0 {
            self.dcs
                .compare_and_swap(&key, body, c.history_revision, None)
                .await
        } else {
            self.dcs.create(&key, body, None).await
        };
        match written {
            Ok(true) => Ok(()),
            Ok(false) => Err(failed(
                "/history changed since this turn's view; promoting next turn",
            )),
            Err(e) => Err(failed(format!(
                "cannot reserve the promotion in /history: {e}"
            ))),
        }
    }

    async fn write_status(&mut self, obs: &Observation<D::Facts>) -> Result<(), ActError> {
        let Some(optime) = obs.local.db().and_then(|d| d.position) else {
            return Ok(());
        };
        // Where each member's retained position stands, so replicas can retain the same
        // and a promoted replica still has the history the others need.
        let retained = self.db.retained(&obs.local.engine);
        let status = Status {
            optime: Some(optime),
            slots: Some(retained.positions),
            retain_slots: Some(retained.names),
            ..Status::default()
        };
        let body = serde_json::to_vec(&status).map_err(failed)?;
        self.dcs
            .put(&self.keys.status(), body, None)
            .await
            .map_err(failed)?;
        self.write_failsafe(obs.cluster.as_ref()).await
    }
}

/// Runs `job`, renewing `lease` every `loop_wait` seconds until it finishes, so other
/// members do not take us for dead during initdb or a clone.
pub(super) async fn keep_lease_during<T>(
    dcs: Arc<dyn Dcs>,
    lease: Option<LeaseId>,
    loop_wait: u32,
    job: impl Future<Output = T>,
) -> T {
    let period = Duration::from_secs(u64::from(loop_wait.max(1)));
    // Aborted when the job ends or this future is dropped (shutdown mid-job).
    let _ticker = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            interval.tick().await;
            if let Some(id) = lease {
                if let Err(e) = dcs.keepalive(id).await {
                    tracing::warn!(error = %e, "cannot renew our lease during a long job");
                }
            }
        }
    }));
    job.await
}
