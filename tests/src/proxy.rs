//! A fault-injecting TCP proxy on loopback, for network partitions without
//! network namespaces.
//!
//! [`Proxy::start`] listens on a fresh loopback port and forwards every
//! connection to `127.0.0.1:<target>`, byte for byte, in both directions. A
//! test routes one kind of traffic through it (a node's etcd client, or the
//! replication connections other members open to a node) and then injects
//! faults:
//!
//! * [`Proxy::cut`]: every live connection is shut down at once (both
//!   directions; the peers read EOF, or a reset if they had unread data in
//!   flight), and every new connection is accepted and closed right away.
//!   The listener stays bound, so the port cannot be taken by someone else
//!   while the link is down, and heal needs no re-bind. Clients therefore
//!   fail *fast*: libpq reports "server closed the connection unexpectedly"
//!   on its first read, etcd's gRPC channel sees its HTTP/2 connection end and
//!   every pending call fails at once instead of waiting for a timeout. This
//!   is a partition that is detected immediately, the harshest case for the
//!   agent's timing: it learns at once that etcd is gone and must still not
//!   stop accepting writes *later* than its lease allows.
//! * [`Proxy::black_hole`]: nothing is closed, but no byte moves any more:
//!   data already read is held, new connections are accepted (the kernel
//!   completes the handshake) but not connected upstream. Clients only notice
//!   through their own timeouts, as with a pulled cable. On heal the held
//!   bytes are delivered in order, as TCP retransmission would.
//! * [`Proxy::heal`]: back to forwarding. Connections closed by a cut stay
//!   closed; clients reconnect.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] live connections (more are closed on
//! accept), upstream connects time out after [`CONNECT_TIMEOUT`], writes
//! after [`WRITE_TIMEOUT`]; a fault never leaves a thread blocked. Dropping
//! the proxy closes the listener and every connection and waits (bounded)
//! for its threads to end.
//!
//! Plain std threads (two per connection) rather than an async runtime: a
//! test opens a handful of connections, and threads keep the kit free of a
//! runtime to manage.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::ports;

/// Live connections at most; further ones are closed on accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Bound for connecting to the target.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound for one write to either side (a peer that stops reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for the threads to finish when the proxy is dropped.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);
const BUF_SIZE: usize = 16 * 1024;

/// What the proxy does with traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Open,
    /// Close every connection, close new ones on accept.
    Cut,
    /// Hold every byte and every new connection until healed.
    BlackHole,
}

/// Counters, for tests and for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded (or held, in black-hole mode).
    pub forwarded: u64,
    /// Connections closed on accept (cut, over the cap, target unreachable).
    pub rejected: u64,
    /// Connections closed by [`Proxy::cut`].
    pub cut: u64,
    /// Bytes forwarded, both directions.
    pub bytes: u64,
    /// Connections open right now.
    pub live: usize,
}

/// One forwarded connection: both sockets, so a cut can shut them down.
#[derive(Debug)]
struct Conn {
    client: TcpStream,
    upstream: Option<TcpStream>,
}

impl Conn {
    fn shutdown(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(u) = &self.upstream {
            let _ = u.shutdown(Shutdown::Both);
        }
    }
}

#[derive(Debug)]
struct State {
    mode: Mode,
    conns: HashMap<u64, Conn>,
}

