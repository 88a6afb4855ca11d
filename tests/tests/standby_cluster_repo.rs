//! A standby cluster fed from the primary cluster's repository alone: no network path
//! from B's PostgreSQL to A's (nothing in B's config names A's server).
//!
//! Site A (one member, scope `dr`) archives into a filesystem repository (the streaming
//! archiver, with its live partial segment) copied to a second one (`offsite`), and
//! takes a base backup; once the copy holds it, the backup is deleted from the main
//! repository. Site B (two members, its own etcd, its own scope `dr-b`, archiving) has
//! `standby_cluster: {restore_command: warden wal-fetch --scope dr ...,
//! create_replica_methods: [warden_restore]}` and `postgresql.warden_restore:
//! {repository: offsite, scope: dr}`: its first member restores A's backup from the copy
//! (the only place it still is), then replays A's WAL from the main repository as
//! standby leader; the other clones from it; B's own archiver writes under `dr-b`. Under
//! a write load on A, B stays within a few seconds; then A is killed and
//! `promote-cluster` makes B writable: RPO and RTO are printed.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::backupkit::{backup_yaml, key_file, wait_archiver_streaming, wardenctl_json};
use warden_tests::bins::{warden_bin, wardenctl_command};
use warden_tests::process::run_bounded_input;
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const SCOPE: &str = "dr";
/// Site B's own scope: it reads A's objects under [`SCOPE`] and archives under this.
const B_SCOPE: &str = "dr-b";
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
    let repo = work.path().join("repo");
    let offsite = work.path().join("offsite");
    create_node_dir(&repo).unwrap();
    create_node_dir(&offsite).unwrap();
    let copies = format!(
        "  copies:\n    - name: offsite\n      repository: {{type: filesystem, path: {}, \
         timeout: 10s}}\n",
        offsite.display()
    );
    let yaml = backup_yaml(&repo, &key_file(work.path()).unwrap(), &copies);
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
    backup_only_in_the_copy(&a, &repo);

    // Site B: its own scope and archive, A's objects read under A's scope, no address
    // of A.
    let b_dir = work.path().join("b");
    let wal_fetch = format!(
        "{} wal-fetch -c {} --scope {SCOPE} %f %p",
        warden_bin().unwrap().display(),
        b_dir.join("node1").join("warden.yml").display()
    );
    let b_yaml = yaml;
    let t_b = Instant::now();
    let b = Cluster::start(
        ClusterSpec::new(2)
            .scope(B_SCOPE)
            .without_haproxy()
            .dir(&b_dir)
            .customize(move |_, c| {
                c.merge_yaml(&b_yaml)
                    .unwrap()
                    .set("postgresql.warden_restore.repository", "offsite")
                    .set("postgresql.warden_restore.scope", SCOPE)
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
    b_archives_under_its_own_scope(&repo);

    promote_after_loss(&mut a, &b, &b_dir, b_port, writer);
}

/// A base backup of A, then, once the copy `offsite` holds it, the main repository
/// loses it: B can only bootstrap from the copy.
fn backup_only_in_the_copy(a: &Cluster, repo: &std::path::Path) {
    let a_cfg = a.node(0).config_path();
    let backup = wardenctl_json(&a_cfg, &["backup", "create", "--json"]).expect("backup");
    let id = backup["id"].as_str().expect("backup id").to_owned();
    wait_until(Duration::from_secs(60), "the backup in the copy", || {
        let list = wardenctl_json(
            &a_cfg,
            &["backup", "list", "--json", "--repository", "offsite"],
        )
        .ok()?;
        list["backups"]
            .as_array()?
            .iter()
            .any(|b| b["id"] == id.as_str())
            .then_some(())
    });
    for sysid in std::fs::read_dir(repo.join(SCOPE)).unwrap() {
        let backups = sysid.unwrap().path().join("backups");
        if backups.exists() {
            std::fs::remove_dir_all(&backups).unwrap();
        }
    }
}

/// B's archiver writes B's WAL under B's own scope, beside A's objects of the same
/// system identifier (B is a physical copy of A).
fn b_archives_under_its_own_scope(repo: &std::path::Path) {
    wait_until(
        Duration::from_secs(60),
        "B's archive under its own scope",
        || {
            let sysid = std::fs::read_dir(repo.join(B_SCOPE))
                .ok()?
                .next()?
                .ok()?
                .path();
            // Complete segments under wal/, the live partial under wal_live/.
            let files = ["wal", "wal_live"]
                .iter()
                .filter_map(|d| std::fs::read_dir(sysid.join(d)).ok())
                .flatten()
                .filter_map(|tl| std::fs::read_dir(tl.ok()?.path()).ok())
                .map(Iterator::count)
                .sum::<usize>();
            (files > 0).then_some(())
        },
    );
    assert!(
        std::fs::read_dir(
            repo.join(SCOPE).join(
                std::fs::read_dir(repo.join(B_SCOPE))
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .file_name()
            )
        )
        .is_ok(),
        "B is a physical copy of A: the same system identifier"
    );
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
    cmd.arg("-c").arg(&ctl).args(["promote-cluster", B_SCOPE]);
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
