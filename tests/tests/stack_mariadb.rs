//! `backup.jobs` of kind `mariadb` (issue 15), end to end through `wardenctl` and a
//! real MariaDB server (Debian `mariadb-server`) started here as the unprivileged
//! `mysql` user, shared by both methods:
//! - `dump`: `mariadb-dump --single-transaction --routines --triggers --events` of
//!   every non-system database while a writer inserts, sealed into the repository; the
//!   job's retention; `backup verify --job`; a drill that loads the newest dump into a
//!   scratch server on a free port and runs the job's SQL checks; `restore --job --to`
//!   writing the SQL dump; a corrupted part refused; the password never in output.
//! - `physical`: `mariadb-backup --backup --stream=mbstream` by a user holding only the
//!   documented grants, while a writer commits two-table transactions; a drill that
//!   extracts, prepares and starts the copy and checks it is transactionally
//!   consistent; `restore --to DIR` giving a datadir a plain `mariadbd` starts on, with
//!   every row committed before the backup began; a corrupted part refused, nothing
//!   left in DIR.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use warden_tests::backupkit::{key_file, wardenctl_logged};
use warden_tests::wait_until;
use warden_tests::workdir::WorkDir;

const PASSWORD: &str = "mariadb-pw-never-logged";

/// The source server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mysql_ids() -> (u32, u32) {
    let text = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("mysql:"))
        .expect("the mysql user (mariadb-server)");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn sql(sock: &Path, statement: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "--user=root", "-N", "-B"])
        .arg(format!("--socket={}", sock.display()))
        .args(["-e", statement])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Initialises and starts a server in `dir` as `mysql`; it and its socket and port.
fn start_server(dir: &Path) -> (Server, PathBuf, u16) {
    let (uid, gid) = mysql_ids();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for p in [dir, data.as_path()] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    }
    let status = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .stdout(Stdio::null())
        .uid(uid)
        .gid(gid)
        .status()
        .unwrap();
    assert!(status.success(), "mariadb-install-db");
    run_server(dir, &data)
}

/// Starts a server as `mysql` on the datadir `data`, with its socket, pid file and
/// log in `dir` (owned by `mysql`).
fn run_server(dir: &Path, data: &Path) -> (Server, PathBuf, u16) {
    let (uid, gid) = mysql_ids();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sock = dir.join("s.sock");
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Command::new("mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--pid-file={}", dir.join("s.pid").display()))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .uid(uid)
        .gid(gid)
        .spawn()
        .unwrap();
    let server = Server(child);
    wait_until(
        Duration::from_secs(60),
        "the MariaDB server answers",
        || sql(&sock, "SELECT 1").ok(),
    );
    (server, sock, port)
}

