//! The member table of `list`, `topology` and the commands that show the cluster
//! before acting: one row per `members/<name>` key, roles and lag as patronictl
//! derives them.

use super::args::Format;
use super::output::{yaml_block, yaml_flow, Rows};
use serde_json::{json, Value};
use warden_consensus::types::{Member, Role};
use warden_consensus::Cluster;

const MB: f64 = 1024.0 * 1024.0;

/// Where a member's PostgreSQL is, as patronictl reads it (`Member.conn_kwargs()`): the
/// `conn_kwargs` object a member may publish, else its `conn_url`, port 5432 when the
/// URL has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub dbname: Option<String>,
}

pub fn conn_params(m: &Member) -> Option<ConnParams> {
    if let Some(Value::Object(kw)) = m
        .extra
        .get("conn_kwargs")
        .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        let host = kw.get("host").and_then(Value::as_str)?.to_string();
        let port = match kw.get("port") {
            Some(Value::Number(n)) => u16::try_from(n.as_u64()?).ok()?,
            Some(Value::String(p)) => p.parse().ok()?,
            _ => 5432,
        };
        let dbname = kw.get("dbname").and_then(Value::as_str).map(str::to_string);
        return Some(ConnParams { host, port, dbname });
    }
    parse_conn_url(&m.conn_url)
}

/// `postgres://[user[:password]@]host[:port][/dbname][?...]`: the host lowercased (as
/// Python's urlparse gives it), brackets of an IPv6 address removed.
pub fn parse_conn_url(url: &str) -> Option<ConnParams> {
    let rest = url.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let hostport = authority.rsplit('@').next()?;
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':').unwrap_or(""))
        }
        None => hostport.rsplit_once(':').unwrap_or((hostport, "")),
    };
    if host.is_empty() {
        return None;
    }
    let port = if port.is_empty() {
        5432
    } else {
        port.parse().ok()?
    };
    let dbname = tail
        .strip_prefix('/')
        .map(|p| p.split(['?', '#']).next().unwrap_or("").to_string());
    Some(ConnParams {
        host: host.to_ascii_lowercase(),
        port,
        dbname,
    })
}

/// A replica's receive or replay position, as Patroni's `cluster_as_json` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wal {
    /// The leader's row shows no positions.
    None,
    /// The member did not publish this position.
    Unknown,
    /// The position and how far it is behind the leader's last position (`/status`).
    At { lsn: u64, lag: u64 },
}

impl Wal {
    /// `lsn` (a published position; zero counts as none) against `cluster_lsn` (the
    /// `optime` of `/status`, 0 without one): a member ahead has no lag.
    pub fn of(lsn: Option<u64>, cluster_lsn: u64) -> Self {
        match lsn {
            None | Some(0) => Wal::Unknown,
            Some(lsn) => Wal::At {
                lsn,
                lag: cluster_lsn.saturating_sub(lsn),
            },
        }
    }

    /// The `Receive LSN`/`Replay LSN` cell: `0/4000060`, `unknown`, or empty.
    pub fn lsn_cell(self) -> Value {
        match self {
            Wal::None => json!(""),
            Wal::Unknown => json!("unknown"),
            Wal::At { lsn, .. } => json!(format_lsn(lsn)),
        }
    }

    /// The lag cell: whole MB (rounded half to even, as Python's `round`), empty when
    /// unknown.
    pub fn lag_cell(self) -> Value {
        match self {
            Wal::None | Wal::Unknown => json!(""),
            Wal::At { lag, .. } => json!((lag as f64 / MB).round_ties_even() as u64),
        }
    }
}

/// `0/4000060`: PostgreSQL's text form of a WAL position.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// One member as the table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    /// `Leader`, `Standby Leader`, `Sync Standby`, `Quorum Standby` or `Replica`.
    pub role: String,
    pub state: String,
    pub timeline: Option<u32>,
    pub receive: Wal,
    pub replay: Wal,
    pub pending_restart: bool,
    pub pending_restart_reason: Option<Value>,
    pub scheduled_restart: Option<String>,
    pub tags: Option<serde_json::Map<String, Value>>,
    pub api_url: String,
}

/// The leader's last position as Patroni measures lag against it: `/status`'s
/// `optime`, 0 without one.
pub fn cluster_lsn(cluster: &Cluster) -> u64 {
    cluster.status.as_ref().and_then(|s| s.optime).unwrap_or(0)
}

