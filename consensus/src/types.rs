//! JSON values stored under the cluster prefix, in Patroni's shapes.
//!
//! Every type keeps fields it does not interpret in `extra`, so a value written by a
//! newer Patroni or another tool survives a read-modify-write by Warden.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// A member's role as written in `members/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[serde(alias = "master")]
    Primary,
    Replica,
    StandbyLeader,
    Demoted,
    Uninitialized,
    Promoted,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::StandbyLeader => "standby_leader",
            Role::Demoted => "demoted",
            Role::Uninitialized => "uninitialized",
            Role::Promoted => "promoted",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member's `state` as Patroni writes it in `members/<name>` and `/patroni`. States
/// this version does not know (a newer peer's) are kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum MemberState {
    Running,
    #[default]
    Starting,
    Stopping,
    Stopped,
    Restarting,
    RestartFailed,
    StartFailed,
    Crashed,
    CreatingReplica,
    InitializingNewCluster,
    InitdbFailed,
    RunningCustomBootstrapScript,
    CustomBootstrapFailed,
    Other(String),
}

impl MemberState {
    const KNOWN: [(MemberState, &'static str); 13] = [
        (MemberState::Running, "running"),
        (MemberState::Starting, "starting"),
        (MemberState::Stopping, "stopping"),
        (MemberState::Stopped, "stopped"),
        (MemberState::Restarting, "restarting"),
        (MemberState::RestartFailed, "restart failed"),
        (MemberState::StartFailed, "start failed"),
        (MemberState::Crashed, "crashed"),
        (MemberState::CreatingReplica, "creating replica"),
        (
            MemberState::InitializingNewCluster,
            "initializing new cluster",
        ),
        (MemberState::InitdbFailed, "initdb failed"),
        (
            MemberState::RunningCustomBootstrapScript,
            "running custom bootstrap script",
        ),
        (
            MemberState::CustomBootstrapFailed,
            "custom bootstrap failed",
        ),
    ];

    /// Patroni's text for this state.
    pub fn as_str(&self) -> &str {
        if let MemberState::Other(s) = self {
            return s;
        }
        Self::KNOWN
            .iter()
            .find(|(k, _)| k == self)
            .map_or("", |(_, text)| text)
    }

    /// Reads Patroni's text; an unknown state is kept as [`MemberState::Other`].
    pub fn parse(text: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(_, t)| *t == text)
            .map_or_else(|| MemberState::Other(text.to_owned()), |(k, _)| k.clone())
    }

    pub fn is_running(&self) -> bool {
        *self == MemberState::Running
    }

    /// A state an operation ends in when it failed (what `wardenctl` waits to rule out).
    pub fn is_failure(&self) -> bool {
        *self == MemberState::Crashed || self.as_str().ends_with("failed")
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for MemberState {
    fn from(text: &str) -> Self {
        Self::parse(text)
    }
}

impl Serialize for MemberState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MemberState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// `members/<name>`: what each agent publishes about itself, under its own lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub conn_url: String,
    pub api_url: String,
    pub state: MemberState,
    pub role: Role,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A boolean tag's value as written (`true`, `"yes"`, `1`, `'on'`): true for a true
/// boolean, a non-zero number, or one of Patroni's true words; anything else is false.
/// (Patroni reads a string tag such as `"false"` as true; Warden reads what it says.)
pub fn tag_truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "on" | "yes" | "1"
        ),
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        _ => false,
    }
}

impl Member {
    /// A priority tag (`failover_priority`, `sync_priority`) given as a number or as
    /// a numeric string (`'0'` is 0), as Patroni's `parse_int` reads it; a negative
    /// value counts as 0. `None` when absent or not a number (Patroni then uses 1).
    pub fn tag_priority(&self, tag: &str) -> Option<u32> {
        let n = match self.tags.as_ref()?.get(tag)? {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.round() as i64)
            })?,
            Value::String(s) => s.trim().parse::<i64>().ok()?,
            _ => return None,
        };
        Some(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
    }

    /// Tag lookup as Patroni reads tags: missing means false.
    pub fn tag_bool(&self, tag: &str) -> bool {
        self.tags
            .as_ref()
            .and_then(|t| t.get(tag))
            .is_some_and(tag_truthy)
    }

    /// `host` and `port` of `conn_url` (`postgres://host:port/db`).
    pub fn conn_host_port(&self) -> Option<(String, u16)> {
        let rest = self.conn_url.split_once("://")?.1;
        let authority = rest.split('/').next()?;
        let authority = authority.rsplit('@').next()?;
        let (host, port) = authority.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some((host.to_string(), port.parse().ok()?))
    }
}

/// One entry of `history`: `[timeline, lsn, reason, timestamp, new_leader]`.
/// Old Patroni versions wrote only the first three or four elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub timeline: u32,
    pub lsn: u64,
    pub reason: String,
    pub timestamp: Option<String>,
    pub new_leader: Option<String>,
}

