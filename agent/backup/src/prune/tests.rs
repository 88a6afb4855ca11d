//! Planning from and executing against a real filesystem repository.

use super::*;
use crate::catalog::{BackupRecord, BACKUP_RECORD};
use crate::testkit::{backup_record, catalog};
use bytes::Bytes;
use chrono::TimeZone;

fn record(id: &str, day: u32, start_wal: &str) -> BackupRecord {
    let t = Utc.with_ymd_and_hms(2026, 12, day, 1, 0, 0).unwrap();
    backup_record(id, t, start_wal)
}

#[tokio::test]
async fn dry_run_plan_then_execute_deletes_records_objects_and_old_wal() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    for (id, day, wal) in [
        ("20261201T010000Z", 1, "000000010000000000000002"),
        ("20261202T010000Z", 2, "000000010000000000000004"),
    ] {
        let bdir = c.backup_dir(id);
        c.repo
            .put(&format!("{bdir}/base.tar.00000"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        c.put_record(&format!("{bdir}/{BACKUP_RECORD}"), &record(id, day, wal))
            .await
            .unwrap();
    }
    let wal = |n: &str| format!("demo/42/wal/00000001/{n}");
    for n in [
        "000000010000000000000002",
        "000000010000000000000003",
        "000000010000000000000004",
        "00000001.history",
    ] {
        c.repo.put(&wal(n), Bytes::from_static(b"w")).await.unwrap();
    }
    let policy = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    let plan = plan_prune(&c, &policy, crate::walchain::DEFAULT_SEGMENT_SIZE)
        .await
        .unwrap();
    let report = Report::of(&plan, true);
    assert_eq!(report.backups_deleted, vec!["20261201T010000Z"]);
    assert_eq!(report.wal_deleted, 2);
    assert!(report
        .human()
        .contains("would delete backup 20261201T010000Z"));
    // Planning alone deleted nothing.
    assert_eq!(c.backups().await.unwrap().len(), 2);

    execute(&c, &plan).await.unwrap();
    let left: Vec<String> = c
        .backups()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(left, vec!["20261202T010000Z"]);
    let objects: Vec<String> = c
        .repo
        .list("demo/42/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert!(
        !objects.iter().any(|p| p.contains("20261201T010000Z")),
        "{objects:?}"
    );
    assert!(objects.contains(&wal("000000010000000000000004")));
    assert!(objects.contains(&wal("00000001.history")));
    assert!(!objects.contains(&wal("000000010000000000000002")));
    assert!(!objects.contains(&wal("000000010000000000000003")));

    // `delete ID`: just that one; an unknown id is an error naming it.
    let one = plan_delete(&c, "20261202T010000Z").await.unwrap();
    assert_eq!(one.doomed_backups().count(), 1);
    assert!(one.wal.is_empty());
    let e = plan_delete(&c, "20990101T000000Z").await.unwrap_err();
    assert!(e.to_string().contains("20990101T000000Z"), "{e}");
}
