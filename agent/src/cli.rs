//! The `warden` command line: validate a config, or run the agent until SIGTERM/SIGINT;
//! `warden wal-push|wal-fetch` (see `backup::command`) and `warden guard` are routed first.

use crate::ha::run::Agent;
use crate::state::{NodeStatus, Shared};
use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warden_config::{self as config, Config};
use warden_consensus::etcd::EtcdDcs;
use warden_consensus::Dcs;
use warden_pg::{self as pg, Postgres};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Warden: a high-availability agent for PostgreSQL, compatible with Patroni's
/// configuration, etcd keys and REST API.
#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    after_help = "Archive commands (for PostgreSQL; see `warden wal-push --help`):\n  \
                  warden wal-push [-c CONFIG] PATH        archive_command = '... %p'\n  \
                  warden wal-fetch [-c CONFIG] NAME DEST  restore_command = '... %f %p'"
)]
struct Cli {
    /// Patroni-format YAML configuration file (or a directory of them). Optional, as
    /// for Patroni: without one (or when it does not exist) the configuration comes
    /// from `PATRONI_CONFIGURATION` or the other `PATRONI_*` variables.
    config: Option<PathBuf>,
    /// Check the configuration file and exit: 0 if valid, 1 with the problems if not.
    #[arg(long)]
    validate_config: bool,
    /// Log format (overrides `log.type` in the config).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

pub fn main() -> ExitCode {
    // `warden guard`: the fencing guard process the agent starts for itself.
    if std::env::args().nth(1).as_deref() == Some("guard") {
        let code = warden_fencing::guard::run(std::io::BufReader::new(std::io::stdin()));
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // `warden wal-push` / `warden wal-fetch`: PostgreSQL's archive and restore commands.
    if let Some(sub @ ("wal-push" | "wal-fetch")) = std::env::args().nth(1).as_deref() {
        return warden_backup::command::main(sub);
    }
    // Before any thread exists: the variables leave the environment here, so no child
    // inherits a password given this way.
    let env = warden_config::env::capture();
    let cli = Cli::parse();
    let loaded = match config::load_with(cli.config.as_deref(), Some(env)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if cli.validate_config {
        let source = cli.config.as_ref().filter(|p| p.exists()).map_or_else(
            || "the environment".to_string(),
            |p| p.display().to_string(),
        );
        println!("{source}: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let cfg = loaded.config;
    let json = match cli.log_format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Human) => false,
        None => cfg.log.json,
    };
    // Kept to the end of `main`: dropping it writes out the queued log lines.
    let _log_guard = warden_config::logging::start(&cfg.log, json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let config_path = cli.config.filter(|p| p.exists());
    match runtime.block_on(run(cfg, config_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Finds `postgres`: in `postgresql.bin_dir`, else on PATH.
fn resolve_bin_dir(pg: &config::PostgresqlConfig) -> anyhow::Result<PathBuf> {
    if let Some(d) = &pg.bin_dir {
        return Ok(d.clone());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("postgres").is_file())
        .ok_or_else(|| anyhow!("postgresql.bin_dir: not set and no `postgres` executable on PATH; set it (e.g. /usr/lib/postgresql/15/bin)"))
}

fn pg_settings(cfg: &Config, p: &config::PostgresqlConfig, bin_dir: PathBuf) -> pg::Settings {
    let tls = &p.authentication.tls;
    let role = |c: &config::Credentials, tls: &pg::tls::ClientTls| pg::Role {
        username: c.username.clone(),
        password: c.password.clone(),
        tls: tls.clone(),
    };
    pg::Settings {
        name: cfg.name.clone(),
        scope: cfg.scope.clone(),
        data_dir: p.data_dir.clone(),
        bin_dir,
        listen_hosts: p.listen_hosts.clone(),
        port: p.port,
        pgpass: p.pgpass.clone(),
        superuser: role(&p.authentication.superuser, &tls.superuser),
        replication: role(&p.authentication.replication, &tls.replication),
        rewind: p
            .authentication
            .rewind
            .as_ref()
            .map(|c| role(c, tls.rewind.as_ref().unwrap_or(&tls.superuser))),
        parameters: p.parameters.clone(),
        recovery_conf: p.recovery_conf.clone(),
        pg_hba: p.pg_hba.clone(),
        initdb: cfg
            .bootstrap
            .initdb
            .iter()
            .map(config::InitdbOption::to_arg)
            .collect(),
        use_unix_socket: p.use_unix_socket,
        use_pg_rewind: p.use_pg_rewind,
    }
}

/// The engine the config names, built before anything is bound or started, so a
/// setting it cannot use stops the start naming it.
enum Engine {
    Postgres(Box<Postgres>),
    Redis(Box<warden_redis::adapter::Redis>),
}

impl Engine {
    fn prepare(cfg: &Config) -> anyhow::Result<Engine> {
        match &cfg.engine {
            config::EngineConfig::Postgresql(p) => {
                let run_as = pg::runas::resolve(&p.data_dir)?;
                let bin_dir = resolve_bin_dir(p)?;
                Ok(Engine::Postgres(Box::new(Postgres::new(
                    pg_settings(cfg, p, bin_dir),
                    run_as,
                ))))
            }
            config::EngineConfig::Redis(r) => {
                let settings = crate::redis_mode::settings(cfg, r);
                let redis = warden_redis::adapter::Redis::new(settings)
                    .map_err(|e| anyhow!("redis.parameters: {e}"))?;
                Ok(Engine::Redis(Box::new(redis)))
            }
        }
    }

    /// What the deadline timer does when the lease deadline passes.
    fn fence(&self) -> Arc<dyn crate::ha::fence::Fence> {
        match self {
            Engine::Postgres(pg) => Arc::new(crate::ha::fence::PgFence(pg.programs.clone())),
            Engine::Redis(r) => Arc::new(crate::ha::fence::RedisFence(r.settings().clone())),
        }
    }
}

/// What both engines' agents are started with.
struct Started {
    cfg: Arc<Config>,
    dcs: Arc<dyn Dcs>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    requests_rx: crate::ha::request::RequestRx,
    config_path: Option<PathBuf>,
    reload_security: Arc<crate::api::security::Security>,
}

impl Started {
    /// The agent with the parts every engine has: the guard, the request queue and the
    /// reload hook.
    fn agent<D: crate::ha::LocalEngine>(
        self,
        db: D,
        guard: crate::ha::fence::Guard,
    ) -> (Agent<D>, CancellationToken) {
        let reload_security = self.reload_security;
        let agent = Agent::new(self.cfg, self.dcs, db, self.shared)
            .with_guard(Box::new(guard))
            .with_requests(self.requests_rx, self.config_path)
            // The REST API's certificate, client CA, allowlist and headers, and the
            // members' client TLS; a bad new certificate keeps the running one.
            .with_reload_hook(Box::new(move |c| reload_security.reload(&c.restapi)));
        (agent, self.shutdown)
    }
}

async fn run(cfg: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let engine = Engine::prepare(&cfg)?;

    let listener = tokio::net::TcpListener::bind(cfg.restapi.listen)
        .await
        .with_context(|| format!("restapi.listen: cannot listen on {}", cfg.restapi.listen))?;
    // The certificate, key and CAs are read now (also the client side the name check
    // below uses): a bad file stops the start, naming the key, rather than serving
    // without TLS.
    let security =
        crate::api::security::Security::start(&cfg.restapi).map_err(|e| anyhow!("{e}"))?;
    // The loop owns reloads; the server's rules are swapped through this handle.
    let reload_security = security.clone();

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;

    let dcs = match connect_dcs(&cfg, &shutdown).await? {
        Some(d) => d,
        None => return Ok(()),
    };
    // Before anything is served or started under this name.
    match read_cluster(&cfg, dcs.as_ref(), &shutdown).await {
        Some(cluster) => {
            crate::unique_name::ensure(
                &cluster,
                &cfg.name,
                &cfg.restapi.connect_address.to_string(),
            )
            .await?
        }
        None => return Ok(()),
    }
    let shared = Shared::new(NodeStatus::new(
        cfg.scope.clone(),
        cfg.name.clone(),
        cfg.tags.to_member_json(),
    ));
    shared.update(|s| s.auth = cfg.restapi.authentication.clone());
    let (requests, requests_rx) = crate::ha::request::channel();
    // Base backups (PostgreSQL's; a Redis member's snapshots are RDB jobs).
    let backups = match (&engine, cfg.backup.is_some()) {
        (Engine::Postgres(pg), true) => Some(warden_backup::base::Service::new(
            cfg.clone(),
            pg.settings.clone(),
            pg.programs.clone(),
            shared.clone(),
        )),
        _ => None,
    };
    let api_ctx = crate::api::write::Context {
        shared: shared.clone(),
        dcs: dcs.clone(),
        keys: warden_consensus::Keys::new(&cfg.namespace, &cfg.scope),
        requests: requests.clone(),
        backups: backups.clone(),
        security,
    };
    let api_stop = CancellationToken::new();
    let api = tokio::spawn(crate::api::serve(listener, api_ctx, api_stop.clone()));
    spawn_reload_on_sighup(requests)?;
    tracing::info!(name = %cfg.name, scope = %cfg.scope, api = %cfg.restapi.listen, "warden started");
    if let Some(risk) = open_api_risk(&cfg) {
        tracing::warn!(api = %cfg.restapi.listen, "{risk}");
    }
    for role in libpq_cleartext_risk(&cfg) {
        tracing::warn!(
            "postgresql.authentication.{role}: pg_basebackup, pg_rewind and the walreceiver \
             (libpq 15, which has no require_auth) answer a cleartext password request from \
             whatever server they reach, so a forged member address collects this password; \
             set sslmode: verify-full (or verify-ca) or channel_binding: require for this role"
        );
    }

    let guard =
        crate::ha::fence::Guard::spawn().context("cannot start the fencing guard process")?;
    let timer = crate::ha::fence::spawn_timer(shared.clone(), engine.fence());
    let started = Started {
        cfg: cfg.clone(),
        dcs: dcs.clone(),
        shared: shared.clone(),
        shutdown: shutdown.clone(),
        requests_rx,
        config_path: config_path.clone(),
        reload_security,
    };
    let result = match engine {
        Engine::Postgres(pg) => {
            // The backup supervisor (with a backup section) follows the loop's turn
            // reports.
            let backup_side = cfg.backup.is_some().then(|| {
                crate::backups::Handle::start(crate::backups::Parts {
                    dcs: dcs.clone(),
                    keys: warden_consensus::Keys::new(&cfg.namespace, &cfg.scope),
                    shared: shared.clone(),
                    settings: pg.settings.clone(),
                    programs: pg.programs.clone(),
                    backups: backups.clone(),
                    config_path: config_path.clone(),
                })
            });
            let (mut agent, shutdown) = started.agent(*pg, guard);
            if let Some(service) = backups {
                agent = agent.with_backups(service);
            }
            if let Some(side) = backup_side {
                agent = agent.with_backup_side(side);
            }
            // Boxed: the loop's future is large and lives for the whole run.
            Box::pin(agent.run(shutdown)).await
        }
        Engine::Redis(redis) => {
            let port_stop = CancellationToken::new();
            let port =
                crate::redis_mode::start_sentinel(&cfg, shared.clone(), port_stop.clone()).await?;
            // RDB snapshots and drills (with a backup section) follow the turn reports.
            let side = crate::backups::rdb::side(&cfg, &dcs, &shared, redis.settings())?;
            let (agent, shutdown) = started.agent(*redis, guard);
            let agent = side.into_iter().fold(agent, Agent::with_backup_side);
            let result = Box::pin(agent.run(shutdown)).await;
            port_stop.cancel();
            if let Some(task) = port {
                let _ = task.await;
            }
            result
        }
    };
    timer.abort();
    api_stop.cancel();
    let _ = api.await;
    result.map_err(|f| anyhow!(f.0))
}

/// A REST API reachable from other hosts with no `restapi.authentication`: anyone who
/// can reach it can switch over, restart or reconfigure the cluster. Said on every
/// start (Patroni says nothing).
fn open_api_risk(cfg: &Config) -> Option<&'static str> {
    let ip = cfg.restapi.listen.ip();
    (cfg.restapi.authentication.is_none() && !ip.is_loopback()).then_some(
        "the REST API listens beyond this host with no restapi.authentication: anyone who \
         can reach it can switch over, fail over, restart, reinitialize or reconfigure the \
         cluster; set restapi.authentication (and restrict who can reach the port)",
    )
}

/// The roles whose password libpq programs would hand to a peer asking for it in clear
/// text: the members are not all on this host (the member's own address is not
/// loopback), the role has a password, and neither a verified server certificate nor
/// channel binding stands in the way. The agent's own SQL refuses such requests itself
/// (`allow_cleartext_password`); libpq 15 cannot be told to. Said on every start.
fn libpq_cleartext_risk(cfg: &Config) -> Vec<&'static str> {
    use warden_pg::tls::{ChannelBinding, SslMode};
    let Some(pg) = cfg.postgresql() else {
        return Vec::new();
    };
    let local = pg
        .connect_address
        .host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
        || pg.connect_address.host == "localhost";
    if local {
        return Vec::new();
    }
    let auth = &pg.authentication;
    let exposed = |creds: &warden_config::Credentials, tls: &warden_pg::tls::ClientTls| {
        creds.password.is_some()
            && !matches!(tls.mode(), SslMode::VerifyCa | SslMode::VerifyFull)
            && tls.channel_binding != Some(ChannelBinding::Require)
    };
    let mut roles = Vec::new();
    if exposed(&auth.replication, &auth.tls.replication) {
        roles.push("replication");
    }
    if exposed(&auth.superuser, &auth.tls.superuser) {
        roles.push("superuser");
    }
    if let (Some(c), Some(t)) = (&auth.rewind, &auth.tls.rewind) {
        if exposed(c, t) {
            roles.push("rewind");
        }
    }
    roles
}

/// SIGHUP re-reads the config file, like `POST /reload` (and Patroni).
fn spawn_reload_on_sighup(requests: crate::ha::request::RequestTx) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("received SIGHUP: reloading the configuration");
            let req = crate::ha::request::Request {
                kind: crate::ha::request::Kind::Reload,
                reply: None,
            };
            if requests.try_send(req).is_err() {
                tracing::warn!("reload not queued: the request queue is full");
            }
        }
    });
    Ok(())
}

fn spawn_signal_handler(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
        token.cancel();
    });
    Ok(())
}

