//! Health endpoint semantics (Patroni's contract), as a pure function of the cached
//! status, the query string and whether our lease deadline has passed.

use crate::probe::ServerProbe;
use crate::state::NodeStatus;
use std::collections::BTreeMap;
use std::time::Instant;
use warden_consensus::dynamic_config::SynchronousMode;

/// The health checks, after Patroni's path aliases are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Primary,
    StandbyLeader,
    Leader,
    Replica,
    ReadOnly,
    /// A synchronous standby (`synchronous_mode: on`).
    Sync,
    /// A quorum standby (`synchronous_mode: quorum`).
    Quorum,
    ReadOnlySync,
    ReadOnlyQuorum,
    Async,
    Health,
    Liveness,
    Readiness,
}

impl Check {
    pub fn from_path(path: &str) -> Option<Check> {
        let p = path.trim_end_matches('/');
        Some(match p {
            "" | "/primary" | "/master" | "/read-write" => Check::Primary,
            "/standby-leader" | "/standby_leader" => Check::StandbyLeader,
            "/leader" => Check::Leader,
            "/replica" => Check::Replica,
            "/read-only" => Check::ReadOnly,
            "/sync" | "/synchronous" => Check::Sync,
            "/quorum" => Check::Quorum,
            "/read-only-sync" | "/read-only-synchronous" => Check::ReadOnlySync,
            "/read-only-quorum" => Check::ReadOnlyQuorum,
            "/async" | "/asynchronous" => Check::Async,
            "/health" => Check::Health,
            "/liveness" => Check::Liveness,
            "/readiness" => Check::Readiness,
            _ => return None,
        })
    }
}

/// Parsed query parameters of a health request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub lag: Option<u64>,
    pub replication_state: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// `/readiness?mode=write`: lag measured on received WAL (else replayed).
    pub write_mode: bool,
}

/// Parses `?lag=16MB&replication_state=streaming&tag_zone=a`. A malformed value is an
/// error naming the parameter.
pub fn parse_filters(query: Option<&str>) -> Result<Filters, String> {
    let mut f = Filters::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        if k == "lag" {
            f.lag = Some(parse_size(&v).ok_or_else(|| {
                format!("lag: cannot parse {v:?} as a size (e.g. 1048576, 16kB, 64MB, 1GB)")
            })?);
        } else if k == "replication_state" {
            f.replication_state = Some(v);
        } else if k == "mode" {
            f.write_mode = v == "write";
        } else if let Some(tag) = k.strip_prefix("tag_") {
            f.tags.insert(tag.to_string(), v);
        }
    }
    Ok(f)
}

/// Bytes, or a number with a PostgreSQL-style unit (B, kB, MB, GB, TB).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' => bytes
                .get(i + 1)
                .copied()
                .and_then(hex)
                .zip(bytes.get(i + 2).copied().and_then(hex)),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some((hi, lo)), _) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn running(s: &NodeStatus) -> bool {
    s.running && s.state.is_running() && s.probe.is_some() && s.server_pid.is_none_or(alive)
}

/// Whether process `pid` still runs: it exists and is not a zombie (a postmaster that
/// was our child stays one until reaped). One read of `/proc`, no SQL.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last `)` (comm may hold one).
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| !matches!(state, "Z" | "X" | "x"))
}

/// How far behind the cluster's last known position we are, if it can be told.
pub fn replica_lag(s: &NodeStatus) -> Option<u64> {
    let mine = s.probe.as_ref()?.position()?;
    let c = s.cluster.as_ref()?;
    let from_status = c.status.as_ref().and_then(|st| st.optime);
    let from_leader = c
        .leader_name()
        .and_then(|l| c.member(l))
        .and_then(|m| m.xlog_location);
    let cluster_pos = from_status.max(from_leader)?;
    Some(cluster_pos.saturating_sub(mine))
}

/// `Some(quorum)` when synchronous mode is on and `/sync` lists us: whether as a
/// quorum standby (`synchronous_mode: quorum`) or a synchronous one. Patroni answers
/// `/sync` only for the latter and `/quorum` only for the former.
pub fn sync_role(s: &NodeStatus) -> Option<bool> {
    let c = s.cluster.as_ref()?;
    let mode = c.dynamic_config().synchronous_mode;
    let listed = c
        .sync
        .as_ref()
        .is_some_and(|sync| sync.value.standbys().contains(&s.name.as_str()));
    (mode.is_enabled() && listed).then_some(mode == SynchronousMode::Quorum)
}

