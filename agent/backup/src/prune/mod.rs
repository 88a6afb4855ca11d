//! Deleting backups, dumps, leftovers and WAL: `wardenctl backup delete ID|--prune`
//! and the automatic prune after a scheduled backup.
//!
//! Crash safety: a backup's record goes FIRST. Once it is gone the backup is no longer
//! committed — not listed, not restorable, not protecting WAL — and whatever of its
//! objects a crash leaves behind is an ordinary leftover the next prune removes. The
//! other order could leave a listed backup whose parts are partly deleted.

pub mod plan;

use chrono::Utc;
use serde::Serialize;

use super::catalog::{Catalog, CatalogError};
use super::repo::RepoError;
pub use plan::{Item, Leftover, Plan};
use warden_config::Retention;

/// Incomplete backups (dumps) younger than this may still be running.
pub const LEFTOVER_AGE: chrono::Duration = chrono::Duration::days(1);

/// Reads what a plan is made from.
pub async fn plan_prune(
    catalog: &Catalog,
    policy: &Retention,
    seg_size: u64,
) -> Result<Plan, CatalogError> {
    let backups = catalog.backups().await?;
    let dumps = catalog.dumps().await?;
    let rdbs = catalog.rdbs().await?;
    let cluster = catalog.layout.cluster();
    let objects: Vec<(String, u64)> = catalog
        .repo
        .list(&format!("{cluster}/"))
        .await?
        .into_iter()
        .map(|o| (o.path, o.size))
        .collect();
    Ok(plan::prune(
        policy,
        &plan::Inputs {
            cluster: &cluster,
            backups: &backups,
            dumps: &dumps,
            rdbs: &rdbs,
            objects: &objects,
            now: Utc::now(),
            leftover_age: LEFTOVER_AGE,
            seg_size,
        },
    ))
}

/// A plan that deletes exactly one committed backup or dump.
pub async fn plan_delete(catalog: &Catalog, id: &str) -> Result<Plan, CatalogError> {
    let all = plan_prune(
        catalog,
        &Retention::default(),
        super::walchain::DEFAULT_SEGMENT_SIZE,
    )
    .await?;
    let is_backup = all.backups.iter().any(|i| i.id == id);
    let is_rdb = all.rdbs.iter().any(|i| i.id == id);
    let item = plan::single(id, &all).ok_or_else(|| CatalogError::NoSuchBackup(id.to_owned()))?;
    let mut out = Plan::default();
    if is_backup {
        out.backups.push(item);
    } else if is_rdb {
        out.rdbs.push(item);
    } else {
        out.dumps.push(item);
    }
    Ok(out)
}

/// What was (or would be) deleted, for human and JSON output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub backups_deleted: Vec<String>,
    pub backups_kept: Vec<Kept>,
    pub dumps_deleted: Vec<String>,
    pub dumps_kept: Vec<Kept>,
    pub rdbs_deleted: Vec<String>,
    pub rdbs_kept: Vec<Kept>,
    pub leftovers_deleted: Vec<String>,
    pub wal_deleted: usize,
    pub wal_kept_from: Option<String>,
    pub objects_deleted: usize,
    pub bytes_freed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub id: String,
    pub reasons: Vec<&'static str>,
}

impl Report {
    pub fn of(plan: &Plan, dry_run: bool) -> Self {
        let kept = |items: &[Item]| {
            items
                .iter()
                .filter(|i| !i.kept_by.is_empty())
                .map(|i| Kept {
                    id: i.id.clone(),
                    reasons: i.kept_by.iter().map(|r| r.as_str()).collect(),
                })
                .collect()
        };
        let items: Vec<&Item> = plan
            .doomed_backups()
            .chain(plan.doomed_dumps())
            .chain(plan.doomed_rdbs())
            .collect();
        let item_objects: usize = items.iter().map(|i| i.objects.len() + 1).sum();
        let item_bytes: u64 = items.iter().map(|i| i.bytes).sum();
        Self {
            dry_run,
            backups_deleted: plan.doomed_backups().map(|i| i.id.clone()).collect(),
            backups_kept: kept(&plan.backups),
            dumps_deleted: plan.doomed_dumps().map(|i| i.id.clone()).collect(),
            dumps_kept: kept(&plan.dumps),
            rdbs_deleted: plan.doomed_rdbs().map(|i| i.id.clone()).collect(),
            rdbs_kept: kept(&plan.rdbs),
            leftovers_deleted: plan.leftovers.iter().map(|l| l.dir.clone()).collect(),
            wal_deleted: plan.wal.len(),
            wal_kept_from: plan.wal_kept_from.clone(),
            objects_deleted: item_objects
                + plan
                    .leftovers
                    .iter()
                    .map(|l| l.objects.len())
                    .sum::<usize>()
                + plan.wal.len(),
            bytes_freed: item_bytes
                + plan.leftovers.iter().map(|l| l.bytes).sum::<u64>()
                + plan.wal_bytes,
        }
    }

