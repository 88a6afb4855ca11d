//! Scheduled jobs and the automatic retention prune: with `backup.schedule` and
//! `backup.dump.schedule` firing every 10 seconds and `retention: {keep_last: 1}`,
//! the archiver keeps taking base backups and dumps, and after each one the prune
//! (the configured retention is the confirmation) leaves only the newest of each.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use warden_tests::backupkit::{backup_spec, repository};
use warden_tests::workdir::WorkDir;
use warden_tests::{sql, wait_until, Cluster};

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
    let (repo, yaml) = repository(work.path()).unwrap();
    let yaml = format!(
        "{yaml}  wal_wait_timeout: 60s\n  schedule: \"*/10 * * * * *\"\n  \
         retention: {{keep_last: 1}}\n  dump: {{schedule: \"*/10 * * * * *\"}}\n"
    );
    let cluster = Cluster::start(backup_spec(1, yaml)).expect("start cluster");
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
