//! The timing rules: rejected from a user, adjusted from the DCS.

use serde_json::json;

use super::test_support::{errors_of, parse};
use super::*;

#[test]
fn ttl_floor_and_timing_rule() {
    assert_eq!(
        errors_of(&json!({"ttl": 1})),
        vec!["ttl: must be at least 3 seconds, got 1"]
    );
    assert_eq!(
        errors_of(&json!({"ttl": 20, "loop_wait": 3})),
        vec![
            "ttl: loop_wait + 2*retry_timeout (3 + 2*10 = 23) must not exceed ttl (20); \
             lower loop_wait or retry_timeout, or raise ttl"
        ]
    );
    assert_eq!(
        errors_of(&json!({"loop_wait": 0})),
        vec!["loop_wait: must be at least 1 second, got 0"]
    );
    assert_eq!(
        errors_of(&json!({"ttl": 5, "retry_timeout": 0, "loop_wait": 1})),
        vec!["retry_timeout: must be at least 1 second, got 0"]
    );
    // The smallest legal setting, and the rule at equality.
    let c = parse(&json!({"ttl": 3, "loop_wait": 1, "retry_timeout": 1}));
    assert_eq!(c.ttl, 3);
    parse(&json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10}));
    parse(&json!({"ttl": 10, "loop_wait": 1, "retry_timeout": 3}));
    // A key that failed to parse does not trigger a second, misleading rule error.
    assert_eq!(
        errors_of(&json!({"ttl": "x", "loop_wait": 10})),
        vec!["ttl: expected an integer, got \"x\""]
    );
}

#[test]
fn dcs_reads_adjust_timeouts_like_patroni() {
    // A Patroni cluster's config Warden's strict rule would refuse.
    let value = json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 10, "slots": {}});
    assert!(DynamicConfig::from_json(&value).is_err());
    let (c, notes) = DynamicConfig::from_dcs_json(&value).unwrap();
    assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (20, 1, 9));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("adjusted loop_wait from 10 to 1 and retry_timeout from 10 to 9"));
    assert!(c.extra.contains_key("slots"));

    let (c, notes) = DynamicConfig::from_dcs_json(&json!({"ttl": 25, "loop_wait": 10})).unwrap();
    assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (25, 5, 10));
    assert!(
        notes[0].contains("adjusted loop_wait from 10 to 5"),
        "{notes:?}"
    );

    let value = json!({"ttl": 1, "loop_wait": 0, "retry_timeout": 0, "synchronous_node_count": 0});
    let (c, notes) = DynamicConfig::from_dcs_json(&value).unwrap();
    assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (3, 1, 1));
    assert_eq!(c.synchronous_node_count, 1);
    assert_eq!(notes.len(), 4, "{notes:?}");
    assert!(c.validate().is_ok());

    let (_, notes) = DynamicConfig::from_dcs_json(&json!({})).unwrap();
    assert!(notes.is_empty());
    // Type errors are still errors.
    assert!(DynamicConfig::from_dcs_json(&json!({"ttl": "x"})).is_err());
}

#[test]
fn synchronous_node_count_must_be_positive() {
    assert_eq!(
        errors_of(&json!({"synchronous_node_count": 0})),
        vec!["synchronous_node_count: must be at least 1, got 0"]
    );
    let c = DynamicConfig {
        synchronous_node_count: 0,
        ttl: 2,
        ..DynamicConfig::default()
    };
    let errors = c.validate().unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
}
