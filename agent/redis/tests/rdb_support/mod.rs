//! Real `redis-server`s for the RDB tests: each on a free loopback port in its own
//! temporary directory, killed on drop; a blocking RESP client with timeouts.

#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server`.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The password `cmd` authenticates with.
    pub password: Option<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Server {
    /// Starts a server with `args` after the test's base settings (no automatic
    /// saves, no AOF, no diskless delay unless `args` sets one) and waits for `PING`.
    pub fn start(args: &[&str]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let password = args
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_owned());
        let mut all: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.path().display().to_string(),
            "--logfile",
            &dir.path().join("redis.log").display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        all.extend(args.iter().map(|s| (*s).to_owned()));
        let child = Command::new("redis-server")
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = Self {
            child,
            port,
            dir,
            password,
        };
        wait_until(
            "redis-server answers PING",
            Duration::from_secs(20),
            || matches!(server.try_cmd(&["PING"]), Ok(Resp::Simple(s)) if s == "PONG"),
        );
        server
    }

    /// A replica of `primary` (with the same password), up and linked.
    pub fn replica_of(primary: &Self, args: &[&str]) -> Self {
        let port = primary.port.to_string();
        let mut all = vec!["--replicaof", "127.0.0.1", port.as_str()];
        if let Some(p) = &primary.password {
            all.extend(["--masterauth", p.as_str(), "--requirepass", p.as_str()]);
        }
        all.extend_from_slice(args);
        let replica = Self::start(&all);
        wait_until("the replica's link is up", Duration::from_secs(20), || {
            replica
                .info("replication")
                .contains("master_link_status:up")
        });
        replica
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<Resp> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut r = BufReader::new(stream.try_clone()?);
        let mut w = stream;
        if let Some(p) = &self.password {
            w.write_all(&encode(&["AUTH", p]))?;
            read_resp(&mut r)?;
        }
        w.write_all(&encode(args))?;
        read_resp(&mut r)
    }

    pub fn cmd(&self, args: &[&str]) -> Resp {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    pub fn info(&self, section: &str) -> String {
        match self.try_cmd(&["INFO", section]) {
            Ok(Resp::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        }
    }

    pub fn dbsize(&self) -> i64 {
        match self.cmd(&["DBSIZE"]) {
            Resp::Int(n) => n,
            other => panic!("DBSIZE: {other:?}"),
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.cmd(&["GET", key]) {
            Resp::Bulk(b) => b,
            other => panic!("GET {key}: {other:?}"),
        }
    }

    /// `n` keys `key:<i>` with `value(i)`, pipelined as `MSET`s of 1000 pairs.
    pub fn fill(&self, n: usize, value: impl Fn(usize) -> Vec<u8>) {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut r = BufReader::new(stream.try_clone().expect("clone"));
        let mut w = std::io::BufWriter::new(stream);
        let mut sent = 0;
        if let Some(p) = &self.password {
            w.write_all(&encode(&["AUTH", p])).expect("send");
            sent += 1;
        }
        for start in (0..n).step_by(1000) {
            let end = (start + 1000).min(n);
            let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
            for i in start..end {
                args.push(format!("key:{i}").into_bytes());
                args.push(value(i));
            }
            w.write_all(&encode_bytes(&args)).expect("send");
            sent += 1;
        }
        w.flush().expect("flush");
        for _ in 0..sent {
            match read_resp(&mut r).expect("reply") {
                Resp::Simple(s) if s == "OK" => {}
                other => panic!("MSET: {other:?}"),
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test value of key `i`: `len` pseudo-random letters (compressible like text,
/// not like a run of one byte).
pub fn value(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
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

fn encode(args: &[&str]) -> Vec<u8> {
    let owned: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    encode_bytes(&owned)
}

fn encode_bytes(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1);
    let num = || rest.parse::<i64>().map_err(std::io::Error::other);
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(num()?),
        "$" => match usize::try_from(num()?) {
            Err(_) => Resp::Bulk(None),
            Ok(n) => {
                let mut b = vec![0u8; n + 2];
                r.read_exact(&mut b)?;
                b.truncate(n);
                Resp::Bulk(Some(b))
            }
        },
        "*" => match usize::try_from(num()?) {
            Err(_) => Resp::Array(Vec::new()),
            Ok(n) => Resp::Array((0..n).map(|_| read_resp(r)).collect::<Result<_, _>>()?),
        },
        _ => return Err(std::io::Error::other(format!("bad reply {line:?}"))),
    })
}

/// `redis-check-rdb <file>`: success and its output.
pub fn check_rdb(file: &Path) -> (bool, String) {
    let out = Command::new("redis-check-rdb")
        .arg(file)
        .output()
        .expect("redis-check-rdb runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A file's identity and age: what changes if anything rewrites it.
pub fn stamp(path: &Path) -> Option<(u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

/// The names in a directory, sorted.
pub fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}
