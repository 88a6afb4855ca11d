//! Restore and point-in-time recovery from the repository (issue 6), with real
//! clusters, a filesystem repository shared by the members, and the streaming
//! archiver.
//!
//! - A backup is taken from the archiving replica while a write load runs on the
//!   primary. Row A is written, a timestamp taken, row B written, and the WAL made
//!   archived. `wardenctl restore --target-time <between>` produces a directory that
//!   `pg_verifybackup` accepts (with the backup's WAL fetched from the repository),
//!   and PostgreSQL started on it has A, not B, and the load's rows.
//! - Failover during continuous archiving: the archive has no gap on either
//!   timeline, and a PITR to a point after the failover (on the new timeline) has the
//!   row written after the failover and not the one after the point.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::backupkit::{
    archived, assert_no_gap, backup_spec, repository, start_formed, switch_and_wait_archived,
    wait_replica_archiver, wardenctl, wardenctl_json,
};
use warden_tests::bins::warden_bin;
use warden_tests::config::pg_bin_dir;
use warden_tests::pgserver::{pg_command, PgServer};
use warden_tests::process::run_bounded;
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::workload::{Writer, WriterOptions};
use warden_tests::{sql, wait_until, Cluster};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const ROLE_TIMEOUT: Duration = Duration::from_secs(60);
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A clock reading of the server at `port`, in UTC, RFC 3339.
fn server_now(port: u16) -> String {
    sql::query_text(
        port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .unwrap()
    .unwrap()
}

fn marks(port: u16) -> String {
    sql::query_text(
        port,
        "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM marks",
    )
    .unwrap()
    .unwrap()
}

/// Starts PostgreSQL on the restored `<dir>/data` and waits for the end of recovery
/// (the restore promotes at its target).
fn start_restored(dir: &Path) -> PgServer {
    let mut server = PgServer::existing(dir).unwrap();
    server.start().expect("the restored copy starts");
    let port = server.port();
    wait_until(
        RECOVERY_TIMEOUT,
        "the restored copy finishes recovery",
        || (!sql::is_in_recovery(port).ok()?).then_some(()),
    );
    server
}

/// `wardenctl restore ... --to <dir>/data --json`; `<dir>` is created for postgres.
fn restore(config: &Path, dir: &Path, extra: &[&str]) -> serde_json::Value {
    create_node_dir(dir).unwrap();
    let data = dir.join("data");
    let mut args = vec!["restore", "--json", "--to", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    wardenctl_json(config, &args).expect("wardenctl restore")
}

#[test]
fn pitr_between_two_writes_from_a_replica_backup_taken_under_load() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let (cluster, primary) = start_formed(2, yaml, FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    let archiver = wait_replica_archiver(&cluster, primary);
    let config = cluster.node(primary).config_path();

    // The backup, from the archiving replica, while the primary takes writes.
    let writer = Writer::start(
        port,
        "load",
        WriterOptions {
            pause_after_ack: Duration::from_millis(5),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let backup = wardenctl_json(&config, &["backup", "create", "--json"]).expect("backup");
    let outcomes = writer.stop();
    let acked = warden_tests::workload::acks_of(&outcomes).len();
    assert!(acked > 0, "the load wrote during the backup");
    println!("backup: {backup}");
    assert_eq!(
        backup["member"].as_str(),
        Some(cluster.node(archiver).name()),
        "taken on the archiving replica: {backup}"
    );

    // A, a point in time, B; then everything is archived.
    sql::execute(
        port,
        "CREATE TABLE marks (name text); INSERT INTO marks VALUES ('A')",
    )
    .unwrap();
    let between = server_now(port);
    // The same point as a restore point name and as an LSN.
    sql::execute(port, "SELECT pg_create_restore_point('between-a-and-b')").unwrap();
    let lsn = sql::query_text(port, "SELECT pg_current_wal_lsn()::text")
        .unwrap()
        .unwrap();
    sql::execute(port, "INSERT INTO marks VALUES ('B')").unwrap();
    switch_and_wait_archived(port, &repo);

    let dest = work.path().join("restored");
    let data = dest.join("data");
    bad_flags_are_refused(&config, &data);

    let report = restore(&config, &dest, &["--target-time", &between]);
    println!("restore: {report}");
    assert!(report["bytes"].as_u64().unwrap() > 1_000_000, "{report}");
    assert!(report["fetch_seconds"].as_f64().is_some(), "{report}");
    assert!(report["extract_seconds"].as_f64().is_some(), "{report}");

    verify_with_fetched_wal(&config, &repo, work.path(), &data);

    // Into a directory with something in it: refused.
    let again = wardenctl(&config, &["restore", "--to", data.to_str().unwrap()]).unwrap();
    assert!(again.stderr.contains("not empty"), "{}", again.describe());

    immediate_stops_before_the_writes(&config, work.path());

    for (flag, value) in [
        ("--target-name", "between-a-and-b"),
        ("--target-lsn", lsn.as_str()),
    ] {
        let dir = work.path().join(&flag[2..]);
        restore(&config, &dir, &[flag, value]);
        let copy = start_restored(&dir);
        assert_eq!(marks(copy.port()), "A", "{flag} {value}");
    }

    let server = start_restored(&dest);
    let rport = server.port();
    assert_eq!(marks(rport), "A", "recovered to the point between A and B");
    let rows: u64 = sql::query_text(rport, "SELECT count(*)::text FROM load")
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rows > 0, "the load's rows are in the restored copy");
    // A restored copy never archives into the production repository.
    assert_eq!(
        sql::query_text(rport, "SHOW archive_mode")
            .unwrap()
            .as_deref(),
        Some("off")
    );
}

/// Bad flags are refused before anything is fetched.
fn bad_flags_are_refused(config: &Path, data: &Path) {
    let bad = wardenctl(
        config,
        &[
            "restore",
            "--target-time",
            "soon",
            "--to",
            data.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(bad.code(), Some(1), "{}", bad.describe());
    assert!(
        bad.stderr.contains("--target-time \"soon\""),
        "{}",
        bad.describe()
    );
    let bad = wardenctl(
        config,
        &[
            "restore",
            "--immediate",
            "--target-lsn",
            "0/1",
            "--to",
            data.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(
        bad.stderr.contains("conflicting recovery targets"),
        "{}",
        bad.describe()
    );
    let early = wardenctl(
        config,
        &[
            "restore",
            "--target-time",
            "2000-01-01T00:00:00Z",
            "--to",
            data.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(
        early
            .stderr
            .contains("no backup finished before the target time"),
        "{}",
        early.describe()
    );
}

/// pg_verifybackup, with the backup's WAL fetched from the repository by
/// `warden wal-fetch` (as PostgreSQL's restore_command would).
fn verify_with_fetched_wal(config: &Path, repo: &Path, work: &Path, data: &Path) {
    let waldir = work.join("verify-wal");
    create_node_dir(&waldir).unwrap();
    for seg in archived(repo)
        .iter()
        .filter(|n| n.len() == 24 && n.starts_with("00000001"))
    {
        let mut fetch = pg_command(warden_bin().unwrap().to_str().unwrap()).unwrap();
        fetch
            .current_dir(data)
            .args(["wal-fetch", "-c"])
            .arg(config)
            .arg(seg)
            .arg(waldir.join(seg));
        let out = run_bounded(&mut fetch, Duration::from_secs(30)).unwrap();
        assert_eq!(out.code(), Some(0), "wal-fetch {seg}: {}", out.describe());
    }
    let mut verify = pg_command("pg_verifybackup").unwrap();
    verify.arg("-w").arg(&waldir).arg(data);
    let out = run_bounded(&mut verify, Duration::from_secs(60)).unwrap();
    assert_eq!(out.code(), Some(0), "pg_verifybackup: {}", out.describe());
    assert!(pg_bin_dir().join("pg_verifybackup").is_file());
}

/// Human output, and --immediate (the end of the backup: neither A nor the table).
fn immediate_stops_before_the_writes(config: &Path, work: &Path) {
    let immediate = work.join("immediate");
    create_node_dir(&immediate).unwrap();
    let out = wardenctl(
        config,
        &[
            "restore",
            "--immediate",
            "--to",
            immediate.join("data").to_str().unwrap(),
        ],
    )
    .unwrap();
    println!("wardenctl restore --immediate:\n{}", out.stdout);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("recovery target: immediate"),
        "{}",
        out.describe()
    );
    let early = start_restored(&immediate);
    assert_eq!(
        sql::query_text(early.port(), "SELECT to_regclass('marks') IS NULL")
            .unwrap()
            .as_deref(),
        Some("t"),
        "--immediate stops before the writes after the backup"
    );
    drop(early);
}

#[test]
fn pitr_across_a_failover_reaches_the_new_timeline() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let (mut cluster, primary) = start_formed(3, yaml, FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    wait_replica_archiver(&cluster, primary);
    let survivor = (0..3).find(|&i| i != primary).unwrap();
    let config = cluster.node(survivor).config_path();

    sql::execute(
        port,
        "CREATE TABLE marks (name text); INSERT INTO marks VALUES ('before')",
    )
    .unwrap();
    wardenctl_json(&config, &["backup", "create", "--json"]).expect("backup");
    sql::execute(port, "INSERT INTO marks VALUES ('old-timeline')").unwrap();
    switch_and_wait_archived(port, &repo);

    cluster
        .node_mut(primary)
        .kill(Signal::SIGKILL)
        .expect("kill the primary's node");
    let new_primary = wait_until(ROLE_TIMEOUT, "a survivor is promoted", || {
        (0..3).find(|&i| {
            i != primary && sql::is_in_recovery(cluster.node(i).pg_port()).ok() == Some(false)
        })
    });
    let new_port = cluster.node(new_primary).pg_port();
    sql::execute(new_port, "INSERT INTO marks VALUES ('C')").unwrap();
    let point = server_now(new_port);
    sql::execute(new_port, "INSERT INTO marks VALUES ('D')").unwrap();
    let seg = switch_and_wait_archived(new_port, &repo);
    assert!(seg.starts_with("00000002"), "{seg}");

    let names = archived(&repo);
    println!("archived: {names:?}");
    assert!(names.iter().any(|n| n == "00000002.history"), "{names:?}");
    assert_no_gap(&names, "00000001");
    assert_no_gap(&names, "00000002");

    let dest = work.path().join("restored");
    restore(&config, &dest, &["--target-time", &point]);
    let server = start_restored(&dest);
    assert_eq!(
        marks(server.port()),
        "C,before,old-timeline",
        "recovered along the new timeline up to the point between C and D"
    );
}

/// The same restore path over a real S3-compatible server (moto_server): parts are
/// downloaded as streams from the bucket.
#[test]
fn restore_from_an_s3_repository() {
    use warden_tests::s3::{self, S3Server};
    let work = WorkDir::temp().unwrap();
    let server = S3Server::start(&work.path().join("moto")).unwrap();
    server.create_bucket("restore").unwrap();
    // The filesystem repository from the kit is unused; only its key file is.
    let (_, fs_yaml) = repository(work.path()).unwrap();
    let key_line = fs_yaml
        .lines()
        .find(|l| l.contains("encryption_key_file"))
        .unwrap()
        .to_string();
    let yaml = format!(
        "backup:\n  repository:\n    type: s3\n    bucket: restore\n    endpoint: {}\n    \
         allow_http: true\n    region: {}\n    prefix: pitr\n    access_key_id: {}\n    \
         secret_access_key: {}\n    timeout: 10s\n{key_line}\n",
        server.endpoint(),
        s3::REGION,
        s3::ACCESS_KEY_ID,
        s3::SECRET_ACCESS_KEY
    );
    let cluster = Cluster::start(backup_spec(1, yaml)).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let port = cluster.node(0).pg_port();
    let config = cluster.node(0).config_path();
    sql::execute(
        port,
        "CREATE TABLE marks (name text); INSERT INTO marks VALUES ('s3')",
    )
    .unwrap();
    wardenctl_json(&config, &["backup", "create", "--json"]).expect("backup");
    let dest = work.path().join("restored");
    let report = restore(&config, &dest, &["--immediate"]);
    assert!(report["stored_bytes"].as_u64().unwrap() > 0, "{report}");
    let server = start_restored(&dest);
    assert_eq!(marks(server.port()), "s3");
}
