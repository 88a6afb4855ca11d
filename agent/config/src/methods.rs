//! Patroni's custom methods: `bootstrap.method: NAME` with a `bootstrap.NAME.command`
//! (a cluster created by a user's script, e.g. a pgBackRest or WAL-G restore), and
//! custom `postgresql.create_replica_methods` entries with a `postgresql.NAME` section.
//!
//! The commands get Patroni's arguments: each key of the method's section (except the
//! ones that steer the agent) becomes `--key=value`, values written as Python writes
//! them (`True`, `5`, `text`), because scripts written for Patroni parse them so.

use serde_yaml::Value;

use crate::reader::{key_text, Reader, Section};

/// A custom replica creation method (`postgresql.create_replica_methods: [NAME]` and
/// the section `postgresql.NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomReplicaMethod {
    pub name: String,
    /// `command`, or the method's name when absent (Patroni's rule).
    pub command: String,
    /// Keep a non-empty data directory instead of setting it aside first.
    pub keep_data: bool,
    /// May run with no member to copy from.
    pub no_leader: bool,
    /// Do not add `--scope --role --datadir --connstring`.
    pub no_params: bool,
    /// Every other key of the section, in order, as `(key, value as Python writes it)`.
    pub options: Vec<(String, String)>,
}

impl CustomReplicaMethod {
    /// The command's arguments after its own words, as Patroni builds them: the
    /// section's keys in order (with `no_params`, less `no_params`/`no_leader`/
    /// `keep_data`), then (unless `no_params`) `scope`, `role`, `datadir`,
    /// `connstring`, a key the section already has keeping its place.
    pub fn arguments(&self, scope: &str, datadir: &str, connstring: &str) -> Vec<String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let flags = [
            ("keep_data", self.keep_data),
            ("no_leader", self.no_leader),
            ("no_params", self.no_params),
        ];
        for (k, v) in &self.options {
            pairs.push((k.clone(), v.clone()));
        }
        if self.no_params {
            pairs.retain(|(k, _)| !flags.iter().any(|(f, _)| f == k));
        } else {
            for (k, v) in [
                ("scope", scope),
                ("role", "replica"),
                ("datadir", datadir),
                ("connstring", connstring),
            ] {
                match pairs.iter_mut().find(|(have, _)| have == k) {
                    Some(p) => p.1 = v.to_string(),
                    None => pairs.push((k.to_string(), v.to_string())),
                }
            }
        }
        pairs
            .into_iter()
            .map(|(k, v)| format!("--{k}={v}"))
            .collect()
    }
}

/// `bootstrap.method: NAME` with `bootstrap.NAME.command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomBootstrap {
    pub name: String,
    pub command: String,
    pub no_params: bool,
    /// Keep the recovery settings and signal files the command left.
    pub keep_existing_recovery_conf: bool,
    /// Recovery settings to start with (`restore_command`, `recovery_target_time`, ...).
    pub recovery_conf: Option<Vec<(String, String)>>,
    /// Every other key, in order, as `(key, value as Python writes it)`.
    pub options: Vec<(String, String)>,
}

impl CustomBootstrap {
    /// Patroni's arguments: `--scope=S --datadir=D` (unless `no_params`), then
    /// `--key=value` for the section's other keys.
    pub fn arguments(&self, scope: &str, datadir: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.no_params {
            out.push(format!("--scope={scope}"));
            out.push(format!("--datadir={datadir}"));
        }
        out.extend(self.options.iter().map(|(k, v)| format!("--{k}={v}")));
        out
    }
}

/// Keys of a bootstrap method's section the agent reads itself (not passed on).
const BOOTSTRAP_RESERVED: &[&str] = &[
    "command",
    "no_params",
    "keep_existing_recovery_conf",
    "recovery_conf",
    "scope",
    "datadir",
];

/// A value as Python's `str()` writes it in `"--{k}={v}".format(...)`.
fn python_text(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Checks that a command line splits into words as a shell would (`shlex`).
fn command(r: &mut Reader, path: &str, value: &Value) -> Option<String> {
    let text = r.string(path, value)?;
    match shlex::split(&text) {
        Some(words) if !words.is_empty() => Some(text),
        _ => {
            r.error(
                path,
                format!("{text:?} is not a command line (empty, or unbalanced quotes)"),
            );
            None
        }
    }
}

fn flag(r: &mut Reader, s: &Section<'_>, key: &str) -> bool {
    s.get(key)
        .and_then(|v| r.boolean(&s.path_of(key), v))
        .unwrap_or(false)
}

/// The section of custom replica method `name` (`postgresql.NAME`; may be absent, then
/// the name is the command).
pub(crate) fn replica_method(
    r: &mut Reader,
    name: &str,
    value: Option<&Value>,
) -> Option<CustomReplicaMethod> {
    let path = format!("postgresql.{name}");
    let mut method = CustomReplicaMethod {
        name: name.to_string(),
        command: name.to_string(),
        keep_data: false,
        no_leader: false,
        no_params: false,
        options: Vec::new(),
    };
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Some(method);
    };
    let s = r.section(&path, value)?;
    if let Some(v) = s.get("command") {
        method.command = command(r, &s.path_of("command"), v)?;
    }
    method.keep_data = flag(r, &s, "keep_data");
    method.no_leader = flag(r, &s, "no_leader");
    method.no_params = flag(r, &s, "no_params");
    for (k, v) in s.entries() {
        let Some(k) = key_text(k) else {
            r.error(&path, "keys must be strings");
            continue;
        };
        if k != "command" {
            method.options.push((k, python_text(v)));
        }
    }
    Some(method)
}

