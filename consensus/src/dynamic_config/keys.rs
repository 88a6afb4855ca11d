//! Which keys of the dynamic config Warden interprets and which it only preserves for
//! Patroni and other tools, with the notes it logs about the latter.

use super::DynamicConfig;

/// How Warden treats a key of the dynamic config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    /// Parsed into a typed field.
    Implemented,
    /// A legacy Patroni name of an implemented key (`master_start_timeout`).
    Alias { canonical: &'static str },
    /// Patroni knows it, Warden does not act on it yet; preserved in `extra`.
    PatroniOnly,
    /// Neither Patroni nor Warden knows it; preserved in `extra`.
    Unknown,
    /// Below a free-form key (`postgresql.parameters.*`, `slots.*`): not key-checked.
    FreeForm,
}

const IMPLEMENTED_TOP: &[&str] = &[
    "ttl",
    "loop_wait",
    "retry_timeout",
    "maximum_lag_on_failover",
    "maximum_lag_on_syncnode",
    "primary_start_timeout",
    "primary_stop_timeout",
    "check_timeline",
    "synchronous_mode",
    "synchronous_mode_strict",
    "synchronous_node_count",
    "failsafe_mode",
    "pause",
    "postgresql",
];

const ALIASES_TOP: &[(&str, &str)] = &[
    ("master_start_timeout", "primary_start_timeout"),
    ("master_stop_timeout", "primary_stop_timeout"),
];

/// Top-level keys documented by Patroni (4.x) that Warden keeps but does not act on.
pub const PATRONI_ONLY_TOP: &[&str] = &["max_timelines_history", "primary_race_backoff"];

pub(super) const IMPLEMENTED_POSTGRESQL: &[&str] =
    &["use_pg_rewind", "use_slots", "parameters", "pg_hba"];

/// `postgresql.*` keys Warden acts on but keeps verbatim in `extra` (read where used).
pub(super) const KEPT_POSTGRESQL: &[&str] = &["recovery_conf"];

/// Top-level keys Warden acts on but keeps verbatim in `extra` (read where used).
pub(super) const KEPT_TOP: &[&str] = &[
    "standby_cluster",
    "slots",
    "permanent_slots",
    "permanent_replication_slots",
    "ignore_slots",
    "member_slots_ttl",
];

/// `postgresql.*` keys documented by Patroni that Warden keeps but does not act on.
pub const PATRONI_ONLY_POSTGRESQL: &[&str] = &[
    "pg_ident",
    "parameters_primary",
    "parameters_replica",
    "parameters_standby_leader",
    "pg_hba_primary",
    "pg_hba_replica",
    "pg_hba_standby_leader",
    "pg_ident_primary",
    "pg_ident_replica",
    "pg_ident_standby_leader",
    "pg_hosts",
    "pg_hosts_primary",
    "pg_hosts_replica",
    "pg_hosts_standby_leader",
    // Old Patroni versions wrote their default `bin_dir: ''` into the DCS.
    "bin_dir",
];

/// Dotted paths of every key Warden interprets, aliases included.
pub fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = IMPLEMENTED_TOP.iter().map(|k| (*k).to_owned()).collect();
    keys.extend(ALIASES_TOP.iter().map(|(alias, _)| (*alias).to_owned()));
    keys.extend(KEPT_TOP.iter().map(|k| (*k).to_owned()));
    keys.extend(
        IMPLEMENTED_POSTGRESQL
            .iter()
            .chain(KEPT_POSTGRESQL)
            .map(|k| format!("postgresql.{k}")),
    );
    keys
}

/// Dotted paths of the keys Patroni documents but Warden only preserves.
pub fn patroni_only_keys() -> Vec<String> {
    let mut keys: Vec<String> = PATRONI_ONLY_TOP.iter().map(|k| (*k).to_owned()).collect();
    keys.extend(
        PATRONI_ONLY_POSTGRESQL
            .iter()
            .map(|k| format!("postgresql.{k}")),
    );
    keys
}

/// Classifies a dotted key path relative to the dynamic config.
pub fn classify_key(path: &str) -> KeyClass {
    match path.split_once('.') {
        None => classify_top(path),
        Some(("postgresql", rest)) => match rest.split_once('.') {
            None => classify_postgresql(rest),
            Some((section, _)) => match classify_postgresql(section) {
                KeyClass::Unknown => KeyClass::Unknown,
                _ => KeyClass::FreeForm,
            },
        },
        Some((top, _)) => match classify_top(top) {
            KeyClass::Unknown => KeyClass::Unknown,
            _ => KeyClass::FreeForm,
        },
    }
}

pub(super) fn classify_top(key: &str) -> KeyClass {
    if IMPLEMENTED_TOP.contains(&key) || KEPT_TOP.contains(&key) {
        KeyClass::Implemented
    } else if let Some((_, canonical)) = ALIASES_TOP.iter().find(|(alias, _)| *alias == key) {
        KeyClass::Alias { canonical }
    } else if PATRONI_ONLY_TOP.contains(&key) {
        KeyClass::PatroniOnly
    } else {
        KeyClass::Unknown
    }
}

fn classify_postgresql(key: &str) -> KeyClass {
    if IMPLEMENTED_POSTGRESQL.contains(&key) || KEPT_POSTGRESQL.contains(&key) {
        KeyClass::Implemented
    } else if PATRONI_ONLY_POSTGRESQL.contains(&key) {
        KeyClass::PatroniOnly
    } else {
        KeyClass::Unknown
    }
}

/// The names a key at `section` (`""` for the top level, `"postgresql"`) could have
/// been meant as; used for "did you mean" hints.
pub fn candidate_keys(section: &str) -> Vec<&'static str> {
    match section {
        "" => IMPLEMENTED_TOP
            .iter()
            .chain(KEPT_TOP)
            .chain(PATRONI_ONLY_TOP)
            .chain(ALIASES_TOP.iter().map(|(alias, _)| alias))
            .copied()
            .collect(),
        "postgresql" => IMPLEMENTED_POSTGRESQL
            .iter()
            .chain(KEPT_POSTGRESQL)
            .chain(PATRONI_ONLY_POSTGRESQL)
            .copied()
            .collect(),
        _ => Vec::new(),
    }
}

impl DynamicConfig {
    /// Human-readable notes about preserved keys Warden does not act on. Meant to be
    /// logged when a new `config` value is seen, not on every read.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let sections = [("", &self.extra), ("postgresql.", &self.postgresql.extra)];
        for (prefix, map) in sections {
            for (key, value) in map {
                if value.is_null() {
                    continue;
                }
                let path = format!("{prefix}{key}");
                match classify_key(&path) {
                    KeyClass::Unknown => out.push(format!(
                        "{path}: unknown key (not a Patroni or Warden setting); preserved but ignored"
                    )),
                    KeyClass::PatroniOnly => out.push(format!(
                        "{path}: Patroni setting not implemented by Warden yet; preserved but ignored"
                    )),
                    KeyClass::Implemented | KeyClass::Alias { .. } | KeyClass::FreeForm => {}
                }
            }
        }
        out
    }
}
