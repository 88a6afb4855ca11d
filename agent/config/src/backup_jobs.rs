//! The job keys of the `backup` section: schedules, retention, dumps, drills, the
//! heartbeat and the failure webhook.
//!
//! ```yaml
//! backup:
//!   schedule: "0 3 * * *"          # base backups, cron in UTC
//!   retention: {keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 6}
//!   dump: {schedule: "30 2 * * *", databases: [app]}
//!   drill:
//!     schedule: "0 5 * * 0"
//!     timeout: 1h
//!     checks:
//!       - {name: users, database: app, sql: "SELECT count(*) > 0 FROM users", expect: "t"}
//!   heartbeat: 1s
//!   webhook_url: https://hooks.slack.com/services/...
//!   wal_wait_timeout: 5m
//!   partial_upload_interval: 1s
//! ```

use std::str::FromStr;
use std::time::Duration;

use serde_yaml::Value;

use super::reader::{Reader, Section};
use super::schema;
use super::types::{CronSchedule, DrillCheck, DrillConfig, DumpConfig, Retention, Secret};

pub(super) const DEFAULT_WAL_WAIT: Duration = Duration::from_secs(300);
pub(super) const DEFAULT_DRILL_TIMEOUT: Duration = Duration::from_secs(3600);
pub(super) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
pub(super) const DEFAULT_PARTIAL_UPLOAD: Duration = Duration::from_secs(1);

/// Parses and checks a cron expression (UTC). Seconds are optional (6 fields).
pub fn cron(text: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(text.trim())
        .map_err(|e| e.to_string())
}

impl CronSchedule {
    /// The parsed schedule; config loading already proved it parses.
    pub fn cron(&self) -> croner::Cron {
        cron(&self.0).expect("validated when the config was loaded")
    }
}

impl FromStr for CronSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        cron(s).map(|_| CronSchedule(s.trim().to_owned()))
    }
}

pub(super) fn schedule(r: &mut Reader, key: &str, value: &Value) -> Option<CronSchedule> {
    let text = r.string(key, value)?;
    match text.parse() {
        Ok(s) => Some(s),
        Err(e) => {
            r.error(
                key,
                format!(
                    "expected a cron expression like \"0 3 * * *\" (minute hour day month \
                     weekday, UTC), got \"{text}\" ({e})"
                ),
            );
            None
        }
    }
}

pub(super) fn retention(r: &mut Reader, value: &Value) -> Option<Retention> {
    retention_at(r, "backup.retention", value)
}

/// `backup.retention`'s rules at `key` (a copy's `backup.copies[i].retention` too).
pub(super) fn retention_at(r: &mut Reader, key: &str, value: &Value) -> Option<Retention> {
    let s = r.section(key, value)?;
    r.check_keys(&s, schema::RETENTION, &[]);
    let mut out = Retention::default();
    let mut ok = true;
    for (key, field) in [
        ("keep_last", &mut out.keep_last),
        ("keep_daily", &mut out.keep_daily),
        ("keep_weekly", &mut out.keep_weekly),
        ("keep_monthly", &mut out.keep_monthly),
    ] {
        if let Some(v) = s.get(key) {
            match r.unsigned(&s.path_of(key), v) {
                Some(n) => *field = Some(n),
                None => ok = false,
            }
        }
    }
    // keep_last: 0 with nothing else would delete every backup on the next prune.
    if ok
        && out.keep_last == Some(0)
        && out.keep_daily.unwrap_or(0) == 0
        && out.keep_weekly.unwrap_or(0) == 0
        && out.keep_monthly.unwrap_or(0) == 0
    {
        r.error(
            key,
            "keeps no backup at all; set at least one keep_* above 0 (or remove the section to keep everything)",
        );
        return None;
    }
    ok.then_some(out)
}

pub(super) fn dump(r: &mut Reader, value: &Value) -> Option<DumpConfig> {
    let s = r.section("backup.dump", value)?;
    r.check_keys(&s, schema::DUMP, &[]);
    let schedule = r
        .required(&s, "schedule")
        .and_then(|v| schedule(r, "backup.dump.schedule", v));
    let databases = match s.get("databases") {
        None => Some(Vec::new()),
        Some(v) => r.string_list("backup.dump.databases", v),
    };
    Some(DumpConfig {
        schedule: schedule?,
        databases: databases?,
    })
}

