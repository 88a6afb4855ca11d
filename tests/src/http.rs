//! Minimal HTTP client for the agents' REST APIs and etcd's JSON gateway.
//!
//! Health endpoints answer 503 with a useful body, so statuses are never
//! turned into errors; only transport failures (refused, timeout) are. Every
//! call has a short overall timeout so a stopped (SIGSTOP) server cannot hang
//! a test, and no connection is pooled, so a restarted server is never hit
//! through a stale connection.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// Overall timeout of one request, connect to end of body.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Status, headers and body of an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Every header as `(lower-case name, value)`, in the order received; values that
    /// are not visible ASCII are decoded lossily.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("body is not JSON (status {}): {}", self.status, self.body))
    }
}

fn agent() -> ureq::Agent {
    agent_with_timeout(TIMEOUT)
}

/// The TLS every `https://` call uses ([`use_tls`]); the default trusts nothing the
/// kit made, so an unconfigured https call fails rather than passing unverified.
static TLS: std::sync::RwLock<Option<ureq::tls::TlsConfig>> = std::sync::RwLock::new(None);

/// From now on `https://` calls trust `ca` and present `client` (a
/// `ClusterSpec::with_rest_tls` cluster: its CA and `TlsMaterial::root_client`).
pub fn use_tls(ca: &std::path::Path, client: &crate::tls::CertFiles) -> Result<()> {
    let config = tls_config(ca, Some(client))?;
    *TLS.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(config);
    Ok(())
}

/// A TLS configuration trusting the CA in `ca` and presenting `client` if given.
pub fn tls_config(
    ca: &std::path::Path,
    client: Option<&crate::tls::CertFiles>,
) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let ca_pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let root = Certificate::from_pem(&ca_pem).context("CA certificate")?;
    let mut builder =
        TlsConfig::builder().root_certs(RootCerts::Specific(std::sync::Arc::new(vec![root])));
    if let Some(c) = client {
        let cert =
            std::fs::read(&c.cert).with_context(|| format!("reading {}", c.cert.display()))?;
        let key = std::fs::read(&c.key).with_context(|| format!("reading {}", c.key.display()))?;
        let cert = Certificate::from_pem(&cert).context("client certificate")?;
        let key = PrivateKey::from_pem(&key).context("client key")?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    Ok(builder.build())
}

fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    let tls = TLS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    agent_with(timeout, tls)
}

/// An agent with an explicit TLS configuration (`None`: ureq's default, which trusts
/// only public roots) — for tests that call with another identity.
pub fn agent_with(timeout: Duration, tls: Option<ureq::tls::TlsConfig>) -> ureq::Agent {
    let mut b = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_idle_connections(0);
    if let Some(t) = tls {
        b = b.tls_config(t);
    }
    b.build().into()
}

/// `GET url` through `agent` (e.g. from [`agent_with`]).
pub fn get_via(agent: &ureq::Agent, url: &str) -> Result<HttpResponse> {
    finish(url, agent.get(url).call())
}

