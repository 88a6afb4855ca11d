//! Base backups (issue 6): a 3-node cluster under a write load, one repository
//! (a directory, then a real S3 server) shared by every member; the directory case
//! takes the backup with `base_method: files` (the data directory copied between
//! `pg_backup_start` and `pg_backup_stop`), the S3 case with `pg_basebackup`.
//!
//! - `wardenctl backup create` runs the backup on the archiver, a replica, and waits
//!   for the committed record.
//! - The record's parts are sealed (not a plain tar); opened and concatenated they
//!   are a tar stream whose files match backup_manifest's per-file CRC32C; the manifest
//!   object exists; every WAL segment from `start_wal` to `end_wal` is archived.
//! - `wardenctl backup list` (table and JSON) shows the backup.
//! - Bad input: `POST /backup` on a member that is not the archiver names the
//!   archiver; `wardenctl backup list` with a config without a backup section says so.
//! - A backup whose WAL does not arrive in time fails, names the segment, leaves no
//!   record and no objects.
//! - `backup.schedule` fires on the archiver, and stops there once the member gives
//!   the archiver key up (tagged `noarchive` and reloaded): the next archiver goes on.
//! - Giving the key up in the middle of a backup cancels it: it ends as failed
//!   ("cancelled") and its objects are deleted.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use warden_backup::base::filesums::{Algorithm, FileHasher};
use warden_backup::catalog::{BackupRecord, Catalog, MANIFEST};
use warden_backup::codec;
use warden_backup::key::EncryptionKey;
use warden_backup::layout::{Layout, WalName};
use warden_backup::repo::Repository;
use warden_tests::backupkit::{
    self, archiver_key, backup_spec, key_file, repository, s3_repository_yaml, segment, segno,
    start_formed, sysid, wardenctl_logged,
};
use warden_tests::process::RunOutput;
use warden_tests::s3::S3Server;
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::workload::{Writer, WriterOptions};
use warden_tests::{http, sql, wait_until, Cluster};

const BUCKET: &str = "warden-base";
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// A lease expiry plus pg_receivewal's start.
const ARCHIVER_TIMEOUT: Duration = Duration::from_secs(60);
/// A few schedule periods (10 s) plus a backup.
const SCHEDULE_TIMEOUT: Duration = Duration::from_secs(90);

enum Repo {
    Fs(PathBuf),
    S3(S3Server),
}

impl Repo {
    fn yaml(&self) -> String {
        match self {
            Repo::Fs(path) => format!(
                "  repository:\n    type: filesystem\n    path: {}\n    timeout: 10s\n",
                path.display()
            ),
            Repo::S3(server) => s3_repository_yaml(server, BUCKET, "base/test"),
        }
    }
}

fn ok(out: &RunOutput) -> bool {
    out.status.is_some_and(|s| s.success())
}

/// Everything the test checks in the repository, through the agent's repository
/// and codec (the format under test).
struct Check {
    rt: tokio::runtime::Runtime,
    catalog: Catalog,
}

impl Check {
    fn new(config: &Path, scope: &str, sysid: u64) -> Check {
        let backup = warden_config::load_backup_section(config)
            .unwrap()
            .expect("the node config has a backup section");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let catalog = Catalog {
            repo: Repository::open(&backup.repository).unwrap(),
            layout: Layout::new(scope, sysid),
            key: EncryptionKey::parse(backupkit::KEY, "test").unwrap(),
        };
        Check { rt, catalog }
    }

    fn backups(&self) -> Vec<BackupRecord> {
        self.rt.block_on(self.catalog.backups()).unwrap()
    }

