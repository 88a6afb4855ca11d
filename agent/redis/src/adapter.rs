//! Redis's adapter: [`Redis`] as the [`warden_ha::Database`] the loop drives, with
//! `redis-server` as the agent's child process, its `redis.conf` in the data directory,
//! and `INFO`/`REPLICAOF`/`CLIENT PAUSE` over the `redis` crate's async connection.
//!
//! The data directory holds `redis.conf` (0600: it carries the password), the server's
//! files (`dump.rdb`, the AOF), `redis.log`, `redis.pid`, and Warden's marker
//! (`warden-redis.json`, [`marker`]): the cluster identity Redis itself lacks, and what
//! the server last reported, for when it is stopped.

mod conf;
mod marker;
mod server;
pub mod tls;

pub use conf::{quote, RedisSettings, NOBODY, OWNED};
pub use marker::Marker;
pub use tls::{AuthClients, RedisTls, TlsError};

use crate::policy::{Lineage, RedisLocal, Replication, ServerRole};
use std::time::{Duration, Instant};
use warden_consensus::{Cluster, DynamicConfig};
use warden_ha::{
    DataState, Database, Local, RepairOutcome, RoleConfig, StopMode, SyncPlan, SyncSetting,
    SyncStep,
};

/// How long one look at the server (`INFO`) may take.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an administrative command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a bootstrapped server has to answer.
const BOOTSTRAP_START_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong in an adapter operation.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("parameter {0:?} is set by Warden and cannot be given")]
    OwnedParameter(String),
    #[error("parameter {key:?}: {why}")]
    BadParameter { key: String, why: String },
    #[error("{0}")]
    Files(String),
    #[error("redis-server: {0}")]
    Process(String),
    #[error("{what}: {source}")]
    Command {
        what: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("{0} did not finish within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}")]
    State(String),
    #[error("{what}: {source}")]
    Tls {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The local Redis: its settings, the child process, the role last configured and the
/// write pause the agent set.
#[derive(Debug)]
pub struct Redis {
    settings: RedisSettings,
    child: Option<tokio::process::Child>,
    role: RoleConfig,
    paused_until: Option<Instant>,
    /// `min-replicas-to-write` that synchronous mode's strict variant puts in force
    /// (`None`: the configured value).
    sync_min_replicas: Option<u32>,
    /// The running server follows someone other than the configured source (the
    /// deadline fence pointed it at no one behind the loop's back): the next
    /// `configure` reports a change, so the loop reloads and `REPLICAOF` is sent again.
    drifted: bool,
}

impl Redis {
    /// Checks the settings (parameters Warden owns are refused by name).
    pub fn new(settings: RedisSettings) -> Result<Self, RedisError> {
        settings.validate()?;
        Ok(Self {
            settings,
            child: None,
            role: RoleConfig::Replica { source: None },
            paused_until: None,
            sync_min_replicas: None,
            drifted: false,
        })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// Blocks writes (`CLIENT PAUSE <ms> WRITE`) for at most `timeout`: reads go on,
    /// writes and replication traffic wait. Redis lifts the pause by itself when it
    /// expires, so an agent that dies mid-switchover leaves no permanent block (the
    /// lease must cover the pause). The primary is reported not writable meanwhile.
    pub async fn pause_writes(&mut self, timeout: Duration) -> Result<(), RedisError> {
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("PAUSE").arg(ms).arg("WRITE");
        self.local_command::<()>(&cmd, "CLIENT PAUSE WRITE").await?;
        self.paused_until = Some(Instant::now() + timeout);
        Ok(())
    }

    /// Lifts a pause (`CLIENT UNPAUSE`).
    pub async fn unpause_writes(&mut self) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("UNPAUSE");
        self.local_command::<()>(&cmd, "CLIENT UNPAUSE").await?;
        self.paused_until = None;
        Ok(())
    }

    /// Disconnects every client but the agent's (`CLIENT KILL TYPE normal`, then
    /// `pubsub`), as Sentinel does on a reconfiguration: clients reconnect and find the
    /// new primary. Returns how many were disconnected.
    pub async fn disconnect_clients(&mut self) -> Result<u64, RedisError> {
        let mut killed = 0;
        for kind in ["normal", "pubsub"] {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("KILL")
                .arg("TYPE")
                .arg(kind)
                .arg("SKIPME")
                .arg("yes");
            killed += self.local_command::<u64>(&cmd, "CLIENT KILL").await?;
        }
        Ok(killed)
    }

    /// `INFO server replication` of the local server.
    pub async fn info(&self, timeout: Duration) -> Result<Replication, RedisError> {
        let host = self.settings.local_host();
        server::info(&self.settings, &host, self.settings.port, timeout).await
    }

    fn writes_paused(&self) -> bool {
        self.paused_until.is_some_and(|t| t > Instant::now())
    }

    async fn local_command<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        what: &str,
    ) -> Result<T, RedisError> {
        let host = self.settings.local_host();
        server::command(
            &self.settings,
            &host,
            self.settings.port,
            cmd,
            what,
            COMMAND_TIMEOUT,
        )
        .await
    }

    fn marker(&self) -> Marker {
        Marker::read(&self.settings.data_dir)
    }

    /// Writes `redis.conf` for `role`; returns whether it changed.
    fn write_conf(&mut self, role: &RoleConfig) -> Result<bool, RedisError> {
        self.role = role.clone();
        let mut text = self.settings.render(role);
        if let (RoleConfig::Primary, Some(n)) = (role, self.sync_min_replicas) {
            // After the user's parameters: the last line wins.
            text.push_str(&format!("min-replicas-to-write {n}\n"));
        }
        server::write_private(&self.settings.conf_path(), &text)
    }

    /// `min-replicas-to-write` as it should be now: strict synchronous mode's, else the
    /// configured one (0 when not configured).
    fn min_replicas_now(&self) -> String {
        match (self.sync_min_replicas, &self.role) {
            (Some(n), RoleConfig::Primary) => n.to_string(),
            _ => self
                .settings
                .parameters
                .iter()
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("min-replicas-to-write"))
                .map_or_else(|| "0".to_string(), |(_, v)| v.clone()),
        }
    }

    /// Polls `INFO` until `done` holds or `timeout` passes.
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Replication) -> bool,
    ) -> Result<Replication, RedisError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let last = self.info(left.min(OBSERVE_TIMEOUT)).await;
            if let Ok(r) = &last {
                if done(r) {
                    return Ok(r.clone());
                }
            }
            if Instant::now() >= deadline {
                let why = last.map_or_else(|e| e.to_string(), |r| format!("{r:?}"));
                return Err(RedisError::Timeout(
                    format!("{what} (last: {why})"),
                    timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100).min(left)).await;
        }
    }

    /// Stops the server with `SHUTDOWN` (`save`: force a save, else per `save`/
    /// `appendonly`), after pausing writes so the offset read last is final; records
    /// that offset as the clean shutdown's position.
    async fn shutdown(&mut self, save: bool, timeout: Duration) -> Result<(), RedisError> {
        let deadline = Instant::now() + timeout;
        let mut pause = redis::cmd("CLIENT");
        pause
            .arg("PAUSE")
            .arg(
                u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg("WRITE");
        let paused = self.local_command::<()>(&pause, "CLIENT PAUSE WRITE").await;
        let last = if paused.is_ok() {
            self.info(OBSERVE_TIMEOUT).await.ok()
        } else {
            None
        };
        let mut cmd = redis::cmd("SHUTDOWN");
        if save {
            cmd.arg("SAVE");
        }
        // The server closes the connection instead of answering when it exits.
        let asked = self.local_command::<()>(&cmd, "SHUTDOWN").await;
        if let Err(e) = &asked {
            tracing::debug!(error = %e, "SHUTDOWN ended without an answer (expected when it exits)");
        }
        if asked.is_err() && self.server_alive_now() && paused.is_err() {
            // The server does not answer at all: SIGTERM is the same clean shutdown.
            server::signal(self.server_pid_now(), nix::sys::signal::Signal::SIGTERM);
        }
        let status = self.wait_exit(deadline).await?;
        let mut m = self.marker();
        m.shutdown_offset = None;
        if let Some(r) = last.filter(|_| status) {
            m.last = Some(r.lineage());
            m.last_role_master = r.role == ServerRole::Master;
            m.shutdown_offset = Some(r.position());
        }
        m.write(&self.settings.data_dir)?;
        self.paused_until = None;
        Ok(())
    }

    /// Waits until the server exited; `true` when it exited with status 0.
    async fn wait_exit(&mut self, deadline: Instant) -> Result<bool, RedisError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        if let Some(child) = self.child.as_mut() {
            let status = tokio::time::timeout(timeout, child.wait())
                .await
                .map_err(|_| {
                    RedisError::Timeout("waiting for redis-server to exit".into(), timeout)
                })?
                .map_err(|e| RedisError::Process(format!("waiting for the server: {e}")))?;
            self.child = None;
            return Ok(status.success());
        }
        // Not our child (started by an earlier agent): watch its pid.
        while self.server_alive_now() {
            if Instant::now() >= deadline {
                return Err(RedisError::Timeout(
                    "waiting for redis-server to exit".into(),
                    timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(true)
    }

    fn server_pid_now(&mut self) -> Option<i32> {
        if let Some(child) = self.child.as_mut() {
            match child.try_wait() {
                Ok(None) => return child.id().and_then(|p| i32::try_from(p).ok()),
                _ => self.child = None,
            }
        }
        server::pidfile_server(&self.settings.pid_path())
    }

    fn server_alive_now(&mut self) -> bool {
        self.server_pid_now().is_some()
    }

    /// Creates the data directory (0700) for a new server or copy.
    fn create_data_dir(&self) -> Result<(), RedisError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = &self.settings.data_dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| RedisError::Files(format!("cannot create {}: {e}", dir.display())))
    }

    /// Starts on `role`, waits until it answers; for a copy, until its link is up.
    async fn start_as(&mut self, role: &RoleConfig, timeout: Duration) -> Result<(), RedisError> {
        self.write_conf(role)?;
        Database::start(self)?;
        Database::wait_ready(self, timeout).await
    }
}

impl Database for Redis {
    type Facts = RedisLocal;
    type Error = RedisError;

    /// No directory: missing; Warden's marker in it: initialized; else a leftover.
    fn data_state(&self) -> DataState {
        let dir = &self.settings.data_dir;
        if !dir.is_dir() {
            DataState::Missing
        } else if Marker::exists(dir) {
            DataState::Initialized
        } else {
            DataState::NoCluster
        }
    }

    fn is_running(&mut self) -> bool {
        self.server_alive_now()
    }

    fn server_pid(&mut self) -> Option<i32> {
        self.server_pid_now()
    }

    /// `INFO` when the server runs (bounded); the marker for the identity and, when the
    /// server does not answer, for the role and lineage it last reported (kept up to
    /// date here when they change). Redis needs no repair, so `repaired` is unused.
    async fn observe(&mut self, _repaired: bool, _: &DynamicConfig) -> Local<RedisLocal> {
        let data = Database::data_state(self);
        let running = self.server_alive_now();
        let replication = if running {
            match self.info(OBSERVE_TIMEOUT).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::debug!(error = %e, "Redis did not answer INFO");
                    None
                }
            }
        } else {
            None
        };
        let mut marker = self.marker();
        if let (Some(r), DataState::Initialized) = (&replication, data) {
            let master = r.role == ServerRole::Master;
            let lineage = r.lineage();
            let moved = marker.last.as_ref().map(|l| (&l.replid, &l.replid2))
                != Some((&lineage.replid, &lineage.replid2));
            if moved || marker.last_role_master != master {
                marker.last = Some(lineage);
                marker.last_role_master = master;
                if let Err(e) = marker.write(&self.settings.data_dir) {
                    tracing::warn!(error = %e, "cannot record the server's lineage");
                }
            }
        }
        let was_primary = match &replication {
            Some(r) => r.role == ServerRole::Master,
            None => marker.last_role_master,
        };
        let writes_paused = self.writes_paused();
        if let (Some(r), RoleConfig::Replica { source }) = (&replication, &self.role) {
            let want = source
                .as_ref()
                .map_or((NOBODY.0.to_string(), NOBODY.1), |s| {
                    (s.host.clone(), s.port)
                });
            if r.role == ServerRole::Replica && r.master.as_ref() != Some(&want) {
                tracing::warn!(
                    configured = %format!("{}:{}", want.0, want.1),
                    "the server follows another upstream than configured (fenced?); it will be pointed again"
                );
                self.drifted = true;
            }
        }
        Local {
            data,
            system_identifier: (data == DataState::Initialized)
                .then(|| marker.cluster.clone())
                .flatten(),
            was_primary,
            running,
            engine: RedisLocal {
                last_known: if replication.is_none() {
                    marker.last
                } else {
                    None
                },
                replication,
                writes_paused,
            },
        }
    }

    /// A new cluster identity in the marker (Redis has none: a random 64-bit number,
    /// like PostgreSQL's system identifier), `redis.conf` as a primary, start, wait.
    /// The dynamic config has no Redis section yet: the parameters are the local ones.
    async fn bootstrap(&mut self, _: &DynamicConfig) -> Result<(), RedisError> {
        if Database::data_state(self) == DataState::Initialized {
            return Err(RedisError::State(
                "the data directory already holds a Redis of a cluster".into(),
            ));
        }
        self.create_data_dir()?;
        let marker = Marker {
            cluster: Some(server::new_identity()?),
            last_role_master: true,
            ..Marker::default()
        };
        self.start_as(&RoleConfig::Primary, BOOTSTRAP_START_TIMEOUT)
            .await?;
        let r = self.info(COMMAND_TIMEOUT).await?;
        if r.role != ServerRole::Master {
            return Err(RedisError::State(format!(
                "the bootstrapped server runs as {:?}, not as a primary",
                r.role
            )));
        }
        // The marker last: a bootstrap that failed before leaves no initialized data.
        marker.write(&self.settings.data_dir)
    }

    /// Starts as a replica of `host:port` and waits (bounded) until the copy arrived
    /// and the link is up, then writes the marker and stops with a save, so the data
    /// is on disk and the next start resumes with a partial resync. A leftover in the
    /// data directory is moved aside. The cluster identity is learnt from the DCS at
    /// the next [`Database::configure`] for a source (Redis cannot tell it).
    async fn clone_from(
        &mut self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<(), RedisError> {
        if self.server_alive_now() {
            return Err(RedisError::State(
                "cannot copy into the data of a running server".into(),
            ));
        }
        if self.settings.data_dir.exists() {
            if let Some(aside) = Database::set_aside(self)? {
                tracing::warn!(aside, "moved the previous data aside before copying");
            }
        }
        self.create_data_dir()?;
        let deadline = Instant::now() + timeout;
        let role = RoleConfig::Replica {
            source: Some(warden_ha::Source {
                member: String::new(),
                host: host.into(),
                port,
            }),
        };
        let copied = async {
            self.start_as(&role, timeout).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_for("copying from the primary", left, |r| {
                r.role == ServerRole::Replica && r.link_up
            })
            .await
        }
        .await;
        let r = match copied {
            Ok(r) => r,
            Err(e) => {
                let _ = Database::stop(self, StopMode::Immediate, COMMAND_TIMEOUT).await;
                return Err(e);
            }
        };
        let marker = Marker {
            last: Some(r.lineage()),
            ..Marker::default()
        };
        marker.write(&self.settings.data_dir)?;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(COMMAND_TIMEOUT);
        self.shutdown(true, left).await
    }

    /// `redis.conf` for the role (`replicaof` the source; no source: [`NOBODY`]); a
    /// running server takes it at [`Database::reload`]. On a replica with a source,
    /// data without an identity (a fresh copy) takes the cluster's `initialize`.
    fn configure(
        &mut self,
        role: &RoleConfig,
        cluster: Option<&Cluster>,
        _: &DynamicConfig,
    ) -> Result<bool, RedisError> {
        let mut marker = self.marker();
        if let (RoleConfig::Replica { source: Some(_) }, Some(id), true) = (
            role,
            cluster
                .and_then(|c| c.initialize.as_deref())
                .filter(|i| !i.is_empty()),
            Marker::exists(&self.settings.data_dir) && marker.cluster.is_none(),
        ) {
            marker.cluster = Some(id.to_string());
            marker.write(&self.settings.data_dir)?;
        }
        let changed_role = *role != self.role;
        let changed_file = self.write_conf(role)?;
        let drifted = std::mem::take(&mut self.drifted);
        Ok(changed_role || changed_file || drifted)
    }

    /// Spawns `redis-server redis.conf` in its own process group, with a scrubbed
    /// environment, its output appended to `redis.log`. Nothing if it already runs.
    fn start(&mut self) -> Result<(), RedisError> {
        if self.server_alive_now() {
            return Ok(());
        }
        if !self.settings.conf_path().exists() {
            self.write_conf(&self.role.clone())?;
        }
        let mut m = self.marker();
        if m.shutdown_offset.take().is_some() && Marker::exists(&self.settings.data_dir) {
            m.write(&self.settings.data_dir)?;
        }
        self.child = Some(server::spawn(&self.settings)?);
        self.paused_until = None;
        Ok(())
    }

    /// Polls `PING` until it answers (not while it loads its data: `LOADING`).
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), RedisError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ping = self
                .local_command::<String>(&redis::cmd("PING"), "PING")
                .await;
            if ping.is_ok() {
                return Ok(());
            }
            if !self.server_alive_now() {
                return Err(RedisError::Process(format!(
                    "exited while starting; see {}",
                    self.settings.log_path().display()
                )));
            }
            if left.is_zero() {
                return Err(RedisError::Timeout(
                    "waiting for redis-server".into(),
                    timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(50).min(left)).await;
        }
    }

    /// Fast: `SHUTDOWN` (a replica without saving: it resyncs from its primary; a
    /// primary with `SAVE`; Redis 7 first lets lagging replicas catch up for up to
    /// `shutdown-timeout`); Immediate: SIGKILL. Bounded.
    async fn stop(&mut self, mode: StopMode, timeout: Duration) -> Result<(), RedisError> {
        let Some(pid) = self.server_pid_now() else {
            return Ok(());
        };
        match mode {
            StopMode::Fast => self.shutdown(false, timeout).await,
            StopMode::Immediate => {
                server::signal(Some(pid), nix::sys::signal::Signal::SIGKILL);
                self.wait_exit(Instant::now() + timeout).await?;
                let mut m = self.marker();
                if m.shutdown_offset.take().is_some() {
                    m.write(&self.settings.data_dir)?;
                }
                self.paused_until = None;
                Ok(())
            }
        }
    }

    /// `REPLICAOF NO ONE` (the data and offset stay; the old replication id becomes
    /// `replid2`, so the other replicas continue with a partial resync), `redis.conf`
    /// as a primary (a restart stays primary), then wait until it reports itself
    /// master. Bounded.
    async fn promote(&mut self, timeout: Duration) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("REPLICAOF");
        cmd.arg("NO").arg("ONE");
        self.local_command::<()>(&cmd, "REPLICAOF NO ONE").await?;
        self.write_conf(&RoleConfig::Primary)?;
        // A primary batches its replicas' full syncs as configured (not critical: a
        // failure here only delays the next full sync).
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg(self.settings.diskless_delay(&RoleConfig::Primary));
        if let Err(e) = self.local_command::<()>(&cmd, "CONFIG SET").await {
            tracing::warn!(error = %e, "repl-diskless-sync-delay not restored after the promotion");
        }
        self.wait_for("the promotion", timeout, |r| r.role == ServerRole::Master)
            .await?;
        tracing::warn!("promoted: REPLICAOF NO ONE");
        Ok(())
    }

    /// The user's parameters by `CONFIG SET` (one that cannot change at runtime waits
    /// for a restart, with a warning), then the configured role: `REPLICAOF` the
    /// source (or [`NOBODY`]) when the server follows another; a primary is left to
    /// [`Database::promote`].
    async fn reload(&mut self) -> Result<(), RedisError> {
        for (k, v) in &self.settings.parameters {
            let mut cmd = redis::cmd("CONFIG");
            cmd.arg("SET").arg(k.trim().to_ascii_lowercase()).arg(v);
            if let Err(e) = self.local_command::<()>(&cmd, "CONFIG SET").await {
                tracing::warn!(parameter = %k, error = %e, "parameter not applied at runtime; it takes effect at the next restart");
            }
        }
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET")
            .arg("min-replicas-to-write")
            .arg(self.min_replicas_now())
            .arg("repl-diskless-sync-delay")
            .arg(self.settings.diskless_delay(&self.role));
        self.local_command::<()>(&cmd, "CONFIG SET").await?;
        let (host, port) = match &self.role {
            RoleConfig::Primary => return Ok(()),
            RoleConfig::Replica { source: Some(s) } => (s.host.clone(), s.port),
            RoleConfig::Replica { source: None } => (NOBODY.0.to_string(), NOBODY.1),
        };
        let now = self.info(COMMAND_TIMEOUT).await?;
        if now.role == ServerRole::Replica && now.master == Some((host.clone(), port)) {
            return Ok(());
        }
        let mut cmd = redis::cmd("REPLICAOF");
        cmd.arg(&host).arg(port);
        self.local_command::<()>(&cmd, "REPLICAOF").await?;
        tracing::info!(host, port, "following with REPLICAOF");
        Ok(())
    }

    /// Nothing is repaired: started as a replica of `host:port`, Redis resyncs by
    /// itself (partially when its history is a prefix of the primary's, else a full
    /// copy replacing its data). Only `redis.conf` is pointed at the source.
    async fn repair(
        &mut self,
        host: &str,
        port: u16,
        _: Duration,
    ) -> Result<RepairOutcome<RedisError>, RedisError> {
        if self.server_alive_now() {
            return Err(RedisError::State("repair needs a stopped server".into()));
        }
        self.write_conf(&RoleConfig::Replica {
            source: Some(warden_ha::Source {
                member: String::new(),
                host: host.into(),
                port,
            }),
        })?;
        Ok(RepairOutcome::Repaired)
    }

    /// Deletes the data directory (an operator's reinitialize only).
    fn remove_data(&mut self) -> Result<(), RedisError> {
        if self.server_alive_now() {
            return Err(RedisError::State(
                "cannot remove the data of a running server".into(),
            ));
        }
        let dir = &self.settings.data_dir;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RedisError::Files(format!(
                "cannot remove {}: {e}",
                dir.display()
            ))),
        }
    }

    /// Renames the data directory to `<dir>.failed-<unix seconds>` beside it.
    fn set_aside(&mut self) -> Result<Option<String>, RedisError> {
        let dir = &self.settings.data_dir;
        if !dir.exists() {
            return Ok(None);
        }
        let aside = server::aside_path(dir);
        std::fs::rename(dir, &aside)
            .map_err(|e| RedisError::Files(format!("cannot move {} aside: {e}", dir.display())))?;
        Ok(Some(aside.display().to_string()))
    }

    /// Strict synchronous mode: `min-replicas-to-write` (the primary refuses writes
    /// while fewer replicas are connected); otherwise the configured value.
    fn set_synchronous(&mut self, setting: SyncSetting) -> bool {
        let want = match setting {
            SyncSetting::Configured | SyncSetting::Nobody { strict: false } => None,
            SyncSetting::Nobody { strict: true } => Some(1),
            SyncSetting::Planned(text) => text.parse().ok().filter(|n| *n > 0),
        };
        let changed = want != self.sync_min_replicas;
        self.sync_min_replicas = want;
        changed
    }

    /// Redis's replicas acknowledge a write only when a client asks (`WAIT k`), and
    /// any connected replica counts, so every other member is a voter: a write that
    /// `WAIT k` (`synchronous_node_count`) confirmed is on at least `k` of them, and
    /// missing on at most `voters - k` — the `/sync` quorum a candidate must hear from
    /// (Patroni's quorum rule, which the HA core applies in both `on` and `quorum`).
    /// Strict mode also keeps the primary from taking writes with fewer than `k`
    /// replicas connected (`min-replicas-to-write`).
    async fn plan_synchronous(
        &mut self,
        cluster: &Cluster,
        me: &str,
        dynamic: &DynamicConfig,
        _: &RedisLocal,
    ) -> Result<SyncPlan, RedisError> {
        let k = dynamic.synchronous_node_count.max(1);
        let mut voters: Vec<String> = cluster
            .members
            .keys()
            .filter(|n| n.as_str() != me)
            .cloned()
            .collect();
        voters.sort();
        let quorum = u32::try_from(voters.len())
            .unwrap_or(u32::MAX)
            .saturating_sub(k);
        let mut steps = Vec::new();
        let current = cluster.sync.as_ref().map(|s| &s.value);
        let same = current.is_some_and(|s| {
            s.leader.as_deref() == Some(me)
                && s.quorum == Some(quorum)
                && s.standbys() == voters.iter().map(String::as_str).collect::<Vec<_>>()
        });
        if !same {
            steps.push(SyncStep::Key { quorum, voters });
        }
        let setting = if dynamic.synchronous_mode_strict {
            k
        } else {
            0
        };
        let want = (setting > 0).then_some(setting);
        if want != self.sync_min_replicas {
            steps.push(SyncStep::Setting(setting.to_string()));
        }
        Ok(SyncPlan {
            steps,
            pending: false,
        })
    }

    /// `CLIENT PAUSE WRITE` for at most `bound`, then the offset: a candidate that
    /// received it holds every acknowledged write, so the position to pass is one less.
    /// Only a primary hands over.
    async fn pause_for_handover(&mut self, bound: Duration) -> Result<Option<u64>, RedisError> {
        self.pause_writes(bound).await?;
        let r = match self.info(OBSERVE_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.unpause_writes().await;
                return Err(e);
            }
        };
        if r.role != ServerRole::Master {
            let _ = self.unpause_writes().await;
            return Err(RedisError::State(
                "a switchover needs this server to run as the primary".into(),
            ));
        }
        Ok(Some(r.position().saturating_sub(1)))
    }

    /// `CLIENT UNPAUSE`, then (with `disconnect`) `CLIENT KILL` of every client.
    async fn resume_writes(&mut self, disconnect: bool) -> Result<(), RedisError> {
        self.unpause_writes().await?;
        if disconnect {
            let n = self.disconnect_clients().await?;
            tracing::info!(
                clients = n,
                "disconnected clients: they ask the Sentinel ports again"
            );
        }
        Ok(())
    }

    /// The offset the last `SHUTDOWN` left (read with writes paused just before it);
    /// `Err` if the last stop was not clean or the server ran since.
    async fn shutdown_position(&self) -> Result<u64, RedisError> {
        self.marker().shutdown_offset.ok_or_else(|| {
            RedisError::State("the server did not shut down cleanly since it last ran".into())
        })
    }

    /// The replica's received offset from its `INFO`, with our credentials (the
    /// cluster's members share them); `Err` when it runs as a primary.
    async fn received_by(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<u64, RedisError> {
        let r = server::info(&self.settings, host, port, timeout).await?;
        if r.role == ServerRole::Master {
            return Err(RedisError::State(format!(
                "{host}:{port} runs as a primary"
            )));
        }
        Ok(r.position())
    }

    // checkpoint: the default (nothing). Replication never reads the primary's files:
    // a replica resyncs from memory (backlog or a fresh RDB stream). A BGSAVE before a
    // switchover or after a promotion would fork the whole dataset at the moment the
    // cluster can least afford the memory and latency, and buy nothing the next
    // SHUTDOWN (which saves per the configuration) does not.
}

