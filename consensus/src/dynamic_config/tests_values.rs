//! The lenient value forms Patroni accepts, and the text forms Warden writes.

use serde_json::json;

use super::test_support::{errors_of, parse};
use super::*;

#[test]
fn synchronous_mode_accepts_bools_and_words() {
    let cases = [
        (json!(true), SynchronousMode::On),
        (json!(false), SynchronousMode::Off),
        (json!("on"), SynchronousMode::On),
        (json!("off"), SynchronousMode::Off),
        (json!("ON"), SynchronousMode::On),
        (json!("quorum"), SynchronousMode::Quorum),
        (json!("Quorum"), SynchronousMode::Quorum),
        (json!("true"), SynchronousMode::On),
        (json!(Value::Null), SynchronousMode::Off),
    ];
    for (value, expected) in cases {
        let c = parse(&json!({ "synchronous_mode": value.clone() }));
        assert_eq!(c.synchronous_mode, expected, "for {value}");
    }
    assert_eq!(
        errors_of(&json!({"synchronous_mode": "sometimes"})),
        vec!["synchronous_mode: expected one of off, on, quorum (or a boolean), got \"sometimes\""]
    );
    assert!(SynchronousMode::Quorum.is_enabled() && !SynchronousMode::Off.is_enabled());
}

#[test]
fn pause_forms() {
    assert!(parse(&json!({"pause": true})).pause);
    assert!(parse(&json!({"pause": "true"})).pause);
    assert!(!parse(&json!({"pause": null})).pause);
    assert!(!parse(&json!({"pause": false})).pause);
    assert!(!parse(&json!({})).pause);
    assert_eq!(
        errors_of(&json!({"pause": "later"})),
        vec!["pause: expected a boolean (true or false), got \"later\""]
    );
}

#[test]
fn numeric_strings_and_integral_floats_are_accepted() {
    let c = parse(
        &json!({"ttl": "30", "loop_wait": " 5 ", "retry_timeout": 10.0,
                         "maximum_lag_on_failover": "2097152"}),
    );
    assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 5, 10));
    assert_eq!(c.maximum_lag_on_failover, 2_097_152);
    let c = parse(&json!({"maximum_lag_on_failover": u64::MAX}));
    assert_eq!(c.maximum_lag_on_failover, u64::MAX);
}

#[test]
fn guc_text_uses_postgresql_forms() {
    assert_eq!(guc_text(&json!(true)).as_deref(), Some("on"));
    assert_eq!(guc_text(&json!(false)).as_deref(), Some("off"));
    assert_eq!(guc_text(&json!(10)).as_deref(), Some("10"));
    assert_eq!(guc_text(&json!(0.9)).as_deref(), Some("0.9"));
    assert_eq!(guc_text(&json!("replica")).as_deref(), Some("replica"));
    assert_eq!(guc_text(&json!(null)), None);
    assert_eq!(guc_text(&json!([1])), None);
}

#[test]
fn describe_truncates_long_values() {
    let long = Value::String("x".repeat(200));
    assert!(describe(&long).ends_with("..."));
    assert!(describe(&long).chars().count() <= 63);
}
