//! Sentinel 7.0's records (`SENTINEL MASTER/REPLICAS/SENTINELS`) and `INFO` text, built
//! from a [`SentinelView`]. Field names and order are Sentinel's (checked against a real
//! `redis-server --sentinel` by `tests/sentinel_golden.rs`); every value is a bulk string.

use std::time::Instant;

use super::resp::Reply;
use super::view::{Instance, Replica, SentinelView};

/// The Redis version the port reports (`HELLO`, `INFO`): the Sentinel it imitates.
pub const REDIS_VERSION: &str = "7.0.15";

fn ms_since(then: Instant, now: Instant) -> String {
    now.saturating_duration_since(then).as_millis().to_string()
}

/// The fields every instance record starts with, up to `down-after-milliseconds`.
fn common_fields(
    name: String,
    inst: &Instance,
    flags: &str,
    view: &SentinelView,
    now: Instant,
) -> Vec<(String, String)> {
    let ago = ms_since(view.refreshed_at, now);
    vec![
        ("name".into(), name),
        ("ip".into(), inst.ip.clone()),
        ("port".into(), inst.port.to_string()),
        ("runid".into(), inst.run_id.clone()),
        ("flags".into(), flags.into()),
        ("link-pending-commands".into(), "0".into()),
        ("link-refcount".into(), "1".into()),
        ("last-ping-sent".into(), "0".into()),
        ("last-ok-ping-reply".into(), ago.clone()),
        ("last-ping-reply".into(), ago),
        (
            "down-after-milliseconds".into(),
            view.down_after_ms.to_string(),
        ),
    ]
}

/// `SENTINEL MASTER`: the 20 fields of a master that is up (callers only build it for a
/// view with a current primary).
pub fn master_record(view: &SentinelView, primary: &Instance, now: Instant) -> Reply {
    let mut f = common_fields(view.master_name.clone(), primary, "master", view, now);
    let since = view.primary_since.unwrap_or(view.refreshed_at);
    f.extend([
        ("info-refresh".into(), ms_since(view.refreshed_at, now)),
        ("role-reported".into(), "master".into()),
        ("role-reported-time".into(), ms_since(since, now)),
        ("config-epoch".into(), view.epoch.to_string()),
        ("num-slaves".into(), view.replicas.len().to_string()),
        (
            "num-other-sentinels".into(),
            view.sentinels.len().to_string(),
        ),
        ("quorum".into(), view.quorum.to_string()),
        (
            "failover-timeout".into(),
            view.failover_timeout_ms.to_string(),
        ),
        ("parallel-syncs".into(), "1".into()),
    ]);
    Reply::bulk_map(f)
}

/// One element of `SENTINEL REPLICAS`: a replica it cannot reach is shown as Sentinel
/// shows one (`s_down,slave,disconnected` plus `s-down-time`).
pub fn replica_record(
    view: &SentinelView,
    primary: &Instance,
    replica: &Replica,
    now: Instant,
) -> Reply {
    let inst = &replica.instance;
    let name = format!("{}:{}", inst.ip, inst.port);
    let flags = if replica.reachable {
        "slave"
    } else {
        "s_down,slave,disconnected"
    };
    let mut f = common_fields(name, inst, flags, view, now);
    let ago = ms_since(view.refreshed_at, now);
    if !replica.reachable {
        f.push(("s-down-time".into(), ago.clone()));
    }
    let link_down_ms = if replica.link_up {
        "0".to_string()
    } else {
        ago.clone()
    };
    f.extend([
        ("info-refresh".into(), ago.clone()),
        ("role-reported".into(), "slave".into()),
        ("role-reported-time".into(), ago),
        ("master-link-down-time".into(), link_down_ms),
        (
            "master-link-status".into(),
            if replica.link_up { "ok" } else { "err" }.into(),
        ),
        ("master-host".into(), primary.ip.clone()),
        ("master-port".into(), primary.port.to_string()),
        ("slave-priority".into(), replica.priority.to_string()),
        ("slave-repl-offset".into(), replica.offset.to_string()),
        ("replica-announced".into(), "1".into()),
    ]);
    Reply::bulk_map(f)
}

