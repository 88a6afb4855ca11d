//! JSON bodies of the read endpoints, in Patroni's shapes. `/patroni` and `/cluster`
//! are built as `warden_api`'s wire types, the ones peers, `wardenctl` and the tests
//! read them with.

use super::health::replica_lag;
use crate::probe::ServerProbe;
use crate::state::NodeStatus;
use serde_json::{json, Value};
use warden_api::{
    ArchiveStatus, ClusterMember, ClusterStatus, PatroniInfo, PatroniStatus, PendingChange,
    ScheduledSwitchover, WalValue, WardenStatus, Xlog, PATRONI_COMPAT_VERSION,
};
use warden_consensus::Cluster;

/// `GET /patroni` (also the body of every health answer).
pub fn patroni(s: &NodeStatus, lease_valid: bool) -> PatroniStatus {
    let role = match (&s.probe, s.is_leader) {
        (Some(p), _) if p.is_primary() => "primary",
        (Some(_), true) if s.is_standby_cluster() => "standby_leader",
        (Some(_), _) => "replica",
        _ => s.role.as_str(),
    };
    let mut b = PatroniStatus {
        state: s.state.to_string(),
        role: role.to_string(),
        dcs_last_seen: s.dcs_last_seen,
        patroni: PatroniInfo {
            version: PATRONI_COMPAT_VERSION.to_string(),
            scope: s.scope.clone(),
            name: s.name.clone(),
            warden_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        },
        warden: Some(WardenStatus {
            note: s.note.clone(),
            leader: s.is_leader,
            lease_valid,
            fencing_token: s.fencing_token,
            archiver: s.archiver,
            archive: s.archive.as_ref().map(|a| ArchiveStatus {
                last_segment: a.last_uploaded.as_ref().map(|(n, _)| n.clone()),
                archived_lsn: a.archived_lsn,
                failures: a.failures,
                last_error: a.last_error.clone(),
            }),
        }),
        database_system_identifier: s.system_identifier.clone(),
        tags: (!s.tags.is_empty()).then(|| s.tags.clone()),
        pause: s.paused(),
        scheduled_restart: s.scheduled_restart.as_ref().map(scheduled_restart),
        cluster_unlocked: s.cluster.as_ref().is_some_and(|c| c.leader.is_none()),
        failsafe_mode_is_active: s.failsafe_active(std::time::Instant::now()),
        ..PatroniStatus::default()
    };
    match &s.probe {
        Some(ServerProbe::Postgres(p)) => pg_fields(s, p, &mut b),
        Some(ServerProbe::Redis(r)) => redis_fields(s, r, &mut b),
        None => {}
    }
    b
}

/// A Redis member's positions: its replication offsets where PostgreSQL's are LSNs
/// (what `wardenctl list` and peers compare), and its replicas as `INFO` lists them.
fn redis_fields(s: &NodeStatus, r: &crate::probe::RedisProbe, b: &mut PatroniStatus) {
    use warden_redis::policy::ServerRole;
    let rep = &r.replication;
    if rep.role == ServerRole::Replica {
        b.xlog = Some(Xlog::Replica {
            received_location: Some(rep.slave_read_repl_offset.unwrap_or(rep.position())),
            replayed_location: Some(rep.slave_repl_offset.unwrap_or(rep.position())),
            replayed_timestamp: None,
            paused: false,
        });
        let state = if rep.link_up {
            "streaming"
        } else if rep.sync_in_progress {
            "syncing"
        } else {
            "disconnected"
        };
        b.replication_state = Some(state.to_string());
        match super::health::sync_role(s) {
            Some(true) => b.quorum_standby = true,
            Some(false) => b.sync_standby = true,
            None => {}
        }
    } else {
        b.xlog = Some(Xlog::Primary {
            location: rep.position(),
        });
        let names = s
            .cluster
            .as_deref()
            .map(member_by_address)
            .unwrap_or_default();
        b.replication = Some(
            rep.replicas
                .iter()
                .map(|c| warden_api::ReplicationRow {
                    usename: None,
                    application_name: Some(
                        names
                            .get(&(c.ip.clone(), c.port))
                            .cloned()
                            .unwrap_or_else(|| format!("{}:{}", c.ip, c.port)),
                    ),
                    client_addr: Some(c.ip.clone()),
                    state: Some(
                        if c.state == "online" {
                            "streaming"
                        } else {
                            c.state.as_str()
                        }
                        .to_string(),
                    ),
                    sync_state: Some("async".to_string()),
                    sync_priority: Some(0),
                    flush_lsn: Some(c.offset),
                })
                .collect(),
        );
    }
}

