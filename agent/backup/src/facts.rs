//! Cluster-wide backup facts for `/metrics`: the newest committed backup and dump,
//! the newest drill result, read from the repository's catalog by a background task
//! every [`REFRESH_EVERY`] (and right after a local backup), never on the request
//! path: a scrape reads the last snapshot. Local events (a backup job failing here)
//! are recorded directly.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::catalog::Catalog;

/// How often the catalog is re-read.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The newest drill result.
#[derive(Debug, Clone, PartialEq)]
pub struct Drill {
    pub ok: bool,
    pub finished_at: DateTime<Utc>,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Finish time of the newest committed base backup.
    pub last_backup: Option<DateTime<Utc>>,
    /// Finish time of the newest committed dump.
    pub last_dump: Option<DateTime<Utc>>,
    /// When a backup (or dump) job last failed on this member.
    pub last_failure: Option<DateTime<Utc>>,
    pub drill: Option<Drill>,
    /// When the catalog was last read successfully.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// The last read failed (the values above may be stale).
    pub refresh_error: bool,
}

static FACTS: Mutex<Option<Facts>> = Mutex::new(None);
static REFRESHER: OnceLock<tokio::sync::Notify> = OnceLock::new();

fn lock() -> std::sync::MutexGuard<'static, Option<Facts>> {
    FACTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The last snapshot (what `/metrics` shows).
pub fn snapshot() -> Facts {
    lock().clone().unwrap_or_default()
}

/// A backup or dump job failed here.
pub fn job_failed(at: DateTime<Utc>) {
    lock().get_or_insert_with(Facts::default).last_failure = Some(at);
}

/// A backup or dump job committed here: re-read the catalog now.
pub fn job_succeeded() {
    if let Some(n) = REFRESHER.get() {
        n.notify_one();
    }
}

/// Whether [`ensure_refresher`] ran in this process.
pub fn refresher_started() -> bool {
    REFRESHER.get().is_some()
}

/// Starts the background refresh once per process (later calls do nothing).
pub fn ensure_refresher(catalog: Catalog) {
    let mut started = false;
    REFRESHER.get_or_init(|| {
        started = true;
        tokio::sync::Notify::new()
    });
    if started {
        tokio::spawn(refresh_loop(catalog));
    }
}

async fn refresh_loop(catalog: Catalog) {
    let wake = REFRESHER.get().expect("set before the loop starts");
    loop {
        refresh(&catalog).await;
        tokio::select! {
            () = tokio::time::sleep(REFRESH_EVERY) => {}
            () = wake.notified() => {}
        }
    }
}

/// One read of the catalog into the snapshot. Each listing is bounded by the
/// repository's timeout; the whole read by a few of them.
pub async fn refresh(catalog: &Catalog) {
    let read = async {
        let backups = catalog.backups().await?;
        let dumps = catalog.dumps().await?;
        let drills = catalog.drills().await?;
        Ok::<_, super::catalog::CatalogError>((backups, dumps, drills))
    };
    let result = tokio::time::timeout(REFRESH_EVERY, read).await;
    let mut guard = lock();
    let facts = guard.get_or_insert_with(Facts::default);
    match result {
        Ok(Ok((backups, dumps, drills))) => {
            facts.last_backup = backups.iter().map(|b| b.finished_at).max();
            facts.last_dump = dumps.iter().map(|d| d.finished_at).max();
            facts.drill = drills.iter().max_by_key(|d| d.finished_at).map(|d| Drill {
                ok: d.ok,
                finished_at: d.finished_at,
                rto_seconds: d.rto_seconds,
                rpo_seconds: d.rpo_seconds,
            });
            facts.refreshed_at = Some(Utc::now());
            facts.refresh_error = false;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the backup catalog for metrics");
            facts.refresh_error = true;
        }
        Err(_) => {
            tracing::warn!("reading the backup catalog for metrics timed out");
            facts.refresh_error = true;
        }
    }
}
