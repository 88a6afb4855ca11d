//! An RDB snapshot streamed from a running Redis (a replica) over the replication
//! protocol, as `redis-cli --rdb -` takes it: `AUTH` when configured, `REPLCONF capa
//! eof` (the server may stream a diskless snapshot, ended by a 40-byte mark, instead of
//! a sized one), `REPLCONF rdb-only 1` (7.0: the snapshot alone, no replication buffer
//! kept for us afterwards), then `SYNC`. Servers that do not know an option answer with
//! an error, which is ignored as redis-cli ignores it: the payload is an RDB either way.
//!
//! The reply is `$<len>\r\n` and `len` bytes (the source wrote the RDB to its disk), or
//! `$EOF:<40-byte mark>\r\n`, the RDB and the mark (diskless). While the source prepares
//! the snapshot it sends a bare `\n` about once a second; they are skipped (and keep the
//! idle timeout from firing).
//!
//! **The source's disk.** Only a diskless transfer leaves the replica's files alone:
//! with `repl-diskless-sync no` the source runs a `BGSAVE` into its own `dbfilename`
//! (replacing its `dump.rdb`) and sends that file. The agent owns the replica's
//! configuration, so it keeps `repl-diskless-sync yes` (7.0's default) there.
//!
//! **`repl-diskless-sync-delay`** (default 5 s) is waited before every diskless
//! snapshot, so that replicas arriving together share one fork; a backup pays it in
//! full. Options for the daemon: (a) on replicas it configures, set the delay to 0 — a
//! replica rarely feeds other replicas, but it keeps the setting when it is promoted,
//! where it then costs a fork per replica that full-syncs at the same moment (after a
//! failover most resume with a partial sync); (b) `CONFIG SET` it to 0 around the
//! fetch — one more round trip and a window in which a crash of the agent leaves 0
//! behind; (c) accept the 5 s on a scheduled backup. Recommended: (a) on replicas, and
//! the role change to primary restoring the configured value. The fetch itself only
//! needs its idle timeout above ~1 s (the keep-alive period) to survive the delay.
//!
//! The user (ACL) needs `+sync +replconf`; a replica answers `SYNC` only while its link
//! to the primary is up (`-NOMASTERLINK` otherwise, [`FetchError::Refused`]).

use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::verify::{RdbError, RdbVerifier};

/// Read and write buffer size; the fetch holds two of them at most.
pub const CHUNK: usize = 64 * 1024;
/// A reply line longer than this is not the replication protocol.
const LINE_MAX: usize = 4096;
/// The diskless end mark: 40 random characters.
const MARK_LEN: usize = 40;

/// Credentials for `AUTH`. `Debug` shows the user, never the password.
#[derive(Clone)]
pub struct Auth {
    /// `None`: the `default` user (`AUTH <password>`).
    pub username: Option<String>,
    pub password: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where and how to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub host: String,
    pub port: u16,
    pub auth: Option<Auth>,
    /// Bound on the TCP connect.
    pub connect_timeout: Duration,
    /// Bound on silence: no byte (keep-alives count) for this long fails the fetch.
    pub idle_timeout: Duration,
    /// Bound on the whole fetch, connect to the last byte written.
    pub deadline: Duration,
    /// TLS to a `tls-port` (the server is verified for `host`, a name or an IP
    /// address; e.g. [`crate::adapter::RedisTls::client_config`]); `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl FetchOptions {
    /// Defaults: connect 5 s, idle 30 s (the source sends a keep-alive every second
    /// while it prepares), deadline 6 h (as a `pg_dump`'s).
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            auth: None,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(6 * 3600),
            tls: None,
        }
    }
}

/// How the source sent the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// `$<len>`: the source wrote the RDB to its disk first.
    Sized,
    /// `$EOF:<mark>`: streamed from the forked child, the source's disk untouched.
    Diskless,
}

