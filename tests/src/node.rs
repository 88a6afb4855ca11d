//! One database node: its directory, its Patroni YAML and its `warden` agent.
//!
//! The agent starts PostgreSQL as its child; the kit never starts PostgreSQL
//! itself but does kill it: a SIGKILLed agent leaves its postmaster running,
//! so killing a node (or dropping it) also kills the postmaster found in
//! `<data_dir>/postmaster.pid`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use serde_json::Value;
use warden_api::{ClusterStatus, PatroniStatus};

use crate::config::NodeConfig;
use crate::http::{self, HttpResponse};
use crate::process::{self, Managed};
use crate::{sql, wait, workdir};

/// Bound for a killed postmaster (and its backends) to disappear.
const POSTMASTER_KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// A node: config on disk plus, while running, its agent process.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    warden: PathBuf,
    agent: Option<Managed>,
}

impl Node {
    /// Create the node directory (owned by `postgres` when we are root) and
    /// write the config. Does not start anything.
    pub fn create(config: NodeConfig, warden: &Path) -> Result<Node> {
        workdir::create_node_dir(&config.node_dir)?;
        let node = Node {
            config,
            warden: warden.to_path_buf(),
            agent: None,
        };
        node.write_config()?;
        wait::register_log(&node.log_path());
        Ok(node)
    }

    /// (Re)write the config file from [`Node::config`]; takes effect on the
    /// next start.
    pub fn write_config(&self) -> Result<()> {
        let path = self.config.config_path();
        std::fs::write(&path, self.config.render()?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Change the config; call [`Node::write_config`] afterwards.
    pub fn config_mut(&mut self) -> &mut NodeConfig {
        &mut self.config
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn pg_port(&self) -> u16 {
        self.config.pg_port
    }

    /// A Redis member's redis-server port (the `pg` port of its layout).
    pub fn redis_port(&self) -> u16 {
        self.config.pg_port
    }

    /// A Redis member's Sentinel port.
    pub fn sentinel_port(&self) -> Option<u16> {
        self.config.sentinel_port
    }

    pub fn api_port(&self) -> u16 {
        self.config.api_port
    }

    /// `http://127.0.0.1:<api port>`.
    pub fn api_url(&self) -> String {
        self.config.api_url()
    }

    pub fn node_dir(&self) -> &Path {
        &self.config.node_dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir()
    }

    pub fn config_path(&self) -> PathBuf {
        self.config.config_path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.config.log_path()
    }

    /// Start `warden CONFIG`, output appended to the node's log.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("agent {} is already running", self.name());
        }
        let mut cmd = Command::new(&self.warden);
        cmd.arg(self.config_path());
        // Logs are files, not terminals: the agent must leave colour out by itself.
        cmd.env_remove("NO_COLOR");
        cmd.envs(self.config.env.iter().map(|(k, v)| (k, v)));
        let agent = Managed::spawn(
            &format!("warden {}", self.name()),
            &mut cmd,
            &self.log_path(),
        )?;
        self.agent = Some(agent);
        Ok(())
    }

    /// True while the agent process runs.
    pub fn is_running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(Managed::is_running)
    }

    /// The agent's pid, if it was started.
    pub fn pid(&self) -> Option<i32> {
        self.agent.as_ref().map(Managed::pid)
    }

