//! Verify, retention, logical dumps and backup metrics on a real 2-member cluster
//! with a filesystem repository (the replica archives and takes the backups).
//!
//! - Three real base backups; `wardenctl backup verify` passes (exit 0).
//! - `/metrics` on the archiver shows the last backup's age once it is committed.
//! - `backup delete --prune` with `keep_last: 1` is a dry run: it lists the two older
//!   backups and deletes nothing. With `--confirm` they and the WAL only they needed
//!   are deleted (timeline history files stay); the kept backup still verifies.
//! - A flipped byte in a part object: verify exits 1 naming that object. One archived
//!   WAL segment deleted: verify exits 1 naming the missing segment.
//! - A flipped byte inside a data file, the part sealed again with the key (so it
//!   authenticates): verify and restore both refuse, naming the file and its CRC32C
//!   from backup_manifest.
//! - `wardenctl backup create --dump`: a dump of two databases (one with a space in
//!   its name) is committed, listed by `backup list`, and its parts, decrypted, are
//!   accepted by `pg_restore --list` run here.
//!
//! - A page of a table, corrupted on disk on the archiver (one byte, the checksum
//!   left stale; the cluster has data checksums): the next base backup (`files`
//!   method) fails naming the file and block; with the byte put back it succeeds.
//!
//! (A WAL segment pushed twice with different content is refused: `backup_wal.rs`.)

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tokio::runtime::Runtime;
use warden_backup::catalog::{BackupRecord, Catalog, DumpRecord};
use warden_backup::codec;
use warden_backup::key::EncryptionKey;
use warden_backup::layout::Layout;
use warden_backup::repo::Repository;
use warden_tests::backupkit::{
    self, repository, start_formed, sysid, wait_replica_archiver, wardenctl_logged,
};
use warden_tests::config::{pg_bin_dir, SUPERUSER, SUPERUSER_PASSWORD};
use warden_tests::process::run_bounded;
use warden_tests::workdir::WorkDir;
use warden_tests::{http, sql, wait_until, Cluster};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const METRICS_TIMEOUT: Duration = Duration::from_secs(30);

/// Every object path under `dir`, relative to it.
fn objects(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn wal_segments(repo: &Path) -> Vec<String> {
    objects(repo)
        .into_iter()
        .filter_map(|p| p.rsplit('/').next().map(str::to_owned))
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn verify_retention_dumps_and_metrics() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let yaml = format!(
        "{yaml}  wal_wait_timeout: 120s\n  retention: {{keep_last: 1}}\n  \
         dump: {{schedule: \"0 0 1 1 *\", databases: [postgres, \"app db\"]}}\n"
    );
    let (cluster, primary) = start_formed(2, yaml, FORM_TIMEOUT);
    let port = cluster.node(primary).pg_port();
    let archiver = wait_replica_archiver(&cluster, primary);
    let config = cluster.node(0).config_path();
    seed(port);
    take_three_backups(port, &config);
    let sysid = sysid(&cluster, primary);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backup = warden_config::load_backup_section(&config)
        .unwrap()
        .unwrap();
    let catalog = Catalog {
        repo: Repository::open(&backup.repository).unwrap(),
        layout: Layout::new(cluster.scope(), sysid),
        key: EncryptionKey::parse(backupkit::KEY, "test").unwrap(),
    };
    let backups = rt.block_on(catalog.backups()).unwrap();
    assert_eq!(backups.len(), 3);
    let cluster_dir = format!("{}/{sysid}", cluster.scope());

    verify_passes(&config, &backups);
    metrics_show_the_last_backup(&cluster, archiver, &backups);
    let kept = prune_keeps_the_newest(&config, &repo, &rt, &catalog, &backups);
    corruption_is_named(&config, &repo, &cluster_dir, &kept);
    a_resealed_flipped_byte_is_caught(&config, work.path(), &rt, &catalog, &kept);
    bad_input_is_refused(&config, &cluster, archiver, &kept);
    dump_on_demand(&config, work.path(), &rt, &catalog, &cluster_dir);
    a_corrupt_page_fails_the_backup(&cluster, primary, archiver, &config);
}

/// Two databases to back up and dump, `postgres` and `app db` (a space in its name).
fn seed(port: u16) {
    sql::execute(port, "CREATE DATABASE \"app db\"").unwrap();
    // A dump must list at least one TOC entry: the database holds a table.
    let mut app = postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .password(SUPERUSER_PASSWORD)
        .dbname("app db")
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres::NoTls)
        .unwrap();
    app.batch_execute("CREATE TABLE app_t (n int); INSERT INTO app_t VALUES (1)")
        .unwrap();
    drop(app);
    sql::execute(
        port,
        "CREATE TABLE kept (n int); INSERT INTO kept SELECT generate_series(1, 1000)",
    )
    .unwrap();
}

