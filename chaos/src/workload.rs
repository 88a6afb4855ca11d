//! The observers that run alongside the kit's [`Writer`](warden_tests::workload::Writer):
//!
//! * [`Probes`]: on every node, directly on its PostgreSQL port, a tiny
//!   INSERT every [`PROBE_INTERVAL`] with a short statement timeout. A
//!   replica answers "read-only transaction" at once; a node that accepts one
//!   is writable. Two nodes accepting them at the same time is split brain.
//!   With Redis members, a `SET` on the redis port instead (`READONLY` on a
//!   replica; see [`crate::redis_engine`]).
//! * [`PrimaryRounds`]: `GET /primary` on every node at the start of every
//!   [`ROUND`] — one thread per node, so a frozen agent delays only its own
//!   samples, and all nodes' samples of a round are sent within the round.
//!
//! Both record into shared logs with times relative to the workload's start
//! and stop within a bound: a thread stuck on a frozen server is abandoned,
//! not awaited.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postgres::error::SqlState;
use postgres::NoTls;
use warden_tests::config::{SUPERUSER, SUPERUSER_PASSWORD};
use warden_tests::http;
use warden_tests::workload::{Ack, Outcome, Writer, SYNC_WAIT_CANCELLED};

use crate::events::{push_sample, EventLog, PrimarySample, ProbeAck, ProbeError, StatusSpan, Us};
use crate::redis_engine::{self as chaos_redis, RedisWriter};

/// Between two direct writes on one node.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(75);
/// Connect bound of a probe (a dead node fails fast, a frozen one here).
pub const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Server-side bound of a probe's INSERT.
pub const PROBE_STATEMENT_TIMEOUT_MS: u64 = 500;
/// Length of a `/primary` polling round.
pub const ROUND: Duration = Duration::from_millis(50);
/// Bound of one `/primary` poll.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(400);
/// Bound for observer threads to finish after a stop request.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The probes' table; ids are unique across nodes (node `i` uses
/// `(i + 1) * 10^12 + n`).
pub const PROBE_TABLE: &str = "chaos_probe";
/// Id block per node of the direct writes (the writer's ids stay below it).
pub const ID_BLOCK: i64 = 1_000_000_000_000;

/// What the nodes run, as far as the workload cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    /// `sync`: a direct write counts only once `WAIT 1` confirms it.
    Redis {
        sync: bool,
    },
}

/// The writer through HAProxy: the kit's PostgreSQL [`Writer`] or the
/// harness's [`RedisWriter`]; both record the kit's [`Outcome`]s.
#[derive(Debug)]
pub enum HaWriter {
    Postgres(Writer),
    Redis(RedisWriter),
}

impl HaWriter {
    pub fn outcomes(&self) -> Vec<Outcome> {
        match self {
            HaWriter::Postgres(w) => w.outcomes(),
            HaWriter::Redis(w) => w.outcomes(),
        }
    }

    /// Acknowledged writes whose ack came at or after `t`.
    pub fn acks_since(&self, t: Instant) -> Vec<Ack> {
        self.outcomes()
            .into_iter()
            .filter_map(|o| match o {
                Outcome::Ack(a) if a.acked >= t => Some(a),
                _ => None,
            })
            .collect()
    }

    /// True once any write was acknowledged.
    pub fn acked_any(&self) -> bool {
        self.outcomes().iter().any(|o| matches!(o, Outcome::Ack(_)))
    }

    /// Stop (bounded) and return every outcome.
    pub fn stop(self) -> Vec<Outcome> {
        match self {
            HaWriter::Postgres(w) => w.stop(),
            HaWriter::Redis(w) => w.stop(),
        }
    }
}

/// The workload's time origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    t0: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { t0: Instant::now() }
    }

    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// Microseconds from the origin to `t` (0 for earlier instants).
    pub fn us(&self, t: Instant) -> Us {
        u64::try_from(t.saturating_duration_since(self.t0).as_micros()).unwrap_or(u64::MAX)
    }

    pub fn now(&self) -> Us {
        self.us(Instant::now())
    }
}

