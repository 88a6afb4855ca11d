//! `wardenctl dr-report` and the `warden_dr_objective_met` gauges (issue 14, part 3)
//! on one real 2-member cluster with a filesystem repository, a repository copy
//! (`offsite`, filled by the archiver's copier), a base backup, archiving and a passed
//! drill, and `backup.objectives` generous enough to be met:
//!
//! 1. healthy: every objective met, exit 0; the JSON parses; the Markdown has the
//!    schedule table and the procedures with this cluster's commands; the HTML is a
//!    page; the archiver's gauges are all 1.
//! 2. an old backup (`max_backup_age: 1s` once the backup is older): exactly
//!    `max_backup_age` violated, exit 3, the reason printed; the same objective set on
//!    the archiver and reloaded turns its gauge to 0 and posts one webhook alert, and
//!    back to 1 with one recovery notice when reverted.
//! 3. a stopped copy (its directory replaced by a file, so the copier fails): exactly
//!    `min_copies` violated, naming it, in the report and the gauge; restored, met
//!    again.
//! 4. a failed drill (a check that cannot pass): exactly `max_drill_age` violated
//!    (the RTO is still the last passed drill's), in the report and in the gauge.
//!
//! The scenarios change only the config `wardenctl` reads, one objective on the
//! archiver, or the copy's directory, so one cluster serves them all.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use warden_tests::backupkit::{
    repository, start_formed, switch_and_wait_archived, wait_replica_archiver, wardenctl,
    wardenctl_json,
};
use warden_tests::process::RunOutput;
use warden_tests::wait::{dump_registered_logs, poll_until};
use warden_tests::workdir::{chown_to_postgres, create_node_dir, WorkDir};
use warden_tests::{http, sql, wait_until, Cluster};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);
/// The report's facts settle within a few uploads and copier passes (a copier that
/// failed backs off up to a minute between passes).
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// The archiver re-judges every 5 s (the drill records every 15 s).
const GAUGE_TIMEOUT: Duration = Duration::from_secs(120);
const ALERT_TIMEOUT: Duration = Duration::from_secs(120);

const OBJECTIVES: [&str; 5] = [
    "rpo",
    "rto",
    "max_backup_age",
    "max_drill_age",
    "min_copies",
];

fn extra(offsite: &Path, webhook: &str) -> String {
    format!(
        "  objectives: {{rpo: 1m, rto: 15m, max_backup_age: 1h, max_drill_age: 1h, min_copies: 2}}\n  \
         copies:\n    - name: offsite\n      repository: {{type: filesystem, path: {}, timeout: 10s}}\n  \
         webhook_url: {webhook}\n  \
         drill:\n    timeout: 120s\n    checks:\n      - {{name: rows, database: postgres, sql: \
         \"SELECT count(*) FROM drill_data\", expect: \"100\"}}\n",
        offsite.display()
    )
}

/// Serves HTTP on 127.0.0.1: every JSON body goes to the channel, answered 200.
fn listener() -> (String, mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            if let Ok(v) = serde_json::from_slice(&body) {
                let _ = tx.send(v);
            }
        }
    });
    (url, rx)
}

/// Objective notifications' texts (other kinds are skipped) up to and including the
/// first one containing `needle`. Earlier ones are there too: the cluster violated
/// `max_backup_age` and `max_drill_age` until its first backup and drill.
fn objective_alerts_until(rx: &mpsc::Receiver<Value>, needle: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + ALERT_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let v = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no notification with {needle:?}; got {seen:#?}"));
        if v["warden"]["kind"] == "objective" {
            let text = v["text"].as_str().unwrap().to_owned();
            let done = text.contains(needle);
            seen.push(text);
            if done {
                return seen;
            }
        }
    }
}

fn report(config: &Path, format: &str) -> RunOutput {
    wardenctl(config, &["dr-report", "--format", format]).expect("run wardenctl dr-report")
}

