//! The agent's cached status: written by the HA loop once per turn, read by the REST
//! API and metrics. Health checks never run SQL; they read this.

use crate::probe::ServerProbe;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use warden_consensus::types::MemberState;
use warden_consensus::types::Role;
use warden_consensus::Cluster;
use warden_fencing::LeaseDeadline;

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub scope: String,
    pub name: String,
    /// Patroni's member state: `running`, `starting`, `creating replica`, ...
    pub state: MemberState,
    pub role: Role,
    pub running: bool,
    /// The postmaster's PID as of the last turn: health checks look at this process
    /// on every request, so they stop answering 200 the moment it exits rather than
    /// at the next turn (and without running SQL).
    pub server_pid: Option<i32>,
    /// The local server as the last turn probed it.
    pub probe: Option<ServerProbe>,
    /// The last DCS view, if any was ever read.
    /// Shared, not copied: every API request takes a snapshot of this status, and a
    /// cluster view holds every member key (up to the DCS bounds).
    pub cluster: Option<Arc<Cluster>>,
    /// We held the leader key at the end of the last turn.
    pub is_leader: bool,
    /// The leader key's create_revision while we hold it.
    pub fencing_token: Option<i64>,
    /// Unix time of the last successful DCS read.
    pub dcs_last_seen: Option<i64>,
    pub last_turn: Option<Instant>,
    pub ttl: Duration,
    pub tags: serde_json::Map<String, serde_json::Value>,
    pub system_identifier: Option<String>,
    /// Why the last turn did what it did.
    pub note: String,
    /// The last leader that asked us over `POST /failsafe` to confirm it may stay
    /// primary while the DCS is unreachable, and when.
    pub failsafe_leader: Option<(String, Instant)>,
    /// When every member last confirmed us, the leader cut off from the DCS, in
    /// failsafe mode; cleared by the next successful DCS read (Patroni's
    /// `failsafe_mode_is_active` on a primary).
    pub failsafe_confirmed_at: Option<Instant>,
    /// A restart planned by `POST /restart` with a `schedule`.
    pub scheduled_restart: Option<crate::ha::request::ScheduledRestart>,
    /// `restapi.authentication`: required on every mutating endpoint when set.
    pub auth: Option<warden_config::Credentials>,
    /// We hold `warden/archiver` and run the streaming archiver.
    pub archiver: bool,
    /// The streaming archiver's last report, while we run it.
    pub archive: Option<warden_backup::archiver::stream::Status>,
}

impl NodeStatus {
    /// Patroni's `failsafe_mode_is_active`: as a primary, every member confirmed us
    /// within `ttl` while the DCS was unreachable; as a replica, we confirmed a leader
    /// (`POST /failsafe`) within `ttl`.
    pub fn failsafe_active(&self, now: Instant) -> bool {
        let recent = |at: Instant| now.saturating_duration_since(at) < self.ttl;
        self.failsafe_confirmed_at.is_some_and(recent)
            || self
                .failsafe_leader
                .as_ref()
                .is_some_and(|(_, at)| recent(*at))
    }

    pub fn new(
        scope: String,
        name: String,
        tags: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Self {
            scope,
            name,
            state: MemberState::Starting,
            role: Role::Uninitialized,
            running: false,
            server_pid: None,
            probe: None,
            cluster: None,
            is_leader: false,
            fencing_token: None,
            dcs_last_seen: None,
            last_turn: None,
            ttl: Duration::from_secs(30),
            tags,
            system_identifier: None,
            note: String::new(),
            failsafe_leader: None,
            failsafe_confirmed_at: None,
            scheduled_restart: None,
            auth: None,
            archiver: false,
            archive: None,
        }
    }

    pub fn paused(&self) -> bool {
        self.cluster.as_deref().is_some_and(Cluster::is_paused)
    }

    pub fn in_recovery(&self) -> Option<bool> {
        self.probe.as_ref().map(ServerProbe::in_recovery)
    }

    /// The dynamic config in force makes this a standby cluster (PostgreSQL only: a
    /// Redis member ignores the section, see `Engine::supports_standby_cluster`).
    pub fn is_standby_cluster(&self) -> bool {
        !matches!(self.probe, Some(ServerProbe::Redis(_)))
            && self
                .cluster
                .as_ref()
                .is_some_and(|c| c.dynamic_config().is_standby_cluster())
    }

    /// The standby leader's distance from the remote primary (see
    /// [`warden_api::patroni::StandbyClusterStatus`]); `None` on any other member. Read
    /// by `/patroni` and `/metrics`, and by the loop just before a cluster promotion.
    pub fn standby_lag(&self) -> Option<warden_api::patroni::StandbyClusterStatus> {
        let Some(ServerProbe::Postgres(p)) = &self.probe else {
            return None;
        };
        if !(self.is_leader && p.in_recovery && self.is_standby_cluster()) {
            return None;
        }
        let lag_bytes = p
            .upstream_end_lsn
            .map(|end| end.saturating_sub(p.replay_lsn.unwrap_or(0)));
        // Caught up: 0. Otherwise (or fed from an archive only, with no receiver to say
        // where the remote is) the age of the newest replayed transaction, an upper bound
        // while the remote commits steadily (Warden's leader writes a heartbeat).
        let lag_seconds = match lag_bytes {
            Some(0) => Some(0.0),
            _ => p.replay_age_seconds,
        };
        let remote = self
            .cluster
            .as_ref()
            .and_then(|c| c.dynamic_config().standby_cluster)
            .and_then(|sc| sc.address())
            .map(|(h, port)| format!("{h}:{port}"));
        Some(warden_api::patroni::StandbyClusterStatus {
            lag_bytes,
            lag_seconds,
            remote,
            streaming: p.streaming,
        })
    }
}

/// Shared between the loop (writer) and the API (readers).
#[derive(Debug)]
pub struct Shared {
    status: RwLock<NodeStatus>,
    pub deadline: LeaseDeadline,
    /// Woken on every update: readers that serve clients from the status (the Sentinel
    /// port) follow a change at once instead of at their next poll.
    changed: tokio::sync::Notify,
}

impl Shared {
    pub fn new(status: NodeStatus) -> Arc<Self> {
        Arc::new(Self {
            status: RwLock::new(status),
            deadline: LeaseDeadline::new(),
            changed: tokio::sync::Notify::new(),
        })
    }

    pub fn snapshot(&self) -> NodeStatus {
        self.status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut NodeStatus)) {
        let mut guard = self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard);
        drop(guard);
        self.changed.notify_waiters();
    }

    /// Resolves at the next [`Shared::update`].
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl warden_backup::base::View for Shared {
    fn system_identifier(&self) -> Option<u64> {
        self.snapshot()
            .system_identifier
            .as_deref()
            .and_then(|s| s.trim().parse().ok())
    }

    fn leader_address(&self) -> Option<(String, u16)> {
        let snapshot = self.snapshot();
        let cluster = snapshot.cluster.as_ref()?;
        let name = &cluster.leader.as_ref()?.name;
        cluster.member(name)?.conn_host_port()
    }
}