/// Member names by the (host, port) of their `conn_url`.
fn member_by_address(c: &Cluster) -> std::collections::HashMap<(String, u16), String> {
    c.members
        .iter()
        .filter_map(|(name, m)| Some((m.value.conn_host_port()?, name.clone())))
        .collect()
}

fn pg_fields(s: &NodeStatus, p: &warden_pg::sql::Probe, b: &mut PatroniStatus) {
    {
        b.standby_cluster = s.standby_lag();
        b.postmaster_start_time = Some(p.postmaster_start_time.clone());
        b.server_version = Some(p.server_version);
        b.timeline = p.timeline;
        if p.pending_restart {
            b.pending_restart = true;
            b.pending_restart_reason = (!p.pending_restart_reason.is_empty()).then(|| {
                p.pending_restart_reason
                    .iter()
                    .map(|(k, (old, new))| {
                        let change = PendingChange {
                            old_value: old.clone(),
                            new_value: new.clone(),
                        };
                        (k.clone(), change)
                    })
                    .collect()
            });
        }
        if p.in_recovery {
            b.xlog = Some(Xlog::Replica {
                received_location: Some(p.receive_lsn.or(p.replay_lsn).unwrap_or(0)),
                replayed_location: Some(p.replay_lsn.unwrap_or(0)),
                replayed_timestamp: p.replay_timestamp.clone(),
                paused: p.replay_paused,
            });
            b.replication_state = Some(replication_state(p.streaming).to_string());
            b.latest_end_lsn = p.upstream_end_lsn;
            // Patroni marks a replica listed in /sync, by the mode in force.
            match super::health::sync_role(s) {
                Some(true) => b.quorum_standby = true,
                Some(false) => b.sync_standby = true,
                None => {}
            }
        } else {
            b.xlog = Some(Xlog::Primary {
                location: p.wal_position.unwrap_or(0),
            });
            b.replication = Some(p.replication.iter().map(replication_row).collect());
        }
    }
}

fn replication_state(streaming: bool) -> &'static str {
    if streaming {
        "streaming"
    } else {
        "in archive recovery"
    }
}

fn replication_row(r: &warden_pg::sql::ReplicationRow) -> warden_api::ReplicationRow {
    warden_api::ReplicationRow {
        usename: r.usename.clone(),
        application_name: r.application_name.clone(),
        client_addr: r.client_addr.clone(),
        state: r.state.clone(),
        sync_state: r.sync_state.clone(),
        sync_priority: r.sync_priority,
        flush_lsn: r.flush_lsn,
    }
}

/// The same object as the member key's `scheduled_restart`
/// (`ScheduledRestart::to_member_json`).
fn scheduled_restart(r: &crate::ha::request::ScheduledRestart) -> warden_api::ScheduledRestart {
    warden_api::ScheduledRestart {
        schedule: r.at.to_rfc3339(),
        role: r.spec.role.clone(),
        postgres_version: r.spec.postgres_version.map(|v| v.to_string()),
        restart_pending: r.spec.restart_pending,
        timeout: r.spec.timeout.map(|t| t.as_secs()),
    }
}

