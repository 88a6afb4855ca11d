//! Client interoperability of Redis mode: redis-py's `Sentinel(...).master_for()` and
//! `slave_for()` — the client applications actually use — pointed at the agents'
//! Sentinel-compatible ports, with RESP2 and RESP3, keep writing through a planned
//! switchover and an unplanned failover.
//!
//! Two clusters, one after the other: Sentinel ports without a password, and Sentinel
//! ports requiring `redis.sentinel.password` (clients pass it in `sentinel_kwargs`). The
//! data port always requires the kit's `REDIS_PASSWORD`. In each, two redis-py
//! processes (protocol 2 and protocol 3) write `SET k<id> <id>` in a loop, retrying on
//! `ConnectionError`/`ReadOnlyError`/`TimeoutError` as an application does, read back
//! through `slave_for`, and print every acknowledged id with the port that took it. The
//! test runs `wardenctl switchover --force` (no acknowledged write may be lost) and then
//! kills the primary's node with SIGKILL (asynchronous replication: the loss is
//! reported, not asserted), and checks both clients wrote on the new primary after each
//! event and read from a replica.
//!
//! Needs redis-py in the project's venv (`deploy/dev-setup.sh`; `$WARDEN_VENV`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::redis::{self as kit_redis, Ack};
use warden_tests::wait::{self, wait_until};
use warden_tests::{Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
/// The Sentinel ports' password in the second cluster.
const SENTINEL_PASSWORD: &str = "sentinel-secret";
/// A client script ends by itself after this long even if the test never stops it.
const CLIENT_MAX_SECONDS: u64 = 240;

/// Both variants start a cluster; running them at once would double the load on a
/// small machine and stretch the failover timings being observed.
static SERIAL: Mutex<()> = Mutex::new(());

/// The application: discovery through the Sentinel ports, writes through `master_for`,
/// reads through `slave_for`, retries on the errors a failover produces. Its settings
/// (passwords included) come as one JSON line on stdin, never in argv; closing stdin
/// tells it to finish. Output, one event per line: `ack <id> <port>`, `read <port>
/// ok|missing <RESP version the server says the connection speaks>`, `error write|read
/// <exception>`, `done`.
const CLIENT: &str = r#"
import json, sys, threading, time
from redis.sentinel import Sentinel
from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

cfg = json.loads(sys.stdin.readline())
stop = threading.Event()

def watch_stdin():
    sys.stdin.read()
    stop.set()

threading.Thread(target=watch_stdin, daemon=True).start()

def out(*words):
    print(*words, flush=True)

proto = cfg["protocol"]
timeouts = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
sentinel_kwargs = dict(timeouts, protocol=proto)
if cfg["sentinel_password"] is not None:
    sentinel_kwargs["password"] = cfg["sentinel_password"]
sentinel = Sentinel([("127.0.0.1", p) for p in cfg["sentinels"]], sentinel_kwargs=sentinel_kwargs)
data = dict(timeouts, password=cfg["password"], protocol=proto)
master = sentinel.master_for(cfg["master"], **data)
replica = sentinel.slave_for(cfg["master"], **data)

base = proto * 1000000000
n = 0
first = None
deadline = time.monotonic() + cfg["max_seconds"]
while not stop.is_set() and time.monotonic() < deadline:
    n += 1
    i = base + n
    try:
        master.set("k%d" % i, i)
    except (ConnectionError, ReadOnlyError, TimeoutError) as e:
        out("error", "write", type(e).__name__)
        time.sleep(0.05)
        continue
    # The pool connects to the address discovery returned and records it.
    out("ack", i, master.connection_pool.master_address[1])
    if first is None:
        first = i
    if n % 10 == 0:
        try:
            value = replica.get("k%d" % first)
            info = replica.client_info()
            port = info["laddr"].rsplit(":", 1)[1]
            result = "ok" if value == str(first).encode() else "missing"
            out("read", port, result, info["resp"])
        except (ConnectionError, TimeoutError) as e:
            out("error", "read", type(e).__name__)
            time.sleep(0.05)
    # An application's pace, not a busy loop that starves the agents of CPU.
    time.sleep(0.002)
out("done")
"#;

/// The venv's python, where deploy/dev-setup.sh put redis-py.
fn python() -> PathBuf {
    warden_tests::bins::default_venv().join("bin/python")
}

#[derive(Debug, Clone, Copy)]
struct Read {
    at: Instant,
    port: u16,
    ok: bool,
    /// `resp=` of the server's `CLIENT INFO` for this connection.
    resp: u8,
}

#[derive(Debug, Default)]
struct Seen {
    acks: Vec<Ack>,
    reads: Vec<Read>,
    errors: Vec<String>,
    done: bool,
    /// Lines that fit no event: a broken script shows here.
    other: Vec<String>,
}

/// One redis-py process; killed on drop.
struct PyClient {
    protocol: u8,
    child: Child,
    stdin: Option<ChildStdin>,
    seen: Arc<Mutex<Seen>>,
    reader: Option<JoinHandle<()>>,
    stderr: PathBuf,
}

impl PyClient {
    fn start(cluster: &Cluster, protocol: u8, sentinel_password: Option<&str>) -> PyClient {
        let stderr = cluster.dir().join(format!("redis-py-{protocol}.err"));
        let err_file = std::fs::File::create(&stderr).expect("client stderr file");
        wait::register_log(&stderr);
        let mut child = Command::new(python())
            .args(["-c", CLIENT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run deploy/dev-setup.sh for the venv with redis-py)",
                    python().display()
                )
            });
        let cfg = serde_json::json!({
            "protocol": protocol,
            "sentinels": sentinel_ports(cluster),
            "sentinel_password": sentinel_password,
            "master": "mymaster",
            "password": REDIS_PASSWORD,
            "max_seconds": CLIENT_MAX_SECONDS,
        });
        let mut stdin = child.stdin.take().expect("piped stdin");
        writeln!(stdin, "{cfg}").expect("send the client its settings");
        stdin.flush().expect("flush");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let out = child.stdout.take().expect("piped stdout");
        let s = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let words: Vec<&str> = line.split_whitespace().collect();
                let mut s = s.lock().unwrap_or_else(PoisonError::into_inner);
                match words.as_slice() {
                    ["ack", id, port] => match (id.parse(), port.parse()) {
                        (Ok(id), Ok(port)) => s.acks.push(Ack { id, at, port }),
                        _ => s.other.push(line.clone()),
                    },
                    ["read", port, result, resp] => match (port.parse(), resp.parse()) {
                        (Ok(port), Ok(resp)) => s.reads.push(Read {
                            at,
                            port,
                            ok: *result == "ok",
                            resp,
                        }),
                        _ => s.other.push(line.clone()),
                    },
                    ["error", what, kind] => s.errors.push(format!("{what} {kind}")),
                    ["done"] => s.done = true,
                    _ => s.other.push(line.clone()),
                }
            }
        });
        PyClient {
            protocol,
            child,
            stdin: Some(stdin),
            seen,
            reader: Some(reader),
            stderr,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn ack_count(&self) -> usize {
        self.with(|s| s.acks.len())
    }

    /// The first write acknowledged after `after` by a server other than `not_port`.
    fn first_ack_elsewhere(&self, after: Instant, not_port: u16) -> Option<Ack> {
        self.with(|s| {
            s.acks
                .iter()
                .find(|a| a.at > after && a.port != not_port)
                .copied()
        })
    }

    fn last_ack_on(&self, port: u16) -> Option<Ack> {
        self.with(|s| s.acks.iter().rev().find(|a| a.port == port).copied())
    }

    /// A read after `after` that returned the value, served by a port other than
    /// `not_port` (`None`: any port).
    fn read_ok(&self, after: Instant, not_port: Option<u16>) -> Option<Read> {
        self.with(|s| {
            s.reads
                .iter()
                .find(|r| r.at > after && r.ok && Some(r.port) != not_port)
                .copied()
        })
    }

    fn acks_so_far(&self) -> Vec<Ack> {
        self.with(|s| s.acks.clone())
    }

    /// Ask the script to finish, wait for it, and return what it reported. Panics if
    /// it failed.
    fn stop(mut self) -> Seen {
        drop(self.stdin.take());
        let status = wait::poll_until(Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        });
        if status.is_none() {
            let _ = self.child.kill();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner));
        assert!(
            status.is_some_and(|s| s.success()) && seen.done && seen.other.is_empty(),
            "redis-py (protocol {}) ended with {status:?}, done={}, unexpected output {:?}\n{}",
            self.protocol,
            seen.done,
            seen.other,
            wait::tail(&self.stderr, 40)
        );
        seen
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sentinel_ports(cluster: &Cluster) -> Vec<u16> {
    cluster
        .nodes()
        .iter()
        .filter_map(warden_tests::node::Node::sentinel_port)
        .collect()
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME mymaster` on one port (logging in first when
/// the ports have a password): the redis port it names.
fn master_port(sentinel: u16, password: Option<&str>) -> Option<u16> {
    let mut c = kit_redis::connect_as(sentinel, password, Duration::from_secs(1)).ok()?;
    let addr: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg("mymaster")
        .query(&mut c)
        .ok()?;
    addr?.1.parse().ok()
}

/// How many replicas `SENTINEL REPLICAS mymaster` on one port lists as up (flags
/// exactly `slave`: redis-py's `slave_for` skips `s_down` ones and falls back to the
/// primary when none is left).
fn replicas_up(sentinel: u16, password: Option<&str>) -> Option<usize> {
    let mut c = kit_redis::connect_as(sentinel, password, Duration::from_secs(1)).ok()?;
    let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg("mymaster")
        .query(&mut c)
        .ok()?;
    Some(
        replicas
            .iter()
            .filter(|r| {
                r.chunks_exact(2)
                    .any(|kv| kv[0] == "flags" && kv[1] == "slave")
            })
            .count(),
    )
}

/// `INFO replication` of a member's redis-server.
fn replication(port: u16) -> Option<std::collections::HashMap<String, String>> {
    let mut c = kit_redis::connect_as(port, Some(REDIS_PASSWORD), Duration::from_secs(1)).ok()?;
    let text: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// With a password on the Sentinel ports, a client that does not log in learns
/// nothing: the lookup is refused with `NOAUTH`.
fn sentinel_refuses_anonymous(sentinel: u16) {
    let mut c = kit_redis::connect_as(sentinel, None, Duration::from_secs(1))
        .expect("connect to the Sentinel port");
    let err = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg("mymaster")
        .query::<Option<(String, String)>>(&mut c)
        .expect_err("an anonymous lookup on a password-protected Sentinel port");
    assert!(
        err.to_string().contains("NOAUTH"),
        "expected NOAUTH, got {err}"
    );
}

#[test]
fn redis_py_sentinel_clients_without_sentinel_password() {
    run_variant(None);
}

#[test]
fn redis_py_sentinel_clients_with_sentinel_password() {
    run_variant(Some(SENTINEL_PASSWORD));
}

fn run_variant(sentinel_password: Option<&'static str>) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let started = Instant::now();
    let label = if sentinel_password.is_some() {
        "Sentinel password"
    } else {
        "no Sentinel password"
    };
    let (mut cluster, leader, p) = start_formed(sentinel_password);
    let primary_port = cluster.node(p).redis_port();

    let clients: Vec<PyClient> = [2, 3]
        .into_iter()
        .map(|proto| PyClient::start(&cluster, proto, sentinel_password))
        .collect();
    let t0 = Instant::now();
    for c in &clients {
        wait_until(
            T,
            &format!("protocol {}: writes and a replica read", c.protocol),
            || (c.ack_count() >= 100 && c.read_ok(t0, Some(primary_port)).is_some()).then_some(()),
        );
    }
    let candidate = switch_over(&cluster, &clients, &leader, p, label);
    let last_port = kill_primary(&mut cluster, &clients, candidate, label);
    for c in clients {
        let protocol = c.protocol;
        let seen = c.stop();
        let lost =
            kit_redis::lost_writes_as(last_port, Some(REDIS_PASSWORD), &seen.acks).expect("check");
        let reads_ok = seen.reads.iter().filter(|r| r.ok).count();
        assert!(
            seen.reads.iter().all(|r| r.resp == protocol),
            "protocol {protocol}: a connection spoke another RESP version"
        );
        // Asynchronous replication: a kill -9 may lose what the primary acknowledged
        // in its last moments. Reported, not asserted (redis_sync covers WAIT).
        println!(
            "[{label}] protocol {protocol}: {} writes acknowledged, {} lost after the kill -9; \
             {reads_ok} of {} slave_for reads returned the value; {} errors retried ({})",
            seen.acks.len(),
            lost.len(),
            seen.reads.len(),
            seen.errors.len(),
            error_kinds(&seen.errors)
        );
    }
    println!("[{label}] took {:.1} s", started.elapsed().as_secs_f64());
}

/// `"write ConnectionError" x 12, ...`: what the clients retried.
fn error_kinds(errors: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for e in errors {
        *counts.entry(e.as_str()).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} x {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `wardenctl switchover --force` from `leader` to `candidate`; returns when it was
/// asked.
fn switchover(cluster: &Cluster, leader: &str, candidate: &str) -> Instant {
    let l = cluster.index_of(leader).unwrap();
    let mut cmd = warden_tests::bins::wardenctl_command().expect("wardenctl");
    cmd.arg("-c").arg(cluster.node(l).config_path()).args([
        "switchover",
        cluster.scope(),
        "--leader",
        leader,
        "--candidate",
        candidate,
        "--force",
    ]);
    let asked = Instant::now();
    let out = warden_tests::process::run_bounded(&mut cmd, Duration::from_secs(60)).unwrap();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "wardenctl switchover: {}",
        out.describe()
    );
    asked
}

/// A formed cluster whose Sentinel ports (with `sentinel_password`, if any) name the
/// leader and both replicas up; returns it, the leader and its index.
fn start_formed(sentinel_password: Option<&'static str>) -> (Cluster, String, usize) {
    let mut spec = ClusterSpec::new(3).redis();
    if let Some(pw) = sentinel_password {
        spec = spec.customize(move |_, c| c.set("redis.sentinel.password", pw));
    }
    let cluster = Cluster::start(spec).expect("start a Redis cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let (leader, _) = cluster.wait_leader(T);
    let p = cluster.index_of(&leader).unwrap();
    let primary_port = cluster.node(p).redis_port();
    wait_until(T, "two replicas online on the primary", || {
        let info = replication(primary_port)?;
        (info.get("role")? == "master" && info.get("connected_slaves")? == "2").then_some(())
    });
    // The Sentinel ports learn the replicas' state from their member keys, a loop
    // after INFO shows them; a client started before would read from the primary.
    wait_until(
        T,
        "every Sentinel port names the leader and two replicas up",
        || {
            sentinel_ports(&cluster)
                .into_iter()
                .all(|s| {
                    master_port(s, sentinel_password) == Some(primary_port)
                        && replicas_up(s, sentinel_password) == Some(2)
                })
                .then_some(())
        },
    );
    if sentinel_password.is_some() {
        sentinel_refuses_anonymous(cluster.node(p).sentinel_port().unwrap());
    }
    (cluster, leader, p)
}

/// Planned: `wardenctl switchover` to the next member while the clients write; every
/// acknowledged write must be on the new primary. Returns the candidate's index.
fn switch_over(
    cluster: &Cluster,
    clients: &[PyClient],
    leader: &str,
    p: usize,
    label: &str,
) -> usize {
    let primary_port = cluster.node(p).redis_port();
    // Planned: wardenctl switchover; every acknowledged write must be on the new primary.
    let candidate = (p + 1) % 3;
    let new_port = cluster.node(candidate).redis_port();
    let asked = switchover(cluster, leader, cluster.node(candidate).name());
    for c in clients {
        let first = wait_until(
            T,
            &format!("protocol {}: a write after the switchover", c.protocol),
            || c.first_ack_elsewhere(asked, primary_port),
        );
        assert_eq!(
            first.port, new_port,
            "protocol {}: writes moved to the candidate",
            c.protocol
        );
        let gap = c.last_ack_on(primary_port).map_or(Duration::ZERO, |last| {
            first.at.saturating_duration_since(last.at)
        });
        println!(
            "[{label}] protocol {}: switchover write gap {:.0} ms",
            c.protocol,
            gap.as_secs_f64() * 1000.0
        );
    }
    wait_until(T, "the old primary streams from the candidate", || {
        let info = replication(primary_port)?;
        (info.get("role")? == "slave"
            && info.get("master_port")? == &new_port.to_string()
            && info.get("master_link_status")? == "up")
            .then_some(())
    });
    // After a promotion a read may be served by the primary: redis-py's slave_for
    // keeps its connection to a replica that was promoted (it does not re-check the
    // role), so only the first check insists on a replica.
    let after_switchover = Instant::now();
    for c in clients {
        let n = c.ack_count();
        wait_until(
            T,
            &format!(
                "protocol {}: more writes and a read after the switchover",
                c.protocol
            ),
            || {
                (c.ack_count() > n + 100 && c.read_ok(after_switchover, None).is_some())
                    .then_some(())
            },
        );
        let acks = c.acks_so_far();
        let lost = kit_redis::lost_writes_as(new_port, Some(REDIS_PASSWORD), &acks).expect("check");
        assert!(
            lost.is_empty(),
            "protocol {}: {} of {} acknowledged writes lost in the switchover: {:?}",
            c.protocol,
            lost.len(),
            acks.len(),
            &lost[..lost.len().min(20)]
        );
        println!(
            "[{label}] protocol {}: switchover lost 0 of {} acknowledged writes",
            c.protocol,
            acks.len()
        );
    }
    candidate
}

/// Unplanned: the primary's node (`candidate`) dies outright; both clients must write
/// to the next leader. Returns its redis port.
fn kill_primary(cluster: &mut Cluster, clients: &[PyClient], candidate: usize, label: &str) -> u16 {
    let new_port = cluster.node(candidate).redis_port();
    // Unplanned: the new primary's node dies outright.
    let (leader, _) = cluster.wait_leader(T);
    assert_eq!(cluster.index_of(&leader), Some(candidate));
    let t_kill = Instant::now();
    cluster
        .node_mut(candidate)
        .kill(Signal::SIGKILL)
        .expect("kill the primary's node");
    let (next_leader, _) = wait_until(T, "a new leader", || {
        let (l, t) = cluster.wait_leader(T);
        (l != leader).then_some((l, t))
    });
    let last_port = cluster
        .node(cluster.index_of(&next_leader).unwrap())
        .redis_port();
    for c in clients {
        let first = wait_until(
            T,
            &format!("protocol {}: a write after the kill", c.protocol),
            || c.first_ack_elsewhere(t_kill, new_port),
        );
        assert_eq!(
            first.port, last_port,
            "protocol {}: writes moved to the new leader",
            c.protocol
        );
        println!(
            "[{label}] protocol {}: kill -9 of the primary, writes resumed after {:.2} s",
            c.protocol,
            (first.at - t_kill).as_secs_f64()
        );
    }
    for c in clients {
        let n = c.ack_count();
        wait_until(
            T,
            &format!(
                "protocol {}: more writes and a read after the kill",
                c.protocol
            ),
            || (c.ack_count() > n + 100 && c.read_ok(t_kill, None).is_some()).then_some(()),
        );
    }
    last_port
}