fn finish(
    url: &str,
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<HttpResponse> {
    let mut resp = resp.with_context(|| format!("request to {url}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading body of {url}"))?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// `GET url`.
pub fn get(url: &str) -> Result<HttpResponse> {
    finish(url, agent().get(url).call())
}

/// `GET url` with an overall `timeout` instead of [`TIMEOUT`].
pub fn get_with_timeout(url: &str, timeout: Duration) -> Result<HttpResponse> {
    finish(url, agent_with_timeout(timeout).get(url).call())
}

/// Overall timeout of one `POST`: an action sent once, not a poll, so it may wait for a
/// loaded machine (an agent answering while a base backup and a write load share two
/// cores) without slowing any polling loop.
pub const POST_TIMEOUT: Duration = Duration::from_secs(15);

/// `POST url` with a JSON body, bounded by [`POST_TIMEOUT`].
pub fn post_json(url: &str, body: &Value) -> Result<HttpResponse> {
    post_json_with_timeout(url, body, POST_TIMEOUT)
}

/// `POST url` with a JSON body and an overall `timeout`.
pub fn post_json_with_timeout(url: &str, body: &Value, timeout: Duration) -> Result<HttpResponse> {
    finish(url, agent_with_timeout(timeout).post(url).send_json(body))
}

/// Any `method` on `url` with an optional raw body and optional basic-auth credentials
/// (the agents' mutating endpoints), bounded by `timeout`.
pub fn send(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    basic: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<HttpResponse> {
    let authorization = basic.map(|(user, password)| basic_authorization(user, password));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|a| ("Authorization", a.as_str()))
        .collect();
    send_with_headers(method, url, body, &headers, timeout)
}

/// The `Authorization` header value of HTTP Basic authentication.
pub fn basic_authorization(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// Like [`send`], with arbitrary request headers instead of credentials (e.g. a
/// deliberately malformed `Authorization`).
pub fn send_with_headers(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<HttpResponse> {
    let agent = agent_with_timeout(timeout);
    if let (Some(body), true) = (body, method.eq_ignore_ascii_case("DELETE")) {
        // ureq refuses a body on DELETE unless forced (a test may send one on purpose).
        let mut req = agent.delete(url).header("Content-Type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        return finish(url, req.force_send_body().send(body));
    }
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req
        .body(body.unwrap_or_default().to_vec())
        .with_context(|| format!("building {method} {url}"))?;
    finish(url, agent.run(req))
}

/// `OPTIONS url` — what HAProxy's `option httpchk OPTIONS /primary` sends.
/// Only the status matters (the agent answers with the status line only).
pub fn options(url: &str) -> Result<u16> {
    let resp = agent()
        .options(url)
        .call()
        .with_context(|| format!("OPTIONS {url}"))?;
    Ok(resp.status().as_u16())
}

/// Status of `GET url`, `None` if the server could not be reached.
pub fn status(url: &str) -> Option<u16> {
    get(url).ok().map(|r| r.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Serves exactly one request with a canned response; returns the URL.
    fn one_shot(response: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/primary", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request: headers, then Content-Length bytes of body (a client
            // may write them in separate segments).
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len || n == 0 {
                        break;
                    }
                } else if n == 0 {
                    break;
                }
            }
            s.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, h)
    }

    #[test]
    fn a_503_is_a_response_not_an_error() {
        let (url, h) = one_shot(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 18\r\nConnection: close\r\n\r\n{\"role\":\"replica\"}",
        );
        let r = get(&url).unwrap();
        assert_eq!(r.status, 503);
        assert!(h.join().unwrap().starts_with("GET /primary"));
        assert_eq!(r.json().unwrap()["role"], "replica");
        assert_eq!(r.header("content-length"), Some("18"));
        assert_eq!(r.header("Connection"), Some("close"));
        assert_eq!(r.header("www-authenticate"), None);
    }

    #[test]
    fn send_carries_basic_auth_and_the_body_and_returns_headers() {
        let (url, h) = one_shot(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"Patroni\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let r = send(
            "PATCH",
            &url,
            Some(b"{\"a\":1}"),
            Some(("u", "p")),
            Duration::from_secs(3),
        )
        .unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Basic realm=\"Patroni\"")
        );
        let req = h.join().unwrap();
        assert!(req.starts_with("PATCH /primary"), "{req}");
        // base64("u:p") = "dTpw"
        assert!(
            req.to_ascii_lowercase()
                .contains("authorization: basic dtpw"),
            "{req}"
        );
        assert!(req.ends_with("{\"a\":1}"), "{req}");
    }

    #[test]
    fn options_sends_the_options_method() {
        let (url, h) =
            one_shot("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert_eq!(options(&url).unwrap(), 200);
        assert!(h.join().unwrap().starts_with("OPTIONS /primary"));
    }

    #[test]
    fn unreachable_server_is_an_error() {
        let port = crate::ports::free_port().unwrap();
        assert!(get(&format!("http://127.0.0.1:{port}/")).is_err());
        assert_eq!(status(&format!("http://127.0.0.1:{port}/")), None);
    }
}
