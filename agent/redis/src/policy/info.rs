//! `INFO` text read into the replication facts the policy decides on.
//!
//! `INFO` answers `key:value` lines grouped under `# Section` headers (CRLF line ends);
//! a primary lists each connected replica as `slaveN:ip=…,port=…,state=…,offset=…,lag=…`.

use super::Lineage;

/// `role:` in `INFO replication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    Master,
    Replica,
}

/// A replica as its primary lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedReplica {
    pub ip: String,
    pub port: u16,
    /// `online`, `wait_bgsave`, `send_bulk`, …
    pub state: String,
    /// The offset the replica last acknowledged.
    pub offset: u64,
    /// Seconds since its last acknowledgement.
    pub lag: Option<u64>,
}

/// The replication facts of one `INFO` answer (sections `server` and `replication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    pub role: ServerRole,
    /// `master_replid`.
    pub replid: String,
    /// `master_replid2`; `None` for the all-zero id.
    pub replid2: Option<String>,
    /// `master_repl_offset`.
    pub master_repl_offset: u64,
    /// `second_repl_offset`; `None` for -1.
    pub second_repl_offset: Option<u64>,
    /// A replica's `slave_repl_offset` (processed).
    pub slave_repl_offset: Option<u64>,
    /// A replica's `slave_read_repl_offset` (received).
    pub slave_read_repl_offset: Option<u64>,
    /// A replica's `master_link_status:up`.
    pub link_up: bool,
    /// A replica's `master_sync_in_progress:1` (a full copy is being received).
    pub sync_in_progress: bool,
    /// A replica's primary (`master_host`, `master_port`).
    pub master: Option<(String, u16)>,
    /// A primary's connected replicas.
    pub replicas: Vec<ConnectedReplica>,
    /// `run_id` (section `server`): changes on every restart.
    pub run_id: Option<String>,
}

/// `INFO` text the parser could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    #[error("INFO has no {0:?} field")]
    Missing(&'static str),
    #[error("INFO field {field:?} has an unreadable value {value:?}")]
    Bad { field: &'static str, value: String },
}

const NO_ID: &str = "0000000000000000000000000000000000000000";

impl Replication {
    /// The bytes of the stream this node holds: a primary's `master_repl_offset`, a
    /// replica's received offset (at least what it processed).
    pub fn position(&self) -> u64 {
        match self.role {
            ServerRole::Master => self.master_repl_offset,
            ServerRole::Replica => self
                .slave_read_repl_offset
                .max(self.slave_repl_offset)
                .unwrap_or(self.master_repl_offset),
        }
    }

    pub fn lineage(&self) -> Lineage {
        Lineage {
            replid: self.replid.clone(),
            replid2: self.replid2.clone(),
            second_offset: self.replid2.as_ref().and(self.second_repl_offset),
            offset: self.position(),
        }
    }
}

/// Reads `INFO` (at least its `replication` section; `server` adds `run_id`).
pub fn parse_info(text: &str) -> Result<Replication, InfoError> {
    let mut fields = std::collections::BTreeMap::new();
    let mut replicas = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.len() > 5 && k.starts_with("slave") && k[5..].bytes().all(|b| b.is_ascii_digit()) {
            if let Some(r) = parse_replica(v) {
                replicas.push(r);
            }
            continue;
        }
        fields.insert(k, v);
    }
    let get = |k: &'static str| fields.get(k).copied();
    let need = |k: &'static str| get(k).ok_or(InfoError::Missing(k));
    let num = |k: &'static str| -> Result<Option<i64>, InfoError> {
        get(k)
            .map(|v| {
                v.parse::<i64>().map_err(|_| InfoError::Bad {
                    field: k,
                    value: v.into(),
                })
            })
            .transpose()
    };
    // Offsets are never negative except for -1, "none".
    let offset = |k: &'static str| num(k).map(|o| o.and_then(|o| u64::try_from(o).ok()));
    let role = match need("role")? {
        "master" => ServerRole::Master,
        "slave" => ServerRole::Replica,
        other => {
            return Err(InfoError::Bad {
                field: "role",
                value: other.into(),
            })
        }
    };
    let replid = need("master_replid")?.to_string();
    let master = match (get("master_host"), num("master_port")?) {
        (Some(h), Some(p)) => u16::try_from(p).ok().map(|p| (h.to_string(), p)),
        _ => None,
    };
    Ok(Replication {
        role,
        replid,
        replid2: get("master_replid2")
            .filter(|id| *id != NO_ID && !id.is_empty())
            .map(str::to_string),
        master_repl_offset: offset("master_repl_offset")?
            .ok_or(InfoError::Missing("master_repl_offset"))?,
        second_repl_offset: offset("second_repl_offset")?,
        slave_repl_offset: offset("slave_repl_offset")?,
        slave_read_repl_offset: offset("slave_read_repl_offset")?,
        link_up: get("master_link_status") == Some("up"),
        sync_in_progress: get("master_sync_in_progress") == Some("1"),
        master,
        replicas,
        run_id: get("run_id").map(str::to_string),
    })
}

/// `ip=127.0.0.1,port=6380,state=online,offset=116,lag=0`.
fn parse_replica(v: &str) -> Option<ConnectedReplica> {
    let kv: std::collections::BTreeMap<&str, &str> =
        v.split(',').filter_map(|p| p.split_once('=')).collect();
    Some(ConnectedReplica {
        ip: kv.get("ip")?.to_string(),
        port: kv.get("port")?.parse().ok()?,
        state: kv.get("state")?.to_string(),
        offset: kv.get("offset")?.parse().ok()?,
        lag: kv.get("lag").and_then(|l| l.parse().ok()),
    })
}
