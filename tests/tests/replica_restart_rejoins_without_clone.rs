//! A replica whose agent is stopped and started again keeps its data
//! directory (no new pg_basebackup) and catches up by streaming.

use std::time::Duration;

use warden_tests::process::is_alive;
use warden_tests::workdir::chown_to_postgres;
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(60);

#[test]
fn replica_restart_rejoins_without_clone() {
    let mut cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let (p, replicas) = cluster.formation().expect("formed");
    let r = replicas[0];
    let primary_port = cluster.node(p).pg_port();

    // A re-clone replaces the data directory, and with it this file.
    let marker = cluster.node(r).data_dir().join("warden-test-marker");
    std::fs::write(&marker, "kept across restart\n").unwrap();
    chown_to_postgres(&marker).unwrap();

    let postmaster = cluster
        .node(r)
        .postmaster_pid()
        .expect("replica's PostgreSQL runs");
    let status = cluster
        .node_mut(r)
        .sigterm_and_wait(STOP_TIMEOUT)
        .expect("agent stops on SIGTERM");
    assert!(status.success(), "agent exit status {status}");
    assert!(
        !is_alive(postmaster),
        "PostgreSQL kept running after its agent stopped"
    );
    assert!(
        !cluster.node(r).data_dir().join("postmaster.pid").exists(),
        "postmaster.pid left behind: PostgreSQL was not stopped cleanly"
    );
    assert_eq!(
        cluster.node(r).status("/health"),
        None,
        "REST API still up after exit"
    );

    // Written while the replica is down: it must fetch this by streaming.
    sql::execute(
        primary_port,
        "CREATE TABLE while_down (id int PRIMARY KEY); INSERT INTO while_down SELECT generate_series(1, 1000);",
    )
    .expect("write on the primary");
    assert!(
        cluster.node(p).is_primary(),
        "primary changed while a replica was down"
    );

    cluster.node_mut(r).start().expect("start the agent again");
    wait_until(T, "restarted replica answers 200 on /replica", || {
        cluster.node(r).is_replica().then_some(())
    });
    let port = cluster.node(r).pg_port();
    wait_until(
        T,
        "rows written while down reach the restarted replica",
        || {
            (sql::query_text(port, "SELECT count(*)::text FROM while_down").ok()?? == "1000")
                .then_some(())
        },
    );
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker file gone: the replica was re-cloned"),
        "kept across restart\n"
    );
    cluster.wait_replicas_streaming(T);
    assert_eq!(
        cluster.primary().map(|n| n.name().to_string()),
        Some(cluster.node(p).name().to_string())
    );
}
