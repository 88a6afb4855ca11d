//! The pure half of `edit-config`: applying `-s key.path=value`, `-p name=value`,
//! `--apply` (a YAML merge patch) and `--replace` to the stored config JSON, validating
//! the result, and the diff shown before asking. The DCS half (read with the
//! `mod_revision`, compare-and-swap) is in `commands.rs`.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use warden_consensus::DynamicConfig;

/// Parses a YAML document into JSON values (what the `config` key stores).
pub fn yaml_to_json(text: &str) -> Result<Value> {
    serde_yaml::from_str::<Value>(text).context("not valid YAML (or a key that is not a string)")
}

/// Applies `KEY.PATH=VALUE` settings in order. VALUE is parsed as YAML (`3` is a
/// number, `on` the string "on", `null` deletes the key). Below
/// `postgresql.parameters` the rest of the path is one name, because GUCs such as
/// `pg_stat_statements.max` contain dots.
pub fn apply_sets(config: &mut Value, pairs: &[String]) -> Result<()> {
    for pair in pairs {
        let Some((path, raw)) = pair.split_once('=') else {
            bail!("invalid setting {pair:?}: expected KEY=VALUE (e.g. loop_wait=5)");
        };
        let path = path.trim();
        if path.is_empty() || path.split('.').any(str::is_empty) {
            bail!("invalid setting {pair:?}: empty key in {path:?}");
        }
        let value = if raw.trim().is_empty() {
            // `key=` is an empty value in YAML, i.e. null: delete, as patronictl does.
            Value::Null
        } else {
            yaml_to_json(raw).with_context(|| format!("invalid value in {pair:?}"))?
        };
        let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts.len() > 3 && parts[0] == "postgresql" && parts[1] == "parameters" {
            let guc = parts[2..].join(".");
            parts.truncate(2);
            parts.push(guc);
        }
        if !config.is_object() {
            *config = Value::Object(Map::new());
        }
        set_path(config, &parts, value);
    }
    Ok(())
}

/// `-p NAME=VALUE` is `-s postgresql.parameters.NAME=VALUE`.
pub fn pg_pairs(pairs: &[String]) -> Vec<String> {
    pairs
        .iter()
        .map(|p| format!("postgresql.parameters.{}", p.trim_start()))
        .collect()
}

fn set_path(node: &mut Value, path: &[String], value: Value) {
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    let (key, rest) = (&path[0], &path[1..]);
    if rest.is_empty() {
        if value.is_null() {
            obj.remove(key);
        } else {
            obj.insert(key.clone(), value);
        }
        return;
    }
    let child = obj
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    set_path(child, rest, value);
    // A section emptied by deleting its last key goes too.
    if child.as_object().is_some_and(Map::is_empty) {
        obj.remove(key);
    }
}

/// A YAML merge patch in Patroni's sense: objects merge key by key, `null` deletes,
/// anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(_) if t.get(k).is_some_and(Value::is_object) => {
                if let Some(child) = t.get_mut(k) {
                    merge_patch(child, v);
                }
            }
            _ => {
                t.insert(k.clone(), strip_nulls(v.clone()));
            }
        }
    }
}

/// A new subtree from a patch carries no deletions: drop its nulls.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The config a `--apply`/`--replace` file describes: a mapping (or nothing).
pub fn patch_from_yaml(text: &str, source: &str) -> Result<Value> {
    let v = yaml_to_json(text).with_context(|| format!("reading {source}"))?;
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Map::new())),
        other => bail!(
            "{source}: expected a YAML mapping of config keys, got {}",
            warden_consensus::dynamic_config::describe(&other)
        ),
    }
}

