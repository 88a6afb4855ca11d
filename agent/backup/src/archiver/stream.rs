//! The archiver's worker: a supervised `pg_receivewal` streaming into a spool
//! directory, and an uploader moving what it completed into the repository.
//!
//! Gap-free hand-over: when the spool holds nothing to resume from (a member that just
//! became the archiver), the newest complete segment in the repository is fetched into
//! it first. `pg_receivewal` resumes after the newest segment it finds, so it streams
//! from exactly the segment after the last archived one, on that segment's timeline,
//! following any later timeline switch the server reports.
//!
//! Files leave the spool only after a completed upload (see `spool.rs` for which file
//! stays as the resume point). An upload that finds the same name with different
//! content is a hard error: logged loudly, never overwritten, retried (so it stays
//! visible) while nothing after it is uploaded out of order.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncBufReadExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::spool;
use crate::wal::{Archive, PushError};
use warden_pg::receivewal::ReceiveWal;

/// How often the spool is looked at for completed files.
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// `pg_receivewal --create-slot` is one short command.
const SLOT_TIMEOUT: Duration = Duration::from_secs(15);
/// Restart backoff: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// A run this long counts as healthy and resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// After this many failed starts in a row the worker reports itself failed, and the
/// member gives the archiver key up so another member can try.
pub const MAX_FAILURES: u32 = 5;
/// Longest stderr line forwarded to the log.
const LINE_MAX: usize = 512;
/// Bound on the last uploads after a stop (the child is killed at once).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the worker reports (the REST API and metrics read it).
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Last segment (or final `.partial`) uploaded and when.
    pub last_uploaded: Option<(String, SystemTime)>,
    /// The LSN just past the last complete segment uploaded.
    pub archived_lsn: Option<u64>,
    /// Failed starts or runs of `pg_receivewal` in a row.
    pub failures: u32,
    pub last_error: Option<String>,
    /// Last upload of the live `.partial` (see `wal_live`) and when.
    pub last_live_upload: Option<(String, SystemTime)>,
}

/// A running worker. Dropping it leaves the task running: always [`Streamer::stop`] it.
#[derive(Debug)]
pub struct Streamer {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    status: Arc<Mutex<Status>>,
}

impl Streamer {
    /// `live_every`: how often the segment still being received is uploaded as its
    /// live copy (`None`: only complete segments).
    pub fn start(archive: Archive, receiver: ReceiveWal, live_every: Option<Duration>) -> Self {
        let cancel = CancellationToken::new();
        let status = Arc::new(Mutex::new(Status::default()));
        let worker = Worker {
            archive,
            receiver,
            status: status.clone(),
            uploaded: HashSet::new(),
            live_every,
            live: None,
        };
        let task = tokio::spawn(worker.run(cancel.clone()));
        Self {
            cancel,
            task,
            status,
        }
    }

    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// `pg_receivewal` cannot be kept running: give the role to someone else.
    pub fn failed(&self) -> bool {
        lock(&self.status).failures >= MAX_FAILURES
    }

    /// Stops `pg_receivewal` at once and lets the last uploads finish in the
    /// background, bounded by [`STOP_TIMEOUT`]. It does not wait: the HA loop calls it
    /// and must not stall behind the repository (a leader still renews its lease). A
    /// next archiver racing those uploads is harmless: identical content is success.
    pub fn stop(self) {
        self.cancel.cancel();
        let abort = self.task.abort_handle();
        tokio::spawn(async move {
            if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
                tracing::warn!(
                    "the archiver's last uploads did not finish in time; abandoning them"
                );
                abort.abort();
            }
        });
    }
}

fn lock(m: &Mutex<Status>) -> std::sync::MutexGuard<'_, Status> {
    // A panic while holding the lock leaves a status that is still worth reading.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Worker {
    archive: Archive,
    receiver: ReceiveWal,
    status: Arc<Mutex<Status>>,
    /// In the repository but still in the spool (kept as the resume point).
    uploaded: HashSet<String>,
    live_every: Option<Duration>,
    /// The live `.partial` last uploaded (name and modification time) and when we
    /// started reading it, so an unchanged file is not uploaded again.
    live: Option<LiveStamp>,
}

