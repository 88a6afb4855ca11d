//! Scheduled jobs and the automatic retention prune: with `backup.schedule` and
//! `backup.dump.schedule` firing every 10 seconds and `retention: {keep_last: 1}`,
//! the archiver keeps taking base backups and dumps, and after each one the prune
//! (the configured retention is the confirmation) leaves only the newest of each.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use warden_tests::workdir::{chown_to_postgres, create_node_dir, WorkDir};
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const KEY: &str = "1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b3d";
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const SCHEDULE_TIMEOUT: Duration = Duration::from_secs(120);

/// Committed ids (directories holding their record) under `<cluster>/<kind>/`.
fn committed(repo: &Path, kind: &str, record: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(scopes) = std::fs::read_dir(repo) else {
        return out;
    };
    for scope in scopes.flatten() {
        let Ok(sysids) = std::fs::read_dir(scope.path()) else {
            continue;
        };
        for sysid in sysids.flatten() {
            let Ok(ids) = std::fs::read_dir(sysid.path().join(kind)) else {
                continue;
            };
            for id in ids.flatten() {
                if id.path().join(record).is_file() {
                    out.insert(id.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    out
}

#[test]
fn scheduled_backups_and_dumps_are_pruned_to_the_retention() {
    let work = WorkDir::temp().unwrap();
    let repo = work.path().join("repo");
    create_node_dir(&repo).unwrap();
    let key = work.path().join("backup.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown_to_postgres(&key).unwrap();
    let yaml = format!(
        "backup:\n  repository:\n    type: filesystem\n    path: {}\n    timeout: 10s\n  \
         encryption_key_file: {}\n  wal_wait_timeout: 60s\n  schedule: \"*/10 * * * * *\"\n  \
         retention: {{keep_last: 1}}\n  dump: {{schedule: \"*/10 * * * * *\"}}\n",
        repo.display(),
        key.display()
    );
    let cluster = Cluster::start(
        ClusterSpec::new(1)
            .without_haproxy()
            .customize(move |_, c| c.merge_yaml(&yaml).unwrap()),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let port = cluster.node(0).pg_port();
    sql::execute(port, "CREATE TABLE t AS SELECT generate_series(1, 100) n").unwrap();

    // Watch the committed backups and dumps until three of each have come and gone
    // through the schedule: never more than 2 at once (the new one before its
    // prune), and 1 after the prune.
    let mut seen_backups = BTreeSet::new();
    let mut seen_dumps = BTreeSet::new();
    wait_until(
        SCHEDULE_TIMEOUT,
        "three scheduled backups and dumps, pruned",
        || {
            let b = committed(&repo, "backups", "backup.json");
            let d = committed(&repo, "dumps", "dump.json");
            assert!(b.len() <= 2, "backups not pruned: {b:?}");
            assert!(d.len() <= 2, "dumps not pruned: {d:?}");
            seen_backups.extend(b.iter().cloned());
            seen_dumps.extend(d.iter().cloned());
            (seen_backups.len() >= 3 && seen_dumps.len() >= 3 && b.len() == 1 && d.len() == 1)
                .then_some(())
        },
    );
    let b = committed(&repo, "backups", "backup.json");
    assert!(
        b.iter().next() >= seen_backups.iter().nth(2),
        "the newest is what is kept: {b:?} of {seen_backups:?}"
    );
    let log = std::fs::read_to_string(cluster.node(0).log_path()).unwrap_or_default();
    assert!(
        log.contains("retention prune after the backup"),
        "the prune ran"
    );
}
