//! Writing the config back: nothing a user set is lost, typed fields win.

use serde_json::json;

use super::test_support::{contract_example, parse};
use super::*;

#[test]
fn extra_keys_survive_a_round_trip() {
    let input = json!({
        "ttl": 30,
        "standby_cluster": {"host": "10.0.0.1", "port": 5432},
        "slots": {"logical1": {"type": "logical", "database": "app", "plugin": "pgoutput"}},
        "ignore_slots": [{"name": "ext"}],
        "member_slots_ttl": "30min",
        "my_tool_marker": {"owner": "ops"},
        "postgresql": {
            "use_slots": true,
            "recovery_conf": {"restore_command": "cp /a/%f %p"},
            "pg_ident": ["map1 sys1 pg1"],
            "parameters": {"max_connections": 200}
        }
    });
    let c = parse(&input);
    assert_eq!(c.extra.len(), 5);
    assert!(c.postgresql.extra.contains_key("recovery_conf"));
    let out = c.to_json();
    for key in [
        "standby_cluster",
        "slots",
        "ignore_slots",
        "member_slots_ttl",
        "my_tool_marker",
    ] {
        assert_eq!(out[key], input[key], "{key}");
    }
    assert_eq!(
        out["postgresql"]["recovery_conf"],
        input["postgresql"]["recovery_conf"]
    );
    assert_eq!(
        out["postgresql"]["pg_ident"],
        input["postgresql"]["pg_ident"]
    );
    assert_eq!(
        out["postgresql"]["parameters"]["max_connections"],
        json!(200)
    );
    // The written form parses back to the same value.
    assert_eq!(parse(&out), c);
    assert_eq!(parse(&out).to_json(), out);
}

#[test]
fn to_json_writes_the_full_effective_config() {
    let out = DynamicConfig::default().to_json();
    assert_eq!(
        out,
        json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
            "maximum_lag_on_failover": 1048576, "maximum_lag_on_syncnode": -1,
            "primary_start_timeout": 300, "primary_stop_timeout": 0,
            "check_timeline": false, "synchronous_mode": false,
            "synchronous_mode_strict": false, "synchronous_node_count": 1,
            "failsafe_mode": false,
            "postgresql": {"use_pg_rewind": false, "use_slots": true, "parameters": {}}
        })
    );
    let paused = DynamicConfig {
        pause: true,
        synchronous_mode: SynchronousMode::Quorum,
        ..DynamicConfig::default()
    };
    let out = paused.to_json();
    assert_eq!(out["pause"], json!(true));
    assert_eq!(out["synchronous_mode"], json!("quorum"));
    let on = DynamicConfig {
        synchronous_mode: SynchronousMode::On,
        ..DynamicConfig::default()
    };
    assert_eq!(on.to_json()["synchronous_mode"], json!(true));
}

#[test]
fn typed_fields_win_over_colliding_extra_entries() {
    let mut c = DynamicConfig::default();
    c.extra.insert("ttl".to_owned(), json!(999));
    c.extra.insert("pause".to_owned(), json!(true));
    let out = c.to_json();
    assert_eq!(out["ttl"], json!(30));
    assert!(out.get("pause").is_none());
}

#[test]
fn serde_impls_use_the_json_form() {
    let c = parse(&contract_example());
    let text = serde_json::to_string(&c).unwrap();
    let back: DynamicConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, c);
    let err = serde_json::from_str::<DynamicConfig>(r#"{"ttl": "soon"}"#).unwrap_err();
    assert!(
        err.to_string().contains("ttl: expected an integer"),
        "{err}"
    );
}