/// A replica's receive and replay positions. A member that publishes neither but has
/// an `xlog_location` (older versions) shows it as its receive position while it
/// streams, else as its replay position.
pub fn positions(m: &Member, state: &str, cluster_lsn: u64) -> (Wal, Wal) {
    let receive = Wal::of(m.receive_lsn, cluster_lsn);
    let replay = Wal::of(m.replay_lsn, cluster_lsn);
    let any = Wal::of(m.xlog_location, cluster_lsn);
    match (receive, replay, any) {
        (Wal::Unknown, Wal::Unknown, Wal::At { .. }) if state == "streaming" => (any, replay),
        (Wal::Unknown, Wal::Unknown, Wal::At { .. }) => (receive, any),
        _ => (receive, replay),
    }
}

pub fn rows(cluster: &Cluster) -> Vec<MemberRow> {
    let leader = cluster.leader_name();
    let config = cluster.dynamic_config();
    let standby_cluster = config.is_standby_cluster();
    let sync: Vec<&str> = if config.synchronous_mode.is_enabled() {
        cluster
            .sync
            .as_ref()
            .map(|s| s.value.standbys())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    // As patronictl: the members /sync lists are quorum standbys whenever quorum mode is
    // configured (whatever quorum the key holds at this instant).
    let sync_role =
        if config.synchronous_mode == warden_consensus::dynamic_config::SynchronousMode::Quorum {
            "Quorum Standby"
        } else {
            "Sync Standby"
        };
    let top = cluster_lsn(cluster);
    cluster
        .members
        .iter()
        .map(|(name, v)| {
            let m = &v.value;
            let is_leader = Some(name.as_str()) == leader;
            let role = if is_leader {
                if standby_cluster || m.role == Role::StandbyLeader {
                    "Standby Leader"
                } else {
                    "Leader"
                }
            } else if sync.contains(&name.as_str()) {
                sync_role
            } else {
                "Replica"
            };
            // Every row but the primary's shows how the member replicates
            // (`streaming`) when it says so.
            let state = match &m.replication_state {
                Some(rs) if !rs.is_empty() && role != "Leader" => rs.clone(),
                _ => m.state.to_string(),
            };
            let (host, port) =
                conn_params(m).map_or((String::new(), None), |c| (c.host, Some(c.port)));
            let scheduled_restart = m.scheduled_restart.as_ref().and_then(|s| {
                let at = s.get("schedule")?.as_str()?.to_string();
                Some(match s.get("postgres_version").and_then(Value::as_str) {
                    Some(v) => format!("{at} if version < {v}"),
                    None => at,
                })
            });
            let (receive, replay) = if is_leader {
                (Wal::None, Wal::None)
            } else {
                positions(m, &state, top)
            };
            MemberRow {
                name: name.clone(),
                host,
                port,
                role: role.to_string(),
                state,
                timeline: m.timeline,
                receive,
                replay,
                pending_restart: m.pending_restart.unwrap_or(false),
                pending_restart_reason: m
                    .pending_restart_reason
                    .clone()
                    .filter(|r| r.as_object().is_some_and(|o| !o.is_empty())),
                scheduled_restart,
                tags: m.tags.clone().filter(|t| !t.is_empty()),
                api_url: m.api_url.clone(),
            }
        })
        .collect()
}

/// ` Cluster: NAME (SYSTEM_ID) `, with `uninitialized` / `initializing` before there
/// is a system identifier.
pub fn title(name: &str, cluster: &Cluster) -> String {
    let init = match cluster.initialize.as_deref() {
        None => "uninitialized",
        Some("") => "initializing",
        Some(id) => id,
    };
    format!(" Cluster: {name} ({init}) ")
}

/// Lines printed under the table: maintenance mode and a scheduled switchover.
pub fn footer(cluster: &Cluster) -> Vec<String> {
    let mut lines = Vec::new();
    if cluster.is_paused() {
        lines.push("Maintenance mode: on".to_string());
    }
    if let Some(f) = cluster.failover.as_ref().map(|f| &f.value) {
        if let Some(at) = &f.scheduled_at {
            let mut info = format!("Switchover scheduled at: {at}");
            for (label, who) in [("from", &f.leader), ("to", &f.member)] {
                if let Some(who) = who {
                    info.push_str(&format!("\n{label:>24}: {who}"));
                }
            }
            lines.push(info);
        }
    }
    lines
}

/// Orders rows as a replication tree: the leader, then the replicas streaming from it,
/// each followed by the replicas that cascade from it (`replicatefrom` tag); names are
/// indented by level (`+ node2`, `  + node3`).
pub fn topology_sort(rows: &[MemberRow]) -> Vec<MemberRow> {
    let is_leader = |r: &MemberRow| r.role.ends_with("Leader");
    let leader = rows.iter().find(|r| is_leader(r)).map(|r| r.name.clone());
    let replicas: Vec<String> = rows
        .iter()
        .filter(|r| !is_leader(r))
        .map(|r| r.name.clone())
        .collect();
    let parent_of = |r: &MemberRow| -> Option<String> {
        let p = r
            .tags
            .as_ref()
            .and_then(|t| t.get("replicatefrom"))
            .and_then(Value::as_str);
        match p {
            Some(p) if p != r.name && replicas.iter().any(|n| n == p) => Some(p.to_string()),
            _ => leader.clone(),
        }
    };
    let mut out = Vec::new();
    let mut placed = std::collections::BTreeSet::new();
    fn walk(
        parent: Option<&str>,
        level: usize,
        rows: &[MemberRow],
        parents: &[Option<String>],
        placed: &mut std::collections::BTreeSet<String>,
        out: &mut Vec<MemberRow>,
    ) {
        for (r, p) in rows.iter().zip(parents) {
            if p.as_deref() == parent
                && !r.role.ends_with("Leader")
                && placed.insert(r.name.clone())
            {
                let mut row = r.clone();
                row.name = format!("{}+ {}", " ".repeat((level - 1) * 2), r.name);
                out.push(row);
                walk(Some(&r.name), level + 1, rows, parents, placed, out);
            }
        }
    }
    let parents: Vec<Option<String>> = rows.iter().map(parent_of).collect();
    if let Some(l) = rows.iter().find(|r| is_leader(r)) {
        out.push(l.clone());
        placed.insert(l.name.clone());
    }
    walk(leader.as_deref(), 1, rows, &parents, &mut placed, &mut out);
    // Members caught in a replicatefrom cycle are still shown, at the first level.
    for r in rows {
        if placed.insert(r.name.clone()) {
            let mut row = r.clone();
            row.name = format!("+ {}", r.name);
            out.push(row);
        }
    }
    out
}

/// How `list`-style output is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Format(Format),
    /// `topology`: the pretty table in replication-tree order.
    Topology,
}

