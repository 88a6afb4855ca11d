//! Maintenance mode (`patronictl pause` / `resume`, i.e. `PATCH /config {"pause": true}`
//! / `{"pause": null}`), with Patroni's semantics: once every member shows the pause,
//! SIGKILL the primary's postmaster. For more than two ttls nobody is promoted and no
//! PostgreSQL is started or restarted by its agent; the old leader releases the leader
//! key (its PostgreSQL is not running) and nobody takes it. After the resume the cluster
//! converges on one primary with every replica streaming, and no member shows the pause.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_tests::http::{self, HttpResponse};
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Beyond two ttls, for the safety observation after the kill.
const MARGIN: Duration = Duration::from_secs(4);
/// The paused leader must release its key (not let it expire): well within one ttl.
const RELEASE_BOUND: Duration = Duration::from_secs(5);
const OBSERVE_EVERY: Duration = Duration::from_millis(200);

fn patch_config(cluster: &Cluster, node: usize, body: &Value) -> HttpResponse {
    let url = format!("{}/config", cluster.node(node).api_url());
    let body = body.to_string();
    http::send("PATCH", &url, Some(body.as_bytes()), None, REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("PATCH {url}: {e:#}"))
}

/// `(member name, its key's "pause" field)` for every member key.
fn member_pause(cluster: &Cluster) -> Vec<(String, Value)> {
    let prefix = format!("{}members/", cluster.key_prefix());
    cluster
        .etcd()
        .get_prefix(&prefix)
        .unwrap_or_default()
        .into_iter()
        .map(|kv| {
            let v: Value = serde_json::from_str(&kv.value).unwrap_or(Value::Null);
            let name = kv.key.trim_start_matches(&prefix).to_string();
            (name, v.get("pause").cloned().unwrap_or(Value::Null))
        })
        .collect()
}

#[test]
fn paused_cluster_leaves_a_dead_primary_alone_until_resumed() {
    let cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let (leader, revision) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).expect("the leader is a node");
    let others: Vec<usize> = (0..3).filter(|&i| i != li).collect();

    // Pause.
    let r = patch_config(&cluster, li, &json!({"pause": true}));
    assert_eq!(r.status, 200, "PATCH /config pause: {}", r.body);
    assert_eq!(r.json().expect("the new config")["pause"], true);
    let paused_at = Instant::now();
    wait_until(T, "every member key shows \"pause\": true", || {
        let m = member_pause(&cluster);
        (m.len() == 3 && m.iter().all(|(_, p)| *p == json!(true))).then_some(())
    });
    println!(
        "every member shows the pause {:.2} s after the PATCH",
        paused_at.elapsed().as_secs_f64()
    );
    assert_eq!(cluster.cluster_json().expect("/cluster")["pause"], true);
    // Still the same leader, and pausing restarted nothing.
    assert_eq!(
        cluster
            .leader_key()
            .unwrap()
            .map(|kv| (kv.value, kv.create_revision)),
        Some((leader.clone(), revision))
    );
    let replica_pids: Vec<i32> = others
        .iter()
        .map(|&i| {
            cluster
                .node(i)
                .postmaster_pid()
                .unwrap_or_else(|| panic!("{}: no postmaster", cluster.node(i).name()))
        })
        .collect();

    // Kill the primary's PostgreSQL.
    let old_pid = cluster.node(li).postmaster_pid().expect("the primary runs");
    let killed = Instant::now();
    assert!(cluster.node(li).kill_postmaster(), "kill the postmaster");
    println!(
        "killed {leader}'s postmaster (pid {old_pid}); gone {:.2} s after the signal",
        killed.elapsed().as_secs_f64()
    );

    let released = observe_the_paused_window(
        &cluster,
        li,
        &leader,
        revision,
        &others,
        &replica_pids,
        killed,
    );
    assert!(
        released <= RELEASE_BOUND,
        "the leader key went {released:?} after the kill: it should be released by the \
         agent at once, not expire"
    );
    let old_member: Value = cluster
        .etcd()
        .get(&format!("{}members/{leader}", cluster.key_prefix()))
        .expect("read the old leader's member key")
        .map(|kv| serde_json::from_str(&kv.value).expect("member key is JSON"))
        .expect("the old leader's member key exists");
    println!(
        "{leader}'s member key at the end of the window: state {}, role {}",
        old_member["state"], old_member["role"]
    );
    // Patroni marks a paused member whose PostgreSQL is not running `stopped`.
    assert_eq!(old_member["state"], "stopped", "{old_member}");
    for &i in &others {
        let n = cluster.node(i);
        assert!(
            sql::is_in_recovery(n.pg_port()).expect("query the replica"),
            "{} left recovery in pause",
            n.name()
        );
    }
    assert!(
        member_pause(&cluster)
            .iter()
            .all(|(_, p)| *p == json!(true)),
        "a member stopped showing the pause"
    );

    // Resume (`patronictl resume`), asked of a replica: the old leader's API still
    // answers, but any member edits the shared config.
    let r = patch_config(&cluster, others[0], &json!({"pause": null}));
    assert_eq!(r.status, 200, "PATCH /config resume: {}", r.body);
    assert!(
        r.json().expect("the new config").get("pause").is_none(),
        "the resumed config still has pause: {}",
        r.body
    );
    let resumed = Instant::now();
    let converged = cluster.assert_converged(2 * T);
    println!(
        "after the resume {} leads (timeline {}), converged in {:.2} s",
        cluster.node(converged.primary).name(),
        converged.timeline,
        resumed.elapsed().as_secs_f64()
    );
    wait_until(T, "no member key shows the pause", || {
        let m = member_pause(&cluster);
        (m.len() == 3 && m.iter().all(|(_, p)| p.is_null())).then_some(())
    });
    assert!(cluster
        .cluster_json()
        .expect("/cluster")
        .get("pause")
        .is_none());
}

