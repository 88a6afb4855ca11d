//! A throw-away PostgreSQL on a restored copy: a temporary directory, a free loopback
//! port, no archiving, no replication. The guard stops the server and removes the
//! directory on every path out of a drill: success, failure, timeout or panic.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use warden_pg::runas::RunAs;

/// The scratch directory and the server running on it.
#[derive(Debug)]
pub struct Scratch {
    /// `None` once removed.
    root: Option<tempfile::TempDir>,
    pub port: u16,
    pub run_as: Option<RunAs>,
    child: Option<std::process::Child>,
}

impl Scratch {
    /// A new scratch directory under `parent` (the system's temp dir when `None`).
    pub fn create(parent: Option<&Path>) -> Result<Self> {
        let mut b = tempfile::Builder::new();
        b.prefix("warden-drill-");
        let root = match parent {
            Some(p) => b.tempdir_in(p),
            None => b.tempdir(),
        }
        .context("creating the drill's scratch directory")?;
        // PostgreSQL's user must reach the data directory inside.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(Self {
            root: Some(root),
            port: free_port()?,
            run_as: None,
            child: None,
        })
    }

    pub fn root(&self) -> PathBuf {
        self.root
            .as_ref()
            .map(|r| r.path().to_path_buf())
            .unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root().join("postgresql.log")
    }

    /// Starts `postgres` on the restored data directory, loopback only.
    pub fn start(&mut self, bin_dir: &Path) -> Result<()> {
        let log = std::fs::File::create(self.log_file())?;
        let mut cmd = std::process::Command::new(bin_dir.join("postgres"));
        cmd.arg("-D").arg(self.data_dir());
        for (k, v) in [
            ("port", self.port.to_string()),
            ("listen_addresses", "127.0.0.1".into()),
            ("unix_socket_directories", String::new()),
            ("archive_mode", "off".into()),
            ("cluster_name", "warden-drill".into()),
            ("restart_after_crash", "off".into()),
        ] {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        if let Some(r) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(r.uid).gid(r.gid);
        }
        cmd.current_dir(self.root())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        {
            use std::os::unix::process::CommandExt;
            // Its own process group: a Ctrl-C for wardenctl is for the drill to handle.
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin_dir.join("postgres").display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// `Err` with the log's tail when the postmaster has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                self.child = None;
                bail!(
                    "the restored PostgreSQL exited ({status}):\n{}",
                    self.log_tail(15)
                );
            }
        }
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Fast shutdown (SIGINT), bounded, then SIGKILL.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
        for (sig, wait) in [
            (Signal::SIGINT, Duration::from_secs(10)),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            let _ = kill(pid, sig);
            let deadline = std::time::Instant::now() + wait;
            while std::time::Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        tracing::error!(pid = pid.as_raw(), "the drill's PostgreSQL did not exit");
    }

    /// Stops the server and removes the directory; errors are returned (drop only logs).
    pub fn cleanup(&mut self) -> Result<()> {
        self.stop();
        if let Some(root) = self.root.take() {
            let path = root.path().to_path_buf();
            root.close()
                .with_context(|| format!("removing the scratch directory {}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::error!(error = %e, "drill cleanup failed");
        }
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr().map_err(|e| anyhow!(e))?.port())
}
