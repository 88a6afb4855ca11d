//! Repository copies (issue 14, 3-2-1): a two-member cluster archives into a
//! filesystem repository with two copies — `fs-copy`, another directory with its own
//! key and a longer retention, and `s3-copy`, a bucket on a real S3 server (moto) with
//! the main key — and a webhook listener.
//!
//! - Two base backups and writes reach both copies (polled through the copier's
//!   `/metrics` lag going to 0); the copy with its own key opens only with that key.
//! - Retention per copy: `s3-copy` (the main `keep_last: 1`) drops the older backup
//!   and does not take it back; `fs-copy` (`keep_last: 3`) keeps both, also after the
//!   main repository pruned.
//! - The copy lag under a steady write load is measured and printed.
//! - An object that does not authenticate in the main repository is not copied, and is
//!   reported (metric, webhook).
//! - The S3 server stopped (SIGSTOP): one webhook alert; back (SIGCONT): one recovery.
//! - The main repository deleted entirely: `wardenctl drill --repository fs-copy` and
//!   a PITR `wardenctl restore --repository s3-copy` succeed with the expected rows.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::backupkit::{
    backup_yaml, key_file, s3_repository_yaml, start_formed, switch_and_wait_archived,
    wait_replica_archiver, wardenctl, wardenctl_json, wardenctl_logged,
};
use warden_tests::pgserver::PgServer;
use warden_tests::s3::S3Server;
use warden_tests::workdir::{chown_to_postgres, create_node_dir, WorkDir};
use warden_tests::workload::{Writer, WriterOptions};
use warden_tests::{http, sql, wait_until};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const COPY_TIMEOUT: Duration = Duration::from_secs(60);
const ALERT_TIMEOUT: Duration = Duration::from_secs(60);
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// The copy's own key (64 hex digits, not the main one).
const COPY_KEY: &str = "a1c3e5b7d9f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3";

mod listener {
    //! An HTTP listener for the webhook: every JSON body goes to the channel.
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    pub fn start() -> (String, mpsc::Receiver<serde_json::Value>) {
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
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
                if let Ok(v) = serde_json::from_slice(&body) {
                    let _ = tx.send(v);
                }
            }
        });
        (url, rx)
    }
}

