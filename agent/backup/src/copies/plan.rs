//! What a copy lacks, in the order it may be copied, and how far behind it is: pure
//! functions of two listings (no I/O, no clock), shared by the copier, `wardenctl
//! backup list` and the DR report.
//!
//! Order (a copy must never show something it cannot use):
//! 1. archived WAL (segments, `.backup` and `.history` files) in name order, which is
//!    timeline then position (a `.history` file sorts before its timeline's segments);
//! 2. the live segments (`wal_live/`, rewritten in place every second or so by the
//!    archiver), again whenever the main one was rewritten after the copy's; a
//!    timeline's final `.partial` under `wal/` is archived once and immutable, like a
//!    segment;
//! 3. the parts of *committed* backups, dumps, RDB snapshots and backup jobs' sets
//!    (a set whose record is not in the main repository yet is still being written,
//!    and is left alone);
//! 4. their records (`backup.json`, `dump.json`, `rdb.json`, `job.json`) — the commit
//!    markers — after every part and the WAL before them;
//! 5. drill records and anything else.
//!
//! A cluster's objects live under `<scope>/<system_identifier>/`; its backup jobs'
//! under `<scope>/jobs/<job>/` (`stack`), and the listings given here hold both.
//!
//! A step list cut anywhere keeps this order, so a page limit never lets a record
//! through before its parts.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::catalog::{BACKUP_RECORD, DUMP_RECORD, RDB_RECORD};
use crate::repo::ObjectInfo;
use crate::stack::JOB_RECORD;

/// What an object is, for ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Wal,
    Live,
    Part,
    Record,
    Other,
}

/// One object to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub path: String,
    pub class: Class,
    /// `backups/<id>` (`dumps/...`, `rdb/...`) for parts and records: a failed part
    /// holds its set's record back.
    pub set: Option<String>,
    /// When the main repository wrote it.
    pub modified: DateTime<Utc>,
    pub size: u64,
}

/// Sets whose objects are copied only once committed, and their record names.
const SETS: &[(&str, &str)] = &[
    ("backups", BACKUP_RECORD),
    ("dumps", DUMP_RECORD),
    ("rdb", RDB_RECORD),
];

/// `<scope>/jobs`, beside `cluster` (`<scope>/<system_identifier>`: the identifier is
/// decimal, so the last `/` ends the scope).
pub fn jobs_root(cluster: &str) -> String {
    let scope = cluster.rsplit_once('/').map_or(cluster, |(scope, _)| scope);
    format!("{scope}/jobs")
}

/// `(class, set)` of a backup job's object, `rel` being its path under `<scope>/jobs/`:
/// `<job>/<id>/<file>` (a set, committed by `job.json`) or `<job>/drills/<id>.json`.
fn classify_job(rel: &str) -> Option<(Class, Option<String>)> {
    let mut it = rel.splitn(3, '/');
    let (job, id, file) = (it.next()?, it.next()?, it.next()?);
    if id == "drills" {
        return Some((Class::Other, None));
    }
    let class = if file == JOB_RECORD {
        Class::Record
    } else {
        Class::Part
    };
    Some((class, Some(format!("jobs/{job}/{id}"))))
}

/// `(class, set)` of `path` under `cluster` (`<scope>/<sysid>`) or its jobs; `None`:
/// not ours.
fn classify(cluster: &str, path: &str) -> Option<(Class, Option<String>)> {
    let jobs = jobs_root(cluster);
    if let Some(rel) = path
        .strip_prefix(jobs.as_str())
        .and_then(|r| r.strip_prefix('/'))
    {
        return classify_job(rel);
    }
    let rel = path.strip_prefix(cluster)?.strip_prefix('/')?;
    let Some((top, rest)) = rel.split_once('/') else {
        return Some((Class::Other, None));
    };
    match top {
        "wal" => return Some((Class::Wal, None)),
        "wal_live" => return Some((Class::Live, None)),
        _ => {}
    }
    if let Some((_, record)) = SETS.iter().find(|(dir, _)| *dir == top) {
        let (id, file) = rest.split_once('/')?;
        let class = if file == *record {
            Class::Record
        } else {
            Class::Part
        };
        return Some((class, Some(format!("{top}/{id}"))));
    }
    Some((Class::Other, None))
}

