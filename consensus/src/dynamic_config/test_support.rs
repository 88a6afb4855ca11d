//! Helpers shared by the dynamic config tests.

use serde_json::{json, Value};

use super::DynamicConfig;

pub(super) fn errors_of(value: &Value) -> Vec<String> {
    match DynamicConfig::from_json_all(value) {
        Ok(c) => panic!("expected errors, parsed {c:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

pub(super) fn parse(value: &Value) -> DynamicConfig {
    match DynamicConfig::from_json_all(value) {
        Ok(c) => c,
        Err(errors) => panic!("unexpected errors: {errors:?}"),
    }
}

/// The `bootstrap.dcs` section of the example in the Patroni contract reference.
pub(super) fn contract_example() -> Value {
    json!({
        "ttl": 30,
        "loop_wait": 10,
        "retry_timeout": 10,
        "maximum_lag_on_failover": 1048576,
        "postgresql": {
            "use_pg_rewind": true,
            "use_slots": true,
            "parameters": {
                "wal_level": "replica",
                "hot_standby": "on",
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "wal_log_hints": "on"
            }
        }
    })
}
