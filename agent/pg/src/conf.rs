//! Rendering of the files the agent owns in the data directory.
//!
//! `postgresql.conf` is rewritten by the agent on every change (the original from initdb
//! is kept as `postgresql.base.conf` and included first), `pg_hba.conf` comes from the
//! config, and `standby.signal` exists exactly while the node should run as a replica.
//! Rendering is pure; writing happens in [`super::Postgres`].

use serde_json::Value;
use std::collections::BTreeMap;

/// Parameters that must be identical on every member (a replica refuses to start with a
/// lower value than its primary), so the cluster-wide value from the DCS wins over a
/// member's local one, as in Patroni.
const CLUSTER_WIDE: &[&str] = &[
    "max_connections",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_prepared_transactions",
    "wal_level",
    "track_commit_timestamp",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_size",
    "wal_keep_segments",
    "wal_log_hints",
];

/// Patroni's fixed segment size for the `wal_keep_segments` conversion (it does not read
/// the server's real `wal_segment_size` either, so both agents agree on the result).
const PATRONI_SEGMENT_MB: u64 = 16;

/// Where a replica streams from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub passfile: String,
    pub application_name: String,
    pub slot: Option<String>,
    /// The replication role's TLS settings (libpq's default `prefer` when unset).
    pub tls: crate::tls::ClientTls,
}

impl Upstream {
    pub fn conninfo(&self) -> String {
        let mut tls = self.tls.clone();
        tls.sslmode.get_or_insert(crate::tls::SslMode::Prefer);
        format!(
            "host={} port={} user={} passfile={} application_name={}{}",
            conninfo_quote(&self.host),
            self.port,
            conninfo_quote(&self.user),
            conninfo_quote(&self.passfile),
            conninfo_quote(&self.application_name),
            tls.conninfo()
        )
    }
}

/// Settings the agent controls whatever the user configured.
#[derive(Debug, Clone)]
pub struct Managed {
    pub listen_addresses: String,
    pub port: u16,
    pub cluster_name: String,
    /// `Some` for a replica (with or without an upstream to stream from).
    pub standby: Option<Option<Upstream>>,
    /// `synchronous_standby_names` chosen by the agent (synchronous mode); `None`
    /// leaves the configured value.
    pub synchronous_standby_names: Option<String>,
    /// `recovery_conf` (the dynamic config's, then the member's): applied only while
    /// the node runs as a replica.
    pub recovery_conf: BTreeMap<String, String>,
}

/// `wal_keep_segments` was removed in PostgreSQL 13, which refuses to start with it. As
/// Patroni does, it becomes `wal_keep_size = segments × 16MB` unless `wal_keep_size` is
/// set too (then that wins). Warden runs on PostgreSQL 13 and later only.
fn keep_size_from_segments(params: &mut BTreeMap<String, String>) {
    let Some(segments) = params.remove("wal_keep_segments") else {
        return;
    };
    if params.contains_key("wal_keep_size") {
        return;
    }
    match segments.trim().parse::<u64>() {
        Ok(n) => {
            let mb = n.saturating_mul(PATRONI_SEGMENT_MB);
            params.insert("wal_keep_size".into(), format!("{mb}MB"));
        }
        Err(_) => tracing::warn!(
            value = %segments,
            "postgresql parameter wal_keep_segments is not a whole number; ignored"
        ),
    }
}

