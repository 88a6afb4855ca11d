use super::gather::{Fact, MemberView, ObjectivesView, Procedure, Report, ScheduleRow, Service};
use super::*;
use chrono::{TimeZone, Utc};
use warden_backup::objectives::{Objective, Status, Verdict};

use crate::args::{Cli, Command};
use clap::Parser;

fn report(violated: bool) -> Report {
    let at = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
    Report {
        generated_at: at,
        service: Service {
            scope: "demo".into(),
            namespace: "/service/".into(),
            engine: "postgresql".into(),
            system_identifier: "7312345678901234567".into(),
            leader: Some("n1".into()),
            standby_cluster: false,
            archiver: Some("n2".into()),
            repository: "file:///repo".into(),
            members: vec![MemberView {
                name: "n2".into(),
                host: "127.0.0.1:5433".into(),
                role: "Replica".into(),
                state: "streaming".into(),
                timeline: Some(1),
                lag_bytes: Some(0),
            }],
        },
        objectives: ObjectivesView {
            rpo: Some("1m".into()),
            ..ObjectivesView::default()
        },
        schedule: vec![ScheduleRow {
            component: "Base backups".into(),
            method: "physical | base".into(),
            frequency: "cron \"0 3 * * *\" (UTC)".into(),
            retention: "keep_last 3".into(),
            location: "file:///repo".into(),
        }],
        facts: vec![Fact {
            name: "archive RPO now".into(),
            value: "1s ago".into(),
            at: Some(at),
        }],
        verdicts: vec![Verdict {
            objective: Objective::Rpo,
            status: if violated {
                Status::Violated
            } else {
                Status::Met
            },
            target: "1m".into(),
            measured: Some("1s".into()),
            reason: "the newest WAL <reached> the repository".into(),
        }],
        violated,
        procedures: vec![Procedure {
            scenario: "Planned switchover".into(),
            summary: "Hand over:".into(),
            commands: vec!["wardenctl -c /etc/w.yml switchover demo --force".into()],
        }],
        transitions: Vec::new(),
    }
}

#[test]
fn markdown_has_the_tables_verdicts_and_commands() {
    let md = render::markdown(&report(false));
    for want in [
        "# DR report: demo",
        "## Backup schedule",
        "| Component | Method | Frequency | Retention | Location |",
        "| Base backups | physical \\| base |",
        "| rpo | 1m | 1s | met |",
        "No objective is violated",
        "```sh\nwardenctl -c /etc/w.yml switchover demo --force\n```",
        "| archive RPO now | 1s ago | 2026-12-07 12:00:00 |",
    ] {
        assert!(md.contains(want), "{want:?} not in\n{md}");
    }
    let md = render::markdown(&report(true));
    assert!(md.contains("| VIOLATED |"), "{md}");
    assert!(md.contains("exit status 3"), "{md}");
}

#[test]
fn html_escapes_and_marks_verdicts() {
    let h = render::html(&report(true));
    assert!(h.starts_with("<!DOCTYPE html>"), "{h}");
    assert!(h.contains("<tr class=\"violated\">"), "{h}");
    assert!(h.contains("&lt;reached&gt;"), "{h}");
    assert!(!h.contains("<reached>"), "{h}");
    assert!(h.contains("<strong>Planned switchover.</strong>"), "{h}");
}

#[test]
fn json_carries_every_part() {
    let v = serde_json::to_value(report(true)).unwrap();
    assert_eq!(v["verdicts"][0]["objective"], "rpo");
    assert_eq!(v["verdicts"][0]["status"], "violated");
    assert_eq!(v["violated"], true);
    assert_eq!(v["objectives"]["rpo"], "1m");
    assert!(v["objectives"]["rto"].is_null());
    assert_eq!(v["service"]["members"][0]["lag_bytes"], 0);
}

#[test]
fn command_line() {
    let cli = Cli::try_parse_from(["wardenctl", "-c", "/x.yml", "dr-report", "--format", "json"])
        .unwrap();
    match cli.command {
        Command::DrReport(a) => {
            assert_eq!(a.format, Format::Json);
            assert!(a.cluster_name.is_none());
        }
        other => panic!("parsed as {}", other.name()),
    }
    let cli = Cli::try_parse_from(["wardenctl", "dr-report", "demo"]).unwrap();
    match cli.command {
        Command::DrReport(a) => {
            assert_eq!(a.format, Format::Markdown);
            assert_eq!(a.cluster_name.as_deref(), Some("demo"));
        }
        other => panic!("parsed as {}", other.name()),
    }
    assert!(Cli::try_parse_from(["wardenctl", "dr-report", "--format", "pdf"]).is_err());
    let e: anyhow::Error = Violated(vec!["rpo: too old".into()]).into();
    assert!(e.downcast_ref::<Violated>().is_some());
    assert_eq!(e.to_string(), "1 objective(s) violated: rpo: too old");
}

#[test]
fn transitions_become_facts_with_their_durations() {
    use warden_consensus::transitions::{Transition, TransitionKind as K};
    let list: Vec<Transition> = serde_json::from_value(serde_json::json!([
        {"kind": "failover", "from": "n1", "to": "n2", "timeline": 2, "at": "2026-12-07T12:00:03Z",
         "detected_at": "2026-12-07T12:00:01Z", "detected_to_promoted": 2.04, "ttl": 10},
        {"kind": "cluster_promotion", "from": "10.0.0.1:5432", "to": "b1", "timeline": 3,
         "at": "2026-12-07T12:10:00Z", "detected_to_promoted": 0.8, "ttl": 10,
         "lag_bytes": 0, "lag_seconds": 0.0},
        {"kind": "failover", "to": "n3", "at": "2026-12-07T12:20:00Z"}
    ]))
    .unwrap();
    let f = gather::last_transition(&list, K::Failover);
    assert_eq!(
        f.value,
        "? to n3: promoted ? after it saw the leader key vacant; the old \
                         leader failed up to its ttl (?) before the key expired"
    );
    let f = gather::last_transition(&list[..1], K::Failover);
    assert!(f.value.starts_with("n1 to n2 (timeline 2): promoted 2.0s after it saw the leader key vacant at 2026-12-07T12:00:01Z"), "{}", f.value);
    assert!(f.value.contains("ttl (10s)"), "{}", f.value);
    assert_eq!(f.at.unwrap().to_rfc3339(), "2026-12-07T12:00:03+00:00");
    let f = gather::last_transition(&list, K::ClusterPromotion);
    assert!(f.value.contains("b1 promoted (timeline 3) 0.8s after the standby_cluster section was removed (following 10.0.0.1:5432); 0 bytes / 0.0s behind"), "{}", f.value);
    let f = gather::last_transition(&list, K::Switchover);
    assert_eq!(
        (f.value.as_str(), f.at),
        ("none recorded (warden/transitions)", None)
    );
}