impl Serialize for HistoryEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = vec![
            Value::from(self.timeline),
            Value::from(self.lsn),
            Value::from(self.reason.clone()),
        ];
        if let Some(ts) = &self.timestamp {
            v.push(Value::from(ts.clone()));
            if let Some(l) = &self.new_leader {
                v.push(Value::from(l.clone()));
            }
        }
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HistoryEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v: Vec<Value> = Vec::deserialize(d)?;
        if v.len() < 3 {
            return Err(D::Error::custom(format!(
                "history entry needs at least [timeline, lsn, reason], got {} element(s)",
                v.len()
            )));
        }
        let timeline = v[0]
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(|| D::Error::custom("history entry: timeline is not a positive integer"))?;
        let lsn = v[1]
            .as_u64()
            .ok_or_else(|| D::Error::custom("history entry: lsn is not a non-negative integer"))?;
        let text = |i: usize| v.get(i).and_then(Value::as_str).map(str::to_string);
        Ok(Self {
            timeline,
            lsn,
            reason: text(2).unwrap_or_default(),
            timestamp: text(3),
            new_leader: text(4),
        })
    }
}

/// `failover`: a requested switchover/failover. Cleared by writing `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Warden's own field of the failover key (Patroni keeps unknown fields): the shutdown
/// checkpoint LSN the old leader saw the candidate receive before it released the
/// leader key in a planned switchover.
pub const HANDOVER_LSN_FIELD: &str = "warden_handover_lsn";

impl Failover {
    pub fn is_empty(&self) -> bool {
        self.leader.is_none() && self.member.is_none() && self.scheduled_at.is_none()
    }

    /// Set by the old leader of a switchover once the candidate confirmed it holds
    /// every byte of WAL the old primary wrote; absent if the leader never got there
    /// (e.g. it crashed first).
    pub fn handover_lsn(&self) -> Option<u64> {
        self.extra.get(HANDOVER_LSN_FIELD).and_then(Value::as_u64)
    }

    pub fn set_handover_lsn(&mut self, lsn: u64) {
        self.extra
            .insert(HANDOVER_LSN_FIELD.into(), Value::from(lsn));
    }
}

/// `sync`: the synchronous standbys the leader has committed to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    #[serde(default)]
    pub leader: Option<String>,
    #[serde(default)]
    pub quorum: Option<u32>,
    #[serde(default)]
    pub sync_standby: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SyncState {
    pub fn standbys(&self) -> Vec<&str> {
        self.sync_standby
            .as_deref()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `status`: the leader's last known WAL position and slot positions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optime: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_slots: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: &str = r#"{"conn_url":"postgres://10.0.0.11:5432/postgres","api_url":"http://10.0.0.11:8008/patroni","state":"running","role":"replica","version":"4.0.1","tags":{"clonefrom":true},"xlog_location":184549376,"replication_state":"streaming","timeline":1}"#;

    #[test]
    fn member_round_trips_the_contract_example() {
        let m: Member = serde_json::from_str(MEMBER).unwrap();
        assert_eq!(m.role, Role::Replica);
        assert_eq!(m.xlog_location, Some(184_549_376));
        assert!(m.tag_bool("clonefrom"));
        assert!(!m.tag_bool("nofailover"));
        assert_eq!(m.conn_host_port(), Some(("10.0.0.11".to_string(), 5432)));
        let back: Value = serde_json::to_value(&m).unwrap();
        let orig: Value = serde_json::from_str(MEMBER).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn member_keeps_unknown_fields_and_reads_legacy_master() {
        let raw = r#"{"conn_url":"postgres://[::1]:5432/postgres","api_url":"http://h:8008/patroni","state":"running","role":"master","version":"2.1.0","future_field":{"x":1}}"#;
        let m: Member = serde_json::from_str(raw).unwrap();
        assert_eq!(m.role, Role::Primary);
        assert_eq!(m.conn_host_port(), Some(("::1".to_string(), 5432)));
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["future_field"]["x"], 1);
        assert_eq!(back["role"], "primary");
    }

    #[test]
    fn member_with_unknown_role_is_an_error() {
        let raw = r#"{"conn_url":"","api_url":"","state":"running","role":"boss","version":"1"}"#;
        let err = serde_json::from_str::<Member>(raw).unwrap_err().to_string();
        assert!(err.contains("boss"), "{err}");
    }

    #[test]
    fn history_accepts_short_and_full_entries() {
        let raw = r#"[[1,25165984,"no recovery target specified"],[2,50331808,"no recovery target specified","2024-05-01T10:00:00+00:00","node2"]]"#;
        let h: Vec<HistoryEntry> = serde_json::from_str(raw).unwrap();
        assert_eq!(h[0].timestamp, None);
        assert_eq!(h[1].new_leader.as_deref(), Some("node2"));
        assert_eq!(serde_json::to_string(&h).unwrap(), raw);
        assert!(serde_json::from_str::<Vec<HistoryEntry>>("[[1]]").is_err());
    }

    #[test]
    fn failover_sync_status_round_trip() {
        let f: Failover = serde_json::from_str(
            r#"{"leader":"n1","member":"n2","scheduled_at":"2024-01-01T00:00:00+00:00"}"#,
        )
        .unwrap();
        assert_eq!(f.member.as_deref(), Some("n2"));
        let empty: Failover = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");

        let s: SyncState =
            serde_json::from_str(r#"{"leader":"n1","quorum":0,"sync_standby":"n2,n3"}"#).unwrap();
        assert_eq!(s.standbys(), vec!["n2", "n3"]);
        let s: SyncState = serde_json::from_str(r#"{"leader":"n1","sync_standby":null}"#).unwrap();
        assert!(s.standbys().is_empty());

        let raw = r#"{"optime":67108960,"slots":{"node2":67108960},"retain_slots":["node2"]}"#;
        let st: Status = serde_json::from_str(raw).unwrap();
        assert_eq!(st.optime, Some(67_108_960));
        assert_eq!(serde_json::to_string(&st).unwrap(), raw);
    }
}
