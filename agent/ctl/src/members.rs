//! The member table of `list`, `topology` and the commands that show the cluster
//! before acting: one row per `members/<name>` key, roles and lag as patronictl
//! derives them.

use super::args::Format;
use super::output::{yaml_block, yaml_flow, Rows};
use serde_json::{json, Value};
use warden_consensus::types::{Member, Role};
use warden_consensus::Cluster;

const MB: f64 = 1024.0 * 1024.0;

/// Lag of a member behind the leader's WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// The leader's row has no lag.
    None,
    Bytes(u64),
    /// The member or the leader did not publish a position.
    Unknown,
}

impl Lag {
    /// The `Lag in MB` cell: whole MB (rounded half to even, as Python's `round`), or
    /// `unknown`.
    pub fn mb_value(self) -> Value {
        match self {
            Lag::None => json!(""),
            Lag::Bytes(b) => json!((b as f64 / MB).round_ties_even() as u64),
            Lag::Unknown => json!("unknown"),
        }
    }
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
    pub lag: Lag,
    pub pending_restart: bool,
    pub pending_restart_reason: Option<Value>,
    pub scheduled_restart: Option<String>,
    pub tags: Option<serde_json::Map<String, Value>>,
    pub api_url: String,
}

/// The WAL position lag is measured against: the leader's published `xlog_location`,
/// else the last `/status` optime.
pub fn cluster_lsn(cluster: &Cluster) -> Option<u64> {
    cluster
        .leader_name()
        .and_then(|l| cluster.member(l))
        .and_then(|m| m.xlog_location)
        .or_else(|| cluster.status.as_ref().and_then(|s| s.optime))
}

