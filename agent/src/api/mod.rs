//! The REST API (hyper): Patroni's health and status endpoints, served from the cached
//! status. The only module of the agent that knows HTTP serving.

pub mod auth;
pub mod backup;
mod backup_dump;
pub mod config_edit;
pub mod health;
pub mod metrics;
mod metrics_backup;
pub mod security;
pub mod views;
pub mod write;

use crate::state::Shared;
use bytes::Bytes;
use health::Check;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use warden_api::FailsafeRequest;

/// Connections served with keep-alive at once.
const MAX_CONNECTIONS: usize = 256;
/// Of those, at most this many from one client address, so one client cannot hold
/// them all.
const MAX_PER_CLIENT: usize = 64;
/// Beyond either limit a connection is still answered, once, without keep-alive and
/// with a short header deadline: health checks (HAProxy's `/primary`) must get an
/// answer even while slow clients hold every regular slot. At most this many at once;
/// past that a connection gets an immediate 503.
const MAX_OVERFLOW: usize = 64;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The same on an overflow connection.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// Every response the API produces.
pub type Reply = Response<Full<Bytes>>;

/// Connections per client address; an entry lives while its connections do.
#[derive(Debug, Default)]
struct PerClient(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl PerClient {
    /// Counts a connection from `ip` unless it already has `MAX_PER_CLIENT`.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            owner: self.clone(),
            ip,
        })
    }
}

/// One counted connection; uncounted when dropped.
struct ClientSlot {
    owner: Arc<PerClient>,
    ip: std::net::IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self
            .owner
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

pub async fn serve(listener: TcpListener, ctx: write::Context, shutdown: CancellationToken) {
    let ctx = Arc::new(ctx);
    let regular = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let overflow = Arc::new(Semaphore::new(MAX_OVERFLOW));
    let clients = Arc::new(PerClient::default());
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // E.g. out of file descriptors: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        let slot = clients.admit(peer.ip());
        let permit = slot
            .is_some()
            .then(|| regular.clone().try_acquire_owned().ok())
            .flatten();
        if let (Some(permit), Some(slot)) = (permit, slot) {
            tokio::spawn(async move {
                accept_connection(stream, peer.ip(), ctx, true).await;
                drop((permit, slot));
            });
            continue;
        }
        match overflow.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    accept_connection(stream, peer.ip(), ctx, false).await;
                    drop(permit);
                });
            }
            // Over TLS a plain-text 503 would be noise to the client: just close.
            Err(_) if ctx.security.tls => drop(stream),
            Err(_) => {
                tokio::spawn(refuse_connection(stream));
            }
        }
    }
}

/// The TLS handshake (with the current certificate, within the header deadline), then
/// the HTTP connection; plain HTTP when the API serves no TLS. Nothing falls back: a
/// failed handshake closes the connection.
async fn accept_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::IpAddr,
    ctx: Arc<write::Context>,
    regular: bool,
) {
    let rules = ctx.security.current();
    let Some(tls) = rules.tls.clone() else {
        let conn = security::ConnInfo {
            peer,
            client_cert: false,
        };
        serve_connection(TokioIo::new(stream), conn, ctx, regular).await;
        return;
    };
    let deadline = if regular {
        HEADER_TIMEOUT
    } else {
        OVERFLOW_HEADER_TIMEOUT
    };
    let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
    let stream = match tokio::time::timeout(deadline, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let client_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    let conn = security::ConnInfo { peer, client_cert };
    serve_connection(TokioIo::new(stream), conn, ctx, regular).await;
}

/// Serves one connection: with keep-alive (`regular`), or a single request with a short
/// header deadline that only the read-only endpoints answer.
async fn serve_connection<T>(
    io: TokioIo<T>,
    conn_info: security::ConnInfo,
    ctx: Arc<write::Context>,
    regular: bool,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        async move {
            let rules = ctx.security.current();
            let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
            let mut reply = if !safe && !regular {
                text(503, "the REST API is at its connection limit; retry")
            } else if let Some(reason) = match safe {
                true => None,
                false => {
                    let cluster = ctx.shared.snapshot().cluster;
                    security::denied(&rules, conn_info, cluster.as_deref()).await
                }
            } {
                tracing::info!(peer = %conn_info.peer, method = %req.method(), path = req.uri().path(), reason, "refused an unsafe request");
                text(403, reason)
            } else if regular {
                route(req, &ctx).await
            } else {
                handle(&req, &ctx.shared)
            };
            for (name, value) in &rules.headers {
                reply.headers_mut().insert(name.clone(), value.clone());
            }
            Ok::<_, Infallible>(reply)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(regular)
        .header_read_timeout(if regular {
            HEADER_TIMEOUT
        } else {
            OVERFLOW_HEADER_TIMEOUT
        })
        .serve_connection(io, svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "API connection ended with an error");
    }
}

/// Past every limit: a 503 written at once (bounded), then the connection is closed.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BUSY: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.write_all(BUSY)).await;
}

