//! `GET /cluster`: every member as the DCS shows it, with roles and lag as Patroni
//! derives them.

use crate::patroni::{PendingChange, ScheduledRestart};
use crate::serde_util::{is_false, null_default};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The body of `GET /cluster`. Fields are in alphabetical order (see the crate
/// documentation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterStatus {
    /// In the DCS's (name) order.
    #[serde(deserialize_with = "null_default")]
    pub members: Vec<ClusterMember>,
    /// Maintenance mode.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub pause: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_switchover: Option<ScheduledSwitchover>,
    #[serde(deserialize_with = "null_default")]
    pub scope: String,
}

impl ClusterStatus {
    /// Reads an already parsed body (callers need not depend on serde).
    pub fn from_json(v: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(v)
    }

    /// The member holding the leader key (`leader` or, in a standby cluster,
    /// `standby_leader`).
    pub fn leader(&self) -> Option<&ClusterMember> {
        self.members.iter().find(|m| m.is_leader())
    }

    pub fn member(&self, name: &str) -> Option<&ClusterMember> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// One entry of `members`.
///
/// Warden writes positions and lag as byte counts; Patroni writes positions as LSN
/// text (`0/4000060`) and either as `unknown` when it cannot tell: [`WalValue`] reads
/// all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMember {
    #[serde(deserialize_with = "null_default")]
    pub api_url: String,
    /// From the member's `conn_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// How far behind the leader (replicas only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<WalValue>,
    /// The member's WAL position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsn: Option<WalValue>,
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub pending_restart: bool,
    /// Patroni only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<BTreeMap<String, PendingChange>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Patroni only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_lag: Option<WalValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<WalValue>,
    /// Patroni only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lag: Option<WalValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<WalValue>,
    /// `leader`, `standby_leader`, `sync_standby`, `quorum_standby` or `replica`.
    #[serde(deserialize_with = "null_default")]
    pub role: String,
    /// Patroni only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<ScheduledRestart>,
    /// The leader's member state; a replica's `replication_state` when it has one
    /// (`streaming`, `in archive recovery`), else its member state.
    #[serde(deserialize_with = "null_default")]
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
}

impl ClusterMember {
    pub fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "standby_leader")
    }

    /// Listed in `/sync` while synchronous mode is on (either mode).
    pub fn is_sync(&self) -> bool {
        matches!(self.role.as_str(), "sync_standby" | "quorum_standby")
    }

    pub fn is_streaming(&self) -> bool {
        self.state == "streaming"
    }

    /// `lag` in bytes, `None` when absent or `unknown`.
    pub fn lag_bytes(&self) -> Option<u64> {
        self.lag.as_ref().and_then(WalValue::bytes)
    }

    /// `lsn` in bytes, `None` when absent or `unknown`.
    pub fn lsn_bytes(&self) -> Option<u64> {
        self.lsn.as_ref().and_then(WalValue::bytes)
    }
}

/// A WAL position or a distance in `/cluster`: a byte count (Warden), or text: an LSN
/// like `0/4000060` (Patroni) or `unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WalValue {
    Bytes(u64),
    Text(String),
}

impl WalValue {
    /// `unknown`: the member or the leader did not publish a position.
    pub fn unknown() -> Self {
        WalValue::Text("unknown".into())
    }

    /// The byte count, reading an LSN text (`X/Y`, hexadecimal) as one; `None` for
    /// `unknown` or anything else.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            WalValue::Bytes(b) => Some(*b),
            WalValue::Text(t) => {
                let (hi, lo) = t.trim().split_once('/')?;
                let hi = u64::from_str_radix(hi, 16)
                    .ok()
                    .filter(|h| *h <= 0xFFFF_FFFF)?;
                let lo = u64::from_str_radix(lo, 16)
                    .ok()
                    .filter(|l| *l <= 0xFFFF_FFFF)?;
                Some(hi << 32 | lo)
            }
        }
    }
}

