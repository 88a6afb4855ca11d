//! The PostgreSQL engine: the only crate that knows SQL and PostgreSQL's files and
//! programs (adapter), and PostgreSQL's replication policy (the `synchronous_mode` and
//! quorum planners of `synchronous_standby_names` and `/sync`).

pub mod conf;
pub mod control;
pub mod database;
pub mod leader;
mod logical;
pub mod lsn;
pub mod policy;
pub mod process;
pub mod quorum;
pub mod receivewal;
pub mod runas;
mod settings;
pub mod slots;
pub mod sql;
pub mod standbys;
pub mod sync;
pub mod target;
pub mod tls;

use conf::{Managed, Upstream};
use process::{ProcessError, Programs, StopMode};
use serde_json::Value;
use settings::libpq_escape;
pub use settings::{local_tcp_host, Role, Settings};
use sql::{ident, literal, Sql, SqlError};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;
use warden_ha::DataState;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("{0}")]
    Files(String),
    #[error("PostgreSQL did not accept connections within {0:?}")]
    NotReady(Duration),
}

fn files_err(what: &str, path: &Path, e: &std::io::Error) -> PgError {
    PgError::Files(format!("{what} {}: {e}", path.display()))
}

#[derive(Debug)]
pub struct Postgres {
    pub settings: Settings,
    pub programs: Programs,
    sql: Sql,
    /// The postmaster we started, kept so it is reaped when it exits.
    child: Option<tokio::process::Child>,
    /// The system identifier last read from the control file (see
    /// [`warden_ha::Database::observe`]); forgotten when the data goes.
    known_system_identifier: Option<String>,
    /// The timeline of the data when last seen stopped, until the server answers.
    stopped_timeline: Option<u32>,
    /// The leader's synchronous replication (see `leader.rs`).
    sync: leader::Synchronous,
    /// Replication slots seen wanted (see `leader.rs`).
    slots: leader::Slots,
    /// The dynamic config's `postgresql.recovery_conf`, as last configured; the
    /// member's own `recovery_conf` wins over it.
    dynamic_recovery_conf: BTreeMap<String, String>,
    /// The leader's PostgreSQL (host, port), to copy logical slots from.
    leader_source: Option<(String, u16)>,
    /// The upstream's WAL end last reported to our WAL receiver (see
    /// [`sql::Probe::upstream_end_lsn`]), kept while the receiver is down.
    last_upstream_end: Option<u64>,
}

impl Postgres {
    pub fn new(settings: Settings, run_as: Option<runas::RunAs>) -> Self {
        let log_file = settings.data_dir.parent().map_or_else(
            || PathBuf::from("postgresql.log"),
            |p| p.join("postgresql.log"),
        );
        let programs = Programs {
            bin_dir: settings.bin_dir.clone(),
            data_dir: settings.data_dir.clone(),
            run_as,
            log_file,
        };
        let sql = Sql::new(settings.local_conn_string(), Duration::from_secs(3));
        Self {
            settings,
            programs,
            sql,
            child: None,
            known_system_identifier: None,
            stopped_timeline: None,
            sync: leader::Synchronous::default(),
            slots: leader::Slots::default(),
            dynamic_recovery_conf: BTreeMap::new(),
            leader_source: None,
            last_upstream_end: None,
        }
    }

