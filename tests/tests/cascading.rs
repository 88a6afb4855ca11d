//! Patroni's `replicatefrom` and `nostream` tags against real processes, on one
//! four-node cluster: node1 leads (the others are tagged `nofailover`, so only it
//! bootstraps); node2 replicates from it; node3 cascades from node2
//! (`replicatefrom: node2`); node4 never streams (`nostream`) and replays the WAL
//! archive through its `recovery_conf.restore_command`.
//!
//! - node3 streams from node2, not from the leader, and `wardenctl topology` shows it
//!   under node2; node2 keeps the slot node3 uses, and the leader keeps one for node3
//!   too, moved along with node3's position;
//! - node4 is not connected to anyone, its state is `in archive recovery`, no slot is
//!   kept for it, and it still gets the leader's writes from the archive;
//! - when node2 dies and its member key expires, node3 falls back to the leader.

use std::time::Duration;

use warden_tests::workdir::{chown_to_postgres, WorkDir};
use warden_tests::{bins, process, sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(60);

/// `application_name`s streaming from the server on `port`.
fn streaming_from(port: u16) -> Vec<String> {
    let Ok(mut c) = sql::connect(port) else {
        return Vec::new();
    };
    c.query(
        "SELECT application_name FROM pg_stat_replication ORDER BY 1",
        &[],
    )
    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
    .unwrap_or_default()
}

fn slots_on(port: u16) -> Vec<(String, bool, Option<String>)> {
    let Ok(mut c) = sql::connect(port) else {
        return Vec::new();
    };
    c.query(
        "SELECT slot_name::text, active, restart_lsn::text FROM pg_replication_slots ORDER BY 1",
        &[],
    )
    .map(|rows| {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    })
    .unwrap_or_default()
}

#[test]
fn replicatefrom_cascades_and_nostream_replays_the_archive() {
    let scratch = WorkDir::temp().expect("scratch dir");
    let archive = scratch.path().join("archive");
    std::fs::create_dir(&archive).expect("archive dir");
    chown_to_postgres(&archive).expect("chown archive");
    let arch = archive.display().to_string();
    let mut cluster = Cluster::start(ClusterSpec::new(4).without_haproxy().customize(
        move |i, c| {
            let c = c
                .set("bootstrap.dcs.postgresql.parameters.archive_mode", "on")
                .set(
                    "bootstrap.dcs.postgresql.parameters.archive_command",
                    format!("cp %p {arch}/%f").as_str(),
                );
            match i {
                0 => c,
                1 => c.tag("nofailover", true),
                2 => c.tag("nofailover", true).tag("replicatefrom", "node2"),
                _ => c.tag("nofailover", true).tag("nostream", true).set(
                    "postgresql.recovery_conf.restore_command",
                    format!("cp {arch}/%f %p").as_str(),
                ),
            }
        },
    ))
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let (leader, _) = cluster.wait_leader(T);
    assert_eq!(leader, "node1");
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.pg_port()).collect();
    let port = |i: usize| ports[i];

    // node3 streams from node2; the leader serves node2 only.
    wait_until(T, "node2 streams from node1 and node3 from node2", || {
        (streaming_from(port(0)) == ["node2"] && streaming_from(port(1)) == ["node3"]).then_some(())
    });
    let sender = sql::query_text(
        port(2),
        "SELECT sender_port::text FROM pg_stat_wal_receiver",
    )
    .unwrap();
    assert_eq!(sender, Some(port(1).to_string()));

    // Slots: node2 holds node3's (in use); the leader holds node3's too, moved along
    // with node3's position, and none for the nostream node4.
    wait_until(T, "the cascaded slot is active on node2", || {
        slots_on(port(1))
            .iter()
            .any(|(n, active, _)| n == "node3" && *active)
            .then_some(())
    });
    let on_leader = slots_on(port(0));
    assert!(
        on_leader
            .iter()
            .any(|(n, active, lsn)| n == "node3" && !active && lsn.is_some()),
        "{on_leader:?}"
    );
    for i in 0..3 {
        let slots = slots_on(port(i));
        assert!(
            !slots.iter().any(|(n, _, _)| n == "node4"),
            "node{} keeps a slot for the nostream member: {slots:?}",
            i + 1
        );
    }

    // wardenctl topology: node3 under node2.
    let mut cmd = bins::wardenctl_command().expect("wardenctl");
    cmd.arg("-c")
        .arg(cluster.node(0).config_path())
        .arg("topology");
    let out = process::run_bounded(&mut cmd, Duration::from_secs(30)).expect("topology");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = |name: &str| lines.iter().position(|l| l.contains(&format!(" {name} ")));
    let indent = |l: &str| l.find('+').unwrap_or(0);
    let (mid, down) = (at("node2").unwrap(), at("node3").unwrap());
    assert!(
        down > mid && indent(lines[down]) > indent(lines[mid]),
        "{}",
        out.stdout
    );

    // node4 replays the archive: a write on the leader reaches it once archived.
    let key = cluster.member_key("node4").expect("node4's key");
    assert_eq!(key["replication_state"], "in archive recovery", "{key}");
    sql::execute(port(0), "CREATE TABLE from_archive AS SELECT 42 AS x").unwrap();
    sql::execute(port(0), "SELECT pg_switch_wal()").unwrap();
    wait_until(T, "node4 replayed the archived write", || {
        sql::query_text(port(3), "SELECT x::text FROM from_archive")
            .ok()
            .flatten()
    });
    assert!(
        !streaming_from(port(0)).contains(&"node4".to_string()),
        "node4 streams"
    );
    let status =
        sql::query_text(port(3), "SELECT count(*)::text FROM pg_stat_wal_receiver").unwrap();
    assert_eq!(status.as_deref(), Some("0"), "node4 has a WAL receiver");

    // node2 dies: once its key is gone, node3 follows the leader.
    cluster.node_mut(1).kill_hard();
    wait_until(T, "node3 streams from the leader", || {
        streaming_from(port(0))
            .contains(&"node3".to_string())
            .then_some(())
    });
    println!("node3 cascaded from node2, then fell back to the leader; node4 replayed the archive");
    cluster.node_mut(1).start().expect("restart node2");
    wait_until(T, "node3 cascades from node2 again", || {
        (streaming_from(port(1)) == ["node3"]).then_some(())
    });
}
