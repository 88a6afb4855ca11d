//! The configs the loader tests start from and the helpers that parse them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tempfile::TempDir;

use crate::*;

/// The member config from the Patroni contract reference, verbatim except that
/// `bin_dir` is replaced by `BIN_DIR` so the test does not depend on where PostgreSQL
/// is installed.
pub(super) const CONTRACT_EXAMPLE: &str = r#"
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
pub(super) fn fake_bin_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    let exe = dir.path().join("postgres");
    fs::write(&exe, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub(super) fn example(bin: &Path) -> String {
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

pub(super) fn assert_has(list: &[String], expected: &str) {
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
