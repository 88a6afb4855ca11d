//! Patroni's *dynamic configuration*: the JSON object stored in the cluster's `config`
//! key, first written from the YAML section `bootstrap.dcs`.
//!
//! Warden interprets a subset of the keys (timeouts, lag limits, synchronous mode,
//! pause, `postgresql.{use_pg_rewind,use_slots,parameters,pg_hba}`) as typed fields.
//! Every other key is kept verbatim in an `extra` map, because the `config` key is shared
//! with `patronictl` and other tools: reading it and writing it back through Warden must
//! never drop a user's setting.
//!
//! Parsing is lenient in the same places Patroni is (numeric strings such as `"30"`,
//! boolean words such as `"on"`), and strict where a wrong value would be unsafe: every
//! problem is reported with the key that caused it.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

mod keys;
mod parse;
mod render;
mod standby;
mod validate;
mod values;

pub use keys::{
    candidate_keys, classify_key, known_keys, patroni_only_keys, KeyClass, PATRONI_ONLY_POSTGRESQL,
    PATRONI_ONLY_TOP,
};
pub use standby::StandbyCluster;
pub use values::{bool_word, boolean, control_char_problem, describe, guc_name_problem, guc_text};

/// Patroni's defaults. Warden's own examples use smaller timeouts, but a config without
/// these keys must behave exactly as it does under Patroni.
pub const DEFAULT_TTL: u32 = 30;
pub const DEFAULT_LOOP_WAIT: u32 = 10;
pub const DEFAULT_RETRY_TIMEOUT: u32 = 10;
pub const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: u64 = 1_048_576;
pub const DEFAULT_MAXIMUM_LAG_ON_SYNCNODE: i64 = -1;
pub const DEFAULT_PRIMARY_START_TIMEOUT: u32 = 300;
pub const DEFAULT_PRIMARY_STOP_TIMEOUT: u32 = 0;
pub const DEFAULT_SYNCHRONOUS_NODE_COUNT: u32 = 1;

/// Lowest accepted `ttl`. Patroni says 20; Warden's lease deadline on a monotonic clock
/// makes shorter leases safe, and the design promises failover budgets down to 3 s.
pub const MIN_TTL: u32 = 3;

/// One problem with one key. `key` is a dotted path relative to the dynamic config
/// (`ttl`, `postgresql.parameters.port`); callers that embed the dynamic config in a
/// larger document prefix it (`bootstrap.dcs.ttl`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct DynamicConfigError {
    pub key: String,
    pub reason: String,
}

impl DynamicConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// `synchronous_mode`. Patroni 4 accepts a boolean or one of `off`/`on`/`quorum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynchronousMode {
    #[default]
    Off,
    On,
    Quorum,
}

impl SynchronousMode {
    pub fn is_enabled(self) -> bool {
        self != SynchronousMode::Off
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SynchronousMode::Off => "off",
            SynchronousMode::On => "on",
            SynchronousMode::Quorum => "quorum",
        }
    }
}

impl fmt::Display for SynchronousMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `postgresql` section of the dynamic config.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicPostgresql {
    pub use_pg_rewind: bool,
    pub use_slots: bool,
    /// GUCs with their JSON values as stored (numbers stay numbers); see [`guc_text`].
    pub parameters: BTreeMap<String, Value>,
    /// `None` when the key is absent: the local `postgresql.pg_hba` then applies.
    pub pg_hba: Option<Vec<String>>,
    /// Keys of the `postgresql` section Warden does not interpret (`recovery_conf`,
    /// `pg_ident`, ...), kept verbatim.
    pub extra: Map<String, Value>,
}

impl Default for DynamicPostgresql {
    fn default() -> Self {
        Self {
            use_pg_rewind: false,
            use_slots: true,
            parameters: BTreeMap::new(),
            pg_hba: None,
            extra: Map::new(),
        }
    }
}

/// The typed dynamic configuration. Build one with [`DynamicConfig::from_json`] or start
/// from [`Default`] (Patroni's defaults). The timing fields keep Patroni's key names
/// and units (whole seconds); code that waits uses the `Duration` accessors.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfig {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub maximum_lag_on_failover: u64,
    pub maximum_lag_on_syncnode: i64,
    pub primary_start_timeout: u32,
    pub primary_stop_timeout: u32,
    pub check_timeline: bool,
    pub synchronous_mode: SynchronousMode,
    pub synchronous_mode_strict: bool,
    pub synchronous_node_count: u32,
    pub failsafe_mode: bool,
    /// Maintenance mode. Stored by Patroni as `pause: true`, removed (or null) when off.
    pub pause: bool,
    pub postgresql: DynamicPostgresql,
    /// `standby_cluster`, read and validated (`None`: absent, or not a standby cluster
    /// by Patroni's rule). The section itself stays verbatim in `extra`, which is what
    /// is written back.
    pub standby_cluster: Option<StandbyCluster>,
    /// Top-level keys Warden does not interpret, or keeps verbatim and reads where used
    /// (`standby_cluster`, `slots`, `ignore_slots`, `member_slots_ttl`, keys of other
    /// tools).
    pub extra: Map<String, Value>,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            loop_wait: DEFAULT_LOOP_WAIT,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            maximum_lag_on_failover: DEFAULT_MAXIMUM_LAG_ON_FAILOVER,
            maximum_lag_on_syncnode: DEFAULT_MAXIMUM_LAG_ON_SYNCNODE,
            primary_start_timeout: DEFAULT_PRIMARY_START_TIMEOUT,
            primary_stop_timeout: DEFAULT_PRIMARY_STOP_TIMEOUT,
            check_timeline: false,
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: DEFAULT_SYNCHRONOUS_NODE_COUNT,
            failsafe_mode: false,
            pause: false,
            postgresql: DynamicPostgresql::default(),
            standby_cluster: None,
            extra: Map::new(),
        }
    }
}

impl DynamicConfig {
    /// True when the config makes this cluster a standby cluster (Patroni's rule: a
    /// `standby_cluster` section with `host`, `port` or `restore_command`): its leader
    /// follows the remote primary instead of being promoted.
    pub fn is_standby_cluster(&self) -> bool {
        self.standby_cluster.is_some()
    }
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_parse;
#[cfg(test)]
mod tests_render;
#[cfg(test)]
mod tests_standby;
#[cfg(test)]
mod tests_validate;
#[cfg(test)]
mod tests_values;

impl DynamicConfig {
    /// `ttl`: how long the leader lease lives.
    pub fn ttl_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.ttl))
    }

    /// `loop_wait`: the pause between turns (at least one second).
    pub fn loop_wait_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.loop_wait.max(1)))
    }

    /// `primary_start_timeout`: how long a leader's primary may stay down before the
    /// key is released.
    pub fn primary_start_timeout_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.primary_start_timeout))
    }
}