/// Where the copy's own retention has cut: its oldest committed set of each kind and
/// its oldest WAL file. Older objects the main repository still holds were pruned
/// from the copy on purpose (the main prunes later, or an on-demand backup delayed
/// its prune) and are not copied back.
#[derive(Debug, Default)]
struct Floor<'a> {
    /// Per kind of set (`backups`, `dumps`, `rdb`, `jobs/<job>`), its oldest id.
    sets: HashMap<String, String>,
    wal: Option<&'a str>,
}

/// `("backups", "<id>")` (`("jobs/<job>", "<id>")`) of a set.
fn kind_and_id(set: &str) -> Option<(&str, &str)> {
    set.rsplit_once('/')
}

impl<'a> Floor<'a> {
    fn of(cluster: &str, copy: &'a [ObjectInfo]) -> Self {
        let mut floor = Floor::default();
        for o in copy {
            match classify(cluster, &o.path) {
                Some((Class::Record, Some(set))) => {
                    let Some((kind, id)) = kind_and_id(&set) else {
                        continue;
                    };
                    let e = floor
                        .sets
                        .entry(kind.to_owned())
                        .or_insert_with(|| id.to_owned());
                    if id < e.as_str() {
                        id.clone_into(e);
                    }
                }
                Some((Class::Wal | Class::Live, _)) => {
                    let name = file_name(&o.path);
                    if !name.ends_with(".history") && floor.wal.is_none_or(|w| name < w) {
                        floor.wal = Some(name);
                    }
                }
                _ => {}
            }
        }
        floor
    }

