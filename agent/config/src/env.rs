//! Patroni's environment variables (`PATRONI_*`), with Patroni's precedence: they are
//! laid over the file key by key (a variable replaces one leaf, the file's other keys
//! stay), or make up the whole configuration when there is no file.
//!
//! `PATRONI_CONFIGURATION` is a whole YAML document; Patroni uses it only when no
//! config file exists, and then reads no other variable.
//!
//! The agent takes the variables out of its environment once, at start ([`capture`]),
//! so PostgreSQL and the other children never inherit passwords given this way; a
//! reload lays the captured values over the re-read file again, as Patroni does.
//!
//! Warden reads a few more than Patroni does, documented as Warden's own: the tags
//! (`PATRONI_NOFAILOVER`, `PATRONI_FAILOVER_PRIORITY`, ...) and the etcd3 credentials
//! without another etcd3 variable (Patroni ignores them then).

use std::sync::OnceLock;

use serde_yaml::{Mapping, Value};

const PREFIX: &str = "PATRONI_";

/// `PATRONI_<SECTION>_<KEY>` → `<section>.<key>`, as plain strings (or the type given).
const RESTAPI: &[(&str, Kind)] = &[
    ("LISTEN", Kind::Text),
    ("CONNECT_ADDRESS", Kind::Text),
    ("CERTFILE", Kind::Text),
    ("KEYFILE", Kind::Text),
    ("KEYFILE_PASSWORD", Kind::Text),
    ("CAFILE", Kind::Text),
    ("CIPHERS", Kind::Text),
    ("VERIFY_CLIENT", Kind::Text),
    ("HTTP_EXTRA_HEADERS", Kind::Dict),
    ("HTTPS_EXTRA_HEADERS", Kind::Dict),
    ("ALLOWLIST", Kind::List),
    ("ALLOWLIST_INCLUDE_MEMBERS", Kind::Bool),
    ("REQUEST_QUEUE_SIZE", Kind::Int),
    ("SERVER_TOKENS", Kind::Text),
];

const CTL: &[(&str, Kind)] = &[
    ("INSECURE", Kind::Bool),
    ("CACERT", Kind::Text),
    ("CERTFILE", Kind::Text),
    ("KEYFILE", Kind::Text),
    ("KEYFILE_PASSWORD", Kind::Text),
];

const POSTGRESQL: &[(&str, Kind)] = &[
    ("LISTEN", Kind::Text),
    ("CONNECT_ADDRESS", Kind::Text),
    ("PROXY_ADDRESS", Kind::Text),
    ("CONFIG_DIR", Kind::Text),
    ("DATA_DIR", Kind::Text),
    ("PGPASS", Kind::Text),
    ("BIN_DIR", Kind::Text),
];

/// `PATRONI_POSTGRESQL_BIN_<NAME>` → `postgresql.bin_name.<name>`.
const BINARIES: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];

const LOG: &[(&str, Kind)] = &[
    ("TYPE", Kind::Text),
    ("LEVEL", Kind::Text),
    ("TRACEBACK_LEVEL", Kind::Text),
    ("FORMAT", Kind::LogFormat),
    ("DATEFORMAT", Kind::Text),
    ("STATIC_FIELDS", Kind::Dict),
    ("MAX_QUEUE_SIZE", Kind::Int),
    ("DIR", Kind::Text),
    ("MODE", Kind::Int),
    ("FILE_SIZE", Kind::Int),
    ("FILE_NUM", Kind::Int),
    ("LOGGERS", Kind::Dict),
    ("DEDUPLICATE_HEARTBEAT_LOGS", Kind::Bool),
];

/// Legacy log variable names; the new name wins when both are set.
const LOG_LEGACY: &[(&str, &str)] = &[
    ("LOGLEVEL", "LOG_LEVEL"),
    ("LOGFORMAT", "LOG_FORMAT"),
    ("LOG_DATEFMT", "LOG_DATEFORMAT"),
];

const USERS: &[&str] = &["REPLICATION", "SUPERUSER", "REWIND"];
const USER_PARAMS: &[&str] = &[
    "USERNAME",
    "PASSWORD",
    "SSLMODE",
    "SSLCERT",
    "SSLKEY",
    "SSLPASSWORD",
    "SSLROOTCERT",
    "SSLCRL",
    "SSLCRLDIR",
    "GSSENCMODE",
    "CHANNEL_BINDING",
    "SSLNEGOTIATION",
];