/// A fetched, verified snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// RDB bytes written to the output.
    pub bytes: u64,
    pub crc: u64,
    pub version: u32,
    pub duration: Duration,
    pub transfer: Transfer,
    /// Keep-alive newlines received while the source prepared the snapshot.
    pub keepalives: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {addr}: no connection within {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("{addr} refused the credentials: {message}")]
    AuthFailed { addr: String, message: String },
    #[error("{addr} requires authentication and none is configured: {message}")]
    AuthRequired { addr: String, message: String },
    #[error("{addr} refused {command}: {message}")]
    Refused {
        addr: String,
        command: &'static str,
        message: String,
    },
    #[error("{addr} does not speak the replication protocol as expected: {problem}")]
    Protocol { addr: String, problem: String },
    #[error("talking to {addr}: {source}")]
    Read {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} sent nothing for {after:?} ({received} bytes of the RDB received)")]
    Idle {
        addr: String,
        after: Duration,
        received: u64,
    },
    #[error("the fetch from {addr} passed its deadline of {after:?} ({received} bytes of the RDB received)")]
    Deadline {
        addr: String,
        after: Duration,
        received: u64,
    },
    #[error("{addr} closed the connection after {received} bytes of the RDB ({})", expected_text(*.expected))]
    Truncated {
        addr: String,
        received: u64,
        /// The announced size; `None` for a diskless transfer (the end mark never came).
        expected: Option<u64>,
    },
    #[error("the RDB from {addr} is not valid: {source}")]
    Rdb { addr: String, source: RdbError },
    #[error("writing the RDB out: {0}")]
    Write(std::io::Error),
}

fn expected_text(expected: Option<u64>) -> String {
    match expected {
        Some(n) => format!("{n} announced"),
        None => "before the end mark".to_owned(),
    }
}

/// Streams an RDB snapshot from the server in `opts` into `out`, verifying its header
/// and CRC-64 on the way. On `Ok`, `out` holds exactly the RDB and was flushed; on
/// any error what was written is not a valid snapshot and must be discarded.
pub async fn fetch_rdb<W: AsyncWrite + Unpin>(
    opts: &FetchOptions,
    out: &mut W,
) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let mut conn = Conn::connect(opts, started + opts.deadline).await?;
    handshake(&mut conn, opts.auth.as_ref()).await?;
    conn.send(&[b"SYNC"]).await?;
    let (payload, keepalives) = sync_reply(&mut conn).await?;
    tracing::debug!(addr = %conn.addr, ?payload, keepalives, "RDB transfer starting");
    let mut sink = Sink {
        out,
        verifier: RdbVerifier::new(),
    };
    let transfer = match payload {
        Payload::Sized(len) => {
            copy_sized(&mut conn, &mut sink, len).await?;
            Transfer::Sized
        }
        Payload::UntilMark(mark) => {
            copy_until_mark(&mut conn, &mut sink, &mark).await?;
            Transfer::Diskless
        }
    };
    timeout_at(conn.deadline_at, sink.out.flush())
        .await
        .map_err(|_| conn.past_deadline())?
        .map_err(FetchError::Write)?;
    let summary = sink.verifier.finish().map_err(|source| FetchError::Rdb {
        addr: conn.addr.clone(),
        source,
    })?;
    let fetched = Fetched {
        bytes: summary.len,
        crc: summary.crc,
        version: summary.version,
        duration: started.elapsed(),
        transfer,
        keepalives,
    };
    tracing::info!(addr = %conn.addr, bytes = fetched.bytes, crc = %format_args!("{:016x}", fetched.crc),
        duration = ?fetched.duration, ?transfer, "RDB fetched and its checksum verified");
    Ok(fetched)
}

#[derive(Debug)]
enum Payload {
    Sized(u64),
    UntilMark([u8; MARK_LEN]),
}

/// A reply line: `+…` or `-…` (without the sign).
enum Reply {
    Ok,
    Err(String),
}

/// `AUTH` and the two `REPLCONF`s.
async fn handshake(conn: &mut Conn, auth: Option<&Auth>) -> Result<(), FetchError> {
    if let Some(auth) = auth {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &auth.username {
            args.push(user.as_bytes());
        }
        args.push(auth.password.as_bytes());
        if let Reply::Err(message) = conn.command(&args).await? {
            return Err(FetchError::AuthFailed {
                addr: conn.addr.clone(),
                message,
            });
        }
    }
    for (option, value) in [("capa", "eof"), ("rdb-only", "1")] {
        let args: [&[u8]; 3] = [b"REPLCONF", option.as_bytes(), value.as_bytes()];
        if let Reply::Err(message) = conn.command(&args).await? {
            refusal(conn, "REPLCONF", &message)?;
            // An older server without the option: it still sends an RDB first.
            tracing::warn!(addr = %conn.addr, option, %message, "REPLCONF option not accepted; going on as redis-cli does");
        }
    }
    Ok(())
}

/// The errors that end a fetch whatever the command: authentication and permission.
fn refusal(conn: &Conn, command: &'static str, message: &str) -> Result<(), FetchError> {
    let addr = conn.addr.clone();
    let message = message.to_owned();
    if message.starts_with("NOAUTH") {
        Err(FetchError::AuthRequired { addr, message })
    } else if message.starts_with("NOPERM") || message.starts_with("WRONGPASS") {
        Err(FetchError::Refused {
            addr,
            command,
            message,
        })
    } else {
        Ok(())
    }
}