    /// The agent's exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.agent.as_mut().and_then(Managed::try_exit)
    }

    /// Send `sig` to the agent only (SIGSTOP, SIGCONT, SIGHUP, or a SIGKILL
    /// that deliberately leaves PostgreSQL running).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        match &self.agent {
            Some(a) => a.signal(sig),
            None => bail!("agent {} was never started", self.name()),
        }
    }

    /// Send `sig` to the agent. For SIGKILL the node is killed outright: the
    /// agent and everything it started, then its postmaster.
    pub fn kill(&mut self, sig: Signal) -> Result<()> {
        if sig == Signal::SIGKILL {
            self.kill_hard();
            return Ok(());
        }
        self.signal(sig)
    }

    /// SIGKILL the agent with its process tree, then the postmaster (which
    /// may not be in that tree, e.g. if started through pg_ctl).
    pub fn kill_hard(&mut self) {
        self.kill_agent_tree();
        self.kill_postmaster();
    }

    /// SIGKILL the agent and its process tree, leaving a postmaster that is
    /// not in that tree alone (see [`Node::kill_postmaster`]).
    pub fn kill_agent_tree(&mut self) {
        if let Some(a) = self.agent.as_mut() {
            a.kill_tree();
        }
    }

    /// Kill the PostgreSQL server of this node's data dir, if one runs.
    pub fn kill_postmaster(&self) -> bool {
        process::kill_postmaster(&self.data_dir(), POSTMASTER_KILL_TIMEOUT)
    }

    /// The running postmaster's pid (from `postmaster.pid`, verified).
    pub fn postmaster_pid(&self) -> Option<i32> {
        process::postmaster_pid(&self.data_dir())
    }

    /// SIGTERM the agent and wait for it to exit. After `timeout` it is killed
    /// (with its postmaster) and an error is returned.
    pub fn sigterm_and_wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = self.name().to_string();
        let Some(a) = self.agent.as_mut() else {
            bail!("agent {name} was never started");
        };
        match a.stop(Signal::SIGTERM, timeout) {
            Some(st) => Ok(st),
            None => {
                self.kill_postmaster();
                bail!("agent {name} did not exit within {timeout:?} of SIGTERM; killed it")
            }
        }
    }

    /// Poll until the agent exits; `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.agent.as_mut().and_then(|a| a.wait_exit(timeout))
    }

    /// Stop the agent gracefully if it runs (SIGTERM, `timeout`), then start
    /// it again with the same config file (re-read, so edits apply).
    pub fn restart(&mut self, timeout: Duration) -> Result<()> {
        if self.is_running() {
            self.sigterm_and_wait(timeout)?;
        }
        self.start()
    }

    /// `GET <api>/<path>`.
    pub fn get(&self, path: &str) -> Result<HttpResponse> {
        http::get(&self.url(path))
    }

    /// Status of `GET <api>/<path>`, `None` if the API is unreachable.
    pub fn status(&self, path: &str) -> Option<u16> {
        http::status(&self.url(path))
    }

    /// Status of `OPTIONS <api>/<path>` (HAProxy's check), `None` if unreachable.
    pub fn options(&self, path: &str) -> Option<u16> {
        http::options(&self.url(path)).ok()
    }

    /// `GET /patroni`, typed; `None` if unreachable or not a `/patroni` document.
    pub fn patroni(&self) -> Option<PatroniStatus> {
        PatroniStatus::from_json(&self.patroni_json()?).ok()
    }

    /// `GET /patroni` as raw JSON (to check the wire shape itself), `None` if
    /// unreachable or not JSON.
    pub fn patroni_json(&self) -> Option<Value> {
        self.get("/patroni").ok()?.json().ok()
    }

    /// `GET /cluster` from this node, typed; `None` if unreachable, not 200 or not a
    /// `/cluster` document.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        let r = self.get("/cluster").ok().filter(|r| r.status == 200)?;
        ClusterStatus::from_json(&r.json().ok()?).ok()
    }

    /// `GET /primary` answers 200.
    pub fn is_primary(&self) -> bool {
        self.status("/primary") == Some(200)
    }

    /// `GET /replica` answers 200.
    pub fn is_replica(&self) -> bool {
        self.status("/replica") == Some(200)
    }

    /// `timeline` from `/patroni`.
    pub fn timeline(&self) -> Option<u64> {
        self.patroni()?.timeline.map(u64::from)
    }

    /// `warden.fencing_token` from `/patroni` (the leader key's
    /// `create_revision` while this node leads).
    pub fn fencing_token(&self) -> Option<i64> {
        self.patroni()?.warden?.fencing_token
    }

    /// Pid of the postmaster's child whose process title contains `title`,
    /// e.g. `"walreceiver"` or `"checkpointer"`.
    pub fn postgres_child_pid(&self, title: &str) -> Option<i32> {
        let pm = self.postmaster_pid()?;
        process::children(pm).into_iter().find(|&c| {
            std::fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains(title))
        })
    }

    /// A PostgreSQL setting as `SHOW` reports it, over SQL.
    pub fn show(&self, setting: &str) -> Option<String> {
        sql::query_text(self.pg_port(), &format!("SHOW {setting}")).ok()?
    }

    /// `system_identifier` from `pg_control_system()`, over SQL.
    pub fn system_identifier(&self) -> Result<String> {
        sql::query_text(
            self.pg_port(),
            "SELECT system_identifier::text FROM pg_control_system()",
        )?
        .context("pg_control_system() returned no row")
    }

    /// Sibling directories of the data dir named `data.failed-*` (where a
    /// failed rewind leaves the old data dir before re-cloning).
    pub fn failed_data_dirs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.node_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("data.failed-"))
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// A superuser connection to this node's PostgreSQL over TCP.
    pub fn sql(&self) -> Result<postgres::Client> {
        sql::connect(self.pg_port())
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.api_url(), path.trim_start_matches('/'))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_hard();
        wait::unregister_log(&self.log_path());
    }
}