/// Fences the local server when the leader's lease deadline passes, on the daemon's
/// deadline timer (not the loop, which may be the thing that is late):
///
/// 1. `CLIENT PAUSE <long> WRITE`: from this instant no write is acknowledged;
/// 2. `REPLICAOF` [`NOBODY`]: a read-only replica of no one, which refuses writes
///    (`READONLY`) on its own and keeps its data and replication id, so it can later
///    follow the new primary with a partial resync;
/// 3. `CLIENT KILL TYPE normal|pubsub`: clients reconnect and ask the Sentinel port,
///    which names the new primary (as Sentinel does on a reconfiguration);
/// 4. `CLIENT UNPAUSE`: a replica has nothing to pause, and replication from the next
///    primary must not wait.
///
/// Each step is bounded by `timeout`. If the pause fails the server may still take
/// writes, so that is the error; the guard process still kills the server a little
/// later, before the lease can expire in etcd.
pub async fn fence(settings: &RedisSettings, timeout: Duration) -> Result<(), RedisError> {
    let host = settings.local_host();
    let run = |cmd: redis::Cmd, what: &'static str| {
        let host = host.clone();
        async move {
            server::command::<redis::Value>(settings, &host, settings.port, &cmd, what, timeout)
                .await
                .map(|_| ())
        }
    };
    // Longer than any demotion takes; Redis lifts it by itself if we never do.
    let mut pause = redis::cmd("CLIENT");
    pause.arg("PAUSE").arg(600_000).arg("WRITE");
    run(pause, "CLIENT PAUSE WRITE").await?;
    let mut demote = redis::cmd("REPLICAOF");
    demote.arg(NOBODY.0).arg(NOBODY.1);
    let demoted = run(demote, "REPLICAOF (fencing)").await;
    for kind in ["normal", "pubsub"] {
        let mut kill = redis::cmd("CLIENT");
        kill.arg("KILL")
            .arg("TYPE")
            .arg(kind)
            .arg("SKIPME")
            .arg("yes");
        if let Err(e) = run(kill, "CLIENT KILL").await {
            tracing::warn!(error = %e, "fencing: clients not disconnected");
        }
    }
    // Only once it is a replica: a primary that could not be demoted stays paused.
    if demoted.is_ok() {
        let mut unpause = redis::cmd("CLIENT");
        unpause.arg("UNPAUSE");
        run(unpause, "CLIENT UNPAUSE").await?;
    }
    demoted
}

/// The lineage a stopped server last reported (for tests and the status the daemon
/// will publish).
pub fn last_lineage(settings: &RedisSettings) -> Option<Lineage> {
    Marker::read(&settings.data_dir).last
}
