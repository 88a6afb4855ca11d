//! `GET /metrics`: Patroni's `patroni_*` gauges (so existing dashboards and alerts keep
//! working) plus Warden's own, built from the cached status on each scrape.

use crate::probe::ServerProbe;
use crate::state::NodeStatus;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Labels {
    pub(super) scope: String,
    pub(super) name: String,
}

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn render(s: &NodeStatus, lease_remaining: Duration) -> String {
    let labels = Labels {
        scope: s.scope.clone(),
        name: s.name.clone(),
    };
    let mut registry = Registry::default();
    let mut gauge = |name: &str, help: &str, value: i64| {
        let family = Family::<Labels, Gauge>::default();
        family.get_or_create(&labels).set(value);
        registry.register(name, help, family);
    };
    role_gauges(s, &mut gauge);
    wal_gauges(s, &mut gauge);
    cluster_gauges(s, lease_remaining, &mut gauge);
    archive_gauges(s, &mut gauge);
    super::metrics_backup::gauges(
        &mut registry,
        &labels,
        &warden_backup::facts::snapshot(),
        chrono::Utc::now(),
    );
    super::metrics_backup::copy_gauges(&mut registry, &labels, &warden_backup::copies::status());
    super::metrics_backup::job_gauges(&mut registry, &labels, &warden_backup::stack::status());
    crate::backups::objectives::gauges(&mut registry, &s.scope, &s.name);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Role gauges: running, primary, replica, synchronous or quorum standby.
fn role_gauges(s: &NodeStatus, gauge: &mut impl FnMut(&str, &str, i64)) {
    let probe = s.probe.as_ref();
    let primary = s.is_leader && probe.is_some_and(ServerProbe::is_primary);
    let replica = probe.is_some_and(ServerProbe::in_recovery);
    let sync_role = super::health::sync_role(s);
    gauge(
        "patroni_version",
        "Patroni-compatible version implemented, as MMmmpp",
        40000,
    );
    gauge(
        "patroni_postgres_running",
        "1 if PostgreSQL is running",
        i64::from(s.running),
    );
    gauge(
        "patroni_primary",
        "1 if this node is the leader and runs the primary",
        i64::from(primary),
    );
    gauge(
        "patroni_replica",
        "1 if PostgreSQL runs as a replica",
        i64::from(replica),
    );
    gauge(
        "patroni_sync_standby",
        "1 if this node is a synchronous standby",
        i64::from(sync_role == Some(false) && replica),
    );
    gauge(
        "patroni_quorum_standby",
        "1 if this node is a quorum standby",
        i64::from(sync_role == Some(true) && replica),
    );
    let standby_lag = s.standby_lag();
    gauge(
        "patroni_standby_leader",
        "1 if this node is a standby leader",
        i64::from(standby_lag.is_some()),
    );
    // Only on a standby leader: its distance from the remote primary (-1: unknown).
    if let Some(lag) = standby_lag {
        gauge(
            "warden_standby_cluster_lag_bytes",
            "Standby leader: WAL the remote primary last reported beyond what we replayed (-1: unknown)",
            lag.lag_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
        );
        gauge(
            "warden_standby_cluster_lag_seconds",
            "Standby leader: 0 when caught up with the remote, else the age of the newest replayed transaction (-1: unknown)",
            lag.lag_seconds.map_or(-1, |x| x.ceil() as i64),
        );
    }
}

/// Replication-position gauges, as Patroni names them.
fn wal_gauges(s: &NodeStatus, gauge: &mut impl FnMut(&str, &str, i64)) {
    let probe = s.probe.as_ref();
    let primary = s.is_leader && probe.is_some_and(ServerProbe::is_primary);
    // PostgreSQL's own figures; a Redis member reports its offsets as positions.
    let pg = probe.and_then(ServerProbe::pg);
    let n = |v: Option<u64>| v.and_then(|x| i64::try_from(x).ok()).unwrap_or(0);
    gauge(
        "patroni_xlog_location",
        "Current WAL location (primary)",
        if primary {
            n(probe.and_then(ServerProbe::position))
        } else {
            0
        },
    );
    gauge(
        "patroni_xlog_received_location",
        "Received WAL location (replica)",
        n(probe.and_then(ServerProbe::received)),
    );
    gauge(
        "patroni_xlog_replayed_location",
        "Replayed WAL location (replica)",
        n(probe.and_then(ServerProbe::applied)),
    );
    gauge(
        "patroni_xlog_paused",
        "1 if WAL replay is paused",
        i64::from(pg.is_some_and(|p| p.replay_paused)),
    );
    gauge(
        "patroni_postgres_server_version",
        "PostgreSQL version number",
        pg.map_or(0, |p| i64::from(p.server_version)),
    );
    gauge(
        "patroni_postgres_timeline",
        "PostgreSQL timeline",
        pg.and_then(|p| p.timeline).map_or(0, i64::from),
    );
    let replica = probe.filter(|p| p.in_recovery());
    gauge(
        "patroni_postgres_streaming",
        "1 if the replica streams WAL from its upstream",
        i64::from(replica.is_some_and(ServerProbe::streaming)),
    );
    gauge(
        "patroni_postgres_in_archive_recovery",
        "1 if the replica replays WAL from the archive (not streaming)",
        i64::from(
            replica
                .and_then(ServerProbe::pg)
                .is_some_and(|p| !p.streaming),
        ),
    );
    gauge(
        "patroni_postmaster_start_time",
        "Unix time PostgreSQL was started",
        pg.and_then(|p| unix_time(&p.postmaster_start_time))
            .unwrap_or(0),
    );
    gauge(
        "patroni_xlog_replayed_timestamp",
        "Unix time of the last transaction replayed (replica)",
        replica
            .and_then(ServerProbe::pg)
            .and_then(|p| p.replay_timestamp.as_deref())
            .and_then(unix_time)
            .unwrap_or(0),
    );
}

/// Patroni's index of a member state (`PostgresqlState`), -1 for one it does not have.
fn postgres_state(state: &warden_consensus::types::MemberState) -> i64 {
    use warden_consensus::types::MemberState as S;
    match state {
        S::InitializingNewCluster => 0,
        S::InitdbFailed => 1,
        S::RunningCustomBootstrapScript => 2,
        S::CustomBootstrapFailed => 3,
        S::CreatingReplica => 4,
        S::Running => 5,
        S::Starting => 6,
        S::StartFailed => 8,
        S::Restarting => 9,
        S::RestartFailed => 10,
        S::Stopping => 11,
        S::Stopped => 12,
        S::Crashed => 14,
        S::Other(_) => -1,
    }
}

/// PostgreSQL's timestamp text (`2026-12-07 10:00:00.123+00`) as Unix seconds.
fn unix_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .map(|t| t.timestamp())
}