/// The DCS sections Patroni's generic rule (`PATRONI_<DCS>_<SUFFIX>`) applies to.
const DCS: &[&str] = &[
    "ETCD",
    "ETCD3",
    "CONSUL",
    "ZOOKEEPER",
    "EXHIBITOR",
    "KUBERNETES",
    "RAFT",
];

/// The suffixes Patroni's generic DCS rule knows, with their types.
const DCS_SUFFIXES: &[(&str, Kind)] = &[
    ("HOST", Kind::Text),
    ("HOSTS", Kind::List),
    ("PORT", Kind::Int),
    ("USE_PROXIES", Kind::Bool),
    ("PROTOCOL", Kind::Text),
    ("SRV", Kind::Text),
    ("SRV_SUFFIX", Kind::Text),
    ("URL", Kind::Text),
    ("PROXY", Kind::Text),
    ("CACERT", Kind::Text),
    ("CERT", Kind::Text),
    ("KEY", Kind::Text),
    ("VERIFY", Kind::Bool),
    ("TOKEN", Kind::Text),
    ("CHECKS", Kind::List),
    ("DC", Kind::Text),
    ("CONSISTENCY", Kind::Text),
    ("REGISTER_SERVICE", Kind::Bool),
    ("SERVICE_CHECK_INTERVAL", Kind::Text),
    ("SERVICE_CHECK_TLS_SERVER_NAME", Kind::Text),
    ("SERVICE_TAGS", Kind::List),
    ("NAMESPACE", Kind::Text),
    ("CONTEXT", Kind::Text),
    ("USE_ENDPOINTS", Kind::Bool),
    ("SCOPE_LABEL", Kind::Text),
    ("ROLE_LABEL", Kind::Text),
    ("POD_IP", Kind::Text),
    ("PORTS", Kind::List),
    ("LABELS", Kind::Dict),
    ("BYPASS_API_SERVICE", Kind::Bool),
    ("RETRIABLE_HTTP_CODES", Kind::List),
    ("KEY_PASSWORD", Kind::Text),
    ("USE_SSL", Kind::Bool),
    ("SET_ACLS", Kind::Dict),
    ("LEADER_LABEL_VALUE", Kind::Text),
    ("FOLLOWER_LABEL_VALUE", Kind::Text),
    ("STANDBY_LEADER_LABEL_VALUE", Kind::Text),
    ("TMP_ROLE_LABEL", Kind::Text),
    ("AUTH_DATA", Kind::Dict),
    ("BOOTSTRAP_LABELS", Kind::Dict),
    ("USERNAME", Kind::Text),
    ("PASSWORD", Kind::Text),
    // raft's own keys.
    ("DATA_DIR", Kind::Text),
    ("SELF_ADDR", Kind::Text),
    ("PARTNER_ADDRS", Kind::List),
    ("BIND_ADDR", Kind::Text),
];

/// Warden's own: tags from the environment (Patroni reads tags only from the YAML).
const TAGS: &[&str] = &[
    "NOFAILOVER",
    "FAILOVER_PRIORITY",
    "SYNC_PRIORITY",
    "NOSYNC",
    "NOLOADBALANCE",
    "CLONEFROM",
    "NOSTREAM",
    "REPLICATEFROM",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    /// Patroni's `parse_int`; a value that does not parse is ignored.
    Int,
    /// Patroni's `parse_bool`; a value that does not parse is ignored.
    Bool,
    /// A YAML list; `a,b` is read as `[a,b]`.
    List,
    /// A YAML mapping; `k: v, k2: v2` is read as `{k: v, k2: v2}`.
    Dict,
    /// A list of JSON fields, unless it holds a `%(name)` placeholder (a format string).
    LogFormat,
}

/// The configuration the environment gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvConfig {
    /// `PATRONI_CONFIGURATION`: a whole YAML document.
    pub configuration: Option<String>,
    /// Every other variable, as a tree to lay over the file.
    pub overlay: Mapping,
    /// Variables that were set but could not be read, with why (logged as warnings:
    /// Patroni ignores them silently).
    pub ignored: Vec<String>,
}