/// Safety observation over a fixed window (not a synchronisation): more than two ttls
/// in which, paused, nobody may be promoted or take the key, and no PostgreSQL may be
/// started or restarted by its agent. Returns how long after the kill the leader key
/// was released.
fn observe_the_paused_window(
    cluster: &Cluster,
    li: usize,
    leader: &str,
    revision: i64,
    others: &[usize],
    replica_pids: &[i32],
    killed: Instant,
) -> Duration {
    let window = 2 * cluster.ttl() + MARGIN;
    let leader_key = format!("{}leader", cluster.key_prefix());
    let mut released: Option<Duration> = None;
    let mut polls = 0;
    let mut holders_seen: Vec<String> = Vec::new();
    while killed.elapsed() < window {
        polls += 1;
        let at = killed.elapsed();
        for &i in others {
            let n = cluster.node(i);
            let status = n.status("/primary");
            assert_ne!(
                status,
                Some(200),
                "{} answered 200 on /primary {at:.1?} after the kill, in pause",
                n.name()
            );
        }
        if let Some(pid) = cluster.node(li).postmaster_pid() {
            panic!(
                "{leader}'s PostgreSQL runs again (pid {pid}) {at:.1?} after the kill, in pause\n{}",
                cluster.dump_logs()
            );
        }
        for (k, &i) in others.iter().enumerate() {
            let pid = cluster.node(i).postmaster_pid();
            assert_eq!(
                pid,
                Some(replica_pids[k]),
                "{}'s PostgreSQL was stopped or restarted {at:.1?} after the kill, in pause",
                cluster.node(i).name()
            );
        }
        match cluster
            .etcd()
            .get(&leader_key)
            .expect("read the leader key")
        {
            Some(kv) => {
                assert_eq!(
                    (kv.value.as_str(), kv.create_revision),
                    (leader, revision),
                    "the leader key changed hands {at:.1?} after the kill, in pause"
                );
                assert!(
                    released.is_none(),
                    "the leader key reappeared {at:.1?} after it was released ({released:?})"
                );
                if !holders_seen.contains(&kv.value) {
                    holders_seen.push(kv.value);
                }
            }
            None => {
                released.get_or_insert(at);
            }
        }
        std::thread::sleep(OBSERVE_EVERY);
    }
    let released = released.unwrap_or_else(|| {
        panic!(
            "the paused leader kept the leader key for {window:?} with its PostgreSQL dead\n{}",
            cluster.dump_logs()
        )
    });
    println!(
        "window of {:.1} s ({polls} polls): leader key held by {holders_seen:?}, vacant from \
         {:.2} s after the kill on; no /primary 200 on {:?}; {leader}'s PostgreSQL not \
         restarted; replicas' postmasters unchanged",
        window.as_secs_f64(),
        released.as_secs_f64(),
        others
            .iter()
            .map(|&i| cluster.node(i).name())
            .collect::<Vec<_>>()
    );
    released
}
