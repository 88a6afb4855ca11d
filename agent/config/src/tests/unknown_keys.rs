//! Keys Warden does not know: typos are errors, Patroni's own settings warnings.

use super::fixtures::*;

#[test]
fn typo_is_an_error_and_patroni_key_is_a_warning() {
    let yaml = MINIMAL.replace(
        "  listen: 127.0.0.1:8008",
        "  listen: 127.0.0.1:8008\n  lisen: x",
    );
    assert_eq!(
        problems(&yaml),
        vec!["restapi.lisen: unknown key (not a Patroni or Warden setting); did you mean \"listen\"?"]
    );

    let yaml = format!("{MINIMAL}  before_stop: /bin/true\nctl: {{insecure: true}}\n");
    let loaded = ok(&yaml);
    assert_has_prefix(
        &loaded.warnings,
        "postgresql.before_stop: Patroni setting not implemented by Warden yet",
    );
    // `ctl` is read (its TLS keys are the members' REST client side).
    assert!(
        !loaded.warnings.iter().any(|w| w.starts_with("ctl")),
        "{:?}",
        loaded.warnings
    );
    assert!(loaded.config.restapi.client.insecure);

    // A top-level key nobody knows, with and without a close match.
    let p = problems(&format!("{MINIMAL}tag: {{a: 1}}\nfrobnicate: 1\n"));
    assert_has(
        &p,
        "tag: unknown key (not a Patroni or Warden setting); did you mean \"tags\"?",
    );
    assert_has(
        &p,
        "frobnicate: unknown key (not a Patroni or Warden setting)",
    );
}

#[test]
fn patroni_settings_in_every_section_are_warnings() {
    let yaml = r#"
scope: demo
name: node1
log: {level: debug, dir: /var/log/patroni, file_num: 4, traceback_level: ERROR}
restapi:
  listen: 127.0.0.1:8008
  request_queue_size: 5
etcd3:
  hosts: [127.0.0.1:2379]
  protocol: http
  use_proxies: false
bootstrap:
  method: wal_e
  wal_e: {command: /bin/restore}
  post_init: /bin/true
  dcs:
    standby_cluster: {host: 10.0.0.9, port: 5432}
    slots: {s1: {type: physical}}
    master_start_timeout: 60
    postgresql:
      recovery_conf: {restore_command: cp}
postgresql:
  listen: 127.0.0.1:5432
  data_dir: /nonexistent/warden/data
  create_replica_methods: [wal_e, basebackup]
  wal_e: {command: /bin/clone}
  basebackup: {max-rate: 100M}
  pg_ctl_timeout: 60
  authentication:
    superuser: {username: postgres, sslmode: prefer, gssencmode: null}
    replication: {username: replicator}
tags: {replicatefrom: node2}
kubernetes: {namespace: x}
"#;
    let loaded = ok(yaml);
    let w = &loaded.warnings;
    for key in [
        "restapi.request_queue_size",
        "etcd3.use_proxies",
        "postgresql.basebackup",
        "postgresql.pg_ctl_timeout",
        "kubernetes",
    ] {
        assert_has_prefix(
            w,
            &format!("{key}: Patroni setting not implemented by Warden yet"),
        );
    }
    assert_has(
        w,
        "bootstrap.dcs.master_start_timeout: legacy Patroni name; prefer primary_start_timeout",
    );
    let c = loaded.config;
    // Custom methods are implemented: parsed, no warning.
    for key in [
        "bootstrap.method",
        "bootstrap.wal_e",
        "bootstrap.post_init",
        "postgresql.wal_e",
    ] {
        assert!(!w.iter().any(|l| l.starts_with(key)), "{key}: {w:?}");
    }
    assert_eq!(c.bootstrap.custom.as_ref().unwrap().command, "/bin/restore");
    assert_eq!(c.bootstrap.post_bootstrap.as_deref(), Some("/bin/true"));
    assert_eq!(
        c.postgresql().unwrap().create_replica_methods[0].name(),
        "wal_e"
    );
    assert_eq!(c.log.level, "DEBUG");
    assert_eq!(c.bootstrap.dcs.primary_start_timeout, 60);
    // Standby clusters are implemented: typed, no warning.
    assert!(c.bootstrap.dcs.is_standby_cluster());
    assert!(!w.iter().any(|l| l.contains("standby_cluster")), "{w:?}");
    assert_eq!(c.tags.replicatefrom.as_deref(), Some("node2"));
    assert_eq!(
        c.tags.to_member_json().get("replicatefrom"),
        Some(&serde_json::json!("node2"))
    );
}

/// Where a config asks for TLS or authentication Warden cannot give yet, it refuses to
/// start rather than run in plain text (each key named).
#[test]
fn security_settings_warden_cannot_honour_are_errors() {
    let yaml = r#"
scope: demo
name: node1
restapi:
  listen: 127.0.0.1:8008
  ciphers: HIGH
etcd3:
  hosts: [127.0.0.1:2379]
  protocol: https
  verify: false
  key_password: secret
postgresql:
  listen: 127.0.0.1:5432
  data_dir: /nonexistent/warden/data
  authentication:
    superuser: {username: postgres, sslpassword: secret}
    replication: {username: replicator}
"#;
    let p = problems(yaml);
    for key in [
        "restapi.ciphers",
        "etcd3.verify",
        "etcd3.key_password",
        "postgresql.authentication.superuser.sslpassword",
    ] {
        assert_has_prefix(&p, &format!("{key}: cannot be honoured: "));
    }
    assert_eq!(p.len(), 4, "{p:#?}");
}
