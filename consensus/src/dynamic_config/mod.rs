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

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

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

    /// Written as a boolean for off/on: Patroni 3.x (and tools built on it) test the
    /// value for truthiness, so the string `"off"` would read as enabled there.
    fn to_json(self) -> Value {
        match self {
            SynchronousMode::Off => Value::Bool(false),
            SynchronousMode::On => Value::Bool(true),
            SynchronousMode::Quorum => Value::String("quorum".to_owned()),
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
/// from [`Default`] (Patroni's defaults).
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
    /// Top-level keys Warden does not interpret (`standby_cluster`, `slots`,
    /// `ignore_slots`, `member_slots_ttl`, keys of other tools), kept verbatim.
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
            extra: Map::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Key classification
// ---------------------------------------------------------------------------------------

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
pub const PATRONI_ONLY_TOP: &[&str] = &[
    "standby_cluster",
    "slots",
    "ignore_slots",
    "member_slots_ttl",
    "max_timelines_history",
    "primary_race_backoff",
];

const IMPLEMENTED_POSTGRESQL: &[&str] = &["use_pg_rewind", "use_slots", "parameters", "pg_hba"];

/// `postgresql.*` keys documented by Patroni that Warden keeps but does not act on.
pub const PATRONI_ONLY_POSTGRESQL: &[&str] = &[
    "recovery_conf",
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
    keys.extend(
        IMPLEMENTED_POSTGRESQL
            .iter()
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

fn classify_top(key: &str) -> KeyClass {
    if IMPLEMENTED_TOP.contains(&key) {
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
    if IMPLEMENTED_POSTGRESQL.contains(&key) {
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
            .chain(PATRONI_ONLY_TOP)
            .chain(ALIASES_TOP.iter().map(|(alias, _)| alias))
            .copied()
            .collect(),
        "postgresql" => IMPLEMENTED_POSTGRESQL
            .iter()
            .chain(PATRONI_ONLY_POSTGRESQL)
            .copied()
            .collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

impl DynamicConfig {
    /// Parses and validates the `config` JSON. Unknown keys are kept in `extra` (see
    /// [`DynamicConfig::warnings`]); the first problem found is returned as the error.
    pub fn from_json(value: &Value) -> Result<Self, DynamicConfigError> {
        Self::from_json_all(value).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Like [`DynamicConfig::from_json`], but reports every problem found. The returned
    /// vector is never empty.
    pub fn from_json_all(value: &Value) -> Result<Self, Vec<DynamicConfigError>> {
        Self::parse_with(value, true).map(|(config, _)| config)
    }

    /// For a value read back from the DCS, where Patroni or another tool may have
    /// written it: like [`DynamicConfig::from_json_all`], but timing values that break
    /// Warden's rules are adjusted the way Patroni adjusts them (raised to the minimum;
    /// `loop_wait`, then `retry_timeout`, lowered until `loop_wait + 2*retry_timeout <=
    /// ttl`) instead of rejected, so an existing cluster's config is never refused for
    /// them. Also returns one log line per adjustment (log them with
    /// [`DynamicConfig::warnings`]). Type errors are still errors.
    pub fn from_dcs_json(value: &Value) -> Result<(Self, Vec<String>), Vec<DynamicConfigError>> {
        Self::parse_with(value, false)
    }

    fn parse_with(
        value: &Value,
        strict: bool,
    ) -> Result<(Self, Vec<String>), Vec<DynamicConfigError>> {
        let Some(object) = value.as_object() else {
            // `null` is what an empty `bootstrap.dcs:` section parses to.
            if value.is_null() {
                return Ok((Self::default(), Vec::new()));
            }
            return Err(vec![DynamicConfigError::new(
                "(config)",
                format!("expected an object, got {}", describe(value)),
            )]);
        };
        let mut p = Parser {
            strict,
            ..Parser::default()
        };
        let config = p.config(object);
        if p.errors.is_empty() {
            Ok((config, p.adjustments))
        } else {
            Err(p.errors)
        }
    }

    /// Brings the timing values into Warden's rules as Patroni does, returning one line
    /// per change (empty when nothing changed).
    pub fn adjust_timeouts(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut raise = |key: &str, field: &mut u32, min: u32| {
            if *field < min {
                notes.push(format!(
                    "{key}={} is below the minimum; adjusted to {min}",
                    *field
                ));
                *field = min;
            }
        };
        raise("loop_wait", &mut self.loop_wait, 1);
        raise("retry_timeout", &mut self.retry_timeout, 1);
        raise("ttl", &mut self.ttl, MIN_TTL);
        raise(
            "synchronous_node_count",
            &mut self.synchronous_node_count,
            1,
        );
        let (ttl, loop_wait, retry) = (
            u64::from(self.ttl),
            u64::from(self.loop_wait),
            u64::from(self.retry_timeout),
        );
        if 1 + 2 * retry > ttl {
            // Even loop_wait 1 is too long: shorten the retries as well.
            self.loop_wait = 1;
            self.retry_timeout = (self.ttl - 1) / 2;
            notes.push(format!(
                "violated the rule loop_wait + 2*retry_timeout <= ttl (ttl={ttl}); adjusted \
                 loop_wait from {loop_wait} to 1 and retry_timeout from {retry} to {}",
                self.retry_timeout
            ));
        } else if loop_wait + 2 * retry > ttl {
            self.loop_wait = self.ttl - 2 * self.retry_timeout;
            notes.push(format!(
                "violated the rule loop_wait + 2*retry_timeout <= ttl (ttl={ttl}, \
                 retry_timeout={retry}); adjusted loop_wait from {loop_wait} to {}",
                self.loop_wait
            ));
        }
        notes
    }

    /// Checks the value rules on the typed fields (useful for a config built in code;
    /// [`DynamicConfig::from_json`] applies them already).
    pub fn validate(&self) -> Result<(), Vec<DynamicConfigError>> {
        let mut errors = Vec::new();
        check_timeouts(self, &mut errors);
        check_sync_count(self, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The full effective configuration as Patroni stores it: every typed field (with its
    /// default when it was not set), `pause` only while paused, and every `extra` key.
    pub fn to_json(&self) -> Value {
        let mut out = self.extra.clone();
        let mut put = |key: &str, value: Value| {
            out.insert(key.to_owned(), value);
        };
        put("ttl", self.ttl.into());
        put("loop_wait", self.loop_wait.into());
        put("retry_timeout", self.retry_timeout.into());
        put(
            "maximum_lag_on_failover",
            self.maximum_lag_on_failover.into(),
        );
        put(
            "maximum_lag_on_syncnode",
            self.maximum_lag_on_syncnode.into(),
        );
        put("primary_start_timeout", self.primary_start_timeout.into());
        put("primary_stop_timeout", self.primary_stop_timeout.into());
        put("check_timeline", self.check_timeline.into());
        put("synchronous_mode", self.synchronous_mode.to_json());
        put(
            "synchronous_mode_strict",
            self.synchronous_mode_strict.into(),
        );
        put("synchronous_node_count", self.synchronous_node_count.into());
        put("failsafe_mode", self.failsafe_mode.into());
        put("postgresql", self.postgresql.to_json());
        if self.pause {
            out.insert("pause".to_owned(), Value::Bool(true));
        } else {
            // Patroni's `resume` deletes the key; never leave a stale extra copy.
            out.remove("pause");
        }
        Value::Object(out)
    }

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
                    KeyClass::PatroniOnly if path == "standby_cluster" => out.push(format!(
                        "{path}: standby clusters are not implemented by Warden yet; ignored, so \
                         this cluster does not replicate from the remote primary"
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

    /// True when a non-empty `standby_cluster` section is present. Warden does not run
    /// standby clusters yet, but must not report such a cluster's leader as `/primary`.
    pub fn is_standby_cluster(&self) -> bool {
        match self.extra.get("standby_cluster") {
            Some(Value::Object(section)) => !section.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        }
    }
}

impl DynamicPostgresql {
    fn to_json(&self) -> Value {
        let mut out = self.extra.clone();
        out.insert("use_pg_rewind".to_owned(), self.use_pg_rewind.into());
        out.insert("use_slots".to_owned(), self.use_slots.into());
        let parameters: Map<String, Value> = self
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.insert("parameters".to_owned(), Value::Object(parameters));
        match &self.pg_hba {
            Some(lines) => {
                out.insert("pg_hba".to_owned(), lines.clone().into());
            }
            None => {
                out.remove("pg_hba");
            }
        }
        Value::Object(out)
    }
}

impl Serialize for DynamicConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DynamicConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_json_all(&value).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            serde::de::Error::custom(text.join("; "))
        })
    }
}

/// PostgreSQL's text form of a GUC value given as JSON: booleans become `on`/`off`,
/// numbers their decimal text. `None` for null, arrays and objects, which are not GUCs.
pub fn guc_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("on".to_owned()),
        Value::Bool(false) => Some("off".to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Collects errors while filling a [`DynamicConfig`]; a key that fails keeps its default
/// so the remaining keys are still checked.
#[derive(Default)]
struct Parser {
    /// Reject values that break the timing rules (else adjust them, see
    /// [`DynamicConfig::from_dcs_json`]).
    strict: bool,
    errors: Vec<DynamicConfigError>,
    adjustments: Vec<String>,
}

impl Parser {
    fn error(&mut self, key: &str, reason: impl Into<String>) {
        self.errors.push(DynamicConfigError::new(key, reason));
    }

    fn config(&mut self, object: &Map<String, Value>) -> DynamicConfig {
        let mut c = DynamicConfig::default();
        let ttl = self.u32_key(object, "ttl");
        let loop_wait = self.u32_key(object, "loop_wait");
        let retry_timeout = self.u32_key(object, "retry_timeout");
        let start = self.aliased_u32(object, "primary_start_timeout", "master_start_timeout");
        let stop = self.aliased_u32(object, "primary_stop_timeout", "master_stop_timeout");
        let sync_count = self.u32_key(object, "synchronous_node_count");

        let mut timeouts_ok = true;
        for (field, parsed) in [
            (&mut c.ttl, ttl),
            (&mut c.loop_wait, loop_wait),
            (&mut c.retry_timeout, retry_timeout),
        ] {
            match parsed {
                Ok(Some(v)) => *field = v,
                Ok(None) => {}
                Err(()) => timeouts_ok = false,
            }
        }
        if let Ok(Some(v)) = sync_count {
            c.synchronous_node_count = v;
        }
        if !self.strict {
            self.adjustments = c.adjust_timeouts();
        } else {
            // A timing key that failed to parse would make the rule check misleading.
            if timeouts_ok {
                check_timeouts(&c, &mut self.errors);
            }
            check_sync_count(&c, &mut self.errors);
        }
        c.primary_start_timeout = start.unwrap_or(c.primary_start_timeout);
        c.primary_stop_timeout = stop.unwrap_or(c.primary_stop_timeout);

        if let Some(v) = self.int_key(object, "maximum_lag_on_failover", 0, u64::MAX.into()) {
            // In range by the bounds just checked.
            c.maximum_lag_on_failover = u64::try_from(v).unwrap_or(u64::MAX);
        }
        let (lo, hi) = (i64::MIN.into(), i64::MAX.into());
        if let Some(v) = self.int_key(object, "maximum_lag_on_syncnode", lo, hi) {
            c.maximum_lag_on_syncnode = i64::try_from(v).unwrap_or(i64::MAX);
        }
        self.bool_key(object, "check_timeline", &mut c.check_timeline);
        self.bool_key(
            object,
            "synchronous_mode_strict",
            &mut c.synchronous_mode_strict,
        );
        self.bool_key(object, "failsafe_mode", &mut c.failsafe_mode);
        self.bool_key(object, "pause", &mut c.pause);
        if let Some(value) = present(object, "synchronous_mode") {
            match parse_sync_mode(value) {
                Some(mode) => c.synchronous_mode = mode,
                None => self.error(
                    "synchronous_mode",
                    format!(
                        "expected one of off, on, quorum (or a boolean), got {}",
                        describe(value)
                    ),
                ),
            }
        }
        if let Some(value) = present(object, "postgresql") {
            c.postgresql = self.postgresql(value);
        }
        c.extra = object
            .iter()
            .filter(|(k, _)| matches!(classify_top(k), KeyClass::PatroniOnly | KeyClass::Unknown))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        c
    }

    fn postgresql(&mut self, value: &Value) -> DynamicPostgresql {
        let mut pg = DynamicPostgresql::default();
        let Some(object) = value.as_object() else {
            self.error(
                "postgresql",
                format!("expected an object, got {}", describe(value)),
            );
            return pg;
        };
        self.bool_key_at(
            object,
            "postgresql.",
            "use_pg_rewind",
            &mut pg.use_pg_rewind,
        );
        self.bool_key_at(object, "postgresql.", "use_slots", &mut pg.use_slots);
        if let Some(params) = present(object, "parameters") {
            pg.parameters = self.parameters(params);
        }
        if let Some(lines) = present(object, "pg_hba") {
            pg.pg_hba = self.string_list("postgresql.pg_hba", lines);
        }
        pg.extra = object
            .iter()
            .filter(|(k, _)| !IMPLEMENTED_POSTGRESQL.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pg
    }

    fn parameters(&mut self, value: &Value) -> BTreeMap<String, Value> {
        let Some(object) = value.as_object() else {
            self.error(
                "postgresql.parameters",
                format!("expected an object, got {}", describe(value)),
            );
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (name, v) in object {
            match v {
                // A null is Patroni's "remove this parameter" (JSON merge patch).
                Value::Null => {}
                Value::Array(_) | Value::Object(_) => self.error(
                    &format!("postgresql.parameters.{name}"),
                    format!("expected a string, number or boolean, got {}", describe(v)),
                ),
                _ => {
                    out.insert(name.clone(), v.clone());
                }
            }
        }
        out
    }

    fn string_list(&mut self, key: &str, value: &Value) -> Option<Vec<String>> {
        let Some(items) = value.as_array() else {
            self.error(
                key,
                format!("expected a list of strings, got {}", describe(value)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_owned()),
                None => self.error(
                    &format!("{key}[{i}]"),
                    format!("expected a string, got {}", describe(item)),
                ),
            }
        }
        Some(out)
    }

    /// `Ok(None)`: absent; `Err(())`: present but invalid (error recorded).
    fn u32_key(&mut self, object: &Map<String, Value>, key: &str) -> Result<Option<u32>, ()> {
        let Some(value) = present(object, key) else {
            return Ok(None);
        };
        match self.int_value(key, value, 0, u32::MAX.into()) {
            Some(v) => Ok(Some(u32::try_from(v).unwrap_or(u32::MAX))),
            None => Err(()),
        }
    }

    /// The Patroni 3+ name wins over the legacy `master_*` name when both are set.
    fn aliased_u32(&mut self, object: &Map<String, Value>, key: &str, alias: &str) -> Option<u32> {
        let primary = self.u32_key(object, key);
        let legacy = self.u32_key(object, alias);
        match (primary, legacy) {
            (Ok(Some(v)), _) => Some(v),
            (Ok(None), Ok(Some(v))) => Some(v),
            _ => None,
        }
    }

    fn int_key(
        &mut self,
        object: &Map<String, Value>,
        key: &str,
        min: i128,
        max: i128,
    ) -> Option<i128> {
        let value = present(object, key)?;
        self.int_value(key, value, min, max)
    }

    fn int_value(&mut self, key: &str, value: &Value, min: i128, max: i128) -> Option<i128> {
        let Some(v) = integer(value) else {
            self.error(key, format!("expected an integer, got {}", describe(value)));
            return None;
        };
        if v < min {
            let reason = if min == 0 {
                format!("must not be negative, got {v}")
            } else {
                format!("must be at least {min}, got {v}")
            };
            self.error(key, reason);
            return None;
        }
        if v > max {
            self.error(key, format!("must be at most {max}, got {v}"));
            return None;
        }
        Some(v)
    }

    fn bool_key(&mut self, object: &Map<String, Value>, key: &str, field: &mut bool) {
        self.bool_key_at(object, "", key, field);
    }

    fn bool_key_at(
        &mut self,
        object: &Map<String, Value>,
        prefix: &str,
        key: &str,
        field: &mut bool,
    ) {
        let Some(value) = present(object, key) else {
            return;
        };
        match boolean(value) {
            Some(b) => *field = b,
            None => self.error(
                &format!("{prefix}{key}"),
                format!(
                    "expected a boolean (true or false), got {}",
                    describe(value)
                ),
            ),
        }
    }
}

/// Patroni's timing rule plus Warden's floors. The rule is only checked once the floors
/// hold, so one bad value gives one error.
fn check_timeouts(config: &DynamicConfig, errors: &mut Vec<DynamicConfigError>) {
    let (ttl, loop_wait, retry) = (config.ttl, config.loop_wait, config.retry_timeout);
    let mut floors_ok = true;
    if ttl < MIN_TTL {
        errors.push(DynamicConfigError::new(
            "ttl",
            format!("must be at least {MIN_TTL} seconds, got {ttl}"),
        ));
        floors_ok = false;
    }
    for (key, value) in [("loop_wait", loop_wait), ("retry_timeout", retry)] {
        if value == 0 {
            errors.push(DynamicConfigError::new(
                key,
                "must be at least 1 second, got 0",
            ));
            floors_ok = false;
        }
    }
    let needed = u64::from(loop_wait) + 2 * u64::from(retry);
    if floors_ok && needed > u64::from(ttl) {
        errors.push(DynamicConfigError::new(
            "ttl",
            format!(
                "loop_wait + 2*retry_timeout ({loop_wait} + 2*{retry} = {needed}) must not \
                 exceed ttl ({ttl}); lower loop_wait or retry_timeout, or raise ttl"
            ),
        ));
    }
}

fn check_sync_count(config: &DynamicConfig, errors: &mut Vec<DynamicConfigError>) {
    if config.synchronous_node_count == 0 {
        errors.push(DynamicConfigError::new(
            "synchronous_node_count",
            "must be at least 1, got 0",
        ));
    }
}

/// The value of `key`, treating an explicit null like an absent key: Patroni's PATCH
/// semantics make null mean "unset".
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// An integer given as a JSON integer, an integral float (`30.0`) or a numeric string
/// (`"30"`), as Patroni's `parse_int` accepts.
fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i.into())
            } else if let Some(u) = n.as_u64() {
                Some(u.into())
            } else {
                n.as_f64().and_then(integral_float)
            }
        }
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i128>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(integral_float))
        }
        _ => None,
    }
}

fn integral_float(f: f64) -> Option<i128> {
    // 2^100 is far beyond every range checked here, and keeps the cast exact.
    let limit = 2f64.powi(100);
    if f.is_finite() && f.fract() == 0.0 && f.abs() < limit {
        // Exact: integral and well inside i128.
        Some(f as i128)
    } else {
        None
    }
}

/// A boolean given as JSON `true`/`false`, the integers 0/1, or the words PostgreSQL and
/// Patroni's `parse_bool` accept (`on`/`off`, `yes`/`no`, `true`/`false`, `1`/`0`).
pub fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => bool_word(s),
        _ => None,
    }
}

/// The boolean meaning of a word, case-insensitive.
pub fn bool_word(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn parse_sync_mode(value: &Value) -> Option<SynchronousMode> {
    if let Some(s) = value.as_str() {
        if s.trim().eq_ignore_ascii_case("quorum") {
            return Some(SynchronousMode::Quorum);
        }
    }
    boolean(value).map(|on| {
        if on {
            SynchronousMode::On
        } else {
            SynchronousMode::Off
        }
    })
}

/// A short JSON rendering of a value for error messages: strings keep their quotes.
pub fn describe(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(value: &Value) -> Vec<String> {
        match DynamicConfig::from_json_all(value) {
            Ok(c) => panic!("expected errors, parsed {c:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn parse(value: &Value) -> DynamicConfig {
        match DynamicConfig::from_json_all(value) {
            Ok(c) => c,
            Err(errors) => panic!("unexpected errors: {errors:?}"),
        }
    }

    /// The `bootstrap.dcs` section of the example in the Patroni contract reference.
    fn contract_example() -> Value {
        json!({
            "ttl": 30,
            "loop_wait": 10,
            "retry_timeout": 10,
            "maximum_lag_on_failover": 1048576,
            "postgresql": {
                "use_pg_rewind": true,
                "use_slots": true,
                "parameters": {
                    "wal_level": "replica",
                    "hot_standby": "on",
                    "max_wal_senders": 10,
                    "max_replication_slots": 10,
                    "wal_log_hints": "on"
                }
            }
        })
    }

    #[test]
    fn contract_example_parses() {
        let c = parse(&contract_example());
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 10, 10));
        assert_eq!(c.maximum_lag_on_failover, 1_048_576);
        assert!(c.postgresql.use_pg_rewind);
        assert!(c.postgresql.use_slots);
        assert_eq!(c.postgresql.parameters["max_wal_senders"], json!(10));
        assert_eq!(c.postgresql.parameters["hot_standby"], json!("on"));
        assert_eq!(c.postgresql.pg_hba, None);
        assert!(c.extra.is_empty());
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn empty_object_and_null_give_patroni_defaults() {
        for value in [json!({}), Value::Null] {
            let c = parse(&value);
            assert_eq!(c, DynamicConfig::default());
            assert_eq!(c.ttl, 30);
            assert_eq!(c.loop_wait, 10);
            assert_eq!(c.retry_timeout, 10);
            assert_eq!(c.maximum_lag_on_failover, 1_048_576);
            assert_eq!(c.maximum_lag_on_syncnode, -1);
            assert_eq!(c.primary_start_timeout, 300);
            assert_eq!(c.primary_stop_timeout, 0);
            assert!(!c.check_timeline);
            assert_eq!(c.synchronous_mode, SynchronousMode::Off);
            assert!(!c.synchronous_mode_strict);
            assert_eq!(c.synchronous_node_count, 1);
            assert!(!c.failsafe_mode);
            assert!(!c.pause);
            assert!(!c.postgresql.use_pg_rewind);
            assert!(c.postgresql.use_slots);
            assert!(c.postgresql.parameters.is_empty());
        }
        assert!(DynamicConfig::default().validate().is_ok());
    }

    #[test]
    fn every_typed_key_is_read() {
        let c = parse(&json!({
            "ttl": 10, "loop_wait": 1, "retry_timeout": 3,
            "maximum_lag_on_failover": 0, "maximum_lag_on_syncnode": 5000,
            "primary_start_timeout": 0, "primary_stop_timeout": 15,
            "check_timeline": true, "synchronous_mode": "quorum",
            "synchronous_mode_strict": true, "synchronous_node_count": 2,
            "failsafe_mode": true, "pause": true,
            "postgresql": {"use_pg_rewind": true, "use_slots": false,
                           "pg_hba": ["local all all trust"]}
        }));
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (10, 1, 3));
        assert_eq!(c.maximum_lag_on_failover, 0);
        assert_eq!(c.maximum_lag_on_syncnode, 5000);
        assert_eq!((c.primary_start_timeout, c.primary_stop_timeout), (0, 15));
        assert!(c.check_timeline && c.synchronous_mode_strict && c.failsafe_mode && c.pause);
        assert_eq!(c.synchronous_mode, SynchronousMode::Quorum);
        assert_eq!(c.synchronous_node_count, 2);
        assert!(c.postgresql.use_pg_rewind && !c.postgresql.use_slots);
        assert_eq!(
            c.postgresql.pg_hba,
            Some(vec!["local all all trust".to_owned()])
        );
    }

    #[test]
    fn synchronous_mode_accepts_bools_and_words() {
        let cases = [
            (json!(true), SynchronousMode::On),
            (json!(false), SynchronousMode::Off),
            (json!("on"), SynchronousMode::On),
            (json!("off"), SynchronousMode::Off),
            (json!("ON"), SynchronousMode::On),
            (json!("quorum"), SynchronousMode::Quorum),
            (json!("Quorum"), SynchronousMode::Quorum),
            (json!("true"), SynchronousMode::On),
            (json!(Value::Null), SynchronousMode::Off),
        ];
        for (value, expected) in cases {
            let c = parse(&json!({ "synchronous_mode": value.clone() }));
            assert_eq!(c.synchronous_mode, expected, "for {value}");
        }
        assert_eq!(
            errors_of(&json!({"synchronous_mode": "sometimes"})),
            vec!["synchronous_mode: expected one of off, on, quorum (or a boolean), got \"sometimes\""]
        );
        assert!(SynchronousMode::Quorum.is_enabled() && !SynchronousMode::Off.is_enabled());
    }

    #[test]
    fn pause_forms() {
        assert!(parse(&json!({"pause": true})).pause);
        assert!(parse(&json!({"pause": "true"})).pause);
        assert!(!parse(&json!({"pause": null})).pause);
        assert!(!parse(&json!({"pause": false})).pause);
        assert!(!parse(&json!({})).pause);
        assert_eq!(
            errors_of(&json!({"pause": "later"})),
            vec!["pause: expected a boolean (true or false), got \"later\""]
        );
    }

    #[test]
    fn numeric_strings_and_integral_floats_are_accepted() {
        let c = parse(
            &json!({"ttl": "30", "loop_wait": " 5 ", "retry_timeout": 10.0,
                             "maximum_lag_on_failover": "2097152"}),
        );
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 5, 10));
        assert_eq!(c.maximum_lag_on_failover, 2_097_152);
        let c = parse(&json!({"maximum_lag_on_failover": u64::MAX}));
        assert_eq!(c.maximum_lag_on_failover, u64::MAX);
    }

    #[test]
    fn wrong_types_name_the_key() {
        assert_eq!(
            errors_of(&json!({"ttl": "abc"})),
            vec!["ttl: expected an integer, got \"abc\""]
        );
        assert_eq!(
            errors_of(&json!({"loop_wait": 1.5})),
            vec!["loop_wait: expected an integer, got 1.5"]
        );
        assert_eq!(
            errors_of(&json!({"retry_timeout": true})),
            vec!["retry_timeout: expected an integer, got true"]
        );
        assert_eq!(
            errors_of(&json!({"check_timeline": "maybe"})),
            vec!["check_timeline: expected a boolean (true or false), got \"maybe\""]
        );
        assert_eq!(
            errors_of(&json!({"postgresql": {"use_slots": [1]}})),
            vec!["postgresql.use_slots: expected a boolean (true or false), got [1]"]
        );
        assert_eq!(
            errors_of(&json!({"postgresql": "yes"})),
            vec!["postgresql: expected an object, got \"yes\""]
        );
        assert_eq!(
            errors_of(&json!({"postgresql": {"parameters": ["a"]}})),
            vec!["postgresql.parameters: expected an object, got [\"a\"]"]
        );
        assert_eq!(
            errors_of(&json!({"postgresql": {"parameters": {"x": {"y": 1}}}})),
            vec!["postgresql.parameters.x: expected a string, number or boolean, got {\"y\":1}"]
        );
        assert_eq!(
            errors_of(&json!({"postgresql": {"pg_hba": "host all all 0/0 md5"}})),
            vec!["postgresql.pg_hba: expected a list of strings, got \"host all all 0/0 md5\""]
        );
        assert_eq!(
            errors_of(&json!({"postgresql": {"pg_hba": ["ok", 5]}})),
            vec!["postgresql.pg_hba[1]: expected a string, got 5"]
        );
        assert_eq!(
            errors_of(&json!([1, 2])),
            vec!["(config): expected an object, got [1,2]"]
        );
    }

    #[test]
    fn negative_and_out_of_range_numbers() {
        assert_eq!(
            errors_of(&json!({"maximum_lag_on_failover": -1})),
            vec!["maximum_lag_on_failover: must not be negative, got -1"]
        );
        assert_eq!(
            errors_of(&json!({"primary_start_timeout": -5})),
            vec!["primary_start_timeout: must not be negative, got -5"]
        );
        assert_eq!(
            errors_of(&json!({"primary_stop_timeout": "-1"})),
            vec!["primary_stop_timeout: must not be negative, got -1"]
        );
        assert_eq!(
            errors_of(&json!({"synchronous_node_count": 5_000_000_000_u64})),
            vec!["synchronous_node_count: must be at most 4294967295, got 5000000000"]
        );
        // Negative syncnode lag is Patroni's "disabled".
        assert_eq!(
            parse(&json!({"maximum_lag_on_syncnode": -100})).maximum_lag_on_syncnode,
            -100
        );
    }

    #[test]
    fn ttl_floor_and_timing_rule() {
        assert_eq!(
            errors_of(&json!({"ttl": 1})),
            vec!["ttl: must be at least 3 seconds, got 1"]
        );
        assert_eq!(
            errors_of(&json!({"ttl": 20, "loop_wait": 3})),
            vec![
                "ttl: loop_wait + 2*retry_timeout (3 + 2*10 = 23) must not exceed ttl (20); \
                 lower loop_wait or retry_timeout, or raise ttl"
            ]
        );
        assert_eq!(
            errors_of(&json!({"loop_wait": 0})),
            vec!["loop_wait: must be at least 1 second, got 0"]
        );
        assert_eq!(
            errors_of(&json!({"ttl": 5, "retry_timeout": 0, "loop_wait": 1})),
            vec!["retry_timeout: must be at least 1 second, got 0"]
        );
        // The smallest legal setting, and the rule at equality.
        let c = parse(&json!({"ttl": 3, "loop_wait": 1, "retry_timeout": 1}));
        assert_eq!(c.ttl, 3);
        parse(&json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10}));
        parse(&json!({"ttl": 10, "loop_wait": 1, "retry_timeout": 3}));
        // A key that failed to parse does not trigger a second, misleading rule error.
        assert_eq!(
            errors_of(&json!({"ttl": "x", "loop_wait": 10})),
            vec!["ttl: expected an integer, got \"x\""]
        );
    }

    #[test]
    fn dcs_reads_adjust_timeouts_like_patroni() {
        // A Patroni cluster's config Warden's strict rule would refuse.
        let value = json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 10, "slots": {}});
        assert!(DynamicConfig::from_json(&value).is_err());
        let (c, notes) = DynamicConfig::from_dcs_json(&value).unwrap();
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (20, 1, 9));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("adjusted loop_wait from 10 to 1 and retry_timeout from 10 to 9"));
        assert!(c.extra.contains_key("slots"));

        let (c, notes) =
            DynamicConfig::from_dcs_json(&json!({"ttl": 25, "loop_wait": 10})).unwrap();
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (25, 5, 10));
        assert!(
            notes[0].contains("adjusted loop_wait from 10 to 5"),
            "{notes:?}"
        );

        let value =
            json!({"ttl": 1, "loop_wait": 0, "retry_timeout": 0, "synchronous_node_count": 0});
        let (c, notes) = DynamicConfig::from_dcs_json(&value).unwrap();
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (3, 1, 1));
        assert_eq!(c.synchronous_node_count, 1);
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(c.validate().is_ok());

        let (_, notes) = DynamicConfig::from_dcs_json(&json!({})).unwrap();
        assert!(notes.is_empty());
        // Type errors are still errors.
        assert!(DynamicConfig::from_dcs_json(&json!({"ttl": "x"})).is_err());
    }

    #[test]
    fn synchronous_node_count_must_be_positive() {
        assert_eq!(
            errors_of(&json!({"synchronous_node_count": 0})),
            vec!["synchronous_node_count: must be at least 1, got 0"]
        );
        let c = DynamicConfig {
            synchronous_node_count: 0,
            ttl: 2,
            ..DynamicConfig::default()
        };
        let errors = c.validate().unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn all_errors_are_reported_and_from_json_returns_the_first() {
        let value = json!({"ttl": "abc", "maximum_lag_on_failover": -1,
                           "synchronous_mode": 7, "postgresql": {"use_slots": "x"}});
        let errors = errors_of(&value);
        assert_eq!(errors.len(), 4, "{errors:?}");
        let first = DynamicConfig::from_json(&value).unwrap_err();
        assert_eq!(first.key, "ttl");
        assert_eq!(first.to_string(), "ttl: expected an integer, got \"abc\"");
    }

    #[test]
    fn legacy_master_timeouts_are_aliases() {
        let c = parse(&json!({"master_start_timeout": 60, "master_stop_timeout": 5}));
        assert_eq!((c.primary_start_timeout, c.primary_stop_timeout), (60, 5));
        assert!(c.extra.is_empty());
        let c = parse(&json!({"master_start_timeout": 60, "primary_start_timeout": 30}));
        assert_eq!(c.primary_start_timeout, 30);
        let out = c.to_json();
        assert_eq!(out["primary_start_timeout"], json!(30));
        assert!(out.get("master_start_timeout").is_none());
        assert_eq!(
            errors_of(&json!({"master_start_timeout": -1})),
            vec!["master_start_timeout: must not be negative, got -1"]
        );
    }

    #[test]
    fn extra_keys_survive_a_round_trip() {
        let input = json!({
            "ttl": 30,
            "standby_cluster": {"host": "10.0.0.1", "port": 5432},
            "slots": {"logical1": {"type": "logical", "database": "app", "plugin": "pgoutput"}},
            "ignore_slots": [{"name": "ext"}],
            "member_slots_ttl": "30min",
            "my_tool_marker": {"owner": "ops"},
            "postgresql": {
                "use_slots": true,
                "recovery_conf": {"restore_command": "cp /a/%f %p"},
                "pg_ident": ["map1 sys1 pg1"],
                "parameters": {"max_connections": 200}
            }
        });
        let c = parse(&input);
        assert_eq!(c.extra.len(), 5);
        assert!(c.postgresql.extra.contains_key("recovery_conf"));
        let out = c.to_json();
        for key in [
            "standby_cluster",
            "slots",
            "ignore_slots",
            "member_slots_ttl",
            "my_tool_marker",
        ] {
            assert_eq!(out[key], input[key], "{key}");
        }
        assert_eq!(
            out["postgresql"]["recovery_conf"],
            input["postgresql"]["recovery_conf"]
        );
        assert_eq!(
            out["postgresql"]["pg_ident"],
            input["postgresql"]["pg_ident"]
        );
        assert_eq!(
            out["postgresql"]["parameters"]["max_connections"],
            json!(200)
        );
        // The written form parses back to the same value.
        assert_eq!(parse(&out), c);
        assert_eq!(parse(&out).to_json(), out);
    }

    #[test]
    fn to_json_writes_the_full_effective_config() {
        let out = DynamicConfig::default().to_json();
        assert_eq!(
            out,
            json!({
                "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
                "maximum_lag_on_failover": 1048576, "maximum_lag_on_syncnode": -1,
                "primary_start_timeout": 300, "primary_stop_timeout": 0,
                "check_timeline": false, "synchronous_mode": false,
                "synchronous_mode_strict": false, "synchronous_node_count": 1,
                "failsafe_mode": false,
                "postgresql": {"use_pg_rewind": false, "use_slots": true, "parameters": {}}
            })
        );
        let paused = DynamicConfig {
            pause: true,
            synchronous_mode: SynchronousMode::Quorum,
            ..DynamicConfig::default()
        };
        let out = paused.to_json();
        assert_eq!(out["pause"], json!(true));
        assert_eq!(out["synchronous_mode"], json!("quorum"));
        let on = DynamicConfig {
            synchronous_mode: SynchronousMode::On,
            ..DynamicConfig::default()
        };
        assert_eq!(on.to_json()["synchronous_mode"], json!(true));
    }

    #[test]
    fn typed_fields_win_over_colliding_extra_entries() {
        let mut c = DynamicConfig::default();
        c.extra.insert("ttl".to_owned(), json!(999));
        c.extra.insert("pause".to_owned(), json!(true));
        let out = c.to_json();
        assert_eq!(out["ttl"], json!(30));
        assert!(out.get("pause").is_none());
    }

    #[test]
    fn null_parameters_are_dropped() {
        let c = parse(&json!({"postgresql": {"parameters": {"a": null, "b": 1}}}));
        assert_eq!(c.postgresql.parameters.len(), 1);
    }

    #[test]
    fn warnings_name_preserved_keys() {
        let c = parse(&json!({
            "slots": {"s": {"type": "physical"}},
            "standby_cluster": {"host": "h"},
            "mystery": 1,
            "ignored_null": null,
            "postgresql": {"pg_ident": [], "weird": true}
        }));
        let w = c.warnings();
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w.iter().any(|m| m.starts_with("mystery: unknown key")));
        assert!(w
            .iter()
            .any(|m| m.starts_with("postgresql.weird: unknown key")));
        assert!(w
            .iter()
            .any(|m| m.starts_with("slots: Patroni setting not implemented")));
        assert!(w
            .iter()
            .any(|m| m.starts_with("postgresql.pg_ident: Patroni setting")));
        assert!(w
            .iter()
            .any(|m| m.starts_with("standby_cluster: standby clusters")));
        assert!(c.is_standby_cluster());
        assert!(!parse(&json!({"standby_cluster": {}})).is_standby_cluster());
        assert!(!parse(&json!({"standby_cluster": null})).is_standby_cluster());
    }

    #[test]
    fn key_classification() {
        assert_eq!(classify_key("ttl"), KeyClass::Implemented);
        assert_eq!(classify_key("postgresql"), KeyClass::Implemented);
        assert_eq!(classify_key("postgresql.use_slots"), KeyClass::Implemented);
        assert_eq!(
            classify_key("master_start_timeout"),
            KeyClass::Alias {
                canonical: "primary_start_timeout"
            }
        );
        assert_eq!(classify_key("standby_cluster"), KeyClass::PatroniOnly);
        assert_eq!(
            classify_key("postgresql.recovery_conf"),
            KeyClass::PatroniOnly
        );
        assert_eq!(classify_key("tll"), KeyClass::Unknown);
        assert_eq!(classify_key("postgresql.use_slot"), KeyClass::Unknown);
        assert_eq!(
            classify_key("postgresql.parameters.work_mem"),
            KeyClass::FreeForm
        );
        assert_eq!(classify_key("slots.my_slot"), KeyClass::FreeForm);
        assert_eq!(classify_key("bogus.child"), KeyClass::Unknown);
        assert!(known_keys().contains(&"postgresql.pg_hba".to_owned()));
        assert!(patroni_only_keys().contains(&"member_slots_ttl".to_owned()));
        assert!(candidate_keys("").contains(&"loop_wait"));
        assert!(candidate_keys("postgresql").contains(&"use_pg_rewind"));
    }

    #[test]
    fn guc_text_uses_postgresql_forms() {
        assert_eq!(guc_text(&json!(true)).as_deref(), Some("on"));
        assert_eq!(guc_text(&json!(false)).as_deref(), Some("off"));
        assert_eq!(guc_text(&json!(10)).as_deref(), Some("10"));
        assert_eq!(guc_text(&json!(0.9)).as_deref(), Some("0.9"));
        assert_eq!(guc_text(&json!("replica")).as_deref(), Some("replica"));
        assert_eq!(guc_text(&json!(null)), None);
        assert_eq!(guc_text(&json!([1])), None);
    }

    #[test]
    fn serde_impls_use_the_json_form() {
        let c = parse(&contract_example());
        let text = serde_json::to_string(&c).unwrap();
        let back: DynamicConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<DynamicConfig>(r#"{"ttl": 1}"#).unwrap_err();
        assert!(
            err.to_string().contains("ttl: must be at least 3 seconds"),
            "{err}"
        );
    }

    #[test]
    fn describe_truncates_long_values() {
        let long = Value::String("x".repeat(200));
        assert!(describe(&long).ends_with("..."));
        assert!(describe(&long).chars().count() <= 63);
    }
}
