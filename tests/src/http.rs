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

/// Status and body of an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("body is not JSON (status {}): {}", self.status, self.body))
    }
}

fn agent() -> ureq::Agent {
    agent_with_timeout(TIMEOUT)
}

fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_idle_connections(0)
        .build()
        .into()
}

fn finish(
    url: &str,
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<HttpResponse> {
    let mut resp = resp.with_context(|| format!("request to {url}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading body of {url}"))?;
    Ok(HttpResponse { status, body })
}

/// `GET url`.
pub fn get(url: &str) -> Result<HttpResponse> {
    finish(url, agent().get(url).call())
}

/// `GET url` with an overall `timeout` instead of [`TIMEOUT`].
pub fn get_with_timeout(url: &str, timeout: Duration) -> Result<HttpResponse> {
    finish(url, agent_with_timeout(timeout).get(url).call())
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &Value) -> Result<HttpResponse> {
    finish(url, agent().post(url).send_json(body))
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
    use base64::Engine as _;
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some((user, password)) = basic {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req = req.header("Authorization", format!("Basic {token}"));
    }
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req
        .body(body.unwrap_or_default().to_vec())
        .with_context(|| format!("building {method} {url}"))?;
    finish(url, agent_with_timeout(timeout).run(req))
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
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
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
