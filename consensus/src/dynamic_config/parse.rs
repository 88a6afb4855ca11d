//! Reading the `config` JSON into a [`DynamicConfig`]. Every problem is collected, not
//! just the first, so a user fixes a bad config in one round.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::keys::{classify_top, KeyClass, IMPLEMENTED_POSTGRESQL, KEPT_TOP};
use super::validate::check_sync_count;
use super::values::{
    boolean, control_char_problem, describe, guc_name_problem, integer, parse_sync_mode, present,
};
use super::{DynamicConfig, DynamicConfigError, DynamicPostgresql};

impl DynamicConfig {
    /// Parses and validates the `config` JSON. Unknown keys are kept in `extra` (see
    /// [`DynamicConfig::warnings`]); the first problem found is returned as the error.
    pub fn from_json(value: &Value) -> Result<Self, DynamicConfigError> {
        Self::from_json_all(value).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Like [`DynamicConfig::from_json`], but reports every problem found. The returned
    /// vector is never empty. Timing values are adjusted as in
    /// [`DynamicConfig::from_dcs_json`] (use [`DynamicConfig::from_written_json`] to
    /// see the adjustments).
    pub fn from_json_all(value: &Value) -> Result<Self, Vec<DynamicConfigError>> {
        Self::parse_with(value, true).map(|(config, _)| config)
    }

    /// A config a user writes (`bootstrap.dcs`, `PATCH /config`): every problem is an
    /// error except the timing values, which are adjusted the way Patroni adjusts them;
    /// also returns one line per adjustment, for the log.
    pub fn from_written_json(
        value: &Value,
    ) -> Result<(Self, Vec<String>), Vec<DynamicConfigError>> {
        Self::parse_with(value, true)
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
}

/// Collects errors while filling a [`DynamicConfig`]; a key that fails keeps its default
/// so the remaining keys are still checked.
#[derive(Default)]
struct Parser {
    /// Refuse a `synchronous_node_count` of 0 (else raise it to 1, see
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

        for (field, parsed) in [
            (&mut c.ttl, ttl),
            (&mut c.loop_wait, loop_wait),
            (&mut c.retry_timeout, retry_timeout),
        ] {
            if let Ok(Some(v)) = parsed {
                *field = v;
            }
        }
        if let Ok(Some(v)) = sync_count {
            c.synchronous_node_count = v;
        }
        if self.strict {
            check_sync_count(&c, &mut self.errors);
        }
        // Timing values that break the rule are adjusted, never refused, written or
        // read alike: Patroni accepts `{"ttl": 20}` with `retry_timeout: 10` and runs
        // with `loop_wait 1, retry_timeout 9`.
        self.adjustments = c.adjust_timeouts();
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
        match super::standby::parse(object, self.strict) {
            Ok(s) => c.standby_cluster = s,
            Err(errors) => self.errors.extend(errors),
        }
        c.extra = object
            .iter()
            .filter(|(k, _)| {
                KEPT_TOP.contains(&k.as_str())
                    || matches!(classify_top(k), KeyClass::PatroniOnly | KeyClass::Unknown)
            })
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
            let key = format!("postgresql.parameters.{name}");
            if let Some(why) = guc_name_problem(name) {
                self.error(&key, why);
                continue;
            }
            match v {
                // A null is Patroni's "remove this parameter" (JSON merge patch).
                Value::Null => {}
                Value::Array(_) | Value::Object(_) => self.error(
                    &key,
                    format!("expected a string, number or boolean, got {}", describe(v)),
                ),
                Value::String(text) if control_char_problem(text).is_some() => {
                    let why = control_char_problem(text).unwrap_or_default();
                    self.error(&key, why);
                }
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
                Some(s) if control_char_problem(s).is_some() => self.error(
                    &format!("{key}[{i}]"),
                    control_char_problem(s).unwrap_or_default(),
                ),
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