fn json_of(config: &Path, args: &[&str]) -> Value {
    let out = wardenctl_logged(config, args);
    assert_eq!(
        out.code(),
        Some(0),
        "wardenctl {args:?}: {}",
        out.describe()
    );
    assert!(
        !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
        "the password leaked: {}",
        out.describe()
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The shared server and the config naming both jobs.
struct Story {
    dir: PathBuf,
    sock: PathBuf,
    cfg: PathBuf,
    repo: PathBuf,
}

#[test]
fn mariadb_jobs_dump_and_physical_on_one_server() {
    let work = WorkDir::temp().unwrap();
    let dir = work.path();
    // The server's user must reach its directory.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let (_server, sock, port) = start_server(&src);
    for s in [
        "CREATE DATABASE app",
        "CREATE TABLE app.users (id INT PRIMARY KEY, name TEXT)",
        "INSERT INTO app.users VALUES (1, 'ada'), (2, 'bob'), (3, 'cy')",
        "CREATE TABLE app.events (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
        "CREATE PROCEDURE app.user_count() SELECT count(*) FROM app.users",
        "CREATE DATABASE shop",
        "CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
        "CREATE TABLE shop.lines (order_id INT PRIMARY KEY)",
        // Not InnoDB: copied under mariadb-backup's brief lock, not from the redo log.
        "CREATE TABLE shop.legacy (id INT) ENGINE=MyISAM",
        "INSERT INTO shop.legacy VALUES (1), (2)",
        &format!("CREATE USER backup@'%' IDENTIFIED BY '{PASSWORD}'"),
        "GRANT ALL ON *.* TO backup@'%'",
        // The grants docs/jobs-mariadb.md gives for the physical method, and no more.
        &format!("CREATE USER phys@'%' IDENTIFIED BY '{PASSWORD}'"),
        "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO phys@'%'",
    ] {
        sql(&sock, s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let pw = dir.join("mariadb.pass");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let key = key_file(dir).unwrap();
    let yaml = format!(
        r#"scope: stackmariadb
name: ctl
backup:
  repository: {{type: filesystem, path: {repo}, timeout: 10s}}
  encryption_key_file: {key}
  jobs:
    - name: app-db
      kind: mariadb
      schedule: "0 * * * *"
      connection: {{host: 127.0.0.1, port: {port}, user: backup, password_file: {pw}}}
      retention: {{keep_last: 2}}
      drill:
        timeout: 120s
        checks:
          - {{name: users, sql: "SELECT count(*) FROM app.users", expect: "3"}}
          - {{name: routine, sql: "SELECT count(*) FROM information_schema.routines WHERE routine_schema = 'app'", expect: "1"}}
    - name: app-phys
      kind: mariadb
      method: physical
      connection: {{host: 127.0.0.1, port: {port}, user: phys, password_file: {pw}}}
      drill:
        timeout: 180s
        checks:
          - {{name: consistent, sql: "SELECT (SELECT count(*) FROM shop.orders) = (SELECT count(*) FROM shop.lines)", expect: "1"}}
          - {{name: orders, sql: "SELECT count(*) >= 10 FROM shop.orders", expect: "1"}}
          - {{name: myisam, sql: "SELECT count(*) FROM shop.legacy", expect: "2"}}
"#,
        repo = repo.display(),
        key = key.display(),
        pw = pw.display(),
    );
    let cfg = dir.join("warden.yml");
    std::fs::write(&cfg, yaml).unwrap();
    let t = Story {
        dir: dir.to_path_buf(),
        sock,
        cfg,
        repo,
    };
    dump_story(&t);
    physical_story(&t);
}

/// `method: dump`; each step reads what the previous one left.
#[allow(clippy::too_many_lines)]
fn dump_story(t: &Story) {
    // A writer inserts the whole time the dumps run.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, sock) = (stop.clone(), t.sock.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if sql(&sock, "INSERT INTO app.events () VALUES ()").is_ok() {
                    n += 1;
                }
            }
            n
        })
    };
    let mut made = Vec::new();
    for _ in 0..3 {
        let v = json_of(&t.cfg, &["backup", "create", "--job", "app-db", "--json"]);
        made.push(v["id"].as_str().unwrap().to_owned());
    }
    stop.store(true, Ordering::SeqCst);
    let inserted = writer.join().unwrap();
    assert!(inserted > 0, "the writer ran");

    let list = json_of(&t.cfg, &["backup", "list", "--job", "app-db", "--json"]);
    let ids: Vec<&str> = list["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&made[1], &made[2]], "keep_last 2: {list}");
    assert_eq!(list["kind"], "mariadb");
    assert_eq!(list["sets"][1]["method"], "dump", "{list}");

    let out = wardenctl_logged(&t.cfg, &["backup", "verify", "--job", "app-db"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());

    let scratch = t.dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let drill = json_of(
        &t.cfg,
        &[
            "drill",
            "--job",
            "app-db",
            "--scratch-dir",
            scratch.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["checks"][0]["got"], "3", "{drill}");
    assert_eq!(drill["checks"][1]["ok"], true, "{drill}");
    assert!(
        std::fs::read_dir(&scratch).unwrap().next().is_none(),
        "scratch cleaned up"
    );

    let to = t.dir.join("restored");
    let out = wardenctl_logged(
        &t.cfg,
        &["restore", "--job", "app-db", "--to", to.to_str().unwrap()],
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let dump = std::fs::read_to_string(to.join("dump.sql")).unwrap();
    assert!(dump.contains("CREATE TABLE `users`"), "a dump of app");
    assert!(dump.contains("PROCEDURE `user_count`"), "with its routines");
    assert!(!dump.contains(PASSWORD));

    // One flipped byte in the newest set: verify refuses it.
    let part = t
        .repo
        .join("stackmariadb/jobs/app-db")
        .join(&made[2])
        .join("stream.00000");
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&part, bytes).unwrap();
    let out = wardenctl_logged(&t.cfg, &["backup", "verify", "--job", "app-db"]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stdout.contains(&format!("set {}: FAILED", made[2])),
        "{}",
        out.stdout
    );
}

fn count(sock: &Path, table: &str) -> u64 {
    sql(sock, &format!("SELECT count(*) FROM {table}"))
        .unwrap_or_else(|e| panic!("{table}: {e}"))
        .parse()
        .unwrap()
}

/// `method: physical`; each step reads what the previous one left.
#[allow(clippy::too_many_lines)]
fn physical_story(t: &Story) {
    // A writer commits an order and its line in one transaction, the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, sock) = (stop.clone(), t.sock.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let tx = "BEGIN; INSERT INTO shop.orders () VALUES (); \
                          INSERT INTO shop.lines VALUES (LAST_INSERT_ID()); COMMIT";
                if sql(&sock, tx).is_ok() {
                    n += 1;
                }
            }
            n
        })
    };
    wait_until(
        Duration::from_secs(60),
        "the writer committed 10 orders",
        || (count(&t.sock, "shop.orders") >= 10).then_some(()),
    );
    let before = count(&t.sock, "shop.orders");
    let v = json_of(&t.cfg, &["backup", "create", "--job", "app-phys", "--json"]);
    let after = count(&t.sock, "shop.orders");
    stop.store(true, Ordering::SeqCst);
    let inserted = writer.join().unwrap();
    assert!(
        after > before && inserted > 0,
        "writes went on during the backup: {before} then {after}"
    );
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["method"], "physical", "{v}");

    let list = json_of(&t.cfg, &["backup", "list", "--job", "app-phys", "--json"]);
    assert_eq!(list["sets"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["sets"][0]["method"], "physical", "{list}");
    let out = wardenctl_logged(&t.cfg, &["backup", "verify", "--job", "app-phys"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());

    // The drill: extracted, prepared, started on a free port, checked, removed.
    let scratch = t.dir.join("scratch-phys");
    std::fs::create_dir_all(&scratch).unwrap();
    let drill = json_of(
        &t.cfg,
        &[
            "drill",
            "--job",
            "app-phys",
            "--scratch-dir",
            scratch.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["backup_id"], id.as_str(), "{drill}");
    let checks = drill["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{drill}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{drill}");
    assert!(
        std::fs::read_dir(&scratch).unwrap().next().is_none(),
        "scratch cleaned up"
    );

    // Restore: a datadir a plain server starts on, with every row committed before
    // the backup began, none committed after it ended, orders and lines matching.
    let to = t.dir.join("restored-phys");
    let out = wardenctl_logged(
        &t.cfg,
        &["restore", "--job", "app-phys", "--to", to.to_str().unwrap()],
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("prepared data directory"),
        "says what to do next: {}",
        out.stdout
    );
    assert!(to.join("backup-my.cnf").is_file());
    let run = t.dir.join("run-restored");
    std::fs::create_dir_all(&run).unwrap();
    let (uid, gid) = mysql_ids();
    std::os::unix::fs::chown(&run, Some(uid), Some(gid)).unwrap();
    {
        let (_restored, rsock, _) = run_server(&run, &to);
        let orders = count(&rsock, "shop.orders");
        assert!(
            (before..=after).contains(&orders),
            "{before} committed before the backup, {after} after it; the copy has {orders}"
        );
        assert_eq!(count(&rsock, "shop.lines"), orders, "transactions whole");
        assert_eq!(count(&rsock, "shop.legacy"), 2);
        assert_eq!(count(&rsock, "app.users"), 3);
    }

    // One flipped byte in the set: restore refuses it and leaves nothing in DIR; the
    // drill fails and says why.
    let part = t
        .repo
        .join("stackmariadb/jobs/app-phys")
        .join(&id)
        .join("stream.00000");
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&part, bytes).unwrap();
    let bad = t.dir.join("restored-bad");
    let out = wardenctl_logged(
        &t.cfg,
        &[
            "restore",
            "--job",
            "app-phys",
            "--to",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("part problem"), "{}", out.describe());
    assert!(
        std::fs::read_dir(&bad).map_or(true, |mut d| d.next().is_none()),
        "nothing left in {}",
        bad.display()
    );
    let out = wardenctl_logged(
        &t.cfg,
        &[
            "drill",
            "--job",
            "app-phys",
            "--scratch-dir",
            scratch.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stdout.contains("FAILED"), "{}", out.describe());
}