    fn get(&self, path: &str) -> Vec<u8> {
        self.rt
            .block_on(self.catalog.repo.get(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .to_vec()
    }

    fn exists(&self, path: &str) -> bool {
        self.rt.block_on(self.catalog.repo.exists(path)).unwrap()
    }

    /// The record's parts, each sealed, opened and joined: the tar stream.
    fn tar_stream(&self, r: &BackupRecord) -> Vec<u8> {
        let dir = self.catalog.backup_dir(&r.id);
        let mut stream = Vec::new();
        assert!(!r.parts.is_empty());
        for p in &r.parts {
            let path = format!("{dir}/{}", p.name);
            let sealed = self.get(&path);
            assert_eq!(sealed.len() as u64, p.stored_size, "{path}");
            assert!(sealed.starts_with(b"WRDNBK03"), "{path} is sealed");
            assert!(
                !sealed.windows(5).any(|w| w == b"ustar"),
                "{path} holds plain tar headers"
            );
            let (plain, digest) = codec::open_bytes(&self.catalog.key, &path, &sealed)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(plain.len() as u64, p.plain_size, "{path}");
            // Codec version 3: no digest sealed, none recorded.
            assert_eq!(digest, [0u8; 32], "{path}");
            assert_eq!(p.sha256, "", "{path}");
            stream.extend_from_slice(&plain);
        }
        stream
    }

    /// The stream's regular files, in stream order.
    fn regular_files(&self, r: &BackupRecord) -> Vec<String> {
        let stream = self.tar_stream(r);
        let mut archive = tar::Archive::new(&stream[..]);
        let mut out = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            if e.header().entry_type() == tar::EntryType::Regular {
                out.push(e.path().unwrap().to_string_lossy().into_owned());
            }
        }
        out
    }

    fn verify(&self, r: &BackupRecord) {
        let stream = self.tar_stream(r);
        assert_eq!(stream.len() as u64, r.size);
        // Every regular file in the stream, checksummed here, independently.
        let mut in_tar: BTreeMap<String, (u64, String)> = BTreeMap::new();
        let mut archive = tar::Archive::new(&stream[..]);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            in_tar.insert(
                path,
                (data.len() as u64, hex::encode(Sha256::digest(&data))),
            );
        }
        for must in ["PG_VERSION", "global/pg_control", "backup_label", MANIFEST] {
            assert!(in_tar.contains_key(must), "{must} missing from the stream");
        }
        // The manifest object is the manifest of the stream.
        let mpath = format!("{}/{MANIFEST}", self.catalog.backup_dir(&r.id));
        let (manifest, _) =
            codec::open_bytes(&self.catalog.key, &mpath, &self.get(&mpath)).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&manifest)),
            in_tar[MANIFEST].1,
            "the manifest object is the stream's backup_manifest"
        );
        // The per-file checksums are the server's: the record lists none, and the
        // manifest names every file of the stream (but itself) with its size and a
        // CRC32C that matches the content.
        assert!(r.files.is_empty());
        let m: Value = serde_json::from_slice(&manifest).unwrap();
        let mut listed: BTreeMap<String, (u64, String)> = BTreeMap::new();
        for f in m["Files"].as_array().unwrap() {
            assert_eq!(f["Checksum-Algorithm"], "CRC32C", "{f}");
            listed.insert(
                f["Path"].as_str().unwrap().to_owned(),
                (
                    f["Size"].as_u64().unwrap(),
                    f["Checksum"].as_str().unwrap().to_owned(),
                ),
            );
        }
        let mut archive = tar::Archive::new(&stream[..]);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            if e.header().entry_type() != tar::EntryType::Regular || path == MANIFEST {
                continue;
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let mut h = FileHasher::new(Algorithm::Crc32c);
            h.update(&data);
            let (size, sum) = listed
                .remove(&path)
                .unwrap_or_else(|| panic!("{path} not in the manifest"));
            assert_eq!((size, sum), (data.len() as u64, h.finish()), "{path}");
        }
        assert!(
            listed.is_empty(),
            "listed but not in the stream: {listed:?}"
        );
        assert_eq!(m["WAL-Ranges"][0]["Start-LSN"], r.start_lsn.as_str());
        assert_eq!(m["WAL-Ranges"][0]["End-LSN"], r.end_lsn.as_str());

        // Every segment the backup needs is archived.
        let tli = &r.start_wal[..8];
        assert_eq!(tli, format!("{:08X}", r.timeline));
        assert!(segno(&r.start_wal) <= segno(&r.end_wal));
        for n in segno(&r.start_wal)..=segno(&r.end_wal) {
            let name = WalName::parse(&segment(tli, n)).unwrap();
            let path = self.catalog.layout.wal(&name);
            assert!(
                self.exists(&path),
                "{path} (needed by the backup) is archived"
            );
        }
    }
}