/// Three backups, with WAL in between.
fn take_three_backups(port: u16, config: &Path) {
    for round in 0..3 {
        sql::execute(port, &format!("INSERT INTO kept SELECT {round}")).unwrap();
        // A checkpoint on the primary lets the replica's next restartpoint (where a
        // backup from a standby starts) move on, so the backups start on different
        // segments and the prune has WAL to delete.
        sql::execute(port, "CHECKPOINT").unwrap();
        sql::query_text(port, "SELECT pg_walfile_name(pg_switch_wal())").unwrap();
        let out = wardenctl_logged(config, &["backup", "create"]);
        assert_eq!(out.code(), Some(0), "backup create {round}");
    }
}

/// Verify: all good.
fn verify_passes(config: &Path, backups: &[BackupRecord]) {
    let out = wardenctl_logged(config, &["backup", "verify"]);
    assert_eq!(out.code(), Some(0), "verify of sound backups");
    assert!(out.stdout.contains("verify: OK"), "{}", out.stdout);
    let out = wardenctl_logged(config, &["backup", "verify", "latest", "--json"]);
    assert_eq!(out.code(), Some(0));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["backups"][0]["id"], backups[2].id.as_str());
    // The per-file checksums are the server's (backup_manifest): the record lists none.
    assert!(backups[2].files.is_empty());
    let checked = v["backups"][0]["files_checked"].as_u64().unwrap_or(0);
    assert!(checked > 100, "{checked} files checked");
    assert_eq!(v["backups"][0]["files"].as_u64(), Some(checked));
}

/// Metrics on the archiver: the last backup's age, from the catalog snapshot.
fn metrics_show_the_last_backup(cluster: &Cluster, archiver: usize, backups: &[BackupRecord]) {
    let url = format!("{}/metrics", cluster.node(archiver).api_url());
    let age = wait_until(METRICS_TIMEOUT, "backup age in /metrics", || {
        let text = http::get(&url).ok()?.body;
        metric(&text, "warden_backup_last_success_age_seconds").filter(|a| *a >= 0)
    });
    assert!(age < 600, "age {age}");
    let text = http::get(&url).unwrap().body;
    assert_eq!(
        metric(&text, "warden_backup_last_success_timestamp_seconds"),
        Some(backups[2].finished_at.timestamp()),
        "{text}"
    );
    assert!(
        metric(&text, "warden_archive_lag_seconds").is_some(),
        "{text}"
    );
}

/// Retention with `keep_last: 1`: a dry run first, then confirmed. Returns the kept
/// backup.
fn prune_keeps_the_newest(
    config: &Path,
    repo: &Path,
    rt: &Runtime,
    catalog: &Catalog,
    backups: &[BackupRecord],
) -> BackupRecord {
    // Retention, dry run: names the two older backups, deletes nothing.
    let before = objects(repo);
    let out = wardenctl_logged(config, &["backup", "delete", "--prune"]);
    assert_eq!(out.code(), Some(0));
    for old in &backups[..2] {
        assert!(
            out.stdout
                .contains(&format!("would delete backup {}", old.id)),
            "{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("dry run"), "{}", out.stdout);
    assert_eq!(objects(repo), before, "a dry run deletes nothing");

    // Confirmed: the older backups and the WAL only they needed go.
    let out = wardenctl_logged(
        config,
        &["backup", "delete", "--prune", "--confirm", "--json"],
    );
    assert_eq!(out.code(), Some(0));
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["backups_deleted"].as_array().unwrap().len(), 2);
    let left = rt.block_on(catalog.backups()).unwrap();
    assert_eq!(left.len(), 1);
    let kept = &left[0];
    assert_eq!(kept.id, backups[2].id, "the newest is kept");
    let after = objects(repo);
    for old in &backups[..2] {
        assert!(
            !after
                .iter()
                .any(|p| p.contains(&format!("backups/{}/", old.id))),
            "objects of {} remain: {after:?}",
            old.id
        );
    }
    let segs = wal_segments(repo);
    assert!(
        segs.iter().all(|s| s[8..] >= kept.start_wal[8..]),
        "WAL before {} remains: {segs:?}",
        kept.start_wal
    );
    assert!(
        segs.contains(&kept.start_wal),
        "the kept backup's first segment was deleted: {segs:?}"
    );
    assert!(
        kept.start_wal > backups[0].start_wal,
        "the backups start on different segments: {} / {}",
        backups[0].start_wal,
        kept.start_wal
    );
    assert!(
        before.iter().any(|p| p.ends_with(&backups[0].start_wal)),
        "the oldest backup's first segment was archived"
    );
    assert!(
        !segs.contains(&backups[0].start_wal),
        "the oldest backup's first segment (needed by no kept backup) is deleted: {segs:?}"
    );
    let out = wardenctl_logged(config, &["backup", "verify"]);
    assert_eq!(out.code(), Some(0), "the kept backup still verifies");
    kept.clone()
}

/// Damage is found and named: a flipped byte in a part, a missing WAL segment.
fn corruption_is_named(config: &Path, repo: &Path, cluster_dir: &str, kept: &BackupRecord) {
    // A flipped byte in a part: named.
    let part = format!("{cluster_dir}/backups/{}/{}", kept.id, kept.parts[0].name);
    let part_file = repo.join(&part);
    let original = std::fs::read(&part_file).unwrap();
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&part_file, &bad).unwrap();
    let out = wardenctl_logged(config, &["backup", "verify", &kept.id]);
    assert_eq!(out.code(), Some(1), "verify must fail on a corrupt part");
    assert!(out.stdout.contains(&part), "{}", out.stdout);
    std::fs::write(&part_file, &original).unwrap();

    // A missing WAL segment the backup needs: the gap is named.
    let gap = kept.end_wal.clone();
    let gap_file = repo.join(format!("{cluster_dir}/wal/{}/{gap}", &gap[..8]));
    std::fs::remove_file(&gap_file).unwrap();
    let out = wardenctl_logged(config, &["backup", "verify", "latest"]);
    assert_eq!(out.code(), Some(1), "verify must fail on a WAL gap");
    assert!(
        out.stdout
            .contains(&format!("WAL segment {gap} is missing")),
        "{}",
        out.stdout
    );
}