/// One element of `SENTINEL SENTINELS`: another agent's port.
pub fn sentinel_record(view: &SentinelView, peer: &Instance, now: Instant) -> Reply {
    let mut f = common_fields(peer.run_id.clone(), peer, "sentinel", view, now);
    f.extend([
        (
            "last-hello-message".into(),
            ms_since(view.refreshed_at, now),
        ),
        ("voted-leader".into(), "?".into()),
        ("voted-leader-epoch".into(), "0".into()),
    ]);
    Reply::bulk_map(f)
}

/// Process facts `INFO` reports that do not come from the view.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// The listening port.
    pub tcp_port: u16,
    /// When the server started (uptime).
    pub started: Instant,
    /// Open client connections.
    pub connected_clients: usize,
    /// The connection limit.
    pub maxclients: usize,
    /// Connections accepted so far.
    pub total_connections: u64,
    /// Commands served so far.
    pub total_commands: u64,
    /// Connections refused at the limit.
    pub rejected_connections: u64,
    /// Pub/sub channels and patterns subscribed across connections.
    pub pubsub_channels: usize,
    /// See `pubsub_channels`.
    pub pubsub_patterns: usize,
}

const SECTIONS: [&str; 5] = ["server", "clients", "stats", "cpu", "sentinel"];

/// `INFO [section ...]`: Sentinel's sections (`default`, `all`, `everything` or none: all
/// of them); unknown names contribute nothing, as in Redis.
pub fn info(view: &SentinelView, facts: &ServerFacts, wanted: &[Vec<u8>]) -> String {
    let all = wanted.is_empty()
        || wanted.iter().any(|w| {
            let w = String::from_utf8_lossy(w).to_ascii_lowercase();
            w == "default" || w == "all" || w == "everything"
        });
    let mut out = String::new();
    for section in SECTIONS {
        let asked = all
            || wanted
                .iter()
                .any(|w| w.eq_ignore_ascii_case(section.as_bytes()));
        if !asked {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let lines = match section {
            "server" => server_section(facts, view),
            "clients" => clients_section(facts),
            "stats" => stats_section(facts),
            "cpu" => cpu_section(),
            _ => sentinel_section(view),
        };
        let title = format!("# {}{}", section[..1].to_ascii_uppercase(), &section[1..]);
        out.push_str(if section == "cpu" { "# CPU" } else { &title });
        out.push_str("\r\n");
        for (k, v) in lines {
            out.push_str(&format!("{k}:{v}\r\n"));
        }
    }
    out
}

type Lines = Vec<(&'static str, String)>;

fn server_section(f: &ServerFacts, view: &SentinelView) -> Lines {
    let uptime = f.started.elapsed().as_secs();
    let now_usec = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    vec![
        ("redis_version", REDIS_VERSION.into()),
        ("redis_git_sha1", "00000000".into()),
        ("redis_git_dirty", "0".into()),
        ("redis_build_id", "0".into()),
        ("redis_mode", "sentinel".into()),
        ("os", std::env::consts::OS.into()),
        ("arch_bits", (usize::BITS).to_string()),
        ("monotonic_clock", "POSIX clock_gettime".into()),
        ("multiplexing_api", "epoll".into()),
        ("atomicvar_api", "c11-builtin".into()),
        ("gcc_version", "0.0.0".into()),
        ("process_id", std::process::id().to_string()),
        ("process_supervised", "no".into()),
        ("run_id", view.my_id.clone()),
        ("tcp_port", f.tcp_port.to_string()),
        ("server_time_usec", now_usec.to_string()),
        ("uptime_in_seconds", uptime.to_string()),
        ("uptime_in_days", (uptime / 86_400).to_string()),
        ("hz", "10".into()),
        ("configured_hz", "10".into()),
        ("lru_clock", "0".into()),
        (
            "executable",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("config_file", String::new()),
        ("io_threads_active", "0".into()),
    ]
}

fn clients_section(f: &ServerFacts) -> Lines {
    vec![
        ("connected_clients", f.connected_clients.to_string()),
        ("cluster_connections", "0".into()),
        ("maxclients", f.maxclients.to_string()),
        ("client_recent_max_input_buffer", "0".into()),
        ("client_recent_max_output_buffer", "0".into()),
        ("blocked_clients", "0".into()),
        ("tracking_clients", "0".into()),
        ("clients_in_timeout_table", "0".into()),
    ]
}

fn stats_section(f: &ServerFacts) -> Lines {
    let mut lines: Lines = vec![
        (
            "total_connections_received",
            f.total_connections.to_string(),
        ),
        ("total_commands_processed", f.total_commands.to_string()),
    ];
    // Counters a Sentinel port has no use for, kept so the section has Sentinel's keys.
    const ZERO_BEFORE: [&str; 9] = [
        "instantaneous_ops_per_sec",
        "total_net_input_bytes",
        "total_net_output_bytes",
        "total_net_repl_input_bytes",
        "total_net_repl_output_bytes",
        "instantaneous_input_kbps",
        "instantaneous_output_kbps",
        "instantaneous_input_repl_kbps",
        "instantaneous_output_repl_kbps",
    ];
    const ZERO_AFTER: [&str; 16] = [
        "sync_full",
        "sync_partial_ok",
        "sync_partial_err",
        "expired_keys",
        "expired_stale_perc",
        "expired_time_cap_reached_count",
        "expire_cycle_cpu_milliseconds",
        "evicted_keys",
        "evicted_clients",
        "total_eviction_exceeded_time",
        "current_eviction_exceeded_time",
        "keyspace_hits",
        "keyspace_misses",
        "pubsub_channels",
        "pubsub_patterns",
        "pubsubshard_channels",
    ];
    const ZERO_TAIL: [&str; 22] = [
        "latest_fork_usec",
        "total_forks",
        "migrate_cached_sockets",
        "slave_expires_tracked_keys",
        "active_defrag_hits",
        "active_defrag_misses",
        "active_defrag_key_hits",
        "active_defrag_key_misses",
        "total_active_defrag_time",
        "current_active_defrag_time",
        "tracking_total_keys",
        "tracking_total_items",
        "tracking_total_prefixes",
        "unexpected_error_replies",
        "total_error_replies",
        "dump_payload_sanitizations",
        "total_reads_processed",
        "total_writes_processed",
        "io_threaded_reads_processed",
        "io_threaded_writes_processed",
        "reply_buffer_shrinks",
        "reply_buffer_expands",
    ];
    lines.extend(ZERO_BEFORE.iter().map(|k| (*k, zero_for(k))));
    lines.push(("rejected_connections", f.rejected_connections.to_string()));
    for k in ZERO_AFTER {
        let v = match k {
            "pubsub_channels" => f.pubsub_channels.to_string(),
            "pubsub_patterns" => f.pubsub_patterns.to_string(),
            _ => zero_for(k),
        };
        lines.push((k, v));
    }
    lines.extend(ZERO_TAIL.iter().map(|k| (*k, zero_for(k))));
    lines
}

/// Redis prints rates and percentages with two decimals.
fn zero_for(key: &str) -> String {
    if key.ends_with("_kbps") || key.ends_with("_perc") {
        "0.00".into()
    } else {
        "0".into()
    }
}

fn cpu_section() -> Lines {
    [
        "used_cpu_sys",
        "used_cpu_user",
        "used_cpu_sys_children",
        "used_cpu_user_children",
        "used_cpu_sys_main_thread",
        "used_cpu_user_main_thread",
    ]
    .into_iter()
    .map(|k| (k, "0.000000".to_string()))
    .collect()
}

fn sentinel_section(view: &SentinelView) -> Lines {
    // A stale or leaderless view names no address: `status=sdown`, `address=?`.
    let (status, address) = match view.current_primary() {
        Some(p) => ("ok", format!("{}:{}", p.ip, p.port)),
        None => ("sdown", "?".to_string()),
    };
    vec![
        ("sentinel_masters", "1".into()),
        ("sentinel_tilt", "0".into()),
        ("sentinel_tilt_since_seconds", "-1".into()),
        ("sentinel_running_scripts", "0".into()),
        ("sentinel_scripts_queue_length", "0".into()),
        ("sentinel_simulate_failure_flags", "0".into()),
        (
            "master0",
            format!(
                "name={},status={status},address={address},slaves={},sentinels={}",
                view.master_name,
                view.replicas.len(),
                view.sentinels.len() + 1
            ),
        ),
    ]
}
