//! Tests of the whole loader: YAML text in, `Config` or the full list of problems out.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use warden_consensus::dynamic_config::SynchronousMode;

use super::*;

/// The member config from the Patroni contract reference, verbatim except that
/// `bin_dir` is replaced by `BIN_DIR` so the test does not depend on where PostgreSQL
/// is installed.
const CONTRACT_EXAMPLE: &str = r#"
scope: demo
namespace: /service/
name: node1
log: {level: INFO}
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
etcd3:
  hosts: 127.0.0.1:2379
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters: {wal_level: replica, hot_standby: 'on', max_wal_senders: 10, max_replication_slots: 10, wal_log_hints: 'on'}
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/warden/node1/data
  bin_dir: BIN_DIR
  pgpass: /var/lib/warden/node1/pgpass
  authentication:
    superuser: {username: postgres, password: secret1}
    replication: {username: replicator, password: secret2}
    rewind: {username: rewind_user, password: secret3}
  parameters: {unix_socket_directories: /var/run/postgresql}
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 scram-sha-256
  - host all all 127.0.0.1/32 scram-sha-256
tags: {nofailover: false, noloadbalance: false, clonefrom: false, nosync: false}
"#;

/// Smallest valid config; tests append or replace lines.
pub(super) const MINIMAL: &str = r#"
scope: demo
name: node1
restapi:
  listen: 127.0.0.1:8008
etcd3:
  host: 127.0.0.1:2379
postgresql:
  listen: 127.0.0.1:5432
  data_dir: /nonexistent/warden/node1/data
  authentication:
    superuser: {username: postgres}
    replication: {username: replicator}
"#;

