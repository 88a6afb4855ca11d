//! `standby_cluster`: the section that makes a whole cluster a standby of another
//! (Patroni's meanings). Its leader, the *standby leader*, replicates from the remote
//! primary at `host:port` (or replays WAL through `restore_command`) instead of being
//! promoted; the other members cascade from it.
//!
//! The section is kept verbatim in the config's `extra` map (so keys of other tools
//! survive a round trip) and read into a typed [`StandbyCluster`] here, validated: a bad
//! value is an error naming the key (`standby_cluster.port`).

use serde_json::{Map, Value};

use super::values::{control_char_problem, describe, integer, present};
use super::DynamicConfigError;

/// The keys Patroni 4 reads in `standby_cluster` (its `RemoteMember`, plus the address).
const KNOWN: &[&str] = &[
    "host",
    "port",
    "primary_slot_name",
    "create_replica_methods",
    "restore_command",
    "archive_cleanup_command",
    "recovery_min_apply_delay",
    "no_replication_slot",
];

/// A typed, validated `standby_cluster` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StandbyCluster {
    /// The remote primary's address (libpq `host`: a name, an address, or a
    /// comma-separated list). `None`: replay from `restore_command` only.
    pub host: Option<String>,
    /// The remote primary's port (`None`: libpq's default, 5432).
    pub port: Option<u16>,
    /// A physical slot on the remote primary to stream through.
    pub primary_slot_name: Option<String>,
    /// How the first member of a new standby cluster copies the remote (method names,
    /// in order; empty: `basebackup` from `host:port`).
    pub create_replica_methods: Vec<String>,
    /// PostgreSQL's `restore_command` for the standby leader.
    pub restore_command: Option<String>,
    /// PostgreSQL's `archive_cleanup_command` for the standby leader.
    pub archive_cleanup_command: Option<String>,
    /// PostgreSQL's `recovery_min_apply_delay` for the standby leader, as written
    /// (milliseconds, or a number with a unit: `5min`).
    pub recovery_min_apply_delay: Option<String>,
}

impl StandbyCluster {
    /// Whether the leader streams from a remote server (else it replays the archive
    /// through `restore_command` only).
    pub fn streams(&self) -> bool {
        self.host.is_some() || self.port.is_some()
    }

    /// The remote address to stream from (`localhost`/5432 stand in for a missing
    /// half, as libpq's defaults).
    pub fn address(&self) -> Option<(String, u16)> {
        self.streams().then(|| {
            (
                self.host.clone().unwrap_or_else(|| "localhost".to_owned()),
                self.port.unwrap_or(5432),
            )
        })
    }
}

/// Reads `standby_cluster`. `Ok(None)`: absent, null, or not a standby cluster by
/// Patroni's rule (none of `host`, `port`, `restore_command` set). `strict`: an unknown
/// key in the section is an error (a config a user writes), else it is ignored (a value
/// read back from the DCS, which another tool may have written).
pub(super) fn parse(
    object: &Map<String, Value>,
    strict: bool,
) -> Result<Option<StandbyCluster>, Vec<DynamicConfigError>> {
    let Some(value) = present(object, "standby_cluster") else {
        return Ok(None);
    };
    let Some(section) = value.as_object() else {
        return Err(vec![DynamicConfigError::new(
            "standby_cluster",
            format!("expected an object, got {}", describe(value)),
        )]);
    };
    let mut errors = Vec::new();
    let mut err = |key: &str, reason: String| {
        errors.push(DynamicConfigError::new(
            format!("standby_cluster.{key}"),
            reason,
        ));
    };
    let mut s = StandbyCluster::default();
    let text = |key: &str, err: &mut dyn FnMut(&str, String)| -> Option<String> {
        let v = present(section, key)?;
        match v.as_str() {
            Some(t) if t.trim().is_empty() => None,
            Some(t) => match control_char_problem(t) {
                Some(why) => {
                    err(key, why);
                    None
                }
                None => Some(t.to_owned()),
            },
            None => {
                err(key, format!("expected a string, got {}", describe(v)));
                None
            }
        }
    };
    s.host = text("host", &mut err);
    s.restore_command = text("restore_command", &mut err);
    s.archive_cleanup_command = text("archive_cleanup_command", &mut err);
    if let Some(slot) = text("primary_slot_name", &mut err) {
        match slot_name_problem(&slot) {
            Some(why) => err("primary_slot_name", why),
            None => s.primary_slot_name = Some(slot),
        }
    }
    if let Some(v) = present(section, "port") {
        match integer(v) {
            Some(p) if (1..=65535).contains(&p) => s.port = u16::try_from(p).ok(),
            Some(p) => err("port", format!("must be between 1 and 65535, got {p}")),
            None => err(
                "port",
                format!("expected a port number, got {}", describe(v)),
            ),
        }
    }
    if let Some(v) = present(section, "recovery_min_apply_delay") {
        match apply_delay(v) {
            Some(d) => s.recovery_min_apply_delay = Some(d),
            None => err(
                "recovery_min_apply_delay",
                format!(
                    "expected a non-negative time (milliseconds, or a number with a unit \
                     ms, s, min, h or d), got {}",
                    describe(v)
                ),
            ),
        }
    }
    if let Some(v) = present(section, "create_replica_methods") {
        match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().filter(|m| !m.trim().is_empty()) {
                        Some(m) => s.create_replica_methods.push(m.to_owned()),
                        None => err(
                            &format!("create_replica_methods[{i}]"),
                            format!("expected a method name, got {}", describe(item)),
                        ),
                    }
                }
            }
            None => err(
                "create_replica_methods",
                format!("expected a list of method names, got {}", describe(v)),
            ),
        }
    }
    if strict {
        for key in section.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            err(
                key,
                format!("unknown key; standby_cluster takes {}", KNOWN.join(", ")),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Patroni's rule: a section without an address or a restore command is no standby
    // cluster (the leader is a primary).
    let enabled = s.streams() || s.restore_command.is_some();
    Ok(enabled.then_some(s))
}

/// PostgreSQL's rule for slot names: lower-case letters, digits and `_`, at most 63.
fn slot_name_problem(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some(format!("at most 63 characters, got {}", name.len()));
    }
    name.chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        .map(|c| format!("a slot name holds only a-z, 0-9 and _, got {c:?} in {name:?}"))
}

/// `recovery_min_apply_delay` as PostgreSQL reads it: an integer of milliseconds, or a
/// number with a time unit.
fn apply_delay(v: &Value) -> Option<String> {
    if let Some(n) = integer(v) {
        return (n >= 0).then(|| n.to_string());
    }
    let t = v.as_str()?.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let ok = !n.is_empty() && matches!(unit.trim(), "" | "ms" | "s" | "min" | "h" | "d");
    ok.then(|| t.to_owned())
}
