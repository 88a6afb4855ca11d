//! Reading the typed fields, and the errors a bad value gives.

use serde_json::json;

use super::test_support::{contract_example, errors_of, parse};
use super::*;

#[test]
fn contract_example_parses() {
    let c = parse(&contract_example());
    assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 10, 10));
    assert_eq!(c.maximum_lag_on_failover, 1_048_576);
    assert!(c.postgresql.use_pg_rewind);
    assert!(c.postgresql.use_slots);
    assert_eq!(c.postgresql.parameters["max_wal_senders"], json!(10));
    assert_eq!(c.postgresql.parameters["hot_standby"], json!("on"));
    assert_eq!(c.postgresql.pg_hba, None);
    assert!(c.extra.is_empty());
    assert!(c.warnings().is_empty());
}

#[test]
fn empty_object_and_null_give_patroni_defaults() {
    for value in [json!({}), Value::Null] {
        let c = parse(&value);
        assert_eq!(c, DynamicConfig::default());
        assert_eq!(c.ttl, 30);
        assert_eq!(c.loop_wait, 10);
        assert_eq!(c.retry_timeout, 10);
        assert_eq!(c.maximum_lag_on_failover, 1_048_576);
        assert_eq!(c.maximum_lag_on_syncnode, -1);
        assert_eq!(c.primary_start_timeout, 300);
        assert_eq!(c.primary_stop_timeout, 0);
        assert!(!c.check_timeline);
        assert_eq!(c.synchronous_mode, SynchronousMode::Off);
        assert!(!c.synchronous_mode_strict);
        assert_eq!(c.synchronous_node_count, 1);
        assert!(!c.failsafe_mode);
        assert!(!c.pause);
        assert!(!c.postgresql.use_pg_rewind);
        assert!(c.postgresql.use_slots);
        assert!(c.postgresql.parameters.is_empty());
    }
    assert!(DynamicConfig::default().validate().is_ok());
}

#[test]
fn every_typed_key_is_read() {
    let c = parse(&json!({
        "ttl": 10, "loop_wait": 1, "retry_timeout": 3,
        "maximum_lag_on_failover": 0, "maximum_lag_on_syncnode": 5000,
        "primary_start_timeout": 0, "primary_stop_timeout": 15,
        "check_timeline": true, "synchronous_mode": "quorum",
        "synchronous_mode_strict": true, "synchronous_node_count": 2,
        "failsafe_mode": true, "pause": true,
        "postgresql": {"use_pg_rewind": true, "use_slots": false,
                       "pg_hba": ["local all all trust"]}
    }));
    assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (10, 1, 3));
    assert_eq!(c.maximum_lag_on_failover, 0);
    assert_eq!(c.maximum_lag_on_syncnode, 5000);
    assert_eq!((c.primary_start_timeout, c.primary_stop_timeout), (0, 15));
    assert!(c.check_timeline && c.synchronous_mode_strict && c.failsafe_mode && c.pause);
    assert_eq!(c.synchronous_mode, SynchronousMode::Quorum);
    assert_eq!(c.synchronous_node_count, 2);
    assert!(c.postgresql.use_pg_rewind && !c.postgresql.use_slots);
    assert_eq!(
        c.postgresql.pg_hba,
        Some(vec!["local all all trust".to_owned()])
    );
}

#[test]
fn wrong_types_name_the_key() {
    assert_eq!(
        errors_of(&json!({"ttl": "abc"})),
        vec!["ttl: expected an integer, got \"abc\""]
    );
    assert_eq!(
        errors_of(&json!({"loop_wait": 1.5})),
        vec!["loop_wait: expected an integer, got 1.5"]
    );
    assert_eq!(
        errors_of(&json!({"retry_timeout": true})),
        vec!["retry_timeout: expected an integer, got true"]
    );
    assert_eq!(
        errors_of(&json!({"check_timeline": "maybe"})),
        vec!["check_timeline: expected a boolean (true or false), got \"maybe\""]
    );
    assert_eq!(
        errors_of(&json!({"postgresql": {"use_slots": [1]}})),
        vec!["postgresql.use_slots: expected a boolean (true or false), got [1]"]
    );
    assert_eq!(
        errors_of(&json!({"postgresql": "yes"})),
        vec!["postgresql: expected an object, got \"yes\""]
    );
    assert_eq!(
        errors_of(&json!({"postgresql": {"parameters": ["a"]}})),
        vec!["postgresql.parameters: expected an object, got [\"a\"]"]
    );
    assert_eq!(
        errors_of(&json!({"postgresql": {"parameters": {"x": {"y": 1}}}})),
        vec!["postgresql.parameters.x: expected a string, number or boolean, got {\"y\":1}"]
    );
    assert_eq!(
        errors_of(&json!({"postgresql": {"pg_hba": "host all all 0/0 md5"}})),
        vec!["postgresql.pg_hba: expected a list of strings, got \"host all all 0/0 md5\""]
    );
    assert_eq!(
        errors_of(&json!({"postgresql": {"pg_hba": ["ok", 5]}})),
        vec!["postgresql.pg_hba[1]: expected a string, got 5"]
    );
    assert_eq!(
        errors_of(&json!([1, 2])),
        vec!["(config): expected an object, got [1,2]"]
    );
}

