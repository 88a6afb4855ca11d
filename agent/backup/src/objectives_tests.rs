use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

fn ago(secs: i64) -> DateTime<Utc> {
    now() - chrono::Duration::seconds(secs)
}

fn drill(id: &str, ok: bool, secs_ago: i64, rto: Option<f64>) -> DrillFact {
    DrillFact {
        id: id.into(),
        ok,
        finished_at: ago(secs_ago),
        rto_seconds: rto,
        error: (!ok).then(|| "checks failed: rows".to_owned()),
    }
}

fn healthy() -> Facts {
    Facts {
        now: now(),
        newest_wal: Ok(ago(2)),
        last_backup: Ok(Some(ago(3600))),
        backup_noun: "base backup",
        drills: Ok(vec![drill("d1", true, 600, Some(12.0))]),
        repository_ok: Ok(()),
        copies: Ok(vec![CopyFact {
            name: "offsite".into(),
            in_sync: Ok(true),
            detail: "lag 1.0s".into(),
        }]),
    }
}

fn all() -> Objectives {
    Objectives {
        rpo: Some(Duration::from_secs(60)),
        rto: Some(Duration::from_secs(900)),
        max_backup_age: Some(Duration::from_secs(25 * 3600)),
        max_drill_age: Some(Duration::from_secs(8 * 86400)),
        min_copies: Some(2),
    }
}

fn status(v: &[Verdict], o: Objective) -> Status {
    v.iter().find(|v| v.objective == o).unwrap().status
}

/// Every objective except `o` is met; `o` has `want`.
fn only(v: &[Verdict], o: Objective, want: Status) {
    for x in v {
        let expected = if x.objective == o { want } else { Status::Met };
        assert_eq!(x.status, expected, "{x:?}");
    }
}

#[test]
fn a_healthy_cluster_meets_every_objective() {
    let v = judge(&all(), &healthy());
    assert_eq!(
        v.iter().map(|v| v.objective).collect::<Vec<_>>(),
        Objective::ALL
    );
    assert!(v.iter().all(|v| v.status == Status::Met), "{v:#?}");
    assert!(!any_violated(&v));
    assert_eq!(v[0].measured.as_deref(), Some("2s"));
    assert_eq!(v[1].measured.as_deref(), Some("12.0s"));
    assert_eq!(v[4].measured.as_deref(), Some("2"));
}

#[test]
fn objectives_not_set_are_not_judged() {
    let o = Objectives {
        rpo: Some(Duration::from_secs(60)),
        ..Objectives::default()
    };
    let v = judge(&o, &healthy());
    assert_eq!(v.len(), 1);
    assert!(judge(&Objectives::default(), &healthy()).is_empty());
}

#[test]
fn each_fact_turns_exactly_its_objective() {
    let mut f = healthy();
    f.newest_wal = Ok(ago(61));
    let v = judge(&all(), &f);
    only(&v, Objective::Rpo, Status::Violated);
    assert!(v[0].reason.contains("1m 1s ago"), "{}", v[0].reason);
    assert!(any_violated(&v));

    let mut f = healthy();
    f.drills = Ok(vec![drill("d1", true, 600, Some(901.5))]);
    only(&judge(&all(), &f), Objective::Rto, Status::Violated);

    let mut f = healthy();
    f.last_backup = Ok(Some(ago(25 * 3600 + 1)));
    let v = judge(&all(), &f);
    only(&v, Objective::MaxBackupAge, Status::Violated);
    assert!(v[2].reason.contains("older than"), "{}", v[2].reason);
    f.last_backup = Ok(None);
    let v = judge(&all(), &f);
    only(&v, Objective::MaxBackupAge, Status::Violated);
    assert!(
        v[2].reason.contains("no committed base backup"),
        "{}",
        v[2].reason
    );

    let mut f = healthy();
    f.drills = Ok(vec![drill("d1", true, 8 * 86400 + 1, Some(12.0))]);
    only(&judge(&all(), &f), Objective::MaxDrillAge, Status::Violated);

    let mut f = healthy();
    f.copies = Ok(vec![CopyFact {
        name: "offsite".into(),
        in_sync: Ok(false),
        detail: "lag 400.0s, max_lag 5m".into(),
    }]);
    let v = judge(&all(), &f);
    only(&v, Objective::MinCopies, Status::Violated);
    assert!(
        v[4].reason
            .contains("behind or failing: offsite (lag 400.0s, max_lag 5m)"),
        "{}",
        v[4].reason
    );
}