/// Patroni's readiness of a replica: running and streaming, and its replayed (with
/// `?mode=write`: received) WAL within `?lag=` (default `maximum_lag_on_failover`) of
/// the leader's `/status` optime.
fn replica_ready(s: &NodeStatus, f: &Filters) -> bool {
    let Some(p) = s
        .probe
        .as_ref()
        .filter(|p| p.in_recovery() && p.streaming())
    else {
        return false;
    };
    if !running(s) {
        return false;
    }
    let max = f.lag.unwrap_or_else(|| {
        s.cluster
            .as_ref()
            .map_or(1_048_576, |c| c.dynamic_config().maximum_lag_on_failover)
    });
    let optime = s
        .cluster
        .as_ref()
        .and_then(|c| c.status.as_ref())
        .and_then(|st| st.optime)
        .unwrap_or(0);
    let mine = if f.write_mode {
        p.received()
    } else {
        p.applied()
    };
    optime.saturating_sub(mine.unwrap_or(0)) <= max
}

fn replica_ok(s: &NodeStatus, f: &Filters) -> bool {
    if !running(s) || s.in_recovery() != Some(true) || s.is_leader {
        return false;
    }
    if s.tags
        .get("noloadbalance")
        .is_some_and(warden_consensus::types::tag_truthy)
    {
        return false;
    }
    if let Some(max) = f.lag {
        if replica_lag(s).is_some_and(|lag| lag > max) {
            return false;
        }
    }
    if let Some(want) = &f.replication_state {
        let have = if s.probe.as_ref().is_some_and(ServerProbe::streaming) {
            "streaming"
        } else {
            "in archive recovery"
        };
        if want != have {
            return false;
        }
    }
    f.tags.iter().all(|(k, v)| {
        s.tags.get(k).is_some_and(|t| match t {
            serde_json::Value::String(x) => x == v,
            other => {
                serde_json::from_str::<serde_json::Value>(v).is_ok_and(|parsed| parsed == *other)
            }
        })
    })
}

