//! The two child processes of a dump: `pg_dump` streaming into sealed parts, and
//! `pg_restore --list` reading them back.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::DumpJob;
use crate::catalog::Part;
use crate::codec::{self, Sealer};
use crate::parts::{self, PartsReader};
use crate::repo::Upload;

/// Plaintext bytes per part object.
pub const PART_SIZE: u64 = 1 << 30;
/// Bound on one database's `pg_dump` (and, separately, on its verification).
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Kept of a failing program's stderr, for the error.
const STDERR_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot list the databases to dump: {0}")]
    Inventory(String),
    #[error("{program} for database \"{database}\": {problem}")]
    Program {
        program: &'static str,
        database: String,
        problem: String,
    },
    #[error("repository: {0}")]
    Repo(String),
    #[error(
        "database \"{database}\": the dump read back from the repository is not valid: {problem}"
    )]
    Verify { database: String, problem: String },
}

/// A sealed part being uploaded: plaintext in, sealed bytes out to the upload as
/// they are produced.
struct PartWriter {
    name: String,
    sealer: Sealer<SharedBuf>,
    out: Arc<Mutex<Vec<u8>>>,
    upload: Upload,
    plain: u64,
    stored: u64,
}

/// The sealer's output buffer, drained after every write.
#[derive(Clone)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn repo_err(e: impl std::fmt::Display) -> super::DumpError {
    DumpError::Repo(e.to_string())
}

impl PartWriter {
    async fn start(job: &DumpJob, path: &str) -> Result<Self, DumpError> {
        let upload = job.catalog.repo.upload(path).await.map_err(repo_err)?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let sealer = codec::seal(
            &job.catalog.key,
            job.compression_level,
            path,
            SharedBuf(out.clone()),
        )
        .map_err(repo_err)?;
        Ok(Self {
            name: path.rsplit('/').next().unwrap_or(path).to_owned(),
            sealer,
            out,
            upload,
            plain: 0,
            stored: 0,
        })
    }

    async fn drain(&mut self) -> Result<(), DumpError> {
        let sealed = std::mem::take(&mut *lock(&self.out));
        if !sealed.is_empty() {
            self.stored += sealed.len() as u64;
            self.upload.write(&sealed).await.map_err(repo_err)?;
        }
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), DumpError> {
        self.sealer.write_all(data).map_err(repo_err)?;
        self.plain += data.len() as u64;
        self.drain().await
    }

    async fn finish(mut self) -> Result<Part, DumpError> {
        let (_, sealed) = self.sealer.finish().map_err(repo_err)?;
        let rest = std::mem::take(&mut *lock(&self.out));
        self.stored += rest.len() as u64;
        self.upload.write(&rest).await.map_err(repo_err)?;
        self.upload.finish().await.map_err(repo_err)?;
        Ok(Part {
            name: self.name,
            plain_size: sealed.len,
            stored_size: self.stored,
            sha256: hex::encode(sealed.digest),
        })
    }
}

