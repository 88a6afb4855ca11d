//! PostgreSQL of the primary crashes (postmaster and backends SIGKILLed)
//! while its agent stays alive: with the default `primary_start_timeout`
//! (300 s) the agent restarts it in place as primary. No failover: the same
//! leader key (same holder, same `create_revision`, so the same fencing
//! token) throughout, no other node ever answers 200 on `/primary`, and the
//! timeline does not change.

use std::time::{Duration, Instant};

use warden_tests::failover::secs;
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn crashed_primary_postgres_is_restarted_in_place() {
    let cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let p = before.primary;
    let node = cluster.node(p);
    let (holder, rev) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder, node.name());
    assert_eq!(node.fencing_token(), Some(rev));
    let postmaster = node.postmaster_pid().expect("primary's postmaster");
    let primaries = cluster.watch_primaries();
    let leader = cluster.watch_leader_key();

    let t_crash = Instant::now();
    assert!(node.kill_postmaster(), "postmaster {postmaster} survived");
    let restarted = wait_until(
        Duration::from_secs(60),
        "PostgreSQL restarted in place and answering /primary",
        || {
            let pm = node.postmaster_pid()?;
            (pm != postmaster && node.is_primary()).then_some(pm)
        },
    );
    let back = t_crash.elapsed();
    let port = node.pg_port();
    wait_until(
        Duration::from_secs(30),
        "a write on the restarted primary",
        || {
            sql::execute(
                port,
                "CREATE TABLE IF NOT EXISTS after_crash (id int); INSERT INTO after_crash VALUES (1)",
            )
            .ok()
        },
    );
    println!(
        "{} restarted PostgreSQL (postmaster {postmaster} -> {restarted}): /primary 200 after {}, \
         writable after {}",
        node.name(),
        secs(back),
        secs(t_crash.elapsed())
    );

    let logs = cluster.dump_logs();
    let holders = leader.holders_since(t_crash);
    assert_eq!(
        holders,
        vec![(holder.clone(), rev)],
        "the leader key changed hands\n{logs}"
    );
    assert!(
        !leader.absent_since(t_crash),
        "the leader key was released during the restart\n{logs}"
    );
    assert!(leader.answered_since(t_crash) > 0);
    for i in (0..cluster.nodes().len()).filter(|&i| i != p) {
        assert!(
            !primaries.any_200(i, t_crash),
            "{} answered 200 on /primary\n{logs}",
            cluster.node(i).name()
        );
    }
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)), (holder, rev));
    assert_eq!(
        node.fencing_token(),
        Some(rev),
        "fencing token changed\n{logs}"
    );
    assert_eq!(
        node.timeline(),
        Some(before.timeline),
        "timeline changed\n{logs}"
    );
    primaries.stop();
    leader.stop();

    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    assert_eq!(after.primary, p);
    assert_eq!(after.timeline, before.timeline);
}
