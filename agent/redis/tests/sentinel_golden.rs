//! Golden tests: the same raw RESP requests to a real `redis-server --sentinel` (7.0)
//! monitoring a real primary and replica, and to Warden's port fed a view of the same
//! topology; replies must be equal byte for byte once values that legitimately differ
//! (timings, offsets, connection ids, Sentinel's own id) are masked.
#![allow(clippy::too_many_lines)]

mod sentinel_support;

use std::time::Instant;

use sentinel_support::*;
use warden_redis::sentinel::{Instance, Replica, SentinelConfig, SentinelView};

/// Record fields whose values are timings or counters.
const VOLATILE: [&str; 10] = [
    "last-ok-ping-reply",
    "last-ping-reply",
    "last-ping-sent",
    "info-refresh",
    "role-reported-time",
    "last-hello-message",
    "slave-repl-offset",
    "link-refcount",
    "id",
    "s-down-time",
];

/// Masks volatile values: record fields by key, and all of `INFO` except its `# Sentinel`
/// section and the section and key names.
fn normalise(v: Value) -> Value {
    match v {
        Value::Agg(t, items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut mask_next = false;
            for (i, item) in items.into_iter().enumerate() {
                if mask_next {
                    out.push(match item {
                        Value::Bulk(_) => Value::Bulk(Some(b"<v>".to_vec())),
                        Value::Line(t, _) => Value::Line(t, "<v>".into()),
                        other => other,
                    });
                    mask_next = false;
                    continue;
                }
                mask_next = i % 2 == 0
                    && matches!(&item, Value::Bulk(Some(k)) if VOLATILE.iter().any(|v| v.as_bytes() == k.as_slice()));
                out.push(normalise(item));
            }
            Value::Agg(t, out)
        }
        Value::Bulk(Some(b)) if b.starts_with(b"# ") => Value::Bulk(Some(mask_info(&b))),
        other => other,
    }
}

fn mask_info(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut out = String::new();
    let mut in_sentinel = false;
    for line in text.split("\r\n") {
        if line.starts_with('#') {
            in_sentinel = line == "# Sentinel";
        }
        match line.split_once(':') {
            Some((k, v)) if in_sentinel || k == "redis_version" || k == "redis_mode" => {
                out.push_str(&format!("{k}:{v}\r\n"));
            }
            Some((k, _)) => out.push_str(&format!("{k}:<v>\r\n")),
            None => out.push_str(&format!("{line}\r\n")),
        }
    }
    out.into_bytes()
}

/// A top-level integer is only ever `CLIENT ID`: a connection counter.
fn top_level(v: Value) -> Value {
    match v {
        Value::Line(b':', _) => Value::Line(b':', "<id>".into()),
        other => other,
    }
}

/// One step: a request (argument list, or raw bytes) and how many replies it gets.
enum Step {
    Cmd(&'static [&'static str], usize),
    Raw(&'static [u8], usize),
}
use Step::{Cmd, Raw};

/// Runs `steps` on a fresh connection to each server and compares the replies.
fn compare(real: u16, ours: u16, script: &str, steps: &[Step]) {
    let mut a = Client::connect(real);
    let mut b = Client::connect(ours);
    for (i, step) in steps.iter().enumerate() {
        let (bytes, n) = match step {
            Cmd(args, n) => (encode(args), *n),
            Raw(bytes, n) => (bytes.to_vec(), *n),
        };
        a.send_raw(&bytes);
        b.send_raw(&bytes);
        for k in 0..n {
            let (ra, rb) = (a.reply(), b.reply());
            let (na, nb) = (
                top_level(normalise(parse(&ra))),
                top_level(normalise(parse(&rb))),
            );
            assert_eq!(
                na,
                nb,
                "{script} step {i} reply {k} ({:?})\nreal: {}\nours: {}",
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&ra),
                String::from_utf8_lossy(&rb)
            );
        }
    }
}

