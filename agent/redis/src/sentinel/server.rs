//! The listener: a connection limit, per-connection timeouts and bounded buffers, replies
//! from the newest [`SentinelView`], events from the [`EventHub`], and a clean stop on a
//! `CancellationToken`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::commands::{dispatch, Context, Session};
use super::pubsub::{messages_for, EventHub};
use super::records::ServerFacts;
use super::resp::{parse_request, Reply, MAX_ARGS, MAX_ARG_BYTES};
use super::view::{Event, EventTracker, SentinelView};
use crate::adapter::tls::{server_config, TlsError};

/// The port's limits and credentials (`redis.sentinel.*` in the member's YAML).
#[derive(Clone)]
pub struct SentinelConfig {
    /// `requirepass`: clients must `AUTH` (or `HELLO ... AUTH default <pw>`) first.
    pub password: Option<String>,
    /// Open connections at most; more are told `max number of clients reached`.
    pub max_connections: usize,
    /// A connection with no subscription and nothing to say is closed after this.
    /// (Subscribers wait for events as long as they like.)
    pub idle_timeout: Duration,
    /// A request that has started arriving must be complete within this.
    pub read_timeout: Duration,
    /// Each write to a client must finish within this; a slower client is dropped.
    pub write_timeout: Duration,
    /// Undelivered events kept per subscriber before it is disconnected.
    pub event_queue: usize,
    /// Publish `+switch-master`, `+sdown`/`-sdown`, `+slave` and `+new-epoch` derived from
    /// successive views (see [`EventTracker`]), so the daemon only has to publish views.
    pub publish_view_events: bool,
    /// TLS on the port (`tls-port` semantics: the port then speaks only TLS); `None`:
    /// plain RESP.
    pub tls: Option<SentinelTls>,
}

/// The Sentinel port's certificate, and whether clients must present one.
#[derive(Debug, Clone)]
pub struct SentinelTls {
    /// The port's certificate chain and key (PEM).
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    /// Client certificates are verified against this authority when given.
    pub client_ca_file: Option<std::path::PathBuf>,
    /// With `client_ca_file`: a client without a certificate is refused
    /// (`tls-auth-clients yes`); otherwise one is checked only when presented.
    pub require_client_cert: bool,
}

impl SentinelTls {
    /// The acceptor; an unreadable or invalid file is an error naming its setting.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        if self.require_client_cert && self.client_ca_file.is_none() {
            return Err(TlsError {
                setting: "sentinel.tls.require_client_cert".into(),
                why: "needs sentinel.tls.client_ca_file".into(),
            });
        }
        let config = server_config(
            ("sentinel.tls.cert_file", &self.cert_file),
            ("sentinel.tls.key_file", &self.key_file),
            self.client_ca_file.as_deref().map(|ca| {
                (
                    ("sentinel.tls.client_ca_file", ca),
                    self.require_client_cert,
                )
            }),
        )?;
        Ok(tokio_rustls::TlsAcceptor::from(config))
    }
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("event_queue", &self.event_queue)
            .field("publish_view_events", &self.publish_view_events)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Default for SentinelConfig {
    fn default() -> SentinelConfig {
        SentinelConfig {
            password: None,
            max_connections: 1_000,
            idle_timeout: Duration::from_secs(300),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            event_queue: 256,
            publish_view_events: true,
            tls: None,
        }
    }
}