/// `method`: `backup.base_method`.
fn scenario(work: &WorkDir, repo: &Repo, method: &str) {
    let yaml = format!(
        "backup:\n{}  encryption_key_file: {}\n  wal_wait_timeout: 120s\n  base_method: {method}\n",
        repo.yaml(),
        key_file(work.path()).unwrap().display()
    );
    let (cluster, primary) = start_formed(3, yaml, FORM_TIMEOUT);
    let leader = cluster.node(primary).name().to_string();
    // The archive starts where the archiver starts streaming, and a backup taken on a
    // replica begins at its last restartpoint, which can be the cluster's first WAL
    // segment: archive before writing, as a deployment does, or (on a slow machine
    // whose archiver comes up late) that segment is never in the archive.
    let archiver = wait_until(ARCHIVER_TIMEOUT, "a replica holds the archiver key", || {
        archiver_key(&cluster).filter(|a| *a != leader)
    });
    let archiver_node = cluster.index_of(&archiver).unwrap();
    wait_until(ARCHIVER_TIMEOUT, "the archiver reports archiving", || {
        cluster
            .node(archiver_node)
            .patroni()
            .is_some_and(|p| p.is_archiver())
            .then_some(())
    });
    // More than one 64 MiB part: about 100 MiB of table.
    fill(cluster.node(primary).pg_port(), 800_000);
    let writer = Writer::start(
        cluster.node(primary).pg_port(),
        "backup_writes",
        WriterOptions {
            pause_after_ack: Duration::from_millis(5),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let config = cluster.node(0).config_path();

    // A member that is not the archiver refuses, naming the archiver.
    let refused = http::post_json(
        &format!("{}/backup", cluster.node(primary).api_url()),
        &serde_json::json!({}),
    )
    .unwrap();
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains(&archiver), "{}", refused.body);
    // A body with parameters is refused with what was wrong.
    let bad = http::post_json(
        &format!("{}/backup", cluster.node(archiver_node).api_url()),
        &serde_json::json!({"label": "x"}),
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("label"), "{}", bad.body);

    let out = wardenctl_logged(&config, &["backup", "create"]);
    assert!(ok(&out), "backup create failed");
    assert!(out.stdout.contains("committed"), "{}", out.stdout);
    let writes = writer.acks().len();
    assert!(writes > 0, "the write load ran during the backup");

    let sysid = sysid(&cluster, primary);
    let check = Check::new(&config, cluster.scope(), sysid);
    let backups = check.backups();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let r = &backups[0];
    assert_eq!(r.member, archiver, "taken on the archiver");
    assert_ne!(r.member, leader, "not on the leader");
    assert_eq!(r.system_identifier, sysid);
    assert!(r.pg_version >= 150_000, "{}", r.pg_version);
    assert!(r.parts.len() >= 2, "{} parts", r.parts.len());
    check.verify(r);
    // Which method made the stream shows in its order: pg_basebackup sends
    // backup_label first; the files method gets it from pg_backup_stop, after the
    // copy. Both end with pg_control (then the manifest).
    let order = check.regular_files(r);
    let tail: Vec<&str> = order
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    match method {
        "files" => assert_eq!(tail, ["global/pg_control", "backup_label", MANIFEST]),
        _ => {
            assert_eq!(order.first().map(String::as_str), Some("backup_label"));
            assert_eq!(tail[1..], ["global/pg_control", MANIFEST]);
        }
    }
    // Left out, as PostgreSQL leaves them out: WAL, the runtime state.
    for p in &order {
        assert!(
            !p.starts_with("pg_wal/") && p != "postmaster.pid" && !p.starts_with("pg_replslot/"),
            "{p} is in the backup"
        );
    }

    let out = wardenctl_logged(&config, &["backup", "list"]);
    assert!(ok(&out));
    assert!(
        out.stdout.contains(&r.id) && out.stdout.contains(&archiver),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&r.end_lsn), "{}", out.stdout);
    let out = wardenctl_logged(&config, &["backup", "list", "--json"]);
    assert!(ok(&out));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["backups"][0]["id"], r.id.as_str());
    assert_eq!(v["backups"][0]["member"], archiver.as_str());
    assert_eq!(v["backups"][0]["size"], r.size);
    assert_eq!(v["backups"][0]["end_wal"], r.end_wal.as_str());
    assert_eq!(v["system_identifier"], sysid.to_string());

    // `GET /backup` on the archiver reports the committed backup.
    let status = http::get(&format!("{}/backup", cluster.node(archiver_node).api_url()))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["last"]["id"], r.id.as_str());
    assert_eq!(status["last"]["ok"], true);
    assert_eq!(status["running"], false);

    // wardenctl with a config that has no backup section says what is missing.
    let bare = work.path().join("bare.yml");
    std::fs::write(
        &bare,
        format!(
            "scope: {}\netcd3:\n  hosts: {}\n",
            cluster.scope(),
            cluster.node(0).config().etcd_hosts
        ),
    )
    .unwrap();
    let out = wardenctl_logged(&bare, &["backup", "list"]);
    assert!(!ok(&out));
    assert!(out.stderr.contains("no backup section"), "{}", out.stderr);
    drop(writer);
}