    /// Keeps the dynamic config's `postgresql.recovery_conf` (text values) for the next
    /// rendering of a replica's settings.
    pub fn set_dynamic_recovery_conf(&mut self, dynamic: &warden_consensus::DynamicConfig) {
        self.dynamic_recovery_conf = dynamic
            .postgresql
            .extra
            .get("recovery_conf")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), conf::param_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        // Permanent logical slots live on replicas too: the primary must keep the
        // catalog rows they need, which it learns from the replicas' feedback.
        if crate::slots::permanent_slots(dynamic)
            .0
            .iter()
            .any(crate::slots::PermanentSlot::is_logical)
        {
            self.dynamic_recovery_conf
                .insert("hot_standby_feedback".into(), "on".into());
        }
    }

    pub fn data_dir_state(&self) -> DataState {
        let d = &self.settings.data_dir;
        if process::is_initialized(d) {
            DataState::Initialized
        } else if d.exists() {
            DataState::NoCluster
        } else {
            DataState::Missing
        }
    }

    pub fn sql(&mut self) -> &mut Sql {
        &mut self.sql
    }

    /// The postmaster's pid, if one runs on our data directory.
    pub fn postmaster_pid(&mut self) -> Option<i32> {
        self.programs.postmaster_pid().or_else(|| self.child_pid())
    }

    /// Whether a postmaster is running on our data directory.
    pub fn is_running(&mut self) -> bool {
        self.child_pid().is_some() || self.programs.postmaster_pid().is_some()
    }

    /// Our postmaster child while it lives (before it has even written postmaster.pid).
    fn child_pid(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => child.id().and_then(|p| i32::try_from(p).ok()),
            Ok(Some(status)) => {
                tracing::warn!(%status, "postmaster exited");
                self.child = None;
                None
            }
            Err(_) => None,
        }
    }

    /// The system identifier recorded in the data directory's control file.
    pub async fn system_identifier(&self) -> Result<String, PgError> {
        let cd = self.programs.controldata().await?;
        cd.get("Database system identifier")
            .cloned()
            .ok_or_else(|| PgError::Files("pg_controldata printed no system identifier".into()))
    }

    /// Writes pgpass so replicas, pg_basebackup and pg_rewind can authenticate: the
    /// passwords only for the local server and `peer` (the member being connected to),
    /// never for any host that asks.
    pub fn write_pgpass(&self, peer: Option<(&str, u16)>) -> Result<(), PgError> {
        let s = &self.settings;
        let hosts = pgpass_hosts(s, peer);
        let mut users: Vec<(&str, &str)> = Vec::new();
        for role in [Some(&s.replication), Some(&s.superuser), s.rewind.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(p) = &role.password {
                users.push((&role.username, p));
            }
        }
        write_private(
            &s.pgpass,
            &conf::render_pgpass(&hosts, &users),
            self.programs.run_as,
        )
    }

    /// Renders postgresql.conf, pg_hba.conf and standby.signal for the wanted role.
    /// Returns true if postgresql.conf or pg_hba.conf changed (a running server needs a reload).
    pub fn write_config(
        &mut self,
        dcs_params: &BTreeMap<String, Value>,
        dcs_hba: Option<&[String]>,
        standby: Option<&Option<Upstream>>,
        synchronous_standby_names: Option<&str>,
    ) -> Result<bool, PgError> {
        let s = &self.settings;
        let data = &s.data_dir;
        let base = data.join("postgresql.base.conf");
        let main = data.join("postgresql.conf");
        if !base.exists() && main.exists() {
            // Keep initdb's file as the base the managed file includes.
            std::fs::rename(&main, &base).map_err(|e| files_err("cannot keep", &main, &e))?;
        }
        let managed = Managed {
            synchronous_standby_names: synchronous_standby_names.map(str::to_string),
            listen_addresses: s.listen_hosts.join(","),
            port: s.port,
            cluster_name: s.scope.clone(),
            standby: standby.cloned(),
            recovery_conf: {
                let mut r = self.dynamic_recovery_conf.clone();
                r.extend(s.recovery_conf.clone());
                r
            },
        };
        let params = conf::effective_parameters(dcs_params, &s.parameters, &managed);
        let conf_text = conf::render_postgresql_conf(&params);
        let hba_lines: &[String] = if s.pg_hba.is_empty() {
            dcs_hba.unwrap_or(&[])
        } else {
            &s.pg_hba
        };
        let hba_text = if hba_lines.is_empty() {
            // Nothing configured anywhere: keep whatever the data directory has.
            std::fs::read_to_string(data.join("pg_hba.conf")).unwrap_or_default()
        } else {
            conf::render_hba(hba_lines)
        };
        // Compare with the files, not a cache: pg_rewind and pg_basebackup overwrite them.
        let hba = data.join("pg_hba.conf");
        let changed = read(&main) != conf_text || read(&hba) != hba_text;
        if changed {
            write_owned(&main, &conf_text, self.programs.run_as)?;
            write_owned(&hba, &hba_text, self.programs.run_as)?;
        }
        let signal = data.join("standby.signal");
        if standby.is_some() && !signal.exists() {
            write_owned(&signal, "", self.programs.run_as)?;
        } else if standby.is_none() && signal.exists() {
            std::fs::remove_file(&signal).map_err(|e| files_err("cannot remove", &signal, &e))?;
        }
        Ok(changed)
    }

    /// Starts the postmaster; does not wait for it to accept connections.
    pub fn start(&mut self) -> Result<(), PgError> {
        if self.is_running() {
            return Ok(());
        }
        self.sql.reset();
        let child = self.programs.spawn_postmaster()?;
        tracing::info!(pid = child.id(), data_dir = %self.settings.data_dir.display(), "started PostgreSQL");
        self.child = Some(child);
        Ok(())
    }

    pub async fn stop(&mut self, mode: StopMode, timeout: Duration) -> Result<(), PgError> {
        self.sql.reset();
        let pid = self.programs.postmaster_pid().or_else(|| self.child_pid());
        if let Some(pid) = pid {
            self.programs.stop(pid, mode, timeout).await?;
        }
        if let Some(mut child) = self.child.take() {
            // Reap it; it has already exited.
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        }
        Ok(())
    }

    /// Polls until PostgreSQL answers a query, the postmaster dies, or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), PgError> {
        // Checked: a timeout from a request must not be able to overflow the clock.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.sql.query("SELECT 1").await.is_ok() {
                return Ok(());
            }
            if !self.is_running() {
                return Err(PgError::Files(format!(
                    "PostgreSQL exited during start-up; see {}",
                    self.programs.log_file.display()
                )));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(PgError::NotReady(timeout));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn reload(&mut self) -> Result<(), PgError> {
        self.sql.execute("SELECT pg_reload_conf()").await?;
        Ok(())
    }

    /// Promotes a replica and waits (bounded) for it to leave recovery.
    pub async fn promote(&mut self, timeout: Duration) -> Result<(), PgError> {
        let secs = timeout.as_secs().max(1);
        let rows = self
            .sql
            .query_with_timeout(
                &format!("SELECT pg_promote(true, {secs})"),
                timeout + Duration::from_secs(1),
            )
            .await?;
        match rows.first().map(|r| r.get::<_, bool>(0)) {
            Some(true) => Ok(()),
            _ => Err(PgError::Files(format!(
                "pg_promote did not finish within {secs}s"
            ))),
        }
    }

    /// Creates the physical slots in `wanted` that are missing. They reserve WAL from
    /// the moment they exist, so a member that connects later finds it still there.
    pub async fn ensure_slots(
        &mut self,
        existing: &BTreeMap<String, Option<u64>>,
        wanted: &[String],
    ) -> Result<(), PgError> {
        for slot in wanted.iter().filter(|w| !existing.contains_key(*w)) {
            self.sql
                .execute(&format!(
                    "SELECT pg_create_physical_replication_slot({}, true)",
                    literal(slot)
                ))
                .await?;
            tracing::info!(slot, "created replication slot");
        }
        Ok(())
    }

    /// Moves a slot forward to `lsn` (never backwards: PostgreSQL ignores that).
    pub async fn advance_slot(&mut self, slot: &str, lsn: u64) -> Result<(), PgError> {
        self.sql
            .execute(&format!(
                "SELECT pg_replication_slot_advance({}, {}::pg_lsn)",
                literal(slot),
                literal(&lsn::Lsn(lsn).to_string())
            ))
            .await?;
        Ok(())
    }

    pub async fn drop_slot(&mut self, slot: &str) -> Result<(), PgError> {
        self.sql.execute(&drop_slot_query(slot)).await?;
        Ok(())
    }

    /// Creates (or updates) the replication and rewind roles after initdb.
    pub async fn create_roles(&mut self) -> Result<(), PgError> {
        let s = self.settings.clone();
        if s.replication.username != s.superuser.username {
            self.upsert_role(&s.replication, "LOGIN REPLICATION")
                .await?;
        }
        if let Some(rw) = s
            .rewind
            .as_ref()
            .filter(|r| r.username != s.superuser.username)
        {
            self.upsert_role(rw, "LOGIN").await?;
            // The functions pg_rewind needs, and nothing more (PostgreSQL docs, pg_rewind).
            let u = ident(&rw.username);
            for f in [
                "pg_catalog.pg_ls_dir(text, boolean, boolean)",
                "pg_catalog.pg_stat_file(text, boolean)",
                "pg_catalog.pg_read_binary_file(text)",
                "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
            ] {
                self.sql
                    .execute(&format!("GRANT EXECUTE ON function {f} TO {u}"))
                    .await?;
            }
        }
        Ok(())
    }

    /// Gives the configured superuser its configured password (creating it if need
    /// be): a cluster created by a user's script may have none, or another.
    pub async fn ensure_superuser(&mut self) -> Result<(), PgError> {
        let su = self.settings.superuser.clone();
        self.upsert_role(&su, "LOGIN SUPERUSER").await
    }

    async fn upsert_role(&mut self, role: &Role, options: &str) -> Result<(), PgError> {
        let name = ident(&role.username);
        let exists = !self
            .sql
            .query(&format!(
                "SELECT 1 FROM pg_roles WHERE rolname = {}",
                literal(&role.username)
            ))
            .await?
            .is_empty();
        let verb = if exists { "ALTER" } else { "CREATE" };
        let password = role
            .password
            .as_deref()
            .map(|p| format!(" PASSWORD {}", literal(p)))
            .unwrap_or_default();
        self.sql
            .execute(&format!("{verb} ROLE {name} WITH {options}{password}"))
            .await?;
        Ok(())
    }

    /// Runs initdb with the configured options; data checksums are always on, since
    /// pg_rewind needs them (or wal_log_hints) to bring a former primary back.
    pub async fn initdb(&self) -> Result<(), PgError> {
        let s = &self.settings;
        prepare_dir(&s.data_dir, self.programs.run_as)?;
        let pwfile = s.data_dir.with_extension("initdb-pw");
        let password = s.superuser.password.clone().unwrap_or_default();
        write_private(&pwfile, &password, self.programs.run_as)?;
        let mut cmd = self.programs.command("initdb");
        cmd.arg("-D")
            .arg(&s.data_dir)
            .arg(format!("--username={}", s.superuser.username));
        if s.superuser.password.is_some() {
            cmd.arg(format!("--pwfile={}", pwfile.display()));
        }
        let mut args = s.initdb.clone();
        if !args.iter().any(|a| a == "--data-checksums" || a == "-k") {
            args.push("--data-checksums".into());
        }
        cmd.args(&args);
        let out = self
            .programs
            .run(cmd, "initdb", Duration::from_secs(300))
            .await;
        let _ = std::fs::remove_file(&pwfile);
        out?;
        Ok(())
    }

    /// Starts a freshly bootstrapped PostgreSQL (after initdb, or a restore from the
    /// repository) and waits until it accepts connections: no standby exists yet, so no
    /// synchronous names (strict mode included: the agent's roles must be created
    /// without waiting).
    pub async fn start_bootstrapped(
        &mut self,
        dcs_cfg: &warden_consensus::DynamicConfig,
        timeout: Duration,
    ) -> Result<(), PgError> {
        self.write_pgpass(None)?;
        self.write_config(
            &dcs_cfg.postgresql.parameters,
            dcs_cfg.postgresql.pg_hba.as_deref(),
            None,
            Some(""),
        )?;
        self.start()?;
        self.wait_ready(timeout).await
    }

    /// Checks that the primary at `host:port` has checkpointed since its promotion (its
    /// control file names its current timeline); pg_rewind needs that.
    pub async fn source_checkpointed(&self, host: &str, port: u16) -> Result<(), PgError> {
        let s = &self.settings;
        let role = s.rewind_role();
        let mut conn = format!(
            "host='{}' port={port} user='{}' dbname=postgres application_name='warden-rewind' connect_timeout=3",
            libpq_escape(host),
            libpq_escape(&role.username)
        );
        if let Some(p) = &role.password {
            conn.push_str(&format!(" password='{}'", libpq_escape(p)));
        }
        conn.push_str(&role.tls.sql_conninfo());
        let mut sql = Sql::new(conn, Duration::from_secs(3));
        let rows = sql
            .query(
                // A standby source (a standby cluster's leader, or a standby leader
                // whose replicas are rewound onto its new timeline) has no current WAL
                // position: its timeline is its WAL receiver's (when visible to the
                // role), and pg_rewind reads the control file's.
                "SELECT (SELECT timeline_id FROM pg_control_checkpoint()), \
                 CASE WHEN pg_is_in_recovery() \
                   THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), \
                                 (SELECT timeline_id FROM pg_control_checkpoint())) \
                   ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int \
                 END",
            )
            .await?;
        let (checkpoint_tli, current_tli): (i32, i32) = rows
            .first()
            .map(|r| (r.get(0), r.get(1)))
            .ok_or_else(|| PgError::Files("no row".into()))?;
        if checkpoint_tli == current_tli {
            Ok(())
        } else {
            Err(PgError::Files(format!(
                "the leader has not checkpointed since its promotion (control file timeline {checkpoint_tli}, current {current_tli}); retrying"
            )))
        }
    }

    /// Removes standby.signal and recovery.signal (before pg_rewind).
    pub fn clear_recovery_signals(&self) -> Result<(), PgError> {
        for f in ["standby.signal", "recovery.signal"] {
            let path = self.settings.data_dir.join(f);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| files_err("cannot remove", &path, &e))?;
            }
        }
        Ok(())
    }

    /// Rewinds the stopped data directory onto the timeline of the primary at
    /// `host:port`. pg_rewind finishes crash recovery first if the server did not shut
    /// down cleanly, and does nothing when the histories have not diverged.
    pub async fn rewind(&self, host: &str, port: u16, timeout: Duration) -> Result<(), PgError> {
        let s = &self.settings;
        let role = s.rewind_role();
        let mut cmd = self.programs.command("pg_rewind");
        // No secret on the command line: the password comes from pgpass, and the TLS
        // settings are file names and modes.
        cmd.arg("-D")
            .arg(&s.data_dir)
            .arg(format!(
                "--source-server=host='{}' port={port} user='{}' dbname=postgres connect_timeout=5{}",
                libpq_escape(host),
                libpq_escape(&role.username),
                role.tls.conninfo()
            ))
            .env("PGPASSFILE", &s.pgpass);
        let out = self.programs.run(cmd, "pg_rewind", timeout).await?;
        tracing::info!(output = %out.trim(), "pg_rewind finished");
        Ok(())
    }

    /// How far another member's PostgreSQL has received (or replayed) WAL, asked over
    /// SQL as our superuser: `Err` if it is unreachable or runs as a primary.
    pub async fn peer_received(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<u64, PgError> {
        let mut sql = Sql::new(self.settings.remote_conn_string(host, port), timeout);
        let rows = sql
            .query(
                "SELECT greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text, pg_is_in_recovery()",
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| PgError::Files(format!("{host}:{port}: no answer row")))?;
        if !row.get::<_, bool>(1) {
            return Err(PgError::Files(format!("{host}:{port} runs as a primary")));
        }
        row.get::<_, Option<String>>(0)
            .as_deref()
            .and_then(lsn::Lsn::parse)
            .map(|l| l.0)
            .ok_or_else(|| PgError::Files(format!("{host}:{port} reports no WAL position")))
    }

    /// Deletes the data directory: only on an operator's explicit reinitialize request
    /// (everywhere else an unusable directory is moved aside, never deleted).
    pub fn remove_data_dir(&self) -> Result<(), PgError> {
        let dir = &self.settings.data_dir;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| files_err("cannot remove", dir, &e))?;
        }
        Ok(())
    }

    /// Clones the data directory from `host:port` with pg_basebackup.
    pub async fn basebackup(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<(), PgError> {
        let s = &self.settings;
        if s.data_dir.exists() {
            // A leftover of a failed clone: keep it aside rather than delete anything.
            let aside = aside_path(&s.data_dir);
            std::fs::rename(&s.data_dir, &aside)
                .map_err(|e| files_err("cannot move aside", &s.data_dir, &e))?;
            tracing::warn!(from = %s.data_dir.display(), to = %aside.display(), "moved an unusable data directory aside");
        }
        prepare_dir(&s.data_dir, self.programs.run_as)?;
        let mut cmd = self.programs.command("pg_basebackup");
        cmd.arg("-D")
            .arg(&s.data_dir)
            .args(["-X", "stream", "-c", "fast", "-w", "--no-sync"])
            .arg(format!("--host={host}"))
            .arg(format!("--port={port}"))
            .arg(format!("--username={}", s.replication.username))
            .env("PGPASSFILE", &s.pgpass)
            .env("PGAPPNAME", &s.name)
            .env("PGCONNECT_TIMEOUT", "5")
            .envs(s.replication.tls.env());
        self.programs.run(cmd, "pg_basebackup", timeout).await?;
        Ok(())
    }
}