pub fn lag_of(member: &Member, cluster_lsn: Option<u64>) -> Lag {
    match (member.xlog_location, cluster_lsn) {
        (Some(lsn), Some(top)) => Lag::Bytes(top.saturating_sub(lsn)),
        _ => Lag::Unknown,
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
            // A replica's row shows how it replicates (`streaming`) when it says so.
            let state = match (&m.replication_state, is_leader) {
                (Some(rs), false) if !rs.is_empty() => rs.clone(),
                _ => m.state.to_string(),
            };
            let (host, port) = m
                .conn_host_port()
                .map_or((String::new(), None), |(h, p)| (h, Some(p)));
            let scheduled_restart = m.scheduled_restart.as_ref().and_then(|s| {
                let at = s.get("schedule")?.as_str()?.to_string();
                Some(match s.get("postgres_version").and_then(Value::as_str) {
                    Some(v) => format!("{at} if version < {v}"),
                    None => at,
                })
            });
            MemberRow {
                name: name.clone(),
                host,
                port,
                role: role.to_string(),
                state,
                timeline: m.timeline,
                lag: if is_leader { Lag::None } else { lag_of(m, top) },
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
/// and, for the framed table, the footer lines.
pub fn render(name: &str, cluster: &Cluster, extended: bool, layout: Layout) -> String {
    let mut members = rows(cluster);
    if layout == Layout::Topology {
        members = topology_sort(&members);
    }
    let format = match layout {
        Layout::Format(f) => f,
        Layout::Topology => Format::Pretty,
    };
    let mut columns: Vec<&str> = vec![
        "Cluster",
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Lag in MB",
    ];
    let any = |f: &dyn Fn(&MemberRow) -> bool| extended || members.iter().any(f);
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
    let mut hosts: Vec<&str> = members.iter().map(|m| m.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let with_port =
        members.iter().any(|m| m.port.is_some_and(|p| p != 5432)) || hosts.len() < members.len();
    let machine = matches!(format, Format::Json | Format::Yaml | Format::Yml);
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
                    "Lag in MB" => m.lag.mb_value(),
                    "Pending restart" => json!(if m.pending_restart { "*" } else { "" }),
                    "Pending restart reason" => {
                        json!(restart_reason(m.pending_restart_reason.as_ref(), !machine))
                    }
                    "Scheduled restart" => json!(m.scheduled_restart.clone().unwrap_or_default()),
                    "Tags" => match (&m.tags, format) {
                        (None, _) => json!(""),
                        (Some(t), Format::Json | Format::Yaml | Format::Yml) => {
                            Value::Object(t.clone())
                        }
                        // Block YAML in the framed table (one tag per line), flow in TSV.
                        (Some(t), Format::Pretty) => {
                            json!(yaml_block(&Value::Object(t.clone())).trim_end())
                        }
                        (Some(t), Format::Tsv) => json!(yaml_flow(&Value::Object(t.clone()))),
                    },
                    _ => json!(""),
                })
                .collect()
        })
        .collect();
    let mut table = Rows {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: data,
        right: vec!["TL", "Lag in MB"],
        skip_empty: true,
    };
    if format == Format::Pretty {
        // The cluster name is in the title, not in every row.
        table.columns.remove(0);
        for r in &mut table.rows {
            r.remove(0);
        }
    }
    let mut out = table.render(format, &title(name, cluster));
    if format == Format::Pretty {
        let f = footer(cluster);
        if !f.is_empty() {
            out.push_str("\n ");
            out.push_str(&f.join("\n "));
        }
    }
    out
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

    fn demo() -> Cluster {
        let keys = Keys::new("/service/", "demo");
        let snap = snapshot(&[
            ("initialize", "7312345678901234567"),
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
                    r#","xlog_location":50331648,"replication_state":"streaming","tags":{"nofailover":true}"#,
                ),
            ),
            ("members/node3", &member("replica", 5434, "")),
        ]);
        Cluster::from_snapshot(&keys, &snap)
    }

    #[test]
    fn lag_is_relative_to_the_leader_and_rounded_to_mb() {
        let c = demo();
        assert_eq!(cluster_lsn(&c), Some(52_428_800));
        let r = rows(&c);
        assert_eq!(r[0].lag, Lag::None);
        assert_eq!(r[1].lag, Lag::Bytes(2 * 1024 * 1024));
        assert_eq!(r[2].lag, Lag::Unknown);
        assert_eq!(Lag::Bytes(2 * 1024 * 1024).mb_value(), json!(2));
        // Half a MB rounds to even, like Python's round().
        assert_eq!(Lag::Bytes(512 * 1024).mb_value(), json!(0));
        assert_eq!(Lag::Bytes(1536 * 1024).mb_value(), json!(2));
        assert_eq!(Lag::Unknown.mb_value(), json!("unknown"));
        // A replica ahead of the published leader position has no negative lag.
        let m: Member =
            serde_json::from_str(&member("replica", 1, r#","xlog_location":9"#)).unwrap();
        assert_eq!(lag_of(&m, Some(5)), Lag::Bytes(0));
        assert_eq!(lag_of(&m, None), Lag::Unknown);
    }

    #[test]
    fn pretty_table_like_patronictl() {
        let out = render("demo", &demo(), false, Layout::Format(Format::Pretty));
        let expected = "\
+ Cluster: demo (7312345678901234567) ----------+----+-----------+------------------+
| Member | Host           | Role    | State     | TL | Lag in MB | Tags             |
+--------+----------------+---------+-----------+----+-----------+------------------+
| node1  | 127.0.0.1:5432 | Leader  | running   |  2 |           |                  |
| node2  | 127.0.0.1:5433 | Replica | streaming |  2 |         2 | nofailover: true |
| node3  | 127.0.0.1:5434 | Replica | running   |  2 |   unknown |                  |
+--------+----------------+---------+-----------+----+-----------+------------------+";
        assert_eq!(out, expected);
    }

    #[test]
    fn json_rows_for_scripts() {
        let out = render("demo", &demo(), false, Layout::Format(Format::Json));
        let v: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            json!({"Cluster":"demo","Member":"node1","Host":"127.0.0.1:5432","Role":"Leader","State":"running","TL":2})
        );
        assert_eq!(v[1]["Lag in MB"], json!(2));
        assert_eq!(v[1]["Tags"], json!({"nofailover": true}));
        assert_eq!(v[2]["Lag in MB"], json!("unknown"));
        let tsv = render("demo", &demo(), false, Layout::Format(Format::Tsv));
        assert_eq!(
            tsv.lines().nth(2).unwrap(),
            "demo\tnode2\t127.0.0.1:5433\tReplica\tstreaming\t2\t2\t{nofailover: true}"
        );
    }

    #[test]
    fn roles_footer_and_extended_columns() {
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
            ("members/a", &member("primary", 5432, "")),
            (
                "members/b",
                &member(
                    "replica",
                    5432,
                    r#","pending_restart":true,"scheduled_restart":{"schedule":"2030-01-01T00:00:00+00:00","postgres_version":"15.9"}"#,
                ),
            ),
        ]);
        let c = Cluster::from_snapshot(&keys, &snap);
        let r = rows(&c);
        assert_eq!(r[1].role, "Sync Standby");
        let out = render("demo", &c, false, Layout::Format(Format::Pretty));
        assert!(out.starts_with("+ Cluster: demo (initializing) "), "{out}");
        assert!(out.contains("| Pending restart |"), "{out}");
        assert!(
            out.contains("2030-01-01T00:00:00+00:00 if version < 15.9"),
            "{out}"
        );
        assert!(!out.contains("| Tags"), "{out}");
        assert!(
            out.ends_with(
                " Maintenance mode: on\n Switchover scheduled at: 2030-01-01T10:00:00+00:00\n                    from: a\n                      to: b"
            ),
            "{out}"
        );
        let ext = render("demo", &c, true, Layout::Format(Format::Pretty));
        assert!(ext.contains("| Tags"), "{ext}");
        // Two members on one host: ports are shown even on 5432.
        assert!(out.contains("127.0.0.1:5432"), "{out}");
        let json = render("demo", &c, false, Layout::Format(Format::Json));
        assert!(!json.contains("Maintenance"), "{json}");
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