/// One byte of a data file changed and the part sealed again with the key, so the part
/// authenticates: only the file's checksum from backup_manifest (CRC32C, computed by
/// the server) can tell. Verify and restore both refuse, naming the file.
fn a_resealed_flipped_byte_is_caught(
    config: &Path,
    work: &Path,
    rt: &Runtime,
    catalog: &Catalog,
    kept: &BackupRecord,
) {
    let path = format!("{}/{}", catalog.backup_dir(&kept.id), kept.parts[0].name);
    let original = rt.block_on(catalog.repo.get(&path)).unwrap();
    let (mut plain, _) = codec::open_bytes(&catalog.key, &path, &original).unwrap();
    // A regular file of at least a page lying wholly in this part.
    let (file, offset) = {
        let mut archive = tar::Archive::new(&plain[..]);
        let mut found = None;
        for e in archive.entries().unwrap() {
            let Ok(e) = e else { break };
            let start = e.raw_file_position();
            let size = e.size();
            if e.header().entry_type() == tar::EntryType::Regular
                && size >= 8192
                && start + size <= plain.len() as u64
            {
                found = Some((e.path().unwrap().display().to_string(), start + size / 2));
                break;
            }
        }
        found.expect("a data file in the first part")
    };
    plain[usize::try_from(offset).unwrap()] ^= 0x01;
    let mut sealer = codec::seal_unhashed(&catalog.key, 3, &path, Vec::new()).unwrap();
    std::io::Write::write_all(&mut sealer, &plain).unwrap();
    let (resealed, _) = sealer.finish().unwrap();
    rt.block_on(catalog.repo.put(&path, resealed.into()))
        .unwrap();

    let out = wardenctl_logged(config, &["backup", "verify", &kept.id]);
    assert_eq!(out.code(), Some(1), "verify must fail on a changed file");
    assert!(
        out.stdout.contains(&format!("base.tar:{file}")) && out.stdout.contains("CRC32C"),
        "{}",
        out.stdout
    );
    let dest = work.join("restore-flipped");
    warden_tests::workdir::create_node_dir(&dest).unwrap();
    let data = dest.join("data");
    let out = wardenctl_logged(
        config,
        &[
            "restore",
            "--backup",
            &kept.id,
            "--immediate",
            "--to",
            data.to_str().unwrap(),
        ],
    );
    assert_ne!(out.code(), Some(0), "restore must fail on a changed file");
    assert!(
        out.stderr.contains(&file) && out.stderr.contains("CRC32C"),
        "{}",
        out.stderr
    );
    rt.block_on(catalog.repo.put(&path, original)).unwrap();
    // (The WAL gap made above is still there: only the file must be fine again.)
    let out = wardenctl_logged(config, &["backup", "verify", &kept.id]);
    assert!(
        !out.stdout.contains("base.tar"),
        "the original part verifies again: {}",
        out.stdout
    );
}