/// Reads `SYNC`'s answer up to the payload's announcement, skipping keep-alives.
async fn sync_reply(conn: &mut Conn) -> Result<(Payload, u32), FetchError> {
    let mut keepalives = 0u32;
    loop {
        let line = conn.line().await?;
        let protocol = |problem: String| FetchError::Protocol {
            addr: conn.addr.clone(),
            problem,
        };
        match line.first() {
            None => keepalives = keepalives.saturating_add(1),
            // `+FULLRESYNC …` precedes the payload when PSYNC is used; harmless here.
            Some(b'+') => {
                tracing::debug!(line = %String::from_utf8_lossy(&line), "status before the payload")
            }
            Some(b'-') => {
                let message = String::from_utf8_lossy(&line[1..]).into_owned();
                refusal(conn, "SYNC", &message)?;
                return Err(FetchError::Refused {
                    addr: conn.addr.clone(),
                    command: "SYNC",
                    message,
                });
            }
            Some(b'$') => {
                let rest = &line[1..];
                if let Some(mark) = rest.strip_prefix(b"EOF:") {
                    let mark: [u8; MARK_LEN] = mark.try_into().map_err(|_| {
                        protocol(format!(
                            "an end mark of {} bytes, not {MARK_LEN}",
                            mark.len()
                        ))
                    })?;
                    return Ok((Payload::UntilMark(mark), keepalives));
                }
                let len = std::str::from_utf8(rest)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        protocol(format!(
                            "a payload announcement {:?}",
                            String::from_utf8_lossy(&line)
                        ))
                    })?;
                return Ok((Payload::Sized(len), keepalives));
            }
            Some(_) => {
                return Err(protocol(format!(
                    "an unexpected reply {:?}",
                    String::from_utf8_lossy(&line)
                )))
            }
        }
    }
}

/// Where the payload goes: the verifier, then the output.
struct Sink<'a, W> {
    out: &'a mut W,
    verifier: RdbVerifier,
}

impl<W: AsyncWrite + Unpin> Sink<'_, W> {
    async fn put(&mut self, conn: &Conn, data: &[u8]) -> Result<(), FetchError> {
        self.verifier
            .update(data)
            .map_err(|source| FetchError::Rdb {
                addr: conn.addr.clone(),
                source,
            })?;
        timeout_at(conn.deadline_at, self.out.write_all(data))
            .await
            .map_err(|_| conn.past_deadline())?
            .map_err(FetchError::Write)
    }
}

async fn copy_sized<W: AsyncWrite + Unpin>(
    conn: &mut Conn,
    sink: &mut Sink<'_, W>,
    len: u64,
) -> Result<(), FetchError> {
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
        let (start, end) = conn.next_piece(want).await?;
        if start == end {
            return Err(FetchError::Truncated {
                addr: conn.addr.clone(),
                received: len - left,
                expected: Some(len),
            });
        }
        sink.put(conn, &conn.buf[start..end]).await?;
        left -= (end - start) as u64;
    }
    Ok(())
}

async fn copy_until_mark<W: AsyncWrite + Unpin>(
    conn: &mut Conn,
    sink: &mut Sink<'_, W>,
    mark: &[u8; MARK_LEN],
) -> Result<(), FetchError> {
    // The newest MARK_LEN bytes are held back until more arrive: they may be the mark.
    let mut held: Vec<u8> = Vec::with_capacity(CHUNK + MARK_LEN);
    loop {
        let (start, end) = conn.next_piece(CHUNK).await?;
        if start == end {
            return Err(FetchError::Truncated {
                addr: conn.addr.clone(),
                received: sink.verifier.len() + held.len() as u64,
                expected: None,
            });
        }
        held.extend_from_slice(&conn.buf[start..end]);
        if held.ends_with(mark) {
            let body = held.len() - MARK_LEN;
            return sink.put(conn, &held[..body]).await;
        }
        if held.len() > MARK_LEN {
            let cut = held.len() - MARK_LEN;
            sink.put(conn, &held[..cut]).await?;
            held.drain(..cut);
        }
    }
}

/// The byte stream: plain TCP or TLS over it (`Sync`: callers hold the fetch across threads).
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// The connection with its read buffer and time bounds.
struct Conn {
    stream: Box<dyn Io>,
    addr: String,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    idle: Duration,
    deadline: Duration,
    deadline_at: Instant,
    /// Payload bytes handed out so far.
    received: u64,
}

