//! At most one dump at a time per member, started by the schedule or on demand
//! (`POST /backup {"kind": "dump"}`), with its state for `GET /backup`.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::task::JoinHandle;

use super::DumpJob;
use crate::catalog::{self, DumpRecord};
use crate::{facts, notify};

/// How the last dump on this member ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub ok: bool,
    pub error: Option<String>,
    pub finished_at: DateTime<Utc>,
    pub databases: Vec<String>,
    pub toc_entries: u64,
}

/// What `GET /backup` shows under `dump`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct State {
    pub running: Option<String>,
    pub last: Option<Outcome>,
}

static STATE: Mutex<State> = Mutex::new(State {
    running: None,
    last: None,
});

fn lock() -> std::sync::MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn state() -> State {
    lock().clone()
}

/// Starts `job` in the background unless a dump is running (`Err(its id)`). `after`
/// runs after a committed dump (the retention prune, for scheduled dumps).
pub fn start<F, Fut>(
    job: DumpJob,
    trigger: &str,
    after: F,
) -> Result<(String, JoinHandle<Result<DumpRecord, String>>), String>
where
    F: FnOnce(DumpRecord) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let id = {
        let mut s = lock();
        if let Some(running) = &s.running {
            return Err(running.clone());
        }
        let mut id = catalog::id_at(Utc::now());
        // Two dumps in the same second would share a directory.
        if s.last.as_ref().is_some_and(|l| l.id >= id) {
            id = catalog::id_at(Utc::now() + chrono::Duration::seconds(1));
        }
        s.running = Some(id.clone());
        id
    };
    tracing::info!(id, trigger, "logical dump started");
    let job_id = id.clone();
    let handle = tokio::spawn(async move {
        let result = job.run_as(&job_id).await;
        let outcome = match &result {
            Ok(r) => Outcome {
                id: job_id.clone(),
                ok: true,
                error: None,
                finished_at: r.finished_at,
                databases: r.databases.iter().map(|d| d.name.clone()).collect(),
                toc_entries: r.databases.iter().map(|d| d.toc_entries).sum(),
            },
            Err(e) => Outcome {
                id: job_id.clone(),
                ok: false,
                error: Some(e.to_string()),
                finished_at: Utc::now(),
                databases: vec![],
                toc_entries: 0,
            },
        };
        {
            let mut s = lock();
            s.running = None;
            s.last = Some(outcome);
        }
        match result {
            Ok(record) => {
                facts::job_succeeded();
                after(record.clone()).await;
                Ok(record)
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(id = job_id, error = %msg, "logical dump failed");
                facts::job_failed(Utc::now());
                notify::alert(notify::Kind::Dump, &format!("dump {job_id}: {msg}"));
                Err(msg)
            }
        }
    });
    Ok((id, handle))
}