/// Reads a child's stderr, keeping the last [`STDERR_MAX`] bytes.
async fn tail(mut r: impl AsyncRead + Unpin) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > STDERR_MAX {
            kept.drain(..kept.len() - STDERR_MAX);
        }
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// Runs `pg_dump` for `db` and uploads its output as parts `<prefix>.<n>`. Returns the
/// parts, plaintext bytes and stored bytes.
pub async fn dump_to_parts(
    job: &DumpJob,
    db: &str,
    prefix: &str,
) -> Result<(Vec<Part>, u64, u64), DumpError> {
    let failed = |problem: String| DumpError::Program {
        program: "pg_dump",
        database: db.to_owned(),
        problem,
    };
    let mut cmd = job.programs.command("pg_dump");
    cmd.arg("--format=custom")
        .arg("--no-password")
        .arg("--dbname")
        .arg(job.settings.local_conn_string_to(db, false))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = &job.settings.superuser.password {
        cmd.env("PGPASSWORD", p);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = tokio::spawn(tail(child.stderr.take().expect("piped")));
    let mut current: Option<PartWriter> = None;
    let work = async {
        let mut parts = Vec::new();
        let mut buf = vec![0u8; codec::CHUNK];
        loop {
            let n = stdout
                .read(&mut buf)
                .await
                .map_err(|e| failed(format!("reading its output: {e}")))?;
            if n == 0 {
                break;
            }
            if current.is_none() {
                let path = format!("{prefix}.{:05}", parts.len());
                current = Some(PartWriter::start(job, &path).await?);
            }
            let w = current.as_mut().expect("set above");
            w.write(&buf[..n]).await?;
            if w.plain >= PART_SIZE {
                parts.push(current.take().expect("set above").finish().await?);
            }
        }
        if let Some(w) = current.take() {
            parts.push(w.finish().await?);
        }
        let status = child
            .wait()
            .await
            .map_err(|e| failed(format!("waiting for it: {e}")))?;
        Ok::<_, DumpError>((parts, status))
    };
    let result = tokio::time::timeout(DUMP_TIMEOUT, work).await;
    let (parts, status) = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            if let Some(w) = current.take() {
                w.upload.abort().await;
            }
            return Err(e);
        }
        Err(_) => {
            if let Some(w) = current.take() {
                w.upload.abort().await;
            }
            return Err(failed(format!("timed out after {DUMP_TIMEOUT:?}")));
        }
    };
    let err_text = stderr.await.unwrap_or_default();
    if !status.success() {
        return Err(failed(format!("{status}: {err_text}")));
    }
    if parts.is_empty() {
        return Err(failed("produced no output".into()));
    }
    let size = parts.iter().map(|p| p.plain_size).sum();
    let stored = parts.iter().map(|p| p.stored_size).sum();
    Ok((parts, size, stored))
}

/// Streams `parts` (under `dir`) back from the repository into `pg_restore --list`;
/// returns the number of TOC entries it listed, which must be more than zero.
pub async fn verify_parts(
    job: &DumpJob,
    db: &str,
    dir: &str,
    parts: &[Part],
) -> Result<u64, DumpError> {
    let bad = |problem: String| DumpError::Verify {
        database: db.to_owned(),
        problem,
    };
    let list: Vec<(String, Part)> = parts
        .iter()
        .map(|p| (format!("{dir}/{}", p.name), p.clone()))
        .collect();
    let rx = parts::download(
        job.catalog.repo.clone(),
        list.iter().map(|(p, _)| p.clone()).collect(),
    );
    let key = job.catalog.key.clone();
    let programs = job.programs.clone();
    let pid = Arc::new(AtomicI32::new(0));
    let pid_in = pid.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(programs.bin_dir.join("pg_restore"));
        cmd.arg("--list")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(r) = programs.run_as {
            cmd.uid(r.uid).gid(r.gid);
        }
        if let Some(parent) = programs.data_dir.parent() {
            cmd.current_dir(parent);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start pg_restore: {e}"))?;
        pid_in.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let counter = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
                .count() as u64
        });
        let errs = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut reader = PartsReader::new(rx, key, list);
        let mut stdin = child.stdin.take().expect("piped");
        let copied = std::io::copy(&mut reader, &mut stdin);
        drop(stdin);
        let status = child.wait().map_err(|e| format!("pg_restore: {e}"))?;
        let entries = counter.join().unwrap_or(0);
        let err_text = errs.join().unwrap_or_default();
        if let Some(p) = reader.problems.first() {
            return Err(format!("{}: {}", p.object, p.problem));
        }
        if let Err(e) = copied {
            if status.success() {
                return Err(format!("reading the parts: {e}"));
            }
        }
        if !status.success() {
            return Err(format!(
                "pg_restore --list failed ({status}): {}",
                err_text.trim()
            ));
        }
        if entries == 0 {
            return Err(
                "pg_restore --list listed no entries (an empty database, or not a dump)".into(),
            );
        }
        Ok(entries)
    });
    match tokio::time::timeout(DUMP_TIMEOUT, task).await {
        Ok(Ok(Ok(n))) => Ok(n),
        Ok(Ok(Err(problem))) => Err(bad(problem)),
        Ok(Err(e)) => Err(bad(format!("verification task failed: {e}"))),
        Err(_) => {
            let p = pid.load(Ordering::SeqCst);
            if p > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(bad(format!("timed out after {DUMP_TIMEOUT:?}")))
        }
    }
}
