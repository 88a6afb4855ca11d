//! RDB snapshots of a Redis cluster, end to end through the agents and wardenctl:
//! three `warden` agents (Redis mode) with a filesystem repository.
//!
//! In order: a replica (never the primary) takes the snapshot role (the archiver key);
//! a scheduled snapshot (`backup.schedule` every 20 s) appears without being asked;
//! `POST /backup` on a member without the role is refused naming the holder;
//! `wardenctl backup create` takes one on demand from the replica, whose data
//! directory stays untouched (diskless transfer); `backup list` shows it; `backup
//! verify` passes; `wardenctl restore --data-dir` writes a `dump.rdb` that a scratch
//! `redis-server` loads with every key; `wardenctl drill` runs the config's checks
//! and prints RTO and RPO; one flipped byte in a stored part is refused by verify,
//! restore and the drill.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use warden_tests::backupkit::{self, wardenctl_logged};
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::redis as kit_redis;
use warden_tests::wait::wait_until;
use warden_tests::workdir::create_node_dir;
use warden_tests::{Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
/// The schedule's period plus a snapshot (the replica waits its diskless delay, 5 s by
/// default, before forking) and a margin.
const SCHEDULED_WITHIN: Duration = Duration::from_secs(60);
const KEYS: u64 = 500;

/// A scratch `redis-server` on a restored directory; killed on drop.
struct Scratch {
    child: Child,
    port: u16,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn scratch_server(dir: &Path) -> Scratch {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args([
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--logfile")
        .arg(dir.join("scratch.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a scratch redis-server");
    Scratch { child, port }
}

/// `wardenctl backup list --json`'s RDB snapshots.
fn listed(config: &Path) -> Vec<Value> {
    let out = backupkit::wardenctl(config, &["backup", "list", "--json"]).expect("run wardenctl");
    if out.code() != Some(0) {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&out.stdout).expect("backup list --json is JSON");
    v["rdbs"].as_array().cloned().unwrap_or_default()
}

/// The `.rdb` files of a data directory with their size and mtime: what a snapshot
/// that touched the source's disk (a BGSAVE) would change.
fn rdb_files(dir: &Path) -> Vec<(String, u64, SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read the data directory")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".rdb"))
        .map(|e| {
            let m = e.metadata().expect("metadata");
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().expect("mtime"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The stored part objects of snapshot `id` in the repository.
fn parts_of(repo: &Path, id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, id: &str, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, id, out);
            } else if p.parent().is_some_and(|d| d.ends_with(format!("rdb/{id}")))
                && e.file_name().to_string_lossy().starts_with("dump.rdb.")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(repo, id, &mut out);
    out.sort();
    out
}

#[test]
fn redis_snapshots_from_a_replica_are_verified_restored_and_drilled() {
    let work = tempfile::tempdir().expect("temp dir");
    let repo = work.path().join("repo");
    create_node_dir(&repo).expect("repository directory");
    let key = backupkit::key_file(work.path()).expect("key file");
    let yaml = backupkit::backup_yaml(
        &repo,
        &key,
        &format!(
            "  schedule: \"*/20 * * * * *\"\n  drill:\n    checks:\n      \
             - {{name: keys, sql: DBSIZE, expect: \">= {KEYS}\"}}\n      \
             - {{name: one, sql: \"GET key:42\", expect: \"value:42\"}}\n"
        ),
    );
    let cluster = Cluster::start(
        ClusterSpec::new(3)
            .redis()
            .without_haproxy()
            .customize(move |_, c| c.merge_yaml(&yaml).expect("merge the backup section")),
    )
    .expect("start a Redis cluster with a backup section");
    cluster.wait_formed(FORM_TIMEOUT);
    let (leader, _) = cluster.wait_leader(T);
    let p = cluster.index_of(&leader).expect("the leader is a node");
    let config = cluster.node(p).config_path();

    // The role goes to a replica: the first streaming one by name.
    let holder = wait_until(T, "a replica holds the archiver key", || {
        let h = backupkit::archiver_key(&cluster)?;
        (h != leader).then_some(h)
    });
    let r = cluster.index_of(&holder).expect("the holder is a node");
    let replica_port = cluster.node(r).redis_port();

    // A scheduled snapshot, unasked, from that replica.
    let scheduled = wait_until(SCHEDULED_WITHIN, "a scheduled RDB snapshot", || {
        listed(&config).into_iter().next()
    });
    println!("scheduled snapshot: {scheduled}");
    // Never the primary: not even while the replicas were still syncing.
    assert_ne!(scheduled["member"], leader.as_str(), "{scheduled}");
    assert_eq!(scheduled["member"], holder.as_str(), "{scheduled}");
    assert_eq!(
        scheduled["source"],
        format!("127.0.0.1:{replica_port}"),
        "{scheduled}"
    );

    write_keys(cluster.node(p).redis_port(), replica_port);
    let id = on_demand(&cluster, &config, r);
    restored_and_loaded(&config, work.path(), &id);
    drill_reports_rto_and_rpo(&config, &id);
    a_flipped_byte_is_refused(&config, &repo, work.path(), &id);
}

/// [`KEYS`] keys on the primary, replicated to the snapshot's source.
fn write_keys(primary_port: u16, replica_port: u16) {
    let mut primary =
        kit_redis::connect_as(primary_port, Some(REDIS_PASSWORD), Duration::from_secs(2))
            .expect("connect to the primary");
    for i in 0..KEYS {
        redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value:{i}"))
            .query::<()>(&mut primary)
            .expect("SET on the primary");
    }
    wait_until(T, "the replica has every key", || {
        let mut c =
            kit_redis::connect_as(replica_port, Some(REDIS_PASSWORD), Duration::from_secs(1))
                .ok()?;
        let n: u64 = redis::cmd("DBSIZE").query(&mut c).ok()?;
        (n == KEYS).then_some(())
    });
}

/// Refused by a member without the role (naming the holder, member `r`); taken with
/// `wardenctl backup create` (through the holder's `POST /backup`), leaving the
/// source's disk alone; listed. Its id.
fn on_demand(cluster: &Cluster, config: &Path, r: usize) -> String {
    let holder = cluster.node(r).name().to_owned();
    let other = (0..3).find(|&i| i != r).expect("another member");
    let refused = warden_tests::http::post_json(
        &format!("http://127.0.0.1:{}/backup", cluster.node(other).api_port()),
        &json!({}),
    )
    .expect("POST /backup");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains(&holder), "{}", refused.body);

    // The scheduled one may be running: then "already running", and again.
    let replica_dir = cluster.node(r).data_dir();
    let disk_before = rdb_files(&replica_dir);
    let created = wait_until(T, "wardenctl backup create commits a snapshot", || {
        let out = wardenctl_logged(config, &["backup", "create", "--json"]);
        if out.code() == Some(0) {
            return Some(serde_json::from_str::<Value>(&out.stdout).expect("JSON"));
        }
        let busy = out.stderr.contains("already running") || out.stderr.contains("this second");
        assert!(busy, "backup create failed: {}", out.describe());
        std::thread::sleep(Duration::from_millis(500));
        None
    });
    let id = created["id"]
        .as_str()
        .expect("the snapshot's id")
        .to_owned();
    assert_eq!(created["ok"], true, "{created}");
    assert_eq!(created["member"], holder.as_str(), "{created}");
    assert_eq!(
        rdb_files(&replica_dir),
        disk_before,
        "the source replica's .rdb files changed: the snapshot was not diskless"
    );

    let record = listed(config)
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("snapshot {id} is not listed"));
    assert_eq!(record["member"], holder.as_str(), "{record}");
    assert!(record["size"].as_u64().is_some_and(|s| s > 0), "{record}");
    let table = wardenctl_logged(config, &["backup", "list"]);
    assert!(
        table.stdout.contains("RDB snapshots") && table.stdout.contains(&id),
        "{}",
        table.stdout
    );
    let ok = wardenctl_logged(config, &["backup", "verify", &id]);
    assert_eq!(ok.code(), Some(0), "{}", ok.describe());
    assert!(ok.stdout.contains("OK"), "{}", ok.stdout);
    id
}

/// `wardenctl restore --data-dir` writes a `dump.rdb` a scratch server loads with every
/// key; the same, now non-empty, directory is refused.
fn restored_and_loaded(config: &Path, work: &Path, id: &str) {
    let target = work.join("restored");
    let args = [
        "restore",
        "--data-dir",
        target.to_str().unwrap(),
        "--backup",
        id,
    ];
    let out = wardenctl_logged(config, &args);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let scratch = scratch_server(&target);
    let n: u64 = wait_until(T, "the scratch server loaded the restored RDB", || {
        let mut c = kit_redis::connect_as(scratch.port, None, Duration::from_secs(1)).ok()?;
        redis::cmd("DBSIZE").query(&mut c).ok()
    });
    assert_eq!(n, KEYS);
    let mut c = kit_redis::connect_as(scratch.port, None, Duration::from_secs(1)).unwrap();
    let v: String = redis::cmd("GET").arg("key:42").query(&mut c).unwrap();
    assert_eq!(v, "value:42");
    drop(scratch);
    let again = wardenctl_logged(config, &args);
    assert_ne!(again.code(), Some(0));
    assert!(again.stderr.contains("not empty"), "{}", again.describe());
}

/// `wardenctl drill`: the config's checks pass, RTO and RPO are printed.
fn drill_reports_rto_and_rpo(config: &Path, id: &str) {
    let drill = wardenctl_logged(config, &["drill", "--backup", id]);
    assert_eq!(drill.code(), Some(0), "{}", drill.describe());
    assert!(drill.stdout.contains("OK"), "{}", drill.stdout);
    for line in [
        "RTO ",
        "RPO ",
        "check DBSIZE >= 500: ok",
        "check GET key:42 == \"value:42\": ok",
    ] {
        assert!(
            drill.stdout.contains(line),
            "no {line:?} in {}",
            drill.stdout
        );
    }
    for metric in ["RTO", "RPO"] {
        let line = drill
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(metric))
            .unwrap();
        let secs: f64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no seconds in {line:?}"));
        assert!(secs >= 0.0, "{line}");
    }
}

/// One flipped byte in a stored part: verify (naming the part), restore (leaving no
/// `dump.rdb`) and the drill refuse it.
fn a_flipped_byte_is_refused(config: &Path, repo: &Path, work: &Path, id: &str) {
    let parts = parts_of(repo, id);
    assert!(
        !parts.is_empty(),
        "no parts of {id} under {}",
        repo.display()
    );
    let mut bytes = std::fs::read(&parts[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&parts[0], &bytes).unwrap();
    let part_name = parts[0].file_name().unwrap().to_string_lossy().into_owned();

    let bad = wardenctl_logged(config, &["backup", "verify", id]);
    assert_eq!(bad.code(), Some(1), "{}", bad.describe());
    assert!(
        bad.describe().contains(&part_name),
        "verify does not name {part_name}: {}",
        bad.describe()
    );
    let target = work.join("restored-bad");
    let bad = wardenctl_logged(
        config,
        &[
            "restore",
            "--data-dir",
            target.to_str().unwrap(),
            "--backup",
            id,
        ],
    );
    assert_ne!(bad.code(), Some(0), "{}", bad.describe());
    assert!(
        !target.join("dump.rdb").exists(),
        "a refused restore left a dump.rdb"
    );
    let bad = wardenctl_logged(config, &["drill", "--backup", id]);
    assert_ne!(bad.code(), Some(0), "{}", bad.describe());
    assert!(bad.stdout.contains("FAILED"), "{}", bad.describe());
}
