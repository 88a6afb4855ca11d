//! Calls to a member's REST API: the URL from its `api_url`, basic auth from the
//! config, a timeout on every call, and the texts patronictl prints for the answers.

use serde_json::Value;
use std::time::Duration;
use warden_api::client::Method;
use warden_api::client::{self as http_client, BasicAuth, HttpError, Response};
use warden_api::{ReinitializeRequest, RestartRequest, SwitchoverRequest};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("member {member} publishes no REST API URL (api_url)")]
    NoUrl { member: String },
    #[error("member {member} has a bad api_url {url:?}: expected http://HOST:PORT/...")]
    BadUrl { member: String, url: String },
    /// Connecting, sending or reading failed: the request may not have arrived.
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// `scheme://host:port` of `api_url` + `/path`, as patronictl builds endpoint URLs.
pub fn endpoint_url(api_url: &str, path: &str) -> Option<String> {
    let (scheme, rest) = api_url.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    if scheme.is_empty() {
        return None;
    }
    Some(format!(
        "{scheme}://{authority}/{}",
        path.trim_start_matches('/')
    ))
}

/// The REST API client: credentials and the default timeout.
#[derive(Debug, Clone)]
pub struct Api {
    pub auth: Option<BasicAuth>,
    pub timeout: Duration,
}