    fn below(&self, path: &str, class: Class, set: Option<&str>) -> bool {
        match class {
            Class::Wal | Class::Live => {
                let name = file_name(path);
                !name.ends_with(".history") && self.wal.is_some_and(|w| name < w)
            }
            Class::Part | Class::Record => set
                .and_then(kind_and_id)
                .is_some_and(|(kind, id)| self.sets.get(kind).is_some_and(|f| id < f.as_str())),
            Class::Other => false,
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The class of an object of `cluster` (`None`: not under it).
pub fn class_of(cluster: &str, path: &str) -> Option<Class> {
    classify(cluster, path).map(|(c, _)| c)
}

/// Everything `copy` lacks of the main repository's committed objects of `cluster`,
/// in copy order. Objects are matched by path; a live `.partial` also when the main
/// one was written after the copy's. What the copy's retention already pruned (older
/// than its oldest set of a kind, or than its oldest WAL file) is not copied back.
pub fn plan(cluster: &str, main: &[ObjectInfo], copy: &[ObjectInfo]) -> Vec<Step> {
    let in_copy: HashMap<&str, &ObjectInfo> = copy.iter().map(|o| (o.path.as_str(), o)).collect();
    let floor = Floor::of(cluster, copy);
    let classified: Vec<(&ObjectInfo, Class, Option<String>)> = main
        .iter()
        .filter_map(|o| classify(cluster, &o.path).map(|(c, s)| (o, c, s)))
        .collect();
    let committed: BTreeSet<&str> = classified
        .iter()
        .filter(|(_, c, _)| *c == Class::Record)
        .filter_map(|(_, _, s)| s.as_deref())
        .collect();
    let mut steps: Vec<Step> = classified
        .iter()
        .filter(|(o, class, set)| {
            let wanted = match class {
                Class::Part | Class::Record => {
                    set.as_deref().is_some_and(|s| committed.contains(s))
                }
                _ => true,
            };
            wanted
                && !floor.below(&o.path, *class, set.as_deref())
                && match in_copy.get(o.path.as_str()) {
                    None => true,
                    Some(c) => *class == Class::Live && o.modified > c.modified,
                }
        })
        .map(|(o, class, set)| Step {
            path: o.path.clone(),
            class: *class,
            set: set.clone(),
            modified: o.modified,
            size: o.size,
        })
        .collect();
    // Stable: within a class, the listing's path order (WAL name order).
    steps.sort_by(|a, b| a.class.cmp(&b.class).then_with(|| a.path.cmp(&b.path)));
    steps
}

/// The copy's live segments to delete: the main repository deleted its live copy of
/// the segment (it archived the complete segment, or the timeline's final `.partial`),
/// and the copy holds that complete file too, so `wal-fetch` from the copy no longer
/// needs the live one. Without this a copy would keep one stale live object per
/// segment forever.
pub fn retired_live(cluster: &str, main: &[ObjectInfo], copy: &[ObjectInfo]) -> Vec<String> {
    let in_main: BTreeSet<&str> = main.iter().map(|o| o.path.as_str()).collect();
    let in_copy: BTreeSet<&str> = copy.iter().map(|o| o.path.as_str()).collect();
    let live_prefix = format!("{cluster}/wal_live/");
    copy.iter()
        .filter_map(|o| {
            let rest = o.path.strip_prefix(&live_prefix)?;
            let complete = format!("{cluster}/wal/{rest}");
            let archived = in_copy.contains(complete.as_str())
                || in_copy.contains(format!("{complete}.partial").as_str());
            (!in_main.contains(o.path.as_str()) && archived).then(|| o.path.clone())
        })
        .collect()
}

/// How far a copy is behind the main repository.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Lag {
    /// Committed objects of the main repository the copy lacks.
    pub objects: usize,
    /// Their total size in the main repository.
    pub bytes: u64,
    /// Age of the oldest of them (0 when none).
    pub seconds: f64,
    /// When the oldest of them was written.
    pub oldest: Option<DateTime<Utc>>,
}

/// The lag of `copy` behind `main` for `cluster` at `now`: what
/// [`plan`] would still copy, and the age of its oldest object. Reusable by anything
/// that listed both repositories (`wardenctl backup list`, the DR report).
pub fn lag(cluster: &str, main: &[ObjectInfo], copy: &[ObjectInfo], now: DateTime<Utc>) -> Lag {
    let steps = plan(cluster, main, copy);
    let oldest = steps.iter().map(|s| s.modified).min();
    Lag {
        objects: steps.len(),
        bytes: steps.iter().map(|s| s.size).sum(),
        seconds: oldest.map_or(0.0, |t| {
            let ms = (now - t).num_milliseconds().max(0);
            // Milliseconds fit an f64 exactly for any realistic age.
            #[allow(clippy::cast_precision_loss)]
            let secs = ms as f64 / 1000.0;
            secs
        }),
        oldest,
    }
}

/// What the copier tells the webhook after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Turned unhealthy (behind `max_lag`, or failing): alert once.
    Alert,
    /// Healthy again after an alert: say so once.
    Recovered,
}

/// The alert state machine: `alerted` is whether the last notice was an alert.
pub fn notice(alerted: bool, unhealthy: bool) -> Option<Notice> {
    match (alerted, unhealthy) {
        (false, true) => Some(Notice::Alert),
        (true, false) => Some(Notice::Recovered),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "demo/42";

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn obj(path: &str, secs: i64) -> ObjectInfo {
        ObjectInfo {
            path: format!("{C}/{path}"),
            size: 10,
            modified: at(secs),
        }
    }

    fn paths(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| s.path.strip_prefix(&format!("{C}/")).unwrap().to_owned())
            .collect()
    }

    fn main_listing() -> Vec<ObjectInfo> {
        let mut v = vec![
            obj("backups/B1/backup.json", 50),
            obj("backups/B1/base.tar.00001", 40),
            obj("backups/B1/base.tar.00000", 30),
            // Still being written: no record yet.
            obj("backups/B2/base.tar.00000", 60),
            obj("dumps/D1/dump.json", 55),
            obj("dumps/D1/app.dump.0", 52),
            obj("drills/X1.json", 70),
            obj("wal/00000002/000000020000000000000004", 45),
            obj("wal/00000002/00000002.history", 44),
            obj("wal/00000001/000000010000000000000003.partial", 80),
            obj("wal_live/00000002/000000020000000000000005", 81),
            obj("wal/00000001/000000010000000000000002", 20),
            obj("wal/00000001/000000010000000000000001", 10),
            obj("heartbeat", 5),
        ];
        // Another cluster under the scope is not ours.
        v.push(ObjectInfo {
            path: "demo/7/wal/00000001/000000010000000000000001".into(),
            size: 1,
            modified: at(0),
        });
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    fn job_obj(path: &str, secs: i64) -> ObjectInfo {
        ObjectInfo {
            path: format!("demo/jobs/{path}"),
            size: 10,
            modified: at(secs),
        }
    }

    /// Backup jobs' sets (under `<scope>/jobs/`) are copied like the cluster's: parts
    /// of committed sets, then their `job.json`, then drills; a set without its record
    /// waits; the copy's own retention is not undone.
    #[test]
    fn job_sets_are_copied_parts_first_and_only_once_committed() {
        let main = vec![
            job_obj("etcd/20261201T010000Z/stream.00000", 10),
            job_obj("etcd/20261201T010000Z/job.json", 11),
            job_obj("etcd/20261201T020000Z/stream.00000", 20),
            job_obj("etcd/20261201T020000Z/stream.00001", 21),
            job_obj("etcd/20261201T020000Z/job.json", 22),
            // Being written.
            job_obj("etcd/20261201T030000Z/stream.00000", 30),
            job_obj("etcd/drills/20261201T040000Z.json", 40),
            job_obj("app-db/20261201T010000Z/stream.00000", 12),
            job_obj("app-db/20261201T010000Z/job.json", 13),
            obj("wal/00000001/000000010000000000000001", 10),
        ];
        assert_eq!(jobs_root(C), "demo/jobs");
        let steps = plan(C, &main, &[]);
        let names: Vec<String> = steps.iter().map(|s| s.path.clone()).collect();
        assert_eq!(
            names,
            [
                "demo/42/wal/00000001/000000010000000000000001",
                "demo/jobs/app-db/20261201T010000Z/stream.00000",
                "demo/jobs/etcd/20261201T010000Z/stream.00000",
                "demo/jobs/etcd/20261201T020000Z/stream.00000",
                "demo/jobs/etcd/20261201T020000Z/stream.00001",
                "demo/jobs/app-db/20261201T010000Z/job.json",
                "demo/jobs/etcd/20261201T010000Z/job.json",
                "demo/jobs/etcd/20261201T020000Z/job.json",
                "demo/jobs/etcd/drills/20261201T040000Z.json",
            ]
        );
        assert_eq!(steps[2].set.as_deref(), Some("jobs/etcd/20261201T010000Z"));
        // The copy pruned etcd's oldest set by the job's retention: not copied back,
        // and app-db (another kind of set) is not held by etcd's floor.
        let copy = vec![
            job_obj("etcd/20261201T020000Z/stream.00000", 20),
            job_obj("etcd/20261201T020000Z/stream.00001", 21),
            job_obj("etcd/20261201T020000Z/job.json", 22),
        ];
        let names: Vec<String> = plan(C, &main, &copy)
            .iter()
            .map(|s| s.path.clone())
            .collect();
        assert_eq!(
            names,
            [
                "demo/42/wal/00000001/000000010000000000000001",
                "demo/jobs/app-db/20261201T010000Z/stream.00000",
                "demo/jobs/app-db/20261201T010000Z/job.json",
                "demo/jobs/etcd/drills/20261201T040000Z.json",
            ]
        );
    }

    #[test]
    fn wal_first_in_order_then_parts_then_records() {
        let steps = plan(C, &main_listing(), &[]);
        assert_eq!(
            paths(&steps),
            [
                "wal/00000001/000000010000000000000001",
                "wal/00000001/000000010000000000000002",
                "wal/00000001/000000010000000000000003.partial",
                "wal/00000002/00000002.history",
                "wal/00000002/000000020000000000000004",
                "wal_live/00000002/000000020000000000000005",
                "backups/B1/base.tar.00000",
                "backups/B1/base.tar.00001",
                "dumps/D1/app.dump.0",
                "backups/B1/backup.json",
                "dumps/D1/dump.json",
                "drills/X1.json",
                "heartbeat",
            ]
        );
        // Any prefix (a page limit) never holds a record without its parts.
        for cut in 0..=steps.len() {
            let page = &steps[..cut];
            for rec in page.iter().filter(|s| s.class == Class::Record) {
                let set = rec.set.as_deref().unwrap();
                let parts = main_listing()
                    .iter()
                    .filter(|o| o.path.contains(&format!("/{set}/")) && !o.path.ends_with(".json"))
                    .count();
                let paged = page
                    .iter()
                    .filter(|s| s.set.as_deref() == Some(set) && s.class == Class::Part)
                    .count();
                assert_eq!(parts, paged, "{set} at cut {cut}");
            }
        }
        assert_eq!(steps[6].set.as_deref(), Some("backups/B1"));
    }

    #[test]
    fn copied_objects_are_skipped_and_the_live_segment_follows_rewrites() {
        let main = main_listing();
        // The copy has everything (written after the main objects)...
        let copy: Vec<ObjectInfo> = main
            .iter()
            .map(|o| ObjectInfo {
                modified: o.modified + chrono::Duration::seconds(1),
                ..o.clone()
            })
            .collect();
        assert_eq!(plan(C, &main, &copy), []);
        // ...then the main live segment is rewritten: copied again; a rewritten
        // timeline's final .partial could not be (it is immutable), nor is it.
        let mut main2 = main.clone();
        for o in main2
            .iter_mut()
            .filter(|o| o.path.contains("/wal_live/") || o.path.ends_with(".partial"))
        {
            o.modified = at(100);
        }
        assert_eq!(
            paths(&plan(C, &main2, &copy)),
            ["wal_live/00000002/000000020000000000000005"]
        );
        // A segment the main repository pruned stays in the copy and is not a lag.
        let pruned: Vec<ObjectInfo> = main
            .iter()
            .filter(|o| !o.path.ends_with("0001"))
            .cloned()
            .collect();
        assert_eq!(plan(C, &pruned, &copy), []);
    }

    #[test]
    fn what_the_copy_pruned_is_not_copied_back() {
        let main = main_listing();
        // The copy's retention dropped B1 and the first segment, and holds a newer
        // backup B3 and segment 3.
        let copy = vec![
            obj("backups/B3/base.tar.00000", 90),
            obj("backups/B3/backup.json", 91),
            obj("wal/00000001/000000010000000000000002", 21),
            obj("wal/00000001/000000010000000000000003.partial", 81),
        ];
        let mut main = main;
        main.push(obj("backups/B3/base.tar.00000", 90));
        main.push(obj("backups/B3/backup.json", 91));
        main.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            paths(&plan(C, &main, &copy)),
            [
                "wal/00000002/00000002.history",
                "wal/00000002/000000020000000000000004",
                "wal_live/00000002/000000020000000000000005",
                "dumps/D1/app.dump.0",
                "dumps/D1/dump.json",
                "drills/X1.json",
                "heartbeat",
            ]
        );
    }

    #[test]
    fn lag_counts_objects_and_the_oldest_age() {
        let main = main_listing();
        let none = lag(C, &main, &[], at(100));
        assert_eq!(none.objects, 13);
        assert_eq!(none.bytes, 130);
        assert_eq!(none.oldest, Some(at(5)));
        assert!((none.seconds - 95.0).abs() < 1e-9, "{none:?}");
        // The copy has everything up to second 45: behind by what came after.
        let copy: Vec<ObjectInfo> = main
            .iter()
            .filter(|o| o.modified <= at(45) && o.path.starts_with(C))
            .cloned()
            .collect();
        let some = lag(C, &main, &copy, at(100));
        assert_eq!(
            some.oldest,
            Some(at(50)),
            "B1's record (its parts are there)"
        );
        assert!((some.seconds - 50.0).abs() < 1e-9);
        let all = lag(C, &main, &main, at(100));
        assert_eq!(
            all,
            Lag {
                objects: 0,
                bytes: 0,
                seconds: 0.0,
                oldest: None
            }
        );
    }

    #[test]
    fn notices_once_per_transition() {
        assert_eq!(notice(false, false), None);
        assert_eq!(notice(false, true), Some(Notice::Alert));
        assert_eq!(notice(true, true), None);
        assert_eq!(notice(true, false), Some(Notice::Recovered));
    }

    #[test]
    fn a_live_segment_is_retired_from_the_copy_once_archived_there() {
        let live = obj("wal_live/00000002/000000020000000000000005", 80);
        let complete = obj("wal/00000002/000000020000000000000005", 90);
        // The main one still has its live copy: keep ours.
        assert!(retired_live(
            C,
            std::slice::from_ref(&live),
            &[live.clone(), complete.clone()]
        )
        .is_empty());
        // The main one archived the segment, but the copy lacks it: keep ours.
        assert!(retired_live(
            C,
            std::slice::from_ref(&complete),
            std::slice::from_ref(&live)
        )
        .is_empty());
        // Archived in both: ours goes; so after a timeline's final .partial.
        assert_eq!(
            retired_live(
                C,
                std::slice::from_ref(&complete),
                &[live.clone(), complete.clone()]
            ),
            vec![live.path.clone()]
        );
        let last = obj("wal/00000002/000000020000000000000005.partial", 90);
        assert_eq!(
            retired_live(
                C,
                std::slice::from_ref(&last),
                &[live.clone(), last.clone()]
            ),
            [live.path]
        );
    }
}
