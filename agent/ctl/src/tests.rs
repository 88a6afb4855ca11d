//! Command flows end to end against the in-memory DCS and fake REST APIs on loopback:
//! what is read, what is asked, what is sent (method, path, auth, body), what is
//! printed, what is written to the DCS, and the exit outcome.

use super::args::Cli;
use super::config::CtlConfig;
use super::{io::Io, Ctl, Timing};
use anyhow::Result;
use clap::Parser;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_api::client::BasicAuth;
use warden_consensus::memory::MemoryDcs;
use warden_consensus::{Dcs, Keys};

const P: &str = "/service/demo/";

/// One request a fake API received.
#[derive(Debug, Clone, PartialEq)]
struct Req {
    member: String,
    method: String,
    path: String,
    auth: Option<String>,
    body: Value,
}

type Reply = Pin<Box<dyn Future<Output = (u16, String)> + Send>>;
type Handler = Arc<dyn Fn(Req) -> Reply + Send + Sync>;

/// A REST API that records requests and answers through `handler`.
struct FakeApi {
    url: String,
}

impl FakeApi {
    async fn start(member: &str, log: Arc<Mutex<Vec<Req>>>, handler: Handler) -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/patroni", listener.local_addr().unwrap());
        let member = member.to_string();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (log, handler, member) = (log.clone(), handler.clone(), member.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                        })
                    };
                    let len: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let mut first = head.lines().next().unwrap_or("").split(' ');
                    let req = Req {
                        member,
                        method: first.next().unwrap_or("").to_string(),
                        path: first.next().unwrap_or("").to_string(),
                        auth: header("authorization"),
                        body: serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null),
                    };
                    log.lock().unwrap().push(req.clone());
                    let (status, text) = handler(req).await;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FakeApi { url }
    }
}

fn reply(status: u16, text: &str) -> Reply {
    let text = text.to_string();
    Box::pin(async move { (status, text) })
}

/// An api_url nothing listens on.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/patroni")
}

fn member_json(role: &str, state: &str, api_url: &str, port: u16, extra: Value) -> Value {
    let mut m = json!({
        "conn_url": format!("postgres://127.0.0.1:{port}/postgres"),
        "api_url": api_url, "state": state, "role": role, "version": "4.0.4",
        "timeline": 1, "xlog_location": 50331648
    });
    if let (Some(o), Value::Object(e)) = (m.as_object_mut(), extra) {
        o.extend(e);
    }
    m
}

/// A formed 3-member cluster `demo` (node1 leads) in a fresh in-memory DCS, every
/// member's api_url pointing at its own fake API (or at nothing, per `dead`).
struct Fixture {
    dcs: MemoryDcs,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Fixture {
    async fn new(handler: Handler, dead: &[&str]) -> Fixture {
        let dcs = MemoryDcs::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        put(&dcs, "initialize", "7312345678901234567").await;
        put(
            &dcs,
            "config",
            r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"postgresql":{"parameters":{"work_mem":"4MB"}}}"#,
        )
        .await;
        put(&dcs, "leader", "node1").await;
        for (i, name) in ["node1", "node2", "node3"].into_iter().enumerate() {
            let url = if dead.contains(&name) {
                dead_url()
            } else {
                FakeApi::start(name, log.clone(), handler.clone()).await.url
            };
            let (role, state) = if i == 0 {
                ("primary", "running")
            } else {
                ("replica", "running")
            };
            let extra = if i == 0 {
                json!({})
            } else {
                json!({"replication_state": "streaming"})
            };
            let m = member_json(role, state, &url, 5432 + i as u16, extra);
            put(&dcs, &format!("members/{name}"), &m.to_string()).await;
        }
        Fixture { dcs, log }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    async fn get(&self, rel: &str) -> Option<(String, i64)> {
        let snap = self.dcs.get_prefix(&format!("{P}{rel}")).await.unwrap();
        snap.kvs
            .iter()
            .find(|kv| kv.key == format!("{P}{rel}"))
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.value).to_string(),
                    kv.mod_revision,
                )
            })
    }

    async fn run(&self, args: &[&str], input: &str) -> Outcome {
        let mut input = std::io::Cursor::new(input.as_bytes().to_vec());
        run_with(&self.dcs, args, &mut input).await
    }
}