/// The `(host, port)` pairs pgpass names: the local server as every client of it
/// spells it (TCP listen addresses, `localhost`, the socket directories), and `peer`.
fn pgpass_hosts(s: &Settings, peer: Option<(&str, u16)>) -> Vec<(String, u16)> {
    let mut hosts = vec![local_tcp_host(&s.listen_hosts), "localhost".to_owned()];
    hosts.extend(s.listen_hosts.iter().cloned());
    let sockets = s
        .parameters
        .get("unix_socket_directories")
        .map_or("/var/run/postgresql", String::as_str);
    hosts.extend(sockets.split(',').map(|d| d.trim().to_owned()));
    let mut out: Vec<(String, u16)> = Vec::new();
    for h in hosts {
        if !h.is_empty() && h != "*" && !out.iter().any(|(o, _)| *o == h) {
            out.push((h, s.port));
        }
    }
    if let Some((host, port)) = peer {
        if !out.iter().any(|(h, p)| h == host && *p == port) {
            out.push((host.to_owned(), port));
        }
    }
    out
}

/// Makes a running primary stop accepting writes at once: `standby.signal` first (so
/// any restart comes back read-only), then a fast shutdown, which terminates every
/// session. Synchronous on purpose: it runs from the fencing timer without the loop.
pub fn fence(programs: &Programs) -> Result<(), PgError> {
    let signal = programs.data_dir.join("standby.signal");
    write_owned(&signal, "", programs.run_as)?;
    if let Some(pid) = programs.postmaster_pid() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    Ok(())
}