/// Rejects a config the agents would refuse, naming every offending key.
pub fn validate(config: &Value) -> Result<()> {
    match DynamicConfig::from_json_all(config) {
        Ok(_) => Ok(()),
        Err(errors) => bail!(
            "invalid configuration, nothing changed: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// A unified diff of the config's YAML before and after (empty when equal).
pub fn diff(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header("before", "after")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sets(mut v: Value, pairs: &[&str]) -> Result<Value> {
        let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
        apply_sets(&mut v, &pairs)?;
        Ok(v)
    }

    #[test]
    fn set_paths_parse_yaml_values() {
        let base = json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB"}}});
        let v = sets(
            base,
            &[
                "loop_wait=3",
                "postgresql.parameters.max_connections=200",
                "postgresql.parameters.pg_stat_statements.max=1000",
                "postgresql.use_slots=false",
                "synchronous_mode=on",
                "standby_cluster.host= 10.0.0.1",
                "tags=[a, b]",
            ],
        )
        .unwrap();
        assert_eq!(v["loop_wait"], json!(3));
        assert_eq!(v["postgresql"]["parameters"]["max_connections"], json!(200));
        assert_eq!(
            v["postgresql"]["parameters"]["pg_stat_statements.max"],
            json!(1000)
        );
        assert_eq!(v["postgresql"]["parameters"]["work_mem"], json!("4MB"));
        assert_eq!(v["postgresql"]["use_slots"], json!(false));
        // YAML 1.2: `on` is a string; DynamicConfig reads it as true.
        assert_eq!(v["synchronous_mode"], json!("on"));
        assert_eq!(v["standby_cluster"]["host"], json!("10.0.0.1"));
        assert_eq!(v["tags"], json!(["a", "b"]));
    }

    #[test]
    fn null_deletes_and_empty_sections_go() {
        let base = json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB"}}});
        let v = sets(base, &["postgresql.parameters.work_mem=null", "ttl="]).unwrap();
        assert_eq!(v, json!({}));
        let v = sets(json!({"ttl": 5}), &["ttl.sub=1"]).unwrap();
        assert_eq!(v, json!({"ttl": {"sub": 1}}));
    }

    #[test]
    fn bad_pairs_are_named() {
        for (bad, needle) in [
            ("loop_wait", "expected KEY=VALUE"),
            ("=3", "empty key"),
            ("a..b=1", "empty key"),
            ("ttl=[unclosed", "invalid value in \"ttl=[unclosed\""),
        ] {
            let e = format!("{:#}", sets(json!({}), &[bad]).unwrap_err());
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert_eq!(
            pg_pairs(&[" work_mem=8MB".to_string()]),
            vec!["postgresql.parameters.work_mem=8MB"]
        );
    }

    #[test]
    fn merge_patch_semantics() {
        let mut v = json!({"ttl": 30, "postgresql": {"use_slots": true, "parameters": {"a": 1, "b": 2}}, "slots": {"x": 1}});
        let patch = patch_from_yaml(
            "ttl: 20\npostgresql:\n  parameters: {a: null, c: 3}\nslots: null\nnew: {k: 1, gone: null}\n",
            "patch.yml",
        )
        .unwrap();
        merge_patch(&mut v, &patch);
        assert_eq!(
            v,
            json!({"ttl": 20, "postgresql": {"use_slots": true, "parameters": {"b": 2, "c": 3}}, "new": {"k": 1}})
        );
        let e = patch_from_yaml("- a\n- b\n", "f.yml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.yml") && e.contains("mapping"), "{e}");
        assert_eq!(patch_from_yaml("", "empty").unwrap(), json!({}));
    }

    #[test]
    fn validation_names_the_key() {
        validate(&json!({"ttl": 30, "loop_wait": 10})).unwrap();
        let e = validate(&json!({"ttl": "abc"})).unwrap_err().to_string();
        assert!(e.contains("ttl: expected an integer, got \"abc\""), "{e}");
        assert!(e.contains("nothing changed"), "{e}");
        // Timing values that break the rules are adjusted as Patroni adjusts them, not
        // refused (the consensus crate's rule); other rules still refuse.
        validate(&json!({"ttl": 10, "loop_wait": 10})).unwrap();
        let e = validate(&json!({"synchronous_node_count": 0}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("synchronous_node_count: must be at least 1, got 0"),
            "{e}"
        );
    }

    #[test]
    fn unified_diff_of_yaml() {
        let d = diff("loop_wait: 10\nttl: 30\n", "loop_wait: 3\nttl: 30\n");
        assert!(d.contains("-loop_wait: 10\n+loop_wait: 3\n"), "{d}");
        assert!(d.starts_with("--- before\n+++ after\n@@"), "{d}");
        assert_eq!(diff("a: 1\n", "a: 1\n"), "");
    }
}
