//! What a prune (or `delete ID`) removes, decided from the committed records and a
//! listing of the cluster's objects. Pure, so every rule is unit-tested.
//!
//! - Backups (dumps) the retention policy does not keep: their record first, then the
//!   rest of their objects (see `execute` for why that order).
//! - Incomplete leftovers: a backup (dump) directory without its record whose id (its
//!   start time) is older than `leftover_age` — a job that died. Younger ones may be a
//!   job still running and are left alone.
//! - WAL segments (and `.partial`, `.backup` files) before the oldest kept backup's
//!   `start_wal`: no kept backup can use them. Timeline `.history` files are always
//!   kept (tiny, and recovery needs them to follow later timelines). WAL is pruned only
//!   when the policy has a rule and at least one backup is kept.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::catalog::{BackupRecord, DumpRecord, RdbRecord, BACKUP_RECORD, DUMP_RECORD, RDB_RECORD};
use crate::layout::{WalKind, WalName};
use crate::retention::{self, Reason};
use crate::walchain;
use warden_config::Retention;

/// One backup or dump and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub finished_at: DateTime<Utc>,
    /// Why it is kept; empty when it is deleted.
    pub kept_by: Vec<Reason>,
    /// Its record object (deleted first) and its other objects.
    pub record: String,
    pub objects: Vec<String>,
    pub bytes: u64,
}

/// An incomplete backup or dump directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub dir: String,
    pub objects: Vec<String>,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub backups: Vec<Item>,
    pub dumps: Vec<Item>,
    /// Redis RDB snapshots, under the same rules as dumps.
    pub rdbs: Vec<Item>,
    pub leftovers: Vec<Leftover>,
    /// WAL objects to delete, oldest first.
    pub wal: Vec<String>,
    pub wal_bytes: u64,
    /// The oldest kept backup's first WAL segment (what WAL pruning kept from).
    pub wal_kept_from: Option<String>,
}

impl Plan {
    pub fn doomed_backups(&self) -> impl Iterator<Item = &Item> {
        self.backups.iter().filter(|i| i.kept_by.is_empty())
    }

    pub fn doomed_dumps(&self) -> impl Iterator<Item = &Item> {
        self.dumps.iter().filter(|i| i.kept_by.is_empty())
    }

    pub fn doomed_rdbs(&self) -> impl Iterator<Item = &Item> {
        self.rdbs.iter().filter(|i| i.kept_by.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.doomed_backups().next().is_none()
            && self.doomed_dumps().next().is_none()
            && self.doomed_rdbs().next().is_none()
            && self.leftovers.is_empty()
            && self.wal.is_empty()
    }
}

/// The inputs: committed records and every object under `cluster` (path, size).
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub cluster: &'a str,
    pub backups: &'a [BackupRecord],
    pub dumps: &'a [DumpRecord],
    pub rdbs: &'a [RdbRecord],
    pub objects: &'a [(String, u64)],
    pub now: DateTime<Utc>,
    pub leftover_age: chrono::Duration,
    pub seg_size: u64,
}

/// Parses an id (`20261202T031500Z`) back to its time.
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(id, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Objects grouped by the directory under `<cluster>/<kind>/`: id → (path, size).
fn by_dir<'o>(
    objects: &'o [(String, u64)],
    prefix: &str,
) -> BTreeMap<&'o str, Vec<&'o (String, u64)>> {
    let mut out: BTreeMap<&str, Vec<&(String, u64)>> = BTreeMap::new();
    for o in objects {
        if let Some(rest) = o.0.strip_prefix(prefix) {
            if let Some((id, _)) = rest.split_once('/') {
                out.entry(id).or_default().push(o);
            }
        }
    }
    out
}

fn items(
    dirs: &BTreeMap<&str, Vec<&(String, u64)>>,
    prefix: &str,
    record_name: &str,
    committed: &[(String, DateTime<Utc>)],
    policy: &Retention,
) -> Vec<Item> {
    let times: Vec<DateTime<Utc>> = committed.iter().map(|(_, t)| *t).collect();
    let decisions = retention::decide(policy, &times);
    committed
        .iter()
        .zip(decisions)
        .map(|((id, finished_at), d)| {
            let record = format!("{prefix}{id}/{record_name}");
            let objs: Vec<&(String, u64)> = dirs.get(id.as_str()).cloned().unwrap_or_default();
            let mut objects: Vec<String> = objs
                .iter()
                .map(|o| o.0.clone())
                .filter(|p| *p != record)
                .collect();
            objects.sort();
            Item {
                id: id.clone(),
                finished_at: *finished_at,
                kept_by: d.reasons,
                bytes: objs.iter().map(|o| o.1).sum(),
                objects,
                record,
            }
        })
        .collect()
}

