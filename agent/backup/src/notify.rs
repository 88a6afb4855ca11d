//! Failure notifications: Slack-compatible JSON (`{"text": ...}`) POSTed to
//! `backup.webhook_url` when a backup, dump, drill or the WAL archive fails.
//!
//! The agent installs one process-wide [`Notifier`] at start ([`install`]); the code
//! that notices a failure calls [`alert`], which never blocks: events go into a
//! bounded queue (the oldest is dropped when it is full, and counted), and one worker
//! task sends them, each POST bounded by [`POST_TIMEOUT`] and retried a few times.
//! The same text is sent at most once per [`REPEAT_AFTER`], so a failure that repeats
//! every few seconds (a stuck upload) does not flood the channel.
//!
//! The URL carries a token (Slack's do), so it is never logged: errors are logged
//! without it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use warden_config::Secret;

/// Events waiting to be sent.
pub const QUEUE_CAPACITY: usize = 16;
/// Bound on one POST (connect, send, answer).
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per event, and the pause after the first failed one (doubling).
pub const ATTEMPTS: u32 = 3;
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The same text again within this window is not sent again.
pub const REPEAT_AFTER: Duration = Duration::from_secs(600);
/// Texts remembered for [`REPEAT_AFTER`]; beyond this the oldest are forgotten.
const REMEMBERED: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Backup,
    Dump,
    Archive,
    Drill,
    /// A repository copy (`backup.copies`) behind, failing, or recovered.
    Copy,
    /// A DR objective (`backup.objectives`) violated, or met again.
    Objective,
    /// A `backup.jobs` run.
    Job,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Dump => "dump",
            Kind::Archive => "archive",
            Kind::Drill => "drill",
            Kind::Copy => "copy",
            Kind::Objective => "objective",
            Kind::Job => "job",
        }
    }
}

/// One notification as sent: Slack reads `text`; `warden` carries the same facts for
/// other receivers.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub text: String,
    pub warden: Details,
}

#[derive(Debug, Clone, Serialize)]
pub struct Details {
    pub kind: Kind,
    pub scope: String,
    pub member: String,
    pub at: DateTime<Utc>,
    pub message: String,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub suppressed: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    scope: String,
    member: String,
    queue: Mutex<VecDeque<Payload>>,
    recent: Mutex<HashMap<String, Instant>>,
    wake: tokio::sync::Notify,
    counters: Counters,
}

/// Handle to the queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Notifier {
    /// Starts the sender task (on the current runtime) for `url`.
    pub fn start(url: Secret, scope: &str, member: &str) -> Self {
        let n = Self {
            inner: Arc::new(Inner {
                scope: scope.to_owned(),
                member: member.to_owned(),
                queue: Mutex::new(VecDeque::with_capacity(QUEUE_CAPACITY)),
                recent: Mutex::new(HashMap::new()),
                wake: tokio::sync::Notify::new(),
                counters: Counters::default(),
            }),
        };
        tokio::spawn(n.clone().send_loop(url));
        n
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Queues a notification; never blocks.
    pub fn alert(&self, kind: Kind, message: &str) {
        self.notify(kind, "failed", message);
    }

    /// Queues the notice that something alerted about is well again.
    pub fn recovered(&self, kind: Kind, message: &str) {
        self.notify(kind, "recovered", message);
    }

    fn notify(&self, kind: Kind, what: &str, message: &str) {
        let text = format!(
            "warden {}/{}: {} {what}: {message}",
            self.inner.scope,
            self.inner.member,
            kind.as_str()
        );
        {
            let mut recent = lock(&self.inner.recent);
            let now = Instant::now();
            if recent
                .get(&text)
                .is_some_and(|t| now.duration_since(*t) < REPEAT_AFTER)
            {
                self.inner
                    .counters
                    .suppressed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            recent.retain(|_, t| now.duration_since(*t) < REPEAT_AFTER);
            if recent.len() >= REMEMBERED {
                if let Some(oldest) = recent
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
                {
                    recent.remove(&oldest);
                }
            }
            recent.insert(text.clone(), now);
        }
        let payload = Payload {
            text,
            warden: Details {
                kind,
                scope: self.inner.scope.clone(),
                member: self.inner.member.clone(),
                at: Utc::now(),
                message: message.to_owned(),
            },
        };
        {
            let mut q = lock(&self.inner.queue);
            if q.len() >= QUEUE_CAPACITY {
                q.pop_front();
                self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("webhook queue full; dropped the oldest notification");
            }
            q.push_back(payload);
        }
        self.inner.wake.notify_one();
    }

    async fn send_loop(self, url: Secret) {
        let client = match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e.without_url(), "cannot build the webhook client; notifications are off");
                return;
            }
        };
        loop {
            let next = lock(&self.inner.queue).pop_front();
            let Some(payload) = next else {
                self.inner.wake.notified().await;
                continue;
            };
            if send(&client, &url, &payload).await {
                self.inner.counters.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                self.inner.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// POSTs with retries; `true` once the receiver answered 2xx.
async fn send(client: &reqwest::Client, url: &Secret, payload: &Payload) -> bool {
    let body = match serde_json::to_vec(payload) {
        Ok(b) => b,
        Err(_) => return false,
    };
    let mut pause = RETRY_FIRST;
    for attempt in 1..=ATTEMPTS {
        let result = client
            .post(&url.0)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => return true,
            // The URL is a secret: only the status is logged.
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                attempt,
                "webhook refused the notification"
            ),
            Err(e) => tracing::warn!(error = %e.without_url(), attempt, "webhook POST failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    false
}

static GLOBAL: OnceLock<Notifier> = OnceLock::new();

/// Installs the process-wide notifier (the agent, once, when `backup.webhook_url` is
/// set). Later calls are ignored.
pub fn install(url: Secret, scope: &str, member: &str) {
    let _ = GLOBAL.get_or_init(|| Notifier::start(url, scope, member));
}

/// The installed notifier, if any (for metrics).
pub fn installed() -> Option<&'static Notifier> {
    GLOBAL.get()
}

/// Notifies about a failure if a webhook is configured; logs nothing about the URL.
pub fn alert(kind: Kind, message: &str) {
    if let Some(n) = GLOBAL.get() {
        n.alert(kind, message);
    }
}

/// Notifies that a failure alerted about is over (a copy caught up).
pub fn recovered(kind: Kind, message: &str) {
    if let Some(n) = GLOBAL.get() {
        n.recovered(kind, message);
    }
}

#[cfg(test)]
mod tests;
