//! Failsafe mode under `restapi.authentication`: `POST /failsafe` is guarded like the
//! other mutating endpoints (see api_auth.rs), so the leader must send its credentials
//! when it asks the other members to confirm it. Cut the leader off from etcd: with
//! every member confirming it over REST it stays a writable primary past two ttls, no
//! other node becomes primary, and after the heal it is still the leader and the
//! cluster converges.

use std::time::{Duration, Instant};

use serde_json::Value;
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(30);
const USER: &str = "warden-admin";
const PASSWORD: &str = "failsafe:secret";
const MARGIN: Duration = Duration::from_secs(3);
const OBSERVE_EVERY: Duration = Duration::from_millis(250);

#[test]
fn authenticated_failsafe_keeps_the_cut_off_leader_primary() {
    let spec = ClusterSpec::new(3)
        .without_haproxy()
        .with_proxies()
        .customize(|_, c| {
            c.set("restapi.authentication.username", USER)
                .set("restapi.authentication.password", PASSWORD)
                .set("bootstrap.dcs.failsafe_mode", true)
        });
    let cluster = Cluster::start(spec).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let (leader, _) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).expect("the leader is a node");
    let others: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    let failsafe_key = format!("{}failsafe", cluster.key_prefix());
    wait_until(T, "the failsafe key lists every member", || {
        let kv = cluster.etcd().get(&failsafe_key).ok()??;
        let v: Value = serde_json::from_str(&kv.value).ok()?;
        (v.as_object()?.len() == 3).then_some(())
    });

    let cut = Instant::now();
    cluster.proxies(li).cut_etcd();
    println!("cut {leader} off from etcd");
    let window = 2 * cluster.ttl() + MARGIN;
    let mut vacant_from = None;
    let mut polls = 0;
    while cut.elapsed() < window {
        polls += 1;
        let at = cut.elapsed();
        for &i in &others {
            assert_ne!(
                cluster.node(i).status("/primary"),
                Some(200),
                "{} became primary {at:.1?} after the leader was cut off\n{}",
                cluster.node(i).name(),
                cluster.dump_logs()
            );
        }
        match cluster.leader_key().expect("read the leader key") {
            Some(kv) => assert_eq!(
                kv.value,
                leader,
                "another member took the leader key {at:.1?} after the cut\n{}",
                cluster.dump_logs()
            ),
            None => {
                vacant_from.get_or_insert(at);
            }
        }
        std::thread::sleep(OBSERVE_EVERY);
    }
    // The leader could not renew: its key expired, and nobody raced for it because every
    // member confirmed the leader over REST within the ttl.
    let vacant_from = vacant_from.unwrap_or_else(|| {
        panic!(
            "the leader key outlived a cut-off leader for {window:?}\n{}",
            cluster.dump_logs()
        )
    });
    let port = cluster.node(li).pg_port();
    assert!(
        !sql::is_in_recovery(port).expect("query the cut-off leader"),
        "{leader} was demoted although every member confirmed it\n{}",
        cluster.dump_logs()
    );
    sql::execute(
        port,
        "CREATE TABLE IF NOT EXISTS failsafe_writes (at timestamptz DEFAULT now()); \
         INSERT INTO failsafe_writes DEFAULT VALUES",
    )
    .expect("the cut-off leader still takes writes");
    println!(
        "window of {:.1} s ({polls} polls): leader key vacant from {:.1} s, no other \
         primary, {leader} still writable",
        window.as_secs_f64(),
        vacant_from.as_secs_f64()
    );

    // Healed, the leader (still /primary 200 from the failsafe hold) takes its vacant
    // key back; only then do /primary and the key agree again.
    cluster.proxies(li).heal_etcd();
    let healed = Instant::now();
    let (holder, _) = wait_until(T, "the leader key is held again", || {
        cluster
            .leader_key()
            .ok()
            .flatten()
            .map(|kv| (kv.value, kv.create_revision))
    });
    assert_eq!(holder, leader, "another member took the key after the heal");
    println!(
        "{leader} holds the leader key again {:.2} s after the heal",
        healed.elapsed().as_secs_f64()
    );
    let converged = cluster.assert_converged(T);
    assert_eq!(
        cluster.node(converged.primary).name(),
        leader,
        "the failsafe leader lost the leadership after the heal"
    );
}
