//! `bootstrap.method: warden_restore` and its section.

use super::fixtures::{assert_has_prefix, ok, problems, MINIMAL};
use warden_pg::lsn::Lsn;
use warden_pg::target::Target;

#[test]
fn restore_method_defaults_to_latest_and_all_wal() {
    let loaded = ok(&format!("{MINIMAL}bootstrap:\n  method: warden_restore\n"));
    let r = loaded.config.bootstrap.restore.unwrap();
    assert_eq!(r.backup, "latest");
    assert_eq!(r.target, Target::Latest);
    assert_eq!(r.system_identifier, None);
    assert!(
        !loaded
            .warnings
            .iter()
            .any(|w| w.contains("bootstrap.method")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn restore_method_section() {
    let c = ok(&format!(
        "{MINIMAL}bootstrap:\n  method: warden_restore\n  warden_restore:\n    backup: \
         20261202T120000Z\n    target_lsn: 0/3000060\n    system_identifier: 7312345678901234567\n"
    ))
    .config;
    let r = c.bootstrap.restore.unwrap();
    assert_eq!(r.backup, "20261202T120000Z");
    assert_eq!(r.target, Target::Lsn(Lsn(0x300_0060)));
    assert_eq!(r.system_identifier, Some(7_312_345_678_901_234_567));
    // initdb stays the default.
    assert_eq!(ok(MINIMAL).config.bootstrap.restore, None);
}

#[test]
fn restore_method_problems_are_named() {
    let p = problems(&format!(
        "{MINIMAL}bootstrap:\n  method: warden_restore\n  warden_restore:\n    target_time: \
         soon\n"
    ));
    assert!(
        p.iter()
            .any(|e| e.contains("bootstrap.warden_restore") && e.contains("target_time")),
        "{p:?}"
    );
    let p = problems(&format!(
        "{MINIMAL}bootstrap:\n  method: warden_restore\n  warden_restore:\n    immediate: true\n    \
         target_name: x\n"
    ));
    assert!(p.iter().any(|e| e.contains("conflicting")), "{p:?}");
    let p = problems(&format!(
        "{MINIMAL}bootstrap:\n  method: warden_restore\n  warden_restore:\n    bakup: latest\n"
    ));
    assert!(p.iter().any(|e| e.contains("bakup")), "{p:?}");
}

#[test]
fn create_replica_methods() {
    use crate::ReplicaMethod;
    let with = |methods: &str| {
        ok(&MINIMAL.replace(
            "postgresql:\n",
            &format!("postgresql:\n  create_replica_methods: {methods}\n"),
        ))
    };
    let loaded = with("[warden_restore, basebackup]");
    assert_eq!(
        loaded.config.postgresql().unwrap().create_replica_methods,
        vec![ReplicaMethod::WardenRestore, ReplicaMethod::Basebackup]
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // A custom method: the section named after it configures it (absent: the name is
    // the command).
    let loaded = with("[wal_e, basebackup]");
    let methods = &loaded.config.postgresql().unwrap().create_replica_methods;
    assert_eq!(methods.len(), 2);
    assert_eq!(methods[1], ReplicaMethod::Basebackup);
    let ReplicaMethod::Custom(m) = &methods[0] else {
        panic!("{methods:?}")
    };
    assert_eq!((m.name.as_str(), m.command.as_str()), ("wal_e", "wal_e"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let loaded = ok(&MINIMAL.replace(
        "postgresql:\n",
        "postgresql:\n  create_replica_method: [clone]\n  clone: {command: '/usr/bin/clone.sh --fast', keep_data: true, threads: 4}\n",
    ));
    let ReplicaMethod::Custom(m) = &loaded.config.postgresql().unwrap().create_replica_methods[0]
    else {
        panic!()
    };
    assert_eq!(m.command, "/usr/bin/clone.sh --fast");
    assert!(m.keep_data && !m.no_leader && !m.no_params);
    assert_eq!(
        m.options,
        vec![
            ("keep_data".to_string(), "True".to_string()),
            ("threads".into(), "4".into())
        ]
    );
    let p = problems(&MINIMAL.replace(
        "postgresql:\n",
        "postgresql:\n  create_replica_methods: [clone]\n  clone: {command: \"'unbalanced\"}\n",
    ));
    assert_has_prefix(&p, "postgresql.clone.command: ");
    assert!(ok(MINIMAL)
        .config
        .postgresql()
        .unwrap()
        .create_replica_methods
        .is_empty());
}

/// `repository` and `scope` of `bootstrap.warden_restore` and `postgresql.warden_restore`:
/// a copy's name (checked against `backup.copies`) and another cluster's scope.
#[test]
fn restore_source_names_a_copy_and_a_scope() {
    let backup = "backup:\n  repository: {type: filesystem, path: /repo/main}\n  copies:\n    - \
                  name: offsite\n      repository: {type: filesystem, path: /repo/copy}\n";
    let yaml = format!(
        "{}{backup}bootstrap:\n  method: warden_restore\n  warden_restore:\n    repository: \
         offsite\n    scope: site-a\n",
        MINIMAL.replace(
            "postgresql:\n",
            "postgresql:\n  create_replica_methods: [warden_restore]\n  warden_restore: \
             {repository: main, scope: site-a}\n",
        )
    );
    let c = ok(&yaml).config;
    let r = c.bootstrap.restore.clone().unwrap();
    assert_eq!(r.source.repository.as_deref(), Some("offsite"));
    assert_eq!(r.source.scope.as_deref(), Some("site-a"));
    let pg = c.postgresql().unwrap();
    assert_eq!(pg.warden_restore.repository.as_deref(), Some("main"));
    assert_eq!(pg.warden_restore.scope.as_deref(), Some("site-a"));
    // Unknown names are errors naming the key and the known repositories.
    let p = problems(&yaml.replace("repository: offsite", "repository: ofsite"));
    assert!(
        p.iter()
            .any(|e| e.contains("bootstrap.warden_restore.repository")
                && e.contains("ofsite")
                && e.contains("offsite")),
        "{p:?}"
    );
    let p = problems(&yaml.replace("{repository: main", "{repository: nas"));
    assert!(
        p.iter()
            .any(|e| e.contains("postgresql.warden_restore.repository") && e.contains("nas")),
        "{p:?}"
    );
    let p = problems(&yaml.replace("{repository: main", "{repo: main"));
    assert!(p.iter().any(|e| e.contains("repo")), "{p:?}");
    let p = problems(&yaml.replace("scope: site-a\n", "scope: a/b\n"));
    assert!(
        p.iter()
            .any(|e| e.contains("bootstrap.warden_restore.scope")),
        "{p:?}"
    );
    // Without a backup section a repository name cannot be honoured.
    let p = problems(&yaml.replace(backup, ""));
    assert!(
        p.iter()
            .any(|e| e.contains("warden_restore.repository") && e.contains("no backup section")),
        "{p:?}"
    );
}
