//! High availability: the loop that feeds the pure decision core (`warden-ha`) and
//! executes its decisions through an engine's [`warden_ha::Database`] adapter
//! (PostgreSQL's: [`warden_pg::Postgres`]).
//!
//! The loop, `run::Agent<D>`, is generic over the adapter, and every database operation
//! goes through the trait's methods: configuring the server for its role, synchronous
//! replication (the engine plans, the loop writes `/sync` and the engine's setting in
//! the plan's order), retention for other members, starting, stopping, promoting,
//! repairing. What is still PostgreSQL's is the facts type ([`LocalEngine`]): the
//! status probe the REST API and the backups read. Its surroundings (clock, peers,
//! guard, watchdog) are seams too ([`env`]), so the simulation runs this loop.

pub mod callbacks;
mod custom_methods;
pub mod env;
pub mod execute;
pub mod fence;
mod intake;
mod keys;
pub mod operate;
pub mod peers;
pub mod publish;
pub mod replication;
pub mod request;
pub mod restore_bootstrap;
pub mod restore_replica;
pub mod run;
mod transitions;
mod turn;

// The pure core lives in `warden-ha`; the loop here runs it for PostgreSQL.
pub use warden_ha::{action, decide, race, switchover};
pub use warden_ha::{Action, Decision, StartAs};

/// What the loop observes and decides on.
pub mod observation {
    pub use warden_ha::{Local, ManualTask, Observation, Peer, PeerStatus, Tags};
}
pub use observation::Observation;

/// The engine adapter the loop drives: any [`warden_ha::Database`] whose facts the
/// daemon can show ([`crate::probe::EngineFacts`]: the probe the REST API and the
/// backups read), plus what ties the engine to the daemon's config file and backup
/// repository. Every hook here has a default, so an adapter (the simulation's) needs
/// only `Database`.
pub trait LocalEngine:
    warden_ha::Database<Facts: crate::probe::EngineFacts> + Sync + 'static
{
    /// A reloaded config's local settings (parameters, pg_hba) for the next configure.
    fn apply_local(&mut self, cfg: &warden_config::Config) {
        let _ = cfg;
    }

    /// `bootstrap.method: warden_restore`: creates the cluster from the backup
    /// repository instead of [`warden_ha::Database::bootstrap`].
    fn bootstrap_from_repository<'a>(
        &'a mut self,
        cfg: &'a warden_config::Config,
        config_path: Option<&'a std::path::Path>,
        spec: &'a warden_config::RestoreBootstrap,
        initial: &'a warden_consensus::DynamicConfig,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'a {
        let _ = (cfg, config_path, spec, initial);
        async { Err("this engine cannot bootstrap from the backup repository".to_string()) }
    }

    /// Where the leader's database listens (host, port), as a replica learns it each
    /// turn: PostgreSQL copies permanent logical slots from there.
    fn note_leader(&mut self, leader: Option<(String, u16)>) {
        let _ = leader;
    }

    /// About to start as a standby cluster's leader: drop recovery settings a restore
    /// from the repository left (PostgreSQL: the restore block in
    /// `postgresql.auto.conf`, which would shadow `standby_cluster.restore_command`).
    /// Returns whether anything was removed (a reload makes it count).
    fn drop_restore_settings(&mut self) -> Result<bool, String> {
        Ok(false)
    }

    /// `bootstrap.method: NAME` with a command (Patroni's custom bootstrap).
    fn bootstrap_custom<'a>(
        &'a mut self,
        spec: &'a warden_config::methods::CustomBootstrap,
        initial: &'a warden_consensus::DynamicConfig,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'a {
        let _ = (spec, initial);
        async { Err("this engine has no custom bootstrap".to_string()) }
    }

    /// `bootstrap.post_bootstrap`, once the new cluster runs.
    fn post_bootstrap<'a>(
        &'a mut self,
        command: &'a str,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'a {
        let _ = command;
        async { Err("this engine has no post_bootstrap".to_string()) }
    }

    /// A custom `create_replica_methods` entry, copying from `source` (host, port).
    fn replica_custom<'a>(
        &'a mut self,
        method: &'a warden_config::methods::CustomReplicaMethod,
        source: (&'a str, u16),
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'a {
        let _ = (method, source);
        async { Err("this engine has no custom replica methods".to_string()) }
    }

    /// `create_replica_methods: [warden_restore]`: the newest backup of cluster
    /// `system_identifier` as a replica. Returns the backup's id.
    fn replica_from_repository<'a>(
        &'a mut self,
        cfg: &'a warden_config::Config,
        config_path: Option<&'a std::path::Path>,
        system_identifier: Option<u64>,
    ) -> impl std::future::Future<Output = Result<String, String>> + Send + 'a {
        let _ = (cfg, config_path, system_identifier);
        async { Err("this engine cannot create a replica from the backup repository".to_string()) }
    }
}

impl LocalEngine for warden_pg::Postgres {
    fn apply_local(&mut self, cfg: &warden_config::Config) {
        let Some(pg) = cfg.postgresql() else { return };
        self.settings.parameters.clone_from(&pg.parameters);
        self.settings.pg_hba.clone_from(&pg.pg_hba);
        self.settings.use_pg_rewind = pg.use_pg_rewind;
    }

    async fn bootstrap_from_repository<'a>(
        &'a mut self,
        cfg: &'a warden_config::Config,
        config_path: Option<&'a std::path::Path>,
        spec: &'a warden_config::RestoreBootstrap,
        initial: &'a warden_consensus::DynamicConfig,
    ) -> Result<(), String> {
        restore_bootstrap::run(self, cfg, config_path, spec, initial)
            .await
            .map_err(|e| e.to_string())
    }

    async fn replica_from_repository<'a>(
        &'a mut self,
        cfg: &'a warden_config::Config,
        config_path: Option<&'a std::path::Path>,
        system_identifier: Option<u64>,
    ) -> Result<String, String> {
        restore_replica::run(self, cfg, config_path, system_identifier)
            .await
            .map_err(|e| e.to_string())
    }
    fn note_leader(&mut self, leader: Option<(String, u16)>) {
        self.set_leader_source(leader);
    }

    fn drop_restore_settings(&mut self) -> Result<bool, String> {
        let auto = self.settings.data_dir.join("postgresql.auto.conf");
        let has_block = std::fs::read_to_string(&auto)
            .is_ok_and(|t| t.contains(warden_backup::restore::recovery::BEGIN));
        if !has_block {
            return Ok(false);
        }
        warden_backup::restore::recovery::unconfigure(&self.settings.data_dir)
            .map(|()| true)
            .map_err(|e| {
                format!("removing the restore's recovery settings from postgresql.auto.conf: {e}")
            })
    }

    async fn bootstrap_custom<'a>(
        &'a mut self,
        spec: &'a warden_config::methods::CustomBootstrap,
        initial: &'a warden_consensus::DynamicConfig,
    ) -> Result<(), String> {
        custom_methods::bootstrap(self, spec, initial).await
    }

    async fn post_bootstrap<'a>(&'a mut self, command: &'a str) -> Result<(), String> {
        custom_methods::post_bootstrap(self, command).await
    }

    async fn replica_custom<'a>(
        &'a mut self,
        method: &'a warden_config::methods::CustomReplicaMethod,
        source: (&'a str, u16),
    ) -> Result<(), String> {
        custom_methods::create_replica(self, method, source).await
    }
}
