//! One base backup: pg_basebackup's tar stream from the local server, sealed in
//! parts into the repository, then the manifest, then — once the WAL it needs is
//! archived — its record.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, ChildStderr};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::error::Elapsed;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::files::{self, TarWriter};
use super::filesums::FileSums;
use super::lowlevel;
use super::parts::{self, SealSpec, Splitter, UploadError};
use super::progress::{Phase, Progress};
use super::tar_stream::{self, Scanned};
use super::wal_range;
use crate::catalog::{self, BackupRecord, Catalog, CatalogError, BACKUP_RECORD, MANIFEST};
use crate::codec;
use crate::layout::WalName;
use crate::repo::RepoError;
use crate::restore::extract::normalize;
use warden_config::BaseMethod;
use warden_pg::lsn::Lsn;
use warden_pg::process::Programs;
use warden_pg::sql::Sql;
use warden_pg::Settings;

const PROGRAM: &str = "pg_basebackup";
/// Bound on the SQL statements around the backup.
pub(super) const SQL_TIMEOUT: Duration = Duration::from_secs(10);
/// pg_basebackup must exit this soon after its stream ended.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the repository is looked at while waiting for WAL: often at first (the
/// last segment usually arrives within a second of the switch, and the wait is part
/// of every backup's duration), then less.
const WAL_POLL_FAST: Duration = Duration::from_millis(100);
const WAL_POLL: Duration = Duration::from_millis(500);
/// How long the fast polling lasts.
const WAL_POLL_FAST_FOR: Duration = Duration::from_secs(5);
/// While waiting, ask the primary for another segment switch this often (the first
/// may have come before our standby had replayed up to the backup's end).
const SWITCH_EVERY: Duration = Duration::from_secs(10);
/// Pipe buffer asked for pg_basebackup's stdout.
const PIPE_SIZE: i32 = 1024 * 1024;
/// stderr lines of pg_basebackup kept for the error message.
const STDERR_LINES: usize = 8;

/// Everything one backup needs.
#[derive(Debug, Clone)]
pub struct Target {
    pub catalog: Catalog,
    pub system_identifier: u64,
    pub compression_level: i32,
    pub wal_wait_timeout: Duration,
    /// This member's name (recorded in the backup).
    pub member: String,
    pub settings: Settings,
    pub programs: Programs,
    /// The leader's address, for when WAL must be switched on the primary.
    pub view: Arc<dyn super::View>,
    /// Plaintext bytes per part.
    pub part_size: u64,
    /// `backup.base_method`: copy the data directory's files, or run pg_basebackup.
    pub method: BaseMethod,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("the local PostgreSQL: {0}")]
    Server(String),
    #[error("the server has tablespaces ({0}); pg_basebackup cannot stream them to stdout, so Warden cannot back this cluster up")]
    Tablespaces(String),
    #[error("pg_basebackup: {0}")]
    PgBasebackup(String),
    #[error("reading the tar stream: {0}")]
    Stream(String),
    #[error("uploading: {0}")]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Manifest(String),
    #[error("WAL segment {segment} (needed by the backup, {needed} segments from {first}) was not archived within {}; the backup is abandoned", humantime::format_duration(*waited))]
    WalMissing {
        segment: String,
        first: String,
        needed: usize,
        waited: Duration,
    },
    #[error("cancelled (this member stopped being the archiver, or the agent is stopping)")]
    Cancelled,
}

/// What the server told us before the backup.
#[derive(Debug, Clone, Copy)]
struct ServerFacts {
    version: u32,
    seg_size: u64,
    in_recovery: bool,
}

