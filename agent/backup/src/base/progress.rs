//! What a member's base backup is doing, shared between the running job, the
//! scheduler and the REST API (`GET /backup`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Where a running backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking the server, starting pg_basebackup.
    Starting,
    /// Streaming pg_basebackup's tar output into the repository.
    Streaming,
    /// pg_basebackup is done; waiting until the WAL the backup needs is archived.
    WaitingForWal,
    /// Writing the record.
    Committing,
}

/// How the last backup on this member ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub id: String,
    pub ok: bool,
    pub error: Option<String>,
    pub finished_at: DateTime<Utc>,
    pub seconds: f64,
    /// Plaintext bytes of the tar stream.
    pub bytes: u64,
    pub mb_per_s: f64,
    /// Seconds spent streaming pg_basebackup's output (the rest is the WAL wait and
    /// the commit), and the streaming rate.
    pub stream_seconds: Option<f64>,
    pub stream_mb_per_s: Option<f64>,
}

/// The running backup, if any.
#[derive(Debug)]
struct Running {
    id: String,
    trigger: String,
    phase: Phase,
    started: Instant,
    started_at: DateTime<Utc>,
    /// When streaming began and ended.
    stream_started: Option<Instant>,
    stream_seconds: Option<f64>,
}

#[derive(Debug, Default)]
struct Inner {
    running: Option<Running>,
    last: Option<Outcome>,
}

/// Shared progress. The byte counter is separate so the streaming thread bumps it
/// without a lock.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    inner: Arc<Mutex<Inner>>,
    bytes: Arc<AtomicU64>,
}

/// One consistent reading of [`Progress`], as `GET /backup` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub running: bool,
    pub id: Option<String>,
    /// `schedule` or `api`.
    pub trigger: Option<String>,
    pub phase: Option<Phase>,
    pub started_at: Option<DateTime<Utc>>,
    pub bytes: u64,
    pub elapsed_seconds: f64,
    pub mb_per_s: f64,
    pub last: Option<Outcome>,
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / 1_048_576.0 / seconds
    } else {
        0.0
    }
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims the single backup slot. `Err(id)`: a backup is already running.
    pub fn begin(&self, id: &str, trigger: &str) -> Result<(), String> {
        let mut g = self.lock();
        if let Some(r) = &g.running {
            return Err(r.id.clone());
        }
        self.bytes.store(0, Ordering::Relaxed);
        g.running = Some(Running {
            id: id.to_owned(),
            trigger: trigger.to_owned(),
            phase: Phase::Starting,
            started: Instant::now(),
            started_at: Utc::now(),
            stream_started: None,
            stream_seconds: None,
        });
        Ok(())
    }

    pub fn set_phase(&self, phase: Phase) {
        if let Some(r) = self.lock().running.as_mut() {
            match (r.phase, phase) {
                (Phase::Streaming, Phase::Streaming) => {}
                (_, Phase::Streaming) => r.stream_started = Some(Instant::now()),
                (Phase::Streaming, _) => {
                    r.stream_seconds = r.stream_started.map(|t| t.elapsed().as_secs_f64());
                }
                _ => {}
            }
            r.phase = phase;
        }
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter handle for the streaming thread.
    pub fn byte_counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }

    /// Ends the running backup with `error` (`None`: committed).
    pub fn end(&self, error: Option<String>) -> Option<Outcome> {
        let mut g = self.lock();
        let r = g.running.take()?;
        let seconds = r.started.elapsed().as_secs_f64();
        let bytes = self.bytes.load(Ordering::Relaxed);
        let stream_seconds = r.stream_seconds;
        let outcome = Outcome {
            id: r.id,
            ok: error.is_none(),
            error,
            finished_at: Utc::now(),
            seconds,
            bytes,
            mb_per_s: mb_per_s(bytes, seconds),
            stream_seconds,
            stream_mb_per_s: stream_seconds.map(|s| mb_per_s(bytes, s)),
        };
        g.last = Some(outcome.clone());
        Some(outcome)
    }

    pub fn running_id(&self) -> Option<String> {
        self.lock().running.as_ref().map(|r| r.id.clone())
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let bytes = self.bytes.load(Ordering::Relaxed);
        match &g.running {
            Some(r) => {
                let elapsed = r.started.elapsed().as_secs_f64();
                Snapshot {
                    running: true,
                    id: Some(r.id.clone()),
                    trigger: Some(r.trigger.clone()),
                    phase: Some(r.phase),
                    started_at: Some(r.started_at),
                    bytes,
                    elapsed_seconds: elapsed,
                    mb_per_s: mb_per_s(bytes, elapsed),
                    last: g.last.clone(),
                }
            }
            None => Snapshot {
                running: false,
                id: None,
                trigger: None,
                phase: None,
                started_at: None,
                bytes: 0,
                elapsed_seconds: 0.0,
                mb_per_s: 0.0,
                last: g.last.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_backup_at_a_time_and_the_outcome_is_kept() {
        let p = Progress::default();
        p.begin("a", "api").unwrap();
        assert_eq!(p.begin("b", "schedule"), Err("a".to_string()));
        p.set_phase(Phase::Streaming);
        p.add_bytes(2 * 1_048_576);
        p.set_phase(Phase::WaitingForWal);
        let s = p.snapshot();
        assert!(s.running);
        assert_eq!(s.phase, Some(Phase::WaitingForWal));
        assert_eq!(s.bytes, 2 * 1_048_576);
        let out = p.end(Some("boom".into())).unwrap();
        assert!(!out.ok);
        assert_eq!(out.bytes, 2 * 1_048_576);
        assert!(out.stream_seconds.is_some_and(|s| s <= out.seconds));
        let s = p.snapshot();
        assert!(!s.running);
        assert_eq!(s.last.unwrap().error.as_deref(), Some("boom"));
        p.begin("b", "schedule").unwrap();
        assert_eq!(p.snapshot().bytes, 0, "the counter restarts");
    }
}