const LOOKUPS: [Step; 25] = [
    Cmd(&["PING"], 1),
    Cmd(&["PING", "hi"], 1),
    Cmd(&["ping", "a", "b"], 1),
    Cmd(&["ROLE"], 1),
    Cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"], 1),
    Cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"], 1),
    Cmd(&["SENTINEL", "get-master-addr-by-name"], 1),
    Cmd(&["SENTINEL", "masters"], 1),
    Cmd(&["SENTINEL", "masters", "x"], 1),
    Cmd(&["SENTINEL", "master", "mymaster"], 1),
    Cmd(&["SENTINEL", "master", "nope"], 1),
    Cmd(&["SENTINEL", "replicas", "mymaster"], 1),
    Cmd(&["SENTINEL", "slaves", "mymaster"], 1),
    Cmd(&["SENTINEL", "replicas", "nope"], 1),
    Cmd(&["SENTINEL", "sentinels", "mymaster"], 1),
    Cmd(&["SENTINEL", "sentinels", "nope"], 1),
    Cmd(&["SENTINEL", "ckquorum", "mymaster"], 1),
    Cmd(&["SENTINEL", "ckquorum", "nope"], 1),
    Cmd(&["SENTINEL", "ckquorum"], 1),
    Cmd(&["sentinel", "foo"], 1),
    Cmd(&["SENTINEL"], 1),
    Cmd(&["INFO", "sentinel"], 1),
    Cmd(&["INFO", "bogus"], 1),
    Cmd(&["INFO"], 1),
    Cmd(&["INFO", "Clients", "cpu"], 1),
];

const OTHERS: [Step; 21] = [
    Cmd(&["FOO"], 1),
    Cmd(&["GET", "x"], 1),
    Cmd(&["QUIT"], 1),
    Cmd(&["PUBLISH", "a", "b"], 1),
    Cmd(&["PUBLISH", "a"], 1),
    Cmd(&["AUTH", "x"], 1),
    Cmd(&["AUTH", "a", "b"], 1),
    Cmd(&["AUTH", "default", "anything"], 1),
    Cmd(&["AUTH", "a", "b", "c"], 1),
    Cmd(&["AUTH"], 1),
    Cmd(&["CLIENT", "SETNAME", "x"], 1),
    Cmd(&["CLIENT", "GETNAME"], 1),
    Cmd(&["CLIENT", "SETNAME", "a b"], 1),
    Cmd(&["CLIENT", "SETINFO", "lib-name", "x"], 1),
    Cmd(&["CLIENT", "SETNAME"], 1),
    Cmd(&["client"], 1),
    Cmd(&["CLIENT", "ID"], 1),
    Cmd(&["HELLO", "4"], 1),
    Cmd(&["HELLO", "abc"], 1),
    Cmd(&["HELLO", "3", "FOO"], 1),
    Cmd(&["HELLO"], 1),
];