impl EnvConfig {
    /// Reads the variables from `vars` (name, value); pure, for tests.
    pub fn from_vars<I, K, V>(vars: I) -> EnvConfig
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.as_ref().strip_prefix(PREFIX)?.to_string();
                // Patroni skips empty values.
                let value = v.as_ref().to_string();
                (!value.is_empty()).then_some((name, value))
            })
            .collect();
        vars.sort();
        for (old, new) in LOG_LEGACY {
            if !vars.iter().any(|(k, _)| k == new) {
                if let Some((k, _)) = vars.iter_mut().find(|(k, _)| k == old) {
                    *k = (*new).to_string();
                }
            }
        }
        let mut env = EnvConfig::default();
        for (name, value) in vars {
            if name == "CONFIGURATION" {
                env.configuration = Some(value);
                continue;
            }
            if let Some((path, kind)) = place(&name) {
                match convert(kind, &value) {
                    Ok(v) => set(&mut env.overlay, &path, v),
                    Err(why) => env.ignored.push(format!("{PREFIX}{name}: {why}; ignored")),
                }
            }
        }
        env
    }

    pub fn is_empty(&self) -> bool {
        self.configuration.is_none() && self.overlay.is_empty()
    }

    /// Lays the variables over `root` (the file's tree): mappings merge key by key,
    /// anything else is replaced.
    pub fn apply(&self, root: &mut Value) {
        if !root.is_mapping() {
            *root = Value::Mapping(Mapping::new());
        }
        merge(root, &Value::Mapping(self.overlay.clone()));
    }

    /// The same recursive merge, for config files of a directory.
    pub(crate) fn merge_into(base: &mut Value, overlay: &Value) {
        merge(base, overlay);
    }
}

/// Where a variable (without the prefix) goes, and its type; `None` if Patroni (and
/// Warden) reads no such variable.
fn place(name: &str) -> Option<(Vec<String>, Kind)> {
    let lower = |s: &str| s.to_ascii_lowercase();
    let path = |parts: &[&str]| parts.iter().map(|p| lower(p)).collect::<Vec<_>>();
    match name {
        "NAME" | "NAMESPACE" | "SCOPE" => return Some((path(&[name]), Kind::Text)),
        "THREAD_POOL_SIZE" | "THREAD_STACK_SIZE" => return Some((path(&[name]), Kind::Text)),
        _ => {}
    }
    if TAGS.contains(&name) {
        return Some((path(&["tags", name]), Kind::Text));
    }
    let sections: [(&str, &[(&str, Kind)]); 4] = [
        ("RESTAPI", RESTAPI),
        ("CTL", CTL),
        ("POSTGRESQL", POSTGRESQL),
        ("LOG", LOG),
    ];
    for (section, keys) in sections {
        let Some(key) = name.strip_prefix(section).and_then(|r| r.strip_prefix('_')) else {
            continue;
        };
        if let Some((k, kind)) = keys.iter().find(|(k, _)| *k == key) {
            return Some((path(&[section, k]), *kind));
        }
        if matches!(section, "RESTAPI" | "CTL") && matches!(key, "USERNAME" | "PASSWORD") {
            return Some((path(&[section, "authentication", key]), Kind::Text));
        }
        if section == "POSTGRESQL" {
            if let Some(bin) = key.strip_prefix("BIN_") {
                let bin = lower(bin);
                if BINARIES.contains(&bin.as_str()) {
                    return Some((
                        vec!["postgresql".into(), "bin_name".into(), bin],
                        Kind::Text,
                    ));
                }
            }
        }
        return None;
    }
    for user in USERS {
        if let Some(param) = name.strip_prefix(user).and_then(|r| r.strip_prefix('_')) {
            if USER_PARAMS.contains(&param) {
                return Some((
                    path(&["postgresql", "authentication", user, param]),
                    Kind::Text,
                ));
            }
        }
    }
    // Longest DCS name first: ETCD3_X is etcd3's, not etcd's key "3_X".
    let mut dcs: Vec<&str> = DCS.to_vec();
    dcs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    for d in dcs {
        if let Some(suffix) = name.strip_prefix(d).and_then(|r| r.strip_prefix('_')) {
            // Patroni's suffix list serves every DCS; an etcd section only takes what
            // etcd has (a Consul suffix there would be an unknown key).
            if d.starts_with("ETCD") && !ETCD_SUFFIXES.contains(&suffix) {
                return None;
            }
            return DCS_SUFFIXES
                .iter()
                .find(|(s, _)| *s == suffix)
                .map(|(s, kind)| (path(&[d, s]), *kind));
        }
    }
    None
}

