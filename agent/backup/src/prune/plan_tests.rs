use super::*;
use crate::catalog::FORMAT;
use crate::testkit::backup_record as backup;
use chrono::TimeZone;

const C: &str = "demo/42";
const SZ: u64 = walchain::DEFAULT_SEGMENT_SIZE;

fn at(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap()
}

fn dump(id: &str, finished: DateTime<Utc>) -> DumpRecord {
    DumpRecord {
        format: FORMAT,
        id: id.into(),
        member: "m".into(),
        system_identifier: 42,
        pg_version: 150000,
        started_at: finished,
        finished_at: finished,
        databases: vec![],
    }
}

fn objects(paths: &[&str]) -> Vec<(String, u64)> {
    paths.iter().map(|p| (format!("{C}/{p}"), 10)).collect()
}

fn inputs<'a>(
    backups: &'a [BackupRecord],
    dumps: &'a [DumpRecord],
    objects: &'a [(String, u64)],
) -> Inputs<'a> {
    Inputs {
        cluster: C,
        backups,
        dumps,
        rdbs: &[],
        objects,
        now: at(10, 12),
        leftover_age: chrono::Duration::days(1),
        seg_size: SZ,
    }
}

fn keep_last(n: u32) -> Retention {
    Retention {
        keep_last: Some(n),
        ..Retention::default()
    }
}

#[test]
fn deletes_unkept_backups_and_the_wal_only_they_needed() {
    let backups = [
        backup("20261201T000000Z", at(1, 1), "000000010000000000000002"),
        backup("20261202T000000Z", at(2, 1), "000000010000000000000005"),
        backup("20261203T000000Z", at(3, 1), "000000010000000000000008"),
    ];
    let objs = objects(&[
        "backups/20261201T000000Z/base.tar.00000",
        "backups/20261201T000000Z/backup_manifest",
        "backups/20261201T000000Z/backup.json",
        "backups/20261202T000000Z/base.tar.00000",
        "backups/20261202T000000Z/backup.json",
        "backups/20261203T000000Z/base.tar.00000",
        "backups/20261203T000000Z/backup.json",
        "wal/00000001/000000010000000000000001",
        "wal/00000001/000000010000000000000002",
        "wal/00000001/000000010000000000000002.00000028.backup",
        "wal/00000001/000000010000000000000007",
        "wal/00000001/000000010000000000000008",
        "wal/00000001/000000010000000000000009",
        "wal/00000002/00000002.history",
    ]);
    let plan = prune(&keep_last(1), &inputs(&backups, &[], &objs));
    let doomed: Vec<&str> = plan.doomed_backups().map(|i| i.id.as_str()).collect();
    assert_eq!(doomed, vec!["20261201T000000Z", "20261202T000000Z"]);
    let first = &plan.backups[0];
    assert_eq!(
        first.record,
        format!("{C}/backups/20261201T000000Z/backup.json")
    );
    assert_eq!(
        first.objects,
        vec![
            format!("{C}/backups/20261201T000000Z/backup_manifest"),
            format!("{C}/backups/20261201T000000Z/base.tar.00000"),
        ]
    );
    assert_eq!(first.bytes, 30);
    assert_eq!(plan.backups[2].kept_by, vec![Reason::Last]);
    // Everything before segment 8 except the history file.
    assert_eq!(
        plan.wal,
        vec![
            format!("{C}/wal/00000001/000000010000000000000001"),
            format!("{C}/wal/00000001/000000010000000000000002"),
            format!("{C}/wal/00000001/000000010000000000000002.00000028.backup"),
            format!("{C}/wal/00000001/000000010000000000000007"),
        ]
    );
    assert_eq!(
        plan.wal_kept_from.as_deref(),
        Some("000000010000000000000008")
    );
    assert!(!plan.is_empty());
}