pub(super) fn drill(r: &mut Reader, value: Option<&Value>) -> Option<DrillConfig> {
    let Some(value) = value else {
        return Some(DrillConfig {
            schedule: None,
            checks: Vec::new(),
            timeout: DEFAULT_DRILL_TIMEOUT,
        });
    };
    let s = r.section("backup.drill", value)?;
    r.check_keys(&s, schema::DRILL, &[]);
    let schedule = match s.get("schedule") {
        None => Some(None),
        Some(v) => schedule(r, "backup.drill.schedule", v).map(Some),
    };
    let timeout = match s.get("timeout") {
        None => Some(DEFAULT_DRILL_TIMEOUT),
        Some(v) => super::backup::duration(r, "backup.drill.timeout", v),
    };
    let checks = match s.get("checks") {
        None => Some(Vec::new()),
        Some(v) => checks(r, v),
    };
    Some(DrillConfig {
        schedule: schedule?,
        checks: checks?,
        timeout: timeout?,
    })
}

fn checks(r: &mut Reader, value: &Value) -> Option<Vec<DrillCheck>> {
    const KEY: &str = "backup.drill.checks";
    let Value::Sequence(items) = value else {
        r.error(KEY, "expected a list of {name, database, sql, expect}");
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("{KEY}[{i}]");
        let Some(s) = r.section(&path, item) else {
            ok = false;
            continue;
        };
        r.check_keys(&s, schema::DRILL_CHECK, &[]);
        let mut text = |key: &str, required: bool| -> Option<Option<String>> {
            match s.get(key) {
                None if required => {
                    r.error(s.path_of(key), "is required");
                    None
                }
                None => Some(None),
                Some(v) => r.string(&s.path_of(key), v).map(Some),
            }
        };
        let name = text("name", false);
        let database = text("database", false);
        let sql = text("sql", true);
        let expect = text("expect", true);
        match (name, database, sql, expect) {
            (Some(name), Some(database), Some(Some(sql)), Some(Some(expect))) => {
                out.push(DrillCheck {
                    name: name.unwrap_or_else(|| format!("check {}", i + 1)),
                    database: database.unwrap_or_else(|| "postgres".to_owned()),
                    sql,
                    expect,
                })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// `heartbeat`: a duration, or `false`/`off` to disable.
pub(super) fn heartbeat(r: &mut Reader, value: Option<&Value>) -> Option<Option<Duration>> {
    optional_interval(r, "backup.heartbeat", value, DEFAULT_HEARTBEAT)
}

pub(super) fn partial_upload_interval(
    r: &mut Reader,
    value: Option<&Value>,
) -> Option<Option<Duration>> {
    optional_interval(
        r,
        "backup.partial_upload_interval",
        value,
        DEFAULT_PARTIAL_UPLOAD,
    )
}

fn optional_interval(
    r: &mut Reader,
    key: &str,
    value: Option<&Value>,
    default: Duration,
) -> Option<Option<Duration>> {
    match value {
        None => Some(Some(default)),
        Some(Value::Bool(false)) => Some(None),
        Some(Value::String(s)) if matches!(s.trim(), "off" | "false") => Some(None),
        Some(v) => super::backup::duration(r, key, v).map(Some),
    }
}

pub(super) fn webhook_url(r: &mut Reader, value: Option<&Value>) -> Option<Option<Secret>> {
    const KEY: &str = "backup.webhook_url";
    let Some(v) = value else { return Some(None) };
    let url = r.string(KEY, v)?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        // The value may carry a token: name the key, never echo it.
        r.error(KEY, "must be an http:// or https:// URL");
        return None;
    }
    Some(Some(Secret(url)))
}

pub(super) fn wal_wait_timeout(r: &mut Reader, s: &Section<'_>) -> Option<Duration> {
    match s.get("wal_wait_timeout") {
        None => Some(DEFAULT_WAL_WAIT),
        Some(v) => super::backup::duration(r, "backup.wal_wait_timeout", v),
    }
}
