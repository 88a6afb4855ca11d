//! Restore drills (issue 6): `wardenctl drill` restores the latest backup into a
//! scratch directory, starts PostgreSQL on a free port, replays all archived WAL,
//! runs the configured checks and reports RTO (fetch + replay + checks) and RPO
//! (from the leader's heartbeat table), records the result in the repository, and
//! cleans up: no scratch directory and no PostgreSQL left, also when a check fails.

use std::path::Path;
use std::time::Duration;

use warden_tests::backupkit::{
    postgres_processes_with, repository, start_formed, switch_and_wait_archived,
    wait_replica_archiver, wardenctl, wardenctl_json,
};
use warden_tests::workdir::{chown_to_postgres, create_node_dir, WorkDir};
use warden_tests::{sql, wait_until};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

const CHECKS: &str = "  drill:\n    timeout: 120s\n    checks:\n      - {name: rows, database: \
                      postgres, sql: \"SELECT count(*) FROM drill_data\", expect: \"100\"}\n";

fn assert_cleaned_up(scratch: &Path) {
    let left: Vec<_> = std::fs::read_dir(scratch).unwrap().flatten().collect();
    assert!(left.is_empty(), "scratch directory left behind: {left:?}");
    let procs = postgres_processes_with(scratch.to_str().unwrap());
    assert!(procs.is_empty(), "PostgreSQL left running: {procs:?}");
}

fn secs(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing: {v}"))
}

#[test]
fn drill_reports_rto_and_rpo_and_cleans_up_also_when_a_check_fails() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let yaml = format!("{yaml}{CHECKS}");
    let (cluster, primary) = start_formed(2, yaml, FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    let config = cluster.node(primary).config_path();
    wait_replica_archiver(&cluster, primary);
    sql::execute(
        port,
        "CREATE TABLE drill_data AS SELECT g AS n FROM generate_series(1, 100) g",
    )
    .unwrap();
    // The leader's heartbeat runs (backup.heartbeat defaults to 1 s).
    wait_until(HEARTBEAT_TIMEOUT, "the leader writes heartbeats", || {
        let age = sql::query_text(
            port,
            "SELECT extract(epoch FROM now() - max(ts))::text FROM warden.heartbeat",
        )
        .ok()??;
        (age.parse::<f64>().ok()? < 5.0).then_some(())
    });
    wardenctl_json(&config, &["backup", "create", "--json"]).expect("backup");
    switch_and_wait_archived(port, &repo);

    let scratch = work.path().join("scratch");
    create_node_dir(&scratch).unwrap();
    let scratch_arg = scratch.to_str().unwrap();
    // Human output; the record it wrote is read back with `backup list --json`.
    let out = wardenctl(&config, &["drill", "--scratch-dir", scratch_arg]).unwrap();
    println!("wardenctl drill:\n{}", out.stdout);
    assert_eq!(out.code(), Some(0), "the drill passes: {}", out.describe());
    assert!(out.stdout.contains(": OK"), "{}", out.describe());
    let drill =
        wardenctl_json(&config, &["backup", "list", "--json"]).unwrap()["last_drill"].clone();
    println!("drill: {drill}");
    assert_eq!(drill["ok"], true, "{drill}");
    let (fetch, replay, checks) = (
        secs(&drill, "fetch_seconds"),
        secs(&drill, "replay_seconds"),
        secs(&drill, "checks_seconds"),
    );
    assert!(fetch > 0.0 && replay > 0.0 && checks > 0.0, "{drill}");
    assert!(
        (secs(&drill, "rto_seconds") - (fetch + replay + checks)).abs() < 1e-6,
        "{drill}"
    );
    let rpo = secs(&drill, "rpo_seconds");
    assert!((0.0..60.0).contains(&rpo), "RPO {rpo} s: {drill}");
    assert!(drill["restored_heartbeat"].is_string(), "{drill}");
    assert_eq!(drill["checks"][0]["ok"], true, "{drill}");
    assert_eq!(drill["checks"][0]["got"], "100", "{drill}");
    assert_cleaned_up(&scratch);

    // The same drill with a check that cannot pass: reported as failed (exit 1),
    // and still cleaned up.
    let text = std::fs::read_to_string(&config).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["backup"]["drill"]["checks"][0]["expect"] = "101".into();
    let failing = work.path().join("failing.yml");
    std::fs::write(&failing, serde_yaml::to_string(&doc).unwrap()).unwrap();
    chown_to_postgres(&failing).unwrap();
    let out = wardenctl(&failing, &["drill", "--json", "--scratch-dir", scratch_arg]).unwrap();
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let failed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(failed["ok"], false, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("checks failed: rows"),
        "{failed}"
    );
    assert_eq!(failed["checks"][0]["got"], "100", "{failed}");
    assert!(
        out.stderr.contains("the drill failed"),
        "{}",
        out.describe()
    );
    assert_cleaned_up(&scratch);

    // Both results are recorded in the repository.
    let drills = wait_until(Duration::from_secs(5), "two drill records", || {
        let found = warden_tests::backupkit::archived_records(&repo, "drills");
        (found.len() == 2).then_some(found)
    });
    println!("drill records: {drills:?}");
}

/// `backup.drill.schedule`: the archiver runs drills on its own; the result shows in
/// `wardenctl backup list --json` as `last_drill`.
#[test]
fn a_scheduled_drill_runs_on_the_archiver() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let yaml = format!(
        "{yaml}{}",
        CHECKS.replace(
            "    timeout:",
            "    schedule: \"*/10 * * * * *\"\n    timeout:"
        )
    );
    let (cluster, primary) = start_formed(2, yaml, FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    let config = cluster.node(primary).config_path();
    let archiver = wait_replica_archiver(&cluster, primary);
    sql::execute(
        port,
        "CREATE TABLE drill_data AS SELECT g AS n FROM generate_series(1, 100) g",
    )
    .unwrap();
    wardenctl_json(&config, &["backup", "create", "--json"]).expect("backup");
    switch_and_wait_archived(port, &repo);
    let last = wait_until(
        Duration::from_secs(120),
        "a passing scheduled drill",
        || {
            let list = wardenctl_json(&config, &["backup", "list", "--json"]).ok()?;
            let last = list["last_drill"].clone();
            (last["ok"] == true).then_some(last)
        },
    );
    println!("scheduled drill: {last}");
    assert_eq!(last["member"].as_str(), Some(cluster.node(archiver).name()));
    assert!(last["rto_seconds"].as_f64().is_some(), "{last}");
}