/// `GET /cluster`: every member from the DCS view, with roles and lag as Patroni derives them.
pub fn cluster(s: &NodeStatus) -> ClusterStatus {
    let Some(c) = &s.cluster else {
        return ClusterStatus {
            scope: s.scope.clone(),
            ..ClusterStatus::default()
        };
    };
    let leader = c.leader_name();
    let mode = c.dynamic_config().synchronous_mode;
    let standby = c.dynamic_config().is_standby_cluster();
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
    let members = c
        .members
        .iter()
        .map(|(name, m)| {
            let m = &m.value;
            let role = if Some(name.as_str()) == leader && standby {
                "standby_leader"
            } else if Some(name.as_str()) == leader {
                "leader"
            } else if sync.contains(&name.as_str()) {
                sync_role
            } else {
                "replica"
            };
            let state = if role == "leader" || role == "standby_leader" {
                m.state.to_string()
            } else {
                m.replication_state
                    .clone()
                    .unwrap_or_else(|| m.state.to_string())
            };
            let (host, port) = m.conn_host_port().unzip();
            let mut v = ClusterMember {
                name: name.clone(),
                role: role.to_string(),
                state,
                api_url: m.api_url.clone(),
                host,
                port,
                timeline: m.timeline,
                tags: m.tags.clone(),
                pending_restart: m.pending_restart == Some(true),
                ..ClusterMember::default()
            };
            v.pending_restart_reason = m
                .pending_restart_reason
                .as_ref()
                .and_then(|r| serde_json::from_value(r.clone()).ok());
            v.scheduled_restart = m
                .scheduled_restart
                .as_ref()
                .and_then(|r| serde_json::from_value(r.clone()).ok());
            if role != "leader" && role != "standby_leader" {
                // Patroni's fields: each position as LSN text with its lag behind the
                // cluster's `/status` optime, or both `unknown`.
                let pair = |lsn: Option<u64>| match lsn.filter(|l| *l > 0) {
                    None => (Some(WalValue::unknown()), Some(WalValue::unknown())),
                    Some(l) => (
                        Some(WalValue::Text(format_lsn(l))),
                        Some(WalValue::Bytes(cluster_lsn.saturating_sub(l))),
                    ),
                };
                (v.receive_lsn, v.receive_lag) = pair(m.receive_lsn);
                (v.replay_lsn, v.replay_lag) = pair(m.replay_lsn);
                (v.lsn, v.lag) = pair(m.xlog_location);
            }
            v
        })
        .collect();
    ClusterStatus {
        members,
        scope: s.scope.clone(),
        pause: c.is_paused(),
        scheduled_switchover: c.failover.as_ref().and_then(|f| {
            Some(ScheduledSwitchover {
                at: f.value.scheduled_at.clone()?,
                from: f.value.leader.clone(),
                to: f.value.member.clone(),
            })
        }),
    }
}

/// The position lags in `/cluster` are measured against: the leader's `/status`
/// optime (Patroni's `last_lsn`; 0 when there is none, and then every lag is 0).
fn cluster_position(c: &Cluster) -> u64 {
    c.status.as_ref().and_then(|s| s.optime).unwrap_or(0)
}

/// An LSN as PostgreSQL writes it: `X/Y`, hexadecimal, upper case.
fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

pub fn history(s: &NodeStatus) -> Value {
    s.cluster.as_ref().map_or_else(
        || json!([]),
        |c| serde_json::to_value(&c.history).unwrap_or_default(),
    )
}

/// `GET /config`: the `config` key as stored (the client's own key names and values,
/// not Warden's reading of them); `None` when the cluster has none (Patroni: 502).
pub fn config(s: &NodeStatus) -> Option<Value> {
    s.cluster.as_ref()?.config_raw.clone()
}

/// `GET /failsafe`: the members the leader would ask while the DCS is unreachable, as
/// last read from the `failsafe` key; `None` when there is no such key (Patroni: 502).
pub fn failsafe(s: &NodeStatus) -> Option<Value> {
    let members = s.cluster.as_ref()?.failsafe.as_ref()?;
    serde_json::to_value(members).ok()
}

/// Our own lag behind the cluster, for metrics.
pub fn own_lag(s: &NodeStatus) -> Option<u64> {
    replica_lag(s)
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
