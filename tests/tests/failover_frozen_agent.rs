//! The primary's agent is frozen with SIGSTOP while its PostgreSQL keeps
//! running: nothing in the agent can renew the lease or fence, so the guard
//! process (`warden guard`, which the agent fed the lease deadline) must kill
//! the postmaster before etcd can expire the lease and a replica can be
//! promoted. After SIGCONT the old primary must rejoin as a replica.
//!
//! By design the guard fires at the local deadline + margin/2 (last renewal
//! start + ttl − margin/2, i.e. 9 s for ttl 10), at least 1 s before etcd can
//! expire the lease.
//!
//! Besides a stream of short direct writes (the first must fail before the
//! promotion), a transaction is kept *executing* across the fault
//! ([`HeldTransaction`]) and allowed to commit only after the promotion: a
//! fence that leaves any PostgreSQL process of the old primary running lets
//! such a commit be acknowledged. So every process of the old instance
//! (postmaster and children, listed before the fault) must be gone by the
//! time another node is promoted.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::failover::{
    postgres_processes, secs, since, survivors, FenceOrder, HeldTransaction,
};
use warden_tests::workload::{self, Outcome, Writer, WriterOptions};
use warden_tests::{wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
const TTL: u32 = 10;

#[test]
fn frozen_primary_agent_stops_writes_before_another_is_promoted() {
    let mut cluster =
        Cluster::start(ClusterSpec::new(3).ttl(TTL).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let p = before.primary;
    let old_port = cluster.node(p).pg_port();
    let old_name = cluster.node(p).name().to_string();
    let (holder, rev) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder, old_name);

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

    let t_stop = Instant::now();
    cluster
        .node(p)
        .signal(Signal::SIGSTOP)
        .expect("SIGSTOP the agent");

    let ttl = Duration::from_secs(u64::from(TTL));
    let order = FenceOrder::measure(&writer, &primaries, p, t_stop, 3 * ttl);
    // Only now, with another node promoted, may the long transaction try to
    // commit: if its backend survived the fence, the COMMIT is acknowledged.
    let orphan = held.backend_alive();
    let surviving = survivors(&old_processes);
    let held_outcome = held.release_and_wait(Duration::from_secs(30));
    let outcomes = writer.stop();
    primaries.stop();
    let order = order.with_final_outcomes(&outcomes, old_port);
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name().into()).collect();
    println!("{}", order.report(&names));
    println!(
        "fence margin {}",
        order.margin().map_or("none".into(), secs)
    );
    let logs = cluster.dump_logs();
    order.assert_writes_stopped_before_promotion(&names, &logs);
    order.assert_old_instance_fenced(
        t_stop,
        &held,
        held_outcome.as_ref(),
        orphan,
        &surviving,
        &logs,
    );
    let new = order.new;
    let (holder2, rev2) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder2, cluster.node(new).name());
    assert!(
        rev2 > rev,
        "fencing token did not increase: {rev} -> {rev2}"
    );

    let t_cont = Instant::now();
    cluster
        .node_mut(p)
        .signal(Signal::SIGCONT)
        .expect("SIGCONT the agent");
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    println!(
        "converged {} after SIGCONT: primary {} on timeline {} (before: {old_name} on {}); \
         old primary re-cloned: {}",
        secs(t_cont.elapsed()),
        cluster.node(after.primary).name(),
        after.timeline,
        before.timeline,
        !cluster.node(p).failed_data_dirs().is_empty(),
    );
    assert_eq!(after.primary, new, "the primary changed after SIGCONT");
    assert_eq!(after.timeline, before.timeline + 1);

    // The guard kills PostgreSQL outright, so writes acknowledged just before
    // may not have reached a replica: report, do not assert.
    let acks: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ack(a) => Some(*a),
            Outcome::Fail(_) => None,
        })
        .collect();
    let present = workload::ids_in(cluster.node(new).pg_port(), "direct_writes").unwrap();
    println!(
        "{} writes acknowledged, {} lost (last ack at {})",
        acks.len(),
        workload::lost(&acks, &present).len(),
        since(t_stop, order.last_ack.acked)
    );
}
