//! Bodies of the mutating endpoints, read as the server reads them: Patroni's lenient
//! forms (an empty string is no value, booleans may be `"on"`, a timeout may be
//! `"30s"`) and its refusals, each with the message the server answers 400 with.
//!
//! Each type reads from the JSON object of the body ([`TryFrom`], also behind
//! `Deserialize`); written (by `wardenctl`), it carries what was asked in the form it
//! was given.

use crate::serde_util::is_false;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// A string field that may be absent, `null` or empty (all no value); any other type
/// is refused.
fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key}: expected a string, got {other}")),
    }
}

/// A boolean field; absent or `null` is false, and Patroni's strings are read.
fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" | "" => Ok(false),
            _ => Err(format!("{key}: expected true or false, got {s:?}")),
        },
        Some(other) => Err(format!("{key}: expected true or false, got {other}")),
    }
}

/// `POST /switchover` and `POST /failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct SwitchoverRequest {
    /// The member to promote; old clients call it `member`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The current leader (required for a switchover).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// When, ISO 8601 with a timezone (switchover only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
}

impl TryFrom<Map<String, Value>> for SwitchoverRequest {
    type Error = String;

    fn try_from(m: Map<String, Value>) -> Result<Self, String> {
        let leader = opt_str(&m, "leader")?;
        let candidate = match opt_str(&m, "candidate")? {
            Some(c) => Some(c),
            None => opt_str(&m, "member")?,
        };
        Ok(Self {
            candidate,
            leader,
            scheduled_at: opt_str(&m, "scheduled_at")?,
        })
    }
}

/// `POST /restart`: the conditions and limits of a restart, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct RestartRequest {
    /// Restart only if the member's PostgreSQL is older than this (`15.4`, `16`);
    /// checked by [`parse_postgres_version`] when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// Restart only if PostgreSQL reports a pending restart.
    #[serde(skip_serializing_if = "is_false")]
    pub restart_pending: bool,
    /// Restart only in this role (`primary`, `master`, `standby_leader` or `replica`);
    /// `any` reads as none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// When, ISO 8601 with a timezone; none is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long PostgreSQL may take to come back; positive when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
}

impl RestartRequest {
    /// `postgres_version` as a `server_version_num` (15.4 → 150004).
    pub fn postgres_version_num(&self) -> Option<u32> {
        self.postgres_version
            .as_deref()
            .and_then(|v| parse_postgres_version(v).ok())
    }

    /// `timeout` in whole seconds, at most [`MAX_RESTART_TIMEOUT`]: a request's number
    /// must never be able to push a deadline past what the clock can hold.
    pub fn timeout_duration(&self) -> Option<Duration> {
        self.timeout
            .as_ref()
            .and_then(Timeout::seconds)
            .map(|s| Duration::from_secs(s).min(MAX_RESTART_TIMEOUT))
    }
}

impl TryFrom<Map<String, Value>> for RestartRequest {
    type Error = String;

    /// Field by field in name order, the first refusal wins.
    fn try_from(m: Map<String, Value>) -> Result<Self, String> {
        let mut r = Self::default();
        for (k, v) in &m {
            match k.as_str() {
                "schedule" => r.schedule = opt_str(&m, k)?,
                "role" => match opt_str(&m, k)?.as_deref() {
                    None | Some("any") => {}
                    Some(role @ ("primary" | "master" | "standby_leader" | "replica")) => {
                        r.role = Some(role.to_string());
                    }
                    Some(other) => {
                        return Err(format!(
                            "PostgreSQL role should be either primary, standby_leader, or replica, not {other:?}"
                        ))
                    }
                },
                "postgres_version" => {
                    if let Some(t) = opt_str(&m, k)? {
                        parse_postgres_version(&t)?;
                        r.postgres_version = Some(t);
                    }
                }
                "timeout" => {
                    let t = match v {
                        Value::Number(n) => n.as_u64().map(Timeout::Seconds),
                        Value::String(s) => Some(Timeout::Text(s.clone())),
                        _ => None,
                    };
                    match t {
                        Some(t) if t.seconds().is_some_and(|s| s > 0) => r.timeout = Some(t),
                        _ => {
                            return Err(format!(
                                "Timeout should be a positive number of seconds, not {v}"
                            ))
                        }
                    }
                }
                "restart_pending" => r.restart_pending = opt_bool(&m, k)?,
                other => return Err(format!("Unknown filter for the scheduled restart: {other}")),
            }
        }
        Ok(r)
    }
}

/// The longest a restart waits for PostgreSQL to come back; larger `timeout`s are
/// capped to it.
pub const MAX_RESTART_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A restart's `timeout`, in the form given: seconds, or text (`"30"`, `"30s"`,
/// `"2m"`), which `patronictl` sends as typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Timeout {
    Seconds(u64),
    Text(String),
}

impl Timeout {
    /// In whole seconds; `None` when the text is neither a number nor a duration.
    pub fn seconds(&self) -> Option<u64> {
        match self {
            Timeout::Seconds(s) => Some(*s),
            Timeout::Text(t) => t.trim().parse::<u64>().ok().or_else(|| {
                humantime::parse_duration(t.trim())
                    .ok()
                    .map(|d| d.as_secs())
            }),
        }
    }
}

/// A PostgreSQL version as `server_version_num`: `15.4` → 150004, `16` → 160000,
/// `9.6.24` → 90624.
pub fn parse_postgres_version(text: &str) -> Result<u32, String> {
    let bad = || format!("postgres_version: {text:?} is not a PostgreSQL version like 15.4");
    let parts: Vec<u32> = text
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [major] if *major >= 10 => Ok(major * 10000),
        [major, minor] if *major >= 10 => Ok(major * 10000 + minor),
        [major, minor, patch] if *major < 10 => Ok(major * 10000 + minor * 100 + patch),
        [major, minor] if *major < 10 => Ok(major * 10000 + minor * 100),
        _ => Err(bad()),
    }
}

/// `POST /reinitialize`. Both fields are always written, as `patronictl` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct ReinitializeRequest {
    /// Cancel a running job (a restart, a reinitialize) first.
    pub force: bool,
    /// Take the base backup from the leader rather than any member.
    pub from_leader: bool,
}

impl TryFrom<Map<String, Value>> for ReinitializeRequest {
    type Error = String;

    fn try_from(m: Map<String, Value>) -> Result<Self, String> {
        if let Some(k) = m.keys().find(|k| *k != "force" && *k != "from_leader") {
            return Err(format!(
                "unknown reinitialize option {k:?} (known: force, from_leader)"
            ));
        }
        let from_leader = opt_bool(&m, "from_leader")?;
        let force = opt_bool(&m, "force")?;
        Ok(Self { force, from_leader })
    }
}

/// `POST /failsafe`: a leader cut off from the DCS asks a member to confirm it may
/// stay primary. Patroni also sends `conn_url` and `slots`, which Warden ignores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct FailsafeRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The leader asking.
    pub name: String,
}

impl TryFrom<Map<String, Value>> for FailsafeRequest {
    type Error = String;

    fn try_from(m: Map<String, Value>) -> Result<Self, String> {
        match m.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => Ok(Self {
                api_url: m.get("api_url").and_then(Value::as_str).map(str::to_string),
                name: name.to_string(),
            }),
            _ => Err(FailsafeRequest::NO_NAME.to_string()),
        }
    }
}

impl FailsafeRequest {
    /// The refusal of a body without a usable `name`.
    pub const NO_NAME: &'static str = "body: expected a JSON object with a non-empty \"name\"";
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