/// `name{...copy="<copy>"...} value` from a metrics text.
fn copy_metric(text: &str, name: &str, copy: &str) -> Option<f64> {
    let label = format!("copy=\"{copy}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor()
}

/// Waits until both copies report a pass that ended at or after `since` (Unix
/// seconds) with nothing left to copy.
fn caught_up(metrics_url: &str, since: f64) {
    wait_until(COPY_TIMEOUT, "both copies caught up (lag 0)", || {
        let text = metrics(metrics_url);
        ["fs-copy", "s3-copy"]
            .iter()
            .all(|c| {
                copy_metric(&text, "warden_backup_copy_lag_objects", c) == Some(0.0)
                    && copy_metric(
                        &text,
                        "warden_backup_copy_last_success_timestamp_seconds",
                        c,
                    )
                    .is_some_and(|t| t >= since)
            })
            .then_some(())
    });
}

fn metrics(url: &str) -> String {
    http::get(url).map(|r| r.body).unwrap_or_default()
}

/// Backup ids listed in repository `repo` (`--repository`).
fn backup_ids(config: &Path, repo: &str) -> Vec<String> {
    let list = wardenctl_json(config, &["backup", "list", "--json", "--repository", repo])
        .unwrap_or_else(|e| panic!("backup list --repository {repo}: {e:#}"));
    list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

fn count(port: u16, sql_text: &str) -> String {
    sql::query_text(port, sql_text).unwrap().unwrap()
}

/// Webhook notifications of kind `copy` whose text has `needle`, waiting for one.
fn wait_alert(alerts: &mpsc::Receiver<serde_json::Value>, needle: &str) -> serde_json::Value {
    wait_until(ALERT_TIMEOUT, needle, || loop {
        match alerts.try_recv() {
            Ok(a)
                if a["warden"]["kind"] == "copy"
                    && a["text"].as_str().is_some_and(|t| t.contains(needle)) =>
            {
                return Some(a);
            }
            Ok(other) => println!("webhook (other): {}", other["text"]),
            Err(_) => return None,
        }
    })
}

fn write_key(path: &Path, key: &str) {
    std::fs::write(path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown_to_postgres(path).unwrap();
}

struct Setup {
    main_repo: PathBuf,
    fs_copy: PathBuf,
    copy_key: PathBuf,
    yaml: String,
}

fn setup(dir: &Path, s3: &S3Server, url: &str) -> Setup {
    let main_repo = dir.join("repo");
    create_node_dir(&main_repo).unwrap();
    let key = key_file(dir).unwrap();
    let fs_copy = dir.join("copy-fs");
    create_node_dir(&fs_copy).unwrap();
    let copy_key = dir.join("copy.key");
    write_key(&copy_key, COPY_KEY);
    s3.create_bucket("dr-site").unwrap();
    // The S3 copy: its repository lines, re-indented under a list item, with a short
    // timeout so a stopped server is noticed quickly.
    let s3_repo = s3_repository_yaml(s3, "dr-site", "site-b")
        .replace("timeout: 10s", "timeout: 2s")
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>();
    let extra = format!(
        "  retention: {{keep_last: 1}}\n  webhook_url: {url}\n  drill:\n    timeout: 120s\n    \
         checks:\n      - {{name: marks, database: postgres, sql: \"SELECT count(*) FROM marks\", \
         expect: \"2\"}}\n  copies:\n    - name: fs-copy\n      repository: {{type: filesystem, \
         path: {}, timeout: 10s}}\n      encryption_key_file: {}\n      retention: {{keep_last: 3}}\n    \
         - name: s3-copy\n{s3_repo}",
        fs_copy.display(),
        copy_key.display()
    );
    let yaml = backup_yaml(&main_repo, &key, &extra);
    Setup {
        main_repo,
        fs_copy,
        copy_key,
        yaml,
    }
}

#[test]
fn copies_hold_everything_and_restore_alone() {
    let started = Instant::now();
    let work = WorkDir::temp().unwrap();
    let s3 = S3Server::start(&work.path().join("s3")).unwrap();
    let (url, alerts) = listener::start();
    let st = setup(work.path(), &s3, &url);
    println!("backup section:\n{}", st.yaml);
    let (cluster, primary) = start_formed(2, st.yaml.clone(), FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    let config = cluster.node(primary).config_path();
    let archiver = wait_replica_archiver(&cluster, primary);
    let metrics_url = format!("{}/metrics", cluster.node(archiver).api_url());

    // Unknown names are refused, naming the value.
    let out = wardenctl(&config, &["backup", "list", "--repository", "tape"]).unwrap();
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("unknown repository \"tape\""),
        "{}",
        out.describe()
    );

    // Two backups, rows before and after; a point in time between A and B.
    sql::execute(
        port,
        "CREATE TABLE t AS SELECT g AS n FROM generate_series(1, 100) g",
    )
    .unwrap();
    let b1 = wardenctl_json(&config, &["backup", "create", "--json"]).expect("backup 1");
    sql::execute(
        port,
        "INSERT INTO t SELECT g FROM generate_series(101, 200) g",
    )
    .unwrap();
    let b2 = wardenctl_json(&config, &["backup", "create", "--json"]).expect("backup 2");
    let (b1, b2) = (
        b1["id"].as_str().unwrap().to_owned(),
        b2["id"].as_str().unwrap().to_owned(),
    );
    sql::execute(
        port,
        "CREATE TABLE marks (name text); INSERT INTO marks VALUES ('A')",
    )
    .unwrap();
    let between = count(
        port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    sql::execute(port, "INSERT INTO marks VALUES ('B')").unwrap();
    switch_and_wait_archived(port, &st.main_repo);

    // Both copies catch up: a pass that ended after everything was in the main
    // repository left nothing to copy (lag 0 on the archiver's /metrics).
    caught_up(&metrics_url, unix_now() + 1.0);
    let text = metrics(&metrics_url);
    for c in ["fs-copy", "s3-copy"] {
        assert_eq!(
            copy_metric(&text, "warden_backup_copy_lag_seconds", c),
            Some(0.0)
        );
        assert!(copy_metric(
            &text,
            "warden_backup_copy_last_success_timestamp_seconds",
            c
        )
        .is_some_and(|t| t > 0.0));
    }
    // Retention per copy: fs-copy keeps both, s3-copy (keep_last 1) only the newer.
    assert_eq!(backup_ids(&config, "fs-copy"), [b1.as_str(), b2.as_str()]);
    assert_eq!(backup_ids(&config, "s3-copy"), [b2.as_str()]);
    // The main repository prunes to one; fs-copy still has both.
    wardenctl_logged(&config, &["backup", "delete", "--prune", "--confirm"]);
    assert_eq!(backup_ids(&config, "main"), [b2.as_str()]);
    wait_until(
        COPY_TIMEOUT,
        "copies still at lag 0 after the main prune",
        || {
            let text = metrics(&metrics_url);
            (copy_metric(&text, "warden_backup_copy_lag_objects", "fs-copy") == Some(0.0))
                .then_some(())
        },
    );
    assert_eq!(backup_ids(&config, "fs-copy"), [b1.as_str(), b2.as_str()]);
    // The main list shows the copies' lag.
    let list = wardenctl_json(&config, &["backup", "list", "--json"]).unwrap();
    let names: Vec<&str> = list["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fs-copy", "s3-copy"], "{list}");
    assert!(list["copies"][0]["lag_objects"].is_u64(), "{list}");
    println!("{}", wardenctl_logged(&config, &["backup", "list"]).stdout);

    // Both copies verify, each with its own key; the main key cannot open fs-copy.
    for c in ["fs-copy", "s3-copy"] {
        let out = wardenctl_logged(&config, &["backup", "verify", "--repository", c]);
        assert_eq!(out.code(), Some(0), "verify {c}");
    }
    own_key_only(&st, &b2);

    steady_load_lag(port, &metrics_url, &st.main_repo);
    refused_object_is_reported(&st, &metrics_url, &config, &alerts);
    stopped_copy_alerts_once(&s3, &metrics_url, &alerts);

    // The main repository is lost. The copies alone are enough. (The archiver may be
    // writing into it right now: retried until it is gone once.)
    wait_until(COPY_TIMEOUT, "the main repository deleted", || {
        std::fs::remove_dir_all(&st.main_repo).ok()
    });
    drill_from(&config, work.path(), "fs-copy");
    pitr_from(&config, work.path(), "s3-copy", &between);
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}

/// fs-copy's objects open with its key, not the main one (they were re-sealed).
fn own_key_only(st: &Setup, backup: &str) {
    let record =
        walk_find(&st.fs_copy, &format!("{backup}/backup.json")).expect("fs-copy holds the record");
    let key_text = std::fs::read_to_string(&st.copy_key).unwrap();
    let main_key =
        warden_backup::key::EncryptionKey::parse(warden_tests::backupkit::KEY, "test").unwrap();
    let copy_key = warden_backup::key::EncryptionKey::parse(key_text.trim(), "test").unwrap();
    let rel = record
        .strip_prefix(&st.fs_copy)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let sealed = std::fs::read(&record).unwrap();
    assert!(warden_backup::codec::open_bytes(&copy_key, &rel, &sealed).is_ok());
    assert!(warden_backup::codec::open_bytes(&main_key, &rel, &sealed).is_err());
}

/// A complete WAL segment in the filesystem repository `repo`.
fn first_segment(repo: &Path) -> Option<PathBuf> {
    for e in std::fs::read_dir(repo).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(found) = first_segment(&p) {
                return Some(found);
            }
        } else {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(p);
            }
        }
    }
    None
}