/// objective -> status of a JSON report.
fn verdicts(v: &Value) -> BTreeMap<String, String> {
    v["verdicts"]
        .as_array()
        .unwrap_or_else(|| panic!("no verdicts: {v}"))
        .iter()
        .map(|x| {
            (
                x["objective"].as_str().unwrap().to_owned(),
                x["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Exactly `bad` violated (none when `None`), every other objective met.
fn only(v: &Value, bad: Option<&str>) -> bool {
    let got = verdicts(v);
    got.len() == OBJECTIVES.len()
        && OBJECTIVES.iter().all(|o| {
            let want = if Some(*o) == bad { "violated" } else { "met" };
            got.get(*o).map(String::as_str) == Some(want)
        })
}

/// Runs the JSON report until exactly `bad` is violated (with the matching exit
/// status); the report.
fn wait_report(config: &Path, bad: Option<&str>) -> (Value, RunOutput) {
    let what = format!("dr-report with {} violated", bad.unwrap_or("nothing"));
    let mut last = String::new();
    let found = poll_until(REPORT_TIMEOUT, || {
        let out = report(config, "json");
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        let code = if bad.is_some() { 3 } else { 0 };
        last = format!("{}\n{v:#}", out.describe());
        (only(&v, bad) && out.code() == Some(code)).then_some((v, out))
    });
    found.unwrap_or_else(|| panic!("{what} not seen; last:\n{last}\n{}", dump_registered_logs()))
}

/// The archiver's `warden_dr_objective_met` gauges.
fn gauges(cluster: &Cluster, archiver: usize) -> BTreeMap<String, i64> {
    let url = format!("{}/metrics", cluster.node(archiver).api_url());
    let Ok(r) = http::get(&url) else {
        return BTreeMap::new();
    };
    r.body
        .lines()
        .filter(|l| l.starts_with("warden_dr_objective_met{"))
        .filter_map(|l| {
            let o = l.split("objective=\"").nth(1)?.split('"').next()?;
            let v = l.rsplit(' ').next()?.parse().ok()?;
            Some((o.to_owned(), v))
        })
        .collect()
}

fn wait_gauges(cluster: &Cluster, archiver: usize, bad: Option<&str>) {
    let want: BTreeMap<String, i64> = OBJECTIVES
        .iter()
        .map(|o| (o.to_string(), i64::from(Some(*o) != bad)))
        .collect();
    let mut last = BTreeMap::new();
    let ok = poll_until(GAUGE_TIMEOUT, || {
        last = gauges(cluster, archiver);
        (last == want).then_some(())
    });
    assert!(
        ok.is_some(),
        "gauges {last:?}, want {want:?}\n{}",
        dump_registered_logs()
    );
}

/// `base` with `edit` applied, written to `<dir>/<name>` (readable by postgres).
fn variant(
    dir: &Path,
    base: &Path,
    name: &str,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> PathBuf {
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(base).unwrap()).unwrap();
    edit(&mut doc);
    let path = dir.join(name);
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    chown_to_postgres(&path).unwrap();
    path
}

/// Rewrites the archiver's own config with `edit` and reloads it.
fn edit_and_reload(cluster: &Cluster, node: usize, edit: impl FnOnce(&mut serde_yaml::Value)) {
    let path = cluster.node(node).config_path();
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let r = http::post_json(
        &format!("{}/reload", cluster.node(node).api_url()),
        &serde_json::json!({}),
    )
    .unwrap();
    assert!(r.status < 300, "reload: {}", r.body);
}

fn set_backup_age(doc: &mut serde_yaml::Value, age: &str) {
    doc["backup"]["objectives"]["max_backup_age"] = age.into();
}

/// The shared cluster and what the scenarios need of it.
struct Setup {
    work: WorkDir,
    cluster: Cluster,
    repo: PathBuf,
    offsite: PathBuf,
    /// The primary's config: what `wardenctl` reads unless a scenario changes it.
    config: PathBuf,
    port: u16,
    archiver: usize,
    alerts: mpsc::Receiver<Value>,
    scratch: PathBuf,
}

/// The cluster with a copy, a committed backup, archived WAL and a passed drill.
fn setup() -> Setup {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let offsite = work.path().join("offsite");
    create_node_dir(&offsite).unwrap();
    let (url, alerts) = listener();
    let yaml = format!("{yaml}{}", extra(&offsite, &url));
    let (cluster, primary) = start_formed(2, yaml, FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    let config = cluster.node(primary).config_path();
    let archiver = wait_replica_archiver(&cluster, primary);
    sql::execute(
        port,
        "CREATE TABLE drill_data AS SELECT g AS n FROM generate_series(1, 100) g",
    )
    .unwrap();
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
    let out = wardenctl(
        &config,
        &["drill", "--scratch-dir", scratch.to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(out.code(), Some(0), "the drill passes: {}", out.describe());
    Setup {
        work,
        cluster,
        repo,
        offsite,
        config,
        port,
        archiver,
        alerts,
        scratch,
    }
}

/// Scenario 1: all met, exit 0, in every format and in the gauges.
fn healthy(s: &Setup) {
    let started = std::time::Instant::now();
    let (v, _) = wait_report(&s.config, None);
    println!("healthy report:\n{v:#}");
    assert_eq!(v["violated"], false);
    assert_eq!(v["service"]["members"].as_array().unwrap().len(), 2, "{v}");
    let components: Vec<&str> = v["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["component"].as_str().unwrap())
        .collect();
    for c in [
        "Base backups",
        "WAL archive",
        "Restore drills",
        "Copy offsite",
    ] {
        assert!(components.contains(&c), "{c} not in {components:?}");
    }
    let md = report(&s.config, "markdown");
    assert_eq!(md.code(), Some(0), "{}", md.describe());
    let scope = v["service"]["scope"].as_str().unwrap();
    for want in [
        "## Backup schedule",
        "| Component | Method | Frequency | Retention | Location |",
        "| WAL archive |",
        "## Measured facts",
        "| archive RPO now |",
        "## Verdicts",
        "| rpo | 1m |",
        "## Recovery procedures",
        &format!("switchover {scope} --leader"),
        "promote-cluster",
        "restore --target-time",
    ] {
        assert!(md.stdout.contains(want), "{want:?} not in\n{}", md.stdout);
    }
    let html = report(&s.config, "html");
    assert_eq!(html.code(), Some(0), "{}", html.describe());
    assert!(
        html.stdout.starts_with("<!DOCTYPE html>"),
        "{}",
        html.stdout
    );
    assert!(
        html.stdout.contains("<tr class=\"met\">"),
        "{}",
        html.stdout
    );
    wait_gauges(&s.cluster, s.archiver, None);
    println!("healthy: report and gauges in {:?}", started.elapsed());
}

/// Scenario 2, an old backup: the backup is older than 1 s by now. Then the same
/// objective on the archiver: its gauge, one alert, and back.
fn old_backup(s: &Setup) {
    let old = variant(s.work.path(), &s.config, "old_backup.yml", |d| {
        set_backup_age(d, "1s");
    });
    let (v, out) = wait_report(&old, Some("max_backup_age"));
    let why = v["verdicts"][2]["reason"].as_str().unwrap();
    assert!(why.contains("older than the objective 1s"), "{why}");
    assert!(
        out.stderr
            .contains("max_backup_age: the newest base backup finished"),
        "{}",
        out.describe()
    );
    let md = report(&old, "markdown");
    assert_eq!(md.code(), Some(3), "{}", md.describe());
    println!("old backup:\n{}\n{}", md.stdout, md.stderr);
    assert!(
        md.stdout.contains("| max_backup_age | 1s |"),
        "{}",
        md.stdout
    );
    assert!(md.stdout.contains("| VIOLATED |"), "{}", md.stdout);
    edit_and_reload(&s.cluster, s.archiver, |d| set_backup_age(d, "1s"));
    wait_gauges(&s.cluster, s.archiver, Some("max_backup_age"));
    // (Not the startup's "no committed base backup": this backup, too old.)
    objective_alerts_until(
        &s.alerts,
        "objective failed: max_backup_age violated: the newest base backup finished",
    );
    edit_and_reload(&s.cluster, s.archiver, |d| set_backup_age(d, "1h"));
    wait_gauges(&s.cluster, s.archiver, None);
    // Notified once while violated, then once when met again.
    let between =
        objective_alerts_until(&s.alerts, "objective recovered: max_backup_age met again");
    assert!(
        !between
            .iter()
            .any(|t| t.contains("max_backup_age violated")),
        "{between:#?}"
    );
}

/// Scenario 3, a stopped copy: the copy's directory is moved away and a file put in
/// its place, so the copier's passes fail and the copy falls behind. Exactly
/// `min_copies` is violated, in the report and in the gauge; moved back, the copier
/// catches up and it is met again.
fn stopped_copy(s: &Setup) {
    let moved = s.work.path().join("offsite.moved");
    std::fs::rename(&s.offsite, &moved).unwrap();
    std::fs::write(&s.offsite, "not a repository\n").unwrap();
    // New WAL the stopped copy cannot get.
    switch_and_wait_archived(s.port, &s.repo);
    let (v, out) = wait_report(&s.config, Some("min_copies"));
    let why = v["verdicts"][4]["reason"].as_str().unwrap();
    println!("stopped copy: {why}");
    assert!(
        why.starts_with("1 copy in sync") && why.contains("behind or failing: offsite"),
        "{why}"
    );
    assert!(out.stderr.contains("min_copies:"), "{}", out.describe());
    wait_gauges(&s.cluster, s.archiver, Some("min_copies"));
    objective_alerts_until(&s.alerts, "min_copies violated");
    std::fs::remove_file(&s.offsite).unwrap();
    std::fs::rename(&moved, &s.offsite).unwrap();
    wait_report(&s.config, None);
    wait_gauges(&s.cluster, s.archiver, None);
    objective_alerts_until(&s.alerts, "min_copies met again");
}

/// Scenario 4, a failed drill: the drill age is violated, the RTO stays the passed drill's.
fn failed_drill(s: &Setup) {
    let failing = variant(s.work.path(), &s.config, "failing.yml", |d| {
        d["backup"]["drill"]["checks"][0]["expect"] = "101".into();
    });
    let scratch = s.scratch.to_str().unwrap();
    let out = wardenctl(&failing, &["drill", "--scratch-dir", scratch]).unwrap();
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let (v, out) = wait_report(&s.config, Some("max_drill_age"));
    let why = v["verdicts"][3]["reason"].as_str().unwrap();
    assert!(why.contains("failed: checks failed: rows"), "{why}");
    let rto = v["verdicts"][1]["reason"].as_str().unwrap();
    assert!(rto.contains("passed"), "{rto}");
    assert!(
        out.stderr.contains("max_drill_age: the last drill"),
        "{}",
        out.describe()
    );
    wait_gauges(&s.cluster, s.archiver, Some("max_drill_age"));
    let seen = objective_alerts_until(&s.alerts, "max_drill_age violated: the last drill");
    assert!(
        seen.last().unwrap().contains("failed: checks failed: rows"),
        "{seen:#?}"
    );
}

#[test]
fn dr_report_judges_each_objective_from_live_facts() {
    let s = setup();
    healthy(&s);
    old_backup(&s);
    stopped_copy(&s);
    failed_drill(&s);
}
