//! WAL archiving and restore through `warden wal-push` / `warden wal-fetch`, for both
//! repository kinds: a real PostgreSQL 15 archives into the repository; pushes of
//! identical and of different content; a restore from `pg_basebackup -X none` plus
//! archived WAL; a tampered object refused by wal-fetch.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use warden_tests::backupkit::{key_file, s3_repository_yaml};
use warden_tests::pgserver::PgServer;
use warden_tests::process::{run_bounded, RunOutput};
use warden_tests::s3::{self, S3Server};
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::{bins, http, sql, wait};

const SCOPE: &str = "archtest";
const BUCKET: &str = "warden-archive";
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(30);
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a test's repository is and how to look into it without Warden's code.
enum Repo {
    Fs(PathBuf),
    S3(S3Server),
}

impl Repo {
    fn yaml(&self) -> String {
        match self {
            Repo::Fs(path) => format!(
                "  repository:\n    type: filesystem\n    path: {}\n",
                path.display()
            ),
            Repo::S3(server) => s3_repository_yaml(server, BUCKET, "test/prefix"),
        }
    }

    /// The object key (S3) or file (filesystem) of an archived WAL file, found by
    /// listing, so the test does not re-derive the system identifier.
    fn find(&self, name: &str) -> Option<String> {
        match self {
            Repo::Fs(root) => find_file(root, name).map(|p| p.display().to_string()),
            Repo::S3(server) => {
                let url = format!(
                    "{}/{BUCKET}?list-type=2&prefix=test/prefix/{SCOPE}/",
                    server.endpoint()
                );
                let body = http::get_with_timeout(&url, Duration::from_secs(5))
                    .ok()?
                    .body;
                body.split("<Key>")
                    .skip(1)
                    .filter_map(|s| s.split("</Key>").next())
                    .find(|k| k.ends_with(&format!("/{name}")))
                    .map(str::to_string)
            }
        }
    }

    /// Flips one bit in the middle of a stored object. S3 objects go through boto3
    /// (moto's own dependency, in the same venv): moto refuses unsigned object reads.
    fn tamper(&self, object: &str) {
        match self {
            Repo::Fs(_) => {
                let mut bytes = std::fs::read(object).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x01;
                std::fs::write(object, bytes).unwrap();
            }
            Repo::S3(server) => {
                let script = format!(
                    "import boto3\n\
                     c = boto3.client('s3', endpoint_url='{}', region_name='{}', \
                     aws_access_key_id='{}', aws_secret_access_key='{}')\n\
                     b = bytearray(c.get_object(Bucket='{BUCKET}', Key='{object}')['Body'].read())\n\
                     b[len(b) // 2] ^= 1\n\
                     c.put_object(Bucket='{BUCKET}', Key='{object}', Body=bytes(b))\n",
                    server.endpoint(),
                    s3::REGION,
                    s3::ACCESS_KEY_ID,
                    s3::SECRET_ACCESS_KEY
                );
                let python = bins::default_venv().join("bin/python");
                let out = run_bounded(Command::new(python).args(["-c", &script]), COMMAND_TIMEOUT)
                    .unwrap();
                assert_eq!(
                    out.code(),
                    Some(0),
                    "tampering with {object}: {}",
                    out.describe()
                );
            }
        }
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().and_then(|n| n.to_str()) == Some(name) {
            return Some(path);
        }
    }
    None
}