#[test]
fn a_failed_last_drill_violates_the_drill_age_but_rto_keeps_the_last_passed_one() {
    let mut f = healthy();
    f.drills = Ok(vec![
        drill("d1", true, 600, Some(12.0)),
        drill("d2", false, 60, None),
    ]);
    let v = judge(&all(), &f);
    only(&v, Objective::MaxDrillAge, Status::Violated);
    let d = &v[3];
    assert!(
        d.reason.contains("d2") && d.reason.contains("failed: checks failed: rows"),
        "{}",
        d.reason
    );
    assert!(v[1].reason.contains("d1"), "{}", v[1].reason);

    // No drill at all: the age is violated, the RTO unknown.
    f.drills = Ok(Vec::new());
    let v = judge(&all(), &f);
    assert_eq!(status(&v, Objective::MaxDrillAge), Status::Violated);
    assert_eq!(status(&v, Objective::Rto), Status::Unknown);
}

#[test]
fn facts_that_cannot_be_read_are_unknown_never_met() {
    let f = Facts {
        now: now(),
        newest_wal: Err("no live WAL copy".into()),
        last_backup: Err("catalog unreadable".into()),
        backup_noun: "base backup",
        drills: Err("catalog unreadable".into()),
        repository_ok: Err("catalog unreadable".into()),
        copies: Err("copies unknown".into()),
    };
    let v = judge(&all(), &f);
    assert!(v.iter().all(|v| v.status == Status::Unknown), "{v:#?}");
    assert!(!any_violated(&v));
    assert_eq!(v[0].reason, "no live WAL copy");
}

#[test]
fn copies_count_the_repository_and_unknown_copies_leave_it_open() {
    let mut f = healthy();
    f.copies = Err("copies are not measured".into());
    let one = Objectives {
        min_copies: Some(1),
        ..Objectives::default()
    };
    assert_eq!(judge(&one, &f)[0].status, Status::Met);
    assert_eq!(judge(&all(), &f)[4].status, Status::Unknown);

    f.copies = Ok(vec![
        CopyFact {
            name: "a".into(),
            in_sync: Err("never read".into()),
            detail: String::new(),
        },
        CopyFact {
            name: "b".into(),
            in_sync: Ok(false),
            detail: "cannot list it".into(),
        },
    ]);
    let v = judge(&all(), &f);
    assert_eq!(v[4].status, Status::Unknown, "{:?}", v[4]);
    let three = Objectives {
        min_copies: Some(4),
        ..Objectives::default()
    };
    assert_eq!(judge(&three, &f)[0].status, Status::Violated);
    f.copies = Ok(Vec::new());
    let v = judge(&all(), &f);
    assert_eq!(v[4].status, Status::Violated);
    assert!(v[4].reason.starts_with("1 copy in sync"), "{}", v[4].reason);
}

#[test]
fn transitions_notify_a_violation_once_and_its_recovery_once() {
    let mut t = Transitions::default();
    let o = all();
    let at = |secs| now() + chrono::Duration::seconds(secs);
    assert!(t.update(&judge(&o, &healthy()), at(0)).is_empty());
    let mut bad = healthy();
    bad.last_backup = Ok(Some(ago(26 * 3600)));
    let changes = t.update(&judge(&o, &bad), at(5));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(matches!(&changes[0], Change::Violated(v) if v.objective == Objective::MaxBackupAge));
    assert!(
        t.update(&judge(&o, &bad), at(10)).is_empty(),
        "notified once"
    );
    // Unknown in between changes nothing.
    let mut unknown = healthy();
    unknown.last_backup = Err("catalog unreadable".into());
    assert!(t.update(&judge(&o, &unknown), at(15)).is_empty());
    assert!(t.update(&judge(&o, &bad), at(20)).is_empty());
    let changes = t.update(&judge(&o, &healthy()), at(25));
    assert!(
        matches!(&changes[..], [Change::Recovered(v, since)]
            if v.objective == Objective::MaxBackupAge && *since == at(5)),
        "{changes:?}"
    );
    assert!(t.update(&judge(&o, &healthy()), at(30)).is_empty());
    // A violation seen first (a new judge) is notified.
    let mut fresh = Transitions::default();
    assert_eq!(fresh.update(&judge(&o, &bad), at(0)).len(), 1);
    fresh.clear();
    assert_eq!(fresh.update(&judge(&o, &bad), at(0)).len(), 1);
    // An objective no longer configured is forgotten.
    let rpo_only = Objectives {
        rpo: o.rpo,
        ..Objectives::default()
    };
    assert!(fresh.update(&judge(&rpo_only, &bad), at(1)).is_empty());
    assert_eq!(fresh.update(&judge(&o, &bad), at(2)).len(), 1);
}

#[test]
fn gauge_values() {
    assert_eq!(Status::Met.gauge(), 1);
    assert_eq!(Status::Violated.gauge(), 0);
    assert_eq!(Status::Unknown.gauge(), -1);
    assert_eq!(human(Duration::from_millis(90_400)), "1m 30s");
}
