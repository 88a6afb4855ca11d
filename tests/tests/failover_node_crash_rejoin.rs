//! Node crash of the primary with diverged timelines, then rejoin by rewind.
//!
//! The primary is first partitioned completely (its etcd, PostgreSQL and
//! REST proxies cut): replicas stop receiving its WAL, while a client still
//! writes to it directly and gets acknowledgements — those commits exist only
//! on the old primary. Then the whole node is SIGKILLed (agent, guard and
//! postmaster at once). Once the lease expires a replica is promoted onto a
//! new timeline that forks before those commits. Finally the partition heals
//! and the old node is restarted: it must notice that its timeline diverged,
//! rewind with pg_rewind from the new leader (not re-clone: the data
//! directory stays the same directory, and no `data.failed-*` appears) and
//! stream on the new timeline, without the diverged commits.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::failover::{secs, since};
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
const TTL: u32 = 10;
/// Writes the old primary must acknowledge while partitioned.
const DIVERGED_WRITES: usize = 20;

#[test]
fn crashed_primary_with_diverged_timeline_rejoins_by_rewind() {
    let mut cluster = Cluster::start(
        ClusterSpec::new(3)
            .ttl(TTL)
            .with_proxies()
            .without_haproxy(),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let p = before.primary;
    let old_name = cluster.node(p).name().to_string();
    let old_port = cluster.node(p).pg_port();
    let sysid = cluster
        .node(p)
        .system_identifier()
        .expect("system identifier");
    let data_inode = std::fs::metadata(cluster.node(p).data_dir())
        .expect("old primary's data dir")
        .ino();
    let (_, rev) = cluster.wait_leader(Duration::from_secs(10));

    let writer = Writer::start(old_port, "direct_writes", WriterOptions::default())
        .expect("start writing to the primary");
    wait_until(Duration::from_secs(10), "writes acknowledged", || {
        (writer.acks().len() >= 20).then_some(())
    });
    let primaries = cluster.watch_primaries();

    // Partition: the old primary keeps accepting writes that nobody receives.
    let t_cut = Instant::now();
    cluster.proxies(p).isolate();
    // Bounded by the fence (about ttl − margin after the last renewal).
    wait_until(
        Duration::from_secs(6),
        "the partitioned primary acknowledges writes",
        || (writer.acks_since(t_cut).len() >= DIVERGED_WRITES).then_some(()),
    );
    let t_kill = Instant::now();
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the node");
    let outcomes = writer.stop();
    let acks = workload::acks_of(&outcomes);
    let after_cut: Vec<i64> = acks
        .iter()
        .filter(|a| a.sent > t_cut)
        .map(|a| a.id)
        .collect();
    println!(
        "partitioned {old_name} at 0 s; it acknowledged {} writes after the cut; node killed at {}",
        after_cut.len(),
        since(t_cut, t_kill)
    );

    let ttl = Duration::from_secs(u64::from(TTL));
    let (new, promoted) = wait_until(3 * ttl, "another node answers 200 on /primary", || {
        primaries.first_other_200(p, t_kill)
    });
    primaries.stop();
    let new_name = cluster.node(new).name().to_string();
    println!(
        "{new_name} answered 200 on /primary {} after the kill",
        secs(promoted.seen - t_kill)
    );
    let (holder, rev2) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder, new_name);
    assert!(rev2 > rev);
    // /patroni may still show the replica's last probe for a moment after
    // the promotion is published; wait for the new timeline to appear.
    let new_tl = wait_until(Duration::from_secs(30), "new primary's timeline", || {
        cluster
            .node(new)
            .timeline()
            .filter(|&t| t > before.timeline)
    });
    assert_eq!(new_tl, before.timeline + 1);

    // The timelines really diverged: commits acknowledged by the partitioned
    // primary are not on the new one.
    let present = workload::ids_in(cluster.node(new).pg_port(), "direct_writes").unwrap();
    let diverged: Vec<i64> = after_cut
        .iter()
        .copied()
        .filter(|id| present.binary_search(id).is_err())
        .collect();
    println!(
        "{} of them are not on {new_name}: the old primary's timeline diverged",
        diverged.len()
    );
    assert!(
        !diverged.is_empty(),
        "every write acknowledged after the partition reached the new primary: no divergence to rewind\n{}",
        cluster.dump_logs()
    );

    cluster.proxies(p).heal();
    let t_restart = Instant::now();
    cluster.node_mut(p).start().expect("restart the old node");
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    println!(
        "{old_name} rejoined {} after its restart; cluster converged on {} timeline {}",
        secs(t_restart.elapsed()),
        cluster.node(after.primary).name(),
        after.timeline
    );
    assert_eq!(after.primary, new);
    assert_eq!(after.timeline, new_tl);

    assert_rewound_in_place(&cluster, p, new, data_inode, &sysid, &diverged);
}

/// The old node was rewound, not re-cloned or merged: the same data directory, the
/// same system identifier, and exactly the new primary's rows.
fn assert_rewound_in_place(
    cluster: &Cluster,
    p: usize,
    new: usize,
    data_inode: u64,
    sysid: &str,
    diverged: &[i64],
) {
    let old_name = cluster.node(p).name();
    let old = cluster.node(p);
    let failed = old.failed_data_dirs();
    assert!(
        failed.is_empty(),
        "{old_name} was re-cloned instead of rewound (old data dir kept as {failed:?})\n{}",
        cluster.dump_logs()
    );
    assert_eq!(
        std::fs::metadata(old.data_dir()).unwrap().ino(),
        data_inode,
        "{old_name}'s data directory was replaced\n{}",
        cluster.dump_logs()
    );
    for n in cluster.nodes() {
        assert_eq!(
            n.system_identifier().unwrap(),
            sysid,
            "{} has another system identifier",
            n.name()
        );
    }
    // Rewound, not merged: the diverged commits are gone on the old node
    // too, which now has exactly the new primary's rows.
    let on_new = workload::ids_in(cluster.node(new).pg_port(), "direct_writes").unwrap();
    let on_old = wait_until(
        Duration::from_secs(30),
        "the old node has the new primary's rows",
        || {
            let ids = workload::ids_in(old.pg_port(), "direct_writes").ok()?;
            (ids == on_new).then_some(ids)
        },
    );
    assert!(diverged.iter().all(|id| on_old.binary_search(id).is_err()));
}
