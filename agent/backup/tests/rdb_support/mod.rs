//! Real `redis-server`s for the RDB snapshot tests (each on a free loopback port in its
//! own temporary directory, killed on drop), a blocking RESP client with timeouts, and
//! a catalog over a filesystem repository.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_backup::catalog::Catalog;
use warden_backup::key::EncryptionKey;
use warden_backup::layout::Layout;
use warden_backup::repo::Repository;
use warden_config::{RepositoryConfig, RepositoryKind};

pub const KEY: &str = "3c9e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f138f3a";

/// A catalog for cluster `redis/0` over `<dir>/repo`.
pub fn catalog(dir: &Path) -> Catalog {
    Catalog {
        repo: Repository::open(&RepositoryConfig {
            kind: RepositoryKind::Filesystem {
                path: dir.join("repo"),
            },
            timeout: Duration::from_secs(10),
        })
        .unwrap(),
        layout: Layout::new("redis", 0),
        key: EncryptionKey::parse(KEY, "test").unwrap(),
    }
}

/// Polls `f` until it holds, failing the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub password: Option<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

impl Server {
    /// A server with no saves, no AOF and no diskless delay, plus `args`; waits for PING.
    pub fn start(args: &[&str]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let password = args
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_owned());
        let d = dir.path().display().to_string();
        let log = dir.path().join("redis.log").display().to_string();
        let p = port.to_string();
        let mut all: Vec<&str> = vec![
            "--port",
            &p,
            "--bind",
            "127.0.0.1",
            "--dir",
            &d,
            "--logfile",
            &log,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ];
        all.extend_from_slice(args);
        let child = Command::new("redis-server")
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let s = Self {
            child,
            port,
            dir,
            password,
        };
        wait_until(
            "PING",
            Duration::from_secs(20),
            || matches!(s.try_cmd(&["PING"]), Ok(Resp::Simple(p)) if p == "PONG"),
        );
        s
    }

    /// A replica of `primary` whose link is up.
    pub fn replica_of(primary: &Server) -> Self {
        let port = primary.port.to_string();
        let r = Self::start(&["--replicaof", "127.0.0.1", &port]);
        wait_until("the replica's link", Duration::from_secs(20), || {
            matches!(r.try_cmd(&["INFO", "replication"]), Ok(Resp::Bulk(Some(b)))
                if String::from_utf8_lossy(&b).contains("master_link_status:up"))
        });
        r
    }

    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<Resp> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut r = BufReader::new(s.try_clone()?);
        if let Some(p) = &self.password {
            send(&mut s, &["AUTH", p])?;
            read(&mut r)?;
        }
        send(&mut s, args)?;
        read(&mut r)
    }

    pub fn cmd(&self, args: &[&str]) -> Resp {
        self.try_cmd(args).unwrap()
    }

    pub fn dbsize(&self) -> i64 {
        match self.cmd(&["DBSIZE"]) {
            Resp::Int(n) => n,
            other => panic!("DBSIZE: {other:?}"),
        }
    }

    /// `n` keys `key:<i>` = `value:<i>`, in MSETs of 1000.
    pub fn fill(&self, n: usize) {
        for start in (0..n).step_by(1000) {
            let pairs: Vec<String> = (start..(start + 1000).min(n))
                .flat_map(|i| [format!("key:{i}"), format!("value:{i}")])
                .collect();
            let mut args = vec!["MSET"];
            args.extend(pairs.iter().map(String::as_str));
            assert_eq!(self.cmd(&args), Resp::Simple("OK".into()));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(s: &mut TcpStream, args: &[&str]) -> std::io::Result<()> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    s.write_all(&out)
}

fn read(r: &mut BufReader<TcpStream>) -> std::io::Result<Resp> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let bad = || std::io::Error::other(format!("bad reply {line:?}"));
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "+" => Resp::Simple(rest.into()),
        "-" => Resp::Error(rest.into()),
        ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut b = vec![0u8; n as usize + 2];
                r.read_exact(&mut b)?;
                b.truncate(n as usize);
                Resp::Bulk(Some(b))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut v = Vec::new();
            for _ in 0..n.max(0) {
                v.push(read(r)?);
            }
            Resp::Array(v)
        }
        _ => return Err(bad()),
    })
}