impl Api {
    pub async fn call(
        &self,
        method: Method,
        member: &str,
        api_url: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Response, ApiError> {
        if api_url.is_empty() {
            return Err(ApiError::NoUrl {
                member: member.to_string(),
            });
        }
        let url = endpoint_url(api_url, path).ok_or_else(|| ApiError::BadUrl {
            member: member.to_string(),
            url: api_url.to_string(),
        })?;
        let timeout = timeout.unwrap_or(self.timeout);
        Ok(http_client::request(method, &url, body, self.auth.as_ref(), timeout).await?)
    }
}

/// The answer's text for a failure line, with what to check on 401.
pub fn failure_detail(resp: &Response) -> String {
    let text = resp.text();
    if resp.status == 401 {
        format!(
            "{text} — authentication failed: check ctl.authentication or \
             restapi.authentication in the config, or PATRONI_RESTAPI_USERNAME/PASSWORD"
        )
    } else {
        text
    }
}

/// patronictl's line for a failed member action.
pub fn failed_line(action: &str, member: &str, resp: &Response) -> String {
    format!(
        "Failed: {action} for member {member}, status code={}, ({})",
        resp.status,
        failure_detail(resp)
    )
}

/// What `POST /restart` answered, as the line patronictl prints.
pub fn restart_outcome(member: &str, resp: &Response) -> (bool, String) {
    match resp.status {
        200 => (true, format!("Success: restart on member {member}")),
        202 => (
            true,
            format!("Success: restart scheduled on member {member}"),
        ),
        409 => (
            false,
            format!("Failed: another restart is already scheduled on member {member}"),
        ),
        _ => (false, failed_line("restart", member, resp)),
    }
}

/// What `POST /reload` answered.
pub fn reload_outcome(member: &str, resp: &Response, loop_wait: u32) -> (bool, String) {
    match resp.status {
        200 => (true, format!("No changes to apply on member {member}")),
        202 => (
            true,
            format!(
                "Reload request received for member {member} and will be processed within \
                 {loop_wait} seconds"
            ),
        ),
        _ => (false, failed_line("reload", member, resp)),
    }
}

/// Any other member action: success below 400.
pub fn generic_outcome(action: &str, member: &str, resp: &Response) -> (bool, String) {
    if resp.status >= 400 {
        (false, failed_line(action, member, resp))
    } else {
        (true, format!("Success: {action} for member {member}"))
    }
}

/// Body of `POST /switchover` or `POST /failover` (an empty candidate is none).
pub fn switchover_body(
    leader: Option<&str>,
    candidate: Option<&str>,
    scheduled_at: Option<&str>,
) -> Value {
    let req = SwitchoverRequest {
        candidate: candidate.filter(|c| !c.is_empty()).map(str::to_string),
        leader: leader.map(str::to_string),
        scheduled_at: scheduled_at.map(str::to_string),
    };
    serde_json::to_value(req).unwrap_or_default()
}

/// Body of `POST /restart`.
pub fn restart_body(req: &RestartRequest) -> Value {
    serde_json::to_value(req).unwrap_or_default()
}

/// Body of `POST /reinitialize`: both flags, as patronictl sends them.
pub fn reinitialize_body(force: bool, from_leader: bool) -> Value {
    serde_json::to_value(ReinitializeRequest { force, from_leader }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn endpoint_urls_keep_scheme_host_port_only() {
        assert_eq!(
            endpoint_url("http://10.0.0.1:8008/patroni", "switchover").as_deref(),
            Some("http://10.0.0.1:8008/switchover")
        );
        assert_eq!(
            endpoint_url("http://[::1]:8008", "/restart").as_deref(),
            Some("http://[::1]:8008/restart")
        );
        assert_eq!(endpoint_url("10.0.0.1:8008/patroni", "x"), None);
        assert_eq!(endpoint_url("http:///patroni", "x"), None);
    }

    #[test]
    fn bodies() {
        assert_eq!(
            switchover_body(Some("n1"), Some("n2"), Some("2030-01-01T00:00:00+00:00")),
            json!({"leader":"n1","candidate":"n2","scheduled_at":"2030-01-01T00:00:00+00:00"})
        );
        assert_eq!(
            switchover_body(None, Some("n2"), None),
            json!({"candidate":"n2"})
        );
        assert_eq!(
            switchover_body(Some("n1"), Some(""), None),
            json!({"leader":"n1"})
        );
        let r = RestartRequest {
            schedule: Some("2030-01-01T00:00:00+00:00".into()),
            role: Some("replica".into()),
            postgres_version: Some("15.9".into()),
            timeout: Some(warden_api::Timeout::Text("30s".into())),
            restart_pending: true,
        };
        assert_eq!(
            restart_body(&r),
            json!({"schedule":"2030-01-01T00:00:00+00:00","role":"replica","postgres_version":"15.9","timeout":"30s","restart_pending":true})
        );
        assert_eq!(restart_body(&RestartRequest::default()), json!({}));
        assert_eq!(
            reinitialize_body(true, false),
            json!({"force": true, "from_leader": false})
        );
    }

    #[test]
    fn outcomes_use_patronictl_lines() {
        assert_eq!(
            restart_outcome("n1", &resp(200, "restarted successfully")),
            (true, "Success: restart on member n1".to_string())
        );
        assert_eq!(
            restart_outcome("n1", &resp(202, "restart scheduled")).1,
            "Success: restart scheduled on member n1"
        );
        assert_eq!(
            restart_outcome("n1", &resp(503, "restart conditions are not satisfied\n")),
            (
                false,
                "Failed: restart for member n1, status code=503, (restart conditions are not satisfied)"
                    .to_string()
            )
        );
        assert!(!restart_outcome("n1", &resp(409, "")).0);
        let (ok, line) = restart_outcome("n1", &resp(401, "no auth"));
        assert!(!ok && line.contains("authentication failed"), "{line}");
        assert_eq!(
            reload_outcome("n2", &resp(202, "reload scheduled"), 10).1,
            "Reload request received for member n2 and will be processed within 10 seconds"
        );
        assert!(reload_outcome("n2", &resp(200, ""), 10).0);
        assert_eq!(
            generic_outcome("reinitialize", "n3", &resp(200, "reinitialize started")),
            (true, "Success: reinitialize for member n3".to_string())
        );
        assert!(!generic_outcome("reinitialize", "n1", &resp(503, "I am the leader")).0);
    }
}
