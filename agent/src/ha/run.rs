//! The HA loop: observe, decide, act, publish — once per `loop_wait`, and at once when
//! the watch reports a change to the leader, failover, config or initialize keys.

use super::env::{Env, GuardLink, WatchdogFeed};
use super::observation::Local;
use super::request::{Request, RequestRx};
use warden_consensus::types::MemberState;

use crate::state::Shared;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_config::Config;
use warden_consensus::{Cluster, Dcs, DynamicConfig, Keys, LeaseId, WatchEvent, WatchKind};
use warden_ha::{Database, StopMode};
use warden_pg::Postgres;

use super::LocalEngine;
use crate::probe::EngineFacts as _;

/// An error that must stop the agent (an operator has to act).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// The HA loop of one member, driving the engine adapter `D` (PostgreSQL by default).
pub struct Agent<D: Database = Postgres> {
    pub(super) cfg: Arc<Config>,
    pub(super) keys: Keys,
    pub(super) dcs: Arc<dyn Dcs>,
    /// The engine's adapter: the local database server and its data.
    pub(super) db: D,
    pub(super) shared: Arc<Shared>,
    pub(super) lease: Option<(LeaseId, Duration)>,
    /// Start of the last successful lease renewal request.
    pub(super) renewed_at: Option<Instant>,
    /// The lease was renewed in the current turn; leader-key writes require it.
    pub(super) renewed_this_turn: bool,
    pub(super) bootstrapped_here: bool,
    /// We hold the leader key: set by a successful acquire or renewal, cleared when the
    /// DCS shows another holder, a renewal is refused, or we demote.
    pub(super) holds_leader: bool,
    /// The data directory was rewound since it last ran as a primary.
    pub(super) rewound: bool,
    /// The dynamic config last seen made this a standby cluster: holding the key with a
    /// read-only database, we are its standby leader (member role `standby_leader`).
    pub(super) standby_cluster: bool,
    /// When our primary was first seen down while we held the leader key.
    pub(super) primary_down_since: Option<Instant>,
    /// When our running replica was first seen not streaming, and the leader then.
    pub(super) not_streaming_since: Option<(Instant, Option<String>)>,
    /// Start of this turn's successful failsafe confirmation round.
    pub(super) failsafe_round: Option<Instant>,
    /// `failsafe_confirmed_at` is set in the shared status (cleared on the next
    /// successful DCS read).
    pub(super) failsafe_shown: bool,
    /// The last `config` key that could be read (see `turn.rs` `keep_valid_config`).
    pub(super) last_valid_config:
        Option<warden_consensus::Versioned<warden_consensus::DynamicConfig>>,
    /// The `/failsafe` value we last wrote: fresher than the snapshot read before it.
    pub(super) failsafe_written: Option<std::collections::BTreeMap<String, String>>,
    /// Patroni's member state string.
    pub(super) state: MemberState,
    pub(super) system_identifier: Option<String>,
    pub(super) last_member: Option<(i64, String)>,
    pub(super) last_note: String,
    pub(super) last_errors: Vec<String>,
    pub(super) guard: Option<Box<dyn GuardLink>>,
    pub(super) callbacks: super::callbacks::Callbacks,
    /// The armed watchdog while we lead (and the mode allows one).
    pub(super) watchdog: Option<Box<dyn WatchdogFeed>>,
    /// `watchdog.mode: required` and the device is unusable: why.
    pub(super) watchdog_missing: Option<String>,
    /// Operator requests from the REST API.
    pub(super) requests: Option<RequestRx>,
    /// Requests received while waiting between turns, handled at the next turn.
    pub(super) incoming: Vec<Request>,
    /// The YAML file the config came from, re-read on `POST /reload` and SIGHUP.
    pub(super) config_path: Option<PathBuf>,
    /// Synchronous replication has not reached its target: turn again soon.
    pub(super) sync_recheck: bool,
    /// The clock, the peers and the watchdog device.
    pub(super) env: Env,
    /// Base backups of this member (with a backup section).
    pub(super) backups: Option<Arc<warden_backup::base::Service>>,
    /// The backup supervisor, which follows each turn's report (while running).
    pub(super) backup_side: Option<crate::backups::Handle>,
    /// Told of every reloaded config (the REST API's certificates and allowlist):
    /// the loop owns the reload, the parts it feeds live elsewhere.
    pub(super) on_reload: Option<ReloadHook>,
    /// What the turns saw that may explain a promotion (`warden/transitions`).
    pub(super) transitions: super::transitions::Tracker,
}

