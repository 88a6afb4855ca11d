//! `wardenctl`, the operator CLI: a drop-in for `patronictl` (Patroni 4.x) where the
//! two overlap.
//!
//! Reads (`list`, `history`, `show-config`, ...) go to etcd directly through the
//! `warden_consensus` crate, as patronictl does; `edit-config` and `remove` write there
//! too. Actions (`switchover`, `restart`, `pause`, ...) are requests to the REST API of
//! the leader or of the named members, so the agents stay the only ones that act on
//! PostgreSQL. Every network call is bounded.
//!
//! `dsn` and `query` read the members from etcd too; `query` then connects to the
//! chosen member's PostgreSQL itself, as patronictl does.
//!
//! `args` is the command line, `config` where the cluster is found, `members` and
//! `output` the tables, `edit` the pure part of `edit-config`, `api` the REST calls,
//! `io` the questions, `pyfmt` query values printed as Python prints them; `commands`,
//! `actions` and `query` put them together.

pub mod actions;
pub mod api;
pub mod args;
pub mod backup;
mod backup_ops;
pub mod cluster_role;
pub mod commands;
pub mod config;
pub mod dr_report;
pub mod edit;
pub mod io;
mod maintenance;
pub mod members;
pub mod output;
pub mod pyfmt;
mod query;
pub mod rest_tls;
pub mod restore;
mod stack_jobs;
mod switch;
#[cfg(test)]
mod tests;

use anyhow::{anyhow, bail, Result};
use args::{Cli, Command};
use clap::Parser;
use config::CtlConfig;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use warden_consensus::etcd::EtcdDcs;
use warden_consensus::{Cluster, Dcs, DcsError, Keys, Snapshot};

/// Bound of each etcd request.
pub const DCS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long wardenctl waits for things, and how often it looks. Tests shorten these.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Between two reads while following a change.
    pub poll: Duration,
    /// Bound for an immediate switchover/failover to show its result in the DCS.
    pub switchover_deadline: Duration,
    /// Bound for `reinit --wait`.
    pub reinit_deadline: Duration,
    /// Default bound of a REST call.
    pub api_timeout: Duration,
    /// Bound of REST calls that wait for the agent to act (switchover, restart).
    pub action_timeout: Duration,
    /// Bound of the SQL `query` runs; when it passes, the query is cancelled.
    pub query_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            switchover_deadline: Duration::from_secs(60),
            // A base backup of a large database takes long; the bound only keeps the
            // loop finite, the agent goes on either way.
            reinit_deadline: Duration::from_secs(3600),
            api_timeout: Duration::from_secs(10),
            action_timeout: Duration::from_secs(90),
            query_timeout: Duration::from_secs(3600),
        }
    }
}

/// One run of wardenctl: where the cluster is, how to reach it, and the terminal.
pub struct Ctl<'a> {
    pub config: CtlConfig,
    dcs: Option<Arc<dyn Dcs>>,
    pub api: api::Api,
    pub io: io::Io<'a>,
    pub timing: Timing,
    /// `$EDITOR` (or `editor`/`vi`) for an interactive `edit-config`.
    pub editor: Option<String>,
    /// Clear the screen between refreshes of `list -w` (only on a terminal).
    pub clear_screen: bool,
    /// Standard input is a terminal: `query --password` turns its echo off.
    pub stdin_is_terminal: bool,
}

impl std::fmt::Debug for Ctl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctl")
            .field("config", &self.config)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// A cluster as read from the DCS in one request.
#[derive(Debug, Clone)]
pub struct View {
    pub scope: String,
    pub keys: Keys,
    pub snapshot: Snapshot,
    pub cluster: Cluster,
}

impl View {
    /// Whether anything of the cluster is stored at all.
    pub fn exists(&self) -> bool {
        !self.snapshot.kvs.is_empty()
    }

    pub fn raw(&self, key: &str) -> Option<&warden_consensus::KeyValue> {
        self.snapshot.kvs.iter().find(|kv| kv.key == key)
    }

