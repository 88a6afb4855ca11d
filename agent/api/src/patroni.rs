//! `GET /patroni`: one member's status in Patroni's shape, plus Warden's own `warden`
//! object. Every health endpoint (`/primary`, `/replica`, `/health`, ...) answers with
//! the same body; peers read it during a leader race and before a switchover.

use crate::serde_util::{is_false, null_default};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The body of `GET /patroni`.
///
/// Flags (`pause`, `pending_restart`, `cluster_unlocked`, ...) are written only when
/// true, as Patroni does; `dcs_last_seen` is always written (`null` before the first
/// DCS read). Fields are in alphabetical order (see the crate documentation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PatroniStatus {
    /// Nobody holds the leader key.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub cluster_unlocked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_system_identifier: Option<String>,
    /// Unix time of the last successful DCS read.
    pub dcs_last_seen: Option<i64>,
    /// Patroni only: the leader stays primary in DCS failsafe mode.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub failsafe_mode_is_active: bool,
    /// Patroni only (replicas): `latest_end_lsn` of the WAL receiver, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_end_lsn: Option<u64>,
    pub patroni: PatroniInfo,
    /// Maintenance mode (`pause` in the dynamic configuration).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub pause: bool,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub pending_restart: bool,
    /// Parameters waiting for a restart, with their values in force and configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<BTreeMap<String, PendingChange>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postmaster_start_time: Option<String>,
    /// A replica `/sync` lists while `synchronous_mode: quorum`.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub quorum_standby: bool,
    /// A primary's `pg_stat_replication`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<Vec<ReplicationRow>>,
    /// A replica's `streaming` or `in archive recovery`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    /// `primary` or `replica` while PostgreSQL runs (Patroni before 3 says `master`);
    /// otherwise the member's last role (`uninitialized`, `demoted`, ...).
    #[serde(deserialize_with = "null_default")]
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<ScheduledRestart>,
    /// `server_version_num`, e.g. 160004.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<u32>,
    /// Warden only, on a standby cluster's leader: how far it is behind the remote
    /// primary it follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_cluster: Option<StandbyClusterStatus>,
    /// Patroni's member state: `running`, `starting`, `creating replica`, ...
    #[serde(deserialize_with = "null_default")]
    pub state: String,
    /// A replica `/sync` lists while `synchronous_mode: on`.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub sync_standby: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// Warden only; absent from a Patroni peer's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warden: Option<WardenStatus>,
    /// Patroni only: its watchdog device is unhealthy.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub watchdog_failed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xlog: Option<Xlog>,
}

impl PatroniStatus {
    /// Reads an already parsed body (callers need not depend on serde).
    pub fn from_json(v: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(v)
    }

    /// PostgreSQL runs as a primary (`master` is Patroni's name before 3.0).
    pub fn is_primary(&self) -> bool {
        matches!(self.role.as_str(), "primary" | "master")
    }

    /// `state` is `running`.
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// `xlog`'s WAL position: see [`Xlog::position`].
    pub fn wal_position(&self) -> Option<u64> {
        self.xlog.as_ref().map(Xlog::position)
    }

    /// `warden.archiver`: this member runs the streaming archiver (never true for a
    /// Patroni peer).
    pub fn is_archiver(&self) -> bool {
        self.warden.as_ref().is_some_and(|w| w.archiver)
    }

    /// `warden.note`: why the member's last turn did what it did (empty for Patroni).
    pub fn note(&self) -> &str {
        self.warden.as_ref().map_or("", |w| w.note.as_str())
    }

    /// Tag lookup: `tags.<name>`.
    pub fn tag(&self, name: &str) -> Option<&Value> {
        self.tags.as_ref()?.get(name)
    }
}

/// The `patroni` object: who answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PatroniInfo {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub scope: String,
    /// The Patroni version spoken (Warden claims the one it is compatible with).
    #[serde(deserialize_with = "null_default")]
    pub version: String,
    /// Warden only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warden_version: Option<String>,
}

/// The WAL position object `xlog`, whose shape depends on the role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Xlog {
    /// A primary: the current WAL position.
    Primary { location: u64 },
    /// A replica (or anything without `location`).
    Replica {
        #[serde(default, deserialize_with = "null_default")]
        paused: bool,
        #[serde(default)]
        received_location: Option<u64>,
        #[serde(default)]
        replayed_location: Option<u64>,
        /// When the last replayed transaction committed on the primary.
        #[serde(default)]
        replayed_timestamp: Option<String>,
    },
}

