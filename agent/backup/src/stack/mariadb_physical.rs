//! `kind: mariadb` / `mysql`, `method: physical`: `mariadb-backup --backup
//! --stream=mbstream` (Percona's `xtrabackup --stream=xbstream` for `mysql`), a copy
//! of the server's files that does not block InnoDB writes; its stdout is sealed into
//! a set exactly like a dump's (`command::backup_argv`), recorded as `physical`.
//!
//! - The tool connects with the job's connection (password in a mode-600 option file
//!   passed with `--defaults-extra-file`, never on argv or in the environment) and
//!   reads the server's data directory: the job's `datadir`, else the server's own
//!   `@@datadir`, asked at each run. It must therefore run on the server's host, as a
//!   user that can read those files.
//! - Restore and drill: the set's parts (authenticated, decrypted) into `mbstream -x`,
//!   then `mariadb-backup --prepare` with the `backup-my.cnf` the stream carries (the
//!   InnoDB settings it was taken with), which applies the redo copied during the
//!   backup: the result is a datadir a server starts on. The drill starts a scratch
//!   server there (the dump drill's, without `mariadb-install-db`) and runs the checks.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use super::command::{backup_argv, std_command, CommandJobError};
use super::mariadb::{client, connection_args, option_file, other, run_checks, the_mariadb};
use super::{JobCatalog, JobDrillRecord, JobRecord, StackError};
use crate::parts::PartsReader;
use warden_config::{stack_jobs::physical_tools, MariadbJob, StackJob};

/// `JobRecord::method` of a physical set.
pub const PHYSICAL: &str = "physical";
/// Kept of a failing tool's stderr (mariadb-backup logs a line per file).
const STDERR_MAX: usize = 3000;

/// Whether set `record` is a physical copy (older sets without a method are dumps).
pub fn is_physical(record: &JobRecord) -> bool {
    record.method.as_deref() == Some(PHYSICAL)
}

/// The backup tool and the stream extractor of the server kind that made `record`.
fn tools_of(record: &JobRecord) -> (&'static str, &'static str) {
    physical_tools(record.kind == "mysql")
}

/// Copies the server's files into a new set.
pub(super) async fn backup(
    jc: &JobCatalog,
    job: &StackJob,
    m: &MariadbJob,
    level: i32,
    member: &str,
) -> Result<JobRecord, CommandJobError> {
    let name = &job.name;
    let dir = tempfile::Builder::new()
        .prefix("warden-mariadb-")
        .tempdir()
        .map_err(|e| other(name, format!("cannot create a scratch directory: {e}")))?;
    let cnf = option_file(name, m, dir.path())?;
    let datadir = match &m.datadir {
        Some(d) => d.clone(),
        None => {
            let mut argv = vec![if m.mysql { "mysql" } else { "mariadb" }.to_owned()];
            argv.extend(connection_args(m, &cnf));
            argv.extend([
                "-N".into(),
                "-B".into(),
                "-e".into(),
                "SELECT @@datadir".into(),
            ]);
            let d = client(name, &argv, None).await?;
            if d.is_empty() {
                return Err(other(name, "the server reported no @@datadir"));
            }
            PathBuf::from(d)
        }
    };
    // Said plainly here rather than in the middle of the tool's log of every file.
    std::fs::read_dir(&datadir).map_err(|e| {
        other(
            name,
            format!(
                "cannot read the server's data directory {}: {e} (method physical reads the \
                 server's files: run on the server's host as a user that can read them, or \
                 set backup.jobs[].datadir)",
                datadir.display()
            ),
        )
    })?;
    let target = dir.path().join("target");
    std::fs::create_dir(&target)
        .map_err(|e| other(name, format!("creating {}: {e}", target.display())))?;
    let (tool, stream) = m.physical_tools();
    let mut argv = vec![tool.to_owned()];
    argv.extend(connection_args(m, &cnf));
    argv.extend([
        "--backup".to_owned(),
        format!("--stream={stream}"),
        // Nothing is written there with --stream; the tool still wants one.
        format!("--target-dir={}", target.display()),
        format!("--datadir={}", datadir.display()),
    ]);
    backup_argv(jc, job, &argv, level, member, Some(PHYSICAL)).await
}

fn kill_group(pid: i32) {
    if pid > 0 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn stderr_tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_MAX);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// Set `record`'s stream into `<stream tool> -x -C dir`; the plaintext bytes.
async fn extract(
    jc: &JobCatalog,
    job: &StackJob,
    record: &JobRecord,
    dir: &Path,
) -> Result<u64, CommandJobError> {
    let name = job.name.clone();
    let (_, stream) = tools_of(record);
    let argv = vec![
        stream.to_owned(),
        "-x".into(),
        "-C".into(),
        dir.display().to_string(),
    ];
    let list = jc.part_list(record);
    let rx = crate::parts::download(
        jc.catalog.repo.clone(),
        list.iter().map(|(p, _)| p.clone()).collect(),
    );
    let key = jc.catalog.key.clone();
    let id = record.id.clone();
    let mut cmd = std_command(&argv, &[], &[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let pid = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let pid_in = pid.clone();
    let job_name = name.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<u64, CommandJobError> {
        let mut child = cmd.spawn().map_err(|e| CommandJobError::Start {
            job: job_name.clone(),
            what: "the stream extractor",
            problem: e.to_string(),
        })?;
        pid_in.store(
            i32::try_from(child.id()).unwrap_or(0),
            std::sync::atomic::Ordering::SeqCst,
        );
        let mut stderr = child.stderr.take().expect("piped");
        let errs = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            stderr_tail(&text)
        });
        let mut reader = PartsReader::new(rx, key, list);
        let mut stdin = child.stdin.take().expect("piped");
        let copied = std::io::copy(&mut reader, &mut stdin);
        drop(stdin);
        let status = child.wait();
        let err_text = errs.join().unwrap_or_default();
        // A part that did not authenticate first: the tool saw a cut stream then.
        if let Some(p) = reader.problems.first() {
            return Err(CommandJobError::Stack {
                job: job_name,
                error: Box::new(StackError::Parts {
                    id,
                    problems: vec![p.clone()],
                }),
            });
        }
        let status = status.map_err(|e| other(&job_name, format!("waiting for {stream}: {e}")))?;
        if !status.success() {
            return Err(CommandJobError::Failed {
                job: job_name,
                what: "the stream extractor",
                status: status.to_string(),
                stderr: err_text,
            });
        }
        copied.map_err(|e| other(&job_name, format!("{stream} stopped reading: {e}")))
    });
    match tokio::time::timeout(job.timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(other(&name, format!("extract task failed: {e}"))),
        Err(_) => {
            kill_group(pid.load(std::sync::atomic::Ordering::SeqCst));
            Err(CommandJobError::TimedOut {
                job: name,
                what: "the stream extractor",
                timeout: job.timeout,
                stderr: String::new(),
            })
        }
    }
}