const PUBSUB: [Step; 13] = [
    Cmd(&["SUBSCRIBE", "a", "b"], 2),
    Cmd(&["SUBSCRIBE", "a"], 1),
    Cmd(&["PSUBSCRIBE", "*"], 1),
    Cmd(&["PING"], 1),
    Cmd(&["PING", "x"], 1),
    Cmd(&["ROLE"], 1),
    Cmd(&["SENTINEL", "masters"], 1),
    Cmd(&["GET", "y"], 1),
    Cmd(&["UNSUBSCRIBE", "a"], 1),
    Cmd(&["PUNSUBSCRIBE"], 1),
    Cmd(&["UNSUBSCRIBE"], 1),
    Cmd(&["UNSUBSCRIBE"], 1),
    Cmd(&["PUNSUBSCRIBE", "p", "q"], 2),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_match_a_real_sentinel() {
    let dir = tempfile::tempdir().unwrap();
    let (p_port, r_port, s1, s2, s3) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _primary = redis_server(dir.path(), p_port, &[]);
    let _replica = redis_server(
        dir.path(),
        r_port,
        &["--replicaof", "127.0.0.1", &p_port.to_string()],
    );
    let monitor = format!("sentinel monitor mymaster 127.0.0.1 {p_port} 1\nsentinel down-after-milliseconds mymaster 5000\n");
    let _s1 = sentinel_server(dir.path(), s1, &monitor);
    let _s2 = sentinel_server(dir.path(), s2, &monitor);
    // A third Sentinel with a password, watching the primary under another name (so the
    // first two do not count it), for the authentication steps.
    let _s3 = sentinel_server(
        dir.path(),
        s3,
        &format!("requirepass sekret\nsentinel monitor other 127.0.0.1 {p_port} 1\n"),
    );
    // The real Sentinel needs a few seconds to find the replica and its peer.
    wait_for(|| {
        let mut c = Client::connect(s1);
        let master = parse(&c.cmd(&["SENTINEL", "master", "mymaster"]));
        let replicas = parse(&c.cmd(&["SENTINEL", "replicas", "mymaster"]));
        let replica = match &replicas {
            Value::Agg(_, items) if items.len() == 1 => items[0].clone(),
            _ => return false,
        };
        field(&master, "num-other-sentinels").as_deref() == Some("1")
            && field(&master, "flags").as_deref() == Some("master")
            && field(&replica, "flags").as_deref() == Some("slave")
            && field(&replica, "master-link-status").as_deref() == Some("ok")
    });
    let s2_id = String::from_utf8(Client::connect(s2).cmd(&["SENTINEL", "myid"])).unwrap();
    let s2_id = s2_id.lines().nth(1).unwrap().to_string();

    let view = SentinelView {
        master_name: "mymaster".into(),
        fresh: true,
        primary: Some(Instance {
            ip: "127.0.0.1".into(),
            port: p_port,
            run_id: run_id(p_port),
        }),
        replicas: vec![Replica {
            instance: Instance {
                ip: "127.0.0.1".into(),
                port: r_port,
                run_id: run_id(r_port),
            },
            offset: 0,
            link_up: true,
            reachable: true,
            priority: 100,
        }],
        sentinels: vec![Instance {
            ip: "127.0.0.1".into(),
            port: s2,
            run_id: s2_id,
        }],
        my_id: "0".repeat(40),
        epoch: 0,
        quorum: 1,
        down_after_ms: 5000,
        failover_timeout_ms: 180_000,
        refreshed_at: Instant::now(),
        primary_since: Some(Instant::now()),
    };
    let ours = Port::start(view.clone(), SentinelConfig::default()).await;
    let locked = Port::start(
        SentinelView {
            master_name: "other".into(),
            ..view
        },
        SentinelConfig {
            password: Some("sekret".into()),
            ..SentinelConfig::default()
        },
    )
    .await;
    let port = ours.port;
    let locked_port = locked.port;
    tokio::task::spawn_blocking(move || {
        compare(s1, port, "RESP2 lookups", &LOOKUPS);
        compare(s1, port, "RESP2 others", &OTHERS);
        let mut resp3 = vec![Cmd(&["HELLO", "3"], 1)];
        resp3.extend(LOOKUPS);
        resp3.extend(OTHERS);
        compare(s1, port, "RESP3", &resp3);
        compare(s1, port, "RESP2 pub/sub", &PUBSUB);
        let mut pubsub3 = vec![Cmd(&["HELLO", "3"], 1)];
        pubsub3.extend(PUBSUB);
        compare(s1, port, "RESP3 pub/sub", &pubsub3);
        compare(
            s1,
            port,
            "inline",
            &[
                Raw(b"PING\r\n", 1),
                Raw(b"sentinel get-master-addr-by-name mymaster\r\n", 1),
                Raw(b"\r\n*0\r\nPING a\r\n", 1),
            ],
        );
        compare(s1, port, "unbalanced quotes", &[Raw(b"ping \"open\r\n", 1)]);
        compare(s1, port, "bad bulk length", &[Raw(b"*1\r\n$-1\r\n", 1)]);
        compare(
            s1,
            port,
            "bad multibulk length",
            &[Raw(b"*1\r\n$4\r\nPING\r\n*x\r\n", 2)],
        );
        compare(
            s3,
            locked_port,
            "password",
            &[
                Cmd(&["PING"], 1),
                Cmd(&["SENTINEL", "masters"], 1),
                Cmd(&["FOO"], 1),
                Cmd(&["SENTINEL", "nope"], 1),
                Cmd(&["HELLO"], 1),
                Cmd(&["HELLO", "3"], 1),
                Cmd(&["SUBSCRIBE", "x"], 1),
                Cmd(&["CLIENT", "SETNAME", "x"], 1),
                Cmd(&["AUTH", "wrong"], 1),
                Cmd(&["AUTH", "default", "wrong"], 1),
                Cmd(&["HELLO", "3", "AUTH", "default", "wrong"], 1),
                Cmd(&["AUTH", "sekret"], 1),
                Cmd(&["PING"], 1),
            ],
        );
        compare(
            s3,
            locked_port,
            "HELLO AUTH",
            &[
                Cmd(
                    &["HELLO", "3", "AUTH", "default", "sekret", "SETNAME", "me"],
                    1,
                ),
                Cmd(&["CLIENT", "GETNAME"], 1),
                Cmd(&["PING"], 1),
            ],
        );
    })
    .await
    .unwrap();
    ours.stop().await;
    locked.stop().await;
}

#[test]
fn protocol_errors_close_the_connection_on_both() {
    // Checked against the real Sentinel above for the reply; here the close on ours.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = rt.block_on(Port::start(
        SentinelView::unknown("m", "0".repeat(40)),
        SentinelConfig::default(),
    ));
    let p = port.port;
    let rest = std::thread::spawn(move || {
        let mut c = Client::connect(p);
        c.send_raw(b"*1\r\n$-1\r\nPING\r\n");
        c.read_to_close()
    })
    .join()
    .unwrap();
    assert_eq!(rest, b"-ERR Protocol error: invalid bulk length\r\n");
    rt.block_on(port.stop());
}
