//! Redis RDB snapshots in the repository, against real `redis-server`s: snapshot from a
//! replica, verify, restore, drill, corruption, a failed fetch, retention.

mod rdb_support;

use std::time::Duration;

use bytes::Bytes;
use rdb_support::{catalog, Server};
use warden_backup::catalog::RDB_RECORD;
use warden_backup::codec;
use warden_backup::prune;
use warden_backup::rdb::drill::{self, RdbCheck, RdbDrillOptions};
use warden_backup::rdb::{self, RdbCheckError, RdbJob, RdbJobError};
use warden_config::Retention;
use warden_redis::rdb::fetch::Auth;
use warden_redis::rdb::{FetchError, FetchOptions, RdbError, RestoreError};

fn job(c: &warden_backup::catalog::Catalog, server: &Server) -> RdbJob {
    let mut fetch = FetchOptions::new("127.0.0.1", server.port);
    fetch.idle_timeout = Duration::from_secs(10);
    fetch.deadline = Duration::from_secs(60);
    let mut j = RdbJob::new(c.clone(), fetch, "m1");
    // Several parts even for a small snapshot: the stream crosses part boundaries.
    j.part_size = 64 * 1024;
    j
}

async fn objects(c: &warden_backup::catalog::Catalog, prefix: &str) -> Vec<String> {
    c.repo
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_from_a_replica_is_listed_verified_restored_and_drilled() {
    let primary = Server::start(&[]);
    primary.fill(20_000);
    let replica = Server::replica_of(&primary);
    rdb_support::wait_until("the replica has every key", Duration::from_secs(30), || {
        replica.dbsize() == 20_000
    });
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());

    let record = job(&c, &replica).run().await.unwrap();
    assert_eq!(record.source, format!("127.0.0.1:{}", replica.port));
    assert_eq!(record.rdb_version, 10);
    assert!(
        record
            .redis_version
            .as_deref()
            .is_some_and(|v| v.starts_with("7.")),
        "{:?}",
        record.redis_version
    );
    assert!(record.parts.len() > 1, "{} part(s)", record.parts.len());
    assert_eq!(
        record.size,
        record.parts.iter().map(|p| p.plain_size).sum::<u64>()
    );
    let listed = c.rdbs().await.unwrap();
    assert_eq!(listed, vec![record.clone()]);
    assert_eq!(c.rdb("latest").await.unwrap(), record);

    let checked = rdb::verify(&c, &record).await.unwrap();
    assert_eq!(checked.summary.crc, record.crc64);
    assert_eq!(checked.parts_checked, record.parts.len());
    // `wardenctl backup verify` (everything) covers snapshots too.
    let all = warden_backup::verify::verify(&c, None).await.unwrap();
    assert!(all.ok(), "{}", all.human());
    assert_eq!(all.rdbs.len(), 1);

    let target = dir.path().join("restored");
    let restored = rdb::restore(&c, &record, &target).await.unwrap();
    assert_eq!(restored.path, target.join("dump.rdb"));
    assert_eq!(
        std::fs::metadata(&restored.path).unwrap().len(),
        record.size
    );
    // Again into the same, now non-empty, directory: refused.
    let again = rdb::restore(&c, &record, &target).await.unwrap_err();
    assert!(
        matches!(
            again,
            RdbCheckError::Restore {
                source: RestoreError::TargetNotEmpty { .. },
                ..
            }
        ),
        "{again}"
    );

    let mut opts = RdbDrillOptions::new("m1");
    opts.checks = vec![
        RdbCheck::DbSizeAtLeast(20_000),
        RdbCheck::Get {
            key: "key:12345".into(),
            value: "value:12345".into(),
        },
    ];
    opts.timeout = Duration::from_secs(60);
    opts.scratch_parent = Some(dir.path().to_owned());
    let report = drill::run(&c, &opts).await.unwrap();
    println!("{}", drill::render(&report));
    assert!(report.ok, "{:?}", report.error);
    assert_eq!(report.backup_id.as_deref(), Some(record.id.as_str()));
    assert!(report.rto_seconds.is_some_and(|s| s > 0.0));
    assert!(report.rpo_seconds.is_some_and(|s| s >= 0.0));
    assert_eq!(report.checks.len(), 2);
    assert_eq!(report.checks[0].got, "20000");
    assert_eq!(c.drills().await.unwrap(), vec![report]);
    // The scratch directory is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("warden-rdb-drill-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A check that does not hold fails the drill, recorded as failed.
    opts.checks = vec![RdbCheck::DbSizeAtLeast(20_001)];
    let failed = drill::run(&c, &opts).await.unwrap();
    assert!(!failed.ok);
    assert!(failed.error.unwrap().contains("DBSIZE >= 20001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_sealed_with_a_wrong_crc_is_refused_by_verify_and_restore() {
    let server = Server::start(&[]);
    server.fill(3_000);
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    let mut record = job(&c, &server).run().await.unwrap();

    // Flip one plaintext byte of the first part and seal it again, properly: the codec
    // and the record's part digests are satisfied, only the RDB's CRC-64 can tell.
    let rdir = c.rdb_dir(&record.id);
    let path = format!("{rdir}/{}", record.parts[0].name);
    let sealed = c.repo.get(&path).await.unwrap();
    let (mut plain, _) = codec::open_bytes(&c.key, &path, &sealed).unwrap();
    plain[1_000] ^= 0x20;
    let (resealed, info) = codec::seal_bytes(&c.key, 3, &path, &plain).unwrap();
    record.parts[0].sha256 = hex::encode(info.digest);
    record.parts[0].stored_size = resealed.len() as u64;
    c.repo.put(&path, Bytes::from(resealed)).await.unwrap();
    c.put_record(&format!("{rdir}/{RDB_RECORD}"), &record)
        .await
        .unwrap();

    let e = rdb::verify(&c, &record).await.unwrap_err();
    assert!(
        matches!(e.rdb(), Some(RdbError::ChecksumMismatch { stored, .. }) if *stored == record.crc64),
        "{e}"
    );
    let target = dir.path().join("restored");
    let e = rdb::restore(&c, &record, &target).await.unwrap_err();
    assert!(
        matches!(e.rdb(), Some(RdbError::ChecksumMismatch { .. })),
        "{e}"
    );
    assert!(!target.join("dump.rdb").exists());
    assert!(
        !target.exists(),
        "the directory the restore created is removed"
    );

    // A flipped byte in the sealed object itself: the codec refuses it.
    let mut bad = c.repo.get(&path).await.unwrap().to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    c.repo.put(&path, Bytes::from(bad)).await.unwrap();
    let e = rdb::verify(&c, &record).await.unwrap_err();
    assert!(matches!(e, RdbCheckError::Parts { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_leaves_no_record_and_no_parts() {
    let server = Server::start(&["--requirepass", "right"]);
    server.fill(100);
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    let mut j = job(&c, &server);
    j.fetch.auth = Some(Auth {
        username: None,
        password: "wrong".into(),
    });
    let e = j.run().await.unwrap_err();
    assert!(
        matches!(e, RdbJobError::Fetch(FetchError::AuthFailed { .. })),
        "{e}"
    );
    assert!(c.rdbs().await.unwrap().is_empty());
    assert!(objects(&c, "redis/0/rdb/").await.is_empty());

    // The right password works against the same server.
    j.fetch.auth = Some(Auth {
        username: None,
        password: "right".into(),
    });
    assert_eq!(j.run().await.unwrap().rdb_version, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_the_older_snapshot_and_old_leftovers() {
    let server = Server::start(&[]);
    server.fill(500);
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    let j = job(&c, &server);
    let older = j.run_as("20260101T000000Z").await.unwrap();
    let newer = j.run_as("20260102T000000Z").await.unwrap();
    // What a job that died two days ago left: parts, no record.
    c.repo
        .put(
            "redis/0/rdb/20200101T000000Z/dump.rdb.00000",
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();

    let policy = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    let plan = prune::plan_prune(&c, &policy, warden_backup::walchain::DEFAULT_SEGMENT_SIZE)
        .await
        .unwrap();
    let report = prune::Report::of(&plan, true);
    assert_eq!(report.rdbs_deleted, vec![older.id.clone()]);
    assert_eq!(report.rdbs_kept.len(), 1);
    assert_eq!(
        report.leftovers_deleted,
        vec!["redis/0/rdb/20200101T000000Z"]
    );
    assert!(report
        .human()
        .contains(&format!("would delete RDB snapshot {}", older.id)));
    prune::execute(&c, &plan).await.unwrap();

    assert_eq!(c.rdbs().await.unwrap(), vec![newer.clone()]);
    let left = objects(&c, "redis/0/").await;
    assert!(left.iter().all(|p| p.contains(&newer.id)), "{left:?}");
    rdb::verify(&c, &newer).await.unwrap();
}
