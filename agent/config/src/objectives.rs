//! `backup.objectives` (Warden only): the disaster-recovery objectives that
//! `wardenctl dr-report` and the archiver's `warden_dr_objective_met` gauges judge the
//! cluster against. Every key is optional; an objective that is not set is not judged.
//!
//! ```yaml
//! backup:
//!   objectives:
//!     rpo: 1m              # archive RPO now (age of the newest archived WAL)
//!     rto: 15m             # the last drill's measured RTO
//!     max_backup_age: 25h  # the newest committed base backup
//!     max_drill_age: 8d    # the newest drill (and it passed)
//!     min_copies: 2        # the repository plus backup.copies in sync
//! ```

use std::time::Duration;

use serde_yaml::Value;

use super::reader::Reader;
use super::schema;

/// `backup.objectives`; `None` fields are not judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objectives {
    /// Most data (as time) a loss of the cluster may lose: judged against the age of
    /// the newest WAL in the repository.
    pub rpo: Option<Duration>,
    /// Longest a restore may take: judged against the last drill's measured RTO.
    pub rto: Option<Duration>,
    /// Oldest the newest committed base backup may be.
    pub max_backup_age: Option<Duration>,
    /// Oldest the newest drill may be; a failed newest drill violates it too.
    pub max_drill_age: Option<Duration>,
    /// Repositories (the main one counts as 1, then each of `backup.copies`) that must
    /// be in sync; at least 1.
    pub min_copies: Option<u32>,
}

impl Objectives {
    /// No objective is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Parses `backup.objectives` (absent: no objectives). `None`: invalid (reported,
/// each problem naming its key).
pub(super) fn objectives(r: &mut Reader, value: Option<&Value>) -> Option<Objectives> {
    const KEY: &str = "backup.objectives";
    let Some(value) = value else {
        return Some(Objectives::default());
    };
    if value.is_null() {
        return Some(Objectives::default());
    }
    let s = r.section(KEY, value)?;
    r.check_keys(&s, schema::OBJECTIVES, &[]);
    let mut ok = true;
    let mut duration = |r: &mut Reader, key: &str| -> Option<Duration> {
        let v = s.get(key)?;
        let d = super::backup::duration(r, &s.path_of(key), v);
        ok &= d.is_some();
        d
    };
    let out = Objectives {
        rpo: duration(r, "rpo"),
        rto: duration(r, "rto"),
        max_backup_age: duration(r, "max_backup_age"),
        max_drill_age: duration(r, "max_drill_age"),
        min_copies: None,
    };
    let min_copies = match s.get("min_copies") {
        None => Some(None),
        Some(v) => match r.unsigned(&s.path_of("min_copies"), v) {
            Some(0) => {
                r.error(
                    s.path_of("min_copies"),
                    "must be at least 1 (the repository itself counts as one copy)",
                );
                None
            }
            Some(n) => Some(Some(n)),
            None => None,
        },
    };
    let min_copies = min_copies?;
    ok.then_some(Objectives { min_copies, ..out })
}