/// Takes one backup with id `id`. On failure everything already uploaded under the
/// backup's directory is deleted (best effort) and no record is written.
pub async fn take(
    t: &Target,
    id: &str,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<BackupRecord, BaseError> {
    let dir = t.catalog.backup_dir(id);
    let result = run(t, id, &dir, progress, cancel).await;
    if result.is_err() {
        remove_leftovers(t, &dir).await;
    }
    result
}

async fn run(
    t: &Target,
    id: &str,
    dir: &str,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<BackupRecord, BaseError> {
    let started_at = Utc::now();
    let facts = server_facts(&t.settings).await?;
    progress.set_phase(Phase::Streaming);
    let (scanned, parts) = match t.method {
        BaseMethod::Files => copy_files(t, id, dir, facts, progress, cancel).await?,
        BaseMethod::PgBasebackup => stream(t, id, dir, progress, cancel).await?,
    };

    let manifest = scanned
        .manifest
        .as_deref()
        .ok_or_else(|| BaseError::Manifest("the tar stream held no backup_manifest".into()))?;
    let range = wal_range::from_manifest(manifest).map_err(BaseError::Manifest)?;
    // Restores and verifies check every file against this manifest: it must be
    // readable and list exactly what the stream held.
    check_manifest_lists(manifest, &scanned.files)?;
    let manifest_path = format!("{dir}/{MANIFEST}");
    let (sealed, _) = codec::seal_bytes(
        &t.catalog.key,
        t.compression_level,
        &manifest_path,
        manifest,
    )
    .map_err(|e| BaseError::Manifest(format!("sealing backup_manifest: {e}")))?;
    t.catalog.repo.put(&manifest_path, sealed.into()).await?;

    progress.set_phase(Phase::WaitingForWal);
    let segments = range.segments(facts.seg_size);
    wait_for_wal(t, facts, &segments, cancel).await?;

    progress.set_phase(Phase::Committing);
    let record = BackupRecord {
        format: catalog::FORMAT,
        id: id.to_owned(),
        member: t.member.clone(),
        system_identifier: t.system_identifier,
        pg_version: facts.version,
        started_at,
        finished_at: Utc::now(),
        timeline: range.timeline,
        start_lsn: Lsn(range.start).to_string(),
        end_lsn: Lsn(range.end).to_string(),
        start_wal: segments.first().cloned().unwrap_or_default(),
        end_wal: segments.last().cloned().unwrap_or_default(),
        size: scanned.size,
        stored_size: parts.iter().map(|p| p.stored_size).sum(),
        compression_level: t.compression_level,
        parts,
        // Empty: the per-file checksums are the server's, in backup_manifest
        // (`filesums`); records before issue 15 listed Warden's SHA-256 here.
        files: Vec::new(),
        file_count: Some(scanned.files.len() as u64),
    };
    if cancel.is_cancelled() {
        return Err(BaseError::Cancelled);
    }
    t.catalog
        .put_record(&format!("{dir}/{BACKUP_RECORD}"), &record)
        .await?;
    Ok(record)
}

/// The manifest parses (its own checksum included) and names every regular file of
/// the stream with its size, and nothing else.
fn check_manifest_lists(manifest: &[u8], files: &[(String, u64)]) -> Result<(), BaseError> {
    let mut sums = FileSums::from_manifest(manifest).map_err(BaseError::Manifest)?;
    for (path, size) in files {
        let rel = normalize(path).unwrap_or_else(|| path.clone());
        match sums.files.remove(&rel) {
            Some(e) if e.size == *size => {}
            Some(e) => {
                return Err(BaseError::Manifest(format!(
                    "backup_manifest says {rel} has {} bytes, the stream held {size}",
                    e.size
                )))
            }
            None if sums.exempt.contains(&rel) => {}
            None => {
                return Err(BaseError::Manifest(format!(
                    "{rel} is in the stream but not in backup_manifest"
                )))
            }
        }
    }
    if let Some(path) = sums.files.keys().next() {
        return Err(BaseError::Manifest(format!(
            "backup_manifest lists {path}, which the stream did not hold"
        )));
    }
    Ok(())
}

async fn server_facts(settings: &Settings) -> Result<ServerFacts, BaseError> {
    let mut sql = Sql::new(settings.local_conn_string(), SQL_TIMEOUT);
    let f = sql
        .backup_facts()
        .await
        .map_err(|e| BaseError::Server(e.to_string()))?;
    if !f.tablespaces.is_empty() {
        return Err(BaseError::Tablespaces(f.tablespaces.join(", ")));
    }
    Ok(ServerFacts {
        version: f.version,
        seg_size: u64::try_from(f.wal_segment_size)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                BaseError::Server(format!("bad wal_segment_size {}", f.wal_segment_size))
            })?,
        in_recovery: f.in_recovery,
    })
}

/// The last few stderr lines of pg_basebackup.
async fn stderr_tail(stderr: tokio::process::ChildStderr) -> String {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(line, "pg_basebackup");
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into_iter().collect::<Vec<_>>().join(" | ")
}