/// `data` → `data.failed-20250101T120000`.
pub fn aside_path(dir: &Path) -> PathBuf {
    let ts = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".failed-{ts}"));
    dir.with_file_name(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Creates an empty directory with mode 0700 (PostgreSQL requires it), owned by the
/// PostgreSQL user.
///
/// A symbolic link at `dir` (an operator's placement of the data elsewhere) is left as
/// it is: root never changes modes or owners through a link in a directory the database
/// owner can write.
fn prepare_dir(dir: &Path, run_as: Option<runas::RunAs>) -> Result<(), PgError> {
    std::fs::create_dir_all(dir).map_err(|e| files_err("cannot create", dir, &e))?;
    let link = std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
    if link {
        tracing::info!(dir = %dir.display(), "the data directory is a symbolic link; leaving its mode and owner as they are");
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| files_err("cannot chmod", dir, &e))?;
    runas::chown(dir, run_as).map_err(|e| files_err("cannot chown", dir, &e))
}

/// A file in the data directory (owned by the database's user, who could plant links
/// there): written the way [`write_private`] writes a secret.
fn write_owned(path: &Path, text: &str, run_as: Option<runas::RunAs>) -> Result<(), PgError> {
    // No fsync: the fence writes `standby.signal` this way, and every millisecond
    // before its shutdown signal counts.
    write_new(path, text, run_as, false)
}

fn write_private(path: &Path, text: &str, run_as: Option<runas::RunAs>) -> Result<(), PgError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| files_err("cannot create", parent, &e))?;
    }
    write_new(path, text, run_as, true)
}

