//! The failure webhook on a real archive conflict: a one-member cluster archives into
//! a filesystem repository with `backup.webhook_url` pointing at an HTTP listener in
//! this test. A different file is planted (with `warden wal-push`, so it is a valid
//! sealed object) under the name of the segment PostgreSQL is still writing; when
//! that segment completes, the archiver's upload conflicts, and the listener receives
//! Slack-compatible JSON naming the segment. The URL (with its "token") never appears
//! in the agent's log.
//!
//! (A segment pushed twice with different content being refused by `warden wal-push`
//! is covered by `backup_wal.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use warden_tests::backupkit::{archived, backup_spec, repository, wait_archiver_streaming};
use warden_tests::process::run_bounded;
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::{bins, sql, wait_until, Cluster};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const ALERT_TIMEOUT: Duration = Duration::from_secs(60);
const TOKEN: &str = "T0KEN-must-not-be-logged";

/// Serves HTTP on 127.0.0.1: every request body (JSON) goes to the channel, answered
/// 200. Runs until the test process ends.
fn listener() -> (String, mpsc::Receiver<serde_json::Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/services/{TOKEN}", l.local_addr().unwrap());
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
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
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

#[test]
fn an_archive_conflict_is_posted_to_the_webhook() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let (url, alerts) = listener();
    let yaml = format!("{yaml}  webhook_url: {url}\n");
    let cluster = Cluster::start(backup_spec(1, yaml)).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let node = cluster.node(0);
    let port = node.pg_port();
    wait_until(FORM_TIMEOUT, "the member archives", || {
        node.patroni().filter(|p| p.is_archiver()).map(|_| ())
    });
    wait_archiver_streaming(port);
    // A first segment goes up normally.
    let first = sql::query_text(port, "SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap()
        .unwrap();
    wait_until(ALERT_TIMEOUT, "the first segment archived", || {
        archived(&repo).contains(&first).then_some(())
    });

    // Plant a different file under the name of the segment being written now.
    sql::execute(
        port,
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g",
    )
    .unwrap();
    let current = sql::query_text(port, "SELECT pg_walfile_name(pg_current_wal_lsn())")
        .unwrap()
        .unwrap();
    let fake_dir = work.path().join("fake");
    create_node_dir(&fake_dir).unwrap();
    let fake = fake_dir.join(&current);
    std::fs::write(&fake, vec![0x5a; 16 * 1024 * 1024]).unwrap();
    let mut push = Command::new(bins::warden_bin().unwrap());
    push.current_dir(node.data_dir()).args([
        "wal-push",
        "-c",
        &node.config_path().display().to_string(),
        &fake.display().to_string(),
    ]);
    let out = run_bounded(&mut push, Duration::from_secs(30)).unwrap();
    assert_eq!(out.code(), Some(0), "planting: {}", out.describe());

    // The real segment completes: its upload conflicts.
    sql::query_text(port, "SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    let alert = wait_until(ALERT_TIMEOUT, "a webhook notification", || {
        alerts
            .try_recv()
            .ok()
            .filter(|a| a["warden"]["kind"] == "archive")
    });
    println!("received: {alert}");
    let text = alert["text"].as_str().unwrap();
    assert!(text.contains("archive failed"), "{alert}");
    assert!(text.contains(&current), "{alert}");
    assert!(text.contains("DIFFERENT content"), "{alert}");
    assert_eq!(alert["warden"]["member"], node.name());

    // The token in the URL is nowhere in the agent's log.
    let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
    assert!(log.contains("ARCHIVE CONFLICT"), "the conflict is logged");
    assert!(!log.contains(TOKEN), "the webhook URL leaked into the log");
}