/// Runs pg_basebackup and streams its output into sealed parts.
async fn stream(
    t: &Target,
    id: &str,
    dir: &str,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(Scanned, Vec<catalog::Part>), BaseError> {
    let (mut child, stdout, stderr) = spawn_pg_basebackup(t, id)?;
    let stderr = tokio::spawn(stderr_tail(stderr));

    // Fewer, larger reads from pg_basebackup (best effort: the default is 64 KiB).
    let _ = nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    let (senders, sealers, rx) = sealing_stages(t, dir);
    let part_size = t.part_size;
    let counter = progress.byte_counter();
    let scan = tokio::task::spawn_blocking(move || -> io::Result<Scanned> {
        let splitter = Splitter::new(senders, part_size);
        let (scanned, splitter) = tar_stream::scan(stdout, splitter, counter)?;
        splitter.finish()?;
        Ok(scanned)
    });
    let seal = join_sealers(sealers);
    let upload = parts::upload_parts(&t.catalog.repo, rx);
    let work = async { tokio::join!(upload, scan, seal) };
    tokio::pin!(work);
    let (uploaded, scanned, sealed) = tokio::select! {
        r = &mut work => r,
        () = cancel.cancelled() => {
            let _ = child.start_kill();
            // The stream now ends early: let the stages wind down, so the uploads in
            // progress are aborted rather than left behind (bounded).
            let _ = tokio::time::timeout(EXIT_TIMEOUT, &mut work).await;
            return Err(BaseError::Cancelled);
        }
    };
    let scanned =
        scanned.unwrap_or_else(|e| Err(io::Error::other(format!("the reader panicked: {e}"))));
    let failed = uploaded.is_err() || scanned.is_err() || sealed.is_err();
    if failed {
        // Our side gave up: pg_basebackup must not go on (or wait on a full pipe).
        let _ = child.start_kill();
    }
    let status = tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await;
    let tail = tokio::time::timeout(Duration::from_secs(5), stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let ended = StreamEnd {
        uploaded,
        scanned,
        sealed,
        failed,
        status,
        tail,
    };
    ended.verdict(&mut child)
}

/// The reader's senders (one per sealing worker), the workers, the uploader's receiver.
type Stages = (
    Vec<std::sync::mpsc::SyncSender<parts::Raw>>,
    Vec<JoinHandle<io::Result<()>>>,
    mpsc::Receiver<parts::Msg>,
);

/// Three stages on separate cores: the reader (a blocking thread, the caller's) feeds
/// the returned senders; compress + encrypt parts (a few workers, parts are
/// independent); upload (async, from the returned receiver).
fn sealing_stages(t: &Target, dir: &str) -> Stages {
    let (tx, rx) = mpsc::channel(parts::CHANNEL_CAPACITY);
    let spec = SealSpec {
        key: t.catalog.key.clone(),
        level: t.compression_level,
        dir: dir.to_owned(),
    };
    let mut senders = Vec::new();
    let mut sealers = Vec::new();
    for _ in 0..parts::workers() {
        let (wtx, wrx) = std::sync::mpsc::sync_channel(parts::RAW_CAPACITY);
        senders.push(wtx);
        let (tx, spec) = (tx.clone(), spec.clone());
        sealers.push(tokio::task::spawn_blocking(move || {
            parts::seal_worker(&wrx, &tx, &spec)
        }));
    }
    (senders, sealers, rx)
}

/// `backup.base_method: files`: the data directory copied between `pg_backup_start`
/// and `pg_backup_stop` (`files`), into the same stages as pg_basebackup's stream.
async fn copy_files(
    t: &Target,
    id: &str,
    dir: &str,
    facts: ServerFacts,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(Scanned, Vec<catalog::Part>), BaseError> {
    let data_dir = files::check_readable(&t.settings.data_dir).map_err(BaseError::Server)?;
    let label = format!("warden {id}");
    let start = lowlevel::Session::start(
        t.settings.local_conn_string(),
        &label,
        facts.in_recovery,
        t.wal_wait_timeout,
    );
    let (session, start_lsn, checksums) = tokio::select! {
        r = start => r.map_err(BaseError::Server)?,
        () = cancel.cancelled() => return Err(BaseError::Cancelled),
    };
    tracing::info!(%start_lsn, checksums, data_dir = %data_dir.display(), "base backup: copying the data directory");
    let (senders, sealers, rx) = sealing_stages(t, dir);
    let (part_size, counter, stop) = (t.part_size, progress.byte_counter(), cancel.clone());
    let produce = async move {
        let copied = tokio::task::spawn_blocking(move || {
            let mut w = TarWriter::new(Splitter::new(senders, part_size), counter, stop);
            if checksums {
                w.verify_pages(start_lsn);
            }
            files::copy_data_dir(&data_dir, &mut w).map(|()| w)
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("the copier panicked: {e}"))))
        .map_err(|e| format!("copying the data directory: {e}"))?;
        // The session stayed open (and idle) during the copy; this ends the backup.
        let stopped = session.stop().await?;
        tokio::task::spawn_blocking(move || {
            let (scanned, splitter) = files::finish(copied, &stopped.label, stopped.range)?;
            splitter.finish()?;
            Ok(scanned)
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("the copier panicked: {e}"))))
        .map_err(|e: io::Error| format!("ending the tar stream: {e}"))
    };
    let seal = join_sealers(sealers);
    let upload = parts::upload_parts(&t.catalog.repo, rx);
    let work = async { tokio::join!(upload, produce, seal) };
    tokio::pin!(work);
    let (uploaded, produced, sealed) = tokio::select! {
        r = &mut work => r,
        () = cancel.cancelled() => {
            // The copier sees the token and stops: let the stages wind down, so the
            // uploads in progress are aborted rather than left behind (bounded).
            let _ = tokio::time::timeout(EXIT_TIMEOUT, &mut work).await;
            return Err(BaseError::Cancelled);
        }
    };
    // The error closest to the cause: a stage that stopped because another did (a
    // broken pipe, an unfinished part) defers to that other.
    let consequence =
        |k: io::ErrorKind| matches!(k, io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof);
    if let Err(e) = &sealed {
        if !consequence(e.kind()) {
            return Err(BaseError::Stream(format!("sealing: {e}")));
        }
    }
    let parts = match uploaded {
        Err(UploadError::Unfinished(_)) if produced.is_err() => None,
        Err(e) => return Err(e.into()),
        Ok(p) => Some(p),
    };
    let scanned = produced.map_err(BaseError::Stream)?;
    if let Err(e) = sealed {
        return Err(BaseError::Stream(format!("sealing: {e}")));
    }
    let parts = parts.ok_or_else(|| BaseError::Stream("the last part is unfinished".into()))?;
    Ok((scanned, parts))
}

/// Starts pg_basebackup writing the tar stream to its stdout, handed back as a plain
/// file because the reading stage is a blocking thread.
fn spawn_pg_basebackup(
    t: &Target,
    id: &str,
) -> Result<(Child, std::fs::File, ChildStderr), BaseError> {
    let mut cmd = t.programs.command(PROGRAM);
    cmd.arg("--dbname")
        .arg(t.settings.local_replication_conninfo("warden_backup"))
        .args([
            "--pgdata=-",
            "--format=tar",
            "--wal-method=none",
            "--checkpoint=fast",
            "--no-password",
        ])
        .arg(format!("--label=warden {id}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = &t.settings.replication.password {
        cmd.env("PGPASSWORD", p);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| BaseError::PgBasebackup(format!("could not start: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BaseError::PgBasebackup("no stdout".into()))?
        .into_owned_fd()
        .map_err(|e| BaseError::PgBasebackup(format!("stdout: {e}")))?;
    let stdout = std::fs::File::from(stdout);
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| BaseError::PgBasebackup("no stderr".into()))?;
    Ok((child, stdout, stderr))
}

/// Waits for every sealer and keeps the error that explains the failure.
async fn join_sealers(sealers: Vec<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let mut first_error = None;
    for h in sealers {
        let r = h
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("a sealer panicked: {e}"))));
        if let Err(e) = r {
            // A broken pipe is a consequence (the uploader stopped); keep the cause.
            if first_error
                .as_ref()
                .is_none_or(|f: &io::Error| f.kind() == io::ErrorKind::BrokenPipe)
            {
                first_error = Some(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// How the three stages and pg_basebackup ended.
struct StreamEnd {
    uploaded: Result<Vec<catalog::Part>, UploadError>,
    scanned: io::Result<Scanned>,
    sealed: io::Result<()>,
    /// Whether our side gave up (and so killed pg_basebackup).
    failed: bool,
    status: Result<io::Result<ExitStatus>, Elapsed>,
    /// The last lines pg_basebackup wrote to stderr.
    tail: String,
}

impl StreamEnd {
    /// One error for a failed backup, and the one closest to the cause: a stage that
    /// stopped because another did defers to that other, and a broken stream to what
    /// pg_basebackup said.
    fn verdict(self, child: &mut Child) -> Result<(Scanned, Vec<catalog::Part>), BaseError> {
        let StreamEnd {
            uploaded,
            scanned,
            sealed,
            failed,
            status,
            tail,
        } = self;
        let parts = match uploaded {
            // The stream broke mid-part: the reader's error (below) says why.
            Err(UploadError::Unfinished(_)) if scanned.is_err() => None,
            Err(e) => return Err(e.into()),
            Ok(p) => Some(p),
        };
        match &sealed {
            // The reading side stopped first: its error (below) says why.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(BaseError::Stream(format!("sealing: {e}"))),
            Ok(()) => {}
        }
        let exited_ok = matches!(&status, Ok(Ok(s)) if s.success());
        let scanned = match scanned {
            Err(e) if !failed || exited_ok => return Err(BaseError::Stream(e.to_string())),
            // A broken stream is most often pg_basebackup failing: say why it did.
            Err(e) if tail.is_empty() => {
                return Err(BaseError::PgBasebackup(format!("the stream broke: {e}")))
            }
            Err(_) => return Err(BaseError::PgBasebackup(tail)),
            Ok(scanned) => scanned,
        };
        let parts = parts.ok_or_else(|| BaseError::Stream("the last part is unfinished".into()))?;
        match status {
            Ok(Ok(s)) if s.success() => Ok((scanned, parts)),
            Ok(Ok(s)) => Err(BaseError::PgBasebackup(format!("{s}: {tail}"))),
            Ok(Err(e)) => Err(BaseError::PgBasebackup(e.to_string())),
            Err(_) => {
                let _ = child.start_kill();
                Err(BaseError::PgBasebackup(format!(
                    "did not exit within {EXIT_TIMEOUT:?} after its stream ended"
                )))
            }
        }
    }
}

/// Waits until every segment in `segments` is in the repository, asking the primary
/// to finish its current segment meanwhile (a replica's last segment completes only
/// when the primary switches).
async fn wait_for_wal(
    t: &Target,
    facts: ServerFacts,
    segments: &[String],
    cancel: &CancellationToken,
) -> Result<(), BaseError> {
    let started = Instant::now();
    let deadline = started + t.wal_wait_timeout;
    let mut next_switch = started;
    let mut found = 0usize;
    loop {
        // Segments arrive in order: look only from the first missing one.
        while let Some(seg) = segments.get(found) {
            let name = WalName::parse(seg).map_err(|e| BaseError::Manifest(e.to_string()))?;
            if t.catalog.repo.exists(&t.catalog.layout.wal(&name)).await? {
                found += 1;
            } else {
                break;
            }
        }
        let Some(missing) = segments.get(found) else {
            tracing::info!(
                segments = segments.len(),
                "the WAL the backup needs is archived"
            );
            return Ok(());
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(BaseError::WalMissing {
                segment: missing.clone(),
                first: segments.first().cloned().unwrap_or_default(),
                needed: segments.len(),
                waited: t.wal_wait_timeout,
            });
        }
        if now >= next_switch {
            switch_wal(t, facts.in_recovery).await;
            next_switch = now + SWITCH_EVERY;
        }
        let poll = if now - started < WAL_POLL_FAST_FOR {
            WAL_POLL_FAST
        } else {
            WAL_POLL
        };
        tokio::select! {
            () = tokio::time::sleep(poll.min(deadline - now)) => {}
            () = cancel.cancelled() => return Err(BaseError::Cancelled),
        }
    }
}

/// `pg_switch_wal()` on the primary: ourselves, or the leader from the DCS view.
/// Failures are only logged: the wait's deadline reports what is still missing.
async fn switch_wal(t: &Target, in_recovery: bool) {
    let conn = if in_recovery {
        match t.view.leader_address() {
            Some((host, port)) => t.settings.remote_conn_string(&host, port),
            None => {
                tracing::warn!("no leader to ask for a WAL switch; waiting for WAL anyway");
                return;
            }
        }
    } else {
        t.settings.local_conn_string()
    };
    let mut sql = Sql::new(conn, SQL_TIMEOUT);
    match sql.execute("SELECT pg_switch_wal()").await {
        Ok(()) => tracing::debug!("asked the primary to switch WAL"),
        Err(e) => tracing::warn!(error = %e, "cannot ask the primary to switch WAL"),
    }
}

/// Deletes what a failed backup left (best effort: retention removes the rest).
async fn remove_leftovers(t: &Target, dir: &str) {
    match t.catalog.repo.list(dir).await {
        Ok(objects) => {
            for o in objects {
                if let Err(e) = t.catalog.repo.delete(&o.path).await {
                    tracing::warn!(path = o.path, error = %e, "cannot delete a failed backup's object");
                }
            }
        }
        Err(e) => tracing::warn!(dir, error = %e, "cannot list a failed backup's objects"),
    }
}