async fn put(dcs: &MemoryDcs, rel: &str, value: &str) {
    dcs.put(&format!("{P}{rel}"), value.as_bytes().to_vec(), None)
        .await
        .unwrap();
}

#[derive(Debug)]
struct Outcome {
    result: Result<()>,
    out: String,
    err: String,
}

impl Outcome {
    fn error(&self) -> String {
        match &self.result {
            Ok(()) => panic!("expected an error; output:\n{}", self.out),
            Err(e) => format!("{e:#}"),
        }
    }

    fn ok(&self) {
        if let Err(e) = &self.result {
            panic!(
                "{e:#}\n--- out ---\n{}\n--- err ---\n{}",
                self.out, self.err
            );
        }
    }
}

async fn run_with(dcs: &MemoryDcs, args: &[&str], input: &mut dyn std::io::BufRead) -> Outcome {
    let cli = Cli::try_parse_from(std::iter::once("wardenctl").chain(args.iter().copied()))
        .expect("arguments parse");
    let config = CtlConfig {
        scope: Some("demo".into()),
        auth: Some(BasicAuth {
            username: "admin".into(),
            password: "pw".into(),
        }),
        ..CtlConfig::default()
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let result = {
        let mut ctl = Ctl::new(
            config,
            Io {
                out: &mut out,
                err: &mut err,
                input,
            },
        )
        .with_dcs(Arc::new(dcs.clone()));
        ctl.timing = Timing {
            poll: Duration::from_millis(20),
            switchover_deadline: Duration::from_secs(1),
            reinit_deadline: Duration::from_secs(3),
            api_timeout: Duration::from_secs(3),
            action_timeout: Duration::from_secs(3),
        };
        ctl.editor = Some("false".into());
        ctl.run(cli.command).await
    };
    Outcome {
        result,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn always(status: u16, text: &'static str) -> Handler {
    Arc::new(move |_| reply(status, text))
}

fn basic_admin() -> String {
    BasicAuth {
        username: "admin".into(),
        password: "pw".into(),
    }
    .header_value()
}

#[tokio::test]
async fn list_reads_the_dcs_and_prints_json_rows() {
    let f = Fixture::new(always(200, "{}"), &[]).await;
    let o = f.run(&["list", "-f", "json"], "").await;
    o.ok();
    let rows: Vec<Value> = serde_json::from_str(o.out.trim()).unwrap();
    let roles: Vec<&str> = rows.iter().map(|r| r["Role"].as_str().unwrap()).collect();
    assert_eq!(roles, vec!["Leader", "Replica", "Replica"]);
    assert!(rows[1..].iter().all(|r| r["State"] == "streaming"));
    assert!(f.requests().is_empty(), "list must not call the REST API");
    let o = f.run(&["history", "-f", "json"], "").await;
    o.ok();
    assert_eq!(o.out.trim(), "[]");
    let o = f.run(&["list", "nosuch"], "").await;
    o.ok();
    assert!(
        o.err.contains("no keys under /service/nosuch/"),
        "{}",
        o.err
    );
    let o = f.run(&["show-config", "nosuch"], "").await;
    assert!(
        o.error().contains("cluster \"nosuch\" not found"),
        "{}",
        o.error()
    );
}

#[tokio::test]
async fn edit_config_sets_validates_and_writes_by_cas() {
    let f = Fixture::new(always(200, ""), &[]).await;
    let (_, rev0) = f.get("config").await.unwrap();

    let o = f
        .run(&["edit-config", "-s", "ttl=abc", "--force"], "")
        .await;
    let e = o.error();
    assert!(e.contains("ttl: expected an integer, got \"abc\""), "{e}");
    assert_eq!(
        f.get("config").await.unwrap().1,
        rev0,
        "nothing may be written"
    );

    let o = f
        .run(
            &[
                "edit-config",
                "-s",
                "loop_wait=3",
                "-p",
                "work_mem=8MB",
                "--force",
            ],
            "",
        )
        .await;
    o.ok();
    assert!(
        o.out.contains("-loop_wait: 10\n+loop_wait: 3\n"),
        "{}",
        o.out
    );
    assert!(o.out.ends_with("Configuration changed\n"), "{}", o.out);
    let (text, rev1) = f.get("config").await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["loop_wait"], json!(3));
    assert_eq!(v["postgresql"]["parameters"]["work_mem"], json!("8MB"));
    assert_eq!(v["ttl"], json!(30));
    assert!(rev1 > rev0);

    let o = f
        .run(&["edit-config", "-s", "loop_wait=3", "--force"], "")
        .await;
    o.ok();
    assert_eq!(o.out, "Not changed\n");

    // Interactive: the question is asked, and "no" changes nothing.
    let o = f.run(&["edit-config", "-s", "ttl=40"], "n\n").await;
    assert!(o.error().contains("not confirmed"), "{}", o.error());
    assert!(o.out.contains("Apply these changes? [y/N]: "), "{}", o.out);
    assert_eq!(f.get("config").await.unwrap().1, rev1);

    // --apply merges, --replace replaces.
    let dir = tempfile::tempdir().unwrap();
    let patch = dir.path().join("p.yml");
    std::fs::write(
        &patch,
        "postgresql:\n  parameters: {work_mem: null, max_connections: 200}\n",
    )
    .unwrap();
    let o = f
        .run(
            &[
                "edit-config",
                "--apply",
                patch.to_str().unwrap(),
                "--force",
                "-q",
            ],
            "",
        )
        .await;
    o.ok();
    assert_eq!(o.out, "Configuration changed\n");
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(
        v["postgresql"]["parameters"],
        json!({"max_connections": 200})
    );
    std::fs::write(&patch, "ttl: 20\nloop_wait: 2\nretry_timeout: 5\n").unwrap();
    let o = f
        .run(
            &[
                "edit-config",
                "--replace",
                patch.to_str().unwrap(),
                "--force",
            ],
            "",
        )
        .await;
    o.ok();
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(v, json!({"ttl": 20, "loop_wait": 2, "retry_timeout": 5}));

    // From stdin without --force: shown, not applied.
    let o = f.run(&["edit-config", "--apply", "-"], "ttl: 25\n").await;
    assert!(o.error().contains("--force"), "{}", o.error());
    let o = f
        .run(&["edit-config", "--apply", "-", "--force"], "ttl: 25\n")
        .await;
    o.ok();
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(v["ttl"], json!(25));
}

#[tokio::test]
async fn edit_config_with_the_editor() {
    let f = Fixture::new(always(200, ""), &[]).await;
    let cli = Cli::try_parse_from(["wardenctl", "edit-config"]).unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input = std::io::Cursor::new(b"y\n".to_vec());
    let mut ctl = Ctl::new(
        CtlConfig {
            scope: Some("demo".into()),
            ..CtlConfig::default()
        },
        Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        },
    )
    .with_dcs(Arc::new(f.dcs.clone()));
    ctl.editor = Some("sed -i 's/^loop_wait: 10$/loop_wait: 4/'".into());
    ctl.run(cli.command).await.unwrap();
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(v["loop_wait"], json!(4));
    // An editor that fails changes nothing.
    let o = f.run(&["edit-config"], "y\n").await;
    assert!(o.error().contains("editor"), "{}", o.error());
}

/// Standard input that, when first read (i.e. at "Apply these changes?"), lets another
/// editor change the config: the read-modify-write must then be refused.
struct RacingInput {
    dcs: MemoryDcs,
    inner: std::io::Cursor<Vec<u8>>,
    raced: bool,
}

impl std::io::Read for RacingInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.inner, buf)
    }
}

