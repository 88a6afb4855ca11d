//! PostgreSQL's programs (initdb, postgres, pg_basebackup, pg_controldata), each run as
//! the PostgreSQL OS user and each bounded by a timeout.

use super::runas::RunAs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program}: could not start: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program}: timed out after {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{0}")]
    Io(String),
}

/// How the postmaster is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for clients to disconnect.
    Smart,
    /// SIGINT: roll back open transactions and stop cleanly (the default).
    Fast,
    /// SIGQUIT: stop at once; crash recovery on the next start.
    Immediate,
}

#[derive(Debug, Clone)]
pub struct Programs {
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    pub run_as: Option<RunAs>,
    /// Where the postmaster's stderr goes.
    pub log_file: PathBuf,
}

impl Programs {
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // The postmaster keeps them: its archive and restore commands (`warden
        // wal-push`/`wal-fetch`) may need the backup key and S3 credentials.
        if program != "postgres" {
            scrub_secrets(&mut cmd);
        }
        if let Some(r) = self.run_as {
            cmd.uid(r.uid).gid(r.gid);
            // libpq looks for default client certificates and root.crt under HOME:
            // the PostgreSQL user's, not root's (unreadable to it, a hard error).
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(r.uid));
            if let Ok(Some(user)) = user {
                cmd.env("HOME", user.dir);
            }
        }
        // Run from a directory the PostgreSQL user can read, not the agent's cwd.
        if let Some(parent) = self.data_dir.parent() {
            cmd.current_dir(parent);
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Runs a program to completion; its stdout on success.
    pub async fn run(
        &self,
        mut cmd: Command,
        program: &str,
        timeout: Duration,
    ) -> Result<String, ProcessError> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: program.into(),
            source,
        })?;
        let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| ProcessError::Io(format!("{program}: {e}")))?,
            Err(_) => {
                return Err(ProcessError::Timeout {
                    program: program.into(),
                    timeout,
                })
            }
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            return Err(ProcessError::Failed {
                program: program.into(),
                status: out.status.to_string(),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `pg_controldata` as a map of its "Key: value" lines.
    pub async fn controldata(&self) -> Result<BTreeMap<String, String>, ProcessError> {
        let mut cmd = self.command("pg_controldata");
        cmd.arg("-D").arg(&self.data_dir).env("LC_ALL", "C");
        let out = self
            .run(cmd, "pg_controldata", Duration::from_secs(10))
            .await?;
        Ok(parse_controldata(&out))
    }

    /// Starts the postmaster in its own process group (so a Ctrl-C meant for the agent
    /// does not reach it: the agent decides how PostgreSQL stops).
    pub fn spawn_postmaster(&self) -> Result<Child, ProcessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(|e| {
                ProcessError::Io(format!("cannot open {}: {e}", self.log_file.display()))
            })?;
        let log2 = log
            .try_clone()
            .map_err(|e| ProcessError::Io(e.to_string()))?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: "postgres".into(),
            source,
        })
    }

    /// The running postmaster's pid, from `postmaster.pid`, if that process is alive.
    /// The running postmaster named by `postmaster.pid`. The file is writable by the
    /// database's owner, so the pid in it is believed only for a live `postgres`
    /// process of that owner: anything else is never signalled.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let owner = self
            .run_as
            .map_or_else(|| nix::unistd::geteuid().as_raw(), |r| r.uid);
        (process_alive(pid) && is_postgres_of(pid, owner)).then_some(pid)
    }

    /// Stops the postmaster `pid` and waits until it is gone. Escalates to immediate shutdown
    /// when `timeout` passes, and to SIGKILL if even that does not work.
    pub async fn stop(
        &self,
        pid: i32,
        mode: StopMode,
        timeout: Duration,
    ) -> Result<(), ProcessError> {
        let sig = match mode {
            StopMode::Smart => nix::sys::signal::Signal::SIGTERM,
            StopMode::Fast => nix::sys::signal::Signal::SIGINT,
            StopMode::Immediate => nix::sys::signal::Signal::SIGQUIT,
        };
        signal(pid, sig);
        if wait_gone(pid, timeout).await {
            return Ok(());
        }
        tracing::warn!(
            pid,
            ?mode,
            ?timeout,
            "PostgreSQL did not stop in time; immediate shutdown"
        );
        signal(pid, nix::sys::signal::Signal::SIGQUIT);
        if wait_gone(pid, Duration::from_secs(10)).await {
            return Ok(());
        }
        signal(pid, nix::sys::signal::Signal::SIGKILL);
        if wait_gone(pid, Duration::from_secs(5)).await {
            Ok(())
        } else {
            Err(ProcessError::Io(format!(
                "postmaster {pid} survived SIGKILL"
            )))
        }
    }
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        if !process_alive(pid) {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alive and not a zombie (our own postmaster child stays a zombie until reaped).
/// The agent's secrets a child has no use for, by name: the backup key, S3 credentials
/// and passwords given in the environment.
const SECRET_VARIABLES: &[&str] = &[
    "WARDEN_BACKUP_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PGPASSWORD",
];

/// Keeps the agent's secrets out of a child's environment (callbacks, users' scripts,
/// PostgreSQL's client programs): [`SECRET_VARIABLES`] and every `PATRONI_*` variable
/// still set. A child that needs a password gets it explicitly, after this.
pub fn scrub_secrets(cmd: &mut Command) {
    for name in SECRET_VARIABLES {
        cmd.env_remove(name);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("PATRONI_")) {
            cmd.env_remove(name);
        }
    }
}