/// `mariadb-backup --prepare` of the extracted `dir`, with the settings it was taken
/// with (`backup-my.cnf`, which must be the first option).
async fn prepare(job: &StackJob, record: &JobRecord, dir: &Path) -> Result<(), CommandJobError> {
    let name = &job.name;
    let cnf = dir.join("backup-my.cnf");
    if !cnf.is_file() {
        return Err(other(
            name,
            format!(
                "set {}: the stream holds no backup-my.cnf (not a {} stream)",
                record.id,
                tools_of(record).0
            ),
        ));
    }
    let (tool, _) = tools_of(record);
    let argv = vec![
        tool.to_owned(),
        format!("--defaults-file={}", cnf.display()),
        "--prepare".into(),
        format!("--target-dir={}", dir.display()),
    ];
    let mut cmd = tokio::process::Command::from(std_command(&argv, &[], &[]));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(job.timeout, cmd.output())
        .await
        .map_err(|_| CommandJobError::TimedOut {
            job: name.clone(),
            what: "the prepare step",
            timeout: job.timeout,
            stderr: String::new(),
        })?
        .map_err(|e| CommandJobError::Start {
            job: name.clone(),
            what: "the prepare step",
            problem: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(CommandJobError::Failed {
            job: name.clone(),
            what: "the prepare step",
            status: out.status.to_string(),
            stderr: stderr_tail(&out.stderr),
        });
    }
    Ok(())
}

/// Extracts and prepares set `record` into `dir` (existing, empty): a datadir a
/// server starts on. On failure `dir` is emptied again (a half-extracted copy must
/// not be mistaken for a restore).
pub(super) async fn restore_datadir(
    jc: &JobCatalog,
    job: &StackJob,
    record: &JobRecord,
    dir: &Path,
) -> Result<u64, CommandJobError> {
    let result = async {
        let n = extract(jc, job, record, dir).await?;
        prepare(job, record, dir).await?;
        Ok::<u64, CommandJobError>(n)
    }
    .await;
    if result.is_err() {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    result
}

/// `restore --job --to DIR` of a physical set: the prepared datadir in `dir`, owned
/// by the `mysql` user when run as root (the server runs as that user).
pub(super) async fn restore(
    jc: &JobCatalog,
    job: &StackJob,
    record: &JobRecord,
    dir: &Path,
) -> Result<u64, CommandJobError> {
    let n = restore_datadir(jc, job, record, dir).await?;
    if let Some((uid, gid)) = super::mariadb::server_user() {
        super::mariadb::chown_tree(dir, uid, gid)
            .map_err(|e| other(&job.name, format!("chown {} to mysql: {e}", dir.display())))?;
    }
    Ok(n)
}

/// What the operator does with a restored physical set in `dir`.
pub(super) fn next_steps(record: &JobRecord, dir: &Path) -> String {
    let (tool, _) = tools_of(record);
    let server = if record.kind == "mysql" {
        "mysqld"
    } else {
        "mariadbd"
    };
    let d = dir.display();
    format!(
        "A prepared data directory (InnoDB settings it was taken with: {d}/backup-my.cnf). \
         To look at it: {server} --datadir={d} --skip-networking --socket=/tmp/restore.sock \
         (as the server's user). To put it back: stop the server, empty its datadir, \
         `{tool} --copy-back --target-dir={d}` (or move {d} into its place), chown -R \
         mysql:mysql the datadir, start the server."
    )
}

/// The physical drill: extract and prepare into the scratch directory, start a
/// scratch server on it, run the SQL checks.
pub(super) async fn drill_steps(
    jc: &JobCatalog,
    job: &StackJob,
    record: &JobRecord,
    scratch: &Path,
    rec: &mut JobDrillRecord,
    t0: Instant,
) -> Result<(), String> {
    let m = the_mariadb(job).ok_or("not a MariaDB job")?;
    let data = scratch.join("data");
    std::fs::create_dir(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    restore_datadir(jc, job, record, &data)
        .await
        .map_err(|e| e.to_string())?;
    let defaults = data.join("backup-my.cnf");
    let mysql = record.kind == "mysql" || m.mysql;
    let (server, sock) =
        super::mariadb::start_scratch(&job.name, scratch, &data, Some(&defaults), mysql).await?;
    rec.restore_seconds = Some(t0.elapsed().as_secs_f64());
    let client = if mysql { "mysql" } else { "mariadb" };
    let base = vec![
        client.to_owned(),
        "--no-defaults".into(),
        format!("--socket={}", sock.display()),
        "--user=root".into(),
    ];
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
