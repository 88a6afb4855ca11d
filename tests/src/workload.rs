//! A write workload on its own thread: inserts unique ids one by one into a
//! table on one port (a node directly, or HAProxy's write port) and records
//! every outcome with its time, so tests can tell exactly when writes stopped
//! being acknowledged and which acknowledged ids a failover lost.
//!
//! Each attempt uses a fresh id; an attempt that fails is never retried with
//! the same id (its commit is ambiguous). After an error the connection is
//! dropped and re-established; connects and statements have short bounds, and
//! the log is shared, so even a writer stuck in a read cannot hold up a test:
//! [`Writer::stop`] gives up waiting after a bound and returns what it has.
//!
//! A commit whose wait for a synchronous standby was cancelled (a cancel
//! request; `statement_timeout` does not cover the commit's wait) returns
//! success with a warning, although no standby may have it; such an insert
//! is recorded as a failure, never as an acknowledgement, so
//! synchronous-mode tests count only durable writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postgres::NoTls;

use crate::config::{SUPERUSER, SUPERUSER_PASSWORD};
use crate::sql;

/// How the writer connects and paces itself.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub connect_timeout: Duration,
    /// Server-side bound of each insert.
    pub statement_timeout: Duration,
    /// Pause after a failed attempt (pacing of reconnects, not
    /// synchronisation).
    pub pause_after_error: Duration,
    /// Pause after each acknowledged write (`ZERO`: back to back).
    pub pause_after_ack: Duration,
    /// First id; ids increase by one per attempt.
    pub first_id: i64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            connect_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(2),
            pause_after_error: Duration::from_millis(20),
            pause_after_ack: Duration::ZERO,
            first_id: 1,
        }
    }
}

/// One acknowledged insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub id: i64,
    pub sent: Instant,
    pub acked: Instant,
    /// `inet_server_port()` of the server that committed it (the node's
    /// real PostgreSQL port, also through HAProxy).
    pub server_port: u16,
}

/// One failed attempt (connect or insert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub id: i64,
    pub sent: Instant,
    /// When the error came back.
    pub at: Instant,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ack(Ack),
    Fail(Failure),
}

impl Outcome {
    /// When the outcome was known.
    pub fn at(&self) -> Instant {
        match self {
            Outcome::Ack(a) => a.acked,
            Outcome::Fail(f) => f.at,
        }
    }
}

/// Start of PostgreSQL's warning when a commit stops waiting for synchronous
/// standbys because of a cancel request: "canceling wait for synchronous
/// replication due to user request" — committed locally, maybe on no standby.
pub const SYNC_WAIT_CANCELLED: &str = "canceling wait for synchronous replication";

/// A running writer. Dropping it stops it (bounded).
#[derive(Debug)]
pub struct Writer {
    log: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    port: u16,
}

