//! `kind: mariadb` / `mysql`, method `dump`: `mariadb-dump` (`mysqldump`)
//! `--single-transaction --routines --triggers --events` of the job's databases (empty:
//! every database but the system schemas), its stdout sealed into a set like a
//! `command` job's; the drill restores it into a scratch server on a free port and
//! runs the job's SQL checks.
//!
//! The password is read from `password_file` at run time into a client option file
//! (mode 600, in a private scratch directory, removed afterwards) passed with
//! `--defaults-extra-file`: never on argv or in the environment.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::command::{backup_argv, std_command, CommandJobError};
use super::{JobCatalog, JobDrillRecord, JobRecord};
use crate::catalog::CheckResult;
use warden_config::{MariadbJob, StackJob, StackJobKind};

/// Schemas a dump of "every database" leaves out.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "performance_schema", "mysql", "sys"];
/// Bound on the scratch server's start and on one check.
const SERVER_START: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn the_mariadb(job: &StackJob) -> Option<&MariadbJob> {
    match &job.kind {
        StackJobKind::Mariadb(m) => Some(m),
        _ => None,
    }
}

fn other(job: &str, problem: impl Into<String>) -> CommandJobError {
    CommandJobError::Other {
        job: job.to_owned(),
        problem: problem.into(),
    }
}

fn tool(m: &MariadbJob, mariadb: &'static str, mysql: &'static str) -> String {
    if m.mysql { mysql } else { mariadb }.to_owned()
}

/// A client option file with the connection's password (and nothing when it has
/// none), mode 600 in `dir`.
fn option_file(job: &str, m: &MariadbJob, dir: &Path) -> Result<PathBuf, CommandJobError> {
    let path = dir.join("client.cnf");
    let mut text = String::from("[client]\n");
    if let Some(pf) = &m.password_file {
        let pw = std::fs::read_to_string(pf)
            .map_err(|e| other(job, format!("cannot read {}: {e}", pf.display())))?;
        let pw = pw.lines().next().unwrap_or_default();
        let quoted = pw.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("password=\"{quoted}\"\n"));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| other(job, format!("cannot write the client option file: {e}")))?;
    f.write_all(text.as_bytes())
        .map_err(|e| other(job, format!("cannot write the client option file: {e}")))?;
    Ok(path)
}

fn connection_args(m: &MariadbJob, cnf: &Path) -> Vec<String> {
    vec![
        format!("--defaults-extra-file={}", cnf.display()),
        format!("--host={}", m.host),
        format!("--port={}", m.port),
        format!("--user={}", m.user),
        "--protocol=tcp".into(),
    ]
}