/// Why the port stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    /// The listening socket could not be read.
    #[error("sentinel port: reading the listener's address: {0}")]
    Listener(#[source] std::io::Error),
    /// The TLS settings cannot be honoured (the port does not start in plain text).
    #[error("sentinel port: {0}")]
    Tls(#[source] TlsError),
}

/// A client's byte stream: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Bytes of replies gathered before they are written, so a pipelining client that does
/// not read cannot make the server buffer without bound.
const WRITE_BATCH: usize = 64 * 1024;
/// Largest buffered, incomplete request: above every legal request's size.
const MAX_PENDING_INPUT: usize = MAX_ARGS * (MAX_ARG_BYTES + 32) + 32;

#[derive(Debug, Default)]
struct Counters {
    connected: AtomicUsize,
    total_connections: AtomicU64,
    total_commands: AtomicU64,
    rejected: AtomicU64,
    channels: AtomicUsize,
    patterns: AtomicUsize,
    next_id: AtomicU64,
}

struct Shared {
    config: SentinelConfig,
    hub: EventHub,
    counters: Counters,
    started: Instant,
    port: u16,
}

impl Shared {
    fn facts(&self) -> ServerFacts {
        let c = &self.counters;
        ServerFacts {
            tcp_port: self.port,
            started: self.started,
            connected_clients: c.connected.load(Ordering::Relaxed),
            maxclients: self.config.max_connections,
            total_connections: c.total_connections.load(Ordering::Relaxed),
            total_commands: c.total_commands.load(Ordering::Relaxed),
            rejected_connections: c.rejected.load(Ordering::Relaxed),
            pubsub_channels: c.channels.load(Ordering::Relaxed),
            pubsub_patterns: c.patterns.load(Ordering::Relaxed),
        }
    }
}

/// Serves the Sentinel port on `listener` until `cancel` fires, then closes every
/// connection and returns.
pub async fn serve(
    listener: TcpListener,
    config: SentinelConfig,
    view: watch::Receiver<SentinelView>,
    hub: EventHub,
    cancel: CancellationToken,
) -> Result<(), SentinelError> {
    let port = listener
        .local_addr()
        .map_err(SentinelError::Listener)?
        .port();
    let acceptor = match &config.tls {
        Some(tls) => Some(tls.acceptor().map_err(SentinelError::Tls)?),
        None => None,
    };
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared {
        config,
        hub,
        counters: Counters::default(),
        started: Instant::now(),
        port,
    });
    let mut tasks = JoinSet::new();
    if shared.config.publish_view_events {
        tasks.spawn(publish_view_events(
            view.clone(),
            shared.hub.clone(),
            cancel.clone(),
        ));
    }
    tracing::info!(port, "sentinel port listening");
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: try again shortly, not in a hot loop.
                        tracing::warn!(error = %e, "sentinel port: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    // Over TLS the refusal would need a handshake first: closing says it.
                    if acceptor.is_none() {
                        tasks.spawn(refuse(stream, shared.config.write_timeout));
                    }
                    continue;
                };
                let acceptor = acceptor.clone();
                let shared = Arc::clone(&shared);
                let view = view.clone();
                let cancel = cancel.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let stream: Box<dyn Io> = match acceptor {
                        None => Box::new(stream),
                        Some(acceptor) => {
                            // The handshake is bounded like a request; no plain text is
                            // ever answered on a TLS port.
                            let handshake = tokio::time::timeout(
                                shared.config.read_timeout,
                                acceptor.accept(stream),
                            );
                            match handshake.await {
                                Ok(Ok(tls)) => Box::new(tls),
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "sentinel port: TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "sentinel port: TLS handshake timed out");
                                    return;
                                }
                            }
                        }
                    };
                    shared.counters.connected.fetch_add(1, Ordering::Relaxed);
                    shared.counters.total_connections.fetch_add(1, Ordering::Relaxed);
                    let mut conn = Connection::new(&shared, stream);
                    if let Err(reason) = conn.run(&view, &cancel).await {
                        tracing::debug!(%peer, reason, "sentinel client closed");
                    }
                    conn.forget_subscriptions();
                    shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Every task watches `cancel`; a connection blocked in a write gives up within
    // `write_timeout`.
    while tasks.join_next().await.is_some() {}
    tracing::info!(port, "sentinel port closed");
    Ok(())
}