impl std::io::BufRead for RacingInput {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if !self.raced {
            self.raced = true;
            let dcs = self.dcs.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    put(
                        &dcs,
                        "config",
                        r#"{"ttl":30,"loop_wait":7,"retry_timeout":10}"#,
                    )
                    .await;
                })
            });
        }
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_config_refuses_a_concurrent_change() {
    let f = Fixture::new(always(200, ""), &[]).await;
    let mut input = RacingInput {
        dcs: f.dcs.clone(),
        inner: std::io::Cursor::new(b"y\n".to_vec()),
        raced: false,
    };
    let o = run_with(&f.dcs, &["edit-config", "-s", "loop_wait=3"], &mut input).await;
    let e = o.error();
    assert!(e.contains("changed concurrently"), "{e}");
    let v: Value = serde_json::from_str(&f.get("config").await.unwrap().0).unwrap();
    assert_eq!(v["loop_wait"], json!(7), "the other editor's change stands");
}

#[tokio::test]
async fn remove_asks_three_times_and_deletes_only_the_cluster() {
    let f = Fixture::new(always(200, ""), &[]).await;
    for other in ["/service/other/leader", "/service/demo2/leader"] {
        f.dcs.put(other, b"x".to_vec(), None).await.unwrap();
    }
    let count = |f: &Fixture| {
        let dcs = f.dcs.clone();
        async move { dcs.get_prefix(P).await.unwrap().kvs.len() }
    };
    let n = count(&f).await;
    for (input, needle) in [
        ("demox\n", "do not match"),
        ("demo\nyes\n", "Yes I am aware"),
        ("demo\nYes I am aware\nnode2\n", "current leader"),
        ("", "standard input is closed"),
    ] {
        let o = f.run(&["remove", "demo"], input).await;
        assert!(o.error().contains(needle), "{input:?}: {}", o.error());
        assert!(o.error().contains("nothing removed") || input.is_empty());
        assert_eq!(count(&f).await, n, "{input:?} deleted something");
    }
    let o = f
        .run(&["remove", "demo"], "demo\nYes I am aware\nnode1\n")
        .await;
    o.ok();
    assert!(
        o.out
            .contains("Please confirm the cluster name to remove: "),
        "{}",
        o.out
    );
    assert_eq!(count(&f).await, 0);
    assert_eq!(f.dcs.get_prefix("/service/").await.unwrap().kvs.len(), 2);
}

