//! The daemon's Redis member: the engine's settings from the `redis` section, and the
//! Sentinel-compatible port, whose answers come from the DCS view the loop caches in
//! [`Shared`] (never from a local guess: a view older than the ttl is not fresh, and the
//! port then names no primary).

use crate::state::{NodeStatus, Shared};
use anyhow::Context as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warden_config::redis::RedisConfig;
use warden_config::Config;
use warden_consensus::types::{MemberState, Role};
use warden_consensus::Cluster;
use warden_redis::adapter::{Redis, RedisSettings};
use warden_redis::sentinel::{self, run_id_for, EventHub, Instance, Replica, SentinelView};

/// The member key field naming this agent's Sentinel port (`host:port`), so every
/// agent can list the others in `SENTINEL SENTINELS`.
pub const SENTINEL_FIELD: &str = "sentinel";

/// How often the port's view is rebuilt when the status did not change (a view goes
/// stale by age alone).
const VIEW_REFRESH: Duration = Duration::from_millis(500);

impl crate::ha::LocalEngine for Redis {}

/// The adapter's settings.
pub fn settings(cfg: &Config, r: &RedisConfig) -> RedisSettings {
    let _ = cfg;
    RedisSettings {
        listen_host: r.listen_host.clone(),
        port: r.port,
        connect_host: r.connect_address.host.clone(),
        connect_port: r.connect_address.port,
        data_dir: r.data_dir.clone(),
        bin_dir: r.bin_dir.clone(),
        username: r.username.clone(),
        password: r.password.clone(),
        parameters: r.parameters.clone(),
        tls: r
            .tls
            .as_ref()
            .map(warden_config::redis::RedisTlsConfig::to_engine),
    }
}

/// Where other agents and clients reach this agent's Sentinel port.
pub fn sentinel_address(cfg: &Config) -> Option<String> {
    let r = cfg.redis()?;
    let s = r.sentinel.as_ref()?;
    let host = if s.listen.ip().is_unspecified() {
        r.connect_address.host.clone()
    } else {
        s.listen.ip().to_string()
    };
    Some(format!("{host}:{}", s.listen.port()))
}

fn host_port(text: &str) -> Option<(String, u16)> {
    let (h, p) = text.rsplit_once(':')?;
    Some((
        h.trim_start_matches('[').trim_end_matches(']').to_string(),
        p.parse().ok()?,
    ))
}

/// The view the port answers from, built from the loop's last DCS read.
pub fn view_of(master_name: &str, me: &str, s: &NodeStatus, now_unix: i64) -> SentinelView {
    let mut view = SentinelView::unknown(master_name, run_id_for(me));
    let Some(c) = s.cluster.as_deref() else {
        return view;
    };
    let ttl = c.dynamic_config().ttl;
    // Fresh while the last successful read is younger than the ttl: within it no other
    // member can have been promoted, so the leader we read is still the only possible
    // primary.
    let age = s.dcs_last_seen.map(|t| now_unix.saturating_sub(t));
    view.fresh = age.is_some_and(|a| a <= i64::from(ttl));
    view.refreshed_at = Instant::now()
        .checked_sub(Duration::from_secs(
            u64::try_from(age.unwrap_or(0)).unwrap_or(0),
        ))
        .unwrap_or_else(Instant::now);
    view.down_after_ms = u64::from(ttl) * 1000;
    view.failover_timeout_ms = 2 * u64::from(ttl) * 1000;
    view.quorum = u32::try_from(c.members.len() / 2 + 1).unwrap_or(1);
    view.primary = primary(c);
    view.epoch = c
        .leader
        .as_ref()
        .map_or(0, |l| u64::try_from(l.create_revision).unwrap_or(0));
    view.replicas = replicas(c);
    view.sentinels = c
        .members
        .iter()
        .filter(|(name, _)| name.as_str() != me)
        .filter_map(|(name, m)| {
            let (ip, port) = host_port(m.value.extra.get(SENTINEL_FIELD)?.as_str()?)?;
            Some(Instance {
                ip,
                port,
                run_id: run_id_for(name),
            })
        })
        .collect();
    view
}

fn primary(c: &Cluster) -> Option<Instance> {
    let name = c.leader_name()?;
    let (ip, port) = c.member(name)?.conn_host_port()?;
    Some(Instance {
        ip,
        port,
        run_id: run_id_for(name),
    })
}

fn replicas(c: &Cluster) -> Vec<Replica> {
    let leader = c.leader_name();
    c.members
        .iter()
        .filter(|(name, _)| Some(name.as_str()) != leader)
        .filter_map(|(name, m)| {
            let m = &m.value;
            let (ip, port) = m.conn_host_port()?;
            let priority = if m.tag_bool("nofailover") {
                0
            } else {
                m.tags
                    .as_ref()
                    .and_then(|t| t.get("failover_priority"))
                    .and_then(serde_json::Value::as_u64)
                    .map_or(100, |p| u32::try_from(p).unwrap_or(u32::MAX))
            };
            Some(Replica {
                instance: Instance {
                    ip,
                    port,
                    run_id: run_id_for(name),
                },
                offset: m.xlog_location.unwrap_or(0),
                link_up: m.replication_state.as_deref() == Some("streaming"),
                reachable: m.state == MemberState::Running && m.role == Role::Replica,
                priority,
            })
        })
        .collect()
}

/// Binds `redis.sentinel.listen` (an error naming the key if it cannot) and serves the
/// port until `cancel`, its view rebuilt from the cached status.
pub async fn start_sentinel(
    cfg: &Config,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(s) = cfg.redis().and_then(|r| r.sentinel.clone()) else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("redis.sentinel.listen: cannot listen on {}", s.listen))?;
    let config = sentinel::SentinelConfig {
        password: s.password.clone(),
        max_connections: 1024,
        idle_timeout: Duration::from_secs(300),
        read_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        event_queue: 1024,
        publish_view_events: true,
        tls: s
            .tls
            .as_ref()
            .map(warden_config::redis::SentinelTlsConfig::to_engine),
    };
    if let Some(tls) = &config.tls {
        // A certificate that cannot be used stops the start, naming the setting, rather
        // than serving the port in plain text.
        tls.acceptor()
            .map_err(|e| anyhow::anyhow!("redis.{}: {}", e.setting, e.why))?;
    }
    let me = cfg.name.clone();
    let master = s.master_name.clone();
    let (tx, rx) = watch::channel(SentinelView::unknown(&master, run_id_for(&me)));
    let hub = EventHub::new(1024);
    let stop = cancel.clone();
    // Rebuilt from the cached status, so the port never waits on the loop.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(VIEW_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = shared.changed() => {}
                _ = tick.tick() => {}
            }
            let now = chrono::Utc::now().timestamp();
            let view = view_of(&master, &me, &shared.snapshot(), now);
            tx.send_if_modified(|old| {
                let changed = !same_answers(old, &view);
                if changed {
                    *old = view;
                }
                changed
            });
        }
    });
    let task = tokio::spawn(async move {
        if let Err(e) = sentinel::serve(listener, config, rx, hub, cancel).await {
            tracing::error!(error = %e, "the Sentinel port stopped");
        }
    });
    Ok(Some(task))
}

/// Two views that answer every command alike (the refresh instant aside).
fn same_answers(a: &SentinelView, b: &SentinelView) -> bool {
    SentinelView {
        refreshed_at: b.refreshed_at,
        ..a.clone()
    } == *b
}