/// A table of about 120 bytes per row. The kit's statement timeout is lifted: a
/// large insert on a busy machine may take longer.
fn fill(port: u16, rows: u64) {
    sql::connect(port)
        .unwrap()
        .batch_execute(&format!(
            "SET statement_timeout = 0; CREATE TABLE filler AS SELECT g, md5(g::text) || \
             md5((g + 1)::text) AS t FROM generate_series(1, {rows}) g"
        ))
        .unwrap();
}

/// Every object (file) under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Waits for a replica to hold the archiver key and report archiving; its index.
fn wait_archiver_replica(cluster: &Cluster, not: &[&str]) -> usize {
    wait_until(ARCHIVER_TIMEOUT, "a replica archives", || {
        let name = archiver_key(cluster)?;
        let i = cluster.index_of(&name)?;
        let p = cluster.node(i).patroni()?;
        (!not.contains(&name.as_str()) && p.role == "replica" && p.is_archiver()).then_some(i)
    })
}

#[test]
fn a_backup_whose_wal_does_not_arrive_fails_and_leaves_nothing() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let yaml = format!("{yaml}  wal_wait_timeout: 3s\n");
    let cluster = Cluster::start(backup_spec(2, yaml)).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let archiver = wait_archiver_replica(&cluster, &[]);
    let config = cluster.node(0).config_path();
    // The archive loses every complete segment (the archiver never uploads one twice),
    // so the first segment the backup needs — where the last checkpoint began — never
    // arrives. A checkpoint now, then a segment switch, puts that start in a segment
    // that is complete (and archived) before the archive is emptied; without them the
    // last checkpoint may lie in the current segment, which is archived only later.
    let sysid = cluster.node(archiver).system_identifier().unwrap();
    let wal = repo.join(cluster.scope()).join(&sysid).join("wal");
    let primary = cluster.primary_index().unwrap();
    let pport = cluster.node(primary).pg_port();
    sql::execute(pport, "CHECKPOINT").unwrap();
    let switched = sql::query_text(pport, "SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap()
        .unwrap();
    wait_until(ARCHIVER_TIMEOUT, "every complete segment archived", || {
        files_under(&wal)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .any(|n| n.len() == 24 && segno(&n) >= segno(&switched))
            .then_some(())
    });
    std::fs::remove_dir_all(&wal).unwrap();
    let out = wardenctl_logged(&config, &["backup", "create"]);
    assert!(!ok(&out), "the backup must fail");
    assert!(
        out.stderr.contains("was not archived within 3s")
            && out.stderr.contains("WAL segment 0000000"),
        "{}",
        out.stderr
    );
    let status = http::get(&format!("{}/backup", cluster.node(archiver).api_url()))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["last"]["ok"], false, "{status}");
    let backups = repo.join(cluster.scope()).join(&sysid).join("backups");
    assert_eq!(
        files_under(&backups),
        Vec::<PathBuf>::new(),
        "leftovers deleted"
    );
    let out = wardenctl_logged(&config, &["backup", "list", "--json"]);
    assert!(ok(&out));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["backups"], serde_json::json!([]), "no record");
}