/// Sleep `d`, or less if `stop` is set meanwhile (checked every 20 ms).
/// Pacing, never synchronisation.
pub fn pause(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Wait (bounded) for threads to finish; stragglers are left behind.
fn join_bounded(handles: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + STOP_TIMEOUT;
    for h in handles {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
}

/// Direct-write probes on every node.
#[derive(Debug)]
pub struct Probes {
    log: Arc<Mutex<EventLog>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Probes {
    /// Start one probe per `(node index, database port)`. With PostgreSQL the
    /// table must exist on every node.
    pub fn start(nodes: &[(usize, u16)], clock: Clock, engine: Engine) -> Result<Probes> {
        let log = Arc::new(Mutex::new(EventLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for &(node, port) in nodes {
            let (l, s) = (Arc::clone(&log), Arc::clone(&stop));
            handles.push(
                std::thread::Builder::new()
                    .name(format!("probe-{node}"))
                    .spawn(move || match engine {
                        Engine::Postgres => probe_loop(node, port, clock, &l, &s),
                        Engine::Redis { sync } => {
                            chaos_redis::probe_loop(node, port, sync, clock, &l, &s);
                        }
                    })
                    .context("spawning a probe thread")?,
            );
        }
        Ok(Probes { log, stop, handles })
    }

    /// Acknowledged direct writes so far.
    pub fn acks(&self) -> Vec<ProbeAck> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .probes
            .clone()
    }

    /// Stop (bounded) and move what was recorded into `into`.
    pub fn stop(self, into: &mut EventLog) {
        self.stop.store(true, Ordering::SeqCst);
        join_bounded(self.handles);
        let mut l = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        into.probes = std::mem::take(&mut l.probes);
        into.probe_failures = std::mem::take(&mut l.probe_failures);
    }
}

/// A probe connection: `cancelled` is set by a "canceling wait for
/// synchronous replication" warning (see the kit's writer): such a commit is
/// not an acknowledgement.
fn probe_connect(
    port: u16,
    cancelled: &Arc<AtomicBool>,
) -> Result<postgres::Client, postgres::Error> {
    let flag = Arc::clone(cancelled);
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .application_name("warden-chaos-probe")
        .connect_timeout(PROBE_CONNECT_TIMEOUT)
        .options(&format!(
            "-c statement_timeout={PROBE_STATEMENT_TIMEOUT_MS}"
        ))
        .notice_callback(move |n| {
            if n.message().starts_with(SYNC_WAIT_CANCELLED) {
                flag.store(true, Ordering::SeqCst);
            }
        })
        .connect(NoTls)
}

fn classify(e: &postgres::Error) -> ProbeError {
    match e.code() {
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => ProbeError::ReadOnly,
        Some(c) if *c == SqlState::QUERY_CANCELED => ProbeError::Timeout,
        _ => ProbeError::Other,
    }
}

fn probe_loop(node: usize, port: u16, clock: Clock, log: &Mutex<EventLog>, stop: &AtomicBool) {
    let insert = format!(
        "INSERT INTO {PROBE_TABLE} (id, node) VALUES ($1, $2) RETURNING inet_server_port()"
    );
    let name = i32::try_from(node).unwrap_or(-1);
    let cancelled = Arc::new(AtomicBool::new(false));
    let mut client: Option<postgres::Client> = None;
    let mut seq: i64 = 0;
    let record = |r: Result<ProbeAck, ProbeError>, sent: Instant| {
        let mut l = log.lock().unwrap_or_else(PoisonError::into_inner);
        match r {
            Ok(a) => l.probes.push(a),
            Err(e) => l.push_probe_failure(node, e, clock.us(sent), clock.now()),
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let sent = Instant::now();
        if client.is_none() {
            match probe_connect(port, &cancelled) {
                Ok(c) => client = Some(c),
                Err(_) => {
                    record(Err(ProbeError::Connect), sent);
                    pause(PROBE_INTERVAL.saturating_sub(sent.elapsed()), stop);
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        seq += 1;
        let id = (node as i64 + 1) * ID_BLOCK + seq;
        cancelled.store(false, Ordering::SeqCst);
        let result = c.query_one(insert.as_str(), &[&id, &name]);
        let outcome = match result {
            Ok(_) if cancelled.load(Ordering::SeqCst) => Err(ProbeError::SyncWaitCancelled),
            Ok(_) => Ok(ProbeAck {
                node,
                id,
                sent: clock.us(sent),
                acked: clock.now(),
            }),
            Err(e) => {
                // A SQL error (read-only, timeout) keeps the session; anything
                // else may have broken it: reconnect.
                if e.code().is_none() || c.is_closed() {
                    client = None;
                }
                Err(classify(&e))
            }
        };
        record(outcome, sent);
        pause(PROBE_INTERVAL.saturating_sub(sent.elapsed()), stop);
    }
}

/// `GET /primary` on every node, in aligned rounds.
#[derive(Debug)]
pub struct PrimaryRounds {
    spans: Arc<Mutex<Vec<StatusSpan>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl PrimaryRounds {
    /// Start polling `<api_url>/primary` for each `(node index, api_url)`.
    pub fn start(nodes: &[(usize, String)], clock: Clock) -> Result<PrimaryRounds> {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (node, url) in nodes {
            let (sp, st, node) = (Arc::clone(&spans), Arc::clone(&stop), *node);
            let url = format!("{}/primary", url.trim_end_matches('/'));
            handles.push(
                std::thread::Builder::new()
                    .name(format!("rounds-{node}"))
                    .spawn(move || poll_loop(node, &url, clock, &sp, &st))
                    .context("spawning a /primary poller")?,
            );
        }
        Ok(PrimaryRounds {
            spans,
            stop,
            handles,
        })
    }

    /// Stop (bounded) and move the samples into `into`.
    pub fn stop(self, into: &mut EventLog) {
        self.stop.store(true, Ordering::SeqCst);
        join_bounded(self.handles);
        into.round_ms = u64::try_from(ROUND.as_millis()).unwrap_or(50);
        into.primary =
            std::mem::take(&mut *self.spans.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

fn round_of(clock: Clock, t: Instant) -> u64 {
    let round = u64::try_from(ROUND.as_micros()).unwrap_or(50_000);
    clock.us(t) / round
}

fn poll_loop(
    node: usize,
    url: &str,
    clock: Clock,
    spans: &Mutex<Vec<StatusSpan>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        // Sleep to the start of the next round; every node's thread wakes at
        // the same boundaries.
        let next = clock.t0()
            + ROUND * u32::try_from(round_of(clock, Instant::now()) + 1).unwrap_or(u32::MAX);
        pause(next.saturating_duration_since(Instant::now()), stop);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let sent = Instant::now();
        let status = http::get_with_timeout(url, POLL_TIMEOUT)
            .ok()
            .map(|r| r.status);
        let got = Instant::now();
        let s = PrimarySample {
            node,
            round: round_of(clock, sent),
            sent: clock.us(sent),
            got: clock.us(got),
            status,
        };
        push_sample(&mut spans.lock().unwrap_or_else(PoisonError::into_inner), s);
    }
}