/// The full output of `list` for one cluster: the table (or the JSON/YAML/TSV rows)
/// and, for the framed table, the footer lines. Columns as patronictl 4.1 prints them.
pub fn render(name: &str, cluster: &Cluster, extended: bool, layout: Layout) -> String {
    let mut members = rows(cluster);
    if layout == Layout::Topology {
        members = topology_sort(&members);
    }
    let format = match layout {
        Layout::Format(f) => f,
        Layout::Topology => Format::Pretty,
    };
    // The framed tables (pretty, topology) hide long restart reasons.
    let framed = format == Format::Pretty;
    let top = cluster_lsn(cluster);
    let mut columns = position_columns(cluster);
    // Only members with a host count, as in patronictl.
    let listed: Vec<&MemberRow> = members.iter().filter(|m| !m.host.is_empty()).collect();
    let any = |f: &dyn Fn(&MemberRow) -> bool| extended || listed.iter().any(|m| f(m));
    let show_pending = any(&|m| m.pending_restart);
    let show_reason = any(&|m| m.pending_restart_reason.is_some());
    let show_scheduled = any(&|m| m.scheduled_restart.is_some());
    let show_tags = any(&|m| m.tags.is_some());
    for (show, col) in [
        (show_pending, "Pending restart"),
        (show_reason, "Pending restart reason"),
        (show_scheduled, "Scheduled restart"),
        (show_tags, "Tags"),
    ] {
        if show {
            columns.push(col);
        }
    }
    // host:port when someone runs off the default port or two share a host, so every
    // row is unambiguous.
    let mut hosts: Vec<&str> = listed.iter().map(|m| m.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let with_port =
        listed.iter().any(|m| m.port.is_some_and(|p| p != 5432)) || hosts.len() < listed.len();
    let data: Vec<Vec<Value>> = members
        .iter()
        .map(|m| {
            let host = match (with_port, m.port) {
                (true, Some(p)) if !m.host.is_empty() => format!("{}:{p}", m.host),
                _ => m.host.clone(),
            };
            columns
                .iter()
                .map(|c| match *c {
                    "Cluster" => json!(name),
                    "Member" => json!(m.name),
                    "Host" => json!(host),
                    "Role" => json!(m.role),
                    "State" => json!(m.state),
                    "TL" => m.timeline.map_or(json!(""), |t| json!(t)),
                    "Receive LSN" => m.receive.lsn_cell(),
                    "Receive Lag" => m.receive.lag_cell(),
                    "Replay LSN" => m.replay.lsn_cell(),
                    "Replay Lag" => m.replay.lag_cell(),
                    "Offset" | "Lag (bytes)" => offset_cell(c, m, top),
                    "Pending restart" => json!(if m.pending_restart { "*" } else { "" }),
                    "Pending restart reason" => {
                        json!(restart_reason(m.pending_restart_reason.as_ref(), framed))
                    }
                    "Scheduled restart" => json!(m.scheduled_restart.clone().unwrap_or_default()),
                    "Tags" => match (&m.tags, layout, format) {
                        (None, ..) => json!(""),
                        (Some(t), _, Format::Json | Format::Yaml | Format::Yml) => {
                            Value::Object(t.clone())
                        }
                        // Block YAML in the pretty table (one tag per line), flow style
                        // in tsv and topology.
                        (Some(t), Layout::Format(Format::Pretty), _) => {
                            json!(yaml_block(&Value::Object(t.clone())).trim_end())
                        }
                        (Some(t), ..) => json!(yaml_flow(&Value::Object(t.clone()))),
                    },
                    _ => json!(""),
                })
                .collect()
        })
        .collect();
    let mut table = Rows {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: data,
        right: vec![
            "TL",
            "Receive LSN",
            "Replay LSN",
            "Lag",
            "Offset",
            "Lag (bytes)",
        ],
        skip_empty: true,
    };
    if framed {
        // The cluster name is in the title, not in every row; both lags are `Lag`.
        table.columns.remove(0);
        for r in &mut table.rows {
            r.remove(0);
        }
        for c in &mut table.columns {
            if c == "Receive Lag" || c == "Replay Lag" {
                *c = "Lag".to_string();
            }
        }
    }
    let mut out = table.render(format, &title(name, cluster));
    if framed {
        let f = footer(cluster);
        if !f.is_empty() {
            out.push_str("\n ");
            out.push_str(&f.join("\n "));
        }
    }
    out
}

/// The leading columns: a Redis cluster has replication offsets, not timelines and
/// LSNs (one offset per member and its lag behind the leader, in bytes).
fn position_columns(cluster: &Cluster) -> Vec<&'static str> {
    let redis = cluster
        .members
        .values()
        .any(|m| m.value.conn_url.starts_with("redis"));
    if redis {
        vec![
            "Cluster",
            "Member",
            "Host",
            "Role",
            "State",
            "Offset",
            "Lag (bytes)",
        ]
    } else {
        vec![
            "Cluster",
            "Member",
            "Host",
            "Role",
            "State",
            "TL",
            "Receive LSN",
            "Receive Lag",
            "Replay LSN",
            "Replay Lag",
        ]
    }
}

