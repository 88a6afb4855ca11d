//! Hostile input, a bounded number of seeded random cases per target (run in CI): every
//! parser of outside input must end in a value or a named error, never a panic, and
//! (for the restore) never write outside its directory.
//!
//! Targets: the member YAML, the dynamic config and every key of a cluster snapshot
//! (wrong types, huge and deeply nested values, control characters, invalid UTF-8),
//! the REST request bodies, the restore's tar reader and the backup codec's opener.
//! `HOSTILE_CASES` raises the count (default 2000 per target); `HOSTILE_SEED` changes
//! the seed. Each target prints how many inputs it tried.

use serde_json::{json, Map, Value};

/// splitmix64: small, seeded, good enough to spread inputs; no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        // `below` is < len, which fits usize.
        &items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }
}

fn cases() -> u64 {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn rng(target: u64) -> Rng {
    let seed: u64 = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    Rng(seed.wrapping_mul(1_000_003).wrapping_add(target))
}

/// Keys the parsers know, so random documents reach their code, not just "unknown key".
const KEYS: &[&str] = &[
    "ttl",
    "loop_wait",
    "retry_timeout",
    "maximum_lag_on_failover",
    "synchronous_mode",
    "synchronous_node_count",
    "pause",
    "failsafe_mode",
    "postgresql",
    "parameters",
    "pg_hba",
    "use_slots",
    "use_pg_rewind",
    "slots",
    "ignore_slots",
    "recovery_conf",
    "master_start_timeout",
    "primary_start_timeout",
    "standby_cluster",
    "scope",
    "name",
    "restapi",
    "listen",
    "connect_address",
    "authentication",
    "username",
    "password",
    "etcd3",
    "hosts",
    "host",
    "bootstrap",
    "dcs",
    "initdb",
    "method",
    "tags",
    "nofailover",
    "failover_priority",
    "replicatefrom",
    "nostream",
    "log",
    "level",
    "format",
    "dir",
    "watchdog",
    "mode",
    "safety_margin",
    "data_dir",
    "bin_dir",
    "backup",
    "repository",
    "leader",
    "candidate",
    "member",
    "scheduled_at",
    "schedule",
    "role",
    "timeout",
    "postgres_version",
    "restart_pending",
    "force",
    "from_leader",
    "api_url",
    "conn_url",
    "state",
    "xlog_location",
    "timeline",
    "sync_standby",
    "optime",
    "type",
    "database",
    "plugin",
    "command",
    "keep_data",
    "no_params",
    "create_replica_methods",
];

fn text(r: &mut Rng) -> String {
    match r.below(8) {
        0 => String::new(),
        1 => "x".repeat(usize::try_from(r.below(200_000)).unwrap_or(0)),
        2 => "a\nb\r\u{0}c\u{7f}\u{1b}[31m".into(),
        3 => (*r.pick(&[
            "on", "off", "true", "yes", "0", "-1", "1e400", "NaN", "quorum",
        ]))
        .into(),
        4 => "2030-01-01T00:00:00+00:00".into(),
        5 => "postgres://h:1/x".into(),
        6 => (*r.pick(KEYS)).into(),
        _ => (0..r.below(40))
            .map(|_| char::from_u32(u32::try_from(r.below(0x3000)).unwrap_or(0x41)).unwrap_or('?'))
            .collect(),
    }
}

fn value(r: &mut Rng, depth: u32) -> Value {
    let leaf = depth == 0 || r.below(3) == 0;
    match if leaf { r.below(6) } else { 6 + r.below(3) } {
        0 => Value::Null,
        1 => json!(r.below(2) == 0),
        2 => json!(r.next()),
        3 => json!(-(i64::try_from(r.below(1 << 62)).unwrap_or(0))),
        4 => json!(f64::from(u32::try_from(r.below(1 << 31)).unwrap_or(0)) / 7.0),
        5 => Value::String(text(r)),
        6 => Value::Array((0..r.below(5)).map(|_| value(r, depth - 1)).collect()),
        // Deep nesting: a chain much deeper than any config.
        7 if r.below(10) == 0 => (0..r.below(200)).fold(json!(1), |v, _| json!([v])),
        _ => Value::Object(object(r, depth - 1)),
    }
}

fn object(r: &mut Rng, depth: u32) -> Map<String, Value> {
    (0..r.below(8))
        .map(|_| {
            let k = if r.below(4) == 0 {
                text(r)
            } else {
                (*r.pick(KEYS)).to_string()
            };
            (k, value(r, depth))
        })
        .collect()
}

#[test]
fn member_configuration() {
    let mut r = rng(1);
    let n = cases();
    for _ in 0..n {
        let doc = Value::Object(object(&mut r, 4));
        // JSON is YAML: the member file's parser sees every shape.
        let _ = warden_config::parse(&doc.to_string());
        if r.below(4) == 0 {
            let bytes: Vec<u8> = (0..r.below(300))
                .map(|_| u8::try_from(r.below(256)).unwrap_or(0))
                .collect();
            let _ = warden_config::parse(&String::from_utf8_lossy(&bytes));
        }
    }
    println!("hostile input: member configuration: {n} documents, 0 panics");
}

#[test]
fn dynamic_config_and_every_cluster_key() {
    use warden_consensus::{Cluster, DynamicConfig, KeyValue, Keys, Snapshot};
    let mut r = rng(2);
    let keys = Keys::new("service", "demo");
    let names = [
        "config",
        "leader",
        "members/a",
        "members/b",
        "sync",
        "failover",
        "history",
        "status",
        "failsafe",
        "initialize",
        "warden/archiver",
        "optime/leader",
    ];
    let n = cases();
    for i in 0..n {
        let v = value(&mut r, 5);
        if let Ok(c) = DynamicConfig::from_json(&v) {
            // What parsed obeys the rule the agents rely on.
            assert!(
                c.ttl >= 3 && c.loop_wait >= 1 && c.retry_timeout >= 1,
                "{v}"
            );
            assert!(u64::from(c.loop_wait) + 2 * u64::from(c.retry_timeout) <= u64::from(c.ttl));
        }
        let _ = DynamicConfig::from_dcs_json(&v);
        let kvs = (0..r.below(12))
            .map(|j| {
                let value = match r.below(3) {
                    0 => value(&mut r, 4).to_string().into_bytes(),
                    1 => (0..r.below(64))
                        .map(|_| u8::try_from(r.below(256)).unwrap_or(0))
                        .collect(),
                    _ => text(&mut r).into_bytes(),
                };
                KeyValue {
                    key: format!("{}{}", keys.prefix(), r.pick(&names)),
                    value,
                    create_revision: i64::try_from(j).unwrap_or(0),
                    mod_revision: i64::try_from(i).unwrap_or(0),
                    lease: 0,
                }
            })
            .collect();
        let c = Cluster::from_snapshot(&keys, &Snapshot { revision: 1, kvs });
        let _ = (c.dynamic_config(), c.timeline(), c.is_paused());
    }
    println!(
        "hostile input: dynamic config and cluster keys: {n} values and {n} snapshots, 0 panics"
    );
}

#[test]
fn rest_request_bodies() {
    use warden_api::{FailsafeRequest, ReinitializeRequest, RestartRequest, SwitchoverRequest};
    let mut r = rng(3);
    let n = cases();
    for _ in 0..n {
        let m = object(&mut r, 3);
        let _ = SwitchoverRequest::try_from(m.clone());
        if let Ok(req) = RestartRequest::try_from(m.clone()) {
            // Whatever was accepted yields a bounded timeout.
            if let Some(t) = req.timeout_duration() {
                assert!(t <= warden_api::requests::MAX_RESTART_TIMEOUT);
            }
            let _ = req.postgres_version_num();
        }
        let _ = ReinitializeRequest::try_from(m.clone());
        let _ = FailsafeRequest::try_from(m);
    }
    println!("hostile input: REST request bodies: {n} objects x 4 request kinds, 0 panics");
}

#[test]
fn restore_tar_reader() {
    use warden_backup::restore::extract::extract;
    let mut r = rng(4);
    let n = cases() / 4;
    // A valid archive to mutate: a directory, a file, a tablespace link.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(3);
    b.append_data(&mut h, "PG_VERSION", &b"15\n"[..]).unwrap();
    let mut l = tar::Header::new_gnu();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    b.append_link(&mut l, "pg_tblspc/16384", "/srv/ts").unwrap();
    let base = b.into_inner().unwrap();
    let outside = tempfile::tempdir().unwrap();
    for _ in 0..n {
        let mut bytes = base.clone();
        for _ in 0..r.below(8) {
            let at = usize::try_from(r.below(bytes.len() as u64)).unwrap_or(0);
            bytes[at] = u8::try_from(r.below(256)).unwrap_or(0);
        }
        if r.below(5) == 0 {
            bytes.truncate(usize::try_from(r.below(bytes.len() as u64)).unwrap_or(0));
        }
        let dir = tempfile::tempdir_in(outside.path()).unwrap();
        let _ = extract(&bytes[..], dir.path(), &[]);
    }
    // Nothing landed beside the target directories.
    let stray: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    println!("hostile input: restore tar reader: {n} mutated archives, 0 panics");
}

#[test]
fn backup_codec_opener() {
    use warden_backup::codec::{open_bytes, seal_bytes};
    use warden_backup::key::EncryptionKey;
    let key = EncryptionKey::parse(
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0",
        "test",
    )
    .unwrap();
    let (sealed, _) = seal_bytes(&key, 1, "ctx/object", b"a backup part").unwrap();
    let mut r = rng(5);
    let n = cases();
    let mut opened = 0;
    for _ in 0..n {
        let mut bytes = sealed.clone();
        for _ in 0..=r.below(4) {
            let at = usize::try_from(r.below(bytes.len() as u64)).unwrap_or(0);
            bytes[at] ^= u8::try_from(1 + r.below(255)).unwrap_or(1);
        }
        if r.below(4) == 0 {
            bytes.truncate(usize::try_from(r.below(bytes.len() as u64)).unwrap_or(0));
        }
        if open_bytes(&key, "ctx/object", &bytes).is_ok() {
            opened += 1;
        }
    }
    // Every change to an authenticated object is caught.
    assert_eq!(opened, 0, "a modified object opened");
    println!("hostile input: backup codec: {n} modified objects, all refused, 0 panics");
}
