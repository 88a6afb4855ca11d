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

/// Endpoints a request is aimed at, with Patroni's query parameters, so random
/// requests reach the handlers, not only the router's 404.
const PATHS: &[&str] = &[
    "/",
    "/primary",
    "/leader",
    "/replica",
    "/replica?lag=",
    "/read-only?lag=1e400",
    "/standby-leader",
    "/sync",
    "/async",
    "/quorum",
    "/health",
    "/liveness",
    "/readiness?lag=10MB&mode=write",
    "/patroni",
    "/cluster",
    "/history",
    "/config",
    "/failsafe",
    "/metrics",
    "/switchover",
    "/failover",
    "/restart",
    "/reinitialize",
    "/reload",
    "/backup",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "G\u{0}T", "get",
];

/// One request's bytes: a method, a path with random query text, random and
/// malformed headers (Authorization with wrong or broken credentials, lying or huge
/// Content-Length, chunked garbage, control characters, huge values) and a body.
fn raw_request(r: &mut Rng) -> Vec<u8> {
    let method = *r.pick(METHODS);
    let mut path = (*r.pick(PATHS)).to_string();
    if r.below(3) == 0 {
        let sep = if path.contains('?') { '&' } else { '?' };
        path.push(sep);
        path.push_str(&text(r).chars().take(300).collect::<String>());
    }
    let body = match r.below(4) {
        0 => Vec::new(),
        1 => Value::Object(object(r, 3)).to_string().into_bytes(),
        2 => text(r).into_bytes(),
        _ => (0..r.below(2000))
            .map(|_| (r.next() & 0xff) as u8)
            .collect(),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for _ in 0..r.below(6) {
        let line = match r.below(9) {
            0 => format!("Authorization: Basic {}", text(r)),
            1 => "Authorization: Basic d2FyZGVuOndyb25n".to_string(), // warden:wrong
            2 => format!("Authorization: {}", text(r)),
            3 => format!("Content-Length: {}", r.next()),
            4 => format!("Content-Length: {}", body.len() + 10),
            5 => "Transfer-Encoding: chunked".to_string(),
            6 => format!(
                "X-{}: {}",
                r.below(1000),
                "v".repeat(r.below(20_000) as usize)
            ),
            7 => format!("{}: {}", text(r), text(r)),
            _ => "Connection: close".to_string(),
        };
        head.push_str(&line);
        head.push_str("\r\n");
    }
    if r.below(2) == 0 {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend(body);
    bytes
}

/// Random, malformed and unauthenticated requests against a live agent whose REST API
/// requires authentication: every one ends in an answer or a closed connection, the
/// agent keeps answering its health check, and nothing changes (the leader, the
/// `config` key, PostgreSQL's process).
#[test]
fn rest_requests_against_a_live_agent() {
    use std::io::{Read, Write};
    use std::time::Duration;
    use warden_tests::{http, Cluster, ClusterSpec};
    let cluster = Cluster::start(ClusterSpec::new(1).without_haproxy().customize(|_, c| {
        c.set("restapi.authentication.username", "warden")
            .set("restapi.authentication.password", "right-password")
    }))
    .expect("start a one-node cluster");
    cluster.wait_formed(Duration::from_secs(90));
    let node = cluster.node(0);
    let pid = node.postmaster_pid();
    let config_key = format!("{}config", cluster.key_prefix());
    let config_before = cluster.etcd().get(&config_key).unwrap().map(|kv| kv.value);
    let (leader, revision) = cluster.wait_leader(Duration::from_secs(30));
    let addr = format!("127.0.0.1:{}", node.api_port());
    let n = (cases() / 4).max(1);
    let mut r = rng(6);
    let (mut answered, mut closed) = (0u64, 0u64);
    for _ in 0..n {
        let req = raw_request(&mut r);
        let mut s = std::net::TcpStream::connect(&addr).expect("connect to the REST API");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may answer and close before the whole request is written.
        let _ = s.write_all(&req);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut head = [0u8; 12];
        match s.read(&mut head) {
            Ok(k) if k >= 12 && head.starts_with(b"HTTP/1.") => {
                let status = &head[9..12];
                // Never a success on a mutating method: nothing here is authenticated.
                let method = req.split(|b| *b == b' ').next().unwrap_or_default();
                if matches!(method, b"POST" | b"PUT" | b"PATCH" | b"DELETE") {
                    assert_ne!(status[0], b'2', "an unauthenticated write was accepted");
                }
                answered += 1;
            }
            Ok(_) | Err(_) => closed += 1,
        }
    }
    let health = http::get(&format!(
        "{}/health",
        node.api_url().trim_end_matches("/patroni")
    ))
    .expect("the agent still answers");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(
        cluster.wait_leader(Duration::from_secs(10)),
        (leader, revision)
    );
    assert_eq!(node.postmaster_pid(), pid, "PostgreSQL was restarted");
    let config_after = cluster.etcd().get(&config_key).unwrap().map(|kv| kv.value);
    assert_eq!(config_after, config_before, "the config key changed");
    println!(
        "hostile input: REST requests against a live agent: {n} requests ({answered} answered, \
         {closed} closed by the server), 0 panics, nothing changed"
    );
}
