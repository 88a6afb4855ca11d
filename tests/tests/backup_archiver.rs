//! Streamed WAL archiving by the elected archiver (issue 6, part B): a 3-node
//! cluster with one filesystem repository shared by every member and no
//! `archive_command` anywhere.
//!
//! - The `warden/archiver` key names a streaming replica, and only it says
//!   `warden.archiver: true` in `/patroni`.
//! - WAL written on the primary (then `pg_switch_wal()`) appears in the repository.
//! - The archiver's node is killed: another member takes the key once the dead
//!   agent's lease expires and archiving goes on with no gap in segment names.
//! - WAL is written after the last switch, then the primary is killed: the survivor
//!   is promoted and the new timeline's `.history`, the old timeline's final
//!   `.partial` and new segments appear, still without a gap.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::backupkit::{
    archived, archiver_key, repository, segno, start_formed, wait_archived, ARCHIVE_TIMEOUT,
};
use warden_tests::workdir::WorkDir;
use warden_tests::{sql, wait_until, Cluster};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// A lease expiry (ttl 10) plus a turn plus pg_receivewal's start.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(40);

/// Complete segments per timeline, as segment numbers.
fn segments_by_timeline(names: &[String]) -> BTreeMap<String, Vec<u64>> {
    let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for n in names.iter().filter(|n| n.len() == 24) {
        by.entry(n[..8].to_string()).or_default().push(segno(n));
    }
    for v in by.values_mut() {
        v.sort_unstable();
    }
    by
}

fn assert_contiguous(segs: &[u64], names: &[String]) {
    for w in segs.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "gap in the archive between segment numbers {} and {}: {names:?}",
            w[0],
            w[1]
        );
    }
}

/// Writes a little WAL on the primary and ends the segment; returns its name.
fn write_and_switch(port: u16, round: u32) -> String {
    sql::execute(
        port,
        &format!("INSERT INTO archived SELECT {round}, g FROM generate_series(1, 1000) g"),
    )
    .unwrap();
    sql::query_text(port, "SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap()
        .unwrap()
}

/// The member whose `/patroni` says it archives, if exactly one does.
fn archiver_by_api(cluster: &Cluster, alive: &[usize]) -> Option<usize> {
    let flagged: Vec<usize> = alive
        .iter()
        .copied()
        .filter(|&i| cluster.node(i).patroni().is_some_and(|p| p.is_archiver()))
        .collect();
    (flagged.len() == 1).then(|| flagged[0])
}

#[test]
fn archiver_streams_wal_hands_over_and_follows_a_failover_without_gaps() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let (mut cluster, primary) = start_formed(3, yaml, FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    sql::execute(port, "CREATE TABLE archived (round int, n int)").unwrap();

    // The archiver is a streaming replica, the same in etcd and in /patroni. (The
    // primary may hold the key first, while no replica streams yet; it hands over.)
    let all = [0, 1, 2];
    let first = wait_until(HANDOVER_TIMEOUT, "a replica archives", || {
        let i = archiver_by_api(&cluster, &all)?;
        (i != primary && archiver_key(&cluster).as_deref() == Some(cluster.node(i).name()))
            .then_some(i)
    });
    let first_name = cluster.node(first).name().to_string();
    println!("archiver: {first_name}");

    let seg = write_and_switch(port, 1);
    wait_archived(&repo, &seg);
    let seg = write_and_switch(port, 2);
    wait_archived(&repo, &seg);

    // Kill the archiver's node: the other replica takes over once its lease expires.
    cluster
        .node_mut(first)
        .kill(Signal::SIGKILL)
        .expect("kill the archiver's node");
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != first).collect();
    // WAL written while nobody archives must not be lost.
    let during = write_and_switch(port, 3);
    let second = wait_until(HANDOVER_TIMEOUT, "another member archives", || {
        let i = archiver_by_api(&cluster, &alive)?;
        (archiver_key(&cluster).as_deref() == Some(cluster.node(i).name())).then_some(i)
    });
    assert_ne!(
        second, primary,
        "the remaining replica archives, not the primary"
    );
    println!("archiver after the kill: {}", cluster.node(second).name());
    wait_archived(&repo, &during);
    let seg = write_and_switch(port, 4);
    wait_archived(&repo, &seg);
    let names = archived(&repo);
    let tl1 = segments_by_timeline(&names)["00000001"].clone();
    assert_contiguous(&tl1, &names);

    // WAL after the last switch, on the archiver's node too: timeline 1 then ends
    // inside a segment, whose tail must be archived as `.partial`.
    sql::execute(
        port,
        "INSERT INTO archived SELECT 99, g FROM generate_series(1, 1000) g",
    )
    .unwrap();
    let replica_port = cluster.node(second).pg_port();
    wait_until(
        ARCHIVE_TIMEOUT,
        "the last rows on the archiver's node",
        || {
            let n = sql::query_text(
                replica_port,
                "SELECT count(*)::text FROM archived WHERE round = 99",
            )
            .ok()??;
            (n == "1000").then_some(())
        },
    );

    // Failover: kill the primary; the archiver is promoted, keeps the role (no
    // healthy replica is left) and follows the timeline switch.
    cluster
        .node_mut(primary)
        .kill(Signal::SIGKILL)
        .expect("kill the primary's node");
    let new_port = cluster.node(second).pg_port();
    wait_until(HANDOVER_TIMEOUT, "the survivor is promoted", || {
        (!sql::is_in_recovery(new_port).ok()?).then_some(())
    });
    wait_archived(&repo, "00000002.history");
    let seg = write_and_switch(new_port, 5);
    assert!(seg.starts_with("00000002"), "{seg}");
    wait_archived(&repo, &seg);

    let names = archived(&repo);
    let by = segments_by_timeline(&names);
    let tl1 = &by["00000001"];
    assert_contiguous(tl1, &names);
    let tl2 = &by["00000002"];
    assert_contiguous(tl2, &names);
    // The new timeline starts in the segment where the old one ended: its final
    // `.partial`, archived as such, or its last complete segment's successor.
    let partial: Vec<u64> = names
        .iter()
        .filter(|n| n.starts_with("00000001") && n.ends_with(".partial"))
        .map(|n| segno(n))
        .collect();
    let switch_seg = tl2[0];
    assert_eq!(
        partial,
        vec![*tl1.last().unwrap() + 1],
        "timeline 1's final .partial follows its last complete segment: {names:?}"
    );
    assert_eq!(
        switch_seg, partial[0],
        "timeline 2 starts in the segment where timeline 1 ended: {names:?}"
    );
    println!("archived: {names:?}");
}
