//! A single PostgreSQL server run directly (no agent), for tests of what PostgreSQL
//! itself drives: `archive_command`, `restore_command`, `pg_basebackup`.
//!
//! As everywhere in the kit, when the tests run as root PostgreSQL runs as the
//! `postgres` OS user, with data directories it owns. Authentication is `trust` on
//! loopback: these servers are private to one test.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::{pg_bin_dir, SUPERUSER};
use crate::process::{run_bounded, Managed};
use crate::workdir::{create_node_dir, postgres_owner};
use crate::{ports, sql, wait};

/// Bound for initdb and pg_basebackup of a tiny cluster.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for a server to accept connections (including a short archive recovery).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A PostgreSQL program of the kit's version, run as the `postgres` user when root.
pub fn pg_command(program: &str) -> Result<Command> {
    let mut cmd = Command::new(pg_bin_dir().join(program));
    if let Some((uid, gid)) = postgres_owner()? {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    Ok(cmd)
}

fn run_tool(mut cmd: Command, what: &str) -> Result<()> {
    let out = run_bounded(&mut cmd, TOOL_TIMEOUT)?;
    if out.code() != Some(0) {
        bail!("{what} failed: {}", out.describe());
    }
    Ok(())
}

/// A data directory with a port, and the server while it runs.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    proc: Option<Managed>,
}

impl PgServer {
    /// `initdb` a new cluster in `<dir>/data`.
    pub fn init(dir: &Path) -> Result<PgServer> {
        create_node_dir(dir)?;
        let server = Self::at(dir)?;
        let mut cmd = pg_command("initdb")?;
        cmd.args(["-A", "trust", "-U", SUPERUSER, "--no-sync", "-D"])
            .arg(server.data_dir());
        run_tool(cmd, "initdb")?;
        Ok(server)
    }

    /// `pg_basebackup -X none` of `source` into `<dir>/data`: the copy needs the
    /// archived WAL to become consistent.
    pub fn base_backup(source: &PgServer, dir: &Path) -> Result<PgServer> {
        create_node_dir(dir)?;
        let server = Self::at(dir)?;
        let mut cmd = pg_command("pg_basebackup")?;
        cmd.args(["-h", "127.0.0.1", "-p", &source.port.to_string()])
            .args([
                "-U",
                SUPERUSER,
                "-X",
                "none",
                "--checkpoint=fast",
                "--no-sync",
                "-D",
            ])
            .arg(server.data_dir());
        run_tool(cmd, "pg_basebackup")?;
        Ok(server)
    }

    /// A data directory that already exists at `<dir>/data` (a restored copy),
    /// to be served on a new port.
    pub fn existing(dir: &Path) -> Result<PgServer> {
        Self::at(dir)
    }

    fn at(dir: &Path) -> Result<PgServer> {
        Ok(PgServer {
            dir: dir.to_path_buf(),
            port: ports::free_port()?,
            proc: None,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Appends settings to postgresql.conf (later lines win).
    pub fn configure(&self, lines: &[String]) -> Result<()> {
        use std::io::Write;
        let path = self.data_dir().join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "\n# warden-tests")?;
        for l in lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }

    /// Creates an empty file in the data directory (`recovery.signal`), owned by
    /// PostgreSQL's user.
    pub fn touch(&self, name: &str) -> Result<()> {
        let path = self.data_dir().join(name);
        std::fs::write(&path, "").with_context(|| format!("creating {}", path.display()))?;
        crate::workdir::chown_to_postgres(&path)
    }

    /// Starts the server on loopback (its own port, socket in its directory) and
    /// waits until it accepts SQL.
    pub fn start(&mut self) -> Result<()> {
        self.configure(&[
            format!("port = {}", self.port),
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("unix_socket_directories = '{}'", self.dir.display()),
            "fsync = off".to_string(),
        ])?;
        let log = self.dir.join("postgres.log");
        let mut cmd = pg_command("postgres")?;
        cmd.arg("-D").arg(self.data_dir());
        let mut proc = Managed::spawn("postgres", &mut cmd, &log)?;
        wait::register_log(&log);
        let port = self.port;
        let up = wait::poll_until(START_TIMEOUT, || {
            if !proc.is_running() {
                return Some(false);
            }
            sql::connect(port).ok().map(|_| true)
        });
        if up != Some(true) {
            bail!(
                "postgres on port {port} did not start within {START_TIMEOUT:?}:\n{}",
                wait::tail(&log, 40)
            );
        }
        self.proc = Some(proc);
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }
}