#[test]
fn scheduled_backups_run_on_the_archiver_and_follow_the_key() {
    let work = WorkDir::temp().unwrap();
    let (_repo, yaml) = repository(work.path()).unwrap();
    let yaml = format!("{yaml}  schedule: \"*/10 * * * * *\"\n");
    let (mut cluster, _) = start_formed(3, yaml, FORM_TIMEOUT);
    let first = wait_archiver_replica(&cluster, &[]);
    let first_name = cluster.node(first).name().to_string();
    let config = cluster.node(0).config_path();
    let sysid: u64 = cluster
        .node(first)
        .system_identifier()
        .unwrap()
        .parse()
        .unwrap();
    let check = Check::new(&config, cluster.scope(), sysid);
    wait_until(
        SCHEDULE_TIMEOUT,
        "a scheduled backup by the archiver",
        || {
            check
                .backups()
                .iter()
                .any(|b| b.member == first_name)
                .then_some(())
        },
    );

    // The archiver gives the key up: its schedule stops, the next archiver's runs.
    let node = cluster.node_mut(first);
    node.config_mut()
        .tags
        .insert("noarchive".into(), true.into());
    node.write_config().unwrap();
    let reload = http::post_json(
        &format!("{}/reload", node.api_url()),
        &serde_json::json!({}),
    )
    .unwrap();
    assert!(reload.status < 300, "{}", reload.body);
    let second = wait_archiver_replica(&cluster, &[&first_name]);
    let second_name = cluster.node(second).name().to_string();
    let handed_over = chrono::Utc::now();
    wait_until(
        SCHEDULE_TIMEOUT,
        "a scheduled backup by the next archiver",
        || {
            check
                .backups()
                .iter()
                .any(|b| b.member == second_name)
                .then_some(())
        },
    );
    let late: Vec<String> = check
        .backups()
        .iter()
        .filter(|b| b.member == first_name && b.started_at > handed_over)
        .map(|b| b.id.clone())
        .collect();
    assert!(
        late.is_empty(),
        "{first_name} went on after losing the key: {late:?}"
    );
    let status = http::get(&format!("{}/backup", cluster.node(first).api_url()))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["running"], false, "{status}");
    for b in check.backups() {
        check.verify(&b);
    }
}

#[test]
fn base_backup_on_the_archiver_replica_filesystem() {
    let work = WorkDir::temp().unwrap();
    let repo = work.path().join("repo");
    create_node_dir(&repo).unwrap();
    scenario(&work, &Repo::Fs(repo), "files");
}

#[test]
fn base_backup_on_the_archiver_replica_s3() {
    let work = WorkDir::temp().unwrap();
    let server = S3Server::start(&work.path().join("moto")).unwrap();
    server.create_bucket(BUCKET).unwrap();
    // The other method, so that both are taken, verified and restored (the
    // restore and drill tests use the default).
    scenario(&work, &Repo::S3(server), "pg_basebackup");
}

#[test]
fn losing_the_archiver_key_cancels_a_running_backup_and_cleans_up() {
    let work = WorkDir::temp().unwrap();
    let (repo, yaml) = repository(work.path()).unwrap();
    let mut cluster = Cluster::start(backup_spec(2, yaml)).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let primary = cluster.primary_index().unwrap();
    // Enough data that the backup is still streaming when the key goes.
    fill(cluster.node(primary).pg_port(), 1_500_000);
    let archiver = wait_archiver_replica(&cluster, &[]);
    let api = cluster.node(archiver).api_url();
    let started = http::post_json(&format!("{api}/backup"), &serde_json::json!({})).unwrap();
    assert_eq!(started.status, 202, "{}", started.body);
    let id = started.json().unwrap()["id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(30), "the backup streaming", || {
        let s = http::get(&format!("{api}/backup")).ok()?.json().ok()?;
        (s["phase"] == "streaming" && s["bytes"].as_u64()? > 0).then_some(())
    });

    let node = cluster.node_mut(archiver);
    node.config_mut()
        .tags
        .insert("noarchive".into(), true.into());
    node.write_config().unwrap();
    let reload = http::post_json(&format!("{api}/reload"), &serde_json::json!({})).unwrap();
    assert!(reload.status < 300, "{}", reload.body);

    let last = wait_until(Duration::from_secs(60), "the backup to end", || {
        let s = http::get(&format!("{api}/backup")).ok()?.json().ok()?;
        (s["last"]["id"] == id.as_str()).then(|| s["last"].clone())
    });
    assert_eq!(last["ok"], false, "{last}");
    assert!(
        last["error"].as_str().unwrap_or("").contains("cancelled"),
        "{last}"
    );
    let sysid = cluster.node(archiver).system_identifier().unwrap();
    let dir = repo.join(cluster.scope()).join(&sysid).join("backups");
    assert_eq!(
        files_under(&dir),
        Vec::<PathBuf>::new(),
        "leftovers deleted"
    );
}