/// `bootstrap.NAME` for `bootstrap.method: NAME`; `None` (with an error) when it has
/// no `command`.
pub(crate) fn bootstrap_method(
    r: &mut Reader,
    name: &str,
    value: Option<&Value>,
) -> Option<CustomBootstrap> {
    let path = format!("bootstrap.{name}");
    let Some(value) = value.filter(|v| !v.is_null()) else {
        r.error(
            &path,
            format!("bootstrap.method is {name:?} but there is no {path} section with a command"),
        );
        return None;
    };
    let s = r.section(&path, value)?;
    let Some(cmd) = s.get("command") else {
        r.error(
            s.path_of("command"),
            "a custom bootstrap method needs the command to run",
        );
        return None;
    };
    let command = command(r, &s.path_of("command"), cmd)?;
    let no_params = flag(r, &s, "no_params");
    let keep_existing_recovery_conf = flag(r, &s, "keep_existing_recovery_conf");
    let recovery_conf = match s.get("recovery_conf") {
        None => None,
        Some(v) => {
            let rc = r.section(&s.path_of("recovery_conf"), v)?;
            let mut out = Vec::new();
            for (k, v) in rc.entries() {
                let Some(k) = key_text(k) else {
                    r.error(&rc.path, "keys must be strings");
                    continue;
                };
                match v {
                    Value::Mapping(_) | Value::Sequence(_) => {
                        r.error(rc.path_of(&k), "expected a string, number or boolean")
                    }
                    Value::Bool(b) => out.push((k, if *b { "on" } else { "off" }.to_string())),
                    other => out.push((k, python_text(other))),
                }
            }
            Some(out)
        }
    };
    let mut options = Vec::new();
    for (k, v) in s.entries() {
        let Some(k) = key_text(k) else {
            r.error(&path, "keys must be strings");
            continue;
        };
        if !BOOTSTRAP_RESERVED.contains(&k.as_str()) {
            options.push((k, python_text(v)));
        }
    }
    Some(CustomBootstrap {
        name: name.to_string(),
        command,
        no_params,
        keep_existing_recovery_conf,
        recovery_conf,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(options: &[(&str, &str)], no_params: bool) -> CustomReplicaMethod {
        CustomReplicaMethod {
            name: "wal_e".into(),
            command: "restore.sh".into(),
            keep_data: options
                .iter()
                .any(|(k, v)| *k == "keep_data" && *v == "True"),
            no_leader: false,
            no_params,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn replica_arguments_follow_patroni() {
        let m = method(&[("keep_data", "True"), ("threads", "4")], false);
        assert_eq!(
            m.arguments("demo", "/d", "dbname=postgres user=r host=h port=5"),
            vec![
                "--keep_data=True",
                "--threads=4",
                "--scope=demo",
                "--role=replica",
                "--datadir=/d",
                "--connstring=dbname=postgres user=r host=h port=5",
            ]
        );
        // A key the section already has keeps its place and gets the agent's value.
        let m = method(&[("role", "x"), ("a", "1")], false);
        assert_eq!(
            m.arguments("s", "/d", "c"),
            vec![
                "--role=replica",
                "--a=1",
                "--scope=s",
                "--datadir=/d",
                "--connstring=c"
            ]
        );
        let m = method(
            &[("no_params", "True"), ("keep_data", "True"), ("a", "1")],
            true,
        );
        assert_eq!(m.arguments("s", "/d", "c"), vec!["--a=1"]);
    }

    #[test]
    fn bootstrap_arguments_follow_patroni() {
        let b = CustomBootstrap {
            name: "pgbackrest".into(),
            command: "restore.sh --delta".into(),
            no_params: false,
            keep_existing_recovery_conf: true,
            recovery_conf: None,
            options: vec![("stanza".into(), "main".into())],
        };
        assert_eq!(
            b.arguments("demo", "/data"),
            vec!["--scope=demo", "--datadir=/data", "--stanza=main"]
        );
        let b = CustomBootstrap {
            no_params: true,
            ..b
        };
        assert_eq!(b.arguments("demo", "/data"), vec!["--stanza=main"]);
    }

    #[test]
    fn values_are_written_as_python_writes_them() {
        let v: Value = serde_yaml::from_str("[true, false, 5, 1.5, text, null]").unwrap();
        let Value::Sequence(items) = v else { panic!() };
        let got: Vec<String> = items.iter().map(python_text).collect();
        assert_eq!(got, vec!["True", "False", "5", "1.5", "text", "None"]);
    }
}