fn respond(
    status: u16,
    content_type: &str,
    body: String,
    with_body: bool,
) -> Response<Full<Bytes>> {
    let body = if with_body {
        Bytes::from(body)
    } else {
        Bytes::new()
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// JSON as Python's `json.dumps` writes it (`", "` and `": "` separators), which is
/// how Patroni serves the keys it passes through unchanged (`/config`, `/failsafe`).
fn python_json(v: &serde_json::Value) -> String {
    struct Spaced;
    impl serde_json::ser::Formatter for Spaced {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            // The same separator between members as between items.
            self.begin_array_value(w, first)
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
        ) -> std::io::Result<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    // Serialising a `Value` into memory cannot fail; the compact form stands in if it did.
    match serde::Serialize::serialize(v, &mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| v.to_string()),
        Err(_) => v.to_string(),
    }
}

fn json(status: u16, v: &serde_json::Value, with_body: bool) -> Response<Full<Bytes>> {
    respond(status, "application/json", v.to_string(), with_body)
}

/// A JSON answer from its encoding (`serde_json::to_string` of a wire type).
fn encoded(
    status: u16,
    body: serde_json::Result<String>,
    with_body: bool,
) -> Response<Full<Bytes>> {
    match body {
        Ok(body) => respond(status, "application/json", body, with_body),
        Err(e) => text(500, &format!("cannot encode the answer: {e}")),
    }
}

/// A status line and no body (Patroni's `_write_status_code_only`).
fn status_only(status: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// A plain answer exactly as Patroni writes one (`write_response`): the bare message,
/// no trailing newline, `Content-Type: text/html`. Scripts compare these bodies.
fn text(status: u16, msg: &str) -> Response<Full<Bytes>> {
    respond(status, "text/html", msg.to_string(), true)
}

/// Where Patroni answers with Python's `send_error(code)` (no message of its own): the
/// same HTML page, so a client that matches Patroni's bodies sees no difference.
fn error_page(status: u16) -> Response<Full<Bytes>> {
    let (phrase, explain) = match status {
        400 => ("Bad Request", "Bad request syntax or unsupported method"),
        404 => ("Not Found", "Nothing matches the given URI"),
        409 => ("Conflict", "Request conflict"),
        411 => ("Length Required", "Client must specify Content-Length"),
        502 => ("Bad Gateway", "Invalid responses from another server/proxy"),
        503 => (
            "Service Unavailable",
            "The server cannot process the request due to a high load",
        ),
        _ => ("Internal Server Error", "Server got itself in trouble"),
    };
    let body = format!(
        "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        \
         <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        \
         <p>Error code: {status}</p>\n        <p>Message: {phrase}.</p>\n        \
         <p>Error code explanation: {status} - {explain}.</p>\n    </body>\n</html>\n"
    );
    let mut r = respond(status, "text/html;charset=utf-8", body, true);
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

use write::MAX_REQUEST_BODY;

async fn route(req: Request<Incoming>, ctx: &write::Context) -> Reply {
    let req = match write::handle(req, ctx).await {
        Ok(reply) => return reply,
        Err(req) => req,
    };
    let req = match backup::handle(req, ctx).await {
        Ok(reply) => return reply,
        Err(req) => req,
    };
    if req.method() == Method::POST && req.uri().path().trim_end_matches('/') == "/failsafe" {
        // A mutating endpoint like the others (Patroni guards it too; members send their
        // restapi credentials): an accepted request holds off this member's failover.
        if let Some(r) = write::unauthorized(&req, &ctx.shared) {
            return r;
        }
        return failsafe(req, &ctx.shared).await;
    }
    handle(&req, &ctx.shared)
}

/// `POST /failsafe`: the leader, cut off from the DCS, asks whether it may stay primary.
/// A member that is not itself a running primary accepts and, for the next `ttl`, will
/// not race for the leader key. Outside failsafe mode (as far as this member last saw
/// the `config` key) there is nothing to confirm: 502, as Patroni answers.
async fn failsafe(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let failsafe_mode = shared
        .snapshot()
        .cluster
        .as_ref()
        .is_some_and(|c| c.dynamic_config().failsafe_mode);
    if !failsafe_mode {
        // Patroni's bare 502 page; the reason goes to the log.
        tracing::info!("refused POST /failsafe: failsafe_mode is off");
        return error_page(502);
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(400, &format!("cannot read the request body: {e}")),
    };
    let leader = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(m)) => match FailsafeRequest::try_from(m) {
            Ok(r) => r.name,
            Err(e) => return text(400, &e),
        },
        Ok(_) => return text(400, FailsafeRequest::NO_NAME),
        Err(e) => return text(400, &format!("body: invalid JSON: {e}")),
    };
    let s = shared.snapshot();
    if s.in_recovery() == Some(false) {
        return text(500, "Running as a leader");
    }
    shared.update(|st| st.failsafe_leader = Some((leader, Instant::now())));
    let mut r = text(200, "Accepted");
    // Patroni's `lsn` header: how far this member has received/replayed.
    if let Some(lsn) = s
        .probe
        .as_ref()
        .and_then(crate::probe::ServerProbe::position)
    {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&lsn.to_string()) {
            r.headers_mut().insert("lsn", v);
        }
    }
    r
}

