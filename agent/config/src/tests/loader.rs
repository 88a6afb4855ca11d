//! Whole documents: the reference example, defaults, missing sections, every problem
//! reported at once, YAML errors, files, and passwords kept out of debug output.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::fixtures::*;
use crate::*;

#[test]
fn contract_example_parses_without_warnings() {
    let bin = fake_bin_dir();
    let loaded = ok(&example(bin.path()));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.scope, "demo");
    assert_eq!(c.namespace, "/service/");
    assert_eq!(c.name, "node1");
    assert_eq!(c.log.level, "INFO");
    assert!(!c.log.json);
    assert_eq!(c.restapi.listen, "127.0.0.1:8008".parse().unwrap());
    assert_eq!(c.restapi.connect_address.to_string(), "127.0.0.1:8008");
    assert_eq!(c.restapi.authentication, None);
    assert_eq!(c.etcd3.hosts, vec!["127.0.0.1:2379"]);

    let dcs = &c.bootstrap.dcs;
    assert_eq!((dcs.ttl, dcs.loop_wait, dcs.retry_timeout), (30, 10, 10));
    assert_eq!(dcs.maximum_lag_on_failover, 1_048_576);
    assert!(dcs.postgresql.use_pg_rewind && dcs.postgresql.use_slots);
    assert_eq!(
        dcs.postgresql.parameters["max_wal_senders"],
        serde_json::json!(10)
    );
    assert_eq!(
        dcs.postgresql.parameters["hot_standby"],
        serde_json::json!("on")
    );
    let args: Vec<String> = c
        .bootstrap
        .initdb
        .iter()
        .map(InitdbOption::to_arg)
        .collect();
    assert_eq!(args, vec!["--encoding=UTF8", "--data-checksums"]);

    let pg = c.postgresql().unwrap();
    assert_eq!(pg.listen_hosts, vec!["127.0.0.1"]);
    assert_eq!(pg.port, 5432);
    assert_eq!(pg.connect_address.to_string(), "127.0.0.1:5432");
    assert_eq!(pg.data_dir, PathBuf::from("/var/lib/warden/node1/data"));
    assert_eq!(pg.bin_dir.as_deref(), Some(bin.path()));
    assert_eq!(pg.pgpass, PathBuf::from("/var/lib/warden/node1/pgpass"));
    assert_eq!(pg.authentication.superuser.username, "postgres");
    assert_eq!(
        pg.authentication.superuser.password.as_deref(),
        Some("secret1")
    );
    assert_eq!(pg.authentication.replication.username, "replicator");
    let rewind = pg.authentication.rewind.as_ref().unwrap();
    assert_eq!(rewind.username, "rewind_user");
    assert_eq!(
        pg.parameters["unix_socket_directories"],
        "/var/run/postgresql"
    );
    assert_eq!(pg.pg_hba.len(), 3);
    assert!(!pg.use_unix_socket);
    assert_eq!(pg.use_pg_rewind, None);
    // The example's tags are all false: nothing is published.
    assert!(c.tags.to_member_json().is_empty(), "{:?}", c.tags);
    assert!(c.tags.can_failover());
}

#[test]
fn minimal_config_gets_defaults() {
    let c = ok(MINIMAL).config;
    assert_eq!(c.namespace, "/service/");
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.restapi.connect_address.to_string(), "127.0.0.1:8008");
    assert_eq!(c.etcd3.hosts, vec!["127.0.0.1:2379"]);
    assert_eq!(c.bootstrap, BootstrapConfig::default());
    assert_eq!(
        c.postgresql().unwrap().connect_address.to_string(),
        "127.0.0.1:5432"
    );
    assert_eq!(c.postgresql().unwrap().bin_dir, None);
    assert_eq!(
        c.postgresql().unwrap().pgpass,
        PathBuf::from("/nonexistent/warden/node1/pgpass.node1")
    );
    assert!(c.postgresql().unwrap().parameters.is_empty());
    assert_eq!(
        c.postgresql().unwrap().authentication.superuser.password,
        None
    );
    assert_eq!(c.postgresql().unwrap().authentication.rewind, None);
}

#[test]
fn empty_document_reports_every_missing_section() {
    for text in ["", "---\n", "{}"] {
        let p = problems(text);
        assert_eq!(
            p,
            vec![
                "scope: missing required key",
                "name: missing required key",
                "restapi: missing required key",
                "etcd3: missing required key (Warden keeps cluster state in etcd v3 only)",
                "postgresql: missing required key",
            ],
            "for {text:?}"
        );
    }
}

