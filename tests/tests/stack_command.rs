//! `backup.jobs` of kind `command` (issue 15), end to end through `wardenctl` on a
//! real etcd: `etcdctl snapshot save` is the backup command, its stdout sealed into
//! the repository; `backup list --job` shows the sets and the job's retention prunes
//! the oldest; `backup verify --job` reads them back; `drill --job` restores the
//! newest with `etcdctl snapshot restore`, starts an etcd on the restored directory
//! on free ports and checks a key written before the backup, then leaves no process
//! and no scratch directory behind; `restore --job --to DIR` writes the data
//! directory; a failing backup command is reported with its exit status and stderr
//! and commits nothing; one flipped byte in a stored part is refused by verify and
//! by the drill.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use warden_tests::backupkit::{key_file, wardenctl_logged};
use warden_tests::etcd::EtcdCluster;
use warden_tests::workdir::WorkDir;

fn config(dir: &Path, endpoint: &str) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let key = key_file(dir).unwrap();
    // The restore names the member and its peer URL as the drill's start will
    // (`WARDEN_DRILL_PORT2`); outside a drill (restore --to) a default port.
    let peer = "http://127.0.0.1:${WARDEN_DRILL_PORT2:-2380}";
    let yaml = format!(
        r#"scope: stackjobs
name: ctl
backup:
  repository: {{type: filesystem, path: {repo}, timeout: 10s}}
  encryption_key_file: {key}
  jobs:
    - name: etcd
      kind: command
      backup_command: [sh, -c, "etcdctl --endpoints={endpoint} snapshot save $WARDEN_SCRATCH/s.db >&2 && cat $WARDEN_SCRATCH/s.db"]
      restore_command: [sh, -c, "cat > $WARDEN_SCRATCH/s.db && etcdctl snapshot restore $WARDEN_SCRATCH/s.db --data-dir $WARDEN_RESTORE_DIR --name drill --initial-cluster drill={peer} --initial-advertise-peer-urls {peer} >&2"]
      schedule: "0 3 * * *"
      retention: {{keep_last: 2}}
      timeout: 60s
      drill:
        timeout: 60s
        start_command: [sh, -c, "exec etcd --name drill --data-dir $WARDEN_RESTORE_DIR --listen-client-urls http://127.0.0.1:$WARDEN_DRILL_PORT --advertise-client-urls http://127.0.0.1:$WARDEN_DRILL_PORT --listen-peer-urls http://127.0.0.1:$WARDEN_DRILL_PORT2 --initial-advertise-peer-urls http://127.0.0.1:$WARDEN_DRILL_PORT2 --initial-cluster drill=http://127.0.0.1:$WARDEN_DRILL_PORT2"]
        checks:
          - {{name: key, command: [sh, -c, "etcdctl --endpoints=http://127.0.0.1:$WARDEN_DRILL_PORT get warden-drill --print-value-only"], expect: before-backup}}
    - name: broken
      kind: command
      backup_command: [sh, -c, "echo partial; echo boom-from-stderr >&2; exit 3"]
"#,
        repo = repo.display(),
        key = key.display(),
    );
    let path = dir.join("warden.yml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn json_of(config: &Path, args: &[&str]) -> Value {
    let out = wardenctl_logged(config, args);
    assert_eq!(
        out.code(),
        Some(0),
        "wardenctl {args:?}: {}",
        out.describe()
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn ids(list: &Value) -> Vec<String> {
    list["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

#[test]
// One story, in order: each step reads what the previous one left in the repository.
#[allow(clippy::too_many_lines)]
fn etcd_snapshot_job_is_stored_listed_pruned_verified_drilled_and_restored() {
    let work = WorkDir::temp().unwrap();
    let etcd_dir = work.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir).unwrap();
    let etcd = EtcdCluster::start(&etcd_dir, 1).unwrap();
    etcd.put("warden-drill", "before-backup").unwrap();
    let cfg = config(work.path(), &etcd.client_url());
    let repo = work.path().join("repo");

    // Three runs; keep_last: 2 prunes the first after the third.
    let mut made = Vec::new();
    for _ in 0..3 {
        let v = json_of(&cfg, &["backup", "create", "--job", "etcd", "--json"]);
        assert!(v["size"].as_u64().unwrap() > 0, "{v}");
        made.push(v["id"].as_str().unwrap().to_owned());
    }
    // Written after the backups: a restore must not have it.
    etcd.put("warden-drill", "after-backup").unwrap();
    let list = json_of(&cfg, &["backup", "list", "--job", "etcd", "--json"]);
    assert_eq!(
        ids(&list),
        made[1..],
        "retention keeps the newest two: {list}"
    );
    let set_dir = |id: &str| repo.join("stackjobs/jobs/etcd").join(id);
    let pruned = walk(&set_dir(&made[0]));
    assert!(
        pruned.is_empty(),
        "the pruned set's objects are gone: {pruned:?}"
    );
    // Sealed: the snapshot's bytes are not in the part in clear.
    let part = set_dir(&made[2]).join("stream.00000");
    let stored = std::fs::read(&part).unwrap();
    assert!(
        !stored.windows(13).any(|w| w == b"before-backup"),
        "the stored part is encrypted"
    );

    let out = wardenctl_logged(&cfg, &["backup", "verify", "--job", "etcd"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout.matches(": ok").count(), 2, "{}", out.stdout);

    // The drill: restore, start etcd on it, check the key, clean up.
    let scratch = work.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let drill = json_of(
        &cfg,
        &[
            "drill",
            "--job",
            "etcd",
            "--scratch-dir",
            scratch.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["backup_id"], made[2].as_str());
    assert_eq!(drill["checks"][0]["got"], "before-backup", "{drill}");
    assert!(drill["rto_seconds"].as_f64().unwrap() > 0.0);
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().flatten().collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    let procs = processes_with(scratch.to_str().unwrap());
    assert!(
        procs.is_empty(),
        "the drill's etcd is still running: {procs:?}"
    );
    let list = json_of(&cfg, &["backup", "list", "--job", "etcd", "--json"]);
    assert_eq!(
        list["last_drill"]["id"], drill["id"],
        "the drill is recorded"
    );

    // restore --to: etcd's data directory.
    let to = work.path().join("restored");
    let out = wardenctl_logged(
        &cfg,
        &["restore", "--job", "etcd", "--to", to.to_str().unwrap()],
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        to.join("member/snap/db").is_file(),
        "etcd's data directory restored"
    );

    // A failing backup command: exit status and stderr reported, nothing committed.
    let out = wardenctl_logged(&cfg, &["backup", "create", "--job", "broken"]);
    assert_ne!(out.code(), Some(0));
    assert!(
        out.stderr.contains("boom-from-stderr"),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("exit status: 3"), "{}", out.describe());
    let list = json_of(&cfg, &["backup", "list", "--job", "broken", "--json"]);
    assert!(ids(&list).is_empty(), "{list}");
    let broken_dir = repo.join("stackjobs/jobs/broken");
    let leftovers: Vec<_> = walk(&broken_dir);
    assert!(
        leftovers.is_empty(),
        "failed run's parts deleted: {leftovers:?}"
    );

    // One flipped byte in the newest set: verify and the drill refuse it.
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&part, bytes).unwrap();
    let out = wardenctl_logged(&cfg, &["backup", "verify", "--job", "etcd"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stdout.contains(&format!("set {}: FAILED", made[2])),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("set {}: ok", made[1])),
        "{}",
        out.stdout
    );
    let out = wardenctl_logged(
        &cfg,
        &[
            "drill",
            "--job",
            "etcd",
            "--scratch-dir",
            scratch.to_str().unwrap(),
        ],
    );
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("FAILED"), "{}", out.describe());
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().flatten().collect();
    assert!(
        left.is_empty(),
        "scratch left behind after a failed drill: {left:?}"
    );
}

/// The copy holds tick's sets too, pruned there by the job's retention, and verify
/// and restore work from it alone (with its own key).
fn copy_holds_the_jobs_sets(work: &Path, cluster: &warden_tests::Cluster, copy_dir: &Path) {
    use warden_tests::wait_until;
    let node = cluster.node(0);
    let copy_tick_dir = copy_dir.join(format!("{}/jobs/tick", cluster.scope()));
    // The copy holds tick's sets too, pruned there by the job's retention: two sets
    // later than what it holds now, it keeps at most three (two, plus one copied
    // this instant before its prune), where an unpruned copy would hold four.
    let held = wait_until(
        Duration::from_secs(60),
        "the copy holds tick's sets",
        || {
            let c = committed_sets(&copy_tick_dir);
            (c.len() >= 2).then_some(c)
        },
    );
    let newest = held.last().unwrap().clone();
    wait_until(
        Duration::from_secs(60),
        "two more tick sets reach the copy",
        || {
            let c = committed_sets(&copy_tick_dir);
            (c.iter().filter(|id| **id > newest).count() >= 2).then_some(())
        },
    );
    let c = committed_sets(&copy_tick_dir);
    assert!(c.len() <= 3, "the copy keeps tick's retention: {c:?}");
    assert!(
        !copy_dir
            .join(format!("{}/jobs/broken", cluster.scope()))
            .exists(),
        "a job that never committed a set has nothing in the copy"
    );
    // The copy alone: verify and restore from it (its own key).
    let out = wardenctl_logged(
        &node.config_path(),
        &[
            "backup",
            "verify",
            "--job",
            "tick",
            "--repository",
            "fs-copy",
        ],
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let restored = work.join("tick-restored");
    let out = wardenctl_logged(
        &node.config_path(),
        &[
            "restore",
            "--job",
            "tick",
            "--repository",
            "fs-copy",
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let stamp = std::fs::read_to_string(restored.join("tick.txt")).unwrap();
    assert!(
        stamp.trim().parse::<u128>().is_ok(),
        "the restored set is tick's output: {stamp:?}"
    );
}

/// The committed set ids (those with a `job.json`) under a job's directory, sorted.
fn committed_sets(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("job.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Serves HTTP on 127.0.0.1: every request body (JSON) goes to the channel, answered
/// 200. Runs until the test process ends.
fn webhook_listener() -> (String, std::sync::mpsc::Receiver<Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
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

/// The value of gauge `name` with `job="JOB"` in a metrics text.
fn gauge(text: &str, name: &str, job: &str) -> Option<i64> {
    let label = format!("job=\"{job}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

/// The archiver runs the jobs on their schedules: a job every 2 s keeps only its
/// newest two sets (its retention prunes after each run), a job that always fails
/// is counted in `/metrics` on every run but reaches the webhook once, with its exit
/// status and stderr. A repository copy (own key) holds the jobs' sets, pruned by
/// each job's retention, and verify and restore work from it alone.
#[test]
fn the_archiver_runs_jobs_on_schedule_prunes_and_alerts_a_failure_once() {
    use warden_tests::backupkit::{backup_spec, repository};
    use warden_tests::{wait_until, Cluster};
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let (url, alerts) = webhook_listener();
    // A repository copy with its own key: the jobs' sets are copied (re-sealed) too.
    let copy_dir = work.path().join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let copy_key_dir = work.path().join("copy-key");
    std::fs::create_dir_all(&copy_key_dir).unwrap();
    let copy_key = key_file(&copy_key_dir).unwrap();
    let yaml = format!(
        "{yaml}  webhook_url: {url}\n  jobs:\n    \
         - {{name: tick, kind: command, backup_command: [sh, -c, \"date +%s%N\"], restore_command: [sh, -c, \"mkdir -p $WARDEN_RESTORE_DIR && cat > $WARDEN_RESTORE_DIR/tick.txt\"], schedule: \"*/2 * * * * *\", retention: {{keep_last: 2}}}}\n    \
         - {{name: broken, kind: command, backup_command: [sh, -c, \"echo nope-on-stderr >&2; exit 7\"], schedule: \"*/2 * * * * *\"}}\n  \
         copies:\n    - name: fs-copy\n      repository: {{type: filesystem, path: {}, timeout: 10s}}\n      \
         encryption_key_file: {}\n",
        copy_dir.display(),
        copy_key.display()
    );
    let cluster = Cluster::start(backup_spec(1, yaml)).expect("start cluster");
    cluster.wait_formed(Duration::from_secs(90));
    let node = cluster.node(0);
    let metrics_url = format!("{}/metrics", node.api_url());
    let tick_dir = repo.join(format!("{}/jobs/tick", cluster.scope()));
    let committed = || committed_sets(&tick_dir);
    let first = wait_until(Duration::from_secs(60), "two scheduled tick sets", || {
        let c = committed();
        (c.len() == 2).then(|| c[0].clone())
    });
    wait_until(
        Duration::from_secs(60),
        "a later run prunes the oldest",
        || {
            let c = committed();
            (c.len() == 2 && !c.contains(&first)).then_some(())
        },
    );
    wait_until(
        Duration::from_secs(60),
        "three failed runs counted in /metrics",
        || {
            let text = warden_tests::http::get(&metrics_url).ok()?.body;
            let ok = gauge(
                &text,
                "warden_backup_job_last_success_timestamp_seconds",
                "tick",
            )? > 0;
            (ok && gauge(&text, "warden_backup_job_failures", "broken")? >= 3).then_some(())
        },
    );
    // Exactly one webhook for the failing job, however many runs failed.
    let mut seen = Vec::new();
    while let Ok(v) = alerts.recv_timeout(Duration::from_secs(3)) {
        seen.push(v);
    }
    let broken: Vec<&Value> = seen
        .iter()
        .filter(|v| {
            v["warden"]["kind"] == "job" && v["text"].as_str().unwrap_or("").contains("broken")
        })
        .collect();
    assert_eq!(broken.len(), 1, "one webhook for the failing job: {seen:?}");
    let text = broken[0]["text"].as_str().unwrap();
    assert!(
        text.contains("exit status: 7") && text.contains("nope-on-stderr"),
        "{text}"
    );

    copy_holds_the_jobs_sets(work.path(), &cluster, &copy_dir);

    // The DR report lists every job: frequency, retention, location, last success
    // and last drill.
    let out = wardenctl_logged(&node.config_path(), &["dr-report", "--format", "json"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let row = report["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["component"] == "job tick")
        .unwrap_or_else(|| panic!("no row for job tick: {report}"));
    assert!(
        row["frequency"].as_str().unwrap().contains("*/2 * * * * *"),
        "{row}"
    );
    assert_eq!(row["retention"], "keep_last 2", "{row}");
    assert!(
        row["location"].as_str().unwrap().ends_with("/jobs/tick/"),
        "{row}"
    );
    let fact = |name: &str| -> Value {
        report["facts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no fact {name}: {report}"))
    };
    assert!(fact("job tick last success")["at"].is_string());
    assert_eq!(fact("job broken last success")["value"], "never");
    assert_eq!(fact("job tick last drill")["value"], "never");

    // `backup list` shows the jobs beside PostgreSQL's backups.
    let out = wardenctl_logged(&node.config_path(), &["backup", "list", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let job = |name: &str| -> Value {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no job {name}: {v}"))
    };
    // Two kept; a third may be committed this instant, before its prune.
    let tick_sets = job("tick")["sets"].as_u64().unwrap();
    assert!((2..=3).contains(&tick_sets), "{v}");
    assert_eq!(job("broken")["sets"], 0, "{v}");
}
