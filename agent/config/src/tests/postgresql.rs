//! The `postgresql` section: parameters, paths and callbacks.

use std::fs;

use tempfile::TempDir;

use super::fixtures::*;

#[test]
fn parameters_are_stringified_like_postgresql() {
    let yaml = MINIMAL.replace(
        "  data_dir:",
        "  parameters: {hot_standby: true, fsync: false, max_connections: 100, \
         checkpoint_completion_target: 0.9, wal_level: replica, work_mem: 4MB, \
         shared_buffers: '128MB', port: 5432}\n  data_dir:",
    );
    let c = ok(&yaml).config;
    let params = &c.postgresql().unwrap().parameters;
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
    // What would rewrite postgresql.conf or pg_hba.conf beyond its own line.
    let hostile = MINIMAL.replace(
        "  data_dir:",
        "  parameters: {'work_mem': \"4MB\\nfsync = off\", 'a b': 1}\n  \
         recovery_conf: {restore_command: \"cp %p x\\rarchive_mode = off\"}\n  \
         pg_hba: [\"local all all trust\\nhost all all 0.0.0.0/0 trust\"]\n  data_dir:",
    );
    let p = problems(&hostile);
    assert_eq!(p.len(), 4, "{p:?}");
    assert_has_prefix(
        &p,
        "postgresql.parameters.work_mem: contains the control character",
    );
    assert_has_prefix(&p, "postgresql.parameters.a b: ");
    assert_has_prefix(
        &p,
        "postgresql.recovery_conf.restore_command: contains the control",
    );
    assert_has_prefix(&p, "postgresql.pg_hba[0]: contains the control character");
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
    assert_eq!(ok(&yaml).config.postgresql().unwrap().bin_dir, None);

    let yaml = MINIMAL.replace(
        "  data_dir:",
        &format!("  pgpass: {}\n  data_dir:", dir.path().display()),
    );
    assert_has_prefix(&problems(&yaml), "postgresql.pgpass: ");
}

#[test]
fn callbacks_and_pre_promote() {
    let yaml = format!(
        "{MINIMAL}  callbacks: {{on_start: /bin/cb, on_role_change: '/usr/bin/cb --x'}}\n  pre_promote: /bin/check\n"
    );
    let pg = ok(&yaml).config.postgresql().unwrap().clone();
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