impl Worker {
    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = BACKOFF_FIRST;
        tracing::info!(spool = %self.receiver.spool().display(), slot = self.receiver.slot(), "archiver starting");
        while !cancel.is_cancelled() {
            let started = tokio::time::Instant::now();
            let outcome = self.stream_once(&cancel).await;
            if cancel.is_cancelled() {
                break;
            }
            if started.elapsed() >= HEALTHY_RUN {
                backoff = BACKOFF_FIRST;
                lock(&self.status).failures = 0;
            }
            let why = match outcome {
                Ok(()) => "pg_receivewal exited".to_string(),
                Err(e) => e,
            };
            let failures = {
                let mut s = lock(&self.status);
                s.failures += 1;
                s.last_error = Some(why.clone());
                s.failures
            };
            tracing::warn!(error = %why, failures, retry_in = ?backoff, "archiver: streaming stopped");
            if failures == MAX_FAILURES {
                crate::notify::alert(
                    crate::notify::Kind::Archive,
                    &format!("WAL streaming failed {failures} times in a row; giving the archiver role up: {why}"),
                );
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        // What pg_receivewal completed before it stopped still goes up.
        self.upload_ready().await;
        tracing::info!("archiver stopped");
    }

    /// Prepares the spool and slot, then runs `pg_receivewal` until it exits or we
    /// are cancelled, uploading as segments complete.
    async fn stream_once(&mut self, cancel: &CancellationToken) -> Result<(), String> {
        self.receiver
            .prepare_spool()
            .map_err(|e| format!("spool {}: {e}", self.receiver.spool().display()))?;
        self.receiver
            .create_slot(SLOT_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        self.seed().await?;
        self.skip_ended_timeline()?;
        let mut child = self.receiver.spawn().map_err(|e| e.to_string())?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_stderr(stderr));
        }
        // Intervals, not a sleep per pass: a sleep re-created on every select! would
        // never fire while the (shorter) live tick keeps winning.
        let mut scan_tick = tokio::time::interval(SCAN_EVERY);
        scan_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A disabled live upload still needs a timer for select!; its branch is off.
        let mut live_tick =
            tokio::time::interval(self.live_every.unwrap_or(Duration::from_secs(3600)));
        live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = live_tick.tick(), if self.live_every.is_some() => {
                    self.upload_live().await;
                }
                () = cancel.cancelled() => {
                    // The data it wrote is fsynced (--synchronous); a kill loses nothing
                    // the slot was told about.
                    let _ = child.kill().await;
                    return Ok(());
                }
                status = child.wait() => {
                    self.upload_ready().await;
                    return match status {
                        Ok(s) => Err(format!("pg_receivewal exited ({s})")),
                        Err(e) => Err(format!("pg_receivewal: {e}")),
                    };
                }
                _ = scan_tick.tick() => {
                    if self.upload_ready().await {
                        // Uploads are flowing: the stream is healthy.
                        lock(&self.status).failures = 0;
                    }
                }
            }
        }
    }

    /// With nothing to resume from in the spool, fetches the repository's newest
    /// complete segment so streaming continues right after it.
    async fn seed(&mut self) -> Result<(), String> {
        let names = spool_names(self.receiver.spool())?;
        if spool::has_start(&names) {
            return Ok(());
        }
        let root = self.archive.layout.wal_root();
        let objects = self
            .archive
            .repo
            .list(&root)
            .await
            .map_err(|e| format!("listing the archive: {e}"))?;
        let newest =
            spool::newest_segment(objects.iter().filter_map(|o| o.path.rsplit('/').next()));
        let Some(name) = newest else {
            tracing::info!("the archive is empty: streaming from the server's current position");
            return Ok(());
        };
        let dest = self.receiver.spool().join(&name);
        self.archive
            .fetch(&name, &dest)
            .await
            .map_err(|e| format!("fetching the resume point {name}: {e}"))?;
        tracing::info!(segment = %name, "resuming the archive after its newest segment");
        self.uploaded.insert(name);
        Ok(())
    }

    /// See [`spool::resume_on_next_timeline`].
    fn skip_ended_timeline(&self) -> Result<(), String> {
        let dir = self.receiver.spool();
        let files: Vec<(String, u64)> = spool_names(dir)?
            .into_iter()
            .map(|n| {
                let size = std::fs::metadata(dir.join(&n)).map_or(0, |m| m.len());
                (n, size)
            })
            .collect();
        let switches = self.receiver.timeline_switches();
        if let Some(name) = spool::resume_on_next_timeline(&files, &switches) {
            let path = dir.join(&name);
            std::fs::File::create(&path)
                .and_then(|_| warden_pg::runas::chown(&path, self.receiver.run_as()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!(file = %name, "the spool's timeline ended where streaming resumes; starting on the next timeline");
        }
        Ok(())
    }

    /// One pass over the spool. Returns whether anything was uploaded.
    async fn upload_ready(&mut self) -> bool {
        let spool_dir = self.receiver.spool().to_owned();
        let names = match spool_names(&spool_dir) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "archiver: cannot read the spool");
                return false;
            }
        };
        let mut any = false;
        for ready in spool::plan(&names) {
            let path = spool_dir.join(&ready.name);
            if !self.uploaded.contains(&ready.name) {
                match self.archive.push(&path).await {
                    Ok(_) => {
                        any = true;
                        self.uploaded.insert(ready.name.clone());
                        self.record_upload(&ready.name, &path);
                        self.drop_live(&ready.name).await;
                    }
                    Err(e) => {
                        if matches!(e, PushError::Conflict { .. }) {
                            tracing::error!(error = %e, "ARCHIVE CONFLICT: a different file of this name is already archived; not overwriting, archiving is stuck until an operator looks");
                            crate::notify::alert(crate::notify::Kind::Archive, &e.to_string());
                        } else {
                            tracing::warn!(error = %e, "archiver: upload failed; retrying");
                        }
                        lock(&self.status).last_error = Some(e.to_string());
                        // Nothing after it goes up first: the archive stays gap-free.
                        return any;
                    }
                }
            }
            if ready.delete {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        self.uploaded.remove(&ready.name);
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "archiver: cannot remove an uploaded file")
                    }
                }
            }
        }
        any
    }

    /// Uploads the segment `pg_receivewal` is writing, if it changed since last time.
    /// Failures are logged and retried at the next tick: the complete segment still
    /// goes up through the normal path.
    async fn upload_live(&mut self) {
        let dir = self.receiver.spool().to_owned();
        let Ok(names) = spool_names(&dir) else { return };
        let Some(name) = spool::live_partial(&names) else {
            return;
        };
        let path = dir.join(&name);
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        let stamp = LiveStamp {
            name: name.clone(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            read_at: SystemTime::now(),
        };
        if self.live.as_ref().is_some_and(|last| last.covers(&stamp)) {
            return;
        }
        match self.archive.push_live(&path).await {
            Ok(_) => {
                self.live = Some(stamp);
                lock(&self.status).last_live_upload = Some((name, SystemTime::now()));
            }
            Err(e) => tracing::warn!(error = %e, "archiver: live partial upload failed; retrying"),
        }
    }

    /// The live copy of a segment just archived is obsolete.
    async fn drop_live(&mut self, archived: &str) {
        let Ok(name) = crate::layout::WalName::parse(archived) else {
            return;
        };
        if let Err(e) = self.archive.drop_live(&name).await {
            tracing::warn!(segment = archived, error = %e, "archiver: cannot delete the obsolete live copy");
        }
    }

    fn record_upload(&self, name: &str, path: &Path) {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut s = lock(&self.status);
        s.last_uploaded = Some((name.to_owned(), SystemTime::now()));
        if let Some(end) = spool::end_lsn(name, size) {
            s.archived_lsn = Some(s.archived_lsn.map_or(end, |a| a.max(end)));
        }
        s.last_error = None;
    }
}

/// When the live file was read, to tell whether a later look at it can skip it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveStamp {
    name: String,
    modified: SystemTime,
    read_at: SystemTime,
}

/// File timestamps are coarse (a kernel tick): a write just after our read can keep
/// the same mtime. Only a file whose mtime is well before the last read is known to
/// be fully uploaded.
const MTIME_SLACK: Duration = Duration::from_millis(100);

impl LiveStamp {
    /// Whether the upload that read `self` already holds everything `now` would.
    fn covers(&self, now: &LiveStamp) -> bool {
        self.name == now.name
            && self.modified == now.modified
            && self.modified + MTIME_SLACK < self.read_at
    }
}

fn spool_names(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// `pg_receivewal --verbose` reports each finished segment and timeline switch.
async fn forward_stderr(stderr: tokio::process::ChildStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(mut line)) = lines.next_line().await {
        if line.len() > LINE_MAX {
            let mut cut = LINE_MAX;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        tracing::info!(target: "pg_receivewal", "{line}");
    }
}
