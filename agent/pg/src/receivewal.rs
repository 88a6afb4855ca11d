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
            "host='{}' port={} user='{}' application_name='warden_archiver' connect_timeout=5{}",
            super::libpq_escape(&super::local_tcp_host(&settings.listen_hosts)),
            settings.port,
            super::libpq_escape(&settings.replication.username),
            settings.replication.tls.conninfo(),
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

    pub fn run_as(&self) -> Option<super::runas::RunAs> {
        self.programs.run_as
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

impl ReceiveWal {
    /// The local server's timeline switches, oldest first: `(timeline, where it
    /// ended, the timeline after it)`, from the newest `<tli>.history` in `pg_wal`.
    /// Empty on timeline 1 or when nothing is readable.
    pub fn timeline_switches(&self) -> Vec<(u32, u64, u32)> {
        let pg_wal = self.programs.data_dir.join("pg_wal");
        let Ok(entries) = std::fs::read_dir(&pg_wal) else {
            return Vec::new();
        };
        let newest = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| {
                let tli = n.strip_suffix(".history")?;
                (tli.len() == 8).then(|| u32::from_str_radix(tli, 16).ok())?
            })
            .max();
        let Some(newest) = newest else {
            return Vec::new();
        };
        let path = pg_wal.join(format!("{newest:08X}.history"));
        std::fs::read_to_string(path)
            .map(|text| parse_history(&text, newest))
            .unwrap_or_default()
    }
}

/// PostgreSQL's timeline history format: `parent_tli<TAB>X/Y<TAB>reason` per line,
/// the file itself named after the newest timeline.
pub fn parse_history(text: &str, own_tli: u32) -> Vec<(u32, u64, u32)> {
    let lines: Vec<(u32, u64)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let tli = f.next()?.parse().ok()?;
            let (hi, lo) = f.next()?.split_once('/')?;
            let lsn =
                (u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?;
            Some((tli, lsn))
        })
        .collect();
    lines
        .iter()
        .enumerate()
        .map(|(i, &(tli, lsn))| {
            let next = lines.get(i + 1).map_or(own_tli, |n| n.0);
            (tli, lsn, next)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn history_lines() {
        let text =
            "1\t0/8000000\tno recovery target specified\n\n2\t0/A0000A8\tbefore 2000-01-01\n";
        assert_eq!(
            super::parse_history(text, 3),
            vec![(1, 0x800_0000, 2), (2, 0xA00_00A8, 3)]
        );
    }
}
