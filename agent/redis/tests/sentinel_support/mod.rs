//! Shared by the Sentinel port's tests: real `redis-server` processes on free loopback
//! ports (killed on drop), a raw RESP client, and the port started on a view.
#![allow(dead_code, clippy::too_many_lines)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warden_redis::sentinel::{serve, EventHub, SentinelConfig, SentinelView};

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `redis-server` on `port`; `extra` are command-line options; waits until it answers.
pub fn redis_server(dir: &Path, port: u16, extra: &[&str]) -> Proc {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let proc = Proc(child);
    wait_for(|| Client::try_connect(port).is_some_and(|mut c| c.cmd(&["PING"]) == b"+PONG\r\n"));
    proc
}

/// `redis-server --sentinel` with `conf` (port and dir lines are added).
pub fn sentinel_server(dir: &Path, port: u16, conf: &str) -> Proc {
    let path = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &path,
        format!("port {port}\nbind 127.0.0.1\ndir {}\n{conf}", dir.display()),
    )
    .unwrap();
    let child = Command::new("redis-server")
        .arg(&path)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server --sentinel");
    let proc = Proc(child);
    wait_for(|| Client::try_connect(port).is_some());
    proc
}

/// Polls `check` until it holds (20 s at most).
pub fn wait_for(mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A blocking RESP client that returns each reply's raw bytes.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).expect("connect")
    }

    pub fn try_connect(port: u16) -> Option<Client> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), TIMEOUT).ok()?;
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Some(Client {
            reader: BufReader::new(stream),
        })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    pub fn send(&mut self, args: &[&str]) {
        self.send_raw(&encode(args));
    }

    /// Sends a command and reads one reply.
    pub fn cmd(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(args);
        self.reply()
    }

    /// Reads one complete reply (nested aggregates included) as raw bytes.
    pub fn reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.read_value(&mut out);
        out
    }

    /// Sends a command and reads the first line of its reply; `None` when the server
    /// closed the connection or refused the write (e.g. the connection limit was still
    /// reached when we connected). For probes that retry.
    pub fn try_line(&mut self, args: &[&str]) -> Option<Vec<u8>> {
        self.reader.get_mut().write_all(&encode(args)).ok()?;
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).ok()?;
        line.ends_with(b"\r\n").then_some(line)
    }

    /// Reads until the server closes the connection; the bytes before that.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        rest
    }

    fn read_line(&mut self, out: &mut Vec<u8>) -> Vec<u8> {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .expect("reply line");
        assert!(
            line.ends_with(b"\r\n"),
            "truncated reply: {:?}",
            String::from_utf8_lossy(out)
        );
        out.extend_from_slice(&line);
        line
    }

    fn read_value(&mut self, out: &mut Vec<u8>) {
        let line = self.read_line(out);
        let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        match line[0] {
            b'$' if n >= 0 => {
                let mut body = vec![0; usize::try_from(n).unwrap() + 2];
                self.reader.read_exact(&mut body).unwrap();
                out.extend_from_slice(&body);
            }
            b'*' | b'>' => (0..n).for_each(|_| self.read_value(out)),
            b'%' => (0..n * 2).for_each(|_| self.read_value(out)),
            _ => {}
        }
    }
}

pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// A value parsed back from raw reply bytes, for comparisons that mask some values.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Line(u8, String),
    Bulk(Option<Vec<u8>>),
    Agg(u8, Vec<Value>),
}

pub fn parse(bytes: &[u8]) -> Value {
    let (v, used) = parse_at(bytes, 0);
    assert_eq!(used, bytes.len(), "one reply expected");
    v
}

fn parse_at(b: &[u8], pos: usize) -> (Value, usize) {
    let end = pos + b[pos..].windows(2).position(|w| w == b"\r\n").unwrap();
    let head = String::from_utf8_lossy(&b[pos + 1..end]).into_owned();
    let next = end + 2;
    match b[pos] {
        b'$' => {
            let n: i64 = head.parse().unwrap();
            if n < 0 {
                return (Value::Bulk(None), next);
            }
            let n = usize::try_from(n).unwrap();
            (Value::Bulk(Some(b[next..next + n].to_vec())), next + n + 2)
        }
        t @ (b'*' | b'>' | b'%') => {
            let n: i64 = head.parse().unwrap();
            let count = if t == b'%' { n * 2 } else { n };
            let mut items = Vec::new();
            let mut p = next;
            for _ in 0..count.max(0) {
                let (v, q) = parse_at(b, p);
                items.push(v);
                p = q;
            }
            if n < 0 {
                return (Value::Line(t, head), next);
            }
            (Value::Agg(t, items), p)
        }
        t => (Value::Line(t, head), next),
    }
}

/// The port on a free loopback port, fed by the returned watch sender.
pub struct Port {
    pub port: u16,
    pub view: watch::Sender<SentinelView>,
    pub hub: EventHub,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Port {
    pub async fn start(view: SentinelView, config: SentinelConfig) -> Port {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = watch::channel(view);
        let hub = EventHub::new(config.event_queue);
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (hub, cancel) = (hub.clone(), cancel.clone());
            async move { serve(listener, config, rx, hub, cancel).await.unwrap() }
        });
        Port {
            port,
            view: tx,
            hub,
            cancel,
            task,
        }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("port stops")
            .unwrap();
    }
}

/// A field of a RESP2 flat record (`*2n` of bulk strings).
pub fn field(record: &Value, key: &str) -> Option<String> {
    let Value::Agg(_, items) = record else {
        return None;
    };
    items.chunks(2).find_map(|kv| match kv {
        [Value::Bulk(Some(k)), Value::Bulk(Some(v))] if k == key.as_bytes() => {
            Some(String::from_utf8_lossy(v).into_owned())
        }
        _ => None,
    })
}

/// `run_id` from a Redis server's `INFO server`.
pub fn run_id(port: u16) -> String {
    let info = Client::connect(port).cmd(&["INFO", "server"]);
    let text = String::from_utf8_lossy(&info).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap()
        .trim()
        .to_string()
}
