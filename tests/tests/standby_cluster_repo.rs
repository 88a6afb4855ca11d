//! A standby cluster fed from the primary cluster's repository alone: no network path
//! from B's PostgreSQL to A's (nothing in B's config names A's server).
//!
//! Site A (one member) archives into a filesystem repository (the streaming archiver,
//! with its live partial segment) and takes a base backup. Site B (two members, its own
//! etcd, the same scope, `noarchive`) has `standby_cluster: {restore_command: warden
//! wal-fetch ..., create_replica_methods: [warden_restore]}`: its first member restores
//! A's newest backup, then replays A's WAL from the repository as standby leader; the
//! other clones from it. Under a write load on A, B stays within a few seconds; then A
//! is killed and `promote-cluster` makes B writable: RPO and RTO are printed.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::backupkit::{repository, wait_archiver_streaming, wardenctl_json};
use warden_tests::bins::{warden_bin, wardenctl_command};
use warden_tests::process::run_bounded_input;
use warden_tests::workdir::WorkDir;
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const SCOPE: &str = "dr";
const FORM: Duration = Duration::from_secs(120);

fn max_id(port: u16) -> Option<i64> {
    sql::query_text(port, "SELECT coalesce(max(id), 0)::text FROM w")
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
}

#[test]
fn a_standby_cluster_fed_only_from_the_repository_follows_and_promotes() {
    let work = WorkDir::temp().unwrap();
    let (_repo, yaml) = repository(work.path()).unwrap();
    let a_yaml = yaml.clone();
    let mut a = Cluster::start(
        ClusterSpec::new(1)
            .scope(SCOPE)
            .without_haproxy()
            .customize(move |_, c| c.merge_yaml(&a_yaml).unwrap()),
    )
    .expect("start site A");
    a.wait_formed(FORM);
    let a_port = a.node(0).pg_port();
    wait_archiver_streaming(a_port);
    sql::execute(
        a_port,
        "CREATE TABLE w (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
    )
    .unwrap();
    wardenctl_json(&a.node(0).config_path(), &["backup", "create", "--json"]).expect("backup");

    // Site B: the same repository and scope, never archiving, no address of A.
    let b_dir = work.path().join("b");
    let wal_fetch = format!(
        "{} wal-fetch -c {} %f %p",
        warden_bin().unwrap().display(),
        b_dir.join("node1").join("warden.yml").display()
    );
    let b_yaml = yaml;
    let t_b = Instant::now();
    let b = Cluster::start(
        ClusterSpec::new(2)
            .scope(SCOPE)
            .without_haproxy()
            .dir(&b_dir)
            .customize(move |_, c| {
                c.merge_yaml(&b_yaml)
                    .unwrap()
                    .tag("noarchive", true)
                    .set(
                        "bootstrap.dcs.standby_cluster.restore_command",
                        wal_fetch.as_str(),
                    )
                    .set_yaml(
                        "bootstrap.dcs.standby_cluster.create_replica_methods",
                        "[warden_restore]",
                    )
                    .unwrap()
                    // A missing segment is asked for again after this long.
                    .set(
                        "bootstrap.dcs.postgresql.parameters.wal_retrieve_retry_interval",
                        "500ms",
                    )
            }),
    )
    .expect("start site B");
    let bl = wait_until(FORM, "B's standby leader", || {
        (0..2).find(|&i| b.node(i).status("/standby-leader") == Some(200))
    });
    let b_port = b.node(bl).pg_port();
    println!(
        "site B restored from the repository, standby leader {} after {:.1?}",
        b.node(bl).name(),
        t_b.elapsed()
    );
    assert_eq!(b.node(bl).status("/primary"), Some(503));
    let p = b.node(bl).patroni_json().unwrap();
    assert_eq!(p["role"], "standby_leader", "{p}");
    assert_eq!(p["standby_cluster"]["streaming"], false, "{p}");
    assert_eq!(
        sql::query_text(b_port, "SELECT count(*)::text FROM pg_stat_wal_receiver")
            .unwrap()
            .as_deref(),
        Some("0"),
        "B's leader has no WAL receiver: the repository is its only source"
    );
    wait_until(FORM, "B's replica runs", || {
        (b.node(1 - bl).status("/replica") == Some(200)).then_some(())
    });

    let writer = lag_under_load(a_port, b_port);
    promote_after_loss(&mut a, &b, &b_dir, b_port, writer);
}

/// Starts a write load on A and samples, for 10 s, how long the oldest acknowledged
/// write B's standby leader lacks has waited; returns the still running writer.
fn lag_under_load(a_port: u16, b_port: u16) -> Writer {
    let writer = Writer::start(
        a_port,
        "w",
        WriterOptions {
            pause_after_ack: Duration::from_millis(20),
            ..WriterOptions::default()
        },
    )
    .expect("writer on A");
    wait_until(Duration::from_secs(60), "B replays A's writes", || {
        (max_id(b_port)? > 0).then_some(())
    });
    let sampling = Instant::now();
    let mut worst = Duration::ZERO;
    while sampling.elapsed() < Duration::from_secs(10) {
        let acks = writer.acks();
        let seen = max_id(b_port).unwrap_or(0);
        // The oldest acknowledged write B does not have yet: how long it has waited.
        if let Some(first_missing) = acks.iter().find(|a| a.id > seen) {
            worst = worst.max(first_missing.sent.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("repository-only standby lag under load: worst {worst:.1?} over 10 s");
    assert!(
        worst < Duration::from_secs(10),
        "the repository-only standby fell {worst:?} behind"
    );

    writer
}

/// Kills A, promotes B with `promote-cluster`, prints RPO and RTO.
fn promote_after_loss(
    a: &mut Cluster,
    b: &Cluster,
    b_dir: &std::path::Path,
    b_port: u16,
    writer: Writer,
) {
    let t_kill = Instant::now();
    a.node_mut(0).kill(Signal::SIGKILL).expect("kill A");
    let acks = workload::acks_of(&writer.stop());
    let ctl = b_dir.join("ctl.yaml");
    b.write_ctl_config(&ctl).unwrap();
    let mut cmd = wardenctl_command().unwrap();
    cmd.arg("-c").arg(&ctl).args(["promote-cluster", SCOPE]);
    let out = run_bounded_input(&mut cmd, Some("y\n"), Duration::from_secs(120)).unwrap();
    println!("$ wardenctl promote-cluster\n{}{}", out.stdout, out.stderr);
    assert_eq!(out.code(), Some(0));
    assert!(out.stdout.contains("does not stream"), "{}", out.stdout);
    wait_until(Duration::from_secs(60), "a write on B", || {
        sql::execute(b_port, "INSERT INTO w (id) VALUES (-1)").ok()
    });
    let rto = t_kill.elapsed();
    let present = workload::ids_in(b_port, "w").unwrap();
    let lost = workload::lost(&acks, &present);
    let max_present = present.iter().copied().max().unwrap_or(0);
    assert!(
        lost.iter().all(|&id| id > max_present),
        "acknowledged rows missing inside what B replayed: {lost:?}"
    );
    let span = lost
        .first()
        .and_then(|f| acks.iter().find(|a| a.id == *f))
        .map_or(Duration::ZERO, |a| t_kill.duration_since(a.sent));
    println!(
        "REGION FAILOVER (repository-only standby): RPO {} of {} acknowledged rows missing \
         on B (the last {span:.1?} before the kill); RTO kill -> first write acknowledged on \
         B {rto:.1?}",
        lost.len(),
        acks.len()
    );
}