#[derive(Debug)]
struct Shared {
    target: u16,
    state: Mutex<State>,
    /// Signalled on every mode change and on stop.
    changed: Condvar,
    stop: AtomicBool,
    next_id: AtomicU64,
    /// Connection handler threads alive (each owns one connection).
    threads: AtomicUsize,
    forwarded: AtomicU64,
    rejected: AtomicU64,
    cut: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Block while the proxy is black-holed. Returns the mode that ended the
    /// wait (`Open` or `Cut`; `Cut` also when the proxy stops).
    fn wait_not_black_hole(&self) -> Mode {
        let mut st = self.lock();
        loop {
            if self.stopping() {
                return Mode::Cut;
            }
            if st.mode != Mode::BlackHole {
                return st.mode;
            }
            st = self
                .changed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A running proxy. See the module docs.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a fresh loopback port, forwarding to `127.0.0.1:target`.
    pub fn start(target: u16) -> Result<Proxy> {
        let (port, listener) = bind_fresh()?;
        Self::with_listener(port, listener, target)
    }

    /// Listen on `port` (which must be free), forwarding to `127.0.0.1:target`.
    pub fn start_on(port: u16, target: u16) -> Result<Proxy> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .with_context(|| format!("proxy: binding 127.0.0.1:{port}"))?;
        Self::with_listener(port, listener, target)
    }

    fn with_listener(port: u16, listener: TcpListener, target: u16) -> Result<Proxy> {
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State {
                mode: Mode::Open,
                conns: HashMap::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            threads: AtomicUsize::new(0),
            forwarded: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || accept_loop(&listener, &s))
            .context("proxy: spawning the accept thread")?;
        Ok(Proxy {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port traffic is forwarded to.
    pub fn target(&self) -> u16 {
        self.shared.target
    }

    pub fn mode(&self) -> Mode {
        self.shared.lock().mode
    }

    /// Close every live connection and close new ones on accept, until
    /// [`Proxy::heal`].
    pub fn cut(&self) {
        let mut st = self.shared.lock();
        st.mode = Mode::Cut;
        for c in st.conns.values() {
            c.shutdown();
        }
        self.shared
            .cut
            .fetch_add(st.conns.len() as u64, Ordering::Relaxed);
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Stop moving bytes without closing anything, until [`Proxy::heal`].
    pub fn black_hole(&self) {
        self.set_mode(Mode::BlackHole);
    }

    /// Forward again.
    pub fn heal(&self) {
        self.set_mode(Mode::Open);
    }

    fn set_mode(&self, mode: Mode) {
        self.shared.lock().mode = mode;
        self.shared.changed.notify_all();
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            forwarded: self.shared.forwarded.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            cut: self.shared.cut.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            live: self.shared.lock().conns.len(),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let st = self.shared.lock();
            for c in st.conns.values() {
                c.shutdown();
            }
        }
        self.shared.changed.notify_all();
        // Wake the blocking accept; it sees `stop` and returns, closing the
        // listener.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(1),
        );
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let deadline = Instant::now() + DROP_TIMEOUT;
        while self.shared.threads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Bind a port from the kit's allocator (below the ephemeral range, never
/// handed out twice in this process), retrying if someone else took it
/// between the probe and our bind.
fn bind_fresh() -> Result<(u16, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let port = ports::free_port()?;
        match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
            Ok(l) => return Ok((port, l)),
            Err(e) => last = Some(e),
        }
    }
    bail!("proxy: no bindable port: {last:?}")
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(client) = stream else {
            // EMFILE and friends: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let accept = {
            let st = shared.lock();
            st.mode != Mode::Cut && st.conns.len() < MAX_CONNECTIONS
        };
        if !accept {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            drop(client); // FIN, or RST if the client already sent data
            continue;
        }
        shared.threads.fetch_add(1, Ordering::SeqCst);
        let s = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("proxy-conn".to_string())
            .spawn(move || {
                handle(client, &s);
                s.threads.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.threads.fetch_sub(1, Ordering::SeqCst);
            shared.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Forward one connection until either side ends or a cut closes it.
fn handle(client: TcpStream, shared: &Arc<Shared>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = client.set_write_timeout(Some(WRITE_TIMEOUT));
    // Registered before the upstream exists so a cut or drop during a
    // black-holed connect still closes the client.
    let Ok(client_reg) = client.try_clone() else {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        return;
    };
    shared.lock().conns.insert(
        id,
        Conn {
            client: client_reg,
            upstream: None,
        },
    );
    let done = |shared: &Shared| {
        shared.lock().conns.remove(&id);
    };
    // A black-holed link does not even complete the connection upstream.
    if shared.wait_not_black_hole() == Mode::Cut {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        done(shared);
        return;
    }
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, shared.target));
    let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        done(shared);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = upstream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (Ok(up_reg), Ok(up_read), Ok(client_read)) = (
        upstream.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
    ) else {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        done(shared);
        return;
    };
    {
        let mut st = shared.lock();
        // A cut (or stop) that happened while we connected wins.
        if st.mode == Mode::Cut || shared.stopping() {
            drop(st);
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            let _ = upstream.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            done(shared);
            return;
        }
        if let Some(c) = st.conns.get_mut(&id) {
            c.upstream = Some(up_reg);
        }
    }
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    let s = Arc::clone(shared);
    shared.threads.fetch_add(1, Ordering::SeqCst);
    let back = std::thread::Builder::new()
        .name("proxy-pump".to_string())
        .spawn(move || {
            pump(up_read, client, &s);
            s.threads.fetch_sub(1, Ordering::SeqCst);
        });
    if back.is_err() {
        shared.threads.fetch_sub(1, Ordering::SeqCst);
        let _ = upstream.shutdown(Shutdown::Both);
        let _ = client_read.shutdown(Shutdown::Both);
        done(shared);
        return;
    }
    pump(client_read, upstream, shared);
    if let Ok(h) = back {
        let _ = h.join();
    }
    done(shared);
}

/// Copy `from` → `to` until EOF, an error or a cut; then half-close `to` so
/// the other side sees the end too.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        // Held, not dropped, while black-holed; dropped if cut meanwhile.
        if shared.wait_not_black_hole() == Mode::Cut {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            break;
        }
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const T: Duration = Duration::from_secs(5);

    /// An echo server on a fresh port; each connection echoes until EOF.
    fn echo_server() -> (u16, Arc<AtomicBool>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (port, stop)
    }

    fn connect(port: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s
    }

    /// Send `msg` and read the echo; an error if the link does not carry it.
    fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn bytes_pass_both_ways_unchanged() {
        let (target, _stop) = echo_server();
        let p = Proxy::start(target).unwrap();
        assert_ne!(p.port(), target);
        let mut c = connect(p.port());
        // Larger than one buffer, every byte value.
        let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(round_trip(&mut c, &msg).unwrap(), msg);
        // Counted after each write, so the last count may trail the echo.
        let want = 2 * msg.len() as u64;
        crate::wait::wait_until(T, "bytes counted", || {
            (p.stats().bytes == want).then_some(())
        });
        let st = p.stats();
        assert_eq!((st.forwarded, st.live), (1, 1));
        // EOF from the client reaches the server, whose close comes back.
        c.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        crate::wait::wait_until(T, "connection deregistered", || {
            (p.stats().live == 0).then_some(())
        });
    }

    #[test]
    fn cut_closes_live_connections_at_once_and_rejects_new_ones() {
        let (target, _stop) = echo_server();
        let p = Proxy::start(target).unwrap();
        let mut c = connect(p.port());
        assert_eq!(round_trip(&mut c, b"before").unwrap(), b"before");

        let t0 = Instant::now();
        p.cut();
        assert_eq!(p.mode(), Mode::Cut);
        // The live connection ends: EOF or reset, well before the read timeout.
        let mut buf = [0u8; 16];
        match c.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("read {n} bytes through a cut proxy"),
            Err(e) => assert_ne!(e.kind(), ErrorKind::WouldBlock, "read timed out: {e}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        // Nothing written afterwards arrives.
        let _ = c.write_all(b"after");
        // New connections are accepted by the kernel, then closed unanswered.
        let mut d = connect(p.port());
        assert!(round_trip(&mut d, b"new").is_err());
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let st = p.stats();
        assert!(st.cut >= 1 && st.rejected >= 1, "{st:?}");
        crate::wait::wait_until(T, "cut connection deregistered", || {
            (p.stats().live == 0).then_some(())
        });

        p.heal();
        assert_eq!(p.mode(), Mode::Open);
        let mut e = connect(p.port());
        assert_eq!(round_trip(&mut e, b"healed").unwrap(), b"healed");
    }

    #[test]
    fn black_hole_holds_bytes_and_heal_delivers_them_in_order() {
        let (target, _stop) = echo_server();
        let p = Proxy::start(target).unwrap();
        let mut c = connect(p.port());
        assert_eq!(round_trip(&mut c, b"one").unwrap(), b"one");

        p.black_hole();
        c.write_all(b"two").unwrap();
        // A new connection is accepted but not carried either.
        let mut d = connect(p.port());
        d.write_all(b"late").unwrap();
        let (tx, rx) = mpsc::channel();
        let mut c2 = c.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut got = [0u8; 3];
            let r = c2.read_exact(&mut got).map(|()| got);
            let _ = tx.send(r);
        });
        // Bounded observation window: nothing may come back while black-holed.
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "bytes crossed a black-holed proxy"
        );

        p.heal();
        let got = rx.recv_timeout(T).expect("echo after heal").unwrap();
        assert_eq!(&got, b"two");
        let mut late = [0u8; 4];
        d.read_exact(&mut late).unwrap();
        assert_eq!(&late, b"late");
    }

    #[test]
    fn cut_during_black_hole_closes_held_connections() {
        let (target, _stop) = echo_server();
        let p = Proxy::start(target).unwrap();
        p.black_hole();
        let mut c = connect(p.port());
        c.write_all(b"held").unwrap();
        p.cut();
        let mut buf = [0u8; 4];
        match c.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("read {n} bytes through a cut proxy"),
            Err(e) => assert_ne!(e.kind(), ErrorKind::WouldBlock, "read timed out: {e}"),
        }
        assert_eq!(p.stats().forwarded, 0);
    }

    #[test]
    fn unreachable_target_closes_the_client() {
        let target = ports::free_port().unwrap(); // nothing listens there
        let p = Proxy::start(target).unwrap();
        let mut c = connect(p.port());
        assert!(round_trip(&mut c, b"x").is_err());
        crate::wait::wait_until(T, "rejected counted", || {
            (p.stats().rejected == 1).then_some(())
        });
    }

    #[test]
    fn drop_closes_connections_and_frees_the_port() {
        let (target, _stop) = echo_server();
        let p = Proxy::start(target).unwrap();
        let port = p.port();
        let mut c = connect(port);
        assert_eq!(round_trip(&mut c, b"x").unwrap(), b"x");
        let shared = Arc::clone(&p.shared);
        drop(p);
        assert_eq!(shared.threads.load(Ordering::SeqCst), 0);
        let mut buf = [0u8; 1];
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
        assert!(ports::port_is_free(port));
    }
}