/// The status code of a health check: 200 or 503.
pub fn evaluate(check: Check, f: &Filters, s: &NodeStatus, lease_valid: bool, now: Instant) -> u16 {
    let leader = s.is_leader && lease_valid && running(s);
    // Patroni's rule: in a standby cluster the key holder is never `/primary` (not even
    // while a demoted primary still runs writable), and is `/standby-leader` once it
    // runs read-only.
    let standby = s.is_standby_cluster();
    let primary = leader && !standby && s.in_recovery() == Some(false);
    let standby_leader = leader && standby && s.in_recovery() == Some(true);
    let ok = match check {
        Check::Primary => primary,
        Check::StandbyLeader => standby_leader,
        Check::Leader => primary || standby_leader,
        Check::Replica => replica_ok(s, f),
        Check::ReadOnly => primary || standby_leader || replica_ok(s, f),
        Check::Sync => replica_ok(s, f) && sync_role(s) == Some(false),
        Check::Quorum => replica_ok(s, f) && sync_role(s) == Some(true),
        Check::ReadOnlySync => primary || (replica_ok(s, f) && sync_role(s) == Some(false)),
        Check::ReadOnlyQuorum => primary || (replica_ok(s, f) && sync_role(s) == Some(true)),
        Check::Async => replica_ok(s, f) && sync_role(s).is_none(),
        Check::Health => running(s),
        Check::Liveness => {
            let limit = if s.is_leader { s.ttl } else { s.ttl * 2 };
            s.paused() || s.last_turn.is_some_and(|t| now.duration_since(t) <= limit)
        }
        Check::Readiness => primary || standby_leader || replica_ready(s, f),
    };
    if ok {
        200
    } else {
        503
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use warden_pg::sql::Probe;

    #[test]
    fn a_process_is_alive_until_it_exits() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(alive(me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Exited but not reaped: a zombie is not alive.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(std::time::Instant::now() < deadline, "`true` never exited");
            std::thread::yield_now();
        }
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    fn status(in_recovery: bool, is_leader: bool) -> NodeStatus {
        let mut s = NodeStatus::new("demo".into(), "n1".into(), serde_json::Map::new());
        s.state = warden_consensus::types::MemberState::Running;
        s.running = true;
        s.is_leader = is_leader;
        s.probe = Some(crate::probe::ServerProbe::Postgres(Box::new(Probe {
            in_recovery,
            wal_position: Some(1000),
            streaming: in_recovery,
            ..Probe::default()
        })));
        s.last_turn = Some(Instant::now());
        s.ttl = Duration::from_secs(10);
        s
    }

    fn eval(check: Check, q: Option<&str>, s: &NodeStatus, lease_valid: bool) -> u16 {
        evaluate(
            check,
            &parse_filters(q).unwrap(),
            s,
            lease_valid,
            Instant::now(),
        )
    }

    #[test]
    fn aliases() {
        for p in ["/", "", "/master", "/primary", "/read-write", "/primary/"] {
            assert_eq!(Check::from_path(p), Some(Check::Primary), "{p}");
        }
        assert_eq!(
            Check::from_path("/standby_leader"),
            Some(Check::StandbyLeader)
        );
        assert_eq!(Check::from_path("/synchronous"), Some(Check::Sync));
        assert_eq!(Check::from_path("/patroni"), None);
    }

    #[test]
    fn primary_needs_leader_key_and_valid_lease() {
        let s = status(false, true);
        assert_eq!(eval(Check::Primary, None, &s, true), 200);
        assert_eq!(
            eval(Check::Primary, None, &s, false),
            503,
            "lease deadline passed"
        );
        assert_eq!(eval(Check::Replica, None, &s, true), 503);
        assert_eq!(eval(Check::ReadOnly, None, &s, true), 200);
        let not_leader = status(false, false);
        assert_eq!(eval(Check::Primary, None, &not_leader, true), 503);
    }

    #[test]
    fn standby_leader_in_a_standby_cluster() {
        let standby = |mut s: NodeStatus| {
            let cfg = warden_consensus::DynamicConfig::from_json(
                &serde_json::json!({"standby_cluster": {"host": "10.0.0.9"}}),
            )
            .unwrap();
            s.cluster = Some(std::sync::Arc::new(warden_consensus::Cluster {
                config: Some(warden_consensus::Versioned {
                    value: cfg,
                    mod_revision: 1,
                }),
                ..warden_consensus::Cluster::default()
            }));
            s
        };
        let s = standby(status(true, true));
        for (check, code) in [
            (Check::StandbyLeader, 200),
            (Check::Leader, 200),
            (Check::Primary, 503),
            (Check::Replica, 503),
            (Check::ReadOnly, 200),
            (Check::Readiness, 200),
        ] {
            assert_eq!(eval(check, None, &s, true), code, "{check:?}");
        }
        assert_eq!(eval(Check::StandbyLeader, None, &s, false), 503, "lease");
        // A demoted primary still writable: neither /primary nor /standby-leader.
        let s = standby(status(false, true));
        assert_eq!(eval(Check::Primary, None, &s, true), 503);
        assert_eq!(eval(Check::StandbyLeader, None, &s, true), 503);
        // Not a standby cluster: a read-only key holder is no standby leader.
        assert_eq!(
            eval(Check::StandbyLeader, None, &status(true, true), true),
            503
        );
        // Other members of the standby cluster are replicas as usual.
        assert_eq!(
            eval(Check::Replica, None, &standby(status(true, false)), true),
            200
        );
    }

    #[test]
    fn replica_filters() {
        let mut s = status(true, false);
        assert_eq!(eval(Check::Replica, None, &s, false), 200);
        assert_eq!(eval(Check::Primary, None, &s, true), 503);
        assert_eq!(
            eval(
                Check::Replica,
                Some("replication_state=streaming"),
                &s,
                false
            ),
            200
        );
        assert_eq!(
            eval(
                Check::Replica,
                Some("replication_state=in%20archive%20recovery"),
                &s,
                false
            ),
            503
        );
        s.tags.insert("zone".into(), serde_json::json!("a"));
        assert_eq!(eval(Check::Replica, Some("tag_zone=a"), &s, false), 200);
        assert_eq!(eval(Check::Replica, Some("tag_zone=b"), &s, false), 503);
        s.tags
            .insert("noloadbalance".into(), serde_json::json!(true));
        assert_eq!(eval(Check::Replica, None, &s, false), 503);
    }

    #[test]
    fn replica_lag_bound() {
        let mut s = status(true, false);
        let c = warden_consensus::Cluster {
            status: Some(warden_consensus::types::Status {
                optime: Some(1000 + 20_000),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.cluster = Some(std::sync::Arc::new(c));
        assert_eq!(replica_lag(&s), Some(20_000));
        assert_eq!(eval(Check::Replica, Some("lag=16kB"), &s, false), 503);
        assert_eq!(eval(Check::Replica, Some("lag=1MB"), &s, false), 200);
        assert_eq!(eval(Check::Replica, Some("lag=30000"), &s, false), 200);
        assert!(parse_filters(Some("lag=lots")).unwrap_err().contains("lag"));
    }

    #[test]
    fn readiness_lag_and_mode_as_patroni() {
        let mut s = status(true, false);
        if let Some(p) = s.probe.as_mut().and_then(crate::probe::ServerProbe::pg_mut) {
            p.receive_lsn = Some(30_000);
            p.replay_lsn = Some(1_000);
        }
        s.cluster = Some(std::sync::Arc::new(warden_consensus::Cluster {
            status: Some(warden_consensus::types::Status {
                optime: Some(31_000),
                ..Default::default()
            }),
            ..Default::default()
        }));
        // Replayed: 30000 behind; received: 1000 behind.
        assert_eq!(eval(Check::Readiness, None, &s, false), 200);
        assert_eq!(eval(Check::Readiness, Some("lag=10kB"), &s, false), 503);
        assert_eq!(
            eval(Check::Readiness, Some("lag=10kB&mode=write"), &s, false),
            200
        );
        if let Some(p) = s.probe.as_mut().and_then(crate::probe::ServerProbe::pg_mut) {
            p.streaming = false;
        }
        assert_eq!(eval(Check::Readiness, None, &s, false), 503);
    }

    #[test]
    fn liveness_follows_the_loop() {
        let mut s = status(true, false);
        assert_eq!(eval(Check::Liveness, None, &s, false), 200);
        s.last_turn = Some(Instant::now() - Duration::from_secs(25));
        assert_eq!(eval(Check::Liveness, None, &s, false), 503);
        s.last_turn = None;
        assert_eq!(eval(Check::Liveness, None, &s, false), 503);
    }

    #[test]
    fn sync_and_quorum_standbys() {
        let mut s = status(true, false);
        let mut c = warden_consensus::Cluster::default();
        let mode = |m: serde_json::Value| warden_consensus::Versioned {
            value: warden_consensus::DynamicConfig::from_json(
                &serde_json::json!({"synchronous_mode": m}),
            )
            .unwrap(),
            mod_revision: 1,
        };
        c.sync = Some(warden_consensus::Versioned {
            value: warden_consensus::types::SyncState {
                leader: Some("n0".into()),
                quorum: Some(1),
                sync_standby: Some("n1,n2".into()),
                extra: serde_json::Map::new(),
            },
            mod_revision: 2,
        });
        c.config = Some(mode(serde_json::json!("quorum")));
        s.cluster = Some(std::sync::Arc::new(c.clone()));
        for (check, code) in [
            (Check::Quorum, 200),
            (Check::ReadOnlyQuorum, 200),
            (Check::Sync, 503),
            (Check::ReadOnlySync, 503),
            (Check::Async, 503),
        ] {
            assert_eq!(
                eval(check, None, &s, false),
                code,
                "{check:?} in quorum mode"
            );
        }
        c.config = Some(mode(serde_json::json!(true)));
        s.cluster = Some(std::sync::Arc::new(c.clone()));
        for (check, code) in [
            (Check::Quorum, 503),
            (Check::Sync, 200),
            (Check::ReadOnlySync, 200),
            (Check::Async, 503),
        ] {
            assert_eq!(eval(check, None, &s, false), code, "{check:?} in on mode");
        }
        // Synchronous mode off: a leftover /sync does not make a synchronous standby.
        c.config = None;
        s.cluster = Some(std::sync::Arc::new(c));
        assert_eq!(eval(Check::Sync, None, &s, false), 503);
        assert_eq!(eval(Check::Async, None, &s, false), 200);
        // The primary is read-only-sync and read-only-quorum, never sync or quorum.
        let p = status(false, true);
        assert_eq!(eval(Check::ReadOnlyQuorum, None, &p, true), 200);
        assert_eq!(eval(Check::ReadOnlySync, None, &p, true), 200);
        assert_eq!(eval(Check::Quorum, None, &p, true), 503);
        assert_eq!(Check::from_path("/quorum"), Some(Check::Quorum));
        assert_eq!(
            Check::from_path("/read-only-synchronous"),
            Some(Check::ReadOnlySync)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16kB"), Some(16 * 1024));
        assert_eq!(parse_size("64MB"), Some(64 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1XB"), None);
    }
}
