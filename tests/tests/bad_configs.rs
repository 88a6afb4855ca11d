//! Config validation: every bad config is rejected with a non-zero exit and
//! a message naming the key, both by `--validate-config` and by a real start;
//! keys Patroni knows but Warden does not implement only warn.
//!
//! Each config points etcd at a port nobody listens on: a config wrongly
//! accepted by `warden CONFIG` makes the agent keep running (retrying etcd)
//! and the bounded run fails the test instead of hanging it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use warden_tests::process::{run_bounded, RunOutput};
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::{bins, demo, ports, NodeConfig};

/// Bound for the agent to reject a config (it must not get further).
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// A valid config in `dir/node1` (created), tweaked by `f`; returns its path.
fn write_config(dir: &Path, f: impl FnOnce(NodeConfig, &Path) -> NodeConfig) -> std::path::PathBuf {
    let [pg, api, dead_etcd] = ports::free_ports(3).unwrap()[..] else {
        unreachable!()
    };
    let node_dir = dir.join("node1");
    create_node_dir(&node_dir).unwrap();
    let cfg = f(
        NodeConfig::new(
            "node1",
            &node_dir,
            pg,
            api,
            &format!("127.0.0.1:{dead_etcd}"),
        ),
        &node_dir,
    );
    let path = cfg.config_path();
    std::fs::write(&path, cfg.render().unwrap()).unwrap();
    path
}

fn warden(args: &[&std::ffi::OsStr]) -> RunOutput {
    let bin = bins::warden_bin().unwrap_or_else(|e| panic!("{e:#}"));
    run_bounded(Command::new(bin).args(args), RUN_TIMEOUT).expect("run warden")
}

fn validate(cfg: &Path) -> RunOutput {
    warden(&["--validate-config".as_ref(), cfg.as_os_str()])
}

fn run(cfg: &Path) -> RunOutput {
    warden(&[cfg.as_os_str()])
}

/// Both `--validate-config` and a real start fail, naming `key` on stderr.
fn assert_rejected(f: impl Fn(NodeConfig, &Path) -> NodeConfig, key: &str) {
    let dir = WorkDir::temp().unwrap();
    let cfg = write_config(dir.path(), f);
    let text = std::fs::read_to_string(&cfg).unwrap();
    for (how, out) in [
        ("--validate-config", validate(&cfg)),
        ("warden CONFIG", run(&cfg)),
    ] {
        assert!(
            out.status.is_some(),
            "{how}: did not exit within {RUN_TIMEOUT:?}\n{}\nconfig:\n{text}",
            out.describe()
        );
        assert_ne!(
            out.code(),
            Some(0),
            "{how}: accepted a bad config\n{}\nconfig:\n{text}",
            out.describe()
        );
        assert!(
            out.stderr.contains(key),
            "{how}: stderr does not name `{key}`\n{}\nconfig:\n{text}",
            out.describe()
        );
    }
    // Nothing was started: no data directory appeared.
    assert!(
        !dir.path().join("node1/data").exists(),
        "a rejected config created the data dir"
    );
}

#[test]
fn valid_config_validates() {
    let dir = WorkDir::temp().unwrap();
    let cfg = write_config(dir.path(), |c, _| c);
    let out = validate(&cfg);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}

#[test]
fn missing_scope_is_rejected() {
    assert_rejected(|c, _| c.remove("scope"), "scope");
}

#[test]
fn out_of_range_port_is_rejected() {
    assert_rejected(
        |c, _| c.set("restapi.listen", "127.0.0.1:99999"),
        "restapi.listen",
    );
}

#[test]
fn unknown_key_typo_is_rejected() {
    assert_rejected(|c, _| c.set("restapi.lisen", "127.0.0.1:8008"), "lisen");
}

#[test]
fn data_dir_that_is_a_regular_file_is_rejected() {
    assert_rejected(
        |c, node_dir| {
            let file = node_dir.join("not-a-directory");
            std::fs::write(&file, "x").unwrap();
            c.set("postgresql.data_dir", file.display().to_string())
        },
        "data_dir",
    );
}

#[test]
fn data_dir_below_a_regular_file_is_rejected() {
    assert_rejected(
        |c, node_dir| {
            let file = node_dir.join("plain-file");
            std::fs::write(&file, "x").unwrap();
            c.set(
                "postgresql.data_dir",
                file.join("data").display().to_string(),
            )
        },
        "data_dir",
    );
}

/// Patroni's rule: a timing value below its floor is raised (and the others adjusted)
/// with a warning naming it, not refused.
#[test]
fn too_small_ttl_is_adjusted_with_a_warning() {
    let dir = WorkDir::temp().unwrap();
    let cfg = write_config(dir.path(), |c, _| c.set("bootstrap.dcs.ttl", 1));
    let out = validate(&cfg);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stderr
            .contains("bootstrap.dcs: ttl=1 is below the minimum; adjusted to 3"),
        "{}",
        out.describe()
    );
}

/// A key Patroni knows but Warden ignores (Warden does not drive pg_ctl):
/// accepted, with a warning naming it.
#[test]
fn patroni_key_not_implemented_only_warns() {
    let dir = WorkDir::temp().unwrap();
    let cfg = write_config(dir.path(), |c, _| c.set("postgresql.pg_ctl_timeout", 60));
    let out = validate(&cfg);
    assert_eq!(
        out.code(),
        Some(0),
        "a known Patroni key must not be an error\n{}",
        out.describe()
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("postgresql.pg_ctl_timeout") && all.to_lowercase().contains("warn"),
        "no warning naming postgresql.pg_ctl_timeout\n{}",
        out.describe()
    );
}

#[test]
fn deploy_example_configs_validate() {
    let examples = bins::workspace_root().join("deploy/examples");
    for i in 1..=demo::PG_PORTS.len() {
        let path = examples.join(format!("node{i}.yml"));
        let out = validate(&path);
        assert_eq!(
            out.code(),
            Some(0),
            "{}: {}",
            path.display(),
            out.describe()
        );
    }
}
