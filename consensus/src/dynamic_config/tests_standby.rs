//! `standby_cluster`: typed, validated, written back verbatim.

use serde_json::json;

use super::test_support::{errors_of, parse};
use super::*;

#[test]
fn full_section_is_typed() {
    let c = parse(&json!({"standby_cluster": {
        "host": "10.0.0.1", "port": "5433", "primary_slot_name": "site_b",
        "create_replica_methods": ["basebackup"], "restore_command": "cp /a/%f %p",
        "recovery_min_apply_delay": "5min"
    }}));
    let s = c.standby_cluster.as_ref().unwrap();
    assert_eq!(s.address(), Some(("10.0.0.1".to_owned(), 5433)));
    assert_eq!(s.primary_slot_name.as_deref(), Some("site_b"));
    assert_eq!(s.create_replica_methods, vec!["basebackup".to_owned()]);
    assert_eq!(s.restore_command.as_deref(), Some("cp /a/%f %p"));
    assert_eq!(s.recovery_min_apply_delay.as_deref(), Some("5min"));
    assert!(c.is_standby_cluster());
    // Written back as stored (the port keeps its string form, keys of other tools too).
    assert_eq!(c.to_json()["standby_cluster"]["port"], json!("5433"));
}

#[test]
fn patroni_rule_for_enabled() {
    assert!(parse(&json!({"standby_cluster": {"restore_command": "x"}})).is_standby_cluster());
    assert!(parse(&json!({"standby_cluster": {"port": 5432}})).is_standby_cluster());
    let only_slot = parse(&json!({"standby_cluster": {"primary_slot_name": "s"}}));
    assert!(!only_slot.is_standby_cluster());
    assert!(!parse(&json!({"standby_cluster": {"host": ""}})).is_standby_cluster());
    assert!(!parse(&json!({})).is_standby_cluster());
}

#[test]
fn bad_values_name_their_key() {
    let e = errors_of(&json!({"standby_cluster": {
        "host": 5, "port": 70000, "primary_slot_name": "Bad-Slot",
        "create_replica_methods": "basebackup", "recovery_min_apply_delay": "soon",
        "restore_command": "a\u{0}b", "hostt": "x"
    }}));
    for key in [
        "standby_cluster.host:",
        "standby_cluster.port: must be between 1 and 65535",
        "standby_cluster.primary_slot_name:",
        "standby_cluster.create_replica_methods:",
        "standby_cluster.recovery_min_apply_delay:",
        "standby_cluster.restore_command:",
        "standby_cluster.hostt: unknown key",
    ] {
        assert!(e.iter().any(|m| m.starts_with(key)), "{key}: {e:?}");
    }
    let e = errors_of(&json!({"standby_cluster": "10.0.0.1"}));
    assert!(
        e[0].starts_with("standby_cluster: expected an object"),
        "{e:?}"
    );
    let e = errors_of(&json!({"standby_cluster": {"host": "h", "port": "x"}}));
    assert!(
        e[0].starts_with("standby_cluster.port: expected a port"),
        "{e:?}"
    );
}

#[test]
fn read_back_from_the_dcs_ignores_unknown_keys() {
    let (c, _) =
        DynamicConfig::from_dcs_json(&json!({"standby_cluster": {"host": "h", "other": 1}}))
            .unwrap();
    assert!(c.is_standby_cluster());
    assert_eq!(c.to_json()["standby_cluster"]["other"], json!(1));
}
