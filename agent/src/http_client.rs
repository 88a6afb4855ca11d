//! A minimal bounded HTTP client for talking to other agents' REST APIs.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
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
}

pub async fn get_json(url: &str, timeout: Duration) -> Result<serde_json::Value, HttpError> {
    let (_, body) = get(url, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| HttpError::Body(url.into(), e.to_string()))
}

/// GET with a deadline covering connect, headers and body. Returns status and body.
pub async fn get(url: &str, timeout: Duration) -> Result<(u16, Bytes), HttpError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url(url.into(), e.to_string()))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let work = async {
        let resp = client
            .get(uri)
            .await
            .map_err(|e| HttpError::Request(url.into(), e.to_string()))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| HttpError::Request(url.into(), e.to_string()))?
            .to_bytes();
        Ok((status, body))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(url.into(), timeout)),
    }
}

/// POSTs a JSON body with a deadline covering the whole exchange, with HTTP Basic
/// credentials `(username, password)` when given (another member's mutating endpoint
/// under `restapi.authentication`). Returns the status.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
    basic: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<u16, HttpError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url(url.into(), e.to_string()))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::post(uri).header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some((user, password)) = basic {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req = req.header(hyper::header::AUTHORIZATION, format!("Basic {token}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| HttpError::Url(url.into(), e.to_string()))?;
    let work = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| HttpError::Request(url.into(), e.to_string()))?;
        let status = resp.status().as_u16();
        // Drain (bounded) so the connection closes cleanly.
        let _ = Limited::new(resp.into_body(), MAX_BODY).collect().await;
        Ok(status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(url.into(), timeout)),
    }
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
            Some(("admin", "s3:cret")),
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
