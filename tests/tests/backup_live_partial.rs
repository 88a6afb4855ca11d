//! The archiver's live `.partial` (issue 6, archive RPO): WAL committed on the primary
//! reaches the repository within about `backup.partial_upload_interval`, long before
//! its segment is complete, and `warden wal-fetch` serves it. Once the segment is
//! complete and archived, the live copy is gone.
//!
//! The check is independent of Warden's own bookkeeping: the fetched file is read by
//! `pg_waldump`, and it must hold the commit's WAL.

use std::path::Path;
use std::time::Duration;

use warden_tests::backupkit::{repository, start_formed, wait_replica_archiver};
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::{sql, wait_until, walfile};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// The live copy goes up every 300 ms here; 15 s is slack for a loaded machine.
const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

fn live_objects(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(scopes) = std::fs::read_dir(repo) else {
        return out;
    };
    for scope in scopes.flatten() {
        for sysid in std::fs::read_dir(scope.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let live = sysid.path().join("wal_live");
            for tl in std::fs::read_dir(live).into_iter().flatten().flatten() {
                for f in std::fs::read_dir(tl.path()).into_iter().flatten().flatten() {
                    out.push(f.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    out
}

#[test]
fn committed_wal_reaches_the_repository_before_its_segment_completes() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let yaml = format!("{yaml}  partial_upload_interval: 300ms\n");
    let (cluster, primary) = start_formed(2, yaml, FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    wait_replica_archiver(&cluster, primary);
    // Start on a fresh segment so the write below cannot complete one.
    sql::query_text(port, "SELECT pg_switch_wal()").unwrap();
    sql::execute(
        port,
        "CREATE TABLE live (n int); INSERT INTO live VALUES (1)",
    )
    .unwrap();
    let committed = sql::query_text(port, "SELECT pg_current_wal_lsn()")
        .unwrap()
        .unwrap();
    let segment = sql::query_text(port, &format!("SELECT pg_walfile_name('{committed}')"))
        .unwrap()
        .unwrap();
    let committed = walfile::parse_lsn(&committed).unwrap();
    println!(
        "commit ends at {committed:X}, segment {segment} at {:?}",
        std::time::SystemTime::now()
    );

    let scratch = work.path().join("scratch");
    create_node_dir(&scratch).unwrap();
    let dest = scratch.join(&segment);
    let node = cluster.node(primary);
    let (data_dir, config) = (node.data_dir(), node.config_path());
    let started = std::time::Instant::now();
    let end = wait_until(
        LIVE_TIMEOUT,
        "the commit's WAL fetchable from the repository",
        || {
            let _ = std::fs::remove_file(&dest);
            let fetched = walfile::fetch(&config, &data_dir, &segment, &dest).unwrap();
            if !fetched {
                return None;
            }
            match walfile::valid_end(&dest) {
                walfile::WalEnd::At(end) => (end >= committed).then_some(end),
                other => panic!("the live copy is not a partial segment: {other:?}"),
            }
        },
    );
    println!(
        "valid WAL in the repository up to {end:X} after {:?}",
        started.elapsed()
    );
    assert!(
        live_objects(&repo).contains(&segment),
        "served from the live copy (the segment is not complete): {:?}",
        live_objects(&repo)
    );

    // Complete the segment: the archived segment replaces the live copy.
    sql::query_text(port, "SELECT pg_switch_wal()").unwrap();
    wait_until(LIVE_TIMEOUT, "the live copy deleted once archived", || {
        (!live_objects(&repo).contains(&segment)).then_some(())
    });
    assert!(
        walfile::fetch(&config, &data_dir, &segment, &dest).unwrap(),
        "the archived segment is fetchable"
    );
}
