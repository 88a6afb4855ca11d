//! Operator requests that reach the HA loop from the REST API (`POST /restart`,
//! `POST /reinitialize`, `POST /reload`), and the pure checks that accept or refuse them.
//!
//! The API never touches PostgreSQL itself: it queues a [`Request`] on a bounded channel
//! and waits (with a timeout) for the loop's [`Reply`]. Switchover and failover do not
//! come this way: they are written to the DCS `failover` key, which every agent reads.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use warden_consensus::Cluster;

/// Requests waiting for the loop; more are refused with 503 rather than queued.
pub const REQUEST_QUEUE: usize = 4;

/// The filters and limits of a restart, as `POST /restart` and `patronictl restart` send them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartSpec {
    /// Restart only if we run in this role (`primary`, `standby_leader` or `replica`).
    pub role: Option<String>,
    /// Restart only if our `server_version_num` is lower than this.
    pub postgres_version: Option<u32>,
    /// Restart only if PostgreSQL reports a pending restart.
    pub restart_pending: bool,
    /// Give up waiting for PostgreSQL to come back after this long.
    pub timeout: Option<std::time::Duration>,
}

/// A restart planned for later; published as the member's `scheduled_restart`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRestart {
    pub at: DateTime<Utc>,
    pub spec: RestartSpec,
}

