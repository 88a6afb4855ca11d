//! The `backup` section's job keys: defaults, values, and one clear problem per bad key.

use std::time::Duration;

use super::fixtures::{assert_has_prefix, ok, problems, MINIMAL};
use crate::*;

fn with_backup(extra: &str) -> String {
    format!("{MINIMAL}backup:\n  repository: {{type: filesystem, path: /r}}\n{extra}")
}

#[test]
fn job_defaults() {
    let b = ok(&with_backup("")).config.backup.unwrap();
    assert_eq!(b.schedule, None);
    assert!(b.retention.keeps_everything());
    assert_eq!(b.dump, None);
    assert_eq!(b.drill.schedule, None);
    assert!(b.drill.checks.is_empty());
    assert_eq!(b.heartbeat, Some(Duration::from_secs(1)));
    assert_eq!(b.webhook_url, None);
    assert_eq!(b.wal_wait_timeout, Duration::from_secs(300));
    assert_eq!(b.partial_upload_interval, Some(Duration::from_secs(1)));
}

#[test]
fn job_values() {
    let b = ok(&with_backup(
        r#"  schedule: "15 3 * * *"
  retention: {keep_last: 2, keep_daily: 7, keep_monthly: 6}
  dump: {schedule: "0 2 * * 0", databases: [app, crm]}
  drill:
    schedule: "0 5 * * 6"
    timeout: 20m
    checks:
      - {name: users, database: app, sql: "SELECT count(*) FROM users", expect: "3"}
      - {sql: "SELECT 1", expect: "1"}
  heartbeat: off
  webhook_url: https://hooks.example/T0/B0/secret-token
  wal_wait_timeout: 90s
  partial_upload_interval: 500ms
"#,
    ))
    .config
    .backup
    .unwrap();
    assert_eq!(b.schedule, Some(CronSchedule("15 3 * * *".into())));
    assert_eq!(
        b.retention,
        Retention {
            keep_last: Some(2),
            keep_daily: Some(7),
            keep_weekly: None,
            keep_monthly: Some(6),
        }
    );
    let dump = b.dump.unwrap();
    assert_eq!(dump.databases, ["app", "crm"]);
    assert_eq!(b.drill.timeout, Duration::from_secs(1200));
    assert_eq!(b.drill.checks.len(), 2);
    assert_eq!(b.drill.checks[1].name, "check 2");
    assert_eq!(b.drill.checks[1].database, "postgres");
    assert_eq!(b.heartbeat, None);
    assert_eq!(b.wal_wait_timeout, Duration::from_secs(90));
    assert_eq!(b.partial_upload_interval, Some(Duration::from_millis(500)));
    let debug = format!("{:?}", b.webhook_url);
    assert!(!debug.contains("secret-token"), "{debug}");
}

#[test]
fn bad_job_values_are_named() {
    let p = problems(&with_backup(
        r#"  schedule: "every night"
  retention: {keep_last: -1, keep_yearly: 3}
  dump: {databases: app}
  drill: {checks: [{sql: "SELECT 1"}], timeout: 0}
  webhook_url: "hooks.example/x"
  wal_wait_timeout: soon
"#,
    ));
    for prefix in [
        "backup.schedule: expected a cron expression",
        "backup.retention.keep_last: must be a non-negative integer",
        "backup.retention.keep_yearly",
        "backup.dump.schedule",
        "backup.dump.databases: expected a list of strings",
        "backup.drill.checks[0].expect: is required",
        "backup.drill.timeout: must be greater than zero",
        "backup.webhook_url: must be an http:// or https:// URL",
        "backup.wal_wait_timeout: expected a duration",
    ] {
        assert_has_prefix(&p, prefix);
    }
    let p = problems(&with_backup("  retention: {keep_last: 0}\n"));
    assert_has_prefix(&p, "backup.retention: keeps no backup at all");
}

#[test]
fn cron_accepts_five_or_six_fields() {
    assert!(backup_jobs::cron("0 3 * * *").is_ok());
    assert!(backup_jobs::cron("*/5 * * * * *").is_ok());
    assert!(backup_jobs::cron("61 * * * *").is_err());
}
