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

/// POSTs a JSON body with a deadline covering the whole exchange. Returns the status.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<u16, HttpError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url(url.into(), e.to_string()))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
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
