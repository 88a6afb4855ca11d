//! Disaster-recovery objectives (`backup.objectives`) judged against measured facts:
//! one verdict per objective — met, violated or unknown, each with the reason.
//!
//! [`judge`] is pure (the facts and `now` come in), so `wardenctl dr-report` and the
//! archiver's `warden_dr_objective_met` gauges give the same answer for the same
//! facts; each side gathers the facts its own way (the report from the repository,
//! the daemon from its archiver and the catalog snapshot of [`crate::facts`]).
//! [`Transitions`] (pure too) tells the daemon when to notify.
//!
//! Meanings:
//! - `rpo`: the archive's RPO now, the age of the newest WAL in the repository (the
//!   last upload of the live segment or of a complete one). With the leader's
//!   heartbeat on (the default) the primary writes WAL every second, so this is how
//!   much time a loss of the whole cluster would lose.
//! - `rto`: the measured RTO of the newest drill that passed.
//! - `max_backup_age`: the age of the newest committed base backup (none: violated).
//! - `max_drill_age`: the age of the newest drill (none, or it failed: violated).
//! - `min_copies`: the repository (1) plus the copies in sync within their `max_lag`.
//!
//! A fact that could not be measured makes its objective unknown, never met.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use warden_config::Objectives;

use crate::catalog::Catalog;
use crate::codec;

/// An objective's name, as the config key, the gauge label and the report use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    Rpo,
    Rto,
    MaxBackupAge,
    MaxDrillAge,
    MinCopies,
}

impl Objective {
    pub const ALL: [Objective; 5] = [
        Objective::Rpo,
        Objective::Rto,
        Objective::MaxBackupAge,
        Objective::MaxDrillAge,
        Objective::MinCopies,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Rpo => "rpo",
            Objective::Rto => "rto",
            Objective::MaxBackupAge => "max_backup_age",
            Objective::MaxDrillAge => "max_drill_age",
            Objective::MinCopies => "min_copies",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Met,
    Violated,
    Unknown,
}

impl Status {
    /// The gauge's value: 1 met, 0 violated, -1 unknown.
    pub fn gauge(self) -> i64 {
        match self {
            Status::Met => 1,
            Status::Violated => 0,
            Status::Unknown => -1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Violated => "violated",
            Status::Unknown => "unknown",
        }
    }
}

/// One objective's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub objective: Objective,
    pub status: Status,
    /// The objective as configured (`1m`, `2`).
    pub target: String,
    /// What was measured (`42s`, `1 of 2`), when it was.
    pub measured: Option<String>,
    /// Why this verdict, in a sentence.
    pub reason: String,
}

/// A drill as the verdicts need it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillFact {
    pub id: String,
    pub ok: bool,
    pub finished_at: DateTime<Utc>,
    pub rto_seconds: Option<f64>,
    pub error: Option<String>,
}

/// A repository copy (`backup.copies`) as `min_copies` needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFact {
    pub name: String,
    /// In sync within its `max_lag`; `Err`: cannot tell, and why.
    pub in_sync: Result<bool, String>,
    /// What was measured (`lag 2.1s, max_lag 5m`, `cannot list it: ...`).
    pub detail: String,
}

/// A fact, or why it is not known.
pub type Fact<T> = Result<T, String>;

/// Everything the verdicts are computed from.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// When the newest WAL reached the repository.
    pub newest_wal: Fact<DateTime<Utc>>,
    /// Finish time of the newest committed base backup (`None`: there is none).
    pub last_backup: Fact<Option<DateTime<Utc>>>,
    /// What a backup is in the reasons: `base backup` (PostgreSQL), `RDB snapshot`.
    pub backup_noun: &'static str,
    /// Every drill recorded, in any order.
    pub drills: Fact<Vec<DrillFact>>,
    /// The main repository could be read (it counts as the first copy).
    pub repository_ok: Fact<()>,
    /// The configured copies.
    pub copies: Fact<Vec<CopyFact>>,
}

/// `90s`, `1h 2m`: whole seconds, as the config writes durations.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

/// The verdict of every configured objective, in [`Objective::ALL`]'s order.
pub fn judge(objectives: &Objectives, f: &Facts) -> Vec<Verdict> {
    let mut out = Vec::new();
    if let Some(max) = objectives.rpo {
        out.push(rpo(max, f));
    }
    if let Some(max) = objectives.rto {
        out.push(rto(max, f));
    }
    if let Some(max) = objectives.max_backup_age {
        out.push(backup_age(max, f));
    }
    if let Some(max) = objectives.max_drill_age {
        out.push(drill_age(max, f));
    }
    if let Some(min) = objectives.min_copies {
        out.push(copies(min, f));
    }
    out
}