/// The suffixes that name an etcd setting.
const ETCD_SUFFIXES: &[&str] = &[
    "HOST",
    "HOSTS",
    "PORT",
    "USE_PROXIES",
    "PROTOCOL",
    "SRV",
    "SRV_SUFFIX",
    "URL",
    "PROXY",
    "CACERT",
    "CERT",
    "KEY",
    "KEY_PASSWORD",
    "VERIFY",
    "USERNAME",
    "PASSWORD",
];

fn convert(kind: Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::Text => Ok(Value::String(text.to_string())),
        Kind::Int => parse_int(text)
            .map(|n| Value::Number(n.into()))
            .ok_or_else(|| format!("{text:?} is not a whole number")),
        Kind::Bool => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| format!("{text:?} is not a boolean (true/false, on/off, yes/no, 1/0)")),
        Kind::List => {
            let doc = if text.trim_start().starts_with('-') || text.contains('[') {
                text.to_string()
            } else {
                format!("[{text}]")
            };
            match serde_yaml::from_str::<Value>(&doc) {
                Ok(v @ Value::Sequence(_)) => Ok(v),
                _ => Err(format!("{text:?} is not a list")),
            }
        }
        Kind::Dict => {
            let doc = if text.trim_start().starts_with('{') {
                text.to_string()
            } else {
                format!("{{{text}}}")
            };
            match serde_yaml::from_str::<Value>(&doc) {
                Ok(v @ Value::Mapping(_)) => Ok(v),
                _ => Err(format!("{text:?} is not a mapping")),
            }
        }
        Kind::LogFormat => {
            if text.contains("%(") {
                Ok(Value::String(text.to_string()))
            } else {
                convert(Kind::List, text)
            }
        }
    }
}

/// Patroni's `parse_bool`: on/true/yes/1 and off/false/no/0, any case.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Patroni's `parse_int` for unit-less values: C `strtol` rules (a leading `0` is
/// octal, `0x` hex), surrounding blanks allowed; a fraction is rounded.
fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else if let Ok(n) = digits.parse::<i64>() {
        n
    } else {
        let f: f64 = digits.parse().ok()?;
        if !f.is_finite() || f.abs() > 9.0e15 {
            return None;
        }
        // In range just checked.
        #[allow(clippy::cast_possible_truncation)]
        let n = f.round() as i64;
        n
    };
    Some(if negative { -value } else { value })
}