fn walk_find(dir: &Path, suffix: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(found) = walk_find(&p, suffix) {
                return Some(found);
            }
        } else if p.to_string_lossy().ends_with(suffix) {
            return Some(p);
        }
    }
    None
}

/// A steady write load on the primary for a while: the copies' lag and delay (how long
/// each copied object waited), sampled from the archiver's /metrics, are printed;
/// afterwards the lag goes back to 0.
fn steady_load_lag(port: u16, metrics_url: &str, main_repo: &Path) {
    let writer = Writer::start(
        port,
        "load",
        WriterOptions {
            pause_after_ack: Duration::from_millis(2),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    // Per copy: (lag seconds, delay seconds) samples.
    let mut samples: Vec<[(f64, f64); 2]> = Vec::new();
    let mut switches = 0;
    while Instant::now() < until {
        let text = metrics(metrics_url);
        let one = |c: &str| {
            Some((
                copy_metric(&text, "warden_backup_copy_lag_seconds", c)?,
                copy_metric(&text, "warden_backup_copy_delay_seconds", c)?,
            ))
        };
        if let (Some(a), Some(b)) = (one("fs-copy"), one("s3-copy")) {
            samples.push([a, b]);
        }
        // A segment switch now and then, so whole segments flow too.
        if samples.len().is_multiple_of(10) {
            sql::execute(port, "SELECT pg_switch_wal()").unwrap();
            switches += 1;
        }
        // Sampling pace (not synchronisation).
        std::thread::sleep(Duration::from_millis(250));
    }
    let acked = warden_tests::workload::acks_of(&writer.stop()).len();
    assert!(!samples.is_empty());
    for (i, name) in ["fs-copy", "s3-copy"].iter().enumerate() {
        let lag: Vec<f64> = samples.iter().map(|s| s[i].0).collect();
        let delay: Vec<f64> = samples.iter().map(|s| s[i].1).collect();
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "copy lag under load ({acked} writes, {switches} segment switches, {} samples), \
             {name}: delay (write -> copied) max {:.1} s mean {:.2} s; lag after a pass max {:.1} s",
            samples.len(),
            max(&delay),
            mean(&delay),
            max(&lag)
        );
        // Objects did flow during the load, within a few passes.
        assert!(max(&delay) > 0.0 && max(&delay) < 30.0, "{name}: {delay:?}");
    }
    let segment = count(port, "SELECT pg_walfile_name(pg_switch_wal())");
    warden_tests::backupkit::wait_archived(main_repo, &segment);
    caught_up(metrics_url, unix_now() + 1.0);
}

/// A sealed object with one flipped byte planted in the main repository: not copied
/// (the copy's drill list still reads), counted and posted.
fn refused_object_is_reported(
    st: &Setup,
    metrics_url: &str,
    config: &Path,
    alerts: &mpsc::Receiver<serde_json::Value>,
) {
    let segment = first_segment(&st.main_repo).expect("an archived segment");
    let cluster_dir = segment
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    let drills = cluster_dir.join("drills");
    create_node_dir(&drills).unwrap();
    let planted = drills.join("29991231T000000Z.json");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&planted, &bytes).unwrap();
    chown_to_postgres(&planted).unwrap();
    wait_until(
        COPY_TIMEOUT,
        "the planted object refused by both copies",
        || {
            let text = metrics(metrics_url);
            ["fs-copy", "s3-copy"]
                .iter()
                .all(|c| copy_metric(&text, "warden_backup_copy_refused_objects", c) >= Some(1.0))
                .then_some(())
        },
    );
    let alert = wait_alert(alerts, "does not authenticate");
    println!("webhook: {}", alert["text"]);
    assert!(walk_find(&st.fs_copy, "29991231T000000Z.json").is_none());
    // s3-copy's drill records still read (a copied corrupt one would fail the list).
    wardenctl_json(
        config,
        &["backup", "list", "--json", "--repository", "s3-copy"],
    )
    .expect("s3-copy lists");
    std::fs::remove_file(&planted).unwrap();
}