/// Bound for the writer thread to notice a stop request.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Writer {
    /// Create `table (id bigint PRIMARY KEY, at timestamptz)` on `port` if
    /// needed (this must succeed), then start inserting.
    pub fn start(port: u16, table: &str, opts: WriterOptions) -> Result<Writer> {
        sql::execute(
            port,
            &format!(
                "CREATE TABLE IF NOT EXISTS {table} \
                 (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
            ),
        )
        .with_context(|| format!("creating the writer's table {table}"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s, t) = (Arc::clone(&log), Arc::clone(&stop), table.to_string());
        let handle = std::thread::Builder::new()
            .name(format!("writer-{port}"))
            .spawn(move || run(port, &t, &opts, &l, &s))
            .context("spawning the writer thread")?;
        Ok(Writer {
            log,
            stop,
            handle: Some(handle),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every outcome so far, in order.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every acknowledged write so far, in order.
    pub fn acks(&self) -> Vec<Ack> {
        self.outcomes()
            .into_iter()
            .filter_map(|o| match o {
                Outcome::Ack(a) => Some(a),
                Outcome::Fail(_) => None,
            })
            .collect()
    }

    /// Acknowledged writes whose ack came at or after `t`.
    pub fn acks_since(&self, t: Instant) -> Vec<Ack> {
        self.acks().into_iter().filter(|a| a.acked >= t).collect()
    }

    /// The first attempt that failed with its error at or after `t`.
    pub fn first_failure_since(&self, t: Instant) -> Option<Failure> {
        self.outcomes().into_iter().find_map(|o| match o {
            Outcome::Fail(f) if f.at >= t => Some(f),
            _ => None,
        })
    }

    /// The last acknowledged write.
    pub fn last_ack(&self) -> Option<Ack> {
        self.acks().pop()
    }

    /// Stop and return every outcome. Waits at most a few seconds for the
    /// thread (a write blocked on a dead peer is abandoned, not awaited).
    pub fn stop(mut self) -> Vec<Outcome> {
        self.halt();
        self.outcomes()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let Some(h) = self.handle.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Connect for the writer; `cancelled` is set when the server warns that a
/// commit's wait for synchronous standbys was cancelled ([`SYNC_WAIT_CANCELLED`]).
fn connect(
    port: u16,
    opts: &WriterOptions,
    cancelled: &Arc<AtomicBool>,
) -> Result<postgres::Client, postgres::Error> {
    let flag = Arc::clone(cancelled);
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .application_name("warden-tests-writer")
        .connect_timeout(opts.connect_timeout)
        .options(&format!(
            "-c statement_timeout={}",
            opts.statement_timeout.as_millis()
        ))
        // Notices are handled in order, before the query's own answer ends.
        .notice_callback(move |n| {
            if n.message().starts_with(SYNC_WAIT_CANCELLED) {
                flag.store(true, Ordering::SeqCst);
            }
        })
        .connect(NoTls)
}

fn run(port: u16, table: &str, opts: &WriterOptions, log: &Mutex<Vec<Outcome>>, stop: &AtomicBool) {
    let insert = format!("INSERT INTO {table} (id) VALUES ($1) RETURNING inet_server_port()");
    let push = |o: Outcome| log.lock().unwrap_or_else(PoisonError::into_inner).push(o);
    let mut client: Option<postgres::Client> = None;
    let cancelled = Arc::new(AtomicBool::new(false));
    let mut id = opts.first_id;
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        let this = id;
        id += 1;
        cancelled.store(false, Ordering::SeqCst);
        let result = match client.as_mut() {
            Some(c) => c.query_one(insert.as_str(), &[&this]),
            None => connect(port, opts, &cancelled).and_then(|mut c| {
                let r = c.query_one(insert.as_str(), &[&this]);
                client = Some(c);
                r
            }),
        };
        match result.and_then(|row| row.try_get::<_, i32>(0)) {
            Ok(_) if cancelled.load(Ordering::SeqCst) => {
                push(Outcome::Fail(Failure {
                    id: this,
                    sent,
                    at: Instant::now(),
                    error: format!(
                        "{SYNC_WAIT_CANCELLED}: committed locally but not confirmed by a \
                         synchronous standby; not counted as acknowledged"
                    ),
                }));
                std::thread::sleep(opts.pause_after_error);
            }
            Ok(server_port) => {
                push(Outcome::Ack(Ack {
                    id: this,
                    sent,
                    acked: Instant::now(),
                    server_port: u16::try_from(server_port).unwrap_or(0),
                }));
                if !opts.pause_after_ack.is_zero() {
                    std::thread::sleep(opts.pause_after_ack);
                }
            }
            Err(e) => {
                push(Outcome::Fail(Failure {
                    id: this,
                    sent,
                    at: Instant::now(),
                    // `postgres::Error` shows its cause only as a source.
                    error: format!("{:#}", anyhow::Error::from(e)),
                }));
                client = None;
                std::thread::sleep(opts.pause_after_error);
            }
        }
    }
}

/// Ids present in `table` on `port`, ascending.
pub fn ids_in(port: u16, table: &str) -> Result<Vec<i64>> {
    let mut c = sql::connect(port)?;
    let rows = c
        .query(&format!("SELECT id FROM {table} ORDER BY id") as &str, &[])
        .with_context(|| format!("reading ids of {table} on port {port}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The acknowledged writes among `outcomes`.
pub fn acks_of(outcomes: &[Outcome]) -> Vec<Ack> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ack(a) => Some(*a),
            Outcome::Fail(_) => None,
        })
        .collect()
}

/// Acknowledged ids missing from `present` (sorted ascending).
pub fn lost(acks: &[Ack], present: &[i64]) -> Vec<i64> {
    acks.iter()
        .map(|a| a.id)
        .filter(|id| present.binary_search(id).is_err())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_lists_acknowledged_ids_not_present() {
        let t = Instant::now();
        let ack = |id| Ack {
            id,
            sent: t,
            acked: t,
            server_port: 1,
        };
        assert_eq!(lost(&[ack(1), ack(2), ack(5)], &[1, 3, 5]), vec![2]);
        assert!(lost(&[], &[1]).is_empty());
    }

    #[test]
    fn a_writer_to_nowhere_records_failures_and_stops() {
        let port = crate::ports::free_port().unwrap();
        // Table creation fails: nothing listens.
        assert!(Writer::start(port, "t", WriterOptions::default()).is_err());
    }
}