/// What a reload tells the rest of the daemon.
pub type ReloadHook = Box<dyn Fn(&Config) + Send + Sync>;

impl<D: Database> std::fmt::Debug for Agent<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.cfg.name)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<D: Database> Agent<D> {
    pub fn new(cfg: Arc<Config>, dcs: Arc<dyn Dcs>, db: D, shared: Arc<Shared>) -> Self {
        let callbacks = super::callbacks::Callbacks::from_config(&cfg);
        let env = Env::system(cfg.watchdog.device.clone());
        Self {
            env,
            callbacks,
            watchdog: None,
            // Probed when the loop starts, through the surroundings it runs with.
            watchdog_missing: None,
            keys: Keys::new(&cfg.namespace, &cfg.scope),
            cfg,
            dcs,
            db,
            shared,
            lease: None,
            renewed_at: None,
            renewed_this_turn: false,
            bootstrapped_here: false,
            holds_leader: false,
            rewound: false,
            standby_cluster: false,
            primary_down_since: None,
            not_streaming_since: None,
            failsafe_round: None,
            failsafe_shown: false,
            last_valid_config: None,
            failsafe_written: None,
            state: MemberState::Starting,
            system_identifier: None,
            last_member: None,
            last_note: String::new(),
            last_errors: Vec::new(),
            transitions: super::transitions::Tracker::default(),
            guard: None,
            requests: None,
            incoming: Vec::new(),
            config_path: None,
            sync_recheck: false,
            backup_side: None,
            backups: None,
            on_reload: None,
        }
    }

    /// Attaches the queue the REST API sends operator requests on, and the config file
    /// a reload re-reads.
    pub fn with_requests(mut self, rx: RequestRx, config_path: Option<PathBuf>) -> Self {
        self.requests = Some(rx);
        self.config_path = config_path;
        self
    }

    /// Attaches the fencing guard process, fed once per turn.
    /// Base backups run by this member while it is the archiver.
    pub fn with_backups(mut self, service: Arc<warden_backup::base::Service>) -> Self {
        self.backups = Some(service);
        self
    }

    /// Attaches the backup supervisor, which follows each turn's report; the loop stops
    /// it on shutdown before the database.
    pub fn with_backup_side(mut self, side: crate::backups::Handle) -> Self {
        self.backup_side = Some(side);
        self
    }

    /// Called with each config a reload accepts.
    pub fn with_reload_hook(mut self, hook: ReloadHook) -> Self {
        self.on_reload = Some(hook);
        self
    }

