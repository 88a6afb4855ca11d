//! The agent's RDB snapshot service: one snapshot at a time on this member, started by
//! the schedule or `POST /backup`, its progress and last outcome for `GET /backup`
//! (the shape the base backups' status has, so `wardenctl backup create` follows
//! either).
//!
//! The catalog is known only once the cluster identity is (the marker's `cluster`,
//! reported by the loop): until then a start is refused.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::RdbJob;
use crate::catalog::{self, Catalog, RdbRecord};
use warden_redis::rdb::FetchOptions;

/// Why a snapshot did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("snapshot {0} is already running")]
    Busy(String),
    #[error("snapshot {0} was taken within this second; try again in a second")]
    SameSecond(String),
    #[error("{0}")]
    Setup(String),
}

/// How a snapshot ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: String,
    pub kind: &'static str,
    pub trigger: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RDB bytes (plaintext).
    pub bytes: u64,
    pub stored_bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Running {
    id: String,
    trigger: String,
    started: Instant,
}

#[derive(Debug, Default)]
struct State {
    catalog: Option<Catalog>,
    compression_level: Option<i32>,
    running: Option<Running>,
    last: Option<Outcome>,
}

/// Snapshots of the local server (the member holding the snapshot role).
#[derive(Debug)]
pub struct RdbService {
    member: String,
    fetch: FetchOptions,
    state: Mutex<State>,
}

impl RdbService {
    pub fn new(member: impl Into<String>, fetch: FetchOptions) -> Arc<Self> {
        Arc::new(Self {
            member: member.into(),
            fetch,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    /// The repository, key and layout (set when the identity is known) and the zstd
    /// level (`backup.compression_level`; set again on a reload).
    pub fn set_catalog(&self, catalog: Catalog, compression_level: i32) {
        let mut s = self.lock();
        s.catalog = Some(catalog);
        s.compression_level = Some(compression_level);
    }

    pub fn catalog(&self) -> Option<Catalog> {
        self.lock().catalog.clone()
    }

    /// Starts a snapshot in its own task; its id and the task (the committed record,
    /// or the error as text).
    pub fn start(
        self: &Arc<Self>,
        trigger: &str,
    ) -> Result<(String, JoinHandle<Result<RdbRecord, String>>), StartError> {
        let (job, id) = {
            let mut s = self.lock();
            if let Some(r) = &s.running {
                return Err(StartError::Busy(r.id.clone()));
            }
            let Some(catalog) = s.catalog.clone() else {
                return Err(StartError::Setup(
                    "the cluster identity (the marker's cluster, the DCS initialize value) \
                     is not known yet"
                        .into(),
                ));
            };
            let mut id = catalog::id_at(Utc::now());
            // Ids are per second: a second snapshot within the same second of the last
            // one waits for the next id rather than overwriting its directory.
            if s.last.as_ref().is_some_and(|l| l.id >= id) {
                return Err(StartError::SameSecond(id));
            }
            let mut job = RdbJob::new(catalog, self.fetch.clone(), self.member.clone());
            if let Some(level) = s.compression_level {
                job.compression_level = level;
            }
            s.running = Some(Running {
                id: id.clone(),
                trigger: trigger.to_owned(),
                started: Instant::now(),
            });
            (job, std::mem::take(&mut id))
        };
        let me = self.clone();
        let trigger = trigger.to_owned();
        let task_id = id.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let result = job.run_as(&task_id).await;
            let seconds = started.elapsed().as_secs_f64();
            let outcome = match &result {
                Ok(r) => Outcome {
                    id: task_id.clone(),
                    kind: "rdb",
                    trigger,
                    ok: true,
                    error: None,
                    bytes: r.size,
                    stored_bytes: r.stored_size,
                    seconds,
                    mb_per_s: r.size as f64 / 1e6 / seconds.max(1e-3),
                    finished_at: Utc::now(),
                },
                Err(e) => Outcome {
                    id: task_id.clone(),
                    kind: "rdb",
                    trigger,
                    ok: false,
                    error: Some(e.to_string()),
                    bytes: 0,
                    stored_bytes: 0,
                    seconds,
                    mb_per_s: 0.0,
                    finished_at: Utc::now(),
                },
            };
            match &result {
                Ok(_) => crate::facts::job_succeeded(),
                Err(e) => {
                    tracing::error!(snapshot = %task_id, error = %e, "RDB snapshot failed");
                    crate::facts::job_failed(outcome.finished_at);
                    crate::notify::alert(
                        crate::notify::Kind::Backup,
                        &format!("RDB snapshot {task_id} on {}: {e}", me.member),
                    );
                }
            }
            let mut s = me.lock();
            s.running = None;
            s.last = Some(outcome);
            drop(s);
            result.map_err(|e| e.to_string())
        });
        Ok((id, task))
    }

    /// `GET /backup`'s body: the running snapshot (`id`, `phase`, `elapsed_seconds`)
    /// and the `last` outcome.
    pub fn progress(&self) -> serde_json::Value {
        let s = self.lock();
        let mut v = serde_json::json!({
            "kind": "rdb",
            "id": null,
            "last": s.last,
        });
        if let Some(r) = &s.running {
            v["id"] = r.id.clone().into();
            v["trigger"] = r.trigger.clone().into();
            v["phase"] = "fetching and sealing".into();
            v["elapsed_seconds"] = r.started.elapsed().as_secs_f64().into();
            v["bytes"] = 0.into();
            v["mb_per_s"] = 0.0.into();
        }
        v
    }
}
