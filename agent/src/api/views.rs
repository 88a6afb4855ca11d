//! JSON bodies of the read endpoints, in Patroni's shapes.

use super::health::replica_lag;
use crate::state::NodeStatus;
use serde_json::{json, Value};
use warden_api::PATRONI_COMPAT_VERSION;
use warden_consensus::Cluster;

/// `GET /patroni` (also the body of every health answer).
pub fn patroni(s: &NodeStatus, lease_valid: bool) -> Value {
    let role = match (&s.probe, s.is_leader) {
        (Some(p), _) if !p.in_recovery => "primary",
        (Some(_), _) => "replica",
        _ => s.role.as_str(),
    };
    let mut b = json!({
        "state": s.state,
        "role": role,
        "dcs_last_seen": s.dcs_last_seen,
        "patroni": {"version": PATRONI_COMPAT_VERSION, "scope": s.scope, "name": s.name, "warden_version": env!("CARGO_PKG_VERSION")},
        "warden": {"note": s.note, "leader": s.is_leader, "lease_valid": lease_valid, "fencing_token": s.fencing_token, "archiver": s.archiver},
    });
    if let Some(a) = &s.archive {
        b["warden"]["archive"] = json!({
            "last_segment": a.last_uploaded.as_ref().map(|(n, _)| n),
            "archived_lsn": a.archived_lsn,
            "failures": a.failures,
            "last_error": a.last_error,
        });
    }
    if let Some(sysid) = &s.system_identifier {
        b["database_system_identifier"] = json!(sysid);
    }
    if !s.tags.is_empty() {
        b["tags"] = Value::Object(s.tags.clone());
    }
    if s.paused() {
        b["pause"] = json!(true);
    }
    if let Some(r) = &s.scheduled_restart {
        b["scheduled_restart"] = r.to_member_json();
    }
    if let Some(p) = &s.probe {
        b["postmaster_start_time"] = json!(p.postmaster_start_time);
        b["server_version"] = json!(p.server_version);
        if let Some(t) = p.timeline {
            b["timeline"] = json!(t);
        }
        if p.pending_restart {
            b["pending_restart"] = json!(true);
            if let Some(reason) = p.pending_restart_reason_json() {
                b["pending_restart_reason"] = reason;
            }
        }
        if p.in_recovery {
            b["xlog"] = json!({
                "received_location": p.receive_lsn.or(p.replay_lsn).unwrap_or(0),
                "replayed_location": p.replay_lsn.unwrap_or(0),
                "replayed_timestamp": p.replay_timestamp,
                "paused": p.replay_paused,
            });
            b["replication_state"] = json!(if p.streaming {
                "streaming"
            } else {
                "in archive recovery"
            });
            // Patroni marks a replica listed in /sync, by the mode in force.
            match super::health::sync_role(s) {
                Some(true) => b["quorum_standby"] = json!(true),
                Some(false) => b["sync_standby"] = json!(true),
                None => {}
            }
        } else {
            b["xlog"] = json!({"location": p.wal_position.unwrap_or(0)});
            b["replication"] = serde_json::to_value(&p.replication).unwrap_or_default();
        }
    }
    if let Some(c) = &s.cluster {
        if c.leader.is_none() {
            b["cluster_unlocked"] = json!(true);
        }
    }
    b
}

/// `GET /cluster`: every member from the DCS view, with roles and lag as Patroni derives them.
pub fn cluster(s: &NodeStatus) -> Value {
    let Some(c) = &s.cluster else {
        return json!({"members": [], "scope": s.scope});
    };
    let leader = c.leader_name();
    let mode = c.dynamic_config().synchronous_mode;
    let sync: Vec<&str> = c
        .sync
        .as_ref()
        .filter(|_| mode.is_enabled())
        .map(|x| x.value.standbys())
        .unwrap_or_default();
    let sync_role = if mode == warden_consensus::dynamic_config::SynchronousMode::Quorum {
        "quorum_standby"
    } else {
        "sync_standby"
    };
    let cluster_lsn = cluster_position(c);
    let members: Vec<Value> = c
        .members
        .iter()
        .map(|(name, m)| {
            let m = &m.value;
            let role = if Some(name.as_str()) == leader {
                "leader"
            } else if sync.contains(&name.as_str()) {
                sync_role
            } else {
                "replica"
            };
            let state = if role == "leader" {
                m.state.to_string()
            } else {
                m.replication_state
                    .clone()
                    .unwrap_or_else(|| m.state.to_string())
            };
            let mut v = json!({"name": name, "role": role, "state": state, "api_url": m.api_url});
            if let Some((host, port)) = m.conn_host_port() {
                v["host"] = json!(host);
                v["port"] = json!(port);
            }
            if let Some(t) = m.timeline {
                v["timeline"] = json!(t);
            }
            if let Some(tags) = &m.tags {
                v["tags"] = Value::Object(tags.clone());
            }
            if m.pending_restart == Some(true) {
                v["pending_restart"] = json!(true);
            }
            if role == "leader" {
                if let Some(x) = m.xlog_location {
                    v["lsn"] = json!(x);
                }
            } else {
                let lsn = m.receive_lsn.max(m.replay_lsn).or(m.xlog_location);
                match (cluster_lsn, lsn) {
                    (Some(top), Some(mine)) => v["lag"] = json!(top.saturating_sub(mine)),
                    _ => v["lag"] = json!("unknown"),
                }
                if let Some(l) = lsn {
                    v["lsn"] = json!(l);
                }
                if let Some(r) = m.receive_lsn {
                    v["receive_lsn"] = json!(r);
                }
                if let Some(r) = m.replay_lsn {
                    v["replay_lsn"] = json!(r);
                }
            }
            v
        })
        .collect();
    let mut out = json!({"members": members, "scope": s.scope});
    if c.is_paused() {
        out["pause"] = json!(true);
    }
    if let Some(f) = c
        .failover
        .as_ref()
        .filter(|f| f.value.scheduled_at.is_some())
    {
        out["scheduled_switchover"] =
            json!({"at": f.value.scheduled_at, "from": f.value.leader, "to": f.value.member});
    }
    out
}

/// The leader's latest position: its member key, or `/status` if that is newer.
fn cluster_position(c: &Cluster) -> Option<u64> {
    let from_leader = c
        .leader_name()
        .and_then(|l| c.member(l))
        .and_then(|m| m.xlog_location);
    from_leader.max(c.status.as_ref().and_then(|s| s.optime))
}

pub fn history(s: &NodeStatus) -> Value {
    s.cluster.as_ref().map_or_else(
        || json!([]),
        |c| serde_json::to_value(&c.history).unwrap_or_default(),
    )
}

pub fn config(s: &NodeStatus) -> Value {
    s.cluster
        .as_ref()
        .map_or_else(|| json!({}), |c| c.dynamic_config().to_json())
}

/// Our own lag behind the cluster, for metrics.
pub fn own_lag(s: &NodeStatus) -> Option<u64> {
    replica_lag(s)
}