    pub fn member_names(&self) -> String {
        let names: Vec<&str> = self.cluster.members.keys().map(String::as_str).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

impl<'a> Ctl<'a> {
    pub fn new(config: CtlConfig, io: io::Io<'a>) -> Self {
        let api = api::Api {
            auth: config.auth.clone(),
            timeout: Timing::default().api_timeout,
        };
        Self {
            config,
            dcs: None,
            api,
            io,
            timing: Timing::default(),
            editor: None,
            clear_screen: false,
            stdin_is_terminal: false,
        }
    }

    /// Uses `dcs` instead of connecting to the configured etcd (tests).
    pub fn with_dcs(mut self, dcs: Arc<dyn Dcs>) -> Self {
        self.dcs = Some(dcs);
        self
    }

    fn etcd_desc(&self) -> String {
        if self.config.etcd_hosts.is_empty() {
            "the DCS".to_string()
        } else {
            format!("etcd at {}", self.config.etcd_hosts.join(","))
        }
    }

    fn dcs_error(&self, what: &str, e: &DcsError) -> anyhow::Error {
        match e {
            DcsError::Timeout(_) | DcsError::Unavailable(_) => {
                anyhow!("{what}: {} is unreachable: {e}", self.etcd_desc())
            }
            _ => anyhow!("{what}: {} answered with an error: {e}", self.etcd_desc()),
        }
    }

    /// The DCS, connecting on first use (so `version` needs no etcd).
    pub async fn dcs(&mut self) -> Result<Arc<dyn Dcs>> {
        if let Some(d) = &self.dcs {
            return Ok(d.clone());
        }
        let endpoints = self.config.endpoints()?.to_vec();
        let security = self.config.etcd_security()?;
        let d = EtcdDcs::connect(&endpoints, &security, DCS_TIMEOUT)
            .await
            .map_err(|e| self.dcs_error("connecting", &e))?;
        let d: Arc<dyn Dcs> = Arc::new(d);
        self.dcs = Some(d.clone());
        Ok(d)
    }

    /// One consistent read of the cluster's keys. Keys that do not parse are reported
    /// as warnings with their names; the rest of the cluster is still shown.
    pub async fn read(&mut self, scope: &str) -> Result<View> {
        let dcs = self.dcs().await?;
        let keys = Keys::new(&self.config.namespace, scope);
        let snapshot = dcs
            .get_prefix(keys.prefix())
            .await
            .map_err(|e| self.dcs_error(&format!("reading {}", keys.prefix()), &e))?;
        let cluster = Cluster::from_snapshot(&keys, &snapshot);
        for e in &cluster.errors {
            self.io
                .warn(format!("ignoring a key that does not parse: {e}"))?;
        }
        Ok(View {
            scope: scope.to_string(),
            keys,
            snapshot,
            cluster,
        })
    }

    /// Like [`Ctl::read`], but a cluster with no keys at all is an error (a wrong name
    /// or namespace, most likely).
    pub async fn read_existing(&mut self, scope: &str) -> Result<View> {
        let view = self.read(scope).await?;
        if !view.exists() {
            bail!(
                "cluster {scope:?} not found: no keys under {} in {} (wrong cluster name or \
                 namespace?)",
                view.keys.prefix(),
                self.etcd_desc()
            );
        }
        Ok(view)
    }

    pub async fn run(&mut self, command: Command) -> Result<()> {
        match command {
            Command::List(a) => self.list(a).await,
            Command::Topology(a) => self.topology(a).await,
            Command::Switchover(a) => self.switchover(a).await,
            Command::Failover(a) => self.failover(a).await,
            Command::Restart(a) => self.restart(a).await,
            Command::Reinit(a) => self.reinit(a).await,
            Command::Reload(a) => self.reload(a).await,
            Command::Pause(a) => self.toggle_pause(a, true).await,
            Command::Resume(a) => self.toggle_pause(a, false).await,
            Command::Flush(a) => self.flush(a).await,
            Command::ShowConfig(a) => self.show_config(a).await,
            Command::EditConfig(a) => self.edit_config(a).await,
            Command::History(a) => self.history(a).await,
            Command::Version(a) => self.version(a).await,
            Command::Remove(a) => self.remove(a).await,
            Command::Restore(a) if a.job.is_some() => {
                let name = a.job.clone().unwrap_or_default();
                self.restore_job(&name, &a.backup, &a.to, a.repository.as_deref(), a.json)
                    .await
            }
            Command::Restore(a) => self.restore(a).await,
            Command::Drill(a) if a.job.is_some() => {
                let name = a.job.clone().unwrap_or_default();
                self.drill_job(
                    &name,
                    a.backup.as_deref(),
                    a.scratch_dir.as_deref(),
                    a.repository.as_deref(),
                    a.json,
                )
                .await
            }
            Command::Drill(a) => self.drill(a).await,
            // Boxed: it holds the DCS, repository and copy reads at once.
            Command::DrReport(a) => Box::pin(self.dr_report(a)).await,
            Command::Backup(a) if a.command.job().is_some() => self.backup_job(a.command).await,
            Command::Backup(a) => self.backup(a).await,
            Command::Dsn(a) => self.dsn(a).await,
            Command::Query(a) => self.query(a).await,
            Command::DemoteCluster(a) => self.demote_cluster(a).await,
            Command::PromoteCluster(a) => self.promote_cluster(a).await,
        }
    }
}

/// The editor for `edit-config`: `$EDITOR`, else `editor` or `vi` on PATH.
fn find_editor() -> Option<String> {
    if let Some(e) = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
    {
        return Some(e);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["editor", "vi"].into_iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

/// The binary's entry point. Exit codes: 0 success, 1 failed or refused, 2 usage
/// (clap's own exit).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = |k: &str| std::env::var(k).ok();
    let sources = config::Sources {
        config_file: cli.config_file.clone(),
        dcs_url: cli.dcs_url.clone(),
        env: &env,
        default_file: config::default_file(&env),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let clear_screen = stdout.is_terminal();
    let mut out = stdout.lock();
    let mut err = std::io::stderr();
    let stdin = std::io::stdin();
    let stdin_is_terminal = stdin.is_terminal();
    let mut input = stdin.lock();
    let result = config::load(&sources).and_then(|cfg| {
        cfg.rest_tls.install(cli.insecure);
        let mut ctl = Ctl::new(
            cfg,
            io::Io {
                out: &mut out,
                err: &mut err,
                input: &mut input,
            },
        );
        ctl.editor = find_editor();
        ctl.clear_screen = clear_screen;
        ctl.stdin_is_terminal = stdin_is_terminal;
        runtime.block_on(ctl.run(cli.command))
    });
    // Background tasks of the etcd client must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            // A report that found a violated objective: distinct from a failure to
            // report, for cron and CI.
            if e.downcast_ref::<dr_report::Violated>().is_some() {
                return ExitCode::from(dr_report::EXIT_VIOLATED);
            }
            ExitCode::FAILURE
        }
    }
}