/// A Redis member's `Offset` or `Lag (bytes)` cell: its published offset (the leader:
/// the cluster's last position) and how far it is behind.
fn offset_cell(column: &str, m: &MemberRow, top: u64) -> Value {
    let at = match (m.receive, m.replay) {
        (Wal::At { lsn, lag }, _) | (_, Wal::At { lsn, lag }) => Some((lsn, lag)),
        (Wal::None, _) if top > 0 => Some((top, 0)),
        _ => None,
    };
    match (column, at) {
        ("Offset", Some((lsn, _))) => json!(lsn),
        ("Lag (bytes)", Some((_, lag))) => json!(lag),
        _ => json!(""),
    }
}

/// `param: old->new` lines; long ones hidden in the framed table so it stays readable.
fn restart_reason(reason: Option<&Value>, hide_long: bool) -> String {
    let Some(Value::Object(params)) = reason else {
        return String::new();
    };
    params
        .iter()
        .map(|(k, v)| {
            let text = |f: &str| match v.get(f) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let full = format!("{k}: {}->{}", text("old_value"), text("new_value"));
            if hide_long && full.chars().count() > 50 {
                format!("{k}: [hidden - too long]")
            } else {
                full
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_consensus::{KeyValue, Keys, Snapshot};

    pub(crate) fn snapshot(kvs: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            revision: 100,
            kvs: kvs
                .iter()
                .enumerate()
                .map(|(i, (k, v))| KeyValue {
                    key: format!("/service/demo/{k}"),
                    value: v.as_bytes().to_vec(),
                    create_revision: i as i64 + 1,
                    mod_revision: i as i64 + 1,
                    lease: 0,
                })
                .collect(),
        }
    }

    fn member(role: &str, port: u16, extra: &str) -> String {
        format!(
            r#"{{"conn_url":"postgres://127.0.0.1:{port}/postgres","api_url":"http://127.0.0.1:{}/patroni","state":"running","role":"{role}","version":"4.0.1","timeline":2{extra}}}"#,
            port + 1000
        )
    }

    /// The cluster the expected outputs below were printed from by patronictl 4.1.5
    /// (the same keys put in etcd).
    fn demo() -> Cluster {
        let keys = Keys::new("/service/", "demo");
        let snap = snapshot(&[
            ("initialize", "7312345678901234567"),
            ("status", r#"{"optime":52428800}"#),
            ("leader", "node1"),
            (
                "members/node1",
                &member("primary", 5432, r#","xlog_location":52428800"#),
            ),
            (
                "members/node2",
                &member(
                    "replica",
                    5433,
                    r#","xlog_location":50331648,"receive_lsn":50331648,"replay_lsn":48234496,"replication_state":"streaming","tags":{"nofailover":true,"clonefrom":true}"#,
                ),
            ),
            ("members/node3", &member("replica", 5434, "")),
        ]);
        Cluster::from_snapshot(&keys, &snap)
    }

    #[test]
    fn positions_and_lag_as_patroni_computes_them() {
        let c = demo();
        assert_eq!(cluster_lsn(&c), 52_428_800);
        let r = rows(&c);
        assert_eq!((r[0].receive, r[0].replay), (Wal::None, Wal::None));
        assert_eq!(
            r[1].receive,
            Wal::At {
                lsn: 50_331_648,
                lag: 2 * 1024 * 1024
            }
        );
        assert_eq!(r[1].receive.lsn_cell(), json!("0/3000000"));
        assert_eq!(r[1].replay.lag_cell(), json!(4));
        assert_eq!((r[2].receive, r[2].replay), (Wal::Unknown, Wal::Unknown));
        assert_eq!(Wal::Unknown.lsn_cell(), json!("unknown"));
        assert_eq!(Wal::Unknown.lag_cell(), json!(""));
        // Half a MB rounds to even, like Python's round().
        let lag = |b| Wal::At { lsn: 1, lag: b }.lag_cell();
        assert_eq!(lag(512 * 1024), json!(0));
        assert_eq!(lag(1536 * 1024), json!(2));
        // A member ahead of /status has no negative lag; without /status the last
        // position is 0; a position of 0 is none.
        assert_eq!(Wal::of(Some(9), 5), Wal::At { lsn: 9, lag: 0 });
        assert_eq!(Wal::of(Some(0), 5), Wal::Unknown);
        assert_eq!(format_lsn(0x1_0000_00A0), "1/A0");
        // Only xlog_location (older agents): the receive position while streaming,
        // else the replay position.
        let m: Member =
            serde_json::from_str(&member("replica", 1, r#","xlog_location":9"#)).unwrap();
        assert_eq!(positions(&m, "streaming", 10).0, Wal::At { lsn: 9, lag: 1 });
        assert_eq!(positions(&m, "running", 10).1, Wal::At { lsn: 9, lag: 1 });
    }

    #[test]
    fn conn_urls_as_patroni_reads_them() {
        let p = |u: &str| parse_conn_url(u).map(|c| (c.host, c.port, c.dbname));
        assert_eq!(
            p("postgres://127.0.0.1:5433/postgres"),
            Some(("127.0.0.1".into(), 5433, Some("postgres".into())))
        );
        assert_eq!(
            p("postgres://u:pw@DB1.example/app?sslmode=require"),
            Some(("db1.example".into(), 5432, Some("app".into())))
        );
        assert_eq!(
            p("postgresql://[::1]:6000"),
            Some(("::1".into(), 6000, None))
        );
        assert_eq!(p("postgres:///x"), None);
        assert_eq!(p("not a url"), None);
        let m: Member = serde_json::from_str(
            r#"{"conn_url":"","conn_kwargs":{"host":"h1","port":"5440","dbname":"d"},"api_url":"","state":"running","role":"replica","version":""}"#,
        )
        .unwrap();
        assert_eq!(
            conn_params(&m),
            Some(ConnParams {
                host: "h1".into(),
                port: 5440,
                dbname: Some("d".into())
            })
        );
    }

    #[test]
    fn pretty_and_topology_tables_like_patronictl() {
        let out = render("demo", &demo(), false, Layout::Format(Format::Pretty));
        let expected = "\
+ Cluster: demo (7312345678901234567) ----------+----+-------------+-----+------------+-----+------------------+
| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags             |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+------------------+
| node1  | 127.0.0.1:5432 | Leader  | running   |  2 |             |     |            |     |                  |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+------------------+
| node2  | 127.0.0.1:5433 | Replica | streaming |  2 |   0/3000000 |   2 |  0/2E00000 |   4 | clonefrom: true  |
|        |                |         |           |    |             |     |            |     | nofailover: true |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+------------------+
| node3  | 127.0.0.1:5434 | Replica | running   |  2 |     unknown |     |    unknown |     |                  |
+--------+----------------+---------+-----------+----+-------------+-----+------------+-----+------------------+";
        assert_eq!(out, expected);
        let ext = render("demo", &demo(), true, Layout::Format(Format::Pretty));
        assert_eq!(
            ext.lines().nth(1).unwrap(),
            "| Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason | Scheduled restart | Tags             |"
        );
        let topo = render("demo", &demo(), false, Layout::Topology);
        let expected = "\
+ Cluster: demo (7312345678901234567) -----------+----+-------------+-----+------------+-----+-------------------------------------+
| Member  | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag | Tags                                |
+---------+----------------+---------+-----------+----+-------------+-----+------------+-----+-------------------------------------+
| node1   | 127.0.0.1:5432 | Leader  | running   |  2 |             |     |            |     |                                     |
| + node2 | 127.0.0.1:5433 | Replica | streaming |  2 |   0/3000000 |   2 |  0/2E00000 |   4 | {clonefrom: true, nofailover: true} |
| + node3 | 127.0.0.1:5434 | Replica | running   |  2 |     unknown |     |    unknown |     |                                     |
+---------+----------------+---------+-----------+----+-------------+-----+------------+-----+-------------------------------------+";
        assert_eq!(topo, expected);
    }

    #[test]
    fn json_and_tsv_rows_like_patronictl() {
        // patronictl's, but for the tags' key order (Python keeps the stored order).
        let expected = r#"[{"Cluster": "demo", "Member": "node1", "Host": "127.0.0.1:5432", "Role": "Leader", "State": "running", "TL": 2}, {"Cluster": "demo", "Member": "node2", "Host": "127.0.0.1:5433", "Role": "Replica", "State": "streaming", "TL": 2, "Receive LSN": "0/3000000", "Receive Lag": 2, "Replay LSN": "0/2E00000", "Replay Lag": 4, "Tags": {"clonefrom": true, "nofailover": true}}, {"Cluster": "demo", "Member": "node3", "Host": "127.0.0.1:5434", "Role": "Replica", "State": "running", "TL": 2, "Receive LSN": "unknown", "Replay LSN": "unknown"}]"#;
        for extended in [false, true] {
            let out = render("demo", &demo(), extended, Layout::Format(Format::Json));
            assert_eq!(out, expected);
        }
        let tsv = render("demo", &demo(), false, Layout::Format(Format::Tsv));
        assert_eq!(
            tsv,
            "Cluster\tMember\tHost\tRole\tState\tTL\tReceive LSN\tReceive Lag\tReplay LSN\tReplay Lag\tTags\n\
             demo\tnode1\t127.0.0.1:5432\tLeader\trunning\t2\t\t\t\t\t\n\
             demo\tnode2\t127.0.0.1:5433\tReplica\tstreaming\t2\t0/3000000\t2\t0/2E00000\t4\t{clonefrom: true, nofailover: true}\n\
             demo\tnode3\t127.0.0.1:5434\tReplica\trunning\t2\tunknown\t\tunknown\t\t"
        );
        let yaml = render("demo", &demo(), false, Layout::Format(Format::Yaml));
        assert!(
            yaml.starts_with(
                "- Cluster: demo\n  Host: 127.0.0.1:5432\n  Member: node1\n  Role: Leader\n  State: running\n  TL: 2\n- Cluster: demo\n  Host: 127.0.0.1:5433\n  Member: node2\n  Receive LSN: 0/3000000\n  Receive Lag: 2\n"
            ),
            "{yaml}"
        );
    }

    #[test]
    fn roles_footer_and_extended_columns_like_patronictl() {
        let keys = Keys::new("/service/", "demo");
        let snap = snapshot(&[
            ("initialize", ""),
            ("config", r#"{"synchronous_mode":true,"pause":true}"#),
            ("leader", "a"),
            ("sync", r#"{"leader":"a","sync_standby":"b"}"#),
            (
                "failover",
                r#"{"leader":"a","member":"b","scheduled_at":"2030-01-01T10:00:00+00:00"}"#,
            ),
            (
                "members/a",
                &member("primary", 5432, r#","xlog_location":3000"#),
            ),
            (
                "members/b",
                &member(
                    "replica",
                    5432,
                    r#","xlog_location":1000,"replication_state":"in archive recovery","pending_restart":true,"pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"},"shared_preload_libraries":{"old_value":"pg_stat_statements","new_value":"pg_stat_statements,auto_explain,pg_cron"}},"scheduled_restart":{"schedule":"2030-01-01T00:00:00+00:00","postgres_version":"15.9"}"#,
                ),
            ),
            (
                "members/c",
                &member(
                    "replica",
                    5432,
                    r#","xlog_location":2000,"replication_state":"streaming","tags":{"replicatefrom":"b"}"#,
                ),
            ),
        ]);
        let c = Cluster::from_snapshot(&keys, &snap);
        // What patronictl 4.1.5 printed for these keys: two members on one host show
        // their ports even on 5432; without /status every lag is 0; a member with only
        // xlog_location shows it as its replay position unless it streams; long restart
        // reasons are hidden in the framed tables only.
        let footer = "
 Maintenance mode: on
 Switchover scheduled at: 2030-01-01T10:00:00+00:00
                    from: a
                      to: b";
        let expected = "\
+ Cluster: demo (initializing) ----------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------------------+
| Member | Host           | Role         | State               | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason                        | Scheduled restart                           | Tags             |
+--------+----------------+--------------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------------------+
| a      | 127.0.0.1:5432 | Leader       | running             |  2 |             |     |            |     |                 |                                               |                                             |                  |
+--------+----------------+--------------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------------------+
| b      | 127.0.0.1:5432 | Sync Standby | in archive recovery |  2 |     unknown |     |      0/3E8 |   0 | *               | max_connections: 100->200                     | 2030-01-01T00:00:00+00:00 if version < 15.9 |                  |
|        |                |              |                     |    |             |     |            |     |                 | shared_preload_libraries: [hidden - too long] |                                             |                  |
+--------+----------------+--------------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------------------+
| c      | 127.0.0.1:5432 | Replica      | streaming           |  2 |       0/7D0 |   0 |    unknown |     |                 |                                               |                                             | replicatefrom: b |
+--------+----------------+--------------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+------------------+";
        for extended in [false, true] {
            let out = render("demo", &c, extended, Layout::Format(Format::Pretty));
            assert_eq!(out, format!("{expected}{footer}"));
        }
        let topo = render("demo", &c, false, Layout::Topology);
        let expected = "\
+ Cluster: demo (initializing) ----------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+--------------------+
| Member | Host           | Role         | State               | TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart reason                        | Scheduled restart                           | Tags               |
+--------+----------------+--------------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+--------------------+
| a      | 127.0.0.1:5432 | Leader       | running             |  2 |             |     |            |     |                 |                                               |                                             |                    |
+--------+----------------+--------------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+--------------------+
| + b    | 127.0.0.1:5432 | Sync Standby | in archive recovery |  2 |     unknown |     |      0/3E8 |   0 | *               | max_connections: 100->200                     | 2030-01-01T00:00:00+00:00 if version < 15.9 |                    |
|        |                |              |                     |    |             |     |            |     |                 | shared_preload_libraries: [hidden - too long] |                                             |                    |
+--------+----------------+--------------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+--------------------+
|   + c  | 127.0.0.1:5432 | Replica      | streaming           |  2 |       0/7D0 |   0 |    unknown |     |                 |                                               |                                             | {replicatefrom: b} |
+--------+----------------+--------------+---------------------+----+-------------+-----+------------+-----+-----------------+-----------------------------------------------+---------------------------------------------+--------------------+";
        assert_eq!(topo, format!("{expected}{footer}"));
        let tsv = render("demo", &c, false, Layout::Format(Format::Tsv));
        assert_eq!(
            tsv,
            "Cluster\tMember\tHost\tRole\tState\tTL\tReceive LSN\tReceive Lag\tReplay LSN\tReplay Lag\tPending restart\tPending restart reason\tScheduled restart\tTags\n\
             demo\ta\t127.0.0.1:5432\tLeader\trunning\t2\t\t\t\t\t\t\t\t\n\
             demo\tb\t127.0.0.1:5432\tSync Standby\tin archive recovery\t2\tunknown\t\t0/3E8\t0\t*\tmax_connections: 100->200\n\
             shared_preload_libraries: pg_stat_statements->pg_stat_statements,auto_explain,pg_cron\t2030-01-01T00:00:00+00:00 if version < 15.9\t\n\
             demo\tc\t127.0.0.1:5432\tReplica\tstreaming\t2\t0/7D0\t0\tunknown\t\t\t\t\t{replicatefrom: b}"
        );
        let json = render("demo", &c, false, Layout::Format(Format::Json));
        assert_eq!(
            json,
            r#"[{"Cluster": "demo", "Member": "a", "Host": "127.0.0.1:5432", "Role": "Leader", "State": "running", "TL": 2}, {"Cluster": "demo", "Member": "b", "Host": "127.0.0.1:5432", "Role": "Sync Standby", "State": "in archive recovery", "TL": 2, "Receive LSN": "unknown", "Replay LSN": "0/3E8", "Replay Lag": 0, "Pending restart": "*", "Pending restart reason": "max_connections: 100->200\nshared_preload_libraries: pg_stat_statements->pg_stat_statements,auto_explain,pg_cron", "Scheduled restart": "2030-01-01T00:00:00+00:00 if version < 15.9"}, {"Cluster": "demo", "Member": "c", "Host": "127.0.0.1:5432", "Role": "Replica", "State": "streaming", "TL": 2, "Receive LSN": "0/7D0", "Receive Lag": 0, "Replay LSN": "unknown", "Tags": {"replicatefrom": "b"}}]"#
        );
    }

    #[test]
    fn quorum_mode_lists_quorum_standbys() {
        let keys = Keys::new("/service/", "demo");
        let snap = snapshot(&[
            ("initialize", "1"),
            ("config", r#"{"synchronous_mode":"quorum"}"#),
            ("leader", "a"),
            ("sync", r#"{"leader":"a","quorum":1,"sync_standby":"b,c"}"#),
            ("members/a", &member("primary", 5432, "")),
            ("members/b", &member("replica", 5433, "")),
            ("members/c", &member("replica", 5434, "")),
        ]);
        let c = Cluster::from_snapshot(&keys, &snap);
        let roles: Vec<String> = rows(&c).into_iter().map(|r| r.role).collect();
        assert_eq!(roles, ["Leader", "Quorum Standby", "Quorum Standby"]);
        // As patronictl: quorum mode names them so even while the quorum is 0.
        let snap = snapshot(&[
            ("config", r#"{"synchronous_mode":"quorum"}"#),
            ("leader", "a"),
            ("sync", r#"{"leader":"a","quorum":0,"sync_standby":"b"}"#),
            ("members/a", &member("primary", 5432, "")),
            ("members/b", &member("replica", 5433, "")),
        ]);
        let c = Cluster::from_snapshot(&keys, &snap);
        assert_eq!(rows(&c)[1].role, "Quorum Standby");
    }

    #[test]
    fn topology_indents_cascading_replicas() {
        let keys = Keys::new("/service/", "demo");
        let snap = snapshot(&[
            ("leader", "n1"),
            ("members/n1", &member("primary", 1, "")),
            ("members/n2", &member("replica", 2, "")),
            (
                "members/n3",
                &member("replica", 3, r#","tags":{"replicatefrom":"n2"}"#),
            ),
            ("members/n4", &member("replica", 4, "")),
        ]);
        let c = Cluster::from_snapshot(&keys, &snap);
        let names: Vec<String> = topology_sort(&rows(&c))
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["n1", "+ n2", "  + n3", "+ n4"]);
        let out = render("demo", &c, false, Layout::Topology);
        assert!(out.contains("|   + n3 |"), "{out}");
        // Without a leader every replica is at the first level.
        let snap = snapshot(&[
            ("members/n2", &member("replica", 2, "")),
            (
                "members/n3",
                &member("replica", 3, r#","tags":{"replicatefrom":"n3"}"#),
            ),
        ]);
        let c = Cluster::from_snapshot(&keys, &snap);
        let names: Vec<String> = topology_sort(&rows(&c))
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["+ n2", "+ n3"]);
    }

    #[test]
    fn empty_cluster_shows_an_empty_table() {
        let c = Cluster::default();
        let out = render("ghost", &c, false, Layout::Format(Format::Pretty));
        assert!(out.starts_with("+ Cluster: ghost (uninitialized)"), "{out}");
        assert_eq!(
            render("ghost", &c, false, Layout::Format(Format::Json)),
            "[]"
        );
    }
}