async fn refuse(mut stream: TcpStream, write_timeout: Duration) {
    let _ = tokio::time::timeout(write_timeout, async {
        stream
            .write_all(b"-ERR max number of clients reached\r\n")
            .await?;
        stream.shutdown().await?;
        // Read what the client already sent until it closes (bounded in time and
        // buffer): closing with unread input would send a reset, which can destroy the
        // error before the client reads it.
        let mut sink = [0u8; 512];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

async fn publish_view_events(
    mut view: watch::Receiver<SentinelView>,
    hub: EventHub,
    cancel: CancellationToken,
) {
    let mut tracker = EventTracker::default();
    loop {
        let events: Vec<Event> = tracker.update(&view.borrow_and_update());
        for event in events {
            hub.publish_event(event);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
    }
}

struct Connection<'a> {
    shared: &'a Shared,
    stream: Box<dyn Io>,
    session: Session,
    input: BytesMut,
    output: Vec<u8>,
    events: Option<broadcast::Receiver<Arc<Event>>>,
    counted: (usize, usize),
}

impl<'a> Connection<'a> {
    fn new(shared: &'a Shared, stream: Box<dyn Io>) -> Connection<'a> {
        let id = shared.counters.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        Connection {
            shared,
            stream,
            session: Session::new(id, shared.config.password.is_some()),
            input: BytesMut::with_capacity(4096),
            output: Vec::new(),
            events: None,
            counted: (0, 0),
        }
    }

    /// Serves requests and events until the client leaves, misbehaves or `cancel` fires;
    /// the error names why the connection ended.
    async fn run(
        &mut self,
        view: &watch::Receiver<SentinelView>,
        cancel: &CancellationToken,
    ) -> Result<(), &'static str> {
        loop {
            self.handle_buffered(view).await?;
            self.sync_subscriptions();
            let wait = if !self.input.is_empty() {
                Some(self.shared.config.read_timeout)
            } else if self.session.subscriptions() > 0 {
                None
            } else {
                Some(self.shared.config.idle_timeout)
            };
            let deadline = wait.map(|w| tokio::time::Instant::now() + w);
            let events = &mut self.events;
            tokio::select! {
                () = cancel.cancelled() => return Err("shutting down"),
                read = self.stream.read_buf(&mut self.input) => match read {
                    Ok(0) => return Err("client closed the connection"),
                    Ok(_) => {}
                    Err(_) => return Err("read failed"),
                },
                () = sleep_until(deadline) => return Err("timed out"),
                event = recv(events) => match event {
                    Ok(event) => {
                        for msg in messages_for(&self.session.channels, &self.session.patterns, &event) {
                            msg.encode(self.session.proto, &mut self.output);
                        }
                        self.flush().await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        tracing::warn!(id = self.session.id, "sentinel subscriber too slow: disconnected");
                        return Err("subscriber fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => self.events = None,
                },
            }
        }
    }

    /// Answers every complete request in the input buffer.
    async fn handle_buffered(
        &mut self,
        view: &watch::Receiver<SentinelView>,
    ) -> Result<(), &'static str> {
        loop {
            match parse_request(&mut self.input) {
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => {
                    self.shared
                        .counters
                        .total_commands
                        .fetch_add(1, Ordering::Relaxed);
                    let replies = {
                        let current = view.borrow();
                        let facts = || self.shared.facts();
                        let ctx = Context {
                            view: &current,
                            password: self.shared.config.password.as_deref(),
                            facts: &facts,
                            now: Instant::now(),
                        };
                        dispatch(&mut self.session, &ctx, &args)
                    };
                    // Join the hub before the `SUBSCRIBE` confirmation goes out: an
                    // event published once the client has it must reach it.
                    self.sync_subscriptions();
                    for reply in replies {
                        reply.encode(self.session.proto, &mut self.output);
                    }
                    if self.output.len() >= WRITE_BATCH {
                        self.flush().await?;
                    }
                }
                Ok(None) => {
                    if self.input.len() > MAX_PENDING_INPUT {
                        return Err("request too large");
                    }
                    return self.flush().await;
                }
                Err(e) => {
                    // Redis answers a protocol error, then closes the connection.
                    Reply::err(e.to_string()).encode(self.session.proto, &mut self.output);
                    self.flush().await?;
                    return Err("protocol error");
                }
            }
        }
    }

    async fn flush(&mut self) -> Result<(), &'static str> {
        if self.output.is_empty() {
            return Ok(());
        }
        let write = self.stream.write_all(&self.output);
        match tokio::time::timeout(self.shared.config.write_timeout, write).await {
            Ok(Ok(())) => {
                self.output.clear();
                Ok(())
            }
            Ok(Err(_)) => Err("write failed"),
            Err(_) => Err("write timed out"),
        }
    }

    /// Joins the hub on the first subscription and leaves it with the last, and keeps
    /// the server-wide counters `INFO` shows.
    fn sync_subscriptions(&mut self) {
        let now = (self.session.channels.len(), self.session.patterns.len());
        self.update_counts(now);
        match (self.session.subscriptions() > 0, self.events.is_some()) {
            (true, false) => self.events = Some(self.shared.hub.subscribe()),
            (false, true) => self.events = None,
            _ => {}
        }
    }

    fn update_counts(&mut self, now: (usize, usize)) {
        let c = &self.shared.counters;
        c.channels.fetch_add(now.0, Ordering::Relaxed);
        c.channels.fetch_sub(self.counted.0, Ordering::Relaxed);
        c.patterns.fetch_add(now.1, Ordering::Relaxed);
        c.patterns.fetch_sub(self.counted.1, Ordering::Relaxed);
        self.counted = now;
    }

    fn forget_subscriptions(&mut self) {
        self.update_counts((0, 0));
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn recv(
    events: &mut Option<broadcast::Receiver<Arc<Event>>>,
) -> Result<Arc<Event>, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
