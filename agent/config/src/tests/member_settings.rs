//! The member's own settings: names, namespace, tags, logging and the watchdog.

use super::fixtures::*;
use crate::*;

#[test]
fn namespace_is_normalised() {
    for (given, expected) in [
        ("service", "/service/"),
        ("/service", "/service/"),
        ("/service/", "/service/"),
        ("/a//b/", "/a/b/"),
        ("/", "/"),
        ("''", "/"),
    ] {
        let c = ok(&format!("{MINIMAL}namespace: {given}\n")).config;
        assert_eq!(c.namespace, expected, "for {given}");
    }
}

#[test]
fn names_are_validated() {
    let p = problems(&MINIMAL.replace("name: node1", "name: '   '"));
    assert_eq!(p, vec!["name: must not be empty"]);
    let p = problems(&MINIMAL.replace("scope: demo", "scope: [a]"));
    assert_eq!(p, vec!["scope: expected a string, got [\"a\"]"]);
    // Numbers are names too, as in Patroni.
    assert_eq!(
        ok(&MINIMAL.replace("name: node1", "name: 7")).config.name,
        "7"
    );
}

#[test]
fn tags() {
    let yaml = format!(
        "{MINIMAL}tags: {{nofailover: yes, nosync: 'on', nostream: true, failover_priority: '2', zone: eu-1, weight: 1.5}}\n"
    );
    let loaded = ok(&yaml);
    let t = &loaded.config.tags;
    assert!(t.nofailover && t.nosync && t.nostream && !t.clonefrom && !t.noloadbalance);
    assert_eq!(t.failover_priority, Some(2));
    assert_eq!(t.other["zone"], serde_json::json!("eu-1"));
    assert_eq!(t.other["weight"], serde_json::json!(1.5));
    assert!(!t.can_failover());
    assert_has_prefix(
        &loaded.warnings,
        "tags: conflicting configuration between nofailover: true and failover_priority: 2",
    );

    let loaded = ok(&format!(
        "{MINIMAL}tags: {{nofailover: false, failover_priority: 0}}\n"
    ));
    assert!(!loaded.config.tags.can_failover());
    assert_has_prefix(
        &loaded.warnings,
        "tags: conflicting configuration between nofailover: false and failover_priority: 0",
    );

    // Published as written, with the type given (Patroni's member key); off flags
    // left out except nofailover beside a failover_priority.
    let loaded = ok(&format!(
        "{MINIMAL}tags: {{nofailover: 'false', failover_priority: '0', noloadbalance: 1, clonefrom: 'no', nosync: 'yes', sync_priority: '3'}}\n"
    ));
    let t = &loaded.config.tags;
    assert!(!t.can_failover() && t.noloadbalance && !t.clonefrom && t.nosync);
    assert_eq!(
        serde_json::Value::Object(t.to_member_json()),
        serde_json::json!({"nofailover": "false", "failover_priority": "0",
                           "noloadbalance": 1, "nosync": "yes", "sync_priority": "3"})
    );
    let p = problems(&format!(
        "{MINIMAL}tags: {{nofailover: perhaps, failover_priority: x}}\n"
    ));
    assert_eq!(
        p,
        vec![
            "tags.nofailover: expected a boolean (true or false), got \"perhaps\"",
            "tags.failover_priority: expected an integer, got \"x\"",
        ]
    );
}

#[test]
fn log_settings() {
    let c = ok(&format!(
        "{MINIMAL}log: {{level: warn, type: JSON, format: '%(message)s'}}\n"
    ))
    .config;
    assert_eq!(c.log.level, "WARNING");
    assert!(c.log.json);
    assert_eq!(c.log.format.as_deref(), Some("%(message)s"));
    assert_eq!(
        problems(&format!("{MINIMAL}log: {{level: LOUD, type: xml}}\n")),
        vec![
            "log.level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got \"LOUD\"",
            "log.type: expected \"plain\" or \"json\", got \"xml\"",
        ]
    );
    let loaded = ok(&format!(
        "{MINIMAL}log: {{type: json, format: [message, levelname]}}\n"
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let fields = loaded.config.log.json_fields.unwrap();
    assert_eq!(fields[1], ("levelname".to_owned(), "levelname".to_owned()));
}

#[test]
fn watchdog_section() {
    let c = ok(MINIMAL).config.watchdog;
    assert_eq!(c.mode, WatchdogMode::Automatic);
    let c = ok(&format!(
        "{MINIMAL}watchdog: {{mode: required, device: /dev/wd1, safety_margin: 3}}\n"
    ))
    .config
    .watchdog;
    assert_eq!(
        (c.mode, c.device.to_str(), c.safety_margin),
        (WatchdogMode::Required, Some("/dev/wd1"), Some(3))
    );
    let c = ok(&format!("{MINIMAL}watchdog: {{safety_margin: -1}}\n"))
        .config
        .watchdog;
    assert_eq!(c.safety_margin, None, "Patroni's -1: half the ttl");
    assert_eq!(
        ok(&format!("{MINIMAL}watchdog: {{mode: off}}\n"))
            .config
            .watchdog
            .mode,
        WatchdogMode::Off
    );
    let p = problems(&format!("{MINIMAL}watchdog: {{mode: sometimes}}\n"));
    assert_has_prefix(&p, "watchdog.mode: expected off, automatic or required");
}
