//! Reading typed values out of a `serde_yaml::Value` tree while collecting every
//! problem with its key path, so one run reports all of them.
//!
//! serde_yaml implements YAML 1.2, where `yes`/`on` are strings; Patroni's PyYAML reads
//! them as booleans. Boolean getters therefore accept those words too.

use serde_yaml::{Mapping, Value};
use warden_consensus::dynamic_config::{bool_word, describe};

use super::error::ConfigProblem;
use super::schema::{self, Key, Kind};

#[derive(Debug, Default)]
pub(super) struct Reader {
    pub problems: Vec<ConfigProblem>,
    pub warnings: Vec<String>,
}

/// A YAML mapping found at a dotted path (`""` for the document root).
#[derive(Debug, Clone)]
pub(super) struct Section<'a> {
    pub path: String,
    pub map: &'a Mapping,
}

impl<'a> Section<'a> {
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key`; an explicit null (`key:` with nothing after it) counts as
    /// absent, as in Patroni.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn entries(&self) -> impl Iterator<Item = (&'a Value, &'a Value)> {
        self.map.iter()
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A key of a YAML mapping as text; YAML allows numbers and booleans as keys.
pub(super) fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Reader {
    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// A warning for a Patroni setting Warden ignores, with what ignoring it means.
    pub fn not_implemented(&mut self, path: &str, note: &str) {
        let mut message = format!("{path}: Patroni setting not implemented by Warden yet; ignored");
        if !note.is_empty() {
            message.push_str(" (");
            message.push_str(note);
            message.push(')');
        }
        self.warn(message);
    }

    /// Reports a key neither Warden nor Patroni knows, with a spelling hint.
    pub fn unknown_key<'c>(
        &mut self,
        path: &str,
        key: &str,
        candidates: impl IntoIterator<Item = &'c str>,
    ) {
        let mut message = "unknown key (not a Patroni or Warden setting)".to_owned();
        if let Some(hint) = schema::suggest(key, candidates) {
            message.push_str(&format!("; did you mean \"{hint}\"?"));
        }
        self.error(path, message);
    }

    pub fn section<'a>(&mut self, path: &str, value: &'a Value) -> Option<Section<'a>> {
        match value {
            Value::Mapping(map) => Some(Section {
                path: path.to_owned(),
                map,
            }),
            other => {
                self.error(
                    path,
                    format!("expected a mapping, got {}", describe_yaml(other)),
                );
                None
            }
        }
    }

    /// Checks every key of `section` against `spec`. `derived` names further keys that
    /// values name (a `create_replica_methods` entry or `bootstrap.method` names a
    /// section); the caller reads those sections.
    pub fn check_keys(&mut self, section: &Section<'_>, spec: &[Key], derived: &[String]) {
        for (key, value) in section.entries() {
            let Some(name) = key_text(key) else {
                self.error(section.path_of(&describe_yaml(key)), "keys must be strings");
                continue;
            };
            let path = section.path_of(&name);
            match schema::find(spec, &name) {
                Some(Kind::Warden) => {}
                // An empty Patroni section sets nothing; nothing to warn about.
                Some(Kind::Patroni(_)) if value.is_null() => {}
                Some(Kind::Patroni(note)) => self.not_implemented(&path, note),
                Some(Kind::Refused(_)) if value.is_null() => {}
                Some(Kind::Refused(note)) => self.error(
                    path,
                    format!(
                        "cannot be honoured: {note}. Remove it, or stay on Patroni until \
                         Warden supports it (Warden never falls back to plain text)"
                    ),
                ),
                None if derived.contains(&name) => {}
                None => self.unknown_key(&path, &name, spec.iter().map(|k| k.name)),
            }
        }
    }

    /// The value of a required key; reports it missing otherwise.
    pub fn required<'a>(&mut self, section: &Section<'a>, key: &str) -> Option<&'a Value> {
        let value = section.get(key);
        if value.is_none() {
            self.error(section.path_of(key), "missing required key");
        }
        value
    }

    /// A string. Numbers are accepted as their text (`password: 1234`), as Patroni does.
    pub fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.error(
                    path,
                    format!("expected a string, got {}", describe_yaml(other)),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        let parsed = match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => bool_word(s),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                path,
                format!(
                    "expected a boolean (true or false), got {}",
                    describe_yaml(value)
                ),
            );
        }
        parsed
    }

    /// Reads an optional boolean key into `field`, leaving the default when absent.
    pub fn bool_key(&mut self, section: &Section<'_>, key: &str, field: &mut bool) {
        if let Some(value) = section.get(key) {
            if let Some(b) = self.boolean(&section.path_of(key), value) {
                *field = b;
            }
        }
    }

    /// A non-negative integer; numeric strings are accepted like Patroni's `parse_int`.
    pub fn unsigned(&mut self, path: &str, value: &Value) -> Option<u32> {
        let number = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match number {
            Some(n) if n < 0 => {
                self.error(path, format!("must be a non-negative integer, got {n}"));
                None
            }
            Some(n) => match u32::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(path, format!("must be at most {}, got {n}", u32::MAX));
                    None
                }
            },
            None => {
                self.error(
                    path,
                    format!("expected an integer, got {}", describe_yaml(value)),
                );
                None
            }
        }
    }

    pub fn string_list(&mut self, path: &str, value: &Value) -> Option<Vec<String>> {
        let Value::Sequence(items) = value else {
            self.error(
                path,
                format!("expected a list of strings, got {}", describe_yaml(value)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string(&format!("{path}[{i}]"), item) {
                out.push(s);
            }
        }
        Some(out)
    }

    /// Converts a YAML subtree to JSON (for the dynamic config and tag values).
    pub fn json(&mut self, path: &str, value: &Value) -> Option<serde_json::Value> {
        match yaml_to_json(value) {
            Ok(json) => Some(json),
            Err((sub, reason)) => {
                self.error(format!("{path}{sub}"), reason);
                None
            }
        }
    }
}

/// YAML → JSON. The error carries the path below `value` (`.a[2]`) and the reason.
pub(super) fn yaml_to_json(value: &Value) -> Result<serde_json::Value, (String, String)> {
    use serde_json::Value as J;
    Ok(match value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::String(s) => J::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(J::Number)
                    .ok_or_else(|| (String::new(), format!("number {n} is not finite")))?
            }
        }
        Value::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(yaml_to_json(item).map_err(|(p, r)| (format!("[{i}]{p}"), r))?);
            }
            J::Array(out)
        }
        Value::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let Some(key) = key_text(k) else {
                    return Err((String::new(), "mapping keys must be strings".to_owned()));
                };
                let json = yaml_to_json(v).map_err(|(p, r)| (format!(".{key}{p}"), r))?;
                out.insert(key, json);
            }
            J::Object(out)
        }
        Value::Tagged(tagged) => {
            return Err((
                String::new(),
                format!("YAML tag {} is not supported", tagged.tag),
            ))
        }
    })
}

/// A value rendered for an error message: JSON-like, strings quoted, long values cut.
pub(super) fn describe_yaml(value: &Value) -> String {
    match yaml_to_json(value) {
        Ok(json) => describe(&json),
        Err(_) => "a value that cannot be shown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn booleans_accept_yaml_1_1_words() {
        let mut r = Reader::default();
        for (text, expected) in [
            ("true", true),
            ("yes", true),
            ("on", true),
            ("Off", false),
            ("no", false),
            ("0", false),
        ] {
            assert_eq!(r.boolean("k", &yaml(text)), Some(expected), "{text}");
        }
        assert_eq!(r.boolean("k", &yaml("maybe")), None);
        assert_eq!(r.problems.len(), 1);
        assert_eq!(
            r.problems[0].to_string(),
            "k: expected a boolean (true or false), got \"maybe\""
        );
    }

    #[test]
    fn unsigned_values() {
        let mut r = Reader::default();
        assert_eq!(r.unsigned("p", &yaml("3")), Some(3));
        assert_eq!(r.unsigned("p", &yaml("'7'")), Some(7));
        assert_eq!(r.unsigned("p", &yaml("-1")), None);
        assert_eq!(r.unsigned("p", &yaml("high")), None);
        let messages: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                "p: must be a non-negative integer, got -1",
                "p: expected an integer, got \"high\""
            ]
        );
    }

    #[test]
    fn yaml_to_json_paths_and_tags() {
        let v = yaml("a: [1, {b: !custom x}]");
        let (path, reason) = yaml_to_json(&v).unwrap_err();
        assert_eq!(path, ".a[1].b");
        assert!(reason.contains("!custom"), "{reason}");
        let v = yaml("{1: one, true: yes, x: 1.5}");
        let json = yaml_to_json(&v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"1": "one", "true": "yes", "x": 1.5})
        );
    }
}