    /// The human listing.
    pub fn human(&self) -> String {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let mut out = String::new();
        for k in &self.backups_kept {
            out.push_str(&format!(
                "keep   backup {} ({})\n",
                k.id,
                k.reasons.join(", ")
            ));
        }
        for id in &self.backups_deleted {
            out.push_str(&format!("{verb} backup {id}\n"));
        }
        for k in &self.dumps_kept {
            out.push_str(&format!(
                "keep   dump {} ({})\n",
                k.id,
                k.reasons.join(", ")
            ));
        }
        for id in &self.dumps_deleted {
            out.push_str(&format!("{verb} dump {id}\n"));
        }
        for k in &self.rdbs_kept {
            out.push_str(&format!(
                "keep   RDB snapshot {} ({})\n",
                k.id,
                k.reasons.join(", ")
            ));
        }
        for id in &self.rdbs_deleted {
            out.push_str(&format!("{verb} RDB snapshot {id}\n"));
        }
        for d in &self.leftovers_deleted {
            out.push_str(&format!("{verb} incomplete {d}\n"));
        }
        if self.wal_deleted > 0 {
            out.push_str(&format!(
                "{verb} {} WAL file(s) before {}\n",
                self.wal_deleted,
                self.wal_kept_from.as_deref().unwrap_or("?")
            ));
        }
        out.push_str(&format!(
            "{}: {} object(s), {} byte(s){}\n",
            if self.dry_run { "dry run" } else { "done" },
            self.objects_deleted,
            self.bytes_freed,
            if self.dry_run {
                "; nothing was deleted (add --confirm)"
            } else {
                ""
            }
        ));
        out
    }
}

/// Deletes what `plan` lists: each backup's (dump's) record first, then its objects;
/// then leftovers; then WAL, oldest first. Stops at the first error (a later prune
/// picks up where this one stopped).
pub async fn execute(catalog: &Catalog, plan: &Plan) -> Result<(), RepoError> {
    let repo = &catalog.repo;
    for item in plan
        .doomed_backups()
        .chain(plan.doomed_dumps())
        .chain(plan.doomed_rdbs())
    {
        repo.delete(&item.record).await?;
        tracing::info!(id = %item.id, "deleted a backup's record; deleting its objects");
        for o in &item.objects {
            repo.delete(o).await?;
        }
    }
    for l in &plan.leftovers {
        for o in &l.objects {
            repo.delete(o).await?;
        }
        tracing::info!(dir = %l.dir, "deleted an incomplete backup's leftovers");
    }
    for w in &plan.wal {
        repo.delete(w).await?;
    }
    if !plan.wal.is_empty() {
        tracing::info!(files = plan.wal.len(), "deleted WAL no kept backup needs");
    }
    Ok(())
}

/// The automatic prune after a successful scheduled backup: `backup.retention` being
/// set is the confirmation. `None` when no rule is set (nothing is pruned).
pub async fn after_backup(
    catalog: &Catalog,
    retention: &Retention,
) -> anyhow::Result<Option<Report>> {
    if retention.keeps_everything() {
        return Ok(None);
    }
    let plan = plan_prune(catalog, retention, super::walchain::DEFAULT_SEGMENT_SIZE).await?;
    execute(catalog, &plan).await?;
    let report = Report::of(&plan, false);
    tracing::info!(
        backups = report.backups_deleted.len(),
        dumps = report.dumps_deleted.len(),
        rdbs = report.rdbs_deleted.len(),
        leftovers = report.leftovers_deleted.len(),
        wal = report.wal_deleted,
        "retention prune after the backup"
    );
    Ok(Some(report))
}

#[cfg(test)]
mod tests;