fn verdict(
    objective: Objective,
    target: String,
    status: Status,
    measured: Option<String>,
    reason: String,
) -> Verdict {
    Verdict {
        objective,
        status,
        target,
        measured,
        reason,
    }
}

fn rpo(max: Duration, f: &Facts) -> Verdict {
    let target = human(max);
    let o = Objective::Rpo;
    match &f.newest_wal {
        Err(why) => verdict(o, target, Status::Unknown, None, why.clone()),
        Ok(at) => {
            let a = age(f.now, *at);
            let status = if a <= max {
                Status::Met
            } else {
                Status::Violated
            };
            let reason = format!(
                "the newest WAL reached the repository {} ago (at {}), {} the objective {target}",
                human(a),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                if status == Status::Met {
                    "within"
                } else {
                    "beyond"
                }
            );
            verdict(o, target, status, Some(human(a)), reason)
        }
    }
}

fn rto(max: Duration, f: &Facts) -> Verdict {
    let target = human(max);
    let o = Objective::Rto;
    let drills = match &f.drills {
        Err(why) => return verdict(o, target, Status::Unknown, None, why.clone()),
        Ok(d) => d,
    };
    let measured = drills
        .iter()
        .filter(|d| d.ok)
        .filter_map(|d| d.rto_seconds.map(|r| (d, r)))
        .max_by_key(|(d, _)| d.finished_at);
    let Some((d, secs)) = measured else {
        return verdict(
            o,
            target,
            Status::Unknown,
            None,
            "no passed drill has measured an RTO yet (run `wardenctl drill`)".to_owned(),
        );
    };
    let met = secs <= max.as_secs_f64();
    let reason = format!(
        "drill {} (passed at {}) restored in {secs:.1}s, {} the objective {target}",
        d.id,
        d.finished_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        if met { "within" } else { "beyond" }
    );
    let status = if met { Status::Met } else { Status::Violated };
    verdict(o, target, status, Some(format!("{secs:.1}s")), reason)
}

fn backup_age(max: Duration, f: &Facts) -> Verdict {
    let target = human(max);
    let o = Objective::MaxBackupAge;
    match &f.last_backup {
        Err(why) => verdict(o, target, Status::Unknown, None, why.clone()),
        Ok(None) => verdict(
            o,
            target,
            Status::Violated,
            None,
            format!("the repository holds no committed {}", f.backup_noun),
        ),
        Ok(Some(at)) => {
            let a = age(f.now, *at);
            let met = a <= max;
            let reason = format!(
                "the newest {} finished {} ago (at {}), {} the objective {target}",
                f.backup_noun,
                human(a),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                if met { "within" } else { "older than" }
            );
            let status = if met { Status::Met } else { Status::Violated };
            verdict(o, target, status, Some(human(a)), reason)
        }
    }
}

fn drill_age(max: Duration, f: &Facts) -> Verdict {
    let target = human(max);
    let o = Objective::MaxDrillAge;
    let drills = match &f.drills {
        Err(why) => return verdict(o, target, Status::Unknown, None, why.clone()),
        Ok(d) => d,
    };
    let Some(d) = drills.iter().max_by_key(|d| d.finished_at) else {
        return verdict(
            o,
            target,
            Status::Violated,
            None,
            "no drill is recorded in the repository".to_owned(),
        );
    };
    let a = age(f.now, d.finished_at);
    let measured = Some(human(a));
    if !d.ok {
        let reason = format!(
            "the last drill {} (at {}) failed: {}",
            d.id,
            d.finished_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            d.error.as_deref().unwrap_or("no reason recorded")
        );
        return verdict(o, target, Status::Violated, measured, reason);
    }
    let met = a <= max;
    let reason = format!(
        "the last drill {} passed {} ago (at {}), {} the objective {target}",
        d.id,
        human(a),
        d.finished_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        if met { "within" } else { "older than" }
    );
    let status = if met { Status::Met } else { Status::Violated };
    verdict(o, target, status, measured, reason)
}

