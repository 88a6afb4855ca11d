//! Self-tests of the kit with real etcd, HAProxy and PostgreSQL, independent
//! of the agent: processes come up, behave as configured, and are gone after
//! drop. The agent is replaced by stand-ins here (fake REST servers behind
//! HAProxy, a shell script that starts PostgreSQL with pg_ctl), so a broken
//! agent cannot hide a broken kit.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::haproxy::Backend;
use warden_tests::process::is_alive;
use warden_tests::workdir::WorkDir;
use warden_tests::{config, ports, wait_until, Etcd, EtcdCluster, Haproxy, Node, NodeConfig};

const T: Duration = Duration::from_secs(20);

#[test]
fn etcd_single_member_serves_keys_and_is_gone_after_drop() {
    let dir = WorkDir::temp().unwrap();
    let etcd = Etcd::start(dir.path()).unwrap();
    let m = etcd.member(0);
    let (pid, port) = (m.pid().unwrap(), m.client_port());
    assert!(m.is_healthy());
    assert_eq!(etcd.hosts(), format!("127.0.0.1:{port}"));

    etcd.put("/service/s/leader", "node1").unwrap();
    etcd.put("/service/s/members/node1", "{\"role\":\"primary\"}")
        .unwrap();
    etcd.put("/service/t/leader", "other").unwrap();
    let kv = etcd.get("/service/s/leader").unwrap().unwrap();
    assert_eq!(kv.value, "node1");
    assert_eq!(kv.lease, 0);
    assert!(kv.create_revision > 0);
    let keys: Vec<String> = etcd
        .get_prefix("/service/s/")
        .unwrap()
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["/service/s/leader", "/service/s/members/node1"]);
    etcd.delete("/service/s/leader").unwrap();
    assert_eq!(etcd.get("/service/s/leader").unwrap(), None);

    drop(etcd);
    assert!(!is_alive(pid), "etcd survived drop");
    assert!(ports::port_is_free(port));
    let path = dir.path().to_path_buf();
    drop(dir);
    assert!(!path.exists(), "temp dir not removed");
}

#[test]
fn etcd_three_members_keep_serving_with_one_down() {
    let dir = WorkDir::temp().unwrap();
    let mut etcd = EtcdCluster::start(dir.path(), 3).unwrap();
    assert_eq!(etcd.hosts().split(',').count(), 3);
    etcd.put("/k", "v1").unwrap();

    etcd.member_mut(0).kill();
    assert!(!etcd.member_mut(0).is_running());
    // The gateway helper falls through to the surviving members (quorum 2/3).
    etcd.put("/k", "v2").unwrap();
    assert_eq!(etcd.get("/k").unwrap().unwrap().value, "v2");

    etcd.member_mut(0).start().unwrap();
    etcd.wait_healthy(T).unwrap();
    let pids: Vec<i32> = etcd.members().iter().filter_map(|m| m.pid()).collect();
    assert_eq!(pids.len(), 3);
    drop(etcd);
    assert!(
        pids.iter().all(|&p| !is_alive(p)),
        "an etcd member survived drop"
    );
}

/// A stand-in for one agent: a REST port answering checks from a shared
/// status table, and a "PostgreSQL" port that sends the node's name.
struct FakeNode {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Accept loop that polls the stop flag.
fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Send + 'static,
) -> JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    handle(s);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