pub fn handle(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let with_body = method == Method::GET;
    if method != Method::GET && method != Method::HEAD && method != Method::OPTIONS {
        return text(405, &format!("method {method} is not supported on {path}"));
    }
    let s = shared.snapshot();
    let now = Instant::now();
    let lease_valid = shared.deadline.valid_at(now);
    if let Some(check) = Check::from_path(&path) {
        let filters = match health::parse_filters(req.uri().query()) {
            Ok(f) => f,
            Err(e) => return text(400, &e),
        };
        let code = health::evaluate(check, &filters, &s, lease_valid, now);
        if matches!(check, Check::Liveness | Check::Readiness) {
            // Patroni answers these with the status line only.
            return status_only(code);
        }
        let body = serde_json::to_string(&views::patroni(&s, lease_valid));
        return encoded(code, body, with_body);
    }
    match path.trim_end_matches('/') {
        "/patroni" => encoded(
            200,
            serde_json::to_string(&views::patroni(&s, lease_valid)),
            with_body,
        ),
        "/cluster" => encoded(200, serde_json::to_string(&views::cluster(&s)), with_body),
        "/history" => json(200, &views::history(&s), with_body),
        "/config" => match views::config(&s) {
            Some(v) => respond(200, "application/json", python_json(&v), with_body),
            None => error_page(502),
        },
        "/failsafe" => match views::failsafe(&s) {
            Some(v) => respond(200, "application/json", python_json(&v), with_body),
            None => error_page(502),
        },
        "/metrics" => respond(
            200,
            metrics::CONTENT_TYPE,
            metrics::render(&s, shared.deadline.remaining(now)),
            with_body,
        ),
        _ => text(404, &format!("no endpoint {path}")),
    }
}
