//! A minimal bounded HTTP client for talking to other agents' REST APIs, over `http://`
//! or `https://` (rustls).
//!
//! The TLS side is the process's: the daemon installs it from `ctl.*`/`restapi.*` at
//! start and on reload, `wardenctl` from its config and `-k` ([`set_tls`]). One
//! process, one identity, as Patroni's single request pool: threading it through every
//! probe and call site would change nothing but signatures. An `https://` URL is never
//! tried over plain HTTP, and a plain `http://` URL never over TLS.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Answers from peers are small status documents; anything larger is refused.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {0}: {1}")]
    Url(String, String),
    #[error("request to {0} timed out after {1:?}")]
    Timeout(String, Duration),
    #[error("request to {0} failed: {1}")]
    Request(String, String),
    #[error("{0} answered with a body that is not JSON: {1}")]
    Body(String, String),
    /// The TLS handshake failed: the server's certificate did not verify against what
    /// the client trusts (named), or the server refused the client's certificate.
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
}

/// The client's TLS configuration and a description of what it trusts (for errors).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// E.g. `ctl.cacert /etc/ca.pem`, `the system trust store`.
    pub trusts: String,
}

impl ClientTls {
    /// From the files (`ctl.*`, else `restapi.*`): fails on unreadable or bad files.
    pub fn from_files(files: &crate::tls::ClientFiles) -> Result<Self, crate::tls::TlsError> {
        let config = crate::tls::client_config(files)?;
        let trusts = if files.insecure {
            "nothing (verification disabled: insecure)".to_string()
        } else {
            match &files.cafile {
                Some(p) => format!("{} {}", files.source.cafile, p.display()),
                None => "the system trust store".to_string(),
            }
        };
        Ok(Self {
            config: Arc::new(config),
            trusts,
        })
    }
}

/// The process's client TLS: not set yet, ready, or unusable (the reason).
static TLS: RwLock<Option<Result<ClientTls, String>>> = RwLock::new(None);

/// Installs the TLS configuration every later `https://` request uses.
pub fn set_tls(tls: ClientTls) {
    *TLS.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Ok(tls));
}

/// Records that the configured TLS files are unusable: every later `https://` request
/// fails with `reason` (never with some other trust store); `http://` is unaffected.
pub fn set_tls_error(reason: String) {
    *TLS.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Err(reason));
}

/// The installed configuration, or (none installed) the system trust store and no
/// client certificate, as Patroni's requests with no CA configured.
fn current_tls(url: &str) -> Result<ClientTls, HttpError> {
    let installed = TLS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match installed {
        Some(Ok(t)) => Ok(t),
        Some(Err(reason)) => Err(HttpError::Tls(url.into(), reason)),
        None => {
            let t = ClientTls::from_files(&crate::tls::ClientFiles::default())
                .map_err(|e| HttpError::Tls(url.into(), e.to_string()))?;
            set_tls(t.clone());
            Ok(t)
        }
    }
}

pub async fn get_json(url: &str, timeout: Duration) -> Result<serde_json::Value, HttpError> {
    let (_, body) = get(url, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| HttpError::Body(url.into(), e.to_string()))
}

/// GET with a deadline covering connect, headers and body. Returns status and body.
pub async fn get(url: &str, timeout: Duration) -> Result<(u16, Bytes), HttpError> {
    request(Method::GET, url, None, None, timeout)
        .await
        .map(|r| (r.status, r.body))
}

/// POSTs a JSON body with a deadline covering the whole exchange, with HTTP Basic
/// credentials when given (another member's mutating endpoint under
/// `restapi.authentication`). Returns the status.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
    auth: Option<&BasicAuth>,
    timeout: Duration,
) -> Result<u16, HttpError> {
    request(Method::POST, url, Some(body), auth, timeout)
        .await
        .map(|r| r.status)
}

/// The request method of [`request`], re-exported so callers need not know hyper.
pub use hyper::Method;

/// HTTP basic credentials for the REST API's write endpoints (`restapi.authentication`
/// or `ctl.authentication`). `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl BasicAuth {
    /// The `Authorization` header value.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Status and body of an answer, whatever the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    /// The body as text (Patroni's write endpoints answer in plain text).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim_end().to_string()
    }
}

/// Any method with an optional JSON body and optional basic auth, with a deadline
/// covering connect, headers and body. Non-2xx statuses are answers, not errors: the
/// caller decides what they mean.
pub async fn request(
    method: hyper::Method,
    url: &str,
    body: Option<&serde_json::Value>,
    auth: Option<&BasicAuth>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url(url.into(), e.to_string()))?;
    let tls = match uri.scheme_str() {
        Some("http") => None,
        Some("https") => Some(current_tls(url)?),
        _ => {
            return Err(HttpError::Url(
                url.into(),
                "expected http:// or https://".into(),
            ))
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| HttpError::Url(url.into(), "no host".into()))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = authority
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority.as_str());
    if let Some(a) = auth {
        builder = builder.header(hyper::header::AUTHORIZATION, a.header_value());
    }
    let payload = match body {
        Some(v) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let req = builder
        .body(Full::new(payload))
        .map_err(|e| HttpError::Url(url.into(), e.to_string()))?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Request(url.into(), format!("cannot connect: {e}")))?;
        match tls {
            None => exchange(url, TokioIo::new(tcp), req).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| HttpError::Url(url.into(), e.to_string()))?;
                let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        HttpError::Tls(
                            format!("{host}:{port}"),
                            format!("{}; this client trusts {}", error_chain(&e), tls.trusts),
                        )
                    })?;
                exchange(url, TokioIo::new(stream), req).await
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(url.into(), timeout)),
    }
}

/// One request on a fresh connection; the connection task ends with this call.
async fn exchange<T>(
    url: &str,
    io: TokioIo<T>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<Response, HttpError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    /// Aborts the connection task when the exchange ends or times out.
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError::Request(url.into(), error_chain(&e)))?;
    let _conn = Abort(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| HttpError::Request(url.into(), error_chain(&e)))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| HttpError::Request(url.into(), e.to_string()))?
        .to_bytes();
    Ok(Response { status, body })
}

/// hyper's client errors say only "client error (Connect)"; the cause (connection
/// refused, ...) is what an operator needs to read.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves one request with `status`; returns the URL and the request as received.
    async fn one_shot(status: u16) -> (String, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/failsafe", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let resp =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            s.write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&req).to_string()
        });
        (url, h)
    }

    #[tokio::test]
    async fn post_json_sends_basic_credentials_when_given() {
        let (url, h) = one_shot(200).await;
        let body = serde_json::json!({"name": "n1"});
        let code = post_json(
            &url,
            &body,
            Some(&BasicAuth {
                username: "admin".into(),
                password: "s3:cret".into(),
            }),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(code, 200);
        let req = h.await.unwrap().to_ascii_lowercase();
        // base64("admin:s3:cret")
        assert!(
            req.contains("authorization: basic ywrtaw46czm6y3jlda=="),
            "{req}"
        );
        assert!(req.ends_with(r#"{"name":"n1"}"#), "{req}");
    }

    #[tokio::test]
    async fn post_json_sends_no_authorization_without_credentials() {
        let (url, h) = one_shot(401).await;
        let code = post_json(&url, &serde_json::json!({}), None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(code, 401);
        let req = h.await.unwrap().to_ascii_lowercase();
        assert!(!req.contains("authorization:"), "{req}");
    }
}