/// The S3 server frozen: one alert; thawed: one recovery notice.
fn stopped_copy_alerts_once(
    s3: &S3Server,
    metrics_url: &str,
    alerts: &mpsc::Receiver<serde_json::Value>,
) {
    while alerts.try_recv().is_ok() {}
    let t0 = Instant::now();
    s3.signal(Signal::SIGSTOP).unwrap();
    let alert = wait_alert(alerts, "s3-copy");
    let failed_after = t0.elapsed().as_secs_f64();
    println!("webhook after {failed_after:.1} s: {}", alert["text"]);
    assert!(
        alert["text"].as_str().unwrap().contains("copy failed"),
        "{alert}"
    );
    assert_eq!(
        copy_metric(&metrics(metrics_url), "warden_backup_copy_ok", "s3-copy"),
        Some(0.0)
    );
    let t1 = Instant::now();
    s3.signal(Signal::SIGCONT).unwrap();
    let back = wait_alert(alerts, "s3-copy");
    println!(
        "webhook after {:.1} s: {}",
        t1.elapsed().as_secs_f64(),
        back["text"]
    );
    assert!(
        back["text"].as_str().unwrap().contains("copy recovered"),
        "only one alert before the recovery: {back}"
    );
    wait_until(COPY_TIMEOUT, "s3-copy ok again", || {
        (copy_metric(&metrics(metrics_url), "warden_backup_copy_ok", "s3-copy") == Some(1.0))
            .then_some(())
    });
    // Nothing more about s3-copy: once each.
    while let Ok(a) = alerts.try_recv() {
        assert!(
            !a["text"].as_str().unwrap_or("").contains("s3-copy"),
            "a second notice: {a}"
        );
    }
}