/// A leader API that performs the switchover in the DCS the way an agent would.
fn switching_handler(dcs: MemoryDcs) -> Handler {
    Arc::new(move |req: Req| {
        let dcs = dcs.clone();
        Box::pin(async move {
            if req.method == "POST" && req.path == "/switchover" {
                let to = req.body["candidate"]
                    .as_str()
                    .unwrap_or("node2")
                    .to_string();
                promote(&dcs, &to).await;
                return (200, format!("Successfully switched over to \"{to}\""));
            }
            (404, "not found".to_string())
        })
    })
}

async fn promote(dcs: &MemoryDcs, to: &str) {
    let snap = dcs.get_prefix(&format!("{P}members/")).await.unwrap();
    for kv in snap.kvs {
        let mut m: Value = serde_json::from_slice(&kv.value).unwrap();
        let name = kv.key.rsplit('/').next().unwrap().to_string();
        m["role"] = json!(if name == to { "primary" } else { "replica" });
        dcs.put(&kv.key, m.to_string().into_bytes(), None)
            .await
            .unwrap();
    }
    put(dcs, "leader", to).await;
}

#[tokio::test]
async fn switchover_posts_to_the_leader_and_follows_the_dcs() {
    let dcs = MemoryDcs::new();
    let f = {
        let mut f = Fixture::new(switching_handler(dcs.clone()), &[]).await;
        // The handler must act on the fixture's store.
        let snap = f.dcs.get_prefix("/").await.unwrap();
        for kv in snap.kvs {
            dcs.put(&kv.key, kv.value, None).await.unwrap();
        }
        f.dcs = dcs;
        f
    };
    let o = f
        .run(&["switchover", "--candidate", "node2", "--force"], "")
        .await;
    o.ok();
    let reqs = f.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].member, "node1");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/switchover")
    );
    assert_eq!(
        reqs[0].body,
        json!({"leader": "node1", "candidate": "node2"})
    );
    assert_eq!(reqs[0].auth.as_deref(), Some(basic_admin().as_str()));
    assert!(
        o.out.contains("Successfully switched over to \"node2\""),
        "{}",
        o.out
    );
    assert!(o.out.contains("leader: node2"), "{}", o.out);
    let last_table = o.out.rsplit("+ Cluster:").next().unwrap();
    assert!(
        last_table.contains("| node2  | 127.0.0.1:5433 | Leader "),
        "{}",
        o.out
    );
    assert_eq!(f.get("leader").await.unwrap().0, "node2");

    // Interactive: leader default, candidate, time and confirmation from stdin.
    let o = f.run(&["switchover"], "\nnode3\nnow\ny\n").await;
    o.ok();
    assert!(o.out.contains("Primary [node2]: "), "{}", o.out);
    assert!(
        o.out.contains("Candidate ['node1', 'node3'] []: "),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("Are you sure you want to switchover cluster demo, demoting current leader node2? [y/N]: "),
        "{}",
        o.out
    );
    assert_eq!(f.get("leader").await.unwrap().0, "node3");
    let o = f
        .run(&["switchover", "--candidate", "node1"], "\nnow\nn\n")
        .await;
    assert!(o.error().contains("aborting switchover"), "{}", o.error());
    assert_eq!(f.get("leader").await.unwrap().0, "node3");
}

