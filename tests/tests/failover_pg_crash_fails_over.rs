//! PostgreSQL of the primary crashes while its agent stays alive, with
//! `primary_start_timeout: 0` in the dynamic config: the agent must not
//! restart it as primary but release the leader key at once, so a replica
//! takes over without waiting for the lease to expire (timeline + 1). The old
//! node comes back as a replica of the new primary.

use std::time::{Duration, Instant};

use warden_tests::failover::secs;
use warden_tests::{wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn crashed_primary_postgres_fails_over_with_primary_start_timeout_zero() {
    let cluster = Cluster::start(
        ClusterSpec::new(3)
            .without_haproxy()
            .customize(|_, c| c.set("bootstrap.dcs.primary_start_timeout", 0)),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let p = before.primary;
    let node = cluster.node(p);
    let (holder, rev) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder, node.name());
    let postmaster = node.postmaster_pid().expect("primary's postmaster");
    let primaries = cluster.watch_primaries();
    let leader = cluster.watch_leader_key();

    let t_crash = Instant::now();
    assert!(node.kill_postmaster(), "postmaster {postmaster} survived");
    let ttl = cluster.ttl();
    let (new, promoted) = wait_until(3 * ttl, "another node answers 200 on /primary", || {
        primaries.first_other_200(p, t_crash)
    });
    let released = leader.first_change_from(t_crash, &(holder, rev));
    println!(
        "leader key released {} after the crash; {} answered 200 on /primary after {}",
        released.map_or("(not seen)".into(), |t| secs(t.seen - t_crash)),
        cluster.node(new).name(),
        secs(promoted.seen - t_crash)
    );
    let logs = cluster.dump_logs();
    // Released, not expired: well before the lease could have run out.
    assert!(
        promoted.seen - t_crash < ttl,
        "failover took {} (ttl {ttl:?}): the key was not released\n{logs}",
        secs(promoted.seen - t_crash)
    );
    let (holder2, rev2) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder2, cluster.node(new).name());
    assert!(
        rev2 > rev,
        "fencing token did not increase: {rev} -> {rev2}"
    );

    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    println!(
        "converged {} after the crash: primary {} on timeline {} (before: {} on {})",
        secs(t_crash.elapsed()),
        cluster.node(after.primary).name(),
        after.timeline,
        node.name(),
        before.timeline
    );
    // Its cached status may still say primary for a moment after the crash,
    // never once another node can have been promoted.
    assert!(
        !primaries.any_200(p, promoted.not_before),
        "the crashed primary answered 200 on /primary after the failover\n{}",
        cluster.dump_logs()
    );
    assert_eq!(after.primary, new);
    assert_eq!(after.timeline, before.timeline + 1);
}
