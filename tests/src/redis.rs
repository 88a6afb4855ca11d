//! Real Redis and Redis Sentinel processes, and a Sentinel-aware writer.
//!
//! The baseline side of the Sentinel benchmark (`warden-bench-sentinel`): a
//! primary, replicas started with `--replicaof`, and `redis-server --sentinel`
//! processes with a generated `sentinel.conf`, each on a free loopback port and
//! killed when its handle drops. [`SentinelWriter`] is a client written the
//! way Sentinel's client guide describes: ask the Sentinels for the primary,
//! write to it, rediscover on any error. It only talks to ports, so the same
//! writer can later be pointed at Warden's Sentinel-compatible ports.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::Managed;
use crate::wait::poll_until;

/// The master name the Sentinels monitor.
pub const MASTER_NAME: &str = "mymaster";
/// Bound on every connect, read and write of the kit's Redis clients.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a freshly started server or Sentinel may take to accept commands.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between the writer's rediscovery attempts: short, so the measured
/// gap is Sentinel's and not the client's, but not a busy loop.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Bound on the acknowledgements one writer keeps (about 24 bytes each); the
/// writer stops writing when it is reached rather than grow without limit.
const MAX_ACKS: usize = 20_000_000;
/// Keys per `MGET` when checking for lost writes.
const CHECK_BATCH: usize = 1000;

/// A connection to 127.0.0.1:`port` with every operation bounded by `timeout`.
pub fn connect(port: u16, timeout: Duration) -> Result<redis::Connection> {
    connect_as(port, None, timeout)
}

