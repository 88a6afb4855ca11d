//! Writing a [`DynamicConfig`] back in the JSON form Patroni stores, and the serde impls
//! built on it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{DynamicConfig, DynamicPostgresql, SynchronousMode};

impl SynchronousMode {
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

impl DynamicConfig {
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
