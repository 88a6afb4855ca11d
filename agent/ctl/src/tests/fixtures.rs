//! What every command flow test stands on: an in-memory DCS holding a formed cluster,
//! fake REST APIs on loopback that record what they are asked, and one wardenctl run
//! with its output captured.

use crate::args::Cli;
use crate::config::CtlConfig;
use crate::{io::Io, Ctl, Timing};
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
use warden_consensus::Dcs;

pub(super) const P: &str = "/service/demo/";

/// One request a fake API received.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Req {
    pub(super) member: String,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) auth: Option<String>,
    pub(super) body: Value,
}

pub(super) type Reply = Pin<Box<dyn Future<Output = (u16, String)> + Send>>;
pub(super) type Handler = Arc<dyn Fn(Req) -> Reply + Send + Sync>;

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

pub(super) fn reply(status: u16, text: &str) -> Reply {
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
pub(super) struct Fixture {
    pub(super) dcs: MemoryDcs,
    pub(super) log: Arc<Mutex<Vec<Req>>>,
}

impl Fixture {
    pub(super) async fn new(handler: Handler, dead: &[&str]) -> Fixture {
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

    pub(super) fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    pub(super) async fn get(&self, rel: &str) -> Option<(String, i64)> {
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

    pub(super) async fn run(&self, args: &[&str], input: &str) -> Outcome {
        let mut input = std::io::Cursor::new(input.as_bytes().to_vec());
        run_with(&self.dcs, args, &mut input).await
    }
}

pub(super) async fn put(dcs: &MemoryDcs, rel: &str, value: &str) {
    dcs.put(&format!("{P}{rel}"), value.as_bytes().to_vec(), None)
        .await
        .unwrap();
}

#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) result: Result<()>,
    pub(super) out: String,
    pub(super) err: String,
}

impl Outcome {
    pub(super) fn error(&self) -> String {
        match &self.result {
            Ok(()) => panic!("expected an error; output:\n{}", self.out),
            Err(e) => format!("{e:#}"),
        }
    }

    pub(super) fn ok(&self) {
        if let Err(e) = &self.result {
            panic!(
                "{e:#}\n--- out ---\n{}\n--- err ---\n{}",
                self.out, self.err
            );
        }
    }
}

pub(super) async fn run_with(
    dcs: &MemoryDcs,
    args: &[&str],
    input: &mut dyn std::io::BufRead,
) -> Outcome {
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
            query_timeout: Duration::from_secs(5),
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

pub(super) fn always(status: u16, text: &'static str) -> Handler {
    Arc::new(move |_| reply(status, text))
}

pub(super) fn basic_admin() -> String {
    BasicAuth {
        username: "admin".into(),
        password: "pw".into(),
    }
    .header_value()
}