/// A directory holding an executable `postgres`, standing in for a bin_dir.
fn fake_bin_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    let exe = dir.path().join("postgres");
    fs::write(&exe, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn example(bin: &Path) -> String {
    CONTRACT_EXAMPLE.replace("BIN_DIR", bin.to_str().unwrap())
}

pub(super) fn ok(yaml: &str) -> Loaded {
    match parse(yaml) {
        Ok(loaded) => loaded,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

pub(super) fn problems(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(loaded) => panic!("expected problems, got {:?}", loaded.config),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn assert_has(list: &[String], expected: &str) {
    assert!(
        list.iter().any(|p| p == expected),
        "missing {expected:?} in:\n{}",
        list.join("\n")
    );
}

pub(super) fn assert_has_prefix(list: &[String], prefix: &str) {
    assert!(
        list.iter().any(|p| p.starts_with(prefix)),
        "nothing starts with {prefix:?} in:\n{}",
        list.join("\n")
    );
}

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

    let pg = &c.postgresql;
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
    assert_eq!(c.tags, Tags::default());
}

#[test]
fn minimal_config_gets_defaults() {
    let c = ok(MINIMAL).config;
    assert_eq!(c.namespace, "/service/");
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.restapi.connect_address.to_string(), "127.0.0.1:8008");
    assert_eq!(c.etcd3.hosts, vec!["127.0.0.1:2379"]);
    assert_eq!(c.bootstrap, BootstrapConfig::default());
    assert_eq!(c.postgresql.connect_address.to_string(), "127.0.0.1:5432");
    assert_eq!(c.postgresql.bin_dir, None);
    assert_eq!(
        c.postgresql.pgpass,
        PathBuf::from("/nonexistent/warden/node1/pgpass.node1")
    );
    assert!(c.postgresql.parameters.is_empty());
    assert_eq!(c.postgresql.authentication.superuser.password, None);
    assert_eq!(c.postgresql.authentication.rewind, None);
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
fn bad_ports_name_the_key() {
    let p = problems(&MINIMAL.replace("127.0.0.1:8008", "127.0.0.1:99999"));
    assert_eq!(
        p,
        vec!["restapi.listen: invalid port \"99999\" (expected 1-65535)"]
    );
    let p = problems(&MINIMAL.replace("listen: 127.0.0.1:5432", "listen: 127.0.0.1:0"));
    assert_eq!(
        p,
        vec!["postgresql.listen: invalid port \"0\" (expected 1-65535)"]
    );
    let p = problems(&MINIMAL.replace("127.0.0.1:2379", "127.0.0.1:70000"));
    assert_eq!(
        p,
        vec!["etcd3.host: invalid port \"70000\" (expected 1-65535)"]
    );
}

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
    assert_has(
        &loaded.warnings,
        "ctl: Patroni setting not implemented by Warden yet; ignored",
    );

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
  certfile: /etc/ssl/a.pem
  allowlist: [10.0.0.0/8]
etcd3:
  hosts: [127.0.0.1:2379]
  protocol: https
  username: root
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
    superuser: {username: postgres, sslmode: require}
    replication: {username: replicator}
tags: {replicatefrom: node2}
kubernetes: {namespace: x}
"#;
    let loaded = ok(yaml);
    let w = &loaded.warnings;
    for key in [
        "log.dir",
        "log.file_num",
        "log.traceback_level",
        "restapi.certfile",
        "restapi.allowlist",
        "etcd3.protocol",
        "etcd3.username",
        "bootstrap.method",
        "bootstrap.wal_e",
        "bootstrap.post_init",
        "bootstrap.dcs.standby_cluster",
        "bootstrap.dcs.slots",
        "bootstrap.dcs.postgresql.recovery_conf",
        "postgresql.create_replica_methods",
        "postgresql.wal_e",
        "postgresql.basebackup",
        "postgresql.pg_ctl_timeout",
        "postgresql.authentication.superuser.sslmode",
        "tags.replicatefrom",
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
    assert_eq!(c.log.level, "DEBUG");
    assert_eq!(c.bootstrap.dcs.primary_start_timeout, 60);
    assert!(c.bootstrap.dcs.is_standby_cluster());
    assert!(c.tags.other.is_empty(), "replicatefrom is not published");
}

#[test]
fn many_problems_are_reported_together() {
    let yaml = r#"
scope: a/b
name: ""
restapi: {listen: "127.0.0.1:99999", lisen: x}
etcd3: {hosts: "http://127.0.0.1:2379"}
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
        "etcd3.hosts: expected host:port without a scheme, got \"http://127.0.0.1:2379\"",
        "bootstrap.dcs.ttl: must be at least 3 seconds, got 1",
        "bootstrap.dcs.tll: unknown key (not a Patroni or Warden setting); did you mean \"ttl\"?",
        "postgresql.data_dir: must be an absolute path, got \"relative/data\"",
        "tags.failover_priority: must be a non-negative integer, got -1",
    ] {
        assert_has(&p, expected);
    }
    assert_eq!(p.len(), 9, "{p:#?}");
    let text = err.to_string();
    assert!(
        text.starts_with("invalid configuration (9 problems):\n  - "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 10);
}

#[test]
fn initdb_forms() {
    let with = |items: &str| format!("{MINIMAL}bootstrap:\n  initdb: {items}\n");
    let c = ok(&with(
        "[data-checksums, {encoding: UTF8}, {locale: C, wal-segsize: 64}]",
    ))
    .config;
    let args: Vec<String> = c
        .bootstrap
        .initdb
        .iter()
        .map(InitdbOption::to_arg)
        .collect();
    assert_eq!(
        args,
        vec![
            "--data-checksums",
            "--encoding=UTF8",
            "--locale=C",
            "--wal-segsize=64"
        ]
    );

    let p = problems(&with(
        "[--data-checksums, pgdata: /x, {auth: [a]}, 5, 'a b']",
    ));
    assert_eq!(
        p,
        vec![
            "bootstrap.initdb[0]: write the option without leading dashes (\"data-checksums\")",
            "bootstrap.initdb[1].pgdata: \"pgdata\" is set by Warden and cannot be given",
            "bootstrap.initdb[2].auth: expected a string or number, got [\"a\"]",
            "bootstrap.initdb[3]: expected an option name or a one-key mapping, got 5",
            "bootstrap.initdb[4]: invalid initdb option name \"a b\"",
        ]
    );
    let p = problems(&with("data-checksums"));
    assert_has_prefix(&p, "bootstrap.initdb: expected a list");
}

#[test]
fn parameters_are_stringified_like_postgresql() {
    let yaml = MINIMAL.replace(
        "  data_dir:",
        "  parameters: {hot_standby: true, fsync: false, max_connections: 100, \
         checkpoint_completion_target: 0.9, wal_level: replica, work_mem: 4MB, \
         shared_buffers: '128MB', port: 5432}\n  data_dir:",
    );
    let c = ok(&yaml).config;
    let params = &c.postgresql.parameters;
    assert_eq!(params["hot_standby"], "on");
    assert_eq!(params["fsync"], "off");
    assert_eq!(params["max_connections"], "100");
    assert_eq!(params["checkpoint_completion_target"], "0.9");
    assert_eq!(params["wal_level"], "replica");
    assert_eq!(params["work_mem"], "4MB");
    assert_eq!(params["shared_buffers"], "128MB");

    let bad = MINIMAL.replace(
        "  data_dir:",
        "  parameters: {a: [1], b: null, c: {d: 1}}\n  data_dir:",
    );
    assert_eq!(
        problems(&bad),
        vec![
            "postgresql.parameters.a: expected a string, number or boolean, got [1]",
            "postgresql.parameters.b: missing value",
            "postgresql.parameters.c: expected a string, number or boolean, got {\"d\":1}",
        ]
    );
}

#[test]
fn etcd_host_forms() {
    let hosts = |etcd: &str| {
        let yaml = MINIMAL.replace("etcd3:\n  host: 127.0.0.1:2379", etcd);
        ok(&yaml).config.etcd3.hosts
    };
    let three = vec!["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"];
    assert_eq!(
        hosts("etcd3:\n  hosts: [10.0.0.1:2379, '10.0.0.2:2379', 10.0.0.3]"),
        three
    );
    assert_eq!(
        hosts("etcd3:\n  hosts: 10.0.0.1:2379, 10.0.0.2:2379,10.0.0.3:2379"),
        three
    );
    assert_eq!(
        hosts("etcd3: {host: 'etcd.local'}"),
        vec!["etcd.local:2379"]
    );

    let yaml = MINIMAL.replace(
        "etcd3:\n  host: 127.0.0.1:2379",
        "etcd3: {host: 10.0.0.9:2379, hosts: [10.0.0.1:2379]}",
    );
    let loaded = ok(&yaml);
    assert_eq!(loaded.config.etcd3.hosts, vec!["10.0.0.1:2379"]);
    assert_has(
        &loaded.warnings,
        "etcd3.host: ignored because etcd3.hosts is set",
    );

    let p = problems(&MINIMAL.replace("host: 127.0.0.1:2379", "hosts: []"));
    assert_eq!(p, vec!["etcd3.hosts: must list at least one host"]);
    let p = problems(&MINIMAL.replace("host: 127.0.0.1:2379", "hosts: [ok:1, 'bad:port']"));
    assert_eq!(
        p,
        vec!["etcd3.hosts[1]: invalid port \"port\" (expected 1-65535)"]
    );
    let p = problems(&MINIMAL.replace("etcd3:\n  host: 127.0.0.1:2379", "etcd: {host: x}"));
    assert_has(
        &p,
        "etcd3: missing required key (Warden keeps cluster state in etcd v3 only)",
    );
}

#[test]
fn ipv6_addresses() {
    let yaml = MINIMAL
        .replace("listen: 127.0.0.1:8008", "listen: '[::1]:8008'")
        .replace("listen: 127.0.0.1:5432", "listen: '::1:5432'");
    let c = ok(&yaml).config;
    assert_eq!(c.restapi.listen, "[::1]:8008".parse().unwrap());
    assert_eq!(c.restapi.connect_address.host, "::1");
    assert_eq!(c.restapi.connect_address.to_string(), "[::1]:8008");
    assert_eq!(c.postgresql.listen_hosts, vec!["::1"]);
    assert_eq!(c.postgresql.connect_address.to_string(), "[::1]:5432");

    let yaml = MINIMAL.replace(
        "  data_dir:",
        "  connect_address: '[fd00::5]:5433'\n  data_dir:",
    );
    let hp = ok(&yaml).config.postgresql.connect_address;
    assert_eq!((hp.host.as_str(), hp.port), ("fd00::5", 5433));
    assert_eq!(hp.to_string(), "[fd00::5]:5433");
}

#[test]
fn wildcard_listen_needs_a_connect_address() {
    let yaml = MINIMAL
        .replace("listen: 127.0.0.1:8008", "listen: ':8008'")
        .replace("listen: 127.0.0.1:5432", "listen: '*:5432'");
    let p = problems(&yaml);
    assert_has_prefix(&p, "restapi.connect_address: missing required key");
    assert_has_prefix(&p, "postgresql.connect_address: missing required key");

    let yaml = yaml
        .replace(
            "  listen: ':8008'",
            "  listen: ':8008'\n  connect_address: 10.0.0.1:8008",
        )
        .replace(
            "  listen: '*:5432'",
            "  listen: '*:5432'\n  connect_address: 10.0.0.1:5432",
        );
    let c = ok(&yaml).config;
    assert_eq!(c.restapi.listen, "0.0.0.0:8008".parse().unwrap());
    assert_eq!(c.postgresql.listen_hosts, vec!["*"]);
    assert_eq!(c.postgresql.connect_address.to_string(), "10.0.0.1:5432");

    let p = problems(&MINIMAL.replace(
        "  data_dir:",
        "  connect_address: 0.0.0.0:5432\n  data_dir:",
    ));
    assert_has_prefix(&p, "postgresql.connect_address: host 0.0.0.0 is a wildcard");
    // Several listen hosts: no single default.
    let p = problems(&MINIMAL.replace("listen: 127.0.0.1:5432", "listen: 127.0.0.1,10.0.0.1:5432"));
    assert_has_prefix(&p, "postgresql.connect_address: missing required key");
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
fn paths_are_checked() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("data");
    fs::write(&file, "not a directory").unwrap();
    let yaml = MINIMAL.replace("/nonexistent/warden/node1/data", file.to_str().unwrap());
    assert_eq!(
        problems(&yaml),
        vec![format!(
            "postgresql.data_dir: \"{}\" exists and is not a directory",
            file.display()
        )]
    );
    // An existing directory is fine.
    let yaml = MINIMAL.replace(
        "/nonexistent/warden/node1/data",
        dir.path().to_str().unwrap(),
    );
    ok(&yaml);

    let empty_bin = TempDir::new().unwrap();
    let yaml = MINIMAL.replace(
        "  data_dir:",
        &format!("  bin_dir: {}\n  data_dir:", empty_bin.path().display()),
    );
    assert_eq!(
        problems(&yaml),
        vec![format!(
            "postgresql.bin_dir: no executable \"postgres\" in \"{}\"",
            empty_bin.path().display()
        )]
    );
    let yaml = MINIMAL.replace("  data_dir:", "  bin_dir: /nonexistent/bin\n  data_dir:");
    assert_eq!(
        problems(&yaml),
        vec!["postgresql.bin_dir: no executable \"postgres\" in \"/nonexistent/bin\" (no such directory)"]
    );
    // Patroni: an empty bin_dir means "use PATH".
    let yaml = MINIMAL.replace("  data_dir:", "  bin_dir: ''\n  data_dir:");
    assert_eq!(ok(&yaml).config.postgresql.bin_dir, None);

    let yaml = MINIMAL.replace(
        "  data_dir:",
        &format!("  pgpass: {}\n  data_dir:", dir.path().display()),
    );
    assert_has_prefix(&problems(&yaml), "postgresql.pgpass: ");
}

#[test]
fn dcs_problems_are_prefixed() {
    let yaml = format!(
        "{MINIMAL}bootstrap:\n  dcs:\n    ttl: 20\n    loop_wait: 5\n    synchronous_mode: quorum\n    postgresql: {{use_slot: true, pg_hba: [1]}}\n"
    );
    let p = problems(&yaml);
    assert_eq!(
        p,
        vec![
            "bootstrap.dcs.postgresql.use_slot: unknown key (not a Patroni or Warden setting); did you mean \"use_slots\"?",
            "bootstrap.dcs.ttl: loop_wait + 2*retry_timeout (5 + 2*10 = 25) must not exceed ttl (20); lower loop_wait or retry_timeout, or raise ttl",
            "bootstrap.dcs.postgresql.pg_hba[0]: expected a string, got 1",
        ]
    );
    let yaml =
        format!("{MINIMAL}bootstrap:\n  dcs:\n    synchronous_mode: quorum\n    pause: true\n");
    let dcs = ok(&yaml).config.bootstrap.dcs;
    assert_eq!(dcs.synchronous_mode, SynchronousMode::Quorum);
    assert!(dcs.pause);
    assert_eq!(
        problems(&format!("{MINIMAL}bootstrap:\n  dcs: [ttl]\n")),
        vec!["bootstrap.dcs: expected a mapping, got [\"ttl\"]"]
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
    assert_has_prefix(
        &loaded.warnings,
        "log.format: Patroni setting not implemented",
    );
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
    let rewind = ok(&yaml).config.postgresql.authentication.rewind.unwrap();
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
fn callbacks_and_pre_promote() {
    let yaml = format!(
        "{MINIMAL}  callbacks: {{on_start: /bin/cb, on_role_change: '/usr/bin/cb --x'}}\n  pre_promote: /bin/check\n"
    );
    let pg = ok(&yaml).config.postgresql;
    assert_eq!(
        pg.callbacks.get("on_start").map(String::as_str),
        Some("/bin/cb")
    );
    assert_eq!(
        pg.callbacks.get("on_role_change").map(String::as_str),
        Some("/usr/bin/cb --x")
    );
    assert_eq!(pg.pre_promote.as_deref(), Some("/bin/check"));
    let p = problems(&format!("{MINIMAL}  callbacks: {{on_strat: /bin/cb}}\n"));
    assert_has_prefix(&p, "postgresql.callbacks.on_strat: unknown callback event");
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
        (WatchdogMode::Required, Some("/dev/wd1"), 3)
    );
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

fn with_backup(section: &str) -> String {
    format!("{MINIMAL}backup:\n{section}")
}

#[test]
fn no_backup_section_means_no_backup() {
    assert_eq!(ok(MINIMAL).config.backup, None);
}

#[test]
fn backup_filesystem_defaults() {
    let loaded = ok(&with_backup(
        "  repository: {type: filesystem, path: /var/lib/warden-repo}\n",
    ));
    let b = loaded.config.backup.unwrap();
    assert_eq!(
        b.repository.kind,
        RepositoryKind::Filesystem {
            path: PathBuf::from("/var/lib/warden-repo")
        }
    );
    assert_eq!(b.repository.timeout, std::time::Duration::from_secs(60));
    assert_eq!(b.compression_level, 3);
    assert_eq!(b.encryption_key_file, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn backup_s3_settings_and_secret_is_not_in_debug_output() {
    let loaded = ok(&with_backup(
        r#"  repository:
    type: s3
    bucket: pg
    endpoint: http://127.0.0.1:9000
    allow_http: true
    region: us-east-1
    prefix: /prod/eu/
    access_key_id: AKID
    secret_access_key: very-secret-value
    timeout: 5s
  encryption_key_file: /etc/warden/backup.key
  compression_level: 9
"#,
    ));
    let b = loaded.config.backup.clone().unwrap();
    let RepositoryKind::S3(s3) = &b.repository.kind else {
        panic!("{:?}", b.repository)
    };
    assert_eq!(s3.prefix, "prod/eu");
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(b.repository.timeout, std::time::Duration::from_secs(5));
    assert_eq!(b.compression_level, 9);
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains("very-secret-value"), "{debug}");
}

#[test]
fn backup_problems_name_their_keys() {
    let list = problems(&with_backup(
        r#"  repository: {type: s3, bucket: pg, endpoint: 'http://h:1', path: /x, timeout: soon}
  encryption_key_file: relative.key
  compression_level: 40
  retention_days: 3
"#,
    ));
    assert_has_prefix(&list, "backup.repository.endpoint: is plain http://");
    assert_has(
        &list,
        "backup.repository.path: not a setting of a repository of type \"s3\"",
    );
    assert_has_prefix(&list, "backup.repository.timeout: expected a duration");
    assert_has_prefix(
        &list,
        "backup.encryption_key_file: must be an absolute path",
    );
    assert_has(
        &list,
        "backup.compression_level: must be a zstd level from 1 to 19, got 40",
    );
    assert_has_prefix(&list, "backup.retention_days: unknown key");

    let list = problems(&with_backup("  repository: {type: tape}\n"));
    assert_has(
        &list,
        "backup.repository.type: expected \"filesystem\" or \"s3\", got \"tape\"",
    );
    let list = problems(&with_backup("  compression_level: 3\n"));
    assert_has(&list, "backup.repository: missing required key");
    let list = problems(&with_backup("  repository: {type: filesystem}\n"));
    assert_has(&list, "backup.repository.path: missing required key");
    let list = problems(&with_backup(
        "  repository: {type: s3, bucket: b, access_key_id: x}\n",
    ));
    assert_has_prefix(
        &list,
        "backup.repository: set both access_key_id and secret_access_key",
    );
}