#[test]
fn negative_and_out_of_range_numbers() {
    assert_eq!(
        errors_of(&json!({"maximum_lag_on_failover": -1})),
        vec!["maximum_lag_on_failover: must not be negative, got -1"]
    );
    assert_eq!(
        errors_of(&json!({"primary_start_timeout": -5})),
        vec!["primary_start_timeout: must not be negative, got -5"]
    );
    assert_eq!(
        errors_of(&json!({"primary_stop_timeout": "-1"})),
        vec!["primary_stop_timeout: must not be negative, got -1"]
    );
    assert_eq!(
        errors_of(&json!({"synchronous_node_count": 5_000_000_000_u64})),
        vec!["synchronous_node_count: must be at most 4294967295, got 5000000000"]
    );
    // Negative syncnode lag is Patroni's "disabled".
    assert_eq!(
        parse(&json!({"maximum_lag_on_syncnode": -100})).maximum_lag_on_syncnode,
        -100
    );
}

#[test]
fn all_errors_are_reported_and_from_json_returns_the_first() {
    let value = json!({"ttl": "abc", "maximum_lag_on_failover": -1,
                       "synchronous_mode": 7, "postgresql": {"use_slots": "x"}});
    let errors = errors_of(&value);
    assert_eq!(errors.len(), 4, "{errors:?}");
    let first = DynamicConfig::from_json(&value).unwrap_err();
    assert_eq!(first.key, "ttl");
    assert_eq!(first.to_string(), "ttl: expected an integer, got \"abc\"");
}

#[test]
fn legacy_master_timeouts_are_aliases() {
    let c = parse(&json!({"master_start_timeout": 60, "master_stop_timeout": 5}));
    assert_eq!((c.primary_start_timeout, c.primary_stop_timeout), (60, 5));
    assert!(c.extra.is_empty());
    let c = parse(&json!({"master_start_timeout": 60, "primary_start_timeout": 30}));
    assert_eq!(c.primary_start_timeout, 30);
    let out = c.to_json();
    assert_eq!(out["primary_start_timeout"], json!(30));
    assert!(out.get("master_start_timeout").is_none());
    assert_eq!(
        errors_of(&json!({"master_start_timeout": -1})),
        vec!["master_start_timeout: must not be negative, got -1"]
    );
}

#[test]
fn null_parameters_are_dropped() {
    let c = parse(&json!({"postgresql": {"parameters": {"a": null, "b": 1}}}));
    assert_eq!(c.postgresql.parameters.len(), 1);
}

#[test]
fn parameter_names_and_control_characters_are_refused() {
    let errors = errors_of(&json!({"postgresql": {
        "parameters": {
            "work_mem": "4MB\nshared_preload_libraries = 'evil'",
            "bad name": 1,
            "x = 1 #": 1,
            "pg_stat_statements.track": "all"
        },
        "pg_hba": ["host all all 0.0.0.0/0 trust\nhost all all ::/0 trust"]
    }}));
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors
        .iter()
        .any(|e| e.starts_with("postgresql.parameters.work_mem: contains the control character")));
    assert!(errors
        .iter()
        .any(|e| e.starts_with("postgresql.parameters.bad name: ")));
    assert!(errors
        .iter()
        .any(|e| e.starts_with("postgresql.pg_hba[0]: contains the control character")));
    // A custom parameter's dotted name and a tab are fine.
    let c = parse(&json!({"postgresql": {"parameters": {
        "pg_stat_statements.track": "all", "search_path": "a,\tb"}}}));
    assert_eq!(c.postgresql.parameters.len(), 2);
}
