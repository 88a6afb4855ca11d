//! The timing rules: adjusted as Patroni adjusts them, whoever wrote the values.

use serde_json::json;

use super::test_support::{errors_of, parse};
use super::*;

#[test]
fn written_timings_are_adjusted_like_patroni_not_refused() {
    // Patroni's own cases (checked against Patroni 4.1.5): `(ttl, loop_wait,
    // retry_timeout)` written, then what the agents run with.
    let cases = [
        (json!({"ttl": 20, "retry_timeout": 10}), (20, 1, 9), true),
        (
            json!({"ttl": 25, "loop_wait": 10, "retry_timeout": 10}),
            (25, 5, 10),
            true,
        ),
        (
            json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 15}),
            (30, 1, 14),
            true,
        ),
        (json!({"ttl": 20, "loop_wait": 3}), (20, 1, 9), true),
        // Warden's floors (ttl 3, loop_wait and retry_timeout 1), then the rule.
        (json!({"ttl": 1}), (3, 1, 1), true),
        (json!({"loop_wait": 0}), (30, 1, 10), true),
        // At equality nothing changes.
        (
            json!({"ttl": 3, "loop_wait": 1, "retry_timeout": 1}),
            (3, 1, 1),
            false,
        ),
        (
            json!({"ttl": 10, "loop_wait": 2, "retry_timeout": 4}),
            (10, 2, 4),
            false,
        ),
    ];
    for (written, want, adjusted) in cases {
        let (c, notes) = DynamicConfig::from_written_json(&written).unwrap();
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), want, "{written}");
        assert_eq!(!notes.is_empty(), adjusted, "{written}: {notes:?}");
        assert_eq!(parse(&written), c, "from_json_all agrees");
    }
    // Type errors are still errors, and one bad key does not hide another.
    assert_eq!(
        errors_of(&json!({"ttl": "x", "loop_wait": 10})),
        vec!["ttl: expected an integer, got \"x\""]
    );
}

#[test]
fn dcs_reads_adjust_timeouts_like_patroni() {
    // A Patroni cluster's config Warden's strict rule would refuse.
    let value = json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 10, "slots": {}});
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