/// A Warden config for the archive commands: the agent sections are required by the
/// loader but nothing here starts an agent.
fn write_config(dir: &Path, data_dir: &Path, repo: &Repo) -> PathBuf {
    let key_file = key_file(dir).unwrap();
    let config = dir.join("warden.yml");
    let yaml = format!(
        "scope: {SCOPE}\nname: n1\nlog: {{level: WARNING}}\nrestapi: {{listen: 127.0.0.1:1}}\n\
         etcd3: {{hosts: 127.0.0.1:1}}\npostgresql:\n  listen: 127.0.0.1:1\n  data_dir: {}\n  \
         authentication:\n    superuser: {{username: postgres}}\n    replication: {{username: replicator}}\n\
         backup:\n{}  encryption_key_file: {}\n  compression_level: 3\n",
        data_dir.display(),
        repo.yaml(),
        key_file.display()
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

/// The `warden` binary at a path the `postgres` user can reach: the build tree may sit
/// under a directory only root may enter, the test directory never does. A hard link
/// when possible (no copy of a large debug binary).
fn reachable_warden(dir: &Path) -> PathBuf {
    let built = bins::warden_bin().unwrap();
    let here = dir.join("warden");
    if std::fs::hard_link(&built, &here).is_err() {
        std::fs::copy(&built, &here).unwrap();
    }
    here
}

/// `warden <args>` in `cwd` (PostgreSQL runs the archive commands in the data dir).
fn warden(cwd: &Path, args: &[&str]) -> RunOutput {
    let mut cmd = Command::new(bins::warden_bin().unwrap());
    cmd.current_dir(cwd).args(args);
    run_bounded(&mut cmd, COMMAND_TIMEOUT).unwrap()
}

fn scenario(work: &WorkDir, repo: &Repo) {
    let root = work.path();
    let mut primary = PgServer::init(&root.join("primary")).unwrap();
    let config = write_config(root, &primary.data_dir(), repo);
    let cfg = config.display().to_string();
    let warden_bin = reachable_warden(root);
    primary
        .configure(&[
            "archive_mode = on".into(),
            format!(
                "archive_command = '{} wal-push -c {cfg} %p'",
                warden_bin.display()
            ),
        ])
        .unwrap();
    primary.start().unwrap();
    let port = primary.port();
    sql::execute(port, "CREATE TABLE t (phase text, n int); INSERT INTO t SELECT 'before', g FROM generate_series(1, 100) g").unwrap();

    let restored_dir = root.join("restored");
    let mut restored = PgServer::base_backup(&primary, &restored_dir).unwrap();

    sql::execute(
        port,
        "INSERT INTO t SELECT 'after', g FROM generate_series(1, 500) g",
    )
    .unwrap();
    let segment = sql::query_text(port, "SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap()
        .unwrap();
    let object = wait::wait_until(ARCHIVE_TIMEOUT, &format!("{segment} archived"), || {
        repo.find(&segment)
    });

    // Fetch it back, then push the same bytes again: identical content is success.
    let scratch = root.join("scratch");
    create_node_dir(&scratch).unwrap();
    let copy = scratch.join(&segment);
    let data_dir = primary.data_dir();
    let copy_arg = copy.display().to_string();
    let out = warden(&data_dir, &["wal-fetch", "-c", &cfg, &segment, &copy_arg]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), 16 * 1024 * 1024);
    let out = warden(&data_dir, &["wal-push", "-c", &cfg, &copy_arg]);
    assert_eq!(
        out.code(),
        Some(0),
        "re-push of identical content: {}",
        out.describe()
    );

    // Different content under the same name: refused, naming the segment.
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let out = warden(&data_dir, &["wal-push", "-c", &cfg, &copy_arg]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!(
            "{segment}: already archived with DIFFERENT content"
        )),
        "{}",
        out.describe()
    );

    // A missing file: exit 1, quietly.
    let out = warden(
        &data_dir,
        &[
            "wal-fetch",
            "-c",
            &cfg,
            "0000000100000000000000FE",
            &copy_arg,
        ],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.is_empty(), "{}", out.describe());

    // Restore: the base backup plus archived WAL has the rows written after it.
    restored
        .configure(&[
            "archive_mode = off".into(),
            format!(
                "restore_command = '{} wal-fetch -c {cfg} %f %p'",
                warden_bin.display()
            ),
        ])
        .unwrap();
    restored.touch("recovery.signal").unwrap();
    restored.start().unwrap();
    let rport = restored.port();
    let after = wait::wait_until(
        RESTORE_TIMEOUT,
        "restored server out of recovery with the rows",
        || {
            let in_recovery = sql::is_in_recovery(rport).ok()?;
            let n = sql::query_text(rport, "SELECT count(*)::text FROM t WHERE phase = 'after'")
                .ok()??;
            (!in_recovery).then_some(n)
        },
    );
    assert_eq!(
        after, "500",
        "rows written after the base backup must be replayed"
    );
    let log = std::fs::read_to_string(restored.log_path()).unwrap();
    assert!(
        log.contains(&format!("restored log file \"{segment}\" from archive")),
        "{log}"
    );

    // A tampered object: wal-fetch refuses it with the code that aborts recovery.
    repo.tamper(&object);
    let dest = scratch.join("RECOVERYXLOG");
    let dest_arg = dest.display().to_string();
    let out = warden(&data_dir, &["wal-fetch", "-c", &cfg, &segment, &dest_arg]);
    assert_eq!(out.code(), Some(200), "{}", out.describe());
    assert!(
        out.stderr.contains("corrupt or was tampered with"),
        "{}",
        out.describe()
    );
    assert!(
        !dest.exists(),
        "nothing may be written for a tampered object"
    );
}

#[test]
fn filesystem_repository_archives_and_restores() {
    let work = WorkDir::temp().unwrap();
    let repo_dir = work.path().join("repo");
    create_node_dir(&repo_dir).unwrap();
    scenario(&work, &Repo::Fs(repo_dir));
}

#[test]
fn s3_repository_archives_and_restores() {
    let work = WorkDir::temp().unwrap();
    let server = S3Server::start(&work.path().join("moto")).unwrap();
    server.create_bucket(BUCKET).unwrap();
    scenario(&work, &Repo::S3(server));
}