/// Writes `path` through a fresh temporary file beside it, renamed into place.
fn write_new(
    path: &Path,
    text: &str,
    run_as: Option<runas::RunAs>,
    sync: bool,
) -> Result<(), PgError> {
    let tmp = path.with_extension("warden-tmp");
    // Secret from the first byte: created 0600 (never readable by others, not even
    // between a write and a chmod), and never through a link someone left at the
    // temporary name (`create_new` refuses an existing path, links included).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(files_err("cannot remove", &tmp, &e))
        }
        _ => {}
    }
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| files_err("cannot create", &tmp, &e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| if sync { f.sync_all() } else { Ok(()) })
            .map_err(|e| files_err("cannot write", &tmp, &e))?;
        if let Some(r) = run_as {
            // On the open file: no path to redirect.
            std::os::unix::fs::fchown(&f, Some(r.uid), Some(r.gid))
                .map_err(|e| files_err("cannot chown", &tmp, &e))?;
        }
    }
    std::fs::rename(&tmp, path).map_err(|e| files_err("cannot write", path, &e))
}

/// Drops an inactive physical slot, on a connection of its own (for callers that do not
/// own the agent's [`Postgres`], e.g. the backup supervisor).
pub async fn drop_slot(settings: &Settings, slot: &str) -> Result<(), PgError> {
    let mut sql = Sql::new(settings.local_conn_string(), DROP_SLOT_TIMEOUT);
    sql.execute(&drop_slot_query(slot)).await?;
    Ok(())
}

/// Drops `slot` unless a client streams through it.
fn drop_slot_query(slot: &str) -> String {
    format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = {} AND NOT active",
        literal(slot)
    )
}

/// Bound for [`drop_slot`]'s connection and query.
const DROP_SLOT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_private_from_the_start_and_follow_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        // A link planted at the temporary name must not be written through.
        std::os::unix::fs::symlink(&victim, path.with_extension("warden-tmp")).unwrap();
        write_private(&path, "*:*:*:u:secret\n", None).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "*:*:*:u:secret\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn aside_keeps_the_name() {
        let p = aside_path(Path::new("/var/lib/x/data"));
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("data.failed-"), "{name}");
        assert_eq!(p.parent(), Some(Path::new("/var/lib/x")));
    }
}
