use super::*;
use serde_json::json;
use std::time::Duration;

fn read<T: TryFrom<Map<String, Value>, Error = String>>(v: Value) -> Result<T, String> {
    match v {
        Value::Object(m) => T::try_from(m),
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn switchover_bodies() {
    let s: SwitchoverRequest = read(
        json!({"leader": "n1", "candidate": "n2", "scheduled_at": "2030-01-01T00:00:00+00:00"}),
    )
    .unwrap();
    assert_eq!(s.leader.as_deref(), Some("n1"));
    assert_eq!(s.candidate.as_deref(), Some("n2"));
    assert_eq!(s.scheduled_at.as_deref(), Some("2030-01-01T00:00:00+00:00"));
    // Old clients' `member`; empty and null are no value; unknown fields are ignored.
    let s: SwitchoverRequest =
        read(json!({"leader": "", "candidate": null, "member": "n3", "x": 1})).unwrap();
    assert_eq!((s.leader, s.candidate.as_deref()), (None, Some("n3")));
    assert_eq!(
        read::<SwitchoverRequest>(json!({"leader": 1})).unwrap_err(),
        "leader: expected a string, got 1"
    );
    // Written as wardenctl sends it, read back the same.
    let s = SwitchoverRequest {
        candidate: Some("n2".into()),
        leader: Some("n1".into()),
        scheduled_at: None,
    };
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#"{"candidate":"n2","leader":"n1"}"#
    );
    assert_eq!(
        serde_json::from_str::<SwitchoverRequest>(r#"{"candidate":"n2","leader":"n1"}"#).unwrap(),
        s
    );
    assert_eq!(
        serde_json::to_value(SwitchoverRequest::default()).unwrap(),
        json!({})
    );
}

#[test]
fn restart_bodies() {
    let r: RestartRequest = read(json!({"role": "replica", "postgres_version": "16", "timeout": "30s", "restart_pending": true, "schedule": "2030-01-01T00:00:00+00:00"})).unwrap();
    assert_eq!(r.role.as_deref(), Some("replica"));
    assert_eq!(r.postgres_version_num(), Some(160_000));
    assert_eq!(r.timeout_duration(), Some(Duration::from_secs(30)));
    assert!(r.restart_pending);
    assert_eq!(r.schedule.as_deref(), Some("2030-01-01T00:00:00+00:00"));
    assert_eq!(
        read::<RestartRequest>(json!({"timeout": 45}))
            .unwrap()
            .timeout_duration(),
        Some(Duration::from_secs(45))
    );
    assert_eq!(
        read::<RestartRequest>(json!({"timeout": " 20 "}))
            .unwrap()
            .timeout_duration(),
        Some(Duration::from_secs(20))
    );
    // A huge timeout is capped, never a deadline the clock cannot hold.
    for huge in [
        json!(10_000_000_000_000_000_000u64),
        json!("100000000000000s"),
    ] {
        assert_eq!(
            read::<RestartRequest>(json!({ "timeout": huge }))
                .unwrap()
                .timeout_duration(),
            Some(crate::requests::MAX_RESTART_TIMEOUT)
        );
    }
    // Patroni's three roles, `standby_leader` included (a standby cluster's leader).
    for role in ["primary", "master", "standby_leader", "replica"] {
        assert_eq!(
            read::<RestartRequest>(json!({ "role": role }))
                .unwrap()
                .role
                .as_deref(),
            Some(role)
        );
    }
    assert!(read::<RestartRequest>(json!({"role": "any"}))
        .unwrap()
        .role
        .is_none());
    assert_eq!(
        read::<RestartRequest>(json!({})).unwrap(),
        RestartRequest::default()
    );
    for (body, refusal) in [
        (
            json!({"role": "leader"}),
            r#"PostgreSQL role should be either primary, standby_leader, or replica, not "leader""#,
        ),
        (
            json!({"timeout": 0}),
            "Timeout should be a positive number of seconds, not 0",
        ),
        (
            json!({"timeout": "soon"}),
            r#"Timeout should be a positive number of seconds, not "soon""#,
        ),
        (
            json!({"timeout": -5}),
            "Timeout should be a positive number of seconds, not -5",
        ),
        (
            json!({"postgres_version": "x"}),
            r#"postgres_version: "x" is not a PostgreSQL version like 15.4"#,
        ),
        (
            json!({"bogus": 1}),
            "Unknown filter for the scheduled restart: bogus",
        ),
        (
            json!({"restart_pending": "maybe"}),
            r#"restart_pending: expected true or false, got "maybe""#,
        ),
        (json!({"schedule": 5}), "schedule: expected a string, got 5"),
        // The first refusal in name order.
        (
            json!({"timeout": 0, "role": "boss"}),
            r#"PostgreSQL role should be either primary, standby_leader, or replica, not "boss""#,
        ),
    ] {
        assert_eq!(
            read::<RestartRequest>(body.clone()).unwrap_err(),
            refusal,
            "{body}"
        );
        // Through serde (as any reader of a body would), the same message.
        assert_eq!(
            serde_json::from_value::<RestartRequest>(body)
                .unwrap_err()
                .to_string(),
            refusal
        );
    }
    // Written as wardenctl sends it: the timeout as typed.
    let r = RestartRequest {
        postgres_version: Some("15.9".into()),
        timeout: Some(Timeout::Text("30s".into())),
        ..RestartRequest::default()
    };
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"postgres_version": "15.9", "timeout": "30s"})
    );
    assert_eq!(
        serde_json::from_value::<RestartRequest>(serde_json::to_value(&r).unwrap()).unwrap(),
        r
    );
    assert_eq!(
        serde_json::to_value(RestartRequest::default()).unwrap(),
        json!({})
    );
}