/// The first read of the cluster, retried (as the connection is) until etcd answers or
/// the agent is told to stop (`None`).
async fn read_cluster(
    cfg: &Config,
    dcs: &dyn Dcs,
    shutdown: &CancellationToken,
) -> Option<warden_consensus::Cluster> {
    let keys = warden_consensus::Keys::new(&cfg.namespace, &cfg.scope);
    let mut delay = Duration::from_millis(200);
    loop {
        match dcs.get_prefix(keys.prefix()).await {
            Ok(snap) => return Some(warden_consensus::Cluster::from_snapshot(&keys, &snap)),
            Err(e) => tracing::warn!(error = %e, "cannot read the cluster from etcd; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Connects to etcd, retrying until it answers or the agent is told to stop: an agent
/// started before its DCS should wait for it, not exit.
async fn connect_dcs(
    cfg: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<dyn Dcs>>> {
    if cfg.etcd3.hosts.is_empty() {
        bail!("etcd3.hosts: no etcd endpoint configured");
    }
    let timeout = warden_consensus::request_timeout(cfg.bootstrap.dcs.retry_timeout);
    let mut delay = Duration::from_millis(200);
    loop {
        match EtcdDcs::connect(&cfg.etcd3.hosts, &cfg.etcd3.security, timeout).await {
            Ok(d) => return Ok(Some(Arc::new(d))),
            Err(e) => {
                tracing::warn!(error = %e, hosts = ?cfg.etcd3.hosts, "cannot reach etcd; retrying")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, auth: bool) -> Config {
        let auth = if auth {
            "\n  authentication: {username: a, password: b}"
        } else {
            ""
        };
        let yaml = format!(
            "scope: demo\nname: n1\nrestapi:\n  listen: {listen}\n  connect_address: 10.1.2.3:8008{auth}\netcd3:\n  host: 127.0.0.1:2379\n\
             postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /nonexistent/warden/n1/data\n  \
             authentication:\n    superuser: {{username: postgres}}\n    replication: {{username: r}}\n"
        );
        config::parse(&yaml).unwrap().config
    }

    #[test]
    fn libpq_cleartext_exposure_is_named_for_remote_members() {
        let yaml = |address: &str, replication: &str| {
            format!(
                "scope: demo\nname: n1\nrestapi:\n  listen: 127.0.0.1:8008\netcd3:\n  \
                 host: 127.0.0.1:2379\npostgresql:\n  listen: 0.0.0.0:5432\n  \
                 connect_address: {address}:5432\n  data_dir: /nonexistent/warden/n1/data\n  \
                 authentication:\n    superuser: {{username: postgres}}\n    \
                 replication: {replication}\n"
            )
        };
        let risk = |address: &str, replication: &str| {
            libpq_cleartext_risk(&config::parse(&yaml(address, replication)).unwrap().config)
        };
        let with_password = "{username: r, password: secret}";
        assert_eq!(risk("10.1.2.3", with_password), ["replication"]);
        assert!(risk("127.0.0.1", with_password).is_empty());
        assert!(risk("10.1.2.3", "{username: r}").is_empty());
        assert!(risk(
            "10.1.2.3",
            "{username: r, password: secret, sslmode: require, channel_binding: require}"
        )
        .is_empty());
    }

    #[test]
    fn an_open_api_beyond_loopback_is_named() {
        assert!(open_api_risk(&config("0.0.0.0:8008", false)).is_some());
        assert!(open_api_risk(&config("10.1.2.3:8008", false)).is_some());
        assert!(open_api_risk(&config("0.0.0.0:8008", true)).is_none());
        assert!(open_api_risk(&config("127.0.0.1:8008", false)).is_none());
    }
}