/// Bad input is refused, naming what is wrong.
fn bad_input_is_refused(config: &Path, cluster: &Cluster, archiver: usize, kept: &BackupRecord) {
    let out = wardenctl_logged(config, &["backup", "delete"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("or --prune"), "{}", out.stderr);
    let out = wardenctl_logged(config, &["backup", "delete", &kept.id, "--prune"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("not both"), "{}", out.stderr);
    let out = wardenctl_logged(config, &["backup", "delete", "20200101T000000Z"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("20200101T000000Z"), "{}", out.stderr);
    let api = cluster.node(archiver).api_url();
    let bad = http::post_json(
        &format!("{api}/backup"),
        &serde_json::json!({"kind": "full"}),
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("kind"), "{}", bad.body);
    let bad = http::post_json(
        &format!("{api}/backup"),
        &serde_json::json!({"kind": "dump", "databases": ["x"]}),
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("databases"), "{}", bad.body);
}

/// A dump on demand: two databases, listed, restorable.
fn dump_on_demand(config: &Path, work: &Path, rt: &Runtime, catalog: &Catalog, cluster_dir: &str) {
    let out = wardenctl_logged(config, &["backup", "create", "--dump"]);
    assert_eq!(out.code(), Some(0), "dump");
    assert!(out.stdout.contains("committed"), "{}", out.stdout);
    let dumps: Vec<DumpRecord> = rt.block_on(catalog.dumps()).unwrap();
    assert_eq!(dumps.len(), 1);
    let d = &dumps[0];
    let names: Vec<&str> = d.databases.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, vec!["postgres", "app db"]);
    let out = wardenctl_logged(config, &["backup", "list"]);
    assert!(out.stdout.contains(&d.id), "{}", out.stdout);
    let pg = d.databases.iter().find(|x| x.name == "postgres").unwrap();
    assert!(pg.toc_entries > 0);
    // Independently: decrypt the parts and run pg_restore --list here.
    let mut plain = Vec::new();
    for p in &pg.parts {
        let path = format!("{cluster_dir}/dumps/{}/{}", d.id, p.name);
        let sealed = rt.block_on(catalog.repo.get(&path)).unwrap();
        let (bytes, _) = codec::open_bytes(&catalog.key, &path, &sealed).unwrap();
        plain.extend_from_slice(&bytes);
    }
    let dump_file = work.join("postgres.dump");
    std::fs::write(&dump_file, &plain).unwrap();
    let mut list = Command::new(pg_bin_dir().join("pg_restore"));
    list.arg("--list").arg(&dump_file);
    let listed = run_bounded(&mut list, Duration::from_secs(60)).unwrap();
    assert_eq!(listed.code(), Some(0), "{}", listed.describe());
    assert!(
        listed.stdout.contains("TABLE public kept"),
        "{}",
        listed.stdout
    );
}

/// A corrupt data page on the archiver fails the backup, naming it.
fn a_corrupt_page_fails_the_backup(
    cluster: &Cluster,
    primary: usize,
    archiver: usize,
    config: &Path,
) {
    let (pport, rport) = (
        cluster.node(primary).pg_port(),
        cluster.node(archiver).pg_port(),
    );
    sql::execute(
        pport,
        "CREATE TABLE rot (n int, pad text); \
         INSERT INTO rot SELECT g, repeat('x', 200) FROM generate_series(1, 1000) g",
    )
    .unwrap();
    sql::execute(pport, "CHECKPOINT").unwrap();
    let target = sql::query_text(pport, "SELECT pg_current_wal_lsn()::text")
        .unwrap()
        .unwrap();
    let rel = sql::query_text(pport, "SELECT pg_relation_filepath('rot')")
        .unwrap()
        .unwrap();
    wait_until(
        Duration::from_secs(60),
        "the replica replays the table",
        || {
            sql::query_text(
                rport,
                &format!("SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"),
            )
            .ok()
            .flatten()
            .filter(|v| v == "t")
        },
    );
    // A restartpoint writes the replica's copy of the pages: from now on they sit
    // clean in its buffers, and the file is what a backup reads.
    sql::execute(rport, "CHECKPOINT").unwrap();
    let file = cluster.node(archiver).data_dir().join(&rel);
    let original = std::fs::read(&file).unwrap();
    assert!(original.len() >= 8192, "{rel}: {} bytes", original.len());
    let mut damaged = original.clone();
    damaged[4000] ^= 0x10;
    std::fs::write(&file, &damaged).unwrap();

    let out = wardenctl_logged(config, &["backup", "create"]);
    assert_eq!(out.code(), Some(1), "a backup of a corrupt page must fail");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("data checksum verification failed"), "{said}");
    assert!(said.contains(&format!("{rel} block 0")), "{said}");

    std::fs::write(&file, &original).unwrap();
    let out = wardenctl_logged(config, &["backup", "create"]);
    assert_eq!(
        out.code(),
        Some(0),
        "the same backup with the page repaired"
    );
}