/// Cluster and leadership gauges: the leader key, pause, pending restart, the DCS,
/// the lease and the fencing token.
fn cluster_gauges(
    s: &NodeStatus,
    lease_remaining: Duration,
    gauge: &mut impl FnMut(&str, &str, i64),
) {
    gauge(
        "patroni_cluster_unlocked",
        "1 if the leader key is vacant",
        i64::from(s.cluster.as_ref().is_some_and(|c| c.leader.is_none())),
    );
    gauge(
        "patroni_is_paused",
        "1 if the cluster is in maintenance mode",
        i64::from(s.paused()),
    );
    gauge(
        "patroni_pending_restart",
        "1 if PostgreSQL needs a restart for a setting",
        i64::from(s.probe.as_ref().is_some_and(ServerProbe::pending_restart)),
    );
    gauge(
        "patroni_postgres_state",
        "Numeric representation of Postgres state (Patroni's numbering: 0=initdb, \
         1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, \
         4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, \
         8=start_failed, 9=restarting, 10=restart_failed, 11=stopping, 12=stopped, \
         13=stop_failed, 14=crashed)",
        postgres_state(&s.state),
    );
    gauge(
        "patroni_failsafe_mode_is_active",
        "1 if failsafe mode is keeping this member's role without the DCS",
        i64::from(s.failsafe_active(std::time::Instant::now())),
    );
    gauge(
        "patroni_dcs_last_seen",
        "Unix time of the last successful DCS read",
        s.dcs_last_seen.unwrap_or(0),
    );
    gauge(
        "warden_lease_remaining_milliseconds",
        "Time left before the leader's local lease deadline (0 when not leader)",
        i64::try_from(lease_remaining.as_millis()).unwrap_or(i64::MAX),
    );
    gauge(
        "warden_fencing_token",
        "create_revision of the leader key while held",
        s.fencing_token.unwrap_or(0),
    );
}