#[test]
fn missing_nested_required_keys() {
    let yaml = r#"
scope: demo
name: n1
restapi: {}
etcd3: {}
postgresql:
  authentication:
    superuser: {password: x}
"#;
    let p = problems(yaml);
    for expected in [
        "restapi.listen: missing required key",
        "etcd3.hosts: missing required key (give etcd3.hosts or etcd3.host)",
        "postgresql.listen: missing required key",
        "postgresql.data_dir: missing required key",
        "postgresql.authentication.superuser.username: missing required key",
        "postgresql.authentication.replication: missing required key",
    ] {
        assert_has(&p, expected);
    }
}

#[test]
fn many_problems_are_reported_together() {
    let yaml = r#"
scope: a/b
name: ""
restapi: {listen: "127.0.0.1:99999", lisen: x}
etcd3: {hosts: "gopher://127.0.0.1:2379"}
bootstrap:
  dcs: {ttl: 1, tll: 5}
postgresql:
  listen: 127.0.0.1:5432
  data_dir: relative/data
  authentication:
    superuser: {username: postgres}
    replication: {username: replicator}
tags: {failover_priority: -1}
"#;
    let err = parse(yaml).unwrap_err();
    let p: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    for expected in [
        "scope: must not contain '/', got \"a/b\"",
        "name: must not be empty",
        "restapi.listen: invalid port \"99999\" (expected 1-65535)",
        "restapi.lisen: unknown key (not a Patroni or Warden setting); did you mean \"listen\"?",
        "etcd3.hosts: unknown scheme \"gopher\" in \"gopher://127.0.0.1:2379\" (expected http or https)",
        "bootstrap.dcs.tll: unknown key (not a Patroni or Warden setting); did you mean \"ttl\"?",
        "postgresql.data_dir: must be an absolute path, got \"relative/data\"",
        "tags.failover_priority: must be a non-negative integer, got -1",
    ] {
        assert_has(&p, expected);
    }
    assert_eq!(p.len(), 8, "{p:#?}");
    let text = err.to_string();
    assert!(
        text.starts_with("invalid configuration (8 problems):\n  - "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 9);
}

#[test]
fn yaml_errors_and_merge_keys() {
    let err = parse("scope: [unclosed").unwrap_err();
    assert_eq!(err.problems().len(), 1);
    assert_eq!(err.problems()[0].key, "(yaml)");
    assert_eq!(
        problems("- a\n- b\n"),
        vec!["(root): expected a mapping of settings, got [\"a\",\"b\"]"]
    );
    let yaml = MINIMAL.replace(
        "    superuser: {username: postgres}",
        "    superuser: &su {username: postgres, password: s}\n    rewind:\n      <<: *su\n      username: rewinder",
    );
    let rewind = ok(&yaml)
        .config
        .postgresql()
        .unwrap()
        .authentication
        .rewind
        .clone()
        .unwrap();
    assert_eq!(rewind.username, "rewinder");
    assert_eq!(rewind.password.as_deref(), Some("s"));
}

#[test]
fn load_names_the_file() {
    let missing = Path::new("/nonexistent/warden.yml");
    let err = load(missing).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/warden.yml"), "{err}");

    let dir = TempDir::new().unwrap();
    let path = dir.path().join("warden.yml");
    fs::write(&path, MINIMAL).unwrap();
    assert_eq!(load(&path).unwrap().config.name, "node1");
    fs::write(&path, "scope: demo\n").unwrap();
    let text = load(&path).unwrap_err().to_string();
    assert!(
        text.starts_with(&format!("invalid configuration in {} (", path.display())),
        "{text}"
    );
}

#[test]
fn debug_output_never_shows_passwords() {
    let bin = fake_bin_dir();
    let yaml = example(bin.path()).replace(
        "  connect_address: 127.0.0.1:8008",
        "  connect_address: 127.0.0.1:8008\n  authentication: {username: admin, password: apisecret}",
    );
    let loaded = ok(&yaml);
    let text = format!("{loaded:?}");
    for secret in ["secret1", "secret2", "secret3", "apisecret"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    assert!(text.contains("<redacted>"));
    let auth = loaded.config.restapi.authentication.unwrap();
    assert_eq!(auth.password.as_deref(), Some("apisecret"));
}
