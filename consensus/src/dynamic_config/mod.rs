//! Patroni's *dynamic configuration*: the JSON object stored in the cluster's `config`
//! key, first written from the YAML section `bootstrap.dcs`.
//!
//! Warden interprets a subset of the keys (timeouts, lag limits, synchronous mode,
//! pause, `postgresql.{use_pg_rewind,use_slots,parameters,pg_hba}`) as typed fields.
//! Every other key is kept verbatim in an `extra` map, because the `config` key is shared
//! with `patronictl` and other tools: reading it and writing it back through Warden must
//! never drop a user's setting.
//!
//! Parsing is lenient in the same places Patroni is (numeric strings such as `"30"`,
//! boolean words such as `"on"`), and strict where a wrong value would be unsafe: every
//! problem is reported with the key that caused it.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

mod keys;
mod parse;
mod render;
mod validate;
mod values;

pub use keys::{
    candidate_keys, classify_key, known_keys, patroni_only_keys, KeyClass, PATRONI_ONLY_POSTGRESQL,
    PATRONI_ONLY_TOP,
};
pub use values::{bool_word, boolean, describe, guc_text};

/// Patroni's defaults. Warden's own examples use smaller timeouts, but a config without
/// these keys must behave exactly as it does under Patroni.
pub const DEFAULT_TTL: u32 = 30;
pub const DEFAULT_LOOP_WAIT: u32 = 10;
pub const DEFAULT_RETRY_TIMEOUT: u32 = 10;
pub const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: u64 = 1_048_576;
pub const DEFAULT_MAXIMUM_LAG_ON_SYNCNODE: i64 = -1;
pub const DEFAULT_PRIMARY_START_TIMEOUT: u32 = 300;
pub const DEFAULT_PRIMARY_STOP_TIMEOUT: u32 = 0;
pub const DEFAULT_SYNCHRONOUS_NODE_COUNT: u32 = 1;

/// Lowest accepted `ttl`. Patroni says 20; Warden's lease deadline on a monotonic clock
/// makes shorter leases safe, and the design promises failover budgets down to 3 s.
pub const MIN_TTL: u32 = 3;

/// One problem with one key. `key` is a dotted path relative to the dynamic config
/// (`ttl`, `postgresql.parameters.port`); callers that embed the dynamic config in a
/// larger document prefix it (`bootstrap.dcs.ttl`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct DynamicConfigError {
    pub key: String,
    pub reason: String,
}

impl DynamicConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// `synchronous_mode`. Patroni 4 accepts a boolean or one of `off`/`on`/`quorum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynchronousMode {
    #[default]
    Off,
    On,
    Quorum,
}

impl SynchronousMode {
    pub fn is_enabled(self) -> bool {
        self != SynchronousMode::Off
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SynchronousMode::Off => "off",
            SynchronousMode::On => "on",
            SynchronousMode::Quorum => "quorum",
        }
    }
}

impl fmt::Display for SynchronousMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `postgresql` section of the dynamic config.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicPostgresql {
    pub use_pg_rewind: bool,
    pub use_slots: bool,
    /// GUCs with their JSON values as stored (numbers stay numbers); see [`guc_text`].
    pub parameters: BTreeMap<String, Value>,
    /// `None` when the key is absent: the local `postgresql.pg_hba` then applies.
    pub pg_hba: Option<Vec<String>>,
    /// Keys of the `postgresql` section Warden does not interpret (`recovery_conf`,
    /// `pg_ident`, ...), kept verbatim.
    pub extra: Map<String, Value>,
}

impl Default for DynamicPostgresql {
    fn default() -> Self {
        Self {
            use_pg_rewind: false,
            use_slots: true,
            parameters: BTreeMap::new(),
            pg_hba: None,
            extra: Map::new(),
        }
    }
}

/// The typed dynamic configuration. Build one with [`DynamicConfig::from_json`] or start
/// from [`Default`] (Patroni's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfig {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub maximum_lag_on_failover: u64,
    pub maximum_lag_on_syncnode: i64,
    pub primary_start_timeout: u32,
    pub primary_stop_timeout: u32,
    pub check_timeline: bool,
    pub synchronous_mode: SynchronousMode,
    pub synchronous_mode_strict: bool,
    pub synchronous_node_count: u32,
    pub failsafe_mode: bool,
    /// Maintenance mode. Stored by Patroni as `pause: true`, removed (or null) when off.
    pub pause: bool,
    pub postgresql: DynamicPostgresql,
    /// Top-level keys Warden does not interpret (`standby_cluster`, `slots`,
    /// `ignore_slots`, `member_slots_ttl`, keys of other tools), kept verbatim.
    pub extra: Map<String, Value>,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            loop_wait: DEFAULT_LOOP_WAIT,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            maximum_lag_on_failover: DEFAULT_MAXIMUM_LAG_ON_FAILOVER,
            maximum_lag_on_syncnode: DEFAULT_MAXIMUM_LAG_ON_SYNCNODE,
            primary_start_timeout: DEFAULT_PRIMARY_START_TIMEOUT,
            primary_stop_timeout: DEFAULT_PRIMARY_STOP_TIMEOUT,
            check_timeline: false,
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: DEFAULT_SYNCHRONOUS_NODE_COUNT,
            failsafe_mode: false,
            pause: false,
            postgresql: DynamicPostgresql::default(),
            extra: Map::new(),
        }
    }
}