/// Paths answering 200 per node name; everything else is 503.
type Health = Arc<Mutex<Vec<(String, &'static str)>>>;

fn fake_node(name: &str, health: &Health) -> (FakeNode, Backend) {
    let [pg_port, api_port] = ports::free_ports(2).unwrap()[..] else {
        unreachable!()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let pg = TcpListener::bind(("127.0.0.1", pg_port)).unwrap();
    let api = TcpListener::bind(("127.0.0.1", api_port)).unwrap();
    let n = name.to_string();
    let t1 = serve(pg, Arc::clone(&stop), move |mut s| {
        let _ = s.write_all(format!("{n}\n").as_bytes());
    });
    let (n, health) = (name.to_string(), Arc::clone(health));
    let t2 = serve(api, Arc::clone(&stop), move |mut s| {
        let mut buf = [0u8; 1024];
        let len = s.read(&mut buf).unwrap_or(0);
        let req = String::from_utf8_lossy(&buf[..len]);
        let path = req.split_whitespace().nth(1).unwrap_or("");
        let ok = health
            .lock()
            .unwrap()
            .iter()
            .any(|(who, p)| *who == n && *p == path);
        let status = if ok {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        let _ = s.write_all(
            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
    });
    let backend = Backend {
        name: name.to_string(),
        pg_port,
        api_port,
    };
    (
        FakeNode {
            stop,
            threads: vec![t1, t2],
        },
        backend,
    )
}

/// Name of the server HAProxy routed a fresh connection to, if any.
fn routed_to(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let name = out.trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[test]
fn haproxy_routes_writes_to_primary_and_reads_to_replicas() {
    let dir = WorkDir::temp().unwrap();
    let health: Health = Arc::new(Mutex::new(vec![
        ("n1".into(), "/primary"),
        ("n2".into(), "/replica"),
        ("n3".into(), "/replica"),
    ]));
    let (fakes, backends): (Vec<_>, Vec<_>) = ["n1", "n2", "n3"]
        .iter()
        .map(|n| fake_node(n, &health))
        .unzip();
    let mut h = Haproxy::start(dir.path(), &backends).unwrap();
    let (pid, w, r) = (h.pid(), h.write_port(), h.read_port());

    wait_until(T, "write port routes to n1", || {
        (routed_to(w)? == "n1").then_some(())
    });
    let mut seen = std::collections::BTreeSet::new();
    wait_until(T, "read port balances over n2 and n3", || {
        let name = routed_to(r)?;
        assert_ne!(name, "n1", "read port reached the primary");
        seen.insert(name);
        (seen.len() == 2).then_some(())
    });

    // Failover as HAProxy sees it: n1 stops answering 200 on /primary, n2 starts.
    *health.lock().unwrap() = vec![("n2".into(), "/primary"), ("n3".into(), "/replica")];
    wait_until(T, "write port moves to n2", || {
        (routed_to(w)? == "n2").then_some(())
    });
    wait_until(T, "read port only reaches n3", || {
        let names: Vec<String> = (0..4).filter_map(|_| routed_to(r)).collect();
        (names.len() == 4 && names.iter().all(|n| n == "n3")).then_some(())
    });

    assert!(h.is_running());
    drop(h);
    drop(fakes);
    assert!(!is_alive(pid), "haproxy survived drop");
    assert!(ports::port_is_free(w) && ports::port_is_free(r));
}

/// Run a PostgreSQL tool as the user that must own the data dir.
fn pg_tool(tool: &str, args: &[&str]) {
    let bin = config::pg_bin_dir().join(tool);
    let status = if nix::unistd::Uid::effective().is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&bin)
            .args(args)
            .status()
    } else {
        Command::new(&bin).args(args).status()
    }
    .unwrap();
    assert!(status.success(), "{tool} {args:?} failed: {status}");
}

/// A stand-in agent: starts PostgreSQL through pg_ctl (so the postmaster is
/// not in the agent's process tree) and then just waits, like an agent would.
fn fake_agent(dir: &Path, node: &NodeConfig) -> std::path::PathBuf {
    let script = dir.join("fake-warden");
    let ctl = config::pg_bin_dir().join("pg_ctl");
    let as_pg = if nix::unistd::Uid::effective().is_root() {
        "runuser -u postgres --"
    } else {
        ""
    };
    let text = format!(
        "#!/bin/sh\nset -e\n{as_pg} {ctl} -D {data} -l {nd}/pg.log -w -o '-p {port} -k {nd} -c listen_addresses=127.0.0.1' start\necho fake-agent-ready\nexec sleep 600\n",
        ctl = ctl.display(),
        data = node.data_dir().display(),
        nd = node.node_dir.display(),
        port = node.pg_port,
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[test]
fn node_kill_and_drop_also_kill_a_postmaster_outside_the_agent_tree() {
    let dir = WorkDir::temp().unwrap();
    let [pg_port, api_port] = ports::free_ports(2).unwrap()[..] else {
        unreachable!()
    };
    let cfg = NodeConfig::new(
        "node1",
        &dir.path().join("node1"),
        pg_port,
        api_port,
        "127.0.0.1:1",
    );
    let script = fake_agent(dir.path(), &cfg);
    let mut node = Node::create(cfg, &script).unwrap();
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(node.config_path()).unwrap()).unwrap();
    assert_eq!(
        yaml["postgresql"]["listen"],
        format!("127.0.0.1:{pg_port}").as_str()
    );
    let data = node.data_dir();
    pg_tool(
        "initdb",
        &[
            "-D",
            data.to_str().unwrap(),
            "--auth=trust",
            "-U",
            "postgres",
        ],
    );

    node.start().unwrap();
    let pm = wait_until(T, "postmaster started by the fake agent", || {
        node.postmaster_pid()
    });
    wait_until(T, "postmaster accepts", || {
        ports::accepts(pg_port).then_some(())
    });
    node.kill(Signal::SIGKILL).unwrap();
    assert!(!node.is_running());
    assert!(!is_alive(pm), "postmaster survived Node::kill(SIGKILL)");
    // Reaped too: a zombie's pid would still block a new postmaster.
    assert!(
        !Path::new(&format!("/proc/{pm}")).exists(),
        "postmaster not reaped"
    );
    assert!(ports::port_is_free(pg_port));

    // Restart over the stale postmaster.pid, then drop: same guarantee.
    node.start().unwrap();
    let pm = wait_until(T, "postmaster started again", || node.postmaster_pid());
    wait_until(T, "postmaster accepts again", || {
        ports::accepts(pg_port).then_some(())
    });
    let agent = node.pid().unwrap();
    drop(node);
    assert!(!is_alive(pm), "postmaster survived drop");
    assert!(!is_alive(agent), "agent survived drop");
}