/// Whether `pid` is a `postgres` process of user `uid` (the owner check is what keeps
/// root from signalling another user's process on the database owner's word).
fn is_postgres_of(pid: i32, uid: u32) -> bool {
    let owned = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            // Real, effective, saved, filesystem: all must be the owner's.
            let ids: Vec<u32> = line[4..]
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            Some(!ids.is_empty() && ids.iter().all(|id| *id == uid))
        })
        .unwrap_or(false);
    // The command name (readable for every process; unlike the executable's path it
    // survives a package upgrade that replaced the binary under a running server).
    let postgres = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end() == "postgres");
    owned && postgres
}

pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

pub fn parse_controldata(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Whether `dir` holds an initialised cluster.
pub fn is_initialized(dir: &Path) -> bool {
    dir.join("PG_VERSION").is_file() && dir.join("global/pg_control").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controldata_lines_parse() {
        let out = "pg_control version number:            1300\nDatabase system identifier:           7312345678901234567\nLatest checkpoint's TimeLineID:       3\n";
        let m = parse_controldata(out);
        assert_eq!(m["Database system identifier"], "7312345678901234567");
        assert_eq!(m["Latest checkpoint's TimeLineID"], "3");
    }

    fn programs_in(dir: &Path) -> Programs {
        Programs {
            bin_dir: dir.into(),
            data_dir: dir.into(),
            run_as: None,
            log_file: dir.join("log"),
        }
    }

    #[test]
    fn client_programs_and_scripts_get_no_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let programs = programs_in(dir.path());
        let removed = |cmd: &Command| -> Vec<String> {
            cmd.as_std()
                .get_envs()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect()
        };
        let dump = removed(&programs.command("pg_dump"));
        for name in SECRET_VARIABLES {
            assert!(dump.iter().any(|k| k == name), "{name} reaches pg_dump");
        }
        // The postmaster keeps them for its archive and restore commands.
        assert!(removed(&programs.command("postgres")).is_empty());
    }

    #[test]
    fn a_pid_file_naming_another_program_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let programs = programs_in(dir.path());
        // A live process of ours, but not a postgres: never to be signalled.
        let me = std::process::id();
        std::fs::write(dir.path().join("postmaster.pid"), format!("{me}\n")).unwrap();
        assert!(process_alive(i32::try_from(me).unwrap()));
        assert_eq!(programs.postmaster_pid(), None);
        // Nor a process of another user (pid 1 runs as root; we check its owner and name).
        assert!(!is_postgres_of(1, 65_534));
    }

    #[test]
    fn own_process_is_alive_and_bogus_pid_is_not() {
        assert!(process_alive(i32::try_from(std::process::id()).unwrap()));
        assert!(!process_alive(i32::MAX));
    }
}
