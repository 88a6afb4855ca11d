//! Bootstrap from the repository (issue 6): a cluster's backups and WAL outlive it.
//! Cluster A takes a backup and archives more WAL, then is gone (agents, data
//! directories and etcd). Cluster B, same scope, configured with
//! `bootstrap.method: warden_restore`, is created from A's repository instead of
//! initdb: its leader has every row A wrote (including the one after the backup,
//! from the archived WAL), keeps A's system identifier, and its replica clones
//! from it as usual.

use std::time::Duration;

use warden_tests::backupkit::{
    backup_spec, repository, start_formed, switch_and_wait_archived, wardenctl_json,
};
use warden_tests::workdir::WorkDir;
use warden_tests::{sql, wait_until, Cluster};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const SCOPE: &str = "phoenix";

fn rows(port: u16) -> Option<String> {
    sql::query_text(
        port,
        "SELECT string_agg(name, ',' ORDER BY name) FROM survivors",
    )
    .ok()?
}

#[test]
fn a_new_cluster_is_bootstrapped_from_the_repository() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();

    let a_yaml = yaml.clone();
    let mut a = Cluster::start(backup_spec(1, a_yaml).scope(SCOPE)).expect("start cluster A");
    a.wait_formed(FORM_TIMEOUT);
    let port = a.node(0).pg_port();
    let sysid = a.node(0).system_identifier().unwrap();
    sql::execute(
        port,
        "CREATE TABLE survivors (name text); INSERT INTO survivors VALUES ('in-backup')",
    )
    .unwrap();
    wardenctl_json(&a.node(0).config_path(), &["backup", "create", "--json"]).expect("backup");
    sql::execute(port, "INSERT INTO survivors VALUES ('in-wal')").unwrap();
    switch_and_wait_archived(port, &repo);
    a.stop(Duration::from_secs(30));
    drop(a);

    let b_yaml = format!("{yaml}bootstrap:\n  method: warden_restore\n");
    let b = Cluster::start(backup_spec(2, b_yaml).scope(SCOPE)).expect("start cluster B");
    b.wait_formed(FORM_TIMEOUT);
    let formed = b.assert_converged(FORM_TIMEOUT);
    let leader = b.node(formed.primary);
    assert_eq!(
        rows(leader.pg_port()).as_deref(),
        Some("in-backup,in-wal"),
        "the new cluster has the backup's rows and the archived WAL's"
    );
    assert_eq!(leader.system_identifier().unwrap(), sysid);
    for r in (0..2).filter(|&i| i != formed.primary) {
        let rport = b.node(r).pg_port();
        wait_until(FORM_TIMEOUT, "the replica has the rows", || {
            (rows(rport).as_deref() == Some("in-backup,in-wal")).then_some(())
        });
    }
    // The restore's recovery settings are gone once the cluster runs; it writes.
    assert_eq!(
        sql::query_text(leader.pg_port(), "SHOW restore_command")
            .unwrap()
            .as_deref(),
        Some("")
    );
    sql::execute(leader.pg_port(), "INSERT INTO survivors VALUES ('new')").unwrap();
}

/// `postgresql.create_replica_methods: [warden_restore, basebackup]`: with no backup
/// yet the replica falls back to pg_basebackup; once a backup exists, a re-created
/// replica comes from the repository, replays the archived WAL after the backup, and
/// then streams from the leader.
#[test]
fn a_replica_is_created_from_the_repository() {
    use warden_tests::backupkit::{wait_replica_archiver, wardenctl};
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let yaml =
        format!("{yaml}postgresql:\n  create_replica_methods: [warden_restore, basebackup]\n");
    let (cluster, primary) = start_formed(2, yaml, FORM_TIMEOUT);
    let replica = 1 - primary;
    let log = cluster.node(replica).log_path();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("creating the replica failed") && text.contains("pg_basebackup from"),
        "no backup yet: the first method fails and basebackup is used"
    );
    wait_replica_archiver(&cluster, primary);
    let port = cluster.node(primary).pg_port();
    let config = cluster.node(primary).config_path();
    sql::execute(
        port,
        "CREATE TABLE survivors (name text); INSERT INTO survivors VALUES ('in-backup')",
    )
    .unwrap();
    wardenctl_json(&config, &["backup", "create", "--json"]).expect("backup");
    sql::execute(port, "INSERT INTO survivors VALUES ('in-wal')").unwrap();
    switch_and_wait_archived(port, &repo);

    let name = cluster.node(replica).name().to_string();
    let out = wardenctl(
        &config,
        &["reinit", cluster.scope(), &name, "--force", "--wait"],
    )
    .unwrap();
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let rport = cluster.node(replica).pg_port();
    wait_until(FORM_TIMEOUT, "the re-created replica has the rows", || {
        (rows(rport).as_deref() == Some("in-backup,in-wal")).then_some(())
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("restored the newest backup as a replica"),
        "the replica came from the repository"
    );
    // Then it streams from the leader.
    sql::execute(port, "INSERT INTO survivors VALUES ('streamed')").unwrap();
    wait_until(FORM_TIMEOUT, "the replica streams", || {
        (rows(rport).as_deref() == Some("in-backup,in-wal,streamed")).then_some(())
    });
    assert!(sql::is_in_recovery(rport).unwrap());
}