impl DynamicConfig {
    /// True when a non-empty `standby_cluster` section is present. Warden does not run
    /// standby clusters yet, but must not report such a cluster's leader as `/primary`.
    pub fn is_standby_cluster(&self) -> bool {
        match self.extra.get("standby_cluster") {
            Some(Value::Object(section)) => !section.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(value: &Value) -> Vec<String> {
        match DynamicConfig::from_json_all(value) {
            Ok(c) => panic!("expected errors, parsed {c:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn parse(value: &Value) -> DynamicConfig {
        match DynamicConfig::from_json_all(value) {
            Ok(c) => c,
            Err(errors) => panic!("unexpected errors: {errors:?}"),
        }
    }

    /// The `bootstrap.dcs` section of the example in the Patroni contract reference.
    fn contract_example() -> Value {
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

        let (c, notes) =
            DynamicConfig::from_dcs_json(&json!({"ttl": 25, "loop_wait": 10})).unwrap();
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (25, 5, 10));
        assert!(
            notes[0].contains("adjusted loop_wait from 10 to 5"),
            "{notes:?}"
        );

        let value =
            json!({"ttl": 1, "loop_wait": 0, "retry_timeout": 0, "synchronous_node_count": 0});
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
    fn null_parameters_are_dropped() {
        let c = parse(&json!({"postgresql": {"parameters": {"a": null, "b": 1}}}));
        assert_eq!(c.postgresql.parameters.len(), 1);
    }

    #[test]
    fn warnings_name_preserved_keys() {
        let c = parse(&json!({
            "slots": {"s": {"type": "physical"}},
            "standby_cluster": {"host": "h"},
            "mystery": 1,
            "ignored_null": null,
            "postgresql": {"pg_ident": [], "weird": true}
        }));
        let w = c.warnings();
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w.iter().any(|m| m.starts_with("mystery: unknown key")));
        assert!(w
            .iter()
            .any(|m| m.starts_with("postgresql.weird: unknown key")));
        assert!(w
            .iter()
            .any(|m| m.starts_with("slots: Patroni setting not implemented")));
        assert!(w
            .iter()
            .any(|m| m.starts_with("postgresql.pg_ident: Patroni setting")));
        assert!(w
            .iter()
            .any(|m| m.starts_with("standby_cluster: standby clusters")));
        assert!(c.is_standby_cluster());
        assert!(!parse(&json!({"standby_cluster": {}})).is_standby_cluster());
        assert!(!parse(&json!({"standby_cluster": null})).is_standby_cluster());
    }

    #[test]
    fn key_classification() {
        assert_eq!(classify_key("ttl"), KeyClass::Implemented);
        assert_eq!(classify_key("postgresql"), KeyClass::Implemented);
        assert_eq!(classify_key("postgresql.use_slots"), KeyClass::Implemented);
        assert_eq!(
            classify_key("master_start_timeout"),
            KeyClass::Alias {
                canonical: "primary_start_timeout"
            }
        );
        assert_eq!(classify_key("standby_cluster"), KeyClass::PatroniOnly);
        assert_eq!(
            classify_key("postgresql.recovery_conf"),
            KeyClass::PatroniOnly
        );
        assert_eq!(classify_key("tll"), KeyClass::Unknown);
        assert_eq!(classify_key("postgresql.use_slot"), KeyClass::Unknown);
        assert_eq!(
            classify_key("postgresql.parameters.work_mem"),
            KeyClass::FreeForm
        );
        assert_eq!(classify_key("slots.my_slot"), KeyClass::FreeForm);
        assert_eq!(classify_key("bogus.child"), KeyClass::Unknown);
        assert!(known_keys().contains(&"postgresql.pg_hba".to_owned()));
        assert!(patroni_only_keys().contains(&"member_slots_ttl".to_owned()));
        assert!(candidate_keys("").contains(&"loop_wait"));
        assert!(candidate_keys("postgresql").contains(&"use_pg_rewind"));
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
    fn serde_impls_use_the_json_form() {
        let c = parse(&contract_example());
        let text = serde_json::to_string(&c).unwrap();
        let back: DynamicConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<DynamicConfig>(r#"{"ttl": 1}"#).unwrap_err();
        assert!(
            err.to_string().contains("ttl: must be at least 3 seconds"),
            "{err}"
        );
    }

    #[test]
    fn describe_truncates_long_values() {
        let long = Value::String("x".repeat(200));
        assert!(describe(&long).ends_with("..."));
        assert!(describe(&long).chars().count() <= 63);
    }
}
