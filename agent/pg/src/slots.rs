//! Which replication slots a member keeps, beyond its peers' own (see `leader.rs`):
//! Patroni's permanent slots (`slots` in the dynamic config, physical and logical),
//! the slots `ignore_slots` tells the agent to leave alone, and the slots of Warden's
//! own that are never the slot manager's to drop.
//!
//! Pure: the probe says what exists, the dynamic config what should; `leader.rs` acts.

use serde_json::Value;
use warden_consensus::DynamicConfig;

/// The archiver's `pg_receivewal` slot (the backup side creates and drops it).
pub const ARCHIVER_SLOT: &str = "warden_archiver";

/// A permanent slot's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    Physical,
    Logical { database: String, plugin: String },
}

/// One entry of the dynamic config's `slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermanentSlot {
    pub name: String,
    pub kind: SlotKind,
}

impl PermanentSlot {
    pub fn is_logical(&self) -> bool {
        matches!(self.kind, SlotKind::Logical { .. })
    }
}

/// A slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExistingSlot {
    pub name: String,
    pub logical: bool,
    pub database: Option<String>,
    pub plugin: Option<String>,
    pub restart_lsn: Option<u64>,
    /// Logical slots: how far the consumer confirmed.
    pub confirmed_flush: Option<u64>,
    pub active: bool,
}

/// Whether `name` is a valid slot name (PostgreSQL: `[a-z0-9_]`, at most 63 bytes).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The permanent slots: the first non-empty of `permanent_replication_slots`,
/// `permanent_slots`, `slots` (Patroni's aliases), with one line per entry that cannot
/// be used (logged by the caller; Patroni skips those too).
pub fn permanent_slots(dynamic: &DynamicConfig) -> (Vec<PermanentSlot>, Vec<String>) {
    let section = ["permanent_replication_slots", "permanent_slots", "slots"]
        .iter()
        .filter_map(|k| dynamic.extra.get(*k))
        .find(|v| v.as_object().is_some_and(|m| !m.is_empty()));
    let mut slots = Vec::new();
    let mut problems = Vec::new();
    let Some(Value::Object(map)) = section else {
        return (slots, problems);
    };
    for (name, value) in map {
        if !valid_name(name) {
            problems.push(format!(
                "slots: {name:?} is not a valid slot name (lower-case letters, digits and _, at most 63)"
            ));
            continue;
        }
        match parse_kind(value) {
            Ok(kind) => slots.push(PermanentSlot {
                name: name.clone(),
                kind,
            }),
            Err(why) => problems.push(format!(
                "Bad value for slot '{name}' in permanent_slots: {why}"
            )),
        }
    }
    (slots, problems)
}

fn parse_kind(value: &Value) -> Result<SlotKind, String> {
    let obj = match value {
        Value::Null => return Ok(SlotKind::Physical),
        Value::Object(o) => o,
        other => return Err(format!("expected a mapping, got {other}")),
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let (database, plugin) = (text("database"), text("plugin"));
    let kind = match obj.get("type").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None if database.is_some() && plugin.is_some() => "logical".into(),
        None => "physical".into(),
    };
    match (kind.as_str(), database, plugin) {
        ("physical", _, _) => Ok(SlotKind::Physical),
        ("logical", Some(database), Some(plugin)) => Ok(SlotKind::Logical { database, plugin }),
        ("logical", _, _) => Err("a logical slot needs database and plugin".into()),
        (other, _, _) => Err(format!("type must be physical or logical, got {other:?}")),
    }
}

/// One `ignore_slots` matcher: every field given must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IgnoreRule {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub database: Option<String>,
    pub plugin: Option<String>,
}

impl IgnoreRule {
    pub fn matches(&self, s: &ExistingSlot) -> bool {
        let kind = if s.logical { "logical" } else { "physical" };
        self.name.as_deref().is_none_or(|n| n == s.name)
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && self
                .database
                .as_deref()
                .is_none_or(|d| s.database.as_deref() == Some(d))
            && self
                .plugin
                .as_deref()
                .is_none_or(|p| s.plugin.as_deref() == Some(p))
    }
}

/// `ignore_slots`: a list of matchers (entries that are not mappings are skipped).
pub fn ignore_rules(dynamic: &DynamicConfig) -> Vec<IgnoreRule> {
    let Some(Value::Array(items)) = dynamic.extra.get("ignore_slots") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_object)
        .map(|o| {
            let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
            IgnoreRule {
                name: text("name"),
                kind: text("type"),
                database: text("database"),
                plugin: text("plugin"),
            }
        })
        .collect()
}

/// Whether a slot must be left alone whatever the slot manager thinks of it.
pub fn untouchable(rules: &[IgnoreRule], s: &ExistingSlot) -> bool {
    s.name == ARCHIVER_SLOT || rules.iter().any(|r| r.matches(s))
}

/// An existing logical slot still matches its permanent definition (else it is
/// dropped and made again, as Patroni does).
pub fn logical_matches(s: &ExistingSlot, want: &PermanentSlot) -> bool {
    match &want.kind {
        SlotKind::Logical { database, plugin } => {
            s.logical
                && s.database.as_deref() == Some(database.as_str())
                && s.plugin.as_deref() == Some(plugin.as_str())
        }
        SlotKind::Physical => !s.logical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dynamic(v: &Value) -> DynamicConfig {
        DynamicConfig::from_json(v).unwrap()
    }

    #[test]
    fn permanent_slots_as_patroni_reads_them() {
        let d = dynamic(&json!({"slots": {
            "phys": null,
            "phys2": {"type": "physical"},
            "cdc": {"database": "app", "plugin": "pgoutput"},
            "cdc2": {"type": "logical", "database": "app", "plugin": "test_decoding"},
            "bad": {"type": "logical"},
            "Bad-Name": null,
            "odd": 5
        }}));
        let (slots, problems) = permanent_slots(&d);
        let names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["cdc", "cdc2", "phys", "phys2"]);
        assert_eq!(
            slots[0].kind,
            SlotKind::Logical {
                database: "app".into(),
                plugin: "pgoutput".into()
            }
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("Bad value for slot 'bad'")));
        // The first non-empty alias wins.
        let d = dynamic(&json!({"permanent_slots": {}, "slots": {"a": null},
                               "permanent_replication_slots": {"b": null}}));
        assert_eq!(permanent_slots(&d).0[0].name, "b");
    }

    #[test]
    fn ignore_rules_match_every_given_field() {
        let d = dynamic(&json!({"ignore_slots": [
            {"name": "keep_me"},
            {"type": "logical", "plugin": "wal2json"},
            "junk"
        ]}));
        let rules = ignore_rules(&d);
        assert_eq!(rules.len(), 2);
        let slot = |name: &str, logical: bool, plugin: Option<&str>| ExistingSlot {
            name: name.into(),
            logical,
            plugin: plugin.map(str::to_string),
            ..ExistingSlot::default()
        };
        assert!(untouchable(&rules, &slot("keep_me", false, None)));
        assert!(untouchable(&rules, &slot("x", true, Some("wal2json"))));
        assert!(!untouchable(&rules, &slot("x", true, Some("pgoutput"))));
        assert!(!untouchable(&rules, &slot("x", false, Some("wal2json"))));
        assert!(untouchable(&[], &slot(ARCHIVER_SLOT, false, None)));
    }
}