impl From<u64> for WalValue {
    fn from(b: u64) -> Self {
        WalValue::Bytes(b)
    }
}

/// `scheduled_switchover`: the pending `failover` key with a `scheduled_at`. Warden
/// writes `from` and `to` always (`null` when not named); Patroni only when named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduledSwitchover {
    #[serde(deserialize_with = "null_default")]
    pub at: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three members, as `agent/src/api/views.rs` wrote them with `json!`: the leader,
    /// a streaming synchronous standby and a member that published no position.
    const WARDEN: &str = concat!(
        r#"{"members":[{"api_url":"http://127.0.0.1:8008/patroni","host":"127.0.0.1","#,
        r#""lsn":67395656,"name":"node1","port":5432,"role":"leader","state":"running","#,
        r#""tags":{"clonefrom":true},"timeline":3},"#,
        r#"{"api_url":"http://127.0.0.1:8009/patroni","host":"127.0.0.1","lag":1000,"#,
        r#""lsn":67394656,"name":"node2","pending_restart":true,"port":5433,"#,
        r#""receive_lsn":67394656,"replay_lsn":67394000,"role":"sync_standby","#,
        r#""state":"streaming","timeline":3},"#,
        r#"{"api_url":"http://127.0.0.1:8010/patroni","lag":"unknown","name":"node3","#,
        r#""role":"replica","state":"creating replica"}],"#,
        r#""pause":true,"#,
        r#""scheduled_switchover":{"at":"2030-01-01T00:00:00+00:00","from":"node1","to":null},"#,
        r#""scope":"demo"}"#
    );

    fn warden() -> ClusterStatus {
        let mut tags = Map::new();
        tags.insert("clonefrom".into(), true.into());
        ClusterStatus {
            members: vec![
                ClusterMember {
                    api_url: "http://127.0.0.1:8008/patroni".into(),
                    host: Some("127.0.0.1".into()),
                    lsn: Some(67_395_656.into()),
                    name: "node1".into(),
                    port: Some(5432),
                    role: "leader".into(),
                    state: "running".into(),
                    tags: Some(tags),
                    timeline: Some(3),
                    ..ClusterMember::default()
                },
                ClusterMember {
                    api_url: "http://127.0.0.1:8009/patroni".into(),
                    host: Some("127.0.0.1".into()),
                    lag: Some(1000.into()),
                    lsn: Some(67_394_656.into()),
                    name: "node2".into(),
                    pending_restart: true,
                    port: Some(5433),
                    receive_lsn: Some(67_394_656.into()),
                    replay_lsn: Some(67_394_000.into()),
                    role: "sync_standby".into(),
                    state: "streaming".into(),
                    timeline: Some(3),
                    ..ClusterMember::default()
                },
                ClusterMember {
                    api_url: "http://127.0.0.1:8010/patroni".into(),
                    lag: Some(WalValue::unknown()),
                    name: "node3".into(),
                    role: "replica".into(),
                    state: "creating replica".into(),
                    ..ClusterMember::default()
                },
            ],
            pause: true,
            scheduled_switchover: Some(ScheduledSwitchover {
                at: "2030-01-01T00:00:00+00:00".into(),
                from: Some("node1".into()),
                to: None,
            }),
            scope: "demo".into(),
        }
    }

    #[test]
    fn warden_body_is_byte_for_byte_what_the_server_wrote() {
        let typed = warden();
        assert_eq!(serde_json::to_string(&typed).unwrap(), WARDEN);
        assert_eq!(serde_json::to_value(&typed).unwrap().to_string(), WARDEN);
        assert_eq!(
            serde_json::from_str::<ClusterStatus>(WARDEN).unwrap(),
            typed
        );
        assert_eq!(
            serde_json::to_string(&ClusterStatus {
                scope: "demo".into(),
                ..ClusterStatus::default()
            })
            .unwrap(),
            r#"{"members":[],"scope":"demo"}"#
        );
    }

    #[test]
    fn accessors() {
        let c = warden();
        assert_eq!(c.leader().map(|m| m.name.as_str()), Some("node1"));
        let n2 = c.member("node2").unwrap();
        assert!(n2.is_sync() && n2.is_streaming() && !n2.is_leader());
        assert_eq!(n2.lag_bytes(), Some(1000));
        assert_eq!(n2.lsn_bytes(), Some(67_394_656));
        assert_eq!(c.member("node3").unwrap().lag_bytes(), None);
        assert!(c.member("node4").is_none());
    }

    /// Patroni 4's `GET /cluster` (docs/rest_api.rst), with LSNs as text, `unknown`,
    /// and what Warden does not write.
    const PATRONI4: &str = r#"{
      "members": [
        {"name": "patroni1", "role": "leader", "state": "running",
         "api_url": "http://10.89.0.4:8008/patroni", "host": "10.89.0.4", "port": 5432,
         "timeline": 5, "tags": {"clonefrom": true},
         "scheduled_restart": {"schedule": "2030-09-24T10:36:00+02:00", "postgres_version": "16.5"}},
        {"name": "patroni2", "role": "quorum_standby", "state": "streaming",
         "api_url": "http://10.89.0.6:8008/patroni", "host": "10.89.0.6", "port": 5433,
         "timeline": 5, "tags": {"clonefrom": true},
         "pending_restart": true,
         "pending_restart_reason": {"shared_buffers": {"old_value": "128MB", "new_value": "256MB"}},
         "receive_lag": 0, "receive_lsn": "0/4000060", "replay_lag": 0,
         "replay_lsn": "0/4000060", "lag": 0, "lsn": "0/4000060"},
        {"name": "patroni3", "role": "replica", "state": "stopped", "api_url": null,
         "receive_lag": "unknown", "receive_lsn": "unknown", "replay_lag": "unknown",
         "replay_lsn": "unknown", "lag": "unknown", "lsn": "unknown", "citus": 1}
      ],
      "scope": "demo",
      "scheduled_switchover": {"at": "2023-09-24T10:36:00+02:00", "from": "patroni1"},
      "something_new": [1, 2]
    }"#;

    #[test]
    fn patroni_4_body_parses() {
        let c: ClusterStatus = serde_json::from_str(PATRONI4).unwrap();
        assert_eq!(c.scope, "demo");
        assert!(!c.pause);
        assert_eq!(c.leader().unwrap().port, Some(5432));
        let leader = c.leader().unwrap();
        assert_eq!(
            leader
                .scheduled_restart
                .as_ref()
                .unwrap()
                .postgres_version
                .as_deref(),
            Some("16.5")
        );
        let p2 = c.member("patroni2").unwrap();
        assert!(p2.is_sync() && p2.pending_restart);
        assert_eq!(p2.lsn_bytes(), Some(0x0400_0060));
        assert_eq!(
            p2.replay_lsn.as_ref().and_then(WalValue::bytes),
            Some(0x0400_0060)
        );
        assert_eq!(p2.lag_bytes(), Some(0));
        assert_eq!(p2.receive_lag, Some(WalValue::Bytes(0)));
        let p3 = c.member("patroni3").unwrap();
        assert_eq!((p3.lag_bytes(), p3.lsn_bytes()), (None, None));
        assert_eq!(p3.api_url, "");
        let s = c.scheduled_switchover.unwrap();
        assert_eq!(
            (s.at.as_str(), s.from.as_deref(), s.to.as_deref()),
            ("2023-09-24T10:36:00+02:00", Some("patroni1"), None)
        );
    }

    #[test]
    fn lsn_text() {
        let t = |s: &str| WalValue::Text(s.into()).bytes();
        assert_eq!(t("0/4000060"), Some(0x0400_0060));
        assert_eq!(t("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(t("unknown"), None);
        assert_eq!(t("1/100000000"), None);
        assert_eq!(WalValue::Bytes(7).bytes(), Some(7));
    }
}
