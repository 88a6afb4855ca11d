//! Recovery targets: parsing the operator's input and the PostgreSQL settings that
//! express it. Which backup can reach a target is the backup crate's question.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::lsn::Lsn;

/// Where recovery stops. `Latest` replays every archived WAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Latest,
    Time(DateTime<Utc>),
    Lsn(Lsn),
    Name(String),
    /// As soon as the backup is consistent (its end LSN).
    Immediate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("--target-time {0:?}: not a time; use RFC 3339 such as 2026-12-02T12:30:00Z or '2026-12-02 12:30:00+00' (a time without an offset is UTC)")]
    BadTime(String),
    #[error("--target-lsn {0:?}: not a WAL position; use PostgreSQL's form such as 0/3000060")]
    BadLsn(String),
    #[error("--target-name: a restore point name must be 1 to 63 characters")]
    BadName,
    #[error("conflicting recovery targets ({0}): give at most one of --target-time, --target-lsn, --target-name, --immediate")]
    Conflict(String),
    #[error("the target time {target} is before backup {id} finished ({finished}); a restore cannot stop before the end of its backup: choose an older backup (--backup ID) or a later target")]
    TimeBeforeBackup {
        target: String,
        id: String,
        finished: String,
    },
    #[error("no backup finished before the target time {target}; the oldest one ({id}) finished at {finished}")]
    NoBackupBefore {
        target: String,
        id: String,
        finished: String,
    },
    #[error("the target LSN {target} is before the end of backup {id} ({end}); a restore cannot stop before the end of its backup")]
    LsnBeforeBackup {
        target: String,
        id: String,
        end: String,
    },
}

/// Parses a time: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.f][+HH[:MM]]` (PostgreSQL's
/// output form); no offset means UTC.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, TargetError> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, fmt) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(Utc.from_utc_datetime(&n));
        }
    }
    Err(TargetError::BadTime(text.to_owned()))
}

impl Target {
    /// The target from the four mutually exclusive command-line options.
    pub fn from_options(
        time: Option<&str>,
        lsn: Option<&str>,
        name: Option<&str>,
        immediate: bool,
    ) -> Result<Target, TargetError> {
        let given: Vec<&str> = [
            time.map(|_| "--target-time"),
            lsn.map(|_| "--target-lsn"),
            name.map(|_| "--target-name"),
            immediate.then_some("--immediate"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() > 1 {
            return Err(TargetError::Conflict(given.join(", ")));
        }
        if let Some(t) = time {
            return parse_time(t).map(Target::Time);
        }
        if let Some(l) = lsn {
            return Lsn::parse(l)
                .map(Target::Lsn)
                .ok_or_else(|| TargetError::BadLsn(l.to_owned()));
        }
        if let Some(n) = name {
            // PostgreSQL's restore point names are at most NAMEDATALEN - 1 bytes.
            if n.is_empty() || n.len() > 63 {
                return Err(TargetError::BadName);
            }
            return Ok(Target::Name(n.to_owned()));
        }
        Ok(if immediate {
            Target::Immediate
        } else {
            Target::Latest
        })
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Target::Latest => "latest (all archived WAL)".into(),
            Target::Time(t) => format!("time {}", pg_time(t)),
            Target::Lsn(l) => format!("lsn {l}"),
            Target::Name(n) => format!("restore point {n:?}"),
            Target::Immediate => "immediate (end of the backup)".into(),
        }
    }

    /// The `recovery_target*` settings (without `recovery_target_timeline` and
    /// `recovery_target_action`, which are always written).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            Target::Latest => vec![],
            Target::Time(t) => vec![("recovery_target_time", pg_time(t))],
            Target::Lsn(l) => vec![("recovery_target_lsn", l.to_string())],
            Target::Name(n) => vec![("recovery_target_name", n.clone())],
            Target::Immediate => vec![("recovery_target", "immediate".into())],
        }
    }
}

/// PostgreSQL's timestamptz input form, in UTC, microseconds.
pub fn pg_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        let want = Utc.with_ymd_and_hms(2026, 12, 2, 12, 30, 0).unwrap();
        for t in [
            "2026-12-02T12:30:00Z",
            "2026-12-02T13:30:00+01:00",
            "2026-12-02 12:30:00+00",
            "2026-12-02 12:30:00.000000+00",
            "2026-12-02 12:30:00",
            "2026-12-02T12:30:00",
        ] {
            assert_eq!(parse_time(t).unwrap(), want, "{t}");
        }
        assert!(matches!(
            parse_time("yesterday"),
            Err(TargetError::BadTime(_))
        ));
        assert!(parse_time("2026-13-02 12:00:00").is_err());
    }

    #[test]
    fn options_are_exclusive_and_checked() {
        assert_eq!(
            Target::from_options(None, None, None, false).unwrap(),
            Target::Latest
        );
        assert_eq!(
            Target::from_options(None, None, None, true).unwrap(),
            Target::Immediate
        );
        let e = Target::from_options(Some("2026-12-02T12:00:00Z"), Some("0/1"), None, true)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("--target-time, --target-lsn, --immediate"),
            "{e}"
        );
        assert!(matches!(
            Target::from_options(None, Some("12345"), None, false),
            Err(TargetError::BadLsn(_))
        ));
        assert_eq!(
            Target::from_options(None, Some("0/3000060"), None, false).unwrap(),
            Target::Lsn(Lsn(0x300_0060))
        );
        assert!(matches!(
            Target::from_options(None, None, Some(""), false),
            Err(TargetError::BadName)
        ));
    }

    #[test]
    fn settings_render_postgresql_values() {
        let t = Target::Time(parse_time("2026-12-02T12:30:00.25Z").unwrap());
        assert_eq!(
            t.settings(),
            vec![(
                "recovery_target_time",
                "2026-12-02 12:30:00.250000+00".to_string()
            )]
        );
        assert_eq!(
            Target::Immediate.settings(),
            vec![("recovery_target", "immediate".to_string())]
        );
        assert!(Target::Latest.settings().is_empty());
    }
}
