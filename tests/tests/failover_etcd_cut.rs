//! The primary is cut off from etcd while clients (and its replicas) still
//! reach it: it must stop acknowledging writes before any other node can be
//! promoted, then rejoin as a replica once etcd is back.
//!
//! Only the primary's etcd proxies are cut. Its PostgreSQL and REST proxies
//! stay open on purpose: this is the common real partition (the leader loses
//! etcd, the database network is fine), and the hardest one for safety —
//! replicas keep streaming from it and can ask it over REST whether it is
//! still primary, so nothing but the primary's own lease deadline stops it
//! from accepting writes. The cut closes its etcd connections at once and
//! refuses new ones, so the agent knows immediately; it must still keep its
//! promise about *when* it stops writing. (A full partition, PostgreSQL
//! included, is exercised by `failover_node_crash_rejoin`.)
//!
//! By design the fence (fast stop at start of last renewal + ttl − margin,
//! margin 2 s for ttl 10) comes at least 2 s before etcd can expire the lease
//! (last renewal as received + ttl), and a replica can only be promoted after
//! that; the assertions use conservative bounds on both sides
//! ([`FenceOrder`]). As in `failover_frozen_agent`, a transaction executing
//! across the fault may not commit after the promotion, and no process of
//! the old PostgreSQL instance may still run then.

use std::time::{Duration, Instant};

use warden_tests::failover::{
    postgres_processes, secs, since, survivors, FenceOrder, HeldTransaction,
};
use warden_tests::workload::{self, Outcome, Writer, WriterOptions};
use warden_tests::{wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
const TTL: u32 = 10;

#[test]
fn primary_cut_off_from_etcd_stops_writes_before_another_is_promoted() {
    let cluster = Cluster::start(
        ClusterSpec::new(3)
            .ttl(TTL)
            .with_proxies()
            .without_haproxy(),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let p = before.primary;
    let old = cluster.node(p);
    let old_port = old.pg_port();
    let (holder, rev) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder, old.name());
    assert_eq!(old.fencing_token(), Some(rev), "/patroni fencing token");

    let writer = Writer::start(old_port, "direct_writes", WriterOptions::default())
        .expect("start writing to the primary");
    wait_until(Duration::from_secs(10), "writes acknowledged", || {
        (writer.acks().len() >= 20).then_some(())
    });
    let mut held =
        HeldTransaction::start(cluster.node(p), "held_tx").expect("start a long transaction");
    let primaries = cluster.watch_primaries();
    // Every process of the old primary's PostgreSQL: none may outlive the
    // fence, or it can still acknowledge a commit (PostgreSQL's children are
    // not in the postmaster's process group: each calls setsid()).
    let old_processes = postgres_processes(cluster.node(p));
    let leader = cluster.watch_leader_key();

    let t_cut = Instant::now();
    cluster.proxies(p).cut_etcd();

    let ttl = Duration::from_secs(u64::from(TTL));
    let order = FenceOrder::measure(&writer, &primaries, p, t_cut, 3 * ttl);
    // Only now, with another node promoted, may the long transaction try to
    // commit: if its backend survived the fence, the COMMIT is acknowledged.
    let orphan = held.backend_alive();
    let surviving = survivors(&old_processes);
    let held_outcome = held.release_and_wait(Duration::from_secs(30));
    let old_not_200 = primaries
        .first_not_200(p, t_cut)
        .expect("old primary's /primary stopped answering 200");
    let key_changed = leader.first_change_from(t_cut, &(holder, rev));
    let outcomes = writer.stop();
    primaries.stop();
    leader.stop();
    let order = order.with_final_outcomes(&outcomes, old_port);
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name().into()).collect();
    println!("{}", order.report(&names));
    println!(
        "old /primary not 200 at {}; leader key changed at {}; fence margin {}",
        since(t_cut, old_not_200.seen),
        key_changed.map_or("(not seen)".into(), |t| since(t_cut, t.seen)),
        order.margin().map_or("none".into(), secs),
    );
    let logs = cluster.dump_logs();
    order.assert_writes_stopped_before_promotion(&names, &logs);
    assert!(
        old_not_200.seen < order.promoted.not_before,
        "the old primary still answered 200 on /primary after another node may have been promoted\n{logs}"
    );
    order.assert_old_instance_fenced(
        t_cut,
        &held,
        held_outcome.as_ref(),
        orphan,
        &surviving,
        &logs,
    );
    let new = order.new;

    // The new leader holds the key with a new fencing token.
    let (holder2, rev2) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder2, cluster.node(new).name());
    assert!(
        rev2 > rev,
        "fencing token did not increase: {rev} -> {rev2}"
    );

    let t_heal = Instant::now();
    cluster.proxies(p).heal_etcd();
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    println!(
        "converged {} after the heal: primary {} on timeline {} (before: {} on {})",
        secs(t_heal.elapsed()),
        cluster.node(after.primary).name(),
        after.timeline,
        old.name(),
        before.timeline
    );
    assert_eq!(after.primary, new, "the primary changed after the heal");
    assert_eq!(after.timeline, before.timeline + 1);
    assert!(
        old.failed_data_dirs().is_empty(),
        "old primary was re-cloned: {:?}",
        old.failed_data_dirs()
    );

    // The fence is a fast shutdown, which ships all WAL to connected
    // walsenders before it completes; the replication link was never cut, so
    // no acknowledged write may be missing on the new primary.
    let acks: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ack(a) => Some(*a),
            Outcome::Fail(_) => None,
        })
        .collect();
    let present = workload::ids_in(cluster.node(new).pg_port(), "direct_writes").unwrap();
    let lost = workload::lost(&acks, &present);
    println!("{} writes acknowledged, {} lost", acks.len(), lost.len());
    assert!(
        lost.is_empty(),
        "acknowledged writes lost: {lost:?}\n{}",
        cluster.dump_logs()
    );
}