fn copies(min: u32, f: &Facts) -> Verdict {
    let target = min.to_string();
    let o = Objective::MinCopies;
    if let Err(why) = &f.repository_ok {
        return verdict(o, target, Status::Unknown, None, why.clone());
    }
    let copies = match &f.copies {
        Err(why) => {
            // The repository alone may already be enough.
            if min <= 1 {
                let reason = format!("the repository is readable ({why} for the copies)");
                return verdict(o, target, Status::Met, Some("1".into()), reason);
            }
            return verdict(o, target, Status::Unknown, None, why.clone());
        }
        Ok(c) => c,
    };
    let in_sync: Vec<&str> = copies
        .iter()
        .filter(|c| c.in_sync == Ok(true))
        .map(|c| c.name.as_str())
        .collect();
    let behind: Vec<String> = copies
        .iter()
        .filter(|c| c.in_sync == Ok(false))
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect();
    let unknown: Vec<String> = copies
        .iter()
        .filter_map(|c| {
            c.in_sync
                .as_ref()
                .err()
                .map(|e| format!("{} ({e})", c.name))
        })
        .collect();
    let count = 1 + u32::try_from(in_sync.len()).unwrap_or(u32::MAX);
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut reason = format!(
        "{count} cop{} in sync: the repository and {} of {} configured cop{} ({})",
        if count == 1 { "y" } else { "ies" },
        in_sync.len(),
        copies.len(),
        if copies.len() == 1 { "y" } else { "ies" },
        list(&in_sync)
    );
    if !behind.is_empty() {
        reason.push_str(&format!("; behind or failing: {}", behind.join(", ")));
    }
    if !unknown.is_empty() {
        reason.push_str(&format!("; unknown: {}", unknown.join(", ")));
    }
    let status = if count >= min {
        Status::Met
    } else if !unknown.is_empty() && count + u32::try_from(unknown.len()).unwrap_or(u32::MAX) >= min
    {
        Status::Unknown
    } else {
        Status::Violated
    };
    verdict(o, target, status, Some(count.to_string()), reason)
}

/// Whether any verdict is violated (the report's exit status).
pub fn any_violated(verdicts: &[Verdict]) -> bool {
    verdicts.iter().any(|v| v.status == Status::Violated)
}

/// A change worth a notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// It was met (or never judged) and is now violated.
    Violated(Verdict),
    /// It was violated (since the time given) and is met again.
    Recovered(Verdict, DateTime<Utc>),
}

/// Remembers each objective's last known status (met or violated: an unknown in
/// between changes nothing), so a violation is notified once and its recovery once.
#[derive(Debug, Default)]
pub struct Transitions {
    /// The last known status, and since when it is violated.
    last: BTreeMap<Objective, (Status, Option<DateTime<Utc>>)>,
}

impl Transitions {
    /// The changes `verdicts`, judged at `now`, make; objectives no longer configured
    /// are forgotten.
    pub fn update(&mut self, verdicts: &[Verdict], now: DateTime<Utc>) -> Vec<Change> {
        self.last
            .retain(|o, _| verdicts.iter().any(|v| v.objective == *o));
        let mut out = Vec::new();
        for v in verdicts {
            let before = self.last.get(&v.objective).copied();
            let since = match (v.status, before) {
                (Status::Unknown, _) => continue,
                (Status::Violated, Some((Status::Violated, since))) => since,
                (Status::Violated, _) => {
                    out.push(Change::Violated(v.clone()));
                    Some(now)
                }
                (_, Some((Status::Violated, since))) => {
                    out.push(Change::Recovered(v.clone(), since.unwrap_or(now)));
                    None
                }
                _ => None,
            };
            self.last.insert(v.objective, (v.status, since));
        }
        out
    }

    /// Forgets everything (this member stopped judging).
    pub fn clear(&mut self) {
        self.last.clear();
    }
}

/// When the newest live WAL copy (`wal_live/`) was uploaded, from its authenticated
/// header sequence (the uploader's clock in microseconds, see `wal_live`). `Ok(None)`:
/// there is no live copy (uploads of the live segment are off, or a segment was just
/// completed). Each read is bounded by the repository's timeout.
pub async fn newest_live_upload(catalog: &Catalog) -> Result<Option<DateTime<Utc>>, String> {
    let prefix = format!("{}/wal_live", catalog.layout.cluster());
    let objects = catalog
        .repo
        .list(&prefix)
        .await
        .map_err(|e| format!("cannot list {prefix}: {e}"))?;
    let mut newest: Option<u64> = None;
    for o in objects {
        let sealed = match catalog.repo.get(&o.path).await {
            Ok(b) => b,
            // Replaced or deleted since the listing: the next one tells.
            Err(crate::repo::RepoError::NotFound { .. }) => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", o.path)),
        };
        let key = catalog.key.clone();
        let context = o.path.clone();
        // The sequence counts only once the first chunk authenticated.
        let seq = tokio::task::spawn_blocking(move || {
            let mut opener = codec::open(&key, &context, &sealed[..]).ok()?;
            let mut first = [0u8; 1];
            std::io::Read::read(&mut opener, &mut first).ok()?;
            opener.sequence()
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| format!("{} does not authenticate with the key", o.path))?;
        newest = newest.max(Some(seq));
    }
    Ok(newest.and_then(|micros| {
        DateTime::from_timestamp_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }))
}

#[cfg(test)]
#[path = "objectives_tests.rs"]
mod tests;