impl ScheduledRestart {
    pub fn to_member_json(&self) -> Value {
        let mut v = json!({"schedule": self.at.to_rfc3339()});
        if let Some(r) = &self.spec.role {
            v["role"] = json!(r);
        }
        if let Some(pv) = self.spec.postgres_version {
            v["postgres_version"] = json!(pv.to_string());
        }
        if self.spec.restart_pending {
            v["restart_pending"] = json!(true);
        }
        if let Some(t) = self.spec.timeout {
            v["timeout"] = json!(t.as_secs());
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Restart(RestartSpec),
    Reinitialize { from_leader: bool },
    Reload,
}

/// `Ok(text)` → 200/202 with that text; `Err((status, text))` → that status.
pub type Reply = Result<String, (u16, String)>;

#[derive(Debug)]
pub struct Request {
    pub kind: Kind,
    /// `None` for requests the loop makes itself (a scheduled restart, SIGHUP).
    pub reply: Option<oneshot::Sender<Reply>>,
}

pub type RequestTx = mpsc::Sender<Request>;
pub type RequestRx = mpsc::Receiver<Request>;

pub fn channel() -> (RequestTx, RequestRx) {
    mpsc::channel(REQUEST_QUEUE)
}

/// What the local node is, for checking restart filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalFacts {
    pub is_primary: bool,
    /// We hold a standby cluster's leader key with a read-only server (Patroni's role
    /// `standby_leader`).
    pub is_standby_leader: bool,
    pub server_version: Option<u32>,
    pub pending_restart: bool,
}

/// Patroni's restart filters: `None` when the restart should go ahead.
pub fn restart_refusal(spec: &RestartSpec, local: LocalFacts) -> Option<String> {
    if let Some(role) = &spec.role {
        let mine = if local.is_primary {
            "primary"
        } else if local.is_standby_leader {
            "standby_leader"
        } else {
            "replica"
        };
        let wanted = if role == "master" {
            "primary"
        } else {
            role.as_str()
        };
        if wanted != "any" && wanted != mine {
            return Some(format!("host role mismatch (we are a {mine})"));
        }
    }
    if let (Some(limit), Some(ours)) = (spec.postgres_version, local.server_version) {
        if ours >= limit {
            return Some(format!(
                "postgres version mismatch ({ours} is not older than {limit})"
            ));
        }
    }
    if spec.restart_pending && !local.pending_restart {
        return Some("pending restart flag is not set".into());
    }
    None
}

/// Why `POST /reinitialize` must be refused, or the member to clone from.
pub fn reinit_source(me: &str, cluster: &Cluster, from_leader: bool) -> Result<String, String> {
    let Some(leader) = cluster.leader_name() else {
        return Err("Cluster has no leader, can not reinitialize".into());
    };
    if leader == me {
        return Err("I am the leader, can not reinitialize".into());
    }
    if !from_leader {
        let tagged = cluster.members.iter().find(|(n, m)| {
            n.as_str() != me
                && n.as_str() != leader
                && m.value.tag_bool("clonefrom")
                && m.value.state.is_running()
        });
        if let Some((n, _)) = tagged {
            return Ok(n.clone());
        }
    }
    Ok(leader.to_string())
}

/// Parses a scheduled time: RFC 3339 / ISO 8601 with a timezone. Patroni's codes: 400
/// without a timezone, 422 when unparsable or in the past.
pub fn parse_schedule(
    text: &str,
    action: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, (u16, String)> {
    let t = text.trim();
    match DateTime::parse_from_rfc3339(t)
        .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%z"))
        .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M%z"))
    {
        Ok(at) => {
            let at = at.with_timezone(&Utc);
            if at < now {
                Err((422, format!("Cannot schedule {action} in the past")))
            } else {
                Ok(at)
            }
        }
        Err(_) => {
            let naive = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"))
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M"));
            if naive.is_ok() {
                Err((
                    400,
                    format!("Timezone information is mandatory for the scheduled {action}"),
                ))
            } else {
                Err((
                    422,
                    format!(
                        "Unable to parse scheduled timestamp {t:?}. It should be in an unambiguous format, e.g. ISO 8601"
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(is_primary: bool, pending: bool) -> LocalFacts {
        LocalFacts {
            is_primary,
            is_standby_leader: false,
            server_version: Some(150010),
            pending_restart: pending,
        }
    }

    #[test]
    fn restart_filters() {
        let any = RestartSpec::default();
        assert_eq!(restart_refusal(&any, facts(true, false)), None);
        let replica = RestartSpec {
            role: Some("replica".into()),
            ..RestartSpec::default()
        };
        assert!(restart_refusal(&replica, facts(true, false))
            .unwrap()
            .contains("role"));
        assert_eq!(restart_refusal(&replica, facts(false, false)), None);
        let master = RestartSpec {
            role: Some("master".into()),
            ..RestartSpec::default()
        };
        assert_eq!(restart_refusal(&master, facts(true, false)), None);
        // Patroni's third role: the standby leader of a standby cluster.
        let standby_leader = RestartSpec {
            role: Some("standby_leader".into()),
            ..RestartSpec::default()
        };
        let sl = LocalFacts {
            is_standby_leader: true,
            ..facts(false, false)
        };
        assert_eq!(restart_refusal(&standby_leader, sl), None);
        assert!(restart_refusal(&replica, sl).is_some());
        assert!(restart_refusal(&standby_leader, facts(false, false)).is_some());
        assert!(restart_refusal(&standby_leader, facts(true, false)).is_some());
        let pending = RestartSpec {
            restart_pending: true,
            ..RestartSpec::default()
        };
        assert!(restart_refusal(&pending, facts(false, false)).is_some());
        assert_eq!(restart_refusal(&pending, facts(false, true)), None);
        let older = RestartSpec {
            postgres_version: Some(150010),
            ..RestartSpec::default()
        };
        assert!(restart_refusal(&older, facts(false, false)).is_some());
        let newer = RestartSpec {
            postgres_version: Some(160000),
            ..RestartSpec::default()
        };
        assert_eq!(restart_refusal(&newer, facts(false, false)), None);
    }

    #[test]
    fn schedules() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = parse_schedule("2026-01-01T01:00:00+02:00", "switchover", now);
        assert!(
            matches!(at, Err((422, ref m)) if m.contains("past")),
            "{at:?}"
        );
        assert_eq!(
            parse_schedule("2026-01-01T02:00:00+00:00", "restart", now)
                .unwrap()
                .to_rfc3339(),
            "2026-01-01T02:00:00+00:00"
        );
        assert!(matches!(
            parse_schedule("2026-01-01T02:00:00", "restart", now),
            Err((400, ref m)) if m.contains("Timezone")
        ));
        assert!(matches!(
            parse_schedule("tomorrow", "restart", now),
            Err((422, _))
        ));
    }

    #[test]
    fn reinit_needs_a_leader_that_is_not_us() {
        let mut c = Cluster::default();
        assert!(reinit_source("a", &c, false)
            .unwrap_err()
            .contains("no leader"));
        c.leader = Some(warden_consensus::cluster::LeaderKey {
            name: "a".into(),
            create_revision: 1,
            mod_revision: 1,
            lease: 1,
        });
        assert!(reinit_source("a", &c, false)
            .unwrap_err()
            .contains("I am the leader"));
        assert_eq!(reinit_source("b", &c, false), Ok("a".into()));
    }
}
