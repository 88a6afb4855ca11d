//! `/metrics` gauges about backups, dumps, drills and failure notifications, from the
//! snapshot `backup::facts` keeps (the catalog is never read on a scrape).

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::metrics::Labels;
use warden_backup::facts::Facts;

fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> i64 {
    (now - t).num_seconds().max(0)
}

/// Adds the gauges; nothing when this member has never read the catalog nor run a
/// backup job (no `backup` section, or not started yet).
pub(super) fn gauges(registry: &mut Registry, labels: &Labels, f: &Facts, now: DateTime<Utc>) {
    let known = f.refreshed_at.is_some() || f.last_failure.is_some();
    let mut int = |name: &str, help: &str, value: i64| {
        let family = Family::<Labels, Gauge>::default();
        family.get_or_create(labels).set(value);
        registry.register(name, help, family);
    };
    if let Some(n) = warden_backup::notify::installed() {
        let c = n.counters();
        let v = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        int(
            "warden_backup_notifications_sent",
            "Failure notifications the webhook accepted",
            v(&c.sent),
        );
        int(
            "warden_backup_notifications_failed",
            "Failure notifications not delivered after all retries",
            v(&c.failed),
        );
        int(
            "warden_backup_notifications_dropped",
            "Failure notifications dropped because the queue was full",
            v(&c.dropped),
        );
    }
    if !known {
        return;
    }
    int(
        "warden_backup_last_success_timestamp_seconds",
        "Unix time the newest committed base backup finished (0: none)",
        f.last_backup.map_or(0, secs),
    );
    int(
        "warden_backup_last_success_age_seconds",
        "Seconds since the newest committed base backup finished (-1: none)",
        f.last_backup.map_or(-1, |t| age(now, t)),
    );
    int(
        "warden_backup_last_failure_timestamp_seconds",
        "Unix time a backup or dump job last failed on this member (0: never)",
        f.last_failure.map_or(0, secs),
    );
    int(
        "warden_dump_last_success_timestamp_seconds",
        "Unix time the newest committed logical dump finished (0: none)",
        f.last_dump.map_or(0, secs),
    );
    int(
        "warden_backup_catalog_ok",
        "1 if the last read of the repository catalog succeeded",
        i64::from(f.refreshed_at.is_some() && !f.refresh_error),
    );
    let Some(d) = &f.drill else { return };
    int(
        "warden_drill_last_ok",
        "1 if the newest restore drill succeeded",
        i64::from(d.ok),
    );
    int(
        "warden_drill_last_age_seconds",
        "Seconds since the newest restore drill finished",
        age(now, d.finished_at),
    );
    let mut float = |name: &str, help: &str, value: f64| {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        family.get_or_create(labels).set(value);
        registry.register(name, help, family);
    };
    float(
        "warden_drill_last_rto_seconds",
        "Measured RTO of the newest drill (-1: not measured)",
        d.rto_seconds.unwrap_or(-1.0),
    );
    float(
        "warden_drill_last_rpo_seconds",
        "Measured RPO of the newest drill (-1: not measured)",
        d.rpo_seconds.unwrap_or(-1.0),
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct CopyLabels {
    scope: String,
    name: String,
    copy: String,
}

/// Per-copy gauges (`backup.copies`), on the member running the copier (the archiver);
/// nothing elsewhere.
pub(super) fn copy_gauges(
    registry: &mut Registry,
    labels: &Labels,
    copies: &std::collections::BTreeMap<String, warden_backup::copies::Status>,
) {
    if copies.is_empty() {
        return;
    }
    let label = |copy: &str| CopyLabels {
        scope: labels.scope.clone(),
        name: labels.name.clone(),
        copy: copy.to_owned(),
    };
    type Read = fn(&warden_backup::copies::Status) -> i64;
    let ints: [(&str, &str, Read); 4] = [
        (
            "warden_backup_copy_lag_objects",
            "Committed objects of the main repository the copy lacks (-1: not measured yet)",
            |s| {
                s.lag
                    .map_or(-1, |l| i64::try_from(l.objects).unwrap_or(i64::MAX))
            },
        ),
        (
            "warden_backup_copy_last_success_timestamp_seconds",
            "Unix time the copy last held every committed object (0: never)",
            |s| s.last_success.map_or(0, secs),
        ),
        (
            "warden_backup_copy_refused_objects",
            "Objects not copied because they did not authenticate in the main repository",
            |s| i64::try_from(s.refused).unwrap_or(i64::MAX),
        ),
        (
            "warden_backup_copy_ok",
            "1 if the copier's last pass succeeded and no alert is open",
            |s| i64::from(s.error.is_none() && !s.alerted),
        ),
    ];
    for (name, help, value) in ints {
        let family = Family::<CopyLabels, Gauge>::default();
        for (copy, st) in copies {
            family.get_or_create(&label(copy)).set(value(st));
        }
        registry.register(name, help, family);
    }
    let family = Family::<CopyLabels, Gauge<f64, AtomicU64>>::default();
    for (copy, st) in copies {
        family
            .get_or_create(&label(copy))
            .set(st.lag.map_or(-1.0, |l| l.seconds));
    }
    let delay = Family::<CopyLabels, Gauge<f64, AtomicU64>>::default();
    for (copy, st) in copies {
        delay
            .get_or_create(&label(copy))
            .set(st.delay_seconds.unwrap_or(-1.0));
    }
    registry.register(
        "warden_backup_copy_delay_seconds",
        "Longest wait (main repository write to copied) of the objects the last copying pass copied (-1: none yet)",
        delay,
    );
    registry.register(
        "warden_backup_copy_lag_seconds",
        "Age of the oldest committed object the copy lacks (0: none; -1: not measured yet)",
        family,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use prometheus_client::encoding::text::encode;
    use warden_backup::facts::Drill;

    fn render(f: &Facts, now: DateTime<Utc>) -> String {
        let mut r = Registry::default();
        let labels = Labels {
            scope: "demo".into(),
            name: "n1".into(),
        };
        gauges(&mut r, &labels, f, now);
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn nothing_before_the_catalog_was_read() {
        let text = render(&Facts::default(), Utc::now());
        assert!(!text.contains("warden_backup_last"), "{text}");
    }

    #[test]
    fn backup_age_failure_and_drill() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let f = Facts {
            last_backup: Some(now - chrono::Duration::seconds(90)),
            last_dump: None,
            last_failure: Some(now - chrono::Duration::seconds(10)),
            drill: Some(Drill {
                ok: true,
                finished_at: now - chrono::Duration::seconds(3600),
                rto_seconds: Some(12.5),
                rpo_seconds: None,
            }),
            refreshed_at: Some(now),
            refresh_error: false,
        };
        let text = render(&f, now);
        let has = |line: &str| assert!(text.contains(line), "{line} not in\n{text}");
        has("warden_backup_last_success_age_seconds{scope=\"demo\",name=\"n1\"} 90");
        has(&format!(
            "warden_backup_last_success_timestamp_seconds{{scope=\"demo\",name=\"n1\"}} {}",
            now.timestamp() - 90
        ));
        has(&format!(
            "warden_backup_last_failure_timestamp_seconds{{scope=\"demo\",name=\"n1\"}} {}",
            now.timestamp() - 10
        ));
        has("warden_dump_last_success_timestamp_seconds{scope=\"demo\",name=\"n1\"} 0");
        has("warden_backup_catalog_ok{scope=\"demo\",name=\"n1\"} 1");
        has("warden_drill_last_ok{scope=\"demo\",name=\"n1\"} 1");
        has("warden_drill_last_age_seconds{scope=\"demo\",name=\"n1\"} 3600");
        has("warden_drill_last_rto_seconds{scope=\"demo\",name=\"n1\"} 12.5");
        has("warden_drill_last_rpo_seconds{scope=\"demo\",name=\"n1\"} -1.0");
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct JobLabels {
    scope: String,
    name: String,
    job: String,
}

/// Per-job gauges (`backup.jobs`), on the member running the schedule (the archiver).
pub(super) fn job_gauges(
    registry: &mut Registry,
    labels: &Labels,
    jobs: &std::collections::BTreeMap<String, warden_backup::stack::JobStatus>,
) {
    if jobs.is_empty() {
        return;
    }
    type Read = fn(&warden_backup::stack::JobStatus) -> i64;
    let ints: [(&str, &str, Read); 5] = [
        (
            "warden_backup_job_last_success_timestamp_seconds",
            "Unix time the job's last run on this member committed (0: none yet)",
            |s| s.last_success.map_or(0, secs),
        ),
        (
            "warden_backup_job_last_size_bytes",
            "Plaintext bytes of the job's last committed set",
            |s| i64::try_from(s.last_size).unwrap_or(i64::MAX),
        ),
        (
            "warden_backup_job_failures",
            "Failed runs of the job on this member since the agent started",
            |s| i64::try_from(s.failures).unwrap_or(i64::MAX),
        ),
        (
            "warden_backup_job_last_drill_timestamp_seconds",
            "Unix time of the job's last drill on this member (0: none yet)",
            |s| s.last_drill.map_or(0, secs),
        ),
        (
            "warden_backup_job_last_drill_ok",
            "1 if the job's last drill passed, 0 if it failed, -1 if none ran yet",
            |s| s.last_drill_ok.map_or(-1, i64::from),
        ),
    ];
    for (name, help, value) in ints {
        let family = Family::<JobLabels, Gauge>::default();
        for (job, st) in jobs {
            family
                .get_or_create(&JobLabels {
                    scope: labels.scope.clone(),
                    name: labels.name.clone(),
                    job: job.clone(),
                })
                .set(value(st));
        }
        registry.register(name, help, family);
    }
}
