//! `kind: mariadb` / `mysql`, method `dump`: `mariadb-dump` (`mysqldump`)
//! `--single-transaction --routines --triggers --events` of the job's databases (empty:
//! every database but the system schemas), its stdout sealed into a set like a
//! `command` job's; the drill restores it into a scratch server on a free port and
//! runs the job's SQL checks. `method: physical` is [`super::mariadb_physical`]; a
//! set's record says which method made it, and restore and drill follow the record.
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
use super::mariadb_physical::is_physical;
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

pub(super) fn other(job: &str, problem: impl Into<String>) -> CommandJobError {
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
pub(super) fn option_file(
    job: &str,
    m: &MariadbJob,
    dir: &Path,
) -> Result<PathBuf, CommandJobError> {
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

pub(super) fn connection_args(m: &MariadbJob, cnf: &Path) -> Vec<String> {
    vec![
        format!("--defaults-extra-file={}", cnf.display()),
        format!("--host={}", m.host),
        format!("--port={}", m.port),
        format!("--user={}", m.user),
        "--protocol=tcp".into(),
    ]
}

/// Runs a client program; its stdout, or the failure with its stderr.
pub(super) async fn client(
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
    if m.physical {
        return super::mariadb_physical::backup(jc, job, m, level, member).await;
    }
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
    backup_argv(jc, job, &argv, level, member, Some("dump")).await
}

/// A scratch server, stopped (its process group) when dropped.
pub(super) struct Scratch {
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

/// Who a server this process starts runs as: `mysql` when we are root (the server
/// refuses root), else ourselves (`None`).
pub(super) fn server_user() -> Option<(u32, u32)> {
    nix::unistd::Uid::effective()
        .is_root()
        .then(mysql_user)
        .flatten()
}

/// `chown -R uid:gid path` (symbolic links themselves, not what they point to).
pub(super) fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A server program: from `PATH`, else `/usr/sbin` (often missing from a service
/// user's `PATH`, and where Debian puts `mariadbd`).
fn server_program(name: &str) -> PathBuf {
    warden_config::stack_jobs::find_program(name)
        .or_else(|| {
            let p = Path::new("/usr/sbin").join(name);
            p.is_file().then_some(p)
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Initialises a fresh datadir in `dir/data` and starts a scratch server on it.
async fn scratch_server(job: &str, dir: &Path) -> Result<(Scratch, PathBuf), String> {
    use std::os::unix::process::CommandExt;
    let data = dir.join("data");
    let as_user = server_user();
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = as_user {
        // The server's user must reach `data` through `dir` (a private temporary one).
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
    start_scratch(job, dir, &data, None, false).await
}

/// Starts a scratch server on the datadir `data` (inside `dir`, which gets its
/// socket, pid file and log) on a free loopback port, as `mysql` when run as root
/// (both are handed to that user); `defaults`: its option file (a physical set's
/// `backup-my.cnf`), else none at all. `mysql`: MySQL's programs, not MariaDB's.
pub(super) async fn start_scratch(
    job: &str,
    dir: &Path,
    data: &Path,
    defaults: Option<&Path>,
    mysql: bool,
) -> Result<(Scratch, PathBuf), String> {
    use std::os::unix::process::CommandExt;
    let sock = dir.join("mysqld.sock");
    let as_user = server_user();
    if let Some((uid, gid)) = as_user {
        nix::unistd::chown(dir, Some(uid.into()), Some(gid.into())).map_err(|e| e.to_string())?;
        chown_tree(data, uid, gid).map_err(|e| format!("chown {}: {e}", data.display()))?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut cmd =
        std::process::Command::new(server_program(if mysql { "mysqld" } else { "mariadbd" }));
    // The option file must come first.
    match defaults {
        Some(f) => cmd.arg(format!("--defaults-file={}", f.display())),
        None => cmd.arg("--no-defaults"),
    };
    cmd.arg(format!("--datadir={}", data.display()))
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
    let child = cmd
        .spawn()
        .map_err(|e| format!("the scratch server: {e}"))?;
    let server = Scratch {
        pid: i32::try_from(child.id()).unwrap_or(0),
        child,
    };
    let deadline = Instant::now() + SERVER_START;
    loop {
        let ping = vec![
            if mysql { "mysqladmin" } else { "mariadb-admin" }.to_owned(),
            "--no-defaults".into(),
            format!("--socket={}", sock.display()),
            "ping".into(),
        ];
        if client(job, &ping, None).await.is_ok() {
            return Ok((server, sock));
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(format!(
                "the scratch server did not start in {SERVER_START:?}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the job's SQL checks with the client `base` (argv reaching the scratch
/// server), recording each in `rec`; the failed ones, described.
pub(super) async fn run_checks(
    job: &StackJob,
    base: &[String],
    rec: &mut JobDrillRecord,
) -> Vec<String> {
    let mut failed = Vec::new();
    for c in &job.drill.checks {
        let Some(sql) = &c.sql else { continue };
        let mut argv = base.to_vec();
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
    failed
}

/// The MariaDB drill: the set's dump into a scratch server, then the SQL checks (a
/// physical set: [`super::mariadb_physical::drill_steps`]).
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
    if is_physical(&record) {
        return super::mariadb_physical::drill_steps(jc, job, &record, scratch, rec, t0).await;
    }
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
    let failed = run_checks(job, &base, rec).await;
    rec.checks_seconds = Some(t1.elapsed().as_secs_f64());
    let _ = tokio::task::spawn_blocking(move || drop(server)).await;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("check(s) failed: {}", failed.join(", ")))
    }
}

/// `restore --job --to DIR`: a dump set to `DIR/dump.sql`, a physical set as a
/// prepared datadir in `DIR`. Returns the set's plaintext bytes.
pub async fn restore_into(
    jc: &JobCatalog,
    job: &StackJob,
    record: &JobRecord,
    dir: &Path,
) -> Result<u64, CommandJobError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| other(&job.name, format!("creating {}: {e}", dir.display())))?;
    if is_physical(record) {
        return super::mariadb_physical::restore(jc, job, record, dir).await;
    }
    restore(jc, job, record, &dir.join("dump.sql")).await
}

/// What to do with set `record` restored into `dir` (`None`: not a MariaDB job).
pub fn restore_next_steps(job: &StackJob, record: &JobRecord, dir: &Path) -> Option<String> {
    let m = the_mariadb(job)?;
    Some(if is_physical(record) {
        super::mariadb_physical::next_steps(record, dir)
    } else {
        format!(
            "Load it into a server with `{} < {}` (it creates the databases it holds).",
            tool(m, "mariadb", "mysql"),
            dir.join("dump.sql").display()
        )
    })
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
                error: Box::new(super::StackError::Parts {
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