#[tokio::test]
async fn switchover_refusals_name_the_problem() {
    let f = Fixture::new(always(200, "ok"), &[]).await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["switchover", "--candidate", "node1", "--force"],
            "already the leader",
        ),
        (
            &["switchover", "--candidate", "nodeX", "--force"],
            "candidates: node2, node3",
        ),
        (
            &["switchover", "--leader", "node2", "--force"],
            "node2 is not the leader",
        ),
        (&["failover", "--force"], "specific candidate"),
        (
            &["switchover", "--scheduled", "soon", "--force"],
            "unable to parse scheduled",
        ),
    ];
    for (args, needle) in cases {
        let o = f.run(args, "").await;
        assert!(o.error().contains(needle), "{args:?}: {}", o.error());
    }
    assert!(f.requests().is_empty(), "{:?}", f.requests());
    // An API refusal is shown with its status and text, and exits non-zero.
    let f = Fixture::new(always(412, "candidate does not exists"), &[]).await;
    let o = f
        .run(&["switchover", "--candidate", "node2", "--force"], "")
        .await;
    let e = o.error();
    assert!(
        e.contains("412") && e.contains("candidate does not exists"),
        "{e}"
    );
    // A scheduled switchover is accepted (202) and not followed.
    let f = Fixture::new(always(202, "Switchover scheduled"), &[]).await;
    let o = f
        .run(
            &[
                "switchover",
                "--candidate",
                "node2",
                "--scheduled",
                "2030-01-01T10:00:00+00:00",
                "--force",
            ],
            "",
        )
        .await;
    o.ok();
    assert_eq!(
        f.requests()[0].body,
        json!({"leader":"node1","candidate":"node2","scheduled_at":"2030-01-01T10:00:00+00:00"})
    );
    assert!(o.out.contains("Switchover scheduled"), "{}", o.out);
    // The unauthorised answer says what to check.
    let f = Fixture::new(always(401, "no auth header received"), &[]).await;
    let o = f
        .run(&["switchover", "--candidate", "node2", "--force"], "")
        .await;
    assert!(o.error().contains("authentication failed"), "{}", o.error());
}