fn drill_from(config: &Path, dir: &Path, repo: &str) {
    let scratch = dir.join("scratch");
    create_node_dir(&scratch).unwrap();
    let out = wardenctl(
        config,
        &[
            "drill",
            "--repository",
            repo,
            "--scratch-dir",
            scratch.to_str().unwrap(),
        ],
    )
    .unwrap();
    println!("wardenctl drill --repository {repo}:\n{}", out.stdout);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains(": OK"), "{}", out.describe());
    let list = wardenctl_json(config, &["backup", "list", "--json", "--repository", repo]).unwrap();
    assert_eq!(
        list["last_drill"]["ok"], true,
        "recorded in the copy: {list}"
    );
}

fn pitr_from(config: &Path, dir: &Path, repo: &str, between: &str) {
    let dest = dir.join("restored");
    create_node_dir(&dest).unwrap();
    let data = dest.join("data");
    let report = wardenctl_json(
        config,
        &[
            "restore",
            "--json",
            "--repository",
            repo,
            "--target-time",
            between,
            "--to",
            data.to_str().unwrap(),
        ],
    )
    .expect("restore from the copy");
    println!("restore --repository {repo}: {report}");
    let auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains(&format!("--repository {repo}")), "{auto}");
    let mut server = PgServer::existing(&dest).unwrap();
    server.start().expect("the restored copy starts");
    let rport = server.port();
    wait_until(
        RECOVERY_TIMEOUT,
        "the restored copy finishes recovery",
        || (!sql::is_in_recovery(rport).ok()?).then_some(()),
    );
    assert_eq!(
        count(
            rport,
            "SELECT string_agg(name, ',' ORDER BY name) FROM marks"
        ),
        "A"
    );
    assert_eq!(count(rport, "SELECT count(*)::text FROM t"), "200");
}