#[test]
fn postgres_versions() {
    assert_eq!(parse_postgres_version("15.4"), Ok(150_004));
    assert_eq!(parse_postgres_version("16"), Ok(160_000));
    assert_eq!(parse_postgres_version("9.6.24"), Ok(90_624));
    assert_eq!(parse_postgres_version("9.6"), Ok(90_600));
    assert!(parse_postgres_version("9").is_err());
    assert!(parse_postgres_version("15.x").is_err());
    assert!(parse_postgres_version("1.2.3.4").is_err());
    assert!(parse_postgres_version("15.4.1").is_err());
    assert!(parse_postgres_version("fifteen").is_err());
}

#[test]
fn timeouts() {
    assert_eq!(Timeout::Seconds(5).seconds(), Some(5));
    assert_eq!(Timeout::Text("2m".into()).seconds(), Some(120));
    assert_eq!(Timeout::Text("x".into()).seconds(), None);
}

#[test]
fn reinitialize_bodies() {
    let r: ReinitializeRequest = read(json!({"force": "on", "from_leader": true})).unwrap();
    assert!(r.force && r.from_leader);
    assert_eq!(
        read::<ReinitializeRequest>(json!({})).unwrap(),
        ReinitializeRequest::default()
    );
    assert_eq!(
        read::<ReinitializeRequest>(json!({"from-leader": true})).unwrap_err(),
        r#"unknown reinitialize option "from-leader" (known: force, from_leader)"#
    );
    assert_eq!(
        read::<ReinitializeRequest>(json!({"force": 2})).unwrap_err(),
        "force: expected true or false, got 2"
    );
    // patronictl and wardenctl send both flags, false ones too.
    assert_eq!(
        serde_json::to_value(ReinitializeRequest::default()).unwrap(),
        json!({"force": false, "from_leader": false})
    );
}

#[test]
fn failsafe_bodies() {
    // Patroni's leader sends its conn_url and slots too.
    let f: FailsafeRequest = read(json!({"name": "n1", "api_url": "http://h:8008/patroni", "conn_url": "postgres://h:5432/postgres", "slots": {"n2": 100}})).unwrap();
    assert_eq!(f.name, "n1");
    assert_eq!(f.api_url.as_deref(), Some("http://h:8008/patroni"));
    for bad in [json!({}), json!({"name": ""}), json!({"name": 3})] {
        assert_eq!(
            read::<FailsafeRequest>(bad).unwrap_err(),
            FailsafeRequest::NO_NAME
        );
    }
    assert_eq!(
        serde_json::to_value(FailsafeRequest {
            api_url: Some("http://h:1/patroni".into()),
            name: "n1".into()
        })
        .unwrap(),
        json!({"name": "n1", "api_url": "http://h:1/patroni"})
    );
}