fn set(root: &mut Mapping, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for p in parents {
        let entry = node
            .entry(Value::String(p.clone()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if !entry.is_mapping() {
            *entry = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(m) = entry else {
            return;
        };
        node = m;
    }
    node.insert(Value::String(last.clone()), value);
}

/// Patroni's `patch_config` for the environment: mappings merge recursively, any other
/// value replaces.
fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_mapping() && v.is_mapping() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

static CAPTURED: OnceLock<EnvConfig> = OnceLock::new();

/// Reads the `PATRONI_*` variables once and removes them from this process's
/// environment, so no child (PostgreSQL, callbacks, backup commands) inherits a
/// password given this way. Later calls return the first reading. Call it early in
/// `main`, before any thread is started.
pub fn capture() -> &'static EnvConfig {
    CAPTURED.get_or_init(|| {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();
        let env = EnvConfig::from_vars(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (k, _) in &vars {
            std::env::remove_var(k);
        }
        env
    })
}

/// The captured variables, if [`capture`] was called (the agent); `None` in libraries
/// and tests that never read the environment.
pub fn captured() -> Option<&'static EnvConfig> {
    CAPTURED.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn variables_land_where_patroni_puts_them() {
        let env = EnvConfig::from_vars([
            ("PATRONI_NAME", "pg1"),
            ("PATRONI_SCOPE", "demo"),
            ("PATRONI_ETCD3_HOSTS", "e1:2379,e2:2379"),
            ("PATRONI_ETCD3_PROTOCOL", "https"),
            ("PATRONI_ETCD3_USERNAME", "root"),
            ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008"),
            ("PATRONI_RESTAPI_USERNAME", "admin"),
            ("PATRONI_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS", "on"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/data"),
            ("PATRONI_POSTGRESQL_BIN_PG_ISREADY", "/bin/isready"),
            ("PATRONI_SUPERUSER_PASSWORD", "s3cret"),
            ("PATRONI_REPLICATION_SSLMODE", "verify-full"),
            ("PATRONI_LOGLEVEL", "DEBUG"),
            ("PATRONI_LOG_FILE_NUM", "3"),
            ("PATRONI_LOG_MODE", "0644"),
            ("PATRONI_LOG_LOGGERS", "patroni.postmaster: WARNING"),
            ("PATRONI_NOFAILOVER", "true"),
            ("PATRONI_KUBERNETES_POD_IP", "10.0.0.1"),
            ("PATRONI_ETCD3_CHECKS", "a,b"),
            ("PATRONI_UNRELATED_THING", "x"),
            ("PATRONI_CTL_INSECURE", "maybe"),
            ("PATRONI_EMPTY", ""),
            ("HOME", "/root"),
        ]);
        let want = yaml(
            r#"
            name: pg1
            scope: demo
            etcd3: {hosts: ["e1:2379", "e2:2379"], protocol: https, username: root}
            restapi:
              listen: 0.0.0.0:8008
              authentication: {username: admin}
              allowlist_include_members: true
            postgresql:
              data_dir: /data
              bin_name: {pg_isready: /bin/isready}
              authentication:
                superuser: {password: s3cret}
                replication: {sslmode: verify-full}
            log: {level: DEBUG, file_num: 3, mode: 420, loggers: {patroni.postmaster: WARNING}}
            tags: {nofailover: "true"}
            kubernetes: {pod_ip: 10.0.0.1}
            "#,
        );
        assert_eq!(Value::Mapping(env.overlay.clone()), want);
        assert_eq!(env.ignored.len(), 1, "{:?}", env.ignored);
        assert!(env.ignored[0].starts_with("PATRONI_CTL_INSECURE"));
        assert_eq!(env.configuration, None);
    }

    #[test]
    fn the_new_log_name_wins_over_the_legacy_one() {
        let env = EnvConfig::from_vars([
            ("PATRONI_LOGLEVEL", "DEBUG"),
            ("PATRONI_LOG_LEVEL", "ERROR"),
        ]);
        assert_eq!(Value::Mapping(env.overlay), yaml("log: {level: ERROR}"));
    }

    #[test]
    fn the_environment_replaces_leaves_and_keeps_the_rest_of_the_file() {
        let env = EnvConfig::from_vars([
            ("PATRONI_SUPERUSER_PASSWORD", "from-env"),
            ("PATRONI_ETCD3_HOSTS", "127.0.0.1:2379"),
        ]);
        let mut file = yaml(
            r#"
            name: a
            etcd3: {hosts: [other:2379], protocol: http}
            postgresql:
              data_dir: /d
              authentication: {superuser: {username: postgres, password: from-file}}
            "#,
        );
        env.apply(&mut file);
        assert_eq!(
            file,
            yaml(
                r#"
                name: a
                etcd3: {hosts: ["127.0.0.1:2379"], protocol: http}
                postgresql:
                  data_dir: /d
                  authentication: {superuser: {username: postgres, password: from-env}}
                "#
            )
        );
    }

    #[test]
    fn patroni_parse_int_and_parse_bool() {
        assert_eq!(parse_int("0644"), Some(420));
        assert_eq!(parse_int(" 7 "), Some(7));
        assert_eq!(parse_int("1.5"), Some(2));
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("0o644"), None);
        assert_eq!(parse_int("10MB"), None);
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("OFF"), Some(false));
        assert_eq!(parse_bool("2"), None);
    }

    #[test]
    fn lists_and_mappings_accept_both_spellings() {
        assert_eq!(
            convert(Kind::List, "a:1,b:2").unwrap(),
            yaml(r#"["a:1", "b:2"]"#)
        );
        assert_eq!(convert(Kind::List, "[x, y]").unwrap(), yaml("[x, y]"));
        assert_eq!(convert(Kind::Dict, "{a: 1}").unwrap(), yaml("{a: 1}"));
        assert!(convert(Kind::Dict, "a: [").is_err());
        assert_eq!(
            convert(Kind::LogFormat, "%(asctime)s %(message)s").unwrap(),
            yaml(r#""%(asctime)s %(message)s""#)
        );
        assert_eq!(
            convert(Kind::LogFormat, "message,levelname").unwrap(),
            yaml("[message, levelname]")
        );
    }

    #[test]
    fn patroni_configuration_is_kept_whole() {
        let env = EnvConfig::from_vars([("PATRONI_CONFIGURATION", "name: x\nscope: y\n")]);
        assert_eq!(env.configuration.as_deref(), Some("name: x\nscope: y\n"));
        assert!(env.overlay.is_empty());
    }
}