#[tokio::test]
async fn failover_falls_back_to_the_failover_key() {
    let f = Fixture::new(always(500, "unused"), &["node1"]).await;
    // Stands in for the agents: whoever sees the failover key promotes its member.
    let dcs = f.dcs.clone();
    let agent = tokio::spawn(async move {
        loop {
            let snap = dcs.get_prefix(&format!("{P}failover")).await.unwrap();
            if let Some(kv) = snap.kvs.first() {
                let v: Value = serde_json::from_slice(&kv.value).unwrap();
                if let Some(to) = v["member"].as_str() {
                    promote(&dcs, to).await;
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let o = f
        .run(&["failover", "--candidate", "node3", "--force"], "")
        .await;
    o.ok();
    assert!(o.out.contains("falling back to DCS"), "{}", o.out);
    assert_eq!(agent.await.unwrap(), json!({"member": "node3"}));
    assert_eq!(f.get("leader").await.unwrap().0, "node3");

    // Nobody acts on it: the wait is bounded and says so.
    let f = Fixture::new(always(500, "unused"), &["node1"]).await;
    let o = f
        .run(&["failover", "--candidate", "node2", "--force"], "")
        .await;
    assert!(
        o.error().contains("did not take over within 1 s"),
        "{}",
        o.error()
    );
    assert_eq!(f.get("failover").await.unwrap().0, r#"{"member":"node2"}"#);
}

#[tokio::test]
async fn restart_reports_each_member_and_fails_if_any_failed() {
    let handler: Handler = Arc::new(|req: Req| {
        if req.member == "node2" {
            reply(503, "restart conditions are not satisfied")
        } else {
            reply(200, "restarted successfully")
        }
    });
    let f = Fixture::new(handler, &[]).await;
    let o = f
        .run(
            &[
                "restart",
                "demo",
                "--force",
                "--pg-version",
                "15.9",
                "--timeout",
                "30s",
            ],
            "",
        )
        .await;
    let e = o.error();
    assert!(e.contains("1 of 3 members (node2)"), "{e}");
    assert!(
        o.out.contains("Success: restart on member node1"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains(
            "Failed: restart for member node2, status code=503, (restart conditions are not satisfied)"
        ),
        "{}",
        o.out
    );
    let reqs = f.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs
        .iter()
        .all(|r| r.method == "POST" && r.path == "/restart"));
    assert_eq!(
        reqs[0].body,
        json!({"postgres_version": "15.9", "timeout": "30s"})
    );

    // Only replicas, by name, with the role condition and a confirmation.
    let f = Fixture::new(always(200, "restarted successfully"), &[]).await;
    let o = f
        .run(
            &["restart", "demo", "node3", "node1", "--role", "replica"],
            "now\ny\n\n",
        )
        .await;
    o.ok();
    assert!(
        o.out
            .contains("Are you sure you want to restart members node3? [y/N]: "),
        "{}",
        o.out
    );
    let reqs = f.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].member.as_str(), &reqs[0].body),
        ("node3", &json!({"role": "replica"}))
    );
    let o = f.run(&["restart", "demo", "nodeX", "--force"], "").await;
    assert!(
        o.error()
            .contains("unknown member \"nodeX\" (members: node1, node2, node3)"),
        "{}",
        o.error()
    );
    let o = f
        .run(&["restart", "demo", "--pending", "--force"], "")
        .await;
    o.ok();
    assert!(o.out.contains("No member needs a restart"), "{}", o.out);
    let o = f.run(&["restart", "demo", "--any", "--force"], "").await;
    o.ok();
    assert_eq!(f.requests().len(), 2, "--any restarts exactly one member");
}

#[tokio::test]
async fn reload_reinit_and_flush() {
    let handler: Handler = Arc::new(|req: Req| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/reload") => reply(202, "reload scheduled"),
        ("POST", "/reinitialize") if req.body["force"] == json!(false) => {
            reply(503, "reinitialize already in progress")
        }
        ("POST", "/reinitialize") => reply(200, "reinitialize started"),
        ("DELETE", "/restart") => reply(200, "scheduled restart deleted"),
        _ => reply(404, "?"),
    });
    let f = Fixture::new(handler, &[]).await;
    let o = f.run(&["reload", "demo", "node2", "--force"], "").await;
    o.ok();
    assert_eq!(
        o.out.lines().last().unwrap(),
        "Reload request received for member node2 and will be processed within 10 seconds"
    );
    let o = f.run(&["reinit", "demo", "node3"], "y\ny\n").await;
    o.ok();
    let bodies: Vec<Value> = f
        .requests()
        .into_iter()
        .filter(|r| r.path == "/reinitialize")
        .map(|r| r.body)
        .collect();
    assert_eq!(
        bodies,
        vec![
            json!({"force": false, "from_leader": false}),
            json!({"force": true, "from_leader": false})
        ]
    );
    assert!(
        o.out.contains("Success: reinitialize for member node3"),
        "{}",
        o.out
    );
    let o = f.run(&["reinit", "demo", "node1", "--force"], "").await;
    assert!(
        o.error()
            .contains("no replica among the named members node1"),
        "{}",
        o.error()
    );

    // flush restart: only members with a scheduled restart are asked.
    let (text, _) = f.get("members/node2").await.unwrap();
    let mut m: Value = serde_json::from_str(&text).unwrap();
    m["scheduled_restart"] = json!({"schedule": "2030-01-01T00:00:00+00:00"});
    put(&f.dcs, "members/node2", &m.to_string()).await;
    let before = f.requests().len();
    let o = f.run(&["flush", "demo", "restart", "--force"], "").await;
    o.ok();
    assert!(
        o.out.contains("No scheduled restart for member node1"),
        "{}",
        o.out
    );
    assert!(
        o.out
            .contains("Success: flush scheduled restart for member node2"),
        "{}",
        o.out
    );
    let reqs = f.requests();
    assert_eq!(reqs.len(), before + 1);
    assert_eq!(
        (reqs[before].method.as_str(), reqs[before].member.as_str()),
        ("DELETE", "node2")
    );

    let o = f.run(&["flush", "demo", "switchover"], "").await;
    o.ok();
    assert_eq!(o.out.trim(), "No pending scheduled switchover");
}

#[tokio::test]
async fn flush_switchover_clears_the_key_when_no_api_answers() {
    let f = Fixture::new(always(500, ""), &["node1", "node2", "node3"]).await;
    put(
        &f.dcs,
        "failover",
        r#"{"leader":"node1","member":"node2","scheduled_at":"2030-01-01T10:00:00+00:00"}"#,
    )
    .await;
    let o = f.run(&["list"], "").await;
    assert!(
        o.out
            .contains(" Switchover scheduled at: 2030-01-01T10:00:00+00:00"),
        "{}",
        o.out
    );
    let o = f.run(&["flush", "demo", "switchover"], "").await;
    o.ok();
    assert!(
        o.out.contains("Could not find any accessible member"),
        "{}",
        o.out
    );
    assert_eq!(f.get("failover").await.unwrap().0, "{}");
    // With an API that answers, the API does it.
    let f = Fixture::new(always(200, "scheduled switchover deleted"), &[]).await;
    put(
        &f.dcs,
        "failover",
        r#"{"scheduled_at":"2030-01-01T10:00:00+00:00"}"#,
    )
    .await;
    let o = f.run(&["flush", "demo", "switchover"], "").await;
    o.ok();
    assert_eq!(o.out.trim(), "Success: scheduled switchover deleted");
    let r = &f.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.member.as_str()),
        ("DELETE", "/switchover", "node1")
    );
}

