//! The architecture's dependency rules, checked instead of only described (ARCHITECTURE.md,
//! "Invariants"): which crate may use etcd, PostgreSQL's driver and the object store, that
//! the HA core stays pure, that `wardenctl` and the test kits never link the daemon, and
//! that no module of the daemon imports from a layer above it.
//!
//! Reads only the repository's `Cargo.toml` files and sources; std only.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Each workspace crate's folder, by package name.
fn crates() -> BTreeMap<String, PathBuf> {
    let root = root();
    let workspace = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = workspace
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    let mut out = BTreeMap::new();
    for dir in members.split('"').skip(1).step_by(2) {
        let manifest = fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{dir}/Cargo.toml has no package name"));
        out.insert(name.to_string(), root.join(dir));
    }
    assert!(out.len() >= 8, "workspace members not found: {out:?}");
    out
}

/// Dependency names of one section (`dependencies`, `dev-dependencies`) of a manifest.
fn deps(dir: &Path, section: &str) -> Vec<String> {
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let header = format!("[{section}]");
    let mut inside = false;
    let mut out = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
        out.push(name.to_string());
    }
    out
}

fn all_deps(dir: &Path) -> Vec<String> {
    let mut d = deps(dir, "dependencies");
    d.extend(deps(dir, "dev-dependencies"));
    d
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out
}

/// Files under the workspace's crates (not build output) whose text contains `needle`.
fn users_of(needle: &str) -> Vec<PathBuf> {
    let root = root();
    let mut out = Vec::new();
    for dir in crates().values() {
        for sub in ["src", "tests", "benches"] {
            let d = dir.join(sub);
            if d.is_dir() {
                out.extend(
                    sources(&d)
                        .into_iter()
                        .filter(|(_, t)| t.contains(needle))
                        .map(|(p, _)| p.strip_prefix(&root).unwrap().to_path_buf()),
                );
            }
        }
    }
    // This file names what it looks for.
    out.retain(|p| !p.ends_with("tests/tests/layering.rs"));
    out.sort();
    out.dedup();
    out
}

/// Fails naming every file that uses `needle` outside `allowed` (repo-relative prefixes).
fn only_under(needle: &str, allowed: &[&str]) {
    let outside: Vec<_> = users_of(needle)
        .into_iter()
        .filter(|p| !allowed.iter().any(|a| p.starts_with(a)))
        .collect();
    assert!(
        outside.is_empty(),
        "`{needle}` is used outside {allowed:?}: {outside:?}"
    );
}

/// Fails naming every crate that depends on `dep` other than `allowed`.
fn only_crates_depend_on(dep: &str, allowed: &[&str]) {
    let offenders: Vec<_> = crates()
        .into_iter()
        .filter(|(name, dir)| {
            !allowed.contains(&name.as_str()) && all_deps(dir).iter().any(|d| d == dep)
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        offenders.is_empty(),
        "{offenders:?} depend on {dep}; only {allowed:?} may"
    );
}

#[test]
fn only_consensus_knows_etcd() {
    only_crates_depend_on("etcd-client", &["warden-consensus"]);
    // Paths, not names: the log filter names the crate's log target as text.
    only_under("etcd_client::", &["consensus/src/etcd.rs"]);
}

/// The engine's driver stays in the engine; `wardenctl query` (patronictl's `query`)
/// is a SQL client of its own and the one other user.
#[test]
fn only_the_postgresql_engine_knows_its_driver() {
    only_crates_depend_on("tokio-postgres", &["warden-pg", "warden-ctl"]);
    // Paths, not names: the log filter names the driver's log target as text.
    only_under(
        "tokio_postgres::",
        &[
            "agent/pg/src",
            "agent/ctl/src/query.rs",
            "agent/ctl/src/pyfmt.rs",
        ],
    );
}

/// Redis's client stays in the Redis engine; the kit's and the chaos harness's clients
/// are the other users.
#[test]
fn only_the_redis_engine_knows_its_client() {
    only_crates_depend_on("redis", &["warden-redis", "warden-tests", "warden-chaos"]);
}

#[test]
fn only_the_backup_repository_knows_the_object_store() {
    only_crates_depend_on("object_store", &["warden-backup"]);
    only_under("object_store::", &["agent/backup/src/repo.rs"]);
}

#[test]
fn only_the_daemons_api_module_serves_http() {
    only_under("serve_connection", &["agent/src/api/"]);
}

#[test]
fn the_ha_core_is_pure() {
    let dir = &crates()["warden-ha"];
    // serde_json: the member-key fields an engine adds are JSON values (pure data).
    let allowed = ["warden-consensus", "chrono", "serde_json"];
    let extra: Vec<_> = deps(dir, "dependencies")
        .into_iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "warden-ha depends on {extra:?}; only {allowed:?} are allowed"
    );
    let forbidden = [
        "tokio::",
        "Instant::now",
        "SystemTime::now",
        "Utc::now",
        "Local::now",
        "std::fs",
        "std::net",
        "std::process",
        "std::thread",
        "std::env",
    ];
    for (path, text) in sources(&dir.join("src")) {
        for f in forbidden {
            assert!(
                !text.contains(f),
                "{} uses {f}: the HA core does no I/O and reads no clock",
                path.display()
            );
        }
    }
}

#[test]
fn nothing_links_the_daemon() {
    // wardenctl, the test kit and the chaos harness see the daemon only as a binary.
    only_crates_depend_on("warden-agent", &[]);
}

#[test]
fn the_daemon_imports_no_layer_above() {
    let root = root();
    // (module folder or file, paths it must not import): the loop does not reach into the
    // server or the command line; the server does not reach into the loop's internals.
    let rules: [(&str, &[&str]); 3] = [
        ("agent/src/ha", &["crate::cli", "crate::api"]),
        ("agent/src/api", &["crate::cli", "crate::ha::run"]),
        ("agent/src/state.rs", &["crate::cli", "crate::api"]),
    ];
    for (place, forbidden) in rules {
        let path = root.join(place);
        let files = if path.is_dir() {
            sources(&path)
        } else {
            vec![(path.clone(), fs::read_to_string(&path).unwrap())]
        };
        for (file, text) in files {
            for f in forbidden {
                assert!(!text.contains(f), "{} imports {f}", file.display());
            }
        }
    }
}