impl Xlog {
    /// A primary's `location`; a replica's furthest of received and replayed (0 when
    /// neither is known).
    pub fn position(&self) -> u64 {
        match self {
            Xlog::Primary { location } => *location,
            Xlog::Replica {
                received_location,
                replayed_location,
                ..
            } => received_location
                .unwrap_or(0)
                .max(replayed_location.unwrap_or(0)),
        }
    }

    /// `location`, for a primary's `xlog`.
    pub fn location(&self) -> Option<u64> {
        match self {
            Xlog::Primary { location } => Some(*location),
            Xlog::Replica { .. } => None,
        }
    }

    /// `received_location`, for a replica's `xlog`.
    pub fn received_location(&self) -> Option<u64> {
        match self {
            Xlog::Replica {
                received_location, ..
            } => *received_location,
            Xlog::Primary { .. } => None,
        }
    }

    /// `replayed_location`, for a replica's `xlog`.
    pub fn replayed_location(&self) -> Option<u64> {
        match self {
            Xlog::Replica {
                replayed_location, ..
            } => *replayed_location,
            Xlog::Primary { .. } => None,
        }
    }
}

/// One row of a primary's `replication`: `pg_stat_replication` joined with
/// `pg_stat_activity`. Every field is written, `null` when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicationRow {
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    /// Warden only: how far the standby has flushed WAL, in bytes.
    pub flush_lsn: Option<u64>,
    pub state: Option<String>,
    pub sync_priority: Option<i32>,
    pub sync_state: Option<String>,
    pub usename: Option<String>,
}

/// One parameter of `pending_restart_reason`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PendingChange {
    /// The value the configuration files ask for.
    #[serde(deserialize_with = "null_default")]
    pub new_value: String,
    /// The value in force until the restart.
    #[serde(deserialize_with = "null_default")]
    pub old_value: String,
}

/// `scheduled_restart`: a restart planned by `POST /restart` with a `schedule`, and its
/// conditions. The same object is in the member key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduledRestart {
    /// Restart only below this version (Warden writes its `server_version_num`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_default")]
    pub restart_pending: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// When, ISO 8601 with a timezone.
    #[serde(deserialize_with = "null_default")]
    pub schedule: String,
    /// Seconds to wait for PostgreSQL to come back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// `standby_cluster` (Warden only): the standby leader's distance from the remote
/// primary, from what it can know locally. Bytes: the remote's WAL end as last
/// reported to our WAL receiver, less what we replayed (`null` without a receiver, e.g.
/// fed from an archive only). Seconds: 0 when we replayed all of it, else the age of
/// the newest replayed transaction (by our server's clock); `null` before any replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StandbyClusterStatus {
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// The remote primary's address, `host:port` (`null`: archive only).
    pub remote: Option<String>,
    /// Our WAL receiver streams from the remote right now (it is reachable).
    #[serde(deserialize_with = "null_default")]
    pub streaming: bool,
}

/// The `warden` object: what Warden adds to Patroni's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WardenStatus {
    /// The streaming archiver's last report, while this member runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveStatus>,
    /// This member holds `warden/archiver` and runs the streaming archiver.
    #[serde(deserialize_with = "null_default")]
    pub archiver: bool,
    /// The leader key's `create_revision` while this member leads, else `null`.
    pub fencing_token: Option<i64>,
    /// This member held the leader key at the end of its last turn.
    #[serde(deserialize_with = "null_default")]
    pub leader: bool,
    /// Its lease deadline has not passed.
    #[serde(deserialize_with = "null_default")]
    pub lease_valid: bool,
    /// Why the last turn did what it did.
    #[serde(deserialize_with = "null_default")]
    pub note: String,
}

/// `warden.archive`: the streaming archiver's progress. Every field is written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArchiveStatus {
    /// The LSN just past the last complete segment uploaded.
    pub archived_lsn: Option<u64>,
    /// Failed starts or runs of `pg_receivewal` in a row.
    #[serde(deserialize_with = "null_default")]
    pub failures: u32,
    pub last_error: Option<String>,
    /// The last segment (or final `.partial`) uploaded.
    pub last_segment: Option<String>,
}

#[cfg(test)]
#[path = "patroni_tests.rs"]
mod tests;