/// An API whose PATCH /config pauses (or resumes) the cluster in the DCS, the way the
/// agents will: config `pause`, then every member publishes `pause` in its key.
fn pausing_handler(dcs: MemoryDcs) -> Handler {
    Arc::new(move |req: Req| {
        let dcs = dcs.clone();
        Box::pin(async move {
            if req.method != "PATCH" || req.path != "/config" {
                return (404, String::new());
            }
            let pause = req.body["pause"] == json!(true);
            let cfg = if pause {
                r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"pause":true}"#
            } else {
                r#"{"ttl":30,"loop_wait":10,"retry_timeout":10}"#
            };
            put(&dcs, "config", cfg).await;
            let snap = dcs.get_prefix(&format!("{P}members/")).await.unwrap();
            for kv in snap.kvs {
                let mut m: Value = serde_json::from_slice(&kv.value).unwrap();
                if pause {
                    m["pause"] = json!(true);
                } else if let Some(o) = m.as_object_mut() {
                    o.remove("pause");
                }
                dcs.put(&kv.key, m.to_string().into_bytes(), None)
                    .await
                    .unwrap();
            }
            (200, cfg.to_string())
        })
    })
}

#[tokio::test]
async fn pause_and_resume_through_the_api() {
    let dcs = MemoryDcs::new();
    let mut f = Fixture::new(pausing_handler(dcs.clone()), &["node1"]).await;
    let snap = f.dcs.get_prefix("/").await.unwrap();
    for kv in snap.kvs {
        dcs.put(&kv.key, kv.value, None).await.unwrap();
    }
    f.dcs = dcs;
    let o = f.run(&["resume"], "").await;
    assert_eq!(o.error(), "Cluster is not paused");
    // The leader's API is down: the next member takes the request.
    let o = f.run(&["pause", "--wait"], "").await;
    o.ok();
    assert!(
        o.err.contains("member node1 is not accessible"),
        "{}",
        o.err
    );
    assert!(
        o.out.ends_with("Success: cluster management is paused\n"),
        "{}",
        o.out
    );
    let r = &f.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.member.as_str()),
        ("PATCH", "/config", "node2")
    );
    assert_eq!(r.body, json!({"pause": true}));
    let o = f.run(&["list"], "").await;
    assert!(o.out.ends_with(" Maintenance mode: on\n"), "{}", o.out);
    let o = f.run(&["pause"], "").await;
    assert_eq!(o.error(), "Cluster is already paused");
    let o = f.run(&["resume"], "").await;
    o.ok();
    assert_eq!(f.requests()[1].body, json!({"pause": null}));
}

