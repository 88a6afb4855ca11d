//! redis-py's Sentinel client against the port (RESP2 and RESP3), pointing at a real
//! `redis-server` primary; then the same client once the view goes stale.
//! Needs redis-py in the project's venv (`deploy/dev-setup.sh` installs it: `$WARDEN_VENV`,
//! else `~/.cache/warden-venv`).

mod sentinel_support;

use std::process::Command;
use std::time::Instant;

use sentinel_support::*;
use warden_redis::sentinel::{Instance, Replica, SentinelConfig, SentinelView};

/// The venv's python, where deploy/dev-setup.sh put redis-py.
fn python() -> std::path::PathBuf {
    let venv = std::env::var_os("WARDEN_VENV").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            std::path::PathBuf::from(home).join(".cache/warden-venv")
        },
        std::path::PathBuf::from,
    );
    venv.join("bin/python")
}

const SCRIPT: &str = r#"
import sys
from redis.sentinel import Sentinel, MasterNotFoundError
port, primary, replica, proto, expect = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = Sentinel([("127.0.0.1", port)], socket_timeout=5, sentinel_kwargs={"protocol": proto, "socket_timeout": 5})
if expect == "stale":
    try:
        s.discover_master("mymaster")
    except MasterNotFoundError:
        print("no master")
    sys.exit(0)
assert s.discover_master("mymaster") == ("127.0.0.1", primary), s.discover_master("mymaster")
assert s.discover_slaves("mymaster") == [("127.0.0.1", replica)], s.discover_slaves("mymaster")
m = s.master_for("mymaster", socket_timeout=5, protocol=proto)
m.set("k", "v%d" % proto)
assert m.get("k") == ("v%d" % proto).encode()
print("ok")
"#;

fn run(port: u16, primary: u16, replica: u16, proto: u8, expect: &str) -> String {
    let out = Command::new(python())
        .args(["-c", SCRIPT])
        .args([
            port.to_string(),
            primary.to_string(),
            replica.to_string(),
            proto.to_string(),
            expect.to_string(),
        ])
        .output()
        .expect("the venv's python with redis-py (run deploy/dev-setup.sh)");
    assert!(
        out.status.success(),
        "redis-py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_discovers_the_primary_and_writes_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (p_port, r_port) = (free_port(), free_port());
    let _primary = redis_server(dir.path(), p_port, &[]);
    let _replica = redis_server(
        dir.path(),
        r_port,
        &["--replicaof", "127.0.0.1", &p_port.to_string()],
    );
    let view = SentinelView {
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
        primary_since: Some(Instant::now()),
        ..SentinelView::unknown("mymaster", "c".repeat(40))
    };
    let port = Port::start(view, SentinelConfig::default()).await;
    let p = port.port;
    for proto in [2, 3] {
        let out = tokio::task::spawn_blocking(move || run(p, p_port, r_port, proto, "ok"))
            .await
            .unwrap();
        assert_eq!(out, "ok", "protocol {proto}");
    }
    port.view.send_modify(|v| v.fresh = false);
    let out = tokio::task::spawn_blocking(move || run(p, p_port, r_port, 3, "stale"))
        .await
        .unwrap();
    assert_eq!(out, "no master");
    port.stop().await;
}
