//! RDB snapshots fetched from real `redis-server`s over the replication protocol,
//! verified, checked against `redis-check-rdb`, restored and loaded by a scratch server.

mod rdb_support;

use std::path::Path;
use std::time::Duration;

use rdb_support::{check_rdb, listing, stamp, value, wait_until, Resp, Server};
use warden_redis::rdb::fetch::Auth;
use warden_redis::rdb::{
    fetch_rdb, restore_rdb, verify_rdb_file, FetchError, FetchOptions, Fetched, RdbError,
    RestoreError, RestoreOptions, Transfer,
};

const KEYS: usize = 50_000;

fn small_value(i: usize) -> Vec<u8> {
    format!("value:{i}").into_bytes()
}

fn opts(server: &Server) -> FetchOptions {
    let mut o = FetchOptions::new("127.0.0.1", server.port);
    o.connect_timeout = Duration::from_secs(5);
    o.idle_timeout = Duration::from_secs(10);
    o.deadline = Duration::from_secs(120);
    o
}

async fn fetch_to(opts: &FetchOptions, path: &Path) -> Result<Fetched, FetchError> {
    let mut file = tokio::fs::File::create(path).await.expect("create");
    fetch_rdb(opts, &mut file).await
}

/// A primary and a replica holding `KEYS` keys; the replica's settings from `args`.
fn pair(replica_args: &[&str]) -> (Server, Server) {
    let primary = Server::start(&[]);
    let replica = Server::replica_of(&primary, replica_args);
    primary.fill(KEYS, small_value);
    wait_until("the replica has every key", Duration::from_secs(30), || {
        replica.dbsize() == KEYS as i64
    });
    (primary, replica)
}