#[test]
fn no_rule_deletes_no_backup_and_no_wal() {
    let backups = [
        backup("20261201T000000Z", at(1, 1), "000000010000000000000002"),
        backup("20261202T000000Z", at(2, 1), "000000010000000000000005"),
    ];
    let objs = objects(&[
        "backups/20261201T000000Z/backup.json",
        "backups/20261202T000000Z/backup.json",
        "wal/00000001/000000010000000000000001",
    ]);
    let plan = prune(&Retention::default(), &inputs(&backups, &[], &objs));
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn the_oldest_kept_backup_bounds_wal_even_when_kept_by_another_rule() {
    // keep_last 1 keeps Dec 3; keep_daily 2 also keeps Dec 2 (newest of its day).
    let backups = [
        backup("20261202T000000Z", at(2, 1), "000000010000000000000004"),
        backup("20261202T060000Z", at(2, 7), "000000010000000000000005"),
        backup("20261203T000000Z", at(3, 1), "000000010000000000000008"),
    ];
    let objs = objects(&[
        "wal/00000001/000000010000000000000004",
        "wal/00000001/000000010000000000000005",
    ]);
    let policy = Retention {
        keep_last: Some(1),
        keep_daily: Some(2),
        ..Retention::default()
    };
    let plan = prune(&policy, &inputs(&backups, &[], &objs));
    let doomed: Vec<&str> = plan.doomed_backups().map(|i| i.id.as_str()).collect();
    assert_eq!(doomed, vec!["20261202T000000Z"]);
    assert_eq!(
        plan.wal,
        vec![format!("{C}/wal/00000001/000000010000000000000004")]
    );
}

#[test]
fn a_kept_backup_with_an_unreadable_start_keeps_all_wal() {
    let backups = [
        backup("20261201T000000Z", at(1, 1), "garbage"),
        backup("20261203T000000Z", at(3, 1), "000000010000000000000008"),
    ];
    let objs = objects(&["wal/00000001/000000010000000000000001"]);
    let plan = prune(&keep_last(2), &inputs(&backups, &[], &objs));
    assert!(plan.wal.is_empty());
}

#[test]
fn leftovers_only_when_old_enough() {
    let backups = [backup(
        "20261209T000000Z",
        at(9, 1),
        "000000010000000000000008",
    )];
    let objs = objects(&[
        // Died 2 days ago: deleted.
        "backups/20261208T000000Z/base.tar.00000",
        "backups/20261208T000000Z/base.tar.00001",
        // Started an hour ago (maybe still running): left alone.
        "backups/20261210T110000Z/base.tar.00000",
        // Not an id: left alone.
        "backups/by-hand/x",
        "backups/20261209T000000Z/backup.json",
        "dumps/20261201T000000Z/postgres.dump.00000",
    ]);
    let plan = prune(&keep_last(5), &inputs(&backups, &[], &objs));
    let dirs: Vec<&str> = plan.leftovers.iter().map(|l| l.dir.as_str()).collect();
    assert_eq!(
        dirs,
        vec![
            format!("{C}/backups/20261208T000000Z"),
            format!("{C}/dumps/20261201T000000Z")
        ]
    );
    assert_eq!(plan.leftovers[0].objects.len(), 2);
    assert_eq!(plan.leftovers[0].bytes, 20);
    assert!(plan.doomed_backups().next().is_none());
}

#[test]
fn dumps_get_the_same_rules_separately() {
    let backups = [backup(
        "20261201T000000Z",
        at(1, 1),
        "000000010000000000000002",
    )];
    let dumps = [
        dump("20261202T000000Z", at(2, 1)),
        dump("20261203T000000Z", at(3, 1)),
    ];
    let objs = objects(&[
        "dumps/20261202T000000Z/postgres.dump.00000",
        "dumps/20261202T000000Z/dump.json",
        "dumps/20261203T000000Z/dump.json",
    ]);
    let plan = prune(&keep_last(1), &inputs(&backups, &dumps, &objs));
    // The only backup is kept although both dumps are newer.
    assert!(plan.doomed_backups().next().is_none());
    let doomed: Vec<&Item> = plan.doomed_dumps().collect();
    assert_eq!(doomed.len(), 1);
    assert_eq!(doomed[0].id, "20261202T000000Z");
    assert_eq!(
        doomed[0].record,
        format!("{C}/dumps/20261202T000000Z/dump.json")
    );
    assert_eq!(
        doomed[0].objects,
        vec![format!("{C}/dumps/20261202T000000Z/postgres.dump.00000")]
    );
}

#[test]
fn single_picks_one_item_and_ids_parse() {
    let backups = [
        backup("20261201T000000Z", at(1, 1), "000000010000000000000002"),
        backup("20261202T000000Z", at(2, 1), "000000010000000000000005"),
    ];
    let objs = objects(&["backups/20261201T000000Z/backup.json"]);
    let all = prune(&Retention::default(), &inputs(&backups, &[], &objs));
    let one = single("20261201T000000Z", &all).unwrap();
    assert!(one.kept_by.is_empty());
    assert!(single("20261205T000000Z", &all).is_none());
    assert_eq!(id_time("20261201T000000Z"), Some(at(1, 0)));
    assert_eq!(id_time("nope"), None);
}
