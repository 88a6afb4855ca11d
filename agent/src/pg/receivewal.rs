//! `pg_receivewal`, the streaming WAL archiver's worker: run as the data directory's
//! owner like every other PostgreSQL program, against the local PostgreSQL (a
//! replica serves it by cascading), with a physical slot on that node so the WAL it
//! still needs is kept there.

use super::process::{ProcessError, Programs};
use super::Settings;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

const PROGRAM: &str = "pg_receivewal";

/// Everything needed to run `pg_receivewal` against the local PostgreSQL.
#[derive(Clone)]
pub struct ReceiveWal {
    programs: Programs,
    conninfo: String,
    password: Option<String>,
    slot: String,
    spool: PathBuf,
}

impl std::fmt::Debug for ReceiveWal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveWal")
            .field("conninfo", &self.conninfo)
            .field("slot", &self.slot)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

impl ReceiveWal {
    /// Connects as the replication role over TCP (the pg_hba line replicas use
    /// covers it); the password goes through the environment, never the command line.
    pub fn new(settings: &Settings, programs: Programs, slot: &str, spool: PathBuf) -> Self {
        let conninfo = format!(
            "host='{}' port={} user='{}' application_name='warden_archiver' connect_timeout=5",
            super::libpq_escape(&super::local_tcp_host(&settings.listen_hosts)),
            settings.port,
            super::libpq_escape(&settings.replication.username),
        );
        Self {
            programs,
            conninfo,
            password: settings.replication.password.clone(),
            slot: slot.to_owned(),
            spool,
        }
    }

    pub fn spool(&self) -> &Path {
        &self.spool
    }

    pub fn slot(&self) -> &str {
        &self.slot
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = self.programs.command(PROGRAM);
        cmd.arg("--dbname")
            .arg(&self.conninfo)
            .arg("--slot")
            .arg(&self.slot)
            .arg("--no-password");
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd
    }

    /// Creates the spool directory (mode 0700, owned by the PostgreSQL user, outside
    /// the data directory so a re-clone never touches it).
    pub fn prepare_spool(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.spool)?;
        std::fs::set_permissions(&self.spool, std::fs::Permissions::from_mode(0o700))?;
        super::runas::chown(&self.spool, self.programs.run_as)
    }

    /// Creates the physical slot unless it exists (`pg_receivewal --create-slot` exits
    /// after creating it).
    pub async fn create_slot(&self, timeout: Duration) -> Result<(), ProcessError> {
        let mut cmd = self.command();
        cmd.arg("--create-slot").arg("--if-not-exists");
        self.programs.run(cmd, PROGRAM, timeout).await.map(|_| ())
    }

    /// Starts streaming into the spool. `--no-loop`: a lost connection ends the
    /// process, and the archiver's supervisor restarts it with its own bounded backoff
    /// (and sees the failure). `--synchronous`: each write is fsynced before the flush
    /// position is reported, so the slot never moves past WAL only in memory.
    pub fn spawn(&self) -> Result<Child, ProcessError> {
        let mut cmd = self.command();
        cmd.arg("--directory")
            .arg(&self.spool)
            .arg("--no-loop")
            .arg("--synchronous")
            .arg("--status-interval=1")
            .arg("--verbose")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: PROGRAM.into(),
            source,
        })
    }
}