fn leftovers(
    dirs: &BTreeMap<&str, Vec<&(String, u64)>>,
    prefix: &str,
    committed: &BTreeSet<&str>,
    inputs: &Inputs<'_>,
) -> Vec<Leftover> {
    dirs.iter()
        .filter(|(id, _)| !committed.contains(**id))
        .filter(|(id, _)| id_time(id).is_some_and(|t| inputs.now - t > inputs.leftover_age))
        .map(|(id, objs)| Leftover {
            dir: format!("{prefix}{id}"),
            objects: objs.iter().map(|o| o.0.clone()).collect(),
            bytes: objs.iter().map(|o| o.1).sum(),
        })
        .collect()
}

/// The retention prune.
pub fn prune(policy: &Retention, inputs: &Inputs<'_>) -> Plan {
    let bprefix = format!("{}/backups/", inputs.cluster);
    let dprefix = format!("{}/dumps/", inputs.cluster);
    let bdirs = by_dir(inputs.objects, &bprefix);
    let ddirs = by_dir(inputs.objects, &dprefix);
    let bcommitted: Vec<(String, DateTime<Utc>)> = inputs
        .backups
        .iter()
        .map(|b| (b.id.clone(), b.finished_at))
        .collect();
    let dcommitted: Vec<(String, DateTime<Utc>)> = inputs
        .dumps
        .iter()
        .map(|d| (d.id.clone(), d.finished_at))
        .collect();
    let backups = items(&bdirs, &bprefix, BACKUP_RECORD, &bcommitted, policy);
    let dumps = items(&ddirs, &dprefix, DUMP_RECORD, &dcommitted, policy);
    let bids: BTreeSet<&str> = bcommitted.iter().map(|(i, _)| i.as_str()).collect();
    let dids: BTreeSet<&str> = dcommitted.iter().map(|(i, _)| i.as_str()).collect();
    let mut left = leftovers(&bdirs, &bprefix, &bids, inputs);
    left.extend(leftovers(&ddirs, &dprefix, &dids, inputs));
    // Redis snapshots: committed ones by the policy, incomplete ones as leftovers.
    let rprefix = format!("{}/rdb/", inputs.cluster);
    let rdirs = by_dir(inputs.objects, &rprefix);
    let rcommitted: Vec<(String, DateTime<Utc>)> = inputs
        .rdbs
        .iter()
        .map(|r| (r.id.clone(), r.finished_at))
        .collect();
    let rdbs = items(&rdirs, &rprefix, RDB_RECORD, &rcommitted, policy);
    let rids: BTreeSet<&str> = rcommitted.iter().map(|(i, _)| i.as_str()).collect();
    left.extend(leftovers(&rdirs, &rprefix, &rids, inputs));

    let mut plan = Plan {
        backups,
        dumps,
        rdbs,
        leftovers: left,
        ..Plan::default()
    };
    if policy.keeps_everything() {
        return plan;
    }
    // The oldest WAL position a kept backup needs.
    let kept_ids: BTreeSet<&str> = plan
        .backups
        .iter()
        .filter(|i| !i.kept_by.is_empty())
        .map(|i| i.id.as_str())
        .collect();
    let oldest = inputs
        .backups
        .iter()
        .filter(|b| kept_ids.contains(b.id.as_str()))
        .filter_map(|b| {
            let n = WalName::parse(&b.start_wal).ok()?;
            walchain::segno(&n, inputs.seg_size).map(|(s, _)| (s, b.start_wal.clone()))
        })
        .min();
    // A kept backup whose start cannot be read: do not guess, keep all WAL.
    let unreadable = kept_ids.len()
        != inputs
            .backups
            .iter()
            .filter(|b| kept_ids.contains(b.id.as_str()))
            .filter(|b| WalName::parse(&b.start_wal).is_ok())
            .count();
    let Some((oldest, name)) = oldest.filter(|_| !unreadable) else {
        return plan;
    };
    plan.wal_kept_from = Some(name);
    let wprefix = format!("{}/wal/", inputs.cluster);
    let mut wal: Vec<(u64, &String, u64)> = inputs
        .objects
        .iter()
        .filter_map(|(path, size)| {
            let file = path.strip_prefix(&wprefix)?.rsplit('/').next()?;
            let n = WalName::parse(file).ok()?;
            if n.kind == WalKind::TimelineHistory {
                return None;
            }
            let (s, _) = walchain::segno(&n, inputs.seg_size)?;
            (s < oldest).then_some((s, path, *size))
        })
        .collect();
    wal.sort();
    plan.wal_bytes = wal.iter().map(|w| w.2).sum();
    plan.wal = wal.into_iter().map(|w| w.1.clone()).collect();
    plan
}

/// `delete ID`: one committed backup (or dump), nothing else.
pub fn single(item_id: &str, plan_all: &Plan) -> Option<Item> {
    plan_all
        .backups
        .iter()
        .chain(plan_all.dumps.iter())
        .chain(plan_all.rdbs.iter())
        .find(|i| i.id == item_id)
        .map(|i| Item {
            kept_by: vec![],
            ..i.clone()
        })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