    pub fn with_guard(mut self, guard: Box<dyn GuardLink>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Replaces the real surroundings (the simulation's clock, peers and watchdog).
    pub fn with_env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Now on our clock, as a `std` instant (the lease deadline's type).
    pub(super) fn now_std(&self) -> std::time::Instant {
        self.env.clock.now().into_std()
    }

    /// How long ago `t` was on our clock.
    pub(super) fn since(&self, t: Instant) -> Duration {
        self.env.clock.now().saturating_duration_since(t)
    }

    /// The dynamic config in force: the DCS's, or bootstrap.dcs before one exists.
    pub(super) fn dynamic(&self, cluster: Option<&Cluster>) -> DynamicConfig {
        cluster
            .and_then(|c| c.config.as_ref())
            .map_or_else(|| self.cfg.bootstrap.dcs.clone(), |c| c.value.clone())
    }
}

impl<D: LocalEngine> Agent<D> {
    /// Runs until `shutdown` fires, then stops PostgreSQL and hands over leadership.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Fatal> {
        self.watchdog_missing = watchdog_missing(&self.cfg, &self.env);
        let mut watch: Option<mpsc::Receiver<WatchEvent>> = None;
        let mut last_cluster: Option<Cluster> = None;
        loop {
            let outcome = tokio::select! {
                // Biased (here and below): the same order every time, so a seed of the
                // simulation, which runs this loop, replays exactly.
                biased;
                r = self.turn() => r,
                () = shutdown.cancelled() => Ok(None),
            };
            match outcome {
                Ok(Some(c)) => last_cluster = Some(c),
                Ok(None) => {}
                Err(fatal) => {
                    tracing::error!(error = %fatal, "stopping the agent");
                    self.release().await;
                    return Err(fatal);
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let loop_wait = self.dynamic(last_cluster.as_ref()).loop_wait_duration();
            // Wake exactly at a scheduled switchover or restart, not up to loop_wait late.
            let until_due = self
                .next_scheduled(last_cluster.as_ref())
                .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
            let mut wait = until_due.map_or(loop_wait, |d| d.min(loop_wait));
            // Renew at least every third of the lease's ttl (DESIGN §3): right after an
            // edit of ttl and loop_wait our lease still has the old, possibly shorter,
            // ttl, and a full new loop_wait would let its deadline pass.
            if let Some((_, ttl)) = self.lease {
                wait = wait.min(ttl / 3);
            }
            if self.sync_recheck {
                wait = wait.min(SYNC_RECHECK);
            }
            // PostgreSQL is starting: the health endpoints answer 503 until a turn
            // sees it accept connections, so look again soon rather than a loop_wait
            // later.
            if self.state == MemberState::Starting {
                wait = wait.min(STARTING_RECHECK);
            }
            if watch.is_none() {
                let rev = last_cluster.as_ref().map_or(0, |c| c.revision);
                watch = self.dcs.watch(self.keys.prefix(), rev).await.ok();
            }
            let holds_leader = self.holds_leader;
            let db = &mut self.db;
            // Between turns a leader in synchronous mode watches its synchronous
            // standbys: commits may block on a dead one until it is replaced.
            let lost = async move {
                if holds_leader {
                    db.lost_standby().await
                } else {
                    std::future::pending().await
                }
            };
            let wake = wait_for_wakeup(
                &self.keys,
                watch.as_mut(),
                self.requests.as_mut(),
                wait,
                &shutdown,
                lost,
            )
            .await;
            match wake {
                Wakeup::WatchBroken => watch = None,
                Wakeup::Request(r) => self.incoming.push(r),
                Wakeup::StandbyLost(name) => {
                    tracing::warn!(standby = %name, "a synchronous standby stopped streaming; acting now");
                }
                Wakeup::Tick | Wakeup::Change | Wakeup::Shutdown => {}
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// Publishes what this turn learned to the backup supervisor.
    pub(super) fn report_turn(
        &self,
        cluster: Option<&Cluster>,
        local: &Local<D::Facts>,
        ttl: Duration,
    ) {
        let Some(side) = &self.backup_side else {
            return;
        };
        side.report(crate::backups::TurnReport {
            cfg: self.cfg.clone(),
            cluster: cluster.cloned(),
            lease: self
                .lease
                .filter(|_| self.renewed_this_turn)
                .map(|(id, _)| id),
            holds_leader: self.holds_leader,
            probe: local.engine.probe(),
            not_streaming_for: self
                .not_streaming_since
                .as_ref()
                .map(|(t, _)| self.since(*t)),
            ttl,
            system_identifier: self.system_identifier.clone(),
        });
    }
}

impl<D: Database> Agent<D> {
    /// Dynamic settings that apply without a restart: the DCS request timeout follows
    /// `retry_timeout` (ttl and loop_wait are read afresh every turn).
    pub(super) fn apply_dynamic(&self, cluster: Option<&Cluster>) {
        let d = self.dynamic(cluster);
        self.dcs
            .set_request_timeout(warden_consensus::request_timeout(d.retry_timeout));
    }

    /// Failsafe mode with the DCS unreachable and us running the primary: ask the members
    /// of the last known `/failsafe` key to confirm us. `None` when not applicable.
    pub(super) async fn failsafe_round(
        &mut self,
        now: Option<&Cluster>,
        last: Option<&Cluster>,
        primary: bool,
    ) -> Option<bool> {
        self.failsafe_round = None;
        let last = last?;
        if now.is_some()
            || !primary
            || !self.holds_leader
            || !self.dynamic(Some(last)).failsafe_mode
        {
            return None;
        }
        let members = self
            .failsafe_written
            .clone()
            .or_else(|| last.failsafe.clone())
            .unwrap_or_default();
        let started = self.env.clock.now();
        let my_api = self.cfg.restapi.api_url();
        let ok = self
            .env
            .peers
            .confirm_failsafe(
                &self.cfg.name,
                &my_api,
                &members,
                self.cfg.restapi.authentication.as_ref(),
            )
            .await;
        if ok {
            self.failsafe_round = Some(started);
        }
        Some(ok)
    }

    /// Arms the guard to fire a little after our local deadline (still before etcd can
    /// expire the lease), or disarms it when we are not the leader.
    pub(super) async fn feed_guard(&mut self, ttl: Duration) {
        let target = match (
            self.holds_leader,
            self.shared.deadline.deadline(),
            self.db.server_pid(),
        ) {
            (true, Some(d), Some(pid)) => {
                let grace = warden_fencing::safety_margin(ttl) / 2;
                Some((d + grace, pid))
            }
            _ => None,
        };
        if let Some(g) = self.guard.as_mut() {
            g.feed(target).await;
        }
    }

    /// Keeps our lease alive (granting a new one if needed). Returns whether it was
    /// renewed, and records when the successful request started.
    pub(super) async fn refresh_lease(&mut self, ttl: Duration) -> bool {
        let started = self.env.clock.now();
        if let Some((id, granted_ttl)) = self.lease {
            if granted_ttl == ttl {
                match self.dcs.keepalive(id).await {
                    Ok(_) => {
                        self.renewed_at = Some(started);
                        return true;
                    }
                    Err(warden_consensus::DcsError::LeaseNotFound(_)) => {
                        tracing::warn!(lease = id.0, "our lease expired; granting a new one");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew our lease");
                        return false;
                    }
                }
            }
        }
        match self.dcs.grant_lease(ttl).await {
            Ok(id) => {
                tracing::info!(lease = id.0, ?ttl, "granted a lease");
                self.lease = Some((id, ttl));
                self.last_member = None;
                self.renewed_at = Some(started);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot grant a lease");
                false
            }
        }
    }

    /// The engine's look at the local database ([`Database::observe`]), and what the
    /// loop keeps of it: the member state, the system identifier, the repair flag.
    pub(super) async fn observe_local(
        &mut self,
        cluster: Option<&Cluster>,
    ) -> warden_ha::Local<D::Facts> {
        let dynamic = self.dynamic(cluster);
        let local = self.db.observe(self.rewound, &dynamic).await;
        self.system_identifier.clone_from(&local.system_identifier);
        if !local.running && self.state.is_running() {
            tracing::warn!("the database server is not running");
            self.state = MemberState::Stopped;
        }
        if let Some(db) = local.db() {
            self.state = MemberState::Running;
            if db.writable {
                self.rewound = false;
            }
        }
        local
    }

    /// Clean stop: PostgreSQL first, then the leader key (so a replica can take over at
    /// once, not a TTL later), then the lease (which removes our member key).
    async fn shutdown(&mut self) {
        // The archiver streams from our PostgreSQL: stop it first (its key goes with
        // our lease below).
        if let Some(side) = self.backup_side.take() {
            side.stop().await;
        }
        tracing::info!("shutting down: stopping PostgreSQL");
        self.state = MemberState::Stopping;
        self.shared.update(|s| s.state = MemberState::Stopping);
        let timeout = Duration::from_secs(60);
        if let Err(e) = self.db.stop(StopMode::Fast, timeout).await {
            tracing::error!(error = %e, "PostgreSQL did not stop cleanly");
        }
        self.release().await;
        if let Some(g) = self.guard.take() {
            g.stop().await;
        }
        tracing::info!("shut down");
    }

    /// Gives up leadership and our lease.
    async fn release(&mut self) {
        self.holds_leader = false;
        self.watchdog = None;
        self.shared.deadline.clear();
        self.shared.update(|s| {
            s.is_leader = false;
            s.state = MemberState::Stopped;
        });
        let me = self.cfg.name.as_bytes();
        match self.dcs.delete_if_value(&self.keys.leader(), me).await {
            Ok(true) => tracing::info!("released the leader key"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not release the leader key; it expires with the lease")
            }
        }
        if let Some((id, _)) = self.lease.take() {
            if let Err(e) = self.dcs.revoke(id).await {
                tracing::warn!(error = %e, "could not revoke our lease; it expires by itself");
            }
        }
    }
}

/// `watchdog.mode: required` and the device is unusable: why (this member must not lead).
fn watchdog_missing(cfg: &Config, env: &Env) -> Option<String> {
    match cfg.watchdog.mode {
        warden_config::WatchdogMode::Off => None,
        mode => match env.watchdog.available() {
            Ok(()) => None,
            Err(why) if mode == warden_config::WatchdogMode::Required => {
                tracing::error!(reason = %why, "watchdog.mode is required but the watchdog is unusable: this member will not lead");
                Some(why)
            }
            Err(why) => {
                tracing::info!(reason = %why, "no usable watchdog; leading without one (watchdog.mode: automatic)");
                None
            }
        },
    }
}

#[derive(Debug)]
enum Wakeup {
    Tick,
    Change,
    WatchBroken,
    Shutdown,
    Request(Request),
    /// A watched synchronous standby stopped streaming.
    StandbyLost(String),
}

/// Synchronous replication not yet at its target (a standby to confirm): the next turn
/// comes this soon rather than `loop_wait` later.
const SYNC_RECHECK: Duration = Duration::from_secs(1);

/// PostgreSQL started but not yet accepting connections: the next turn comes this soon.
const STARTING_RECHECK: Duration = Duration::from_millis(500);

/// Sleeps until the next tick, a relevant DCS change, or shutdown. Our own member and
/// status writes are not relevant: waking on them would spin the loop.
async fn wait_for_wakeup(
    keys: &Keys,
    watch: Option<&mut mpsc::Receiver<WatchEvent>>,
    requests: Option<&mut RequestRx>,
    loop_wait: Duration,
    shutdown: &CancellationToken,
    lost_standby: impl std::future::Future<Output = String>,
) -> Wakeup {
    let tick = tokio::time::sleep(loop_wait);
    tokio::pin!(tick);
    tokio::pin!(lost_standby);
    // A closed queue (the API has stopped) never wakes us.
    let next_request = async {
        match requests {
            Some(rx) => match rx.recv().await {
                Some(r) => r,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    tokio::pin!(next_request);
    let Some(rx) = watch else {
        return tokio::select! {
            biased;
            () = shutdown.cancelled() => Wakeup::Shutdown,
            r = &mut next_request => Wakeup::Request(r),
            name = &mut lost_standby => Wakeup::StandbyLost(name),
            () = &mut tick => Wakeup::Tick,
        };
    };
    let relevant = [
        keys.leader(),
        keys.failover(),
        keys.config(),
        keys.initialize(),
        keys.sync(),
    ];
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Wakeup::Shutdown,
            r = &mut next_request => return Wakeup::Request(r),
            name = &mut lost_standby => return Wakeup::StandbyLost(name),
            ev = rx.recv() => match ev {
                Some(WatchEvent::Change { kind, key }) if relevant.contains(&key) => {
                    // The leader re-asserts its key every turn (an update): waking on
                    // that would spin the leader and wake every replica each second.
                    if key == keys.leader() && kind == WatchKind::Update {
                        continue;
                    }
                    tracing::debug!(?kind, key, "DCS change");
                    return Wakeup::Change;
                }
                Some(WatchEvent::Change { .. }) => {}
                Some(WatchEvent::Broken(why)) => {
                    tracing::info!(reason = %why, "DCS watch ended; re-establishing");
                    return Wakeup::WatchBroken;
                }
                None => return Wakeup::WatchBroken,
            },
            () = &mut tick => return Wakeup::Tick,
        }
    }
}
