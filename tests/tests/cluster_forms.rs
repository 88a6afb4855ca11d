//! A 3-node cluster forms, answers HAProxy's health checks, replicates, and
//! serves writes and reads through HAProxy.

use std::collections::BTreeSet;
use std::time::Duration;

use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

/// Bound for a fresh cluster to form: initdb, start, two base backups.
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(30);

#[test]
fn three_node_cluster_forms_replicates_and_serves_through_haproxy() {
    let cluster = Cluster::start(ClusterSpec::new(3)).expect("start cluster");
    let took = cluster.wait_formed(FORM_TIMEOUT);
    println!(
        "time from agent start to formed cluster: {:.1} s",
        took.as_secs_f64()
    );

    let (p, replicas) = cluster
        .formation()
        .expect("formation holds after wait_formed");
    assert_eq!(replicas.len(), 2);
    health_endpoints_match_the_roles(&cluster, p);
    let primary = cluster.node(p);

    // /cluster: three members, one leader, two streaming replicas.
    let view = cluster.wait_replicas_streaming(T);
    let members = view["members"].as_array().expect("members array");
    let names: BTreeSet<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["node1", "node2", "node3"]), "{view}");
    let leader = members
        .iter()
        .find(|m| m["role"] == "leader")
        .expect("a leader");
    assert_eq!(leader["name"], primary.name(), "{view}");
    for m in members {
        let n = cluster.node(cluster.index_of(m["name"].as_str().unwrap()).unwrap());
        assert_eq!(m["port"], n.pg_port(), "{view}");
        assert_eq!(m["host"], "127.0.0.1", "{view}");
        assert!(
            m["api_url"]
                .as_str()
                .is_some_and(|u| u.contains(&n.api_port().to_string())),
            "{view}"
        );
    }
    assert_eq!(view["scope"], cluster.scope(), "{view}");

    // /patroni in Patroni's shape, on both roles.
    let status = wait_until(T, "primary /patroni shows a running primary", || {
        let v = primary.patroni_json()?;
        (v["role"] == "primary" && v["state"] == "running").then_some(v)
    });
    assert_eq!(status["patroni"]["name"], primary.name(), "{status}");
    assert_eq!(status["patroni"]["scope"], cluster.scope(), "{status}");
    assert!(status["xlog"]["location"].is_u64(), "{status}");
    let timeline = status["timeline"].as_u64().expect("timeline");
    for &r in &replicas {
        let v = wait_until(T, "replica /patroni shows streaming", || {
            let v = cluster.node(r).patroni_json()?;
            (v["role"] == "replica" && v["replication_state"] == "streaming").then_some(v)
        });
        assert_eq!(v["timeline"].as_u64(), Some(timeline), "{v}");
        assert!(
            v["xlog"]["received_location"].is_u64() || v["xlog"]["replayed_location"].is_u64(),
            "{v}"
        );
    }

    // etcd holds Patroni's keys: leader = plain member name, on a lease.
    let prefix = cluster.key_prefix();
    let leader_key = cluster
        .etcd()
        .get(&format!("{prefix}leader"))
        .unwrap()
        .expect("leader key");
    assert_eq!(leader_key.value, primary.name());
    assert_ne!(leader_key.lease, 0, "leader key must be bound to a lease");
    let member_keys = cluster
        .etcd()
        .get_prefix(&format!("{prefix}members/"))
        .unwrap();
    assert_eq!(member_keys.len(), 3, "{member_keys:?}");
    let init = cluster
        .etcd()
        .get(&format!("{prefix}initialize"))
        .unwrap()
        .expect("initialize key");
    assert!(
        !init.value.is_empty() && init.value.bytes().all(|b| b.is_ascii_digit()),
        "{init:?}"
    );

    let metrics = primary.get("/metrics").expect("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("patroni_primary"), "{}", metrics.body);

    // A write through HAProxy's write port lands on the primary...
    wait_until(T, "write through the HAProxy write port", || {
        let mut c = sql::connect(cluster.write_port()).ok()?;
        let in_recovery: bool = c.query_one("SELECT pg_is_in_recovery()", &[]).ok()?.get(0);
        assert!(!in_recovery, "HAProxy write port reached a replica");
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS kit_probe (id int PRIMARY KEY, note text);
             INSERT INTO kit_probe VALUES (1, 'written through haproxy') ON CONFLICT DO NOTHING;",
        )
        .ok()
    });
    // ...and becomes readable on both replicas.
    for &r in &replicas {
        let port = cluster.node(r).pg_port();
        wait_until(T, "row replicated to replica", || {
            let note = sql::query_text(port, "SELECT note FROM kit_probe WHERE id = 1").ok()??;
            (note == "written through haproxy").then_some(())
        });
    }

    // The read port reaches replicas only.
    wait_until(T, "HAProxy read port reaches a replica", || {
        sql::is_in_recovery(cluster.read_port()).ok().filter(|&r| r)
    });
    for _ in 0..6 {
        assert!(
            sql::is_in_recovery(cluster.read_port()).expect("read port connect"),
            "HAProxy read port reached the primary"
        );
    }

    leader_replaces_a_killed_guard(primary);
}

/// The leader's fencing guard (`warden guard`, a child of the agent) is killed: the
/// agent starts a new one at its next feed, so it never leads unguarded.
fn leader_replaces_a_killed_guard(primary: &warden_tests::Node) {
    let agent = primary.pid().expect("the leader's agent runs");
    let guard = || {
        warden_tests::process::descendants(agent)
            .into_iter()
            .find(|&pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"guard"))
            })
    };
    let old = wait_until(T, "the leader's guard process", guard);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the guard");
    let new = wait_until(T, "a new guard process", || guard().filter(|&p| p != old));
    println!("guard {old} killed; the leader started guard {new}");
}

/// Exactly one node says primary, the other two replica, on GET and on
/// OPTIONS (what HAProxy sends).
fn health_endpoints_match_the_roles(cluster: &Cluster, p: usize) {
    for (i, n) in cluster.nodes().iter().enumerate() {
        let (want_primary, want_replica) = if i == p { (200, 503) } else { (503, 200) };
        assert_eq!(
            n.status("/primary"),
            Some(want_primary),
            "{} GET /primary",
            n.name()
        );
        assert_eq!(
            n.status("/replica"),
            Some(want_replica),
            "{} GET /replica",
            n.name()
        );
        assert_eq!(
            n.options("/primary"),
            Some(want_primary),
            "{} OPTIONS /primary",
            n.name()
        );
        assert_eq!(
            n.options("/replica"),
            Some(want_replica),
            "{} OPTIONS /replica",
            n.name()
        );
        assert_eq!(n.status("/health"), Some(200), "{} /health", n.name());
    }
}