/// The streaming archiver's gauges. `warden_archiver` is on every member, so summing it
/// over the cluster should give exactly 1; the others only on the archiver.
fn archive_gauges(s: &NodeStatus, gauge: &mut impl FnMut(&str, &str, i64)) {
    gauge(
        "warden_archiver",
        "1 if this member holds warden/archiver and streams WAL into the repository",
        i64::from(s.archiver),
    );
    let Some(a) = &s.archive else { return };
    let age = a
        .last_uploaded
        .as_ref()
        .and_then(|(_, at)| at.elapsed().ok())
        .map_or(-1, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    gauge(
        "warden_archive_last_upload_age_seconds",
        "Seconds since the archiver last uploaded a WAL file (-1: none yet)",
        age,
    );
    // What this node has of the WAL, against the end of the last archived segment.
    let here = s.probe.as_ref().and_then(ServerProbe::pg).and_then(|p| {
        if p.in_recovery {
            p.receive_lsn.or(p.replay_lsn)
        } else {
            p.wal_position
        }
    });
    let lag = match (here, a.archived_lsn) {
        (Some(h), Some(done)) => i64::try_from(h.saturating_sub(done)).unwrap_or(i64::MAX),
        _ => -1,
    };
    gauge(
        "warden_archive_lag_bytes",
        "WAL this node has beyond the last archived segment (-1: unknown)",
        lag,
    );
    // Seconds: how long the oldest unarchived WAL has waited, i.e. the time since the
    // last upload while there is WAL beyond it; 0 when everything is archived.
    let lag_seconds = match lag {
        l if l > 0 => age,
        0 => 0,
        _ => -1,
    };
    gauge(
        "warden_archive_lag_seconds",
        "Seconds since the last upload while unarchived WAL exists; 0 when none (-1: unknown)",
        lag_seconds,
    );
    gauge(
        "warden_archive_failures",
        "Failed pg_receivewal runs in a row",
        i64::from(a.failures),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_patroni_gauges_with_labels() {
        let mut s = NodeStatus::new("demo".into(), "n1".into(), serde_json::Map::new());
        s.running = true;
        let text = render(&s, Duration::ZERO);
        assert!(
            text.contains("patroni_postgres_running{scope=\"demo\",name=\"n1\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE patroni_primary gauge"), "{text}");
        assert!(
            text.contains("patroni_primary{scope=\"demo\",name=\"n1\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn replica_and_failsafe_gauges() {
        let mut s = NodeStatus::new("demo".into(), "n1".into(), serde_json::Map::new());
        s.ttl = Duration::from_secs(30);
        s.probe = Some(crate::probe::ServerProbe::Postgres(Box::new(
            warden_pg::sql::Probe {
                in_recovery: true,
                streaming: false,
                postmaster_start_time: "2026-12-07 10:00:00.123+00".into(),
                replay_timestamp: Some("2026-12-07 10:00:05+00".into()),
                ..warden_pg::sql::Probe::default()
            },
        )));
        s.failsafe_leader = Some(("n2".into(), std::time::Instant::now()));
        let text = render(&s, Duration::ZERO);
        for line in [
            "patroni_postgres_streaming{scope=\"demo\",name=\"n1\"} 0",
            "patroni_postgres_in_archive_recovery{scope=\"demo\",name=\"n1\"} 1",
            "patroni_postmaster_start_time{scope=\"demo\",name=\"n1\"} 1796637600",
            "patroni_xlog_replayed_timestamp{scope=\"demo\",name=\"n1\"} 1796637605",
            "patroni_failsafe_mode_is_active{scope=\"demo\",name=\"n1\"} 1",
            "patroni_postgres_state{scope=\"demo\",name=\"n1\"} 6",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }

    #[test]
    fn archive_gauges_only_on_the_archiver() {
        let mut s = NodeStatus::new("demo".into(), "n1".into(), serde_json::Map::new());
        let text = render(&s, Duration::ZERO);
        assert!(
            text.contains("warden_archiver{scope=\"demo\",name=\"n1\"} 0"),
            "{text}"
        );
        assert!(!text.contains("warden_archive_lag_bytes"), "{text}");

        s.archiver = true;
        s.archive = Some(warden_backup::archiver::stream::Status {
            last_uploaded: Some((
                "000000010000000000000003".into(),
                std::time::SystemTime::now(),
            )),
            archived_lsn: Some(0x400_0000),
            failures: 2,
            last_error: None,
            last_live_upload: None,
        });
        let text = render(&s, Duration::ZERO);
        assert!(
            text.contains("warden_archiver{scope=\"demo\",name=\"n1\"} 1"),
            "{text}"
        );
        // No probe: the lag is unknown.
        assert!(
            text.contains("warden_archive_lag_bytes{scope=\"demo\",name=\"n1\"} -1"),
            "{text}"
        );
        assert!(
            text.contains("warden_archive_failures{scope=\"demo\",name=\"n1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("warden_archive_lag_seconds{scope=\"demo\",name=\"n1\"} -1"),
            "{text}"
        );
        assert!(
            text.contains("warden_archive_last_upload_age_seconds{scope=\"demo\",name=\"n1\"} 0"),
            "{text}"
        );
    }
}