#[tokio::test]
async fn version_asks_each_member() {
    let handler: Handler = Arc::new(|req: Req| {
        if req.member == "node3" {
            reply(503, "busy")
        } else {
            reply(
                200,
                r#"{"server_version":150010,"patroni":{"version":"4.0.4","warden_version":"0.1.0"}}"#,
            )
        }
    });
    let f = Fixture::new(handler, &[]).await;
    let o = f.run(&["version"], "").await;
    o.ok();
    assert!(o.out.starts_with("wardenctl version "), "{}", o.out);
    assert!(f.requests().is_empty());
    let o = f.run(&["version", "demo", "node1"], "").await;
    o.ok();
    assert!(
        o.out
            .contains("node1: Patroni 4.0.4 PostgreSQL 15.10 (Warden 0.1.0)"),
        "{}",
        o.out
    );
    let o = f.run(&["version", "demo"], "").await;
    assert!(o.error().contains("node3"), "{}", o.error());
    assert!(
        o.out
            .contains("node3: failed to get version: status code=503"),
        "{}",
        o.out
    );
}

#[tokio::test]
async fn unsupported_commands_and_missing_scope() {
    let f = Fixture::new(always(200, ""), &[]).await;
    let o = f.run(&["query", "-c", "select 1"], "").await;
    assert!(
        o.error().contains("not supported by wardenctl"),
        "{}",
        o.error()
    );
    let keys = Keys::new("/service/", "demo");
    assert_eq!(keys.prefix(), P);
}

#[tokio::test]
async fn reinit_wait_follows_the_member_until_it_runs_again() {
    // The member's PostgreSQL gets a new start time once the reinitialization ran.
    let started = Arc::new(Mutex::new("2030-01-01 00:00:00"));
    let s = started.clone();
    let handler: Handler = Arc::new(move |req: Req| {
        let s = s.clone();
        Box::pin(async move {
            match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/reinitialize") => {
                    *s.lock().unwrap() = "2030-01-01 00:05:00";
                    (200, "reinitialize started".to_string())
                }
                ("GET", "/patroni") => (
                    200,
                    json!({"state": "running", "postmaster_start_time": *s.lock().unwrap()})
                        .to_string(),
                ),
                _ => (404, String::new()),
            }
        })
    });
    let f = Fixture::new(handler, &[]).await;
    let o = f
        .run(&["reinit", "demo", "node2", "--force", "--wait"], "")
        .await;
    o.ok();
    assert!(
        o.out
            .contains("Waiting for reinitialize to complete on: node2"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("Reinitialize is completed on: node2"),
        "{}",
        o.out
    );

    // A member that ends in a failure state fails the command.
    let f = Fixture::new(always(200, "reinitialize started"), &[]).await;
    let (text, _) = f.get("members/node3").await.unwrap();
    let mut m: Value = serde_json::from_str(&text).unwrap();
    m["state"] = json!("start failed");
    put(&f.dcs, "members/node3", &m.to_string()).await;
    let o = f
        .run(&["reinit", "demo", "node3", "--force", "--wait"], "")
        .await;
    assert!(
        o.error().contains("reinitialize failed on node3"),
        "{}",
        o.error()
    );
    assert!(
        o.out
            .contains("Reinitialize failed on: node3 (state: start failed)"),
        "{}",
        o.out
    );
}

#[tokio::test]
async fn failover_to_an_asynchronous_node_asks_first() {
    let f = Fixture::new(always(200, "ok"), &[]).await;
    put(
        &f.dcs,
        "config",
        r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"synchronous_mode":true}"#,
    )
    .await;
    put(
        &f.dcs,
        "sync",
        r#"{"leader":"node1","sync_standby":"node2"}"#,
    )
    .await;
    let question = "Are you sure you want to failover to the asynchronous node node3?";
    let o = f.run(&["failover", "--candidate", "node3"], "n\nn\n").await;
    assert!(o.out.contains(question), "{}", o.out);
    assert!(o.error().contains("aborting failover"), "{}", o.error());
    assert!(f.requests().is_empty(), "{:?}", f.requests());
    // The synchronous standby: no such question (only the usual confirmation).
    let o = f.run(&["failover", "--candidate", "node2"], "n\n").await;
    assert!(!o.out.contains("asynchronous node"), "{}", o.out);
    // The last leader in /sync counts as synchronous, as in patronictl.
    put(
        &f.dcs,
        "sync",
        r#"{"leader":"node3","sync_standby":"node2"}"#,
    )
    .await;
    let o = f.run(&["failover", "--candidate", "node3"], "n\n").await;
    assert!(!o.out.contains("asynchronous node"), "{}", o.out);
}
