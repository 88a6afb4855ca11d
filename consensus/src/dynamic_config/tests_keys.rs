//! Key classification and the warnings about preserved keys.

use serde_json::json;

use super::test_support::parse;
use super::*;

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
    // `slots` and `standby_cluster` are Warden's too now (kept verbatim, read where
    // used): no warning.
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w.iter().any(|m| m.starts_with("mystery: unknown key")));
    assert!(w
        .iter()
        .any(|m| m.starts_with("postgresql.weird: unknown key")));
    assert!(!w.iter().any(|m| m.starts_with("slots")), "{w:?}");
    assert!(w
        .iter()
        .any(|m| m.starts_with("postgresql.pg_ident: Patroni setting")));
    assert!(!w.iter().any(|m| m.starts_with("standby_cluster")), "{w:?}");
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
    assert_eq!(classify_key("standby_cluster"), KeyClass::Implemented);
    assert_eq!(
        classify_key("postgresql.recovery_conf"),
        KeyClass::Implemented
    );
    assert_eq!(classify_key("postgresql.pg_ident"), KeyClass::PatroniOnly);
    assert_eq!(classify_key("tll"), KeyClass::Unknown);
    assert_eq!(classify_key("postgresql.use_slot"), KeyClass::Unknown);
    assert_eq!(
        classify_key("postgresql.parameters.work_mem"),
        KeyClass::FreeForm
    );
    assert_eq!(classify_key("slots.my_slot"), KeyClass::FreeForm);
    assert_eq!(classify_key("bogus.child"), KeyClass::Unknown);
    assert!(known_keys().contains(&"postgresql.pg_hba".to_owned()));
    assert!(known_keys().contains(&"member_slots_ttl".to_owned()));
    assert!(known_keys().contains(&"postgresql.recovery_conf".to_owned()));
    assert!(!patroni_only_keys().contains(&"standby_cluster".to_owned()));
    assert!(candidate_keys("").contains(&"loop_wait"));
    assert!(candidate_keys("postgresql").contains(&"use_pg_rewind"));
}