impl Conn {
    async fn connect(opts: &FetchOptions, deadline_at: Instant) -> Result<Self, FetchError> {
        let addr = format!("{}:{}", opts.host, opts.port);
        let bound = deadline_at.min(Instant::now() + opts.connect_timeout);
        let after = opts.connect_timeout.min(opts.deadline);
        let stream: Box<dyn Io> = if let Some(tls) = &opts.tls {
            // Connect and handshake share the connect bound; a failed verification is
            // `Connect` with rustls's reason, never a retry in plain text.
            let left = bound.saturating_duration_since(Instant::now());
            match crate::adapter::tls::connect(Arc::clone(tls), &opts.host, opts.port, left).await {
                Ok(s) => Box::new(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(FetchError::ConnectTimeout { addr, after })
                }
                Err(source) => return Err(FetchError::Connect { addr, source }),
            }
        } else {
            let stream = match timeout_at(
                bound,
                TcpStream::connect((opts.host.as_str(), opts.port)),
            )
            .await
            {
                Err(_) => {
                    return Err(FetchError::ConnectTimeout {
                        addr,
                        after: opts.connect_timeout.min(opts.deadline),
                    })
                }
                Ok(Err(source)) => return Err(FetchError::Connect { addr, source }),
                Ok(Ok(s)) => s,
            };
            // Commands are tiny and each waits for its answer.
            let _ = stream.set_nodelay(true);
            Box::new(stream)
        };
        Ok(Self {
            stream,
            addr,
            buf: vec![0u8; CHUNK],
            start: 0,
            end: 0,
            idle: opts.idle_timeout,
            deadline: opts.deadline,
            deadline_at,
            received: 0,
        })
    }

    fn past_deadline(&self) -> FetchError {
        FetchError::Deadline {
            addr: self.addr.clone(),
            after: self.deadline,
            received: self.received,
        }
    }

    async fn send(&mut self, args: &[&[u8]]) -> Result<(), FetchError> {
        let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            cmd.extend_from_slice(a);
            cmd.extend_from_slice(b"\r\n");
        }
        timeout_at(self.deadline_at, self.stream.write_all(&cmd))
            .await
            .map_err(|_| self.past_deadline())?
            .map_err(|source| FetchError::Read {
                addr: self.addr.clone(),
                source,
            })
    }

    async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, FetchError> {
        self.send(args).await?;
        let line = self.line().await?;
        match line.first() {
            Some(b'+') => Ok(Reply::Ok),
            Some(b'-') => Ok(Reply::Err(String::from_utf8_lossy(&line[1..]).into_owned())),
            _ => Err(FetchError::Protocol {
                addr: self.addr.clone(),
                problem: format!(
                    "{:?} answered with {:?}",
                    String::from_utf8_lossy(args[0]),
                    String::from_utf8_lossy(&line)
                ),
            }),
        }
    }

    /// Reads more bytes after `end` (compacting first); 0 means closed.
    async fn fill(&mut self) -> Result<usize, FetchError> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let idle_at = Instant::now() + self.idle;
        let read = timeout_at(
            self.deadline_at.min(idle_at),
            self.stream.read(&mut self.buf[self.end..]),
        )
        .await;
        match read {
            Err(_) if Instant::now() >= self.deadline_at => Err(self.past_deadline()),
            Err(_) => Err(FetchError::Idle {
                addr: self.addr.clone(),
                after: self.idle,
                received: self.received,
            }),
            Ok(Err(source)) => Err(FetchError::Read {
                addr: self.addr.clone(),
                source,
            }),
            Ok(Ok(n)) => {
                self.end += n;
                Ok(n)
            }
        }
    }

    /// One line without its `\r\n` (a keep-alive `\n` is an empty line).
    async fn line(&mut self) -> Result<Vec<u8>, FetchError> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let mut line = self.buf[self.start..self.start + i].to_vec();
                self.start += i + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.end - self.start >= LINE_MAX {
                return Err(FetchError::Protocol {
                    addr: self.addr.clone(),
                    problem: format!("a reply line longer than {LINE_MAX} bytes"),
                });
            }
            if self.fill().await? == 0 {
                return Err(FetchError::Protocol {
                    addr: self.addr.clone(),
                    problem: "the connection closed in the middle of a reply".to_owned(),
                });
            }
        }
    }

    /// The next payload bytes (at most `max`) as a range of `buf`, buffered ones first;
    /// an empty range means the server closed the connection.
    async fn next_piece(&mut self, max: usize) -> Result<(usize, usize), FetchError> {
        if self.start == self.end && self.fill().await? == 0 {
            return Ok((self.end, self.end));
        }
        let n = (self.end - self.start).min(max);
        let piece = (self.start, self.start + n);
        self.start += n;
        self.received += n as u64;
        Ok(piece)
    }
}
