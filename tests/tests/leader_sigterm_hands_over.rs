//! SIGTERM on the leader's agent: PostgreSQL stops, the leader key is
//! released before the agent exits, and another node takes over without
//! waiting for the lease to expire.

use std::time::{Duration, Instant};

use warden_tests::process::is_alive;
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(30);

#[test]
fn leader_sigterm_hands_over_before_the_lease_could_expire() {
    let mut cluster = Cluster::start(ClusterSpec::new(3)).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let p = cluster.primary_index().expect("one primary");
    let old = cluster.node(p).name().to_string();
    let old_postmaster = cluster
        .node(p)
        .postmaster_pid()
        .expect("primary's PostgreSQL runs");
    let leader_key = format!("{}leader", cluster.key_prefix());

    let t0 = Instant::now();
    let status = cluster
        .node_mut(p)
        .sigterm_and_wait(STOP_TIMEOUT)
        .expect("old leader exits");
    let exited = Instant::now();
    println!(
        "old leader's agent exited {:.2} s after SIGTERM",
        (exited - t0).as_secs_f64()
    );
    assert_eq!(status.code(), Some(0), "old leader's exit status: {status}");
    assert!(
        !is_alive(old_postmaster),
        "old primary's PostgreSQL still runs"
    );

    // Released, not expired: by the time the agent has exited, the key is
    // gone (or already taken by someone else).
    let holder = cluster
        .etcd()
        .get(&leader_key)
        .expect("read leader key")
        .map(|kv| kv.value);
    assert_ne!(
        holder.as_deref(),
        Some(old.as_str()),
        "leader key still held by the exited agent"
    );

    // The old lease could not have expired yet: ttl - 2 s after exit is
    // well inside it, since the agent renewed at most loop_wait before.
    let bound = cluster.ttl() - Duration::from_secs(2);
    let others: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let new = wait_until(
        bound,
        "another node answers 200 on /primary within ttl-2s",
        || {
            others
                .iter()
                .copied()
                .find(|&i| cluster.node(i).is_primary())
        },
    );
    let handover = exited.elapsed();
    println!(
        "new leader {} after {:.2} s (bound {:?})",
        cluster.node(new).name(),
        handover.as_secs_f64(),
        bound
    );
    assert!(handover < bound);
    assert_eq!(
        cluster
            .etcd()
            .get(&leader_key)
            .unwrap()
            .map(|kv| kv.value)
            .as_deref(),
        Some(cluster.node(new).name())
    );

    // HAProxy follows: writes through the write port reach the new primary.
    wait_until(T, "write through HAProxy after handover", || {
        let mut c = sql::connect(cluster.write_port()).ok()?;
        c.batch_execute("CREATE TABLE IF NOT EXISTS after_handover (id int)")
            .ok()?;
        let in_recovery: bool = c.query_one("SELECT pg_is_in_recovery()", &[]).ok()?.get(0);
        (!in_recovery).then_some(())
    });
    assert!(sql::is_in_recovery(cluster.node(new).pg_port()).ok() == Some(false));
}