/// A scratch server on the restored directory: every key, and the right values.
fn assert_loads(dir: &Path, keys: usize) {
    let dir_arg = dir.display().to_string();
    let scratch = Server::start(&["--dir", &dir_arg, "--dbfilename", "dump.rdb"]);
    assert!(
        scratch.log().contains("DB loaded from disk"),
        "{}",
        scratch.log()
    );
    assert_eq!(scratch.dbsize(), keys as i64);
    for i in [0, 1, keys / 2, keys - 1] {
        assert_eq!(scratch.get(&format!("key:{i}")), Some(small_value(i)));
    }
    assert_eq!(scratch.get("absent"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diskless_snapshot_from_a_replica_leaves_its_disk_alone_and_restores() {
    let (_primary, replica) = pair(&["--repl-diskless-sync", "yes"]);
    let before = listing(replica.path());
    let dump = replica.path().join("dump.rdb");
    let dump_before = stamp(&dump);

    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("snap.rdb");
    let fetched = fetch_to(&opts(&replica), &file).await.expect("fetched");
    assert_eq!(fetched.transfer, Transfer::Diskless);
    assert_eq!(fetched.version, 10);
    assert_eq!(fetched.bytes, std::fs::metadata(&file).expect("file").len());

    // The replica wrote nothing: same files, and its dump.rdb (from its own initial
    // sync, if any) is the same inode, size and mtime.
    assert_eq!(listing(replica.path()), before);
    assert_eq!(stamp(&dump), dump_before);
    assert!(
        replica.log().contains("replicas sockets"),
        "{}",
        replica.log()
    );

    let summary = verify_rdb_file(&file).expect("verifies");
    assert_eq!((summary.len, summary.crc), (fetched.bytes, fetched.crc));
    let (ok, text) = check_rdb(&file);
    assert!(ok && text.contains("RDB looks OK"), "{text}");

    let data = out.path().join("restored");
    let restored = restore_rdb(&file, &data, RestoreOptions::default()).expect("restored");
    assert_eq!(restored.path, data.join("dump.rdb"));
    assert_eq!(restored.summary, summary);
    assert_eq!(listing(&data), vec![data.join("dump.rdb")]);
    // A second restore into the now non-empty directory is refused unless allowed.
    assert!(matches!(
        restore_rdb(&file, &data, RestoreOptions::default()),
        Err(RestoreError::TargetNotEmpty { .. })
    ));
    restore_rdb(
        &file,
        &data,
        RestoreOptions {
            allow_non_empty: true,
        },
    )
    .expect("allowed");
    assert_loads(&data, KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flipped_byte_is_refused_by_verify_restore_and_redis_check_rdb() {
    let source = Server::start(&[]);
    source.fill(KEYS, small_value);
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("snap.rdb");
    fetch_to(&opts(&source), &file).await.expect("fetched");
    let mut bytes = std::fs::read(&file).expect("read");
    let good_crc = verify_rdb_file(&file).expect("good").crc;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    let bad = out.path().join("flipped.rdb");
    std::fs::write(&bad, &bytes).expect("write");

    let err = verify_rdb_file(&bad).expect_err("refused");
    assert!(
        matches!(err.rdb(), Some(RdbError::ChecksumMismatch { stored, computed })
            if *stored == good_crc && *computed != good_crc),
        "{err}"
    );
    let (ok, text) = check_rdb(&bad);
    assert!(!ok, "redis-check-rdb accepted the flipped file: {text}");
    // Its reason depends on where the byte fell: the CRC at the end, or the structure
    // itself when the flip turned a type or length byte into nonsense first.
    assert!(
        text.contains("CRC") || text.contains("RDB ERROR DETECTED"),
        "{text}"
    );

    let data = out.path().join("restored");
    assert!(matches!(
        restore_rdb(&bad, &data, RestoreOptions::default()),
        Err(RestoreError::Invalid(RdbError::ChecksumMismatch { .. }))
    ));
    assert!(
        !data.exists(),
        "a refused restore leaves no directory behind"
    );
    // Into an existing directory: nothing is left there either.
    std::fs::create_dir(&data).expect("mkdir");
    assert!(restore_rdb(&bad, &data, RestoreOptions::default()).is_err());
    assert!(listing(&data).is_empty());
    assert!(data.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_based_source_sends_a_sized_rdb_written_to_its_own_disk() {
    let (_primary, replica) = pair(&["--repl-diskless-sync", "no"]);
    let dump = replica.path().join("dump.rdb");
    let dump_before = stamp(&dump);
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("snap.rdb");
    let fetched = fetch_to(&opts(&replica), &file).await.expect("fetched");
    assert_eq!(fetched.transfer, Transfer::Sized);
    // Why the agent keeps diskless sync on replicas: this path rewrote dump.rdb.
    assert_ne!(stamp(&dump), dump_before);
    assert!(replica.log().contains("target: disk"), "{}", replica.log());
    assert_eq!(verify_rdb_file(&file).expect("verifies").crc, fetched.crc);
    let (ok, text) = check_rdb(&file);
    assert!(ok, "{text}");
    let data = out.path().join("restored");
    restore_rdb(&file, &data, RestoreOptions::default()).expect("restored");
    assert_loads(&data, KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_bridge_the_diskless_delay() {
    // 7.0's default delay: the source waits 5 s, sending a newline each second.
    let source = Server::start(&["--repl-diskless-sync-delay", "5"]);
    source.fill(100, small_value);
    let mut o = opts(&source);
    o.idle_timeout = Duration::from_secs(3);
    let mut sink = Vec::new();
    let fetched = fetch_rdb(&o, &mut sink).await.expect("fetched");
    assert!(fetched.keepalives >= 2, "{fetched:?}");
    assert_eq!(fetched.bytes, sink.len() as u64);
    warden_redis::rdb::verify_rdb(&sink).expect("verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_and_named() {
    let source = Server::start(&["--requirepass", "right"]);
    source.fill(10, small_value);
    let mut o = opts(&source);
    let mut sink = Vec::new();
    assert!(matches!(
        fetch_rdb(&o, &mut sink).await,
        Err(FetchError::AuthRequired { .. })
    ));
    o.auth = Some(Auth {
        username: None,
        password: "wrong".into(),
    });
    let err = fetch_rdb(&o, &mut sink).await.expect_err("wrong password");
    assert!(matches!(err, FetchError::AuthFailed { .. }), "{err}");
    assert!(
        !format!("{o:?}").contains("wrong"),
        "the password is redacted"
    );

    o.auth = Some(Auth {
        username: None,
        password: "right".into(),
    });
    sink.clear();
    fetch_rdb(&o, &mut sink).await.expect("default user");

    // A user with exactly the two commands a snapshot needs.
    let acl = |args: &[&str]| assert_eq!(source.cmd(args), Resp::Simple("OK".into()));
    acl(&["ACL", "SETUSER", "snap", "on", ">pw", "+replconf", "+sync"]);
    acl(&["ACL", "SETUSER", "nosync", "on", ">pw", "+replconf"]);
    o.auth = Some(Auth {
        username: Some("snap".into()),
        password: "pw".into(),
    });
    sink.clear();
    fetch_rdb(&o, &mut sink).await.expect("snap user");
    o.auth = Some(Auth {
        username: Some("nosync".into()),
        password: "pw".into(),
    });
    let err = fetch_rdb(&o, &mut sink).await.expect_err("no +sync");
    assert!(
        matches!(&err, FetchError::Refused { command: "SYNC", message, .. } if message.starts_with("NOPERM")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_its_primary_refuses_and_nothing_listens_is_named() {
    // A replica of a port nobody listens on: its link never comes up.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let replica = Server::start(&["--replicaof", "127.0.0.1", &dead_port.to_string()]);
    let mut sink = Vec::new();
    let err = fetch_rdb(&opts(&replica), &mut sink)
        .await
        .expect_err("no link");
    assert!(
        matches!(&err, FetchError::Refused { command: "SYNC", message, .. } if message.starts_with("NOMASTERLINK")),
        "{err}"
    );
    let err = fetch_rdb(&FetchOptions::new("127.0.0.1", dead_port), &mut sink)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, FetchError::Connect { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_on_a_larger_dataset() {
    const N: usize = 48_000;
    const LEN: usize = 1024;
    let source = Server::start(&[]);
    source.fill(N, |i| value(i, LEN));
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("big.rdb");
    let fetched = fetch_to(&opts(&source), &file).await.expect("fetched");
    let mib = fetched.bytes as f64 / (1024.0 * 1024.0);
    eprintln!(
        "fetched {mib:.1} MiB ({N} keys of {LEN} bytes) in {:?}: {:.0} MiB/s, {:?}",
        fetched.duration,
        mib / fetched.duration.as_secs_f64(),
        fetched.transfer
    );
    assert!(fetched.bytes > (N * LEN / 2) as u64, "{fetched:?}");
    assert_eq!(verify_rdb_file(&file).expect("verifies").crc, fetched.crc);
    let scratch_dir = out.path().join("restored");
    restore_rdb(&file, &scratch_dir, RestoreOptions::default()).expect("restored");
    let dir_arg = scratch_dir.display().to_string();
    let scratch = Server::start(&["--dir", &dir_arg]);
    assert_eq!(scratch.dbsize(), N as i64);
    assert_eq!(scratch.get("key:4711"), Some(value(4711, LEN)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_checksums_is_refused() {
    let source = Server::start(&["--rdbchecksum", "no"]);
    source.fill(100, small_value);
    let err = fetch_rdb(&opts(&source), &mut Vec::new())
        .await
        .expect_err("unchecked");
    assert!(
        matches!(
            err,
            FetchError::Rdb {
                source: RdbError::ChecksumDisabled { .. },
                ..
            }
        ),
        "{err}"
    );
}
