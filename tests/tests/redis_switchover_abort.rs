//! A Redis switchover whose candidate cannot confirm: the primary's replication port is
//! cut (its replicas stop receiving), a client keeps writing to the primary directly,
//! and `wardenctl switchover` asks for a hand-over. The primary holds writes, waits for
//! the candidate to reach its offset, which never happens, and before its lease deadline
//! resumes writing under the leader key it never gave up: same leader, same fencing
//! token, the held client acknowledged again, `/primary` 200 again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use warden_tests::config::REDIS_PASSWORD;
use warden_tests::process::run_bounded_input;
use warden_tests::redis as kit_redis;
use warden_tests::wait::wait_until;
use warden_tests::{bins, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);

/// A client writing `SET` to one port as fast as it is answered, recording when each
/// write was acknowledged; it reconnects to the same port after an error.
struct DirectWriter {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Instant>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl DirectWriter {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acks.clone());
        let handle = std::thread::spawn(move || {
            let mut conn = None;
            let mut id = 0u64;
            while !s.load(Ordering::SeqCst) {
                let Some(c) = conn.as_mut() else {
                    conn =
                        kit_redis::connect_as(port, Some(REDIS_PASSWORD), Duration::from_secs(30))
                            .ok();
                    if conn.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    continue;
                };
                id += 1;
                // A generous timeout: a write held by CLIENT PAUSE is answered later.
                let r = redis::cmd("SET")
                    .arg(format!("a{id}"))
                    .arg(id)
                    .query::<()>(c);
                match r {
                    Ok(()) => a
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Instant::now()),
                    Err(_) => conn = None,
                }
            }
        });
        DirectWriter {
            stop,
            acks,
            handle: Some(handle),
        }
    }

    fn acks(&self) -> Vec<Instant> {
        self.acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn a_switchover_the_candidate_cannot_confirm_resumes_writes_on_the_old_primary() {
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start(ClusterSpec::new(3).redis().with_proxies().without_haproxy())
        .expect("start a Redis cluster with proxies");
    cluster.wait_formed(FORM_TIMEOUT);
    let (leader, token) = cluster.wait_leader(T);
    let l = cluster.index_of(&leader).unwrap();
    let candidate = cluster.node((l + 1) % 3).name().to_string();
    let writer = DirectWriter::start(cluster.node(l).redis_port());
    wait_until(T, "writes acknowledged by the primary", || {
        (writer.acks().len() >= 200).then_some(())
    });

    // The replicas reach the primary through its proxy: cut, they receive nothing more
    // while the client, on the real port, keeps writing.
    cluster.proxies(l).pg.cut();
    let n = writer.acks().len();
    wait_until(T, "writes after the cut", || {
        (writer.acks().len() > n + 200).then_some(())
    });

    let asked = Instant::now();
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    cmd.arg("-c").arg(cluster.node(l).config_path()).args([
        "switchover",
        cluster.scope(),
        "--leader",
        leader.as_str(),
        "--candidate",
        candidate.as_str(),
        "--force",
    ]);
    let out = run_bounded_input(&mut cmd, None, Duration::from_secs(90)).expect("wardenctl");
    println!("wardenctl switchover: {}", out.describe());

    // Writes resume on the old primary under the same key, after a hold: the primary
    // waited for the candidate (bounded by its lease deadline), then gave up.
    let held = |acks: &[Instant]| {
        acks.windows(2)
            .filter(|w| w[1] > asked)
            .map(|w| (w[1] - w[0], w[1]))
            .max()
    };
    let (gap, resumed_at) = wait_until(T, "writes acknowledged again after a hold", || {
        let acks = writer.acks();
        let (gap, resumed_at) = held(&acks)?;
        let after = acks.iter().filter(|t| **t > resumed_at).count();
        (gap >= Duration::from_secs(2) && after >= 100).then_some((gap, resumed_at))
    });
    println!(
        "writes held for {:.2} s, then acknowledged again by the old primary ({:.2} s after the request)",
        gap.as_secs_f64(),
        (resumed_at - asked).as_secs_f64()
    );
    let (now, now_token) = cluster.wait_leader(T);
    assert_eq!(now, leader, "the leader changed");
    assert_eq!(
        now_token, token,
        "the leader key was given up and taken again"
    );
    wait_until(T, "/primary 200 on the old primary again", || {
        (cluster.node(l).status("/primary") == Some(200)).then_some(())
    });
    cluster.proxies(l).pg.heal();
}