/// Renders a JSON parameter value the way PostgreSQL expects it in a config file.
pub fn param_text(v: &Value) -> String {
    match v {
        Value::Bool(true) => "on".into(),
        Value::Bool(false) => "off".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Merges the DCS parameters, the member's local ones, and the managed settings.
pub fn effective_parameters(
    dcs: &BTreeMap<String, Value>,
    local: &BTreeMap<String, String>,
    managed: &Managed,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = dcs
        .iter()
        .map(|(k, v)| (k.clone(), param_text(v)))
        .collect();
    for (k, v) in local {
        if CLUSTER_WIDE.contains(&k.as_str()) && out.contains_key(k) {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    keep_size_from_segments(&mut out);
    out.insert("listen_addresses".into(), managed.listen_addresses.clone());
    out.insert("port".into(), managed.port.to_string());
    out.entry("cluster_name".into())
        .or_insert_with(|| managed.cluster_name.clone());
    out.insert("hot_standby".into(), "on".into());
    // A default the user may override. When the leader names a new synchronous standby
    // in place of a dead one, commits that waited for the dead one are released only
    // when the new one next reports its flush position; with every writer blocked no
    // new WAL prompts that, so it comes after this interval (PostgreSQL's default 10 s).
    out.entry("wal_receiver_status_interval".into())
        .or_insert_with(|| "1s".into());
    // Replication needs at least `replica`; `logical` is a superset and stays.
    if out.get("wal_level").is_none_or(|l| l == "minimal") {
        out.insert("wal_level".into(), "replica".into());
    }
    // recovery_target_timeline is left at its default, `latest`: it can only change at
    // a restart, so managing it per role would leave a promoted node "pending restart".
    for k in ["primary_conninfo", "primary_slot_name"] {
        out.remove(k);
    }
    if let Some(names) = &managed.synchronous_standby_names {
        out.insert("synchronous_standby_names".into(), names.clone());
    }
    if managed.standby.is_some() {
        // Where to stream from is the agent's to say (or nobody's, with nostream).
        for (k, v) in managed
            .recovery_conf
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "primary_conninfo" | "primary_slot_name"))
        {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(Some(up)) = &managed.standby {
        out.insert("primary_conninfo".into(), up.conninfo());
        if let Some(slot) = &up.slot {
            out.insert("primary_slot_name".into(), slot.clone());
        }
    }
    out
}

pub fn render_postgresql_conf(params: &BTreeMap<String, String>) -> String {
    let mut s = String::from(
        "# Written by warden; changes here are overwritten.\n\
         # Set parameters in the agent's config (postgresql.parameters) or the DCS config.\n\
         include_if_exists = 'postgresql.base.conf'\n",
    );
    for (k, v) in params {
        s.push_str(&format!("{k} = {}\n", conf_quote(v)));
    }
    s
}

pub fn render_hba(lines: &[String]) -> String {
    let mut s =
        String::from("# Written by warden from postgresql.pg_hba; changes here are overwritten.\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// `~/.pgpass` lines: each user's password only for the given `(host, port)` pairs
/// (the members the agent connects to and the local server), any database.
pub fn render_pgpass(hosts: &[(String, u16)], users: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (host, port) in hosts {
        for (u, p) in users {
            out.push_str(&format!(
                "{}:{port}:*:{}:{}\n",
                pgpass_escape(host),
                pgpass_escape(u),
                pgpass_escape(p)
            ));
        }
    }
    out
}

/// Physical slot name for a member, as Patroni derives it: lower case, `-` and `.`
/// become `_`, any other character outside `[a-z0-9_]` becomes `u` and its code point
/// in (at least four) decimal digits, cut to 63 characters (PostgreSQL's name limit).
pub fn slot_name(member: &str) -> String {
    let mut out = String::new();
    for c in member.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            '-' | '.' => out.push('_'),
            other => out.push_str(&format!("u{:04}", u32::from(other))),
        }
    }
    // Only ASCII was pushed, so any byte index is a character boundary.
    out.truncate(63);
    out
}

fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

fn conninfo_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn pgpass_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn managed(standby: Option<Option<Upstream>>) -> Managed {
        Managed {
            synchronous_standby_names: None,
            listen_addresses: "127.0.0.1".into(),
            port: 5432,
            cluster_name: "demo".into(),
            standby,
            recovery_conf: BTreeMap::from([("restore_command".to_string(), "cp a %p".to_string())]),
        }
    }

    #[test]
    fn recovery_conf_applies_to_replicas_only() {
        let (dcs, local) = (BTreeMap::new(), BTreeMap::new());
        let primary = effective_parameters(&dcs, &local, &managed(None));
        assert!(!primary.contains_key("restore_command"));
        let replica = effective_parameters(&dcs, &local, &managed(Some(None)));
        assert_eq!(replica["restore_command"], "cp a %p");
        assert!(!replica.contains_key("primary_conninfo"));
    }

    #[test]
    fn slot_names_follow_patroni() {
        assert_eq!(slot_name("Node-1.dc"), "node_1_dc");
        assert_eq!(slot_name("pg@1"), "pgu00641");
        assert_eq!(slot_name("é"), "u0233");
        assert_eq!(slot_name(&"a".repeat(70)).len(), 63);
    }

    #[test]
    fn wal_keep_segments_becomes_wal_keep_size() {
        let run = |dcs: serde_json::Value, local: &[(&str, &str)]| {
            let dcs: BTreeMap<String, Value> = serde_json::from_value(dcs).unwrap();
            let local: BTreeMap<String, String> = local
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let out = effective_parameters(&dcs, &local, &managed(None));
            assert!(!out.contains_key("wal_keep_segments"), "{out:?}");
            out.get("wal_keep_size").cloned()
        };
        assert_eq!(
            run(json!({"wal_keep_segments": 8}), &[]).as_deref(),
            Some("128MB")
        );
        assert_eq!(
            run(json!({}), &[("wal_keep_segments", "100")]).as_deref(),
            Some("1600MB")
        );
        // An explicit wal_keep_size wins, wherever it comes from.
        assert_eq!(
            run(json!({"wal_keep_segments": 8, "wal_keep_size": "1GB"}), &[]).as_deref(),
            Some("1GB")
        );
        assert_eq!(
            run(
                json!({"wal_keep_segments": "8"}),
                &[("wal_keep_size", "64MB")]
            )
            .as_deref(),
            Some("64MB")
        );
        // Not a number: dropped rather than handed to a server that would not start.
        assert_eq!(run(json!({"wal_keep_segments": "many"}), &[]), None);
        assert_eq!(run(json!({}), &[]), None);
    }

    #[test]
    fn cluster_wide_parameters_come_from_the_dcs() {
        let dcs: BTreeMap<String, Value> = [
            ("max_connections".to_string(), json!(200)),
            ("hot_standby".to_string(), json!(true)),
        ]
        .into();
        let local: BTreeMap<String, String> = [
            ("max_connections".to_string(), "50".to_string()),
            ("work_mem".to_string(), "8MB".to_string()),
            ("port".to_string(), "1".to_string()),
        ]
        .into();
        let p = effective_parameters(&dcs, &local, &managed(None));
        assert_eq!(p["max_connections"], "200");
        assert_eq!(p["work_mem"], "8MB");
        assert_eq!(p["port"], "5432");
        assert_eq!(p["wal_level"], "replica");
        assert_eq!(p["wal_receiver_status_interval"], "1s");
        assert!(!p.contains_key("primary_conninfo"));
        // The user's value wins over the default.
        let local: BTreeMap<String, String> =
            [("wal_receiver_status_interval".to_string(), "5s".to_string())].into();
        let p = effective_parameters(&dcs, &local, &managed(None));
        assert_eq!(p["wal_receiver_status_interval"], "5s");
    }

    #[test]
    fn replica_gets_conninfo_slot_and_latest_timeline() {
        let up = Upstream {
            host: "10.0.0.1".into(),
            port: 5433,
            user: "repl".into(),
            passfile: "/tmp/pgpass".into(),
            application_name: "node2".into(),
            slot: Some("node2".into()),
            tls: crate::tls::ClientTls::default(),
        };
        let p = effective_parameters(&BTreeMap::new(), &BTreeMap::new(), &managed(Some(Some(up))));
        assert_eq!(
            p["primary_conninfo"],
            "host='10.0.0.1' port=5433 user='repl' passfile='/tmp/pgpass' application_name='node2' sslmode='prefer'"
        );
        assert_eq!(p["primary_slot_name"], "node2");
        let conf = render_postgresql_conf(&p);
        assert!(
            conf.contains("primary_conninfo = 'host=''10.0.0.1'' port=5433"),
            "{conf}"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(slot_name("Node-1.a"), "node_1_a");
        assert_eq!(
            render_pgpass(&[("10.0.0.1".into(), 5432)], &[("u:x", "p\\w")]),
            "10.0.0.1:5432:*:u\\:x:p\\\\w\n"
        );
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert_eq!(param_text(&json!(false)), "off");
        assert_eq!(param_text(&json!(10)), "10");
    }
}
