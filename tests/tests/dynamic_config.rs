//! Dynamic configuration changes take effect on running agents, without restarting
//! them or PostgreSQL: a new `ttl` re-grants the lease the leader key and member keys
//! live on, a new `retry_timeout` becomes the DCS request deadline, and a reloadable
//! PostgreSQL parameter is applied by a reload on every member.

use std::time::Duration;

use serde_json::json;
use warden_tests::{http, sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);

fn postmaster_start(cluster: &Cluster, i: usize) -> String {
    let mut c = sql::connect(cluster.node(i).pg_port()).expect("connect");
    c.query_one("SELECT pg_postmaster_start_time()::text", &[])
        .expect("start time")
        .get(0)
}

fn work_mem(cluster: &Cluster, i: usize) -> Option<String> {
    let mut c = sql::connect(cluster.node(i).pg_port()).ok()?;
    c.query_one("SHOW work_mem", &[]).ok().map(|r| r.get(0))
}

#[test]
fn ttl_retry_timeout_and_parameters_apply_without_restarts() {
    let cluster = Cluster::start(ClusterSpec::new(3).ttl(10).without_haproxy()).expect("start");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let (leader, _) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).unwrap();
    let started: Vec<String> = (0..3).map(|i| postmaster_start(&cluster, i)).collect();
    assert_ne!(work_mem(&cluster, li).as_deref(), Some("7MB"));

    let url = format!("{}/config", cluster.node(li).api_url());
    let patch = json!({
        "ttl": 24,
        "retry_timeout": 5,
        "postgresql": {"parameters": {"work_mem": "7MB"}}
    })
    .to_string();
    let r = http::send(
        "PATCH",
        &url,
        Some(patch.as_bytes()),
        None,
        Duration::from_secs(10),
    )
    .expect("PATCH /config");
    assert_eq!(r.status, 200, "{}", r.body);
    let stored: serde_json::Value = r.json().unwrap();
    assert_eq!(stored["ttl"], 24);

    // With ttl 10 no lease ever has more than 10 s left: more means the agents took
    // the new ttl, and the leader key moved onto the new lease.
    let prefix = cluster.key_prefix();
    let longer = |key: &str| {
        let kv = cluster.etcd().get(key).ok()??;
        let left = cluster.etcd().lease_ttl(kv.lease).ok()??;
        (left > 12).then_some(left)
    };
    let left = wait_until(
        T,
        "the leader key lives on a lease granted with ttl 24",
        || longer(&format!("{prefix}leader")),
    );
    println!("leader key lease: {left} s left");
    for n in cluster.nodes() {
        wait_until(T, "every member key lives on a ttl-24 lease", || {
            longer(&format!("{prefix}members/{}", n.name()))
        });
    }

    wait_until(T, "work_mem is 7MB on every member", || {
        (0..3)
            .all(|i| work_mem(&cluster, i).as_deref() == Some("7MB"))
            .then_some(())
    });
    for n in cluster.nodes() {
        wait_until(T, "the agent applied the new retry_timeout", || {
            let log = std::fs::read_to_string(n.log_path()).ok()?;
            log.contains("DCS request timeout changed").then_some(())
        });
    }
    for (i, before) in started.iter().enumerate() {
        assert_eq!(
            &postmaster_start(&cluster, i),
            before,
            "{}: PostgreSQL was restarted for a reloadable change",
            cluster.node(i).name()
        );
    }
    let converged = cluster.assert_converged(T);
    assert_eq!(
        cluster.node(converged.primary).name(),
        leader,
        "the leader changed"
    );
}