/// [`connect`], logging in with `password` (the default user) when given.
pub fn connect_as(
    port: u16,
    password: Option<&str>,
    timeout: Duration,
) -> Result<redis::Connection> {
    let auth = password.map_or(String::new(), |p| format!(":{p}@"));
    let client = redis::Client::open(format!("redis://{auth}127.0.0.1:{port}/"))
        .with_context(|| format!("redis client for port {port}"))?;
    let conn = client
        .get_connection_with_timeout(timeout)
        .with_context(|| format!("connecting to redis on port {port}"))?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// `INFO <section>` of the server on `port`, as field → value.
pub fn info(port: u16, section: &str) -> Result<HashMap<String, String>> {
    let mut c = connect(port, IO_TIMEOUT)?;
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut c)
        .with_context(|| format!("INFO {section} on port {port}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// Wait until `port` answers PING, or fail with the log's tail.
fn wait_ping(port: u16, what: &str, log: &Path) -> Result<()> {
    let ok = poll_until(START_TIMEOUT, || {
        let mut c = connect(port, IO_TIMEOUT).ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()
    });
    if ok.is_none() {
        bail!(
            "{what} on port {port} did not answer PING within {START_TIMEOUT:?}\n{}",
            crate::wait::tail(log, 20)
        );
    }
    Ok(())
}

/// One `redis-server` (primary or replica). Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    name: String,
    port: u16,
    process: Managed,
}

impl RedisServer {
    /// Start a server in `dir` (created if missing) on a free port; a replica
    /// of 127.0.0.1:`replica_of` if given. No persistence: the benchmark is
    /// about failover, and a disk write must not stretch any timing.
    pub fn start(dir: &Path, name: &str, replica_of: Option<u16>) -> Result<RedisServer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // 7.0's default waits 5 s before a diskless full sync starts.
            .args(["--repl-diskless-sync-delay", "0"]);
        if let Some(p) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        let log = dir.join(format!("{name}.log"));
        let process = Managed::spawn(name, &mut cmd, &log)?;
        wait_ping(port, name, &log)?;
        Ok(RedisServer {
            name: name.to_string(),
            port,
            process,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL the server (a crash: no shutdown, no final sync) and reap it.
    pub fn kill(&mut self) -> Result<()> {
        self.process.signal(Signal::SIGKILL)?;
        if self.process.wait_exit(START_TIMEOUT).is_none() {
            bail!("{} did not exit after SIGKILL", self.name);
        }
        Ok(())
    }
}

/// Sentinel settings for the generated `sentinel.conf`.
#[derive(Debug, Clone, Copy)]
pub struct SentinelOptions {
    pub quorum: u32,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
}

impl Default for SentinelOptions {
    /// What operators copy from the guides: quorum 2, down-after 5 s,
    /// failover-timeout 60 s.
    fn default() -> Self {
        SentinelOptions {
            quorum: 2,
            down_after_ms: 5000,
            failover_timeout_ms: 60_000,
        }
    }
}

/// One `redis-server --sentinel`. Killed on drop.
#[derive(Debug)]
pub struct Sentinel {
    port: u16,
    _process: Managed,
}

impl Sentinel {
    /// Start a Sentinel in `dir` monitoring 127.0.0.1:`primary` as
    /// [`MASTER_NAME`]. The config file is its own (Sentinel rewrites it).
    pub fn start(dir: &Path, name: &str, primary: u16, opts: SentinelOptions) -> Result<Sentinel> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let conf = dir.join(format!("{name}.conf"));
        let m = MASTER_NAME;
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
             sentinel monitor {m} 127.0.0.1 {primary} {q}\n\
             sentinel down-after-milliseconds {m} {da}\n\
             sentinel failover-timeout {m} {ft}\n\
             sentinel parallel-syncs {m} 1\n",
            dir = dir.display(),
            q = opts.quorum,
            da = opts.down_after_ms,
            ft = opts.failover_timeout_ms,
        );
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf).arg("--sentinel");
        let process = Managed::spawn(name, &mut cmd, &log)?;
        wait_ping(port, name, &log)?;
        Ok(Sentinel {
            port,
            _process: process,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// `SENTINEL MASTER <MASTER_NAME>` on the Sentinel at `port`, as field → value.
pub fn sentinel_master(port: u16) -> Result<HashMap<String, String>> {
    let mut c = connect(port, IO_TIMEOUT)?;
    let flat: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER_NAME)
        .query(&mut c)
        .with_context(|| format!("SENTINEL MASTER on port {port}"))?;
    Ok(flat
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect())
}

/// `SENTINEL FAILOVER <MASTER_NAME>` on the Sentinel at `port`.
pub fn sentinel_failover(port: u16) -> Result<()> {
    let mut c = connect(port, IO_TIMEOUT)?;
    redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(MASTER_NAME)
        .query::<()>(&mut c)
        .with_context(|| format!("SENTINEL FAILOVER on port {port}"))
}

/// The primary's port per the Sentinels, asked in order: the first answer
/// wins (the client guide's discovery). `None` if none answered.
pub fn discover_primary(sentinels: &[u16]) -> Option<u16> {
    sentinels.iter().find_map(|&s| {
        let mut c = connect(s, IO_TIMEOUT).ok()?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query(&mut c)
            .ok()?;
        addr?.1.parse().ok()
    })
}

/// A primary, replicas and Sentinels in one temporary directory.
#[derive(Debug)]
pub struct SentinelSetup {
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
    // Last, so it is removed after every process is gone.
    dir: TempDir,
}

impl SentinelSetup {
    /// Start 1 primary, `replicas` replicas and `sentinels` Sentinels.
    pub fn start(replicas: usize, sentinels: usize, opts: SentinelOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("warden-sentinel-")
            .tempdir()
            .context("creating temporary directory")?;
        let primary = RedisServer::start(&dir.path().join("redis0"), "redis0", None)?;
        let pport = primary.port();
        let mut servers = vec![primary];
        for i in 1..=replicas {
            let name = format!("redis{i}");
            servers.push(RedisServer::start(
                &dir.path().join(&name),
                &name,
                Some(pport),
            )?);
        }
        let sentinels = (0..sentinels)
            .map(|i| {
                let name = format!("sentinel{i}");
                Sentinel::start(&dir.path().join(&name), &name, pport, opts)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SentinelSetup {
            servers,
            sentinels,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(Sentinel::port).collect()
    }

    pub fn server_mut(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.servers.iter_mut().find(|s| s.port() == port)
    }

    /// Wait until every replica's link is up and every Sentinel knows the
    /// primary, all replicas and all other Sentinels — before that a
    /// failover could not reach quorum or would find no replica.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let replicas = self.servers.len() - 1;
        let others = self.sentinels.len() - 1;
        let ready = poll_until(timeout, || {
            for s in &self.servers[1..] {
                let i = info(s.port(), "replication").ok()?;
                (i.get("master_link_status")? == "up").then_some(())?;
            }
            for s in &self.sentinels {
                let m = sentinel_master(s.port()).ok()?;
                let n = |k: &str| m.get(k).and_then(|v| v.parse::<usize>().ok());
                (m.get("flags")? == "master"
                    && n("num-slaves")? == replicas
                    && n("num-other-sentinels")? == others)
                    .then_some(())?;
            }
            Some(())
        });
        if ready.is_none() {
            bail!(
                "replication and Sentinels not ready within {timeout:?} (logs in {})",
                self.dir().display()
            );
        }
        Ok(())
    }
}

/// One acknowledged write: `SET k<id> <id>` answered OK by the server on `port`.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub id: u64,
    pub at: Instant,
    pub port: u16,
}

#[derive(Debug, Default)]
struct WriterState {
    acks: Vec<Ack>,
    errors: u64,
}

/// A thread writing `SET k<i> <i>` one at a time to the primary the Sentinels
/// name, recording every acknowledgement. On any error (connection refused or
/// reset, `READONLY` from a demoted primary, a timeout) it drops the
/// connection, pauses briefly and asks the Sentinels again.
#[derive(Debug)]
pub struct SentinelWriter {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<WriterState>>,
    handle: Option<JoinHandle<()>>,
}

impl SentinelWriter {
    /// Start writing; `sentinels` are asked in this order.
    pub fn start(sentinels: Vec<u16>) -> SentinelWriter {
        Self::start_as(sentinels, None)
    }

    /// [`SentinelWriter::start`], logging in to the servers with `password`.
    pub fn start_as(sentinels: Vec<u16>, password: Option<String>) -> SentinelWriter {
        Self::start_waiting(sentinels, password, None)
    }

    /// [`SentinelWriter::start_as`]; with `wait = Some((n, ms))` every `SET` is
    /// followed by `WAIT n ms`, and a write counts as acknowledged only when `WAIT`
    /// reports at least `n` replicas (what a client of synchronous mode does).
    pub fn start_waiting(
        sentinels: Vec<u16>,
        password: Option<String>,
        wait: Option<(u32, u64)>,
    ) -> SentinelWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(WriterState::default()));
        let (s, st) = (stop.clone(), state.clone());
        let handle = std::thread::spawn(move || {
            write_loop(&sentinels, password.as_deref(), wait, &s, &st);
        });
        SentinelWriter {
            stop,
            state,
            handle: Some(handle),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&WriterState) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Number of acknowledged writes so far.
    pub fn ack_count(&self) -> usize {
        self.with_state(|s| s.acks.len())
    }

    /// Number of failed write or discovery attempts so far.
    pub fn errors(&self) -> u64 {
        self.with_state(|s| s.errors)
    }

    /// The first write acknowledged after `after` by a server other than
    /// `not_port`.
    pub fn first_ack_elsewhere(&self, after: Instant, not_port: u16) -> Option<Ack> {
        self.with_state(|s| {
            // Acks are in time order; search from the back would miss the first.
            let from = s.acks.partition_point(|a| a.at <= after);
            s.acks[from..].iter().find(|a| a.port != not_port).copied()
        })
    }

    /// Every acknowledgement so far, in order (the writer goes on).
    pub fn acks_so_far(&self) -> Vec<Ack> {
        self.with_state(|s| s.acks.clone())
    }

    /// The last write acknowledged by the server on `port`.
    pub fn last_ack_on(&self, port: u16) -> Option<Ack> {
        self.with_state(|s| s.acks.iter().rev().find(|a| a.port == port).copied())
    }

    /// Stop the thread and return every acknowledgement, in order.
    pub fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .acks,
        )
    }
}

impl Drop for SentinelWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn write_loop(
    sentinels: &[u16],
    password: Option<&str>,
    wait: Option<(u32, u64)>,
    stop: &AtomicBool,
    state: &Mutex<WriterState>,
) {
    let mut conn: Option<(u16, redis::Connection)> = None;
    let mut id: u64 = 0;
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    while !stop.load(Ordering::SeqCst) {
        let Some((port, c)) = conn.as_mut() else {
            conn = discover_primary(sentinels)
                .and_then(|p| Some((p, connect_as(p, password, IO_TIMEOUT).ok()?)));
            if conn.is_none() {
                lock().errors += 1;
                std::thread::sleep(RETRY_PAUSE);
            }
            continue;
        };
        // A new id per attempt: a failed SET may or may not have been
        // applied, and is never counted.
        id += 1;
        let r = redis::cmd("SET")
            .arg(format!("k{id}"))
            .arg(id)
            .query::<()>(c)
            .and_then(|()| match wait {
                None => Ok(()),
                Some((n, ms)) => {
                    let got: u32 = redis::cmd("WAIT").arg(n).arg(ms).query(c)?;
                    if got >= n {
                        Ok(())
                    } else {
                        // Not confirmed by enough replicas: not acknowledged (the
                        // connection stays; the next write tries again).
                        Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "WAIT: too few replicas",
                        )))
                    }
                }
            });
        let at = Instant::now();
        match r {
            Ok(()) => {
                let mut s = lock();
                if s.acks.len() >= MAX_ACKS {
                    return;
                }
                s.acks.push(Ack {
                    id,
                    at,
                    port: *port,
                });
            }
            Err(_) => {
                lock().errors += 1;
                conn = None;
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// The ids of `acks` whose key is missing (or holds another value) on the
/// server at `port`: acknowledged, then lost.
pub fn lost_writes(port: u16, acks: &[Ack]) -> Result<Vec<u64>> {
    lost_writes_as(port, None, acks)
}

/// [`lost_writes`], logging in with `password`.
pub fn lost_writes_as(port: u16, password: Option<&str>, acks: &[Ack]) -> Result<Vec<u64>> {
    let mut c = connect_as(port, password, Duration::from_secs(10))?;
    let mut lost = Vec::new();
    for batch in acks.chunks(CHECK_BATCH) {
        let mut cmd = redis::cmd("MGET");
        for a in batch {
            cmd.arg(format!("k{}", a.id));
        }
        let vals: Vec<Option<u64>> = cmd
            .query(&mut c)
            .with_context(|| format!("MGET on port {port}"))?;
        lost.extend(
            batch
                .iter()
                .zip(vals)
                .filter(|(a, v)| *v != Some(a.id))
                .map(|(a, _)| a.id),
        );
    }
    Ok(lost)
}