/// Runs a client program; its stdout, or the failure with its stderr.
async fn client(
    job: &str,
    argv: &[String],
    input: Option<&Path>,
) -> Result<String, CommandJobError> {
    let mut cmd = tokio::process::Command::from(std_command(argv, &[], &[]));
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match input {
        Some(p) => cmd.stdin(
            std::fs::File::open(p).map_err(|e| other(job, format!("{}: {e}", p.display())))?,
        ),
        None => cmd.stdin(Stdio::null()),
    };
    let out = tokio::time::timeout(CLIENT_TIMEOUT.max(Duration::from_secs(600)), cmd.output())
        .await
        .map_err(|_| other(job, format!("{} timed out", argv[0])))?
        .map_err(|e| CommandJobError::Start {
            job: job.to_owned(),
            what: "the MariaDB client",
            problem: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(CommandJobError::Failed {
            job: job.to_owned(),
            what: "the MariaDB client",
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Dumps the job's databases into a new set.
pub async fn backup(
    jc: &JobCatalog,
    job: &StackJob,
    level: i32,
    member: &str,
) -> Result<JobRecord, CommandJobError> {
    let name = &job.name;
    let m = the_mariadb(job).ok_or_else(|| other(name, "not a MariaDB job"))?;
    let dir = tempfile::Builder::new()
        .prefix("warden-mariadb-")
        .tempdir()
        .map_err(|e| other(name, format!("cannot create a scratch directory: {e}")))?;
    let cnf = option_file(name, m, dir.path())?;
    let databases = if m.databases.is_empty() {
        let mut argv = vec![tool(m, "mariadb", "mysql")];
        argv.extend(connection_args(m, &cnf));
        argv.extend([
            "-N".into(),
            "-B".into(),
            "-e".into(),
            "SHOW DATABASES".into(),
        ]);
        let listed = client(name, &argv, None).await?;
        listed
            .lines()
            .map(str::trim)
            .filter(|d| !d.is_empty() && !SYSTEM_SCHEMAS.contains(d))
            .map(str::to_owned)
            .collect()
    } else {
        m.databases.clone()
    };
    if databases.is_empty() {
        return Err(other(name, "no database to dump"));
    }
    let mut argv = vec![tool(m, "mariadb-dump", "mysqldump")];
    argv.extend(connection_args(m, &cnf));
    argv.extend(
        [
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--databases",
        ]
        .map(String::from),
    );
    argv.extend(databases);
    backup_argv(jc, job, &argv, level, member).await
}

/// A scratch server, stopped (its process group) when dropped.
struct Scratch {
    pid: i32,
    child: std::process::Child,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.pid > 0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

/// The uid and gid of `mysql` (Debian's server user), for a server started as root.
fn mysql_user() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"mysql"))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

/// Initialises and starts a scratch server in `dir` on a free port, as `mysql`
/// when run as root; returns it and its socket.
async fn scratch_server(job: &str, dir: &Path) -> Result<(Scratch, PathBuf), String> {
    use std::os::unix::process::CommandExt;
    let data = dir.join("data");
    let sock = dir.join("mysqld.sock");
    let as_user = nix::unistd::Uid::effective()
        .is_root()
        .then(mysql_user)
        .flatten();
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = as_user {
        for p in [dir, data.as_path()] {
            nix::unistd::chown(p, Some(uid.into()), Some(gid.into())).map_err(|e| e.to_string())?;
        }
    }
    let mut init = std::process::Command::new("mariadb-install-db");
    init.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = as_user {
        init.uid(uid).gid(gid);
    }
    let out = tokio::task::spawn_blocking(move || init.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("mariadb-install-db: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mariadb-install-db {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new("mariadbd");
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .arg("--skip-grant-tables")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0);
    if let Some((uid, gid)) = as_user {
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().map_err(|e| format!("mariadbd: {e}"))?;
    let server = Scratch {
        pid: i32::try_from(child.id()).unwrap_or(0),
        child,
    };
    let deadline = Instant::now() + SERVER_START;
    loop {
        let ping = vec![
            "mariadb-admin".to_owned(),
            "--no-defaults".into(),
            format!("--socket={}", sock.display()),
            "ping".into(),
        ];
        if client(job, &ping, None).await.is_ok() {
            return Ok((server, sock));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the scratch server did not start in {SERVER_START:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The MariaDB drill: the set's dump into a scratch server, then the SQL checks.
pub(super) async fn drill_steps(
    jc: &JobCatalog,
    job: &StackJob,
    id: &str,
    scratch: &Path,
    rec: &mut JobDrillRecord,
    t0: Instant,
) -> Result<(), String> {
    let record = jc.record(id).await.map_err(|e| e.to_string())?;
    rec.backup_id = Some(record.id.clone());
    let dump = scratch.join("dump.sql");
    restore(jc, job, &record, &dump)
        .await
        .map_err(|e| e.to_string())?;
    let (server, sock) = scratch_server(&job.name, scratch).await?;
    let base = vec![
        "mariadb".to_owned(),
        "--no-defaults".into(),
        format!("--socket={}", sock.display()),
        "--user=root".into(),
    ];
    client(&job.name, &base, Some(&dump))
        .await
        .map_err(|e| format!("loading the dump: {e}"))?;
    rec.restore_seconds = Some(t0.elapsed().as_secs_f64());
    let t1 = Instant::now();
    let mut failed = Vec::new();
    for c in &job.drill.checks {
        let Some(sql) = &c.sql else { continue };
        let mut argv = base.clone();
        argv.extend(["-N".into(), "-B".into(), "-e".into(), sql.clone()]);
        let (ok, got) = match client(&job.name, &argv, None).await {
            Ok(out) => (c.expect.as_deref().is_none_or(|e| e.trim() == out), out),
            Err(e) => (false, e.to_string()),
        };
        if !ok {
            failed.push(format!("{} (got {got:?})", c.name));
        }
        rec.checks.push(CheckResult {
            name: c.name.clone(),
            ok,
            got,
        });
    }
    rec.checks_seconds = Some(t1.elapsed().as_secs_f64());
    let _ = tokio::task::spawn_blocking(move || drop(server)).await;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("check(s) failed: {}", failed.join(", ")))
    }
}

/// Writes set `record`'s dump (authenticated, decrypted) to the file `to`.
pub async fn restore(
    jc: &JobCatalog,
    job: &StackJob,
    record: &JobRecord,
    to: &Path,
) -> Result<u64, CommandJobError> {
    let name = job.name.clone();
    let list = jc.part_list(record);
    let rx = crate::parts::download(
        jc.catalog.repo.clone(),
        list.iter().map(|(p, _)| p.clone()).collect(),
    );
    let key = jc.catalog.key.clone();
    let to = to.to_path_buf();
    let id = record.id.clone();
    tokio::task::spawn_blocking(move || {
        let mut reader = crate::parts::PartsReader::new(rx, key, list);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&to)
            .map_err(|e| other(&name, format!("{}: {e}", to.display())))?;
        let copied = std::io::copy(&mut reader, &mut f);
        if let Some(p) = reader.problems.first() {
            let _ = std::fs::remove_file(&to);
            return Err(CommandJobError::Stack {
                job: name,
                source: Box::new(super::StackError::Parts {
                    id,
                    problems: vec![p.clone()],
                }),
            });
        }
        copied.map_err(|e| other(&name, format!("writing {}: {e}", to.display())))
    })
    .await
    .map_err(|e| other(&job.name, format!("restore task failed: {e}")))?
}
