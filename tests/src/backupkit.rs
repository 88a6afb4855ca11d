//! Helpers for the backup tests (archiving, base backups, verify, restore, PITR,
//! drills, bootstrap, webhooks) and the backup benchmarks: one filesystem
//! repository and key, the `backup:` YAML for them, a cluster started with it,
//! `wardenctl` runs against a node's config, and what the repository's WAL
//! directory holds (archived names, segment numbers, gaps).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::bins::wardenctl_command;
use crate::process::{run_bounded, RunOutput};
use crate::s3::{self, S3Server};
use crate::workdir::{chown_to_postgres, create_node_dir};
use crate::{sql, wait_until, Cluster, ClusterSpec};

/// The encryption key every backup test and benchmark uses (64 hex digits).
pub const KEY: &str = "3c9a1e7b5d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a2b";
/// Bound for a wardenctl command that backs up, verifies, restores or drills a
/// tiny cluster (a base backup waits for its WAL, up to `wal_wait_timeout`).
pub const CTL_TIMEOUT: Duration = Duration::from_secs(240);
/// Bound for a completed segment to reach the repository.
pub const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for a replica to take over archiving: a lease expiry plus
/// pg_receivewal's start.
pub const ARCHIVER_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes [`KEY`] to `<dir>/backup.key`, mode 600 and owned by postgres (the agent
/// refuses a key file others can read); its path.
pub fn key_file(dir: &Path) -> Result<PathBuf> {
    let key = dir.join("backup.key");
    std::fs::write(&key, format!("{KEY}\n"))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    chown_to_postgres(&key)?;
    Ok(key)
}

/// The `backup:` section for the filesystem repository `repo` (10 s per
/// operation) and the key file `key`; `extra` is more of the section, each line
/// indented by two spaces and ending in a newline.
pub fn backup_yaml(repo: &Path, key: &Path, extra: &str) -> String {
    format!(
        "backup:\n  repository:\n    type: filesystem\n    path: {}\n    timeout: 10s\n  \
         encryption_key_file: {}\n{extra}",
        repo.display(),
        key.display()
    )
}

/// The `repository:` lines (indented for a `backup:` section) for `bucket` on the
/// S3 server `server`, objects under `prefix`, 10 s per operation.
pub fn s3_repository_yaml(server: &S3Server, bucket: &str, prefix: &str) -> String {
    format!(
        "  repository:\n    type: s3\n    bucket: {bucket}\n    endpoint: {}\n    \
         allow_http: true\n    region: {}\n    prefix: {prefix}\n    \
         access_key_id: {}\n    secret_access_key: {}\n    timeout: 10s\n",
        server.endpoint(),
        s3::REGION,
        s3::ACCESS_KEY_ID,
        s3::SECRET_ACCESS_KEY
    )
}

/// `<dir>/repo` (owned by postgres) and `<dir>/backup.key` ([`key_file`]); the
/// `backup:` YAML for both ([`backup_yaml`] with no extra lines).
pub fn repository(dir: &Path) -> Result<(PathBuf, String)> {
    let repo = dir.join("repo");
    create_node_dir(&repo)?;
    let yaml = backup_yaml(&repo, &key_file(dir)?, "");
    Ok((repo, yaml))
}

/// An `nodes`-member cluster without HAProxy whose every member config has `yaml`
/// merged in (a `backup:` section and whatever else the test needs).
pub fn backup_spec(nodes: usize, yaml: String) -> ClusterSpec {
    ClusterSpec::new(nodes)
        .without_haproxy()
        .customize(move |_, c| c.merge_yaml(&yaml).unwrap())
}

/// Starts [`backup_spec`]`(nodes, yaml)`, waits up to `timeout` for it to form and
/// converge; the cluster and its primary's index.
pub fn start_formed(nodes: usize, yaml: String, timeout: Duration) -> (Cluster, usize) {
    let cluster = Cluster::start(backup_spec(nodes, yaml)).expect("start cluster");
    cluster.wait_formed(timeout);
    let primary = cluster.assert_converged(timeout).primary;
    (cluster, primary)
}

/// Runs `wardenctl -c CONFIG ARGS...`, bounded by [`CTL_TIMEOUT`].
pub fn wardenctl(config: &Path, args: &[&str]) -> Result<RunOutput> {
    let mut cmd = wardenctl_command()?;
    cmd.arg("-c").arg(config).args(args);
    run_bounded(&mut cmd, CTL_TIMEOUT)
}

/// [`wardenctl`] that must run (whatever its exit code); what it did is printed
/// for the test log.
pub fn wardenctl_logged(config: &Path, args: &[&str]) -> RunOutput {
    let out = wardenctl(config, args).unwrap_or_else(|e| panic!("run wardenctl: {e:#}"));
    println!("wardenctl {}: {}", args.join(" "), out.describe());
    out
}

/// [`wardenctl`] that must succeed; its stdout parsed as JSON.
pub fn wardenctl_json(config: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let out = wardenctl(config, args)?;
    if out.code() != Some(0) {
        bail!("wardenctl {args:?} failed: {}", out.describe());
    }
    Ok(serde_json::from_str(&out.stdout)?)
}

/// Every archived file name under the repository, sorted.
pub fn archived(repo: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                // Only archived WAL: backups, dumps, drills and the archiver's live
                // copy of the segment still being received live beside it.
                if p.file_name().is_some_and(|n| {
                    n == "backups" || n == "drills" || n == "dumps" || n == "wal_live"
                }) {
                    continue;
                }
                walk(&p, out);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                out.push(n.to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(repo, &mut out);
    out.sort();
    out
}

/// Ends the current WAL segment on the primary at `port` and waits until the
/// repository holds it.
pub fn switch_and_wait_archived(port: u16, repo: &Path) -> String {
    let seg = sql::query_text(port, "SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap()
        .unwrap();
    wait_archived(repo, &seg);
    seg
}

/// Waits up to [`ARCHIVE_TIMEOUT`] until [`archived`] lists `name`.
pub fn wait_archived(repo: &Path, name: &str) {
    wait_until(
        ARCHIVE_TIMEOUT,
        &format!("{name} in the repository"),
        || archived(repo).iter().any(|n| n == name).then_some(()),
    );
}

/// Segment number of a 24-hex segment name (16 MiB segments).
pub fn segno(name: &str) -> u64 {
    let log = u64::from_str_radix(&name[8..16], 16).unwrap();
    let seg = u64::from_str_radix(&name[16..24], 16).unwrap();
    log * 0x100 + seg
}

/// The 24-hex name of segment number `n` on `timeline` (inverse of [`segno`]).
pub fn segment(timeline: &str, n: u64) -> String {
    format!("{timeline}{:08X}{:08X}", n / 0x100, n % 0x100)
}

/// Panics if the complete segments of `timeline` (8 hex digits) have a gap.
pub fn assert_no_gap(names: &[String], timeline: &str) {
    let mut segs: Vec<u64> = names
        .iter()
        .filter(|n| n.len() == 24 && n.starts_with(timeline))
        .map(|n| segno(n))
        .collect();
    segs.sort_unstable();
    for w in segs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "gap in timeline {timeline}: {names:?}");
    }
}

/// Postgres processes whose command line mentions `needle` (a data directory).
pub fn postgres_processes_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("postgres") && text.contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Object names under every `<kind>/` directory of the repository (`drills`,
/// `backups`).
pub fn archived_records(repo: &Path, kind: &str) -> Vec<String> {
    fn walk(dir: &Path, kind: &str, inside: bool, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                walk(&p, kind, inside || name == kind, out);
            } else if inside {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(repo, kind, false, &mut out);
    out.sort();
    out
}

/// The system identifier of member `i`'s data directory, as the repository layout
/// names it.
pub fn sysid(cluster: &Cluster, i: usize) -> u64 {
    cluster
        .node(i)
        .system_identifier()
        .unwrap()
        .parse()
        .unwrap()
}

/// The member holding the archiver key in etcd, if any.
pub fn archiver_key(cluster: &Cluster) -> Option<String> {
    cluster
        .etcd()
        .get(&format!("{}warden/archiver", cluster.key_prefix()))
        .ok()
        .flatten()
        .map(|kv| kv.value)
}

/// Waits until a replica (not `primary`) says it is the archiver (`/patroni`), so a
/// backup does not race the hand-over from the primary (which holds the key while no
/// replica streams yet).
pub fn wait_replica_archiver(cluster: &Cluster, primary: usize) -> usize {
    wait_until(ARCHIVER_TIMEOUT, "a replica archives", || {
        (0..cluster.nodes().len())
            .find(|&i| i != primary && cluster.node(i).patroni().is_some_and(|p| p.is_archiver()))
    })
}

/// Waits until `pg_receivewal` streams from the server on `port` through the archiver's
/// slot. Before that, a segment switched on the server may end before the position an
/// empty archive starts from, and would never be archived.
pub fn wait_archiver_streaming(port: u16) {
    wait_until(
        ARCHIVER_TIMEOUT,
        "pg_receivewal streaming through its slot",
        || {
            let active = sql::query_text(
                port,
                "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'warden_archiver'",
            )
            .ok()??;
            (active == "true").then_some(())
        },
    );
}
