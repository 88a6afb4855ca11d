//! The small sections: names, `log`, `restapi`, `etcd3`, `tags`.

use serde_yaml::Value;

use super::address;
use super::reader::{describe_yaml, key_text, Reader, Section};
use super::schema::{self, Key};
use super::types::{
    Credentials, EtcdConfig, HostPort, LogConfig, RestApiConfig, Tags, WatchdogConfig, WatchdogMode,
};

/// `scope` or `name`: both become etcd key segments, so a `/` would change the layout.
pub(super) fn identifier(r: &mut Reader, root: &Section<'_>, key: &str) -> Option<String> {
    let value = r.required(root, key)?;
    let text = r.string(key, value)?;
    if text.trim().is_empty() {
        r.error(key, "must not be empty");
        return None;
    }
    if text.contains('/') {
        r.error(key, format!("must not contain '/', got \"{text}\""));
        return None;
    }
    Some(text)
}

/// Patroni's default namespace is `/service/`; any form (`service`, `/service`) names
/// the same prefix, so normalise to leading and trailing slashes.
pub(super) fn namespace(r: &mut Reader, root: &Section<'_>) -> String {
    let Some(value) = root.get("namespace") else {
        return "/service/".to_owned();
    };
    let Some(text) = r.string("namespace", value) else {
        return "/service/".to_owned();
    };
    let inner: Vec<&str> = text.split('/').filter(|part| !part.is_empty()).collect();
    if inner.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}/", inner.join("/"))
    }
}

const LOG_LEVELS: &[&str] = &["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// `log`: every key of Patroni 4's section (see `logging` for what each does).
pub(super) fn log(r: &mut Reader, root: &Section<'_>) -> LogConfig {
    let mut config = LogConfig::default();
    let Some(s) = root.get("log").and_then(|v| r.section("log", v)) else {
        return config;
    };
    r.check_keys(&s, schema::LOG, &[]);
    if let Some(level) = s.get("level").and_then(|v| log_level(r, "log.level", v)) {
        config.level = level;
    }
    if let Some(level) = s
        .get("traceback_level")
        .and_then(|v| log_level(r, "log.traceback_level", v))
    {
        config.traceback_level = level;
    }
    if let Some(text) = s.get("type").and_then(|v| r.string("log.type", v)) {
        match text.trim().to_ascii_lowercase().as_str() {
            "json" => config.json = true,
            "plain" => config.json = false,
            _ => r.error(
                "log.type",
                format!("expected \"plain\" or \"json\", got \"{text}\""),
            ),
        }
    }
    log_format(r, &s, &mut config);
    log_file(r, &s, &mut config);
    if let Some(v) = s.get("loggers") {
        config.loggers = log_loggers(r, v);
    }
    if let Some(n) = s
        .get("max_queue_size")
        .and_then(|v| r.unsigned("log.max_queue_size", v))
    {
        if n == 0 {
            r.warn(format!(
                "log.max_queue_size: 0 leaves Patroni's queue unbounded; Warden keeps it \
                 bounded and uses {}",
                LogConfig::DEFAULT_MAX_QUEUE_SIZE
            ));
        } else {
            config.max_queue_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
    }
    r.bool_key(
        &s,
        "deduplicate_heartbeat_logs",
        &mut config.deduplicate_heartbeat_logs,
    );
    config
}

/// A Patroni level name (`warn` and `fatal` too, any case), normalised.
fn log_level(r: &mut Reader, path: &str, value: &Value) -> Option<String> {
    let text = r.string(path, value)?;
    let level = crate::logging::level_name(&text);
    if level.is_none() {
        r.error(
            path,
            format!("expected one of {}, got \"{text}\"", LOG_LEVELS.join(", ")),
        );
    }
    level.map(str::to_owned)
}

/// `format`, `dateformat`, `static_fields`.
fn log_format(r: &mut Reader, s: &Section<'_>, config: &mut LogConfig) {
    match s.get("format") {
        None => {}
        Some(Value::String(format)) => {
            let checked = if config.json {
                if crate::logging::format_fields(format).is_empty() {
                    Err("names no fields; write them as %(name)s or give a list".to_owned())
                } else {
                    Ok(())
                }
            } else {
                crate::logging::check_format(format)
            };
            match checked {
                Ok(()) => config.format = Some(format.clone()),
                Err(e) => r.error("log.format", e),
            }
        }
        // Patroni 4 takes a list of JSON fields, each a name or `{name: renamed}`.
        Some(v @ (Value::Sequence(_) | Value::Mapping(_))) => {
            config.json_fields = json_fields(r, v);
            if !config.json {
                r.warn(
                    "log.format: a list of fields applies to log.type: json; plain logs use \
                     the default format",
                );
            }
        }
        Some(other) => {
            r.string("log.format", other);
        }
    }
    if let Some(text) = s
        .get("dateformat")
        .and_then(|v| r.string("log.dateformat", v))
    {
        // As in Patroni, an empty string means the default.
        if !text.is_empty() {
            match crate::logging::check_dateformat(&text) {
                Ok(()) => config.dateformat = Some(text),
                Err(e) => r.error("log.dateformat", e),
            }
        }
    }
    if let Some(v) = s.get("static_fields") {
        match r.json("log.static_fields", v) {
            Some(serde_json::Value::Object(map)) => {
                config.static_fields = map.into_iter().collect()
            }
            Some(_) => r.error(
                "log.static_fields",
                format!("expected a mapping, got {}", describe_yaml(v)),
            ),
            None => {}
        }
    }
}

/// The list (or mapping) form of `log.format`: `(field, key written)` pairs.
fn json_fields(r: &mut Reader, value: &Value) -> Option<Vec<(String, String)>> {
    let single;
    let items: &[Value] = match value {
        Value::Sequence(items) => items,
        // Patroni 4.1 ignores a bare mapping; Warden reads it as a one-item list.
        other => {
            single = [other.clone()];
            &single
        }
    };
    let mut fields = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = if matches!(value, Value::Sequence(_)) {
            format!("log.format[{i}]")
        } else {
            "log.format".to_owned()
        };
        match item {
            Value::String(name) if !name.is_empty() => fields.push((name.clone(), name.clone())),
            Value::Mapping(map) => {
                for (k, v) in map {
                    match (key_text(k), v) {
                        (Some(name), Value::String(renamed)) if !renamed.is_empty() => {
                            fields.push((name, renamed.clone()));
                        }
                        _ => {
                            r.error(
                                path.clone(),
                                format!(
                                    "expected {{field: new name}} with a string name, got {}",
                                    describe_yaml(item)
                                ),
                            );
                            ok = false;
                        }
                    }
                }
            }
            other => {
                r.error(
                    path,
                    format!(
                        "expected a field name or {{field: new name}}, got {}",
                        describe_yaml(other)
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(fields)
}

/// `dir`, `file_size`, `file_num`, `mode`.
fn log_file(r: &mut Reader, s: &Section<'_>, config: &mut LogConfig) {
    if let Some(dir) = s.get("dir").and_then(|v| r.string("log.dir", v)) {
        if dir.trim().is_empty() {
            r.error("log.dir", "must not be empty");
        } else {
            config.dir = Some(std::path::PathBuf::from(dir));
        }
    }
    if let Some(n) = s
        .get("file_size")
        .and_then(|v| r.unsigned("log.file_size", v))
    {
        if n == 0 {
            r.warn(format!(
                "log.file_size: 0 never rotates in Patroni; Warden keeps the file bounded and \
                 uses {}",
                LogConfig::DEFAULT_FILE_SIZE
            ));
        } else {
            config.file_size = u64::from(n);
        }
    }
    if let Some(n) = s
        .get("file_num")
        .and_then(|v| r.unsigned("log.file_num", v))
    {
        config.file_num = n;
    }
    if let Some(v) = s.get("mode") {
        config.mode = log_mode(r, v);
    }
}

/// Permission bits: a YAML number (`0o640`, `416`) or a string read like C's
/// `strtol(s, 0)` (`"0640"`, `"0x1a0"`), as Patroni's `parse_int` does.
fn log_mode(r: &mut Reader, value: &Value) -> Option<u32> {
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => {
            let t = text.trim();
            if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                u64::from_str_radix(hex, 16).ok()
            } else if let Some(octal) = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
                u64::from_str_radix(octal, 8).ok()
            } else if t.len() > 1 && t.starts_with('0') {
                u64::from_str_radix(&t[1..], 8).ok()
            } else {
                t.parse().ok()
            }
        }
        _ => None,
    };
    match parsed {
        Some(mode) if mode <= 0o7777 => {
            if mode > 0o777 {
                r.warn(format!(
                    "log.mode: {mode} is {mode:#o} (setuid, setgid or sticky bits); for \
                     rw-r----- write 0640 or 0o640"
                ));
            }
            u32::try_from(mode).ok()
        }
        _ => {
            r.error(
                "log.mode",
                format!(
                    "expected file permission bits such as 0640 or 0o640, got {}",
                    describe_yaml(value)
                ),
            );
            None
        }
    }
}

/// `loggers: {name: LEVEL}`; names map onto tracing targets (see `logging`).
fn log_loggers(r: &mut Reader, value: &Value) -> std::collections::BTreeMap<String, String> {
    let mut loggers = std::collections::BTreeMap::new();
    let Some(s) = r.section("log.loggers", value) else {
        return loggers;
    };
    for (key, level) in s.entries() {
        let Some(name) = key_text(key) else {
            r.error("log.loggers", "logger names must be strings");
            continue;
        };
        let path = s.path_of(&name);
        let level = match level {
            Value::Number(n) => match n.as_i64() {
                Some(0) => continue, // NOTSET: the logger follows log.level.
                Some(n) if n > 0 => crate::logging::level_of_number(n).map(str::to_owned),
                _ => {
                    r.error(&path, format!("expected a level name, got {n}"));
                    continue;
                }
            },
            Value::String(text) if text.trim().eq_ignore_ascii_case("NOTSET") => continue,
            other => log_level(r, &path, other),
        };
        let Some(level) = level else { continue };
        match crate::logging::logger_targets(&name) {
            Ok(crate::logging::LoggerTargets::Targets(_)) => {
                loggers.insert(name, level);
            }
            Ok(crate::logging::LoggerTargets::NoCounterpart(why)) => {
                r.warn(format!("{path}: {why}; ignored"));
            }
            Err(e) => r.error(&path, e),
        }
    }
    loggers
}

pub(super) fn restapi(r: &mut Reader, root: &Section<'_>) -> Option<RestApiConfig> {
    let value = r.required(root, "restapi")?;
    let s = r.section("restapi", value)?;
    r.check_keys(&s, schema::RESTAPI, &[]);

    let listen = r
        .required(&s, "listen")
        .and_then(|v| r.string("restapi.listen", v))
        .and_then(|text| match address::parse_listen(&text) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                r.error("restapi.listen", e);
                None
            }
        });
    let connect_address = match s.get("connect_address") {
        Some(v) => r
            .string("restapi.connect_address", v)
            .and_then(|text| host_port(r, "restapi.connect_address", &text)),
        None => match &listen {
            Some((addr, host)) if !address::is_wildcard(host) => Some(HostPort {
                host: host.clone(),
                port: addr.port(),
            }),
            Some(_) => {
                r.error(
                    "restapi.connect_address",
                    "missing required key (restapi.listen binds every address, so other \
                     members need an address to reach this one)",
                );
                None
            }
            // The listen error is already reported.
            None => None,
        },
    };
    let authentication = match s.get("authentication") {
        Some(v) => Some(credentials(
            r,
            "restapi.authentication",
            v,
            schema::RESTAPI_AUTH,
        )?),
        None => None,
    };
    let extra = super::restapi_tls::read(r, &s, root);
    Some(RestApiConfig {
        listen: listen?.0,
        connect_address: connect_address?,
        authentication,
        tls: extra.tls,
        allowlist: extra.allowlist,
        allowlist_include_members: extra.allowlist_include_members,
        http_extra_headers: extra.http_extra_headers,
        https_extra_headers: extra.https_extra_headers,
        client: extra.client,
    })
}

pub(super) fn host_port(r: &mut Reader, path: &str, text: &str) -> Option<HostPort> {
    match address::parse_connect_address(text) {
        Ok(hp) => Some(hp),
        Err(e) => {
            r.error(path, e);
            None
        }
    }
}

/// `{username, password}` plus whatever else `spec` allows (libpq TLS settings).
pub(super) fn credentials(
    r: &mut Reader,
    path: &str,
    value: &Value,
    spec: &[Key],
) -> Option<Credentials> {
    let s = r.section(path, value)?;
    r.check_keys(&s, spec, &[]);
    let username = r
        .required(&s, "username")
        .and_then(|v| r.string(&s.path_of("username"), v));
    let username = match username {
        Some(name) if name.trim().is_empty() => {
            r.error(s.path_of("username"), "must not be empty");
            None
        }
        other => other,
    };
    let password = match s.get("password") {
        Some(v) => Some(r.string(&s.path_of("password"), v)?),
        None => None,
    };
    // A PostgreSQL role's TLS keys (sslmode, ...) are read by postgresql.rs.
    Some(Credentials {
        username: username?,
        password,
    })
}

pub(super) fn etcd3(r: &mut Reader, root: &Section<'_>) -> Option<EtcdConfig> {
    let Some(value) = root.get("etcd3") else {
        r.error(
            "etcd3",
            "missing required key (Warden keeps cluster state in etcd v3 only)",
        );
        return None;
    };
    let s = r.section("etcd3", value)?;
    r.check_keys(&s, schema::ETCD3, &[]);
    let protocol = match s.get("protocol") {
        Some(v) => match r.string("etcd3.protocol", v)?.as_str() {
            "http" => Some(false),
            "https" => Some(true),
            other => {
                r.error(
                    "etcd3.protocol",
                    format!("expected http or https, got {other:?}"),
                );
                return None;
            }
        },
        None => None,
    };
    let raw: Vec<(String, String)> = match (s.get("hosts"), s.get("host")) {
        (Some(hosts), host) => {
            if host.is_some() {
                r.warn("etcd3.host: ignored because etcd3.hosts is set");
            }
            host_list(r, hosts)?
        }
        (None, Some(host)) => {
            let text = r.string("etcd3.host", host)?;
            vec![("etcd3.host".to_owned(), text)]
        }
        (None, None) => {
            r.error(
                "etcd3.hosts",
                "missing required key (give etcd3.hosts or etcd3.host)",
            );
            return None;
        }
    };
    let (hosts, https) = etcd_hosts(r, raw, protocol)?;
    let security = etcd_security(r, &s, https)?;
    Some(EtcdConfig { hosts, security })
}

/// The endpoints as `host:port`, and whether they are https. A host may be written as
/// a URL (`https://etcd1:2379`); its scheme must agree with `protocol` and the other
/// hosts, since one client speaks one protocol to all of them.
fn etcd_hosts(
    r: &mut Reader,
    raw: Vec<(String, String)>,
    protocol: Option<bool>,
) -> Option<(Vec<String>, bool)> {
    let mut hosts = Vec::with_capacity(raw.len());
    let mut ok = true;
    let mut https = protocol;
    for (path, text) in raw {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some(("https", rest)) => (Some(true), rest.trim_end_matches('/')),
            Some(("http", rest)) => (Some(false), rest.trim_end_matches('/')),
            Some((other, _)) => {
                r.error(
                    path,
                    format!("unknown scheme {other:?} in \"{text}\" (expected http or https)"),
                );
                ok = false;
                continue;
            }
            None => (None, text),
        };
        if let (Some(given), Some(before)) = (scheme, https) {
            if given != before {
                r.error(
                    path,
                    format!(
                        "\"{text}\" does not match etcd3.protocol or the other hosts: all \
                         etcd endpoints are either http or https"
                    ),
                );
                ok = false;
                continue;
            }
        }
        https = https.or(scheme);
        match address::parse_etcd_host(rest) {
            Ok(host) => hosts.push(host),
            Err(e) => {
                r.error(path, e);
                ok = false;
            }
        }
    }
    if ok && hosts.is_empty() {
        r.error("etcd3.hosts", "must list at least one host");
        return None;
    }
    ok.then_some((hosts, https.unwrap_or(false)))
}

/// `cacert`/`cert`/`key` (https only: a certificate beside plain http would be a
/// silent downgrade) and `username`/`password` (both or neither).
fn etcd_security(
    r: &mut Reader,
    s: &Section<'_>,
    https: bool,
) -> Option<warden_consensus::etcd::EtcdSecurity> {
    use warden_consensus::etcd::{EtcdSecurity, EtcdTls, EtcdUser};
    let mut ok = true;
    let mut file = |r: &mut Reader, key: &str| -> Option<std::path::PathBuf> {
        let path = format!("etcd3.{key}");
        let text = r.string(&path, s.get(key)?)?;
        if text.trim().is_empty() {
            // Patroni treats an empty value as not set.
            return None;
        }
        let p = std::path::PathBuf::from(text);
        if !https {
            r.error(
                &path,
                "set, but etcd is reached over plain http; set etcd3.protocol: https \
                 (or https:// hosts) to use it",
            );
            ok = false;
            return None;
        }
        if let Err(e) = std::fs::File::open(&p) {
            r.error(&path, format!("cannot read {}: {e}", p.display()));
            ok = false;
            return None;
        }
        Some(p)
    };
    let cacert = file(r, "cacert");
    let cert = file(r, "cert");
    let key = file(r, "key");
    if key.is_some() && cert.is_none() {
        r.error("etcd3.key", "set without etcd3.cert");
        ok = false;
    }
    let username = s
        .get("username")
        .and_then(|v| r.string("etcd3.username", v));
    let password = s
        .get("password")
        .and_then(|v| r.string("etcd3.password", v));
    let user = match (username, password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            if !https {
                r.warn("etcd3.password: sent to etcd over plain http; set etcd3.protocol: https");
            }
            Some(EtcdUser { username, password })
        }
        (None, None) => None,
        (Some(_), None) => {
            r.error("etcd3.password", "missing; etcd3.username needs it");
            ok = false;
            None
        }
        (_, Some(_)) => {
            r.error("etcd3.username", "missing; etcd3.password needs it");
            ok = false;
            None
        }
    };
    let tls = https.then_some(EtcdTls { cacert, cert, key });
    ok.then_some(EtcdSecurity { tls, user })
}

/// `hosts` as a YAML list or a comma-separated string; each entry with its key path.
fn host_list(r: &mut Reader, value: &Value) -> Option<Vec<(String, String)>> {
    match value {
        Value::Sequence(_) => {
            let items = r.string_list("etcd3.hosts", value)?;
            Some(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| (format!("etcd3.hosts[{i}]"), h))
                    .collect(),
            )
        }
        _ => {
            let text = r.string("etcd3.hosts", value)?;
            Some(
                text.split(',')
                    .filter(|h| !h.trim().is_empty())
                    .map(|h| ("etcd3.hosts".to_owned(), h.trim().to_owned()))
                    .collect(),
            )
        }
    }
}

pub(super) fn tags(r: &mut Reader, root: &Section<'_>) -> Tags {
    let mut tags = Tags::default();
    let Some(s) = root.get("tags").and_then(|v| r.section("tags", v)) else {
        return tags;
    };
    let mut nofailover_set = None;
    for (key, value) in s.entries() {
        let Some(name) = key_text(key) else {
            r.error("tags", "tag names must be strings");
            continue;
        };
        let path = s.path_of(&name);
        let flag = match name.as_str() {
            "nofailover" => Some(&mut tags.nofailover),
            "noloadbalance" => Some(&mut tags.noloadbalance),
            "clonefrom" => Some(&mut tags.clonefrom),
            "nosync" => Some(&mut tags.nosync),
            "nostream" => Some(&mut tags.nostream),
            _ => None,
        };
        if let Some(field) = flag {
            if !value.is_null() {
                if let Some(b) = r.boolean(&path, value) {
                    *field = b;
                    if name == "nofailover" {
                        nofailover_set = Some(b);
                    }
                    if let Some(json) = r.json(&path, value) {
                        tags.given.insert(name.clone(), json);
                    }
                }
            }
        } else if name == "failover_priority" {
            if !value.is_null() {
                tags.failover_priority = r.unsigned(&path, value);
                if tags.failover_priority.is_some() {
                    if let Some(json) = r.json(&path, value) {
                        tags.given.insert(name.clone(), json);
                    }
                }
            }
        } else if name == "replicatefrom" {
            if !value.is_null() {
                tags.replicatefrom = r.string(&path, value);
                if let Some(json) = r.json(&path, value) {
                    tags.given.insert(name.clone(), json);
                }
            }
        } else if let Some((_, note)) = schema::PATRONI_ONLY_TAGS.iter().find(|(t, _)| *t == name) {
            if !value.is_null() {
                r.not_implemented(&path, note);
            }
        } else if let Some(json) = r.json(&path, value) {
            tags.other.insert(name, json);
        }
    }
    warn_priority_conflict(r, nofailover_set, tags.failover_priority);
    tags
}

/// Patroni warns (and lets `nofailover` win) when the two tags disagree; so does
/// Warden, except that `nofailover: false` with priority 0 keeps the member out of
/// leader races: the cautious reading of a contradiction.
fn warn_priority_conflict(r: &mut Reader, nofailover: Option<bool>, priority: Option<u32>) {
    match (nofailover, priority) {
        (Some(true), Some(p)) if p > 0 => r.warn(format!(
            "tags: conflicting configuration between nofailover: true and failover_priority: {p}; \
             nofailover wins (this member never becomes leader)"
        )),
        (Some(false), Some(0)) => r.warn(
            "tags: conflicting configuration between nofailover: false and failover_priority: 0; \
             Warden keeps this member out of leader races (Patroni would let nofailover win)",
        ),
        _ => {}
    }
}

pub(super) fn watchdog(r: &mut Reader, root: &Section<'_>) -> WatchdogConfig {
    let mut config = WatchdogConfig::default();
    let Some(s) = root.get("watchdog").and_then(|v| r.section("watchdog", v)) else {
        return config;
    };
    r.check_keys(&s, schema::WATCHDOG, &[]);
    if let Some(v) = s.get("mode") {
        // YAML 1.1 reads a bare `off` as false, as PyYAML does for Patroni.
        let text = match v {
            serde_yaml::Value::Bool(false) => Some("off".to_owned()),
            other => r.string("watchdog.mode", other),
        };
        if let Some(text) = text {
            config.mode = match text.trim().to_ascii_lowercase().as_str() {
                "off" | "false" | "disabled" => WatchdogMode::Off,
                "automatic" => WatchdogMode::Automatic,
                "required" => WatchdogMode::Required,
                _ => {
                    r.error(
                        "watchdog.mode",
                        format!("expected off, automatic or required, got \"{text}\""),
                    );
                    config.mode
                }
            };
        }
    }
    if let Some(d) = s.get("device").and_then(|v| r.string("watchdog.device", v)) {
        config.device = std::path::PathBuf::from(d);
    }
    match s.get("safety_margin") {
        // Patroni's -1: a watchdog timeout of half the ttl.
        Some(v) if v.as_i64() == Some(-1) || v.as_str().map(str::trim) == Some("-1") => {
            config.safety_margin = None;
        }
        Some(v) => {
            if let Some(m) = r.unsigned("watchdog.safety_margin", v) {
                config.safety_margin = Some(m);
            }
        }
        None => {}
    }
    config
}

#[cfg(test)]
mod log_tests {
    use super::*;

    /// `log` read from `yaml` (the section's body): the config, problems, warnings.
    fn read(yaml: &str) -> (LogConfig, Vec<String>, Vec<String>) {
        let root: Value = serde_yaml::from_str(&format!("log: {yaml}")).unwrap();
        let mut r = Reader::default();
        let section = r.section("", &root).unwrap();
        let config = log(&mut r, &section);
        let problems = r.problems.iter().map(ToString::to_string).collect();
        (config, problems, r.warnings)
    }

    #[test]
    fn every_patroni_key_is_read() {
        let (c, problems, warnings) = read(
            r"
  level: debug
  traceback_level: info
  format: '%(asctime)s %(levelname)-8s %(name)s: %(message)s'
  dateformat: '%Y-%m-%dT%H:%M:%S'
  dir: /var/log/patroni
  file_size: 1000000
  file_num: 2
  mode: 0640
  loggers: {patroni.ha: WARNING, urllib3: 10, tokio_postgres: error, patroni.api: NOTSET}
  max_queue_size: 50
  deduplicate_heartbeat_logs: true
  static_fields: {app: warden, n: 1}
",
        );
        assert!(
            problems.is_empty() && warnings.is_empty(),
            "{problems:?} {warnings:?}"
        );
        assert_eq!(
            (c.level.as_str(), c.traceback_level.as_str()),
            ("DEBUG", "INFO")
        );
        assert_eq!(
            c.format.as_deref(),
            Some("%(asctime)s %(levelname)-8s %(name)s: %(message)s")
        );
        assert_eq!(c.dateformat.as_deref(), Some("%Y-%m-%dT%H:%M:%S"));
        assert_eq!(c.dir, Some(std::path::PathBuf::from("/var/log/patroni")));
        assert_eq!(
            (c.file_size, c.file_num, c.mode),
            (1_000_000, 2, Some(0o640))
        );
        let loggers: Vec<(&str, &str)> = c
            .loggers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            loggers,
            [
                ("patroni.ha", "WARNING"),
                ("tokio_postgres", "ERROR"),
                ("urllib3", "DEBUG")
            ]
        );
        assert_eq!(c.max_queue_size, 50);
        assert!(c.deduplicate_heartbeat_logs);
        assert_eq!(
            c.static_fields,
            [
                ("app".to_owned(), "warden".into()),
                ("n".to_owned(), 1.into())
            ]
        );
    }

    #[test]
    fn defaults_are_patronis() {
        let (c, problems, _) = read("{}");
        assert!(problems.is_empty());
        assert_eq!(c, LogConfig::default());
        assert_eq!(
            (c.file_size, c.file_num, c.max_queue_size),
            (25_000_000, 4, 1000)
        );
        assert_eq!(c.traceback_level, "ERROR");
        assert_eq!(c.dir, None);
        // An empty dateformat means the default, as in Patroni.
        assert_eq!(read("{dateformat: ''}").0.dateformat, None);
    }

    #[test]
    fn json_fields_as_a_list_or_a_mapping() {
        let (c, problems, _) = read("{type: json, format: [asctime, {levelname: level}, message]}");
        assert!(problems.is_empty(), "{problems:?}");
        let fields = c.json_fields.unwrap();
        assert_eq!(
            fields,
            [
                ("asctime".to_owned(), "asctime".to_owned()),
                ("levelname".to_owned(), "level".to_owned()),
                ("message".to_owned(), "message".to_owned()),
            ]
        );
        let (c, _, _) = read("{type: json, format: {levelname: level}}");
        assert_eq!(
            c.json_fields.unwrap(),
            [("levelname".to_owned(), "level".to_owned())]
        );
        // Extra fields are fine in a JSON format string (they come from the event).
        let (c, problems, _) = read("{type: json, format: '%(message)s %(member)s'}");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.format.as_deref(), Some("%(message)s %(member)s"));
        let (_, _, warnings) = read("{format: [message]}");
        assert_eq!(
            warnings,
            ["log.format: a list of fields applies to log.type: json; plain logs use the default format"]
        );
    }

    #[test]
    fn mode_forms() {
        for (yaml, mode) in [
            ("0640", 0o640),
            ("'0600'", 0o600),
            ("0o644", 0o644),
            ("'0x1a4'", 0o644),
            ("416", 0o640),
        ] {
            let (c, problems, warnings) = read(&format!("{{mode: {yaml}}}"));
            assert!(
                problems.is_empty() && warnings.is_empty(),
                "{yaml}: {problems:?} {warnings:?}"
            );
            assert_eq!(c.mode, Some(mode), "{yaml}");
        }
        let (_, _, warnings) = read("{mode: 600}");
        assert_eq!(
            warnings,
            ["log.mode: 600 is 0o1130 (setuid, setgid or sticky bits); for rw-r----- write 0640 or 0o640"]
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let (_, problems, _) = read(
            r"
  level: loud
  traceback_level: 7
  type: xml
  format: '%(message)s %(member)s'
  dateformat: '%Y-%Q'
  dir: ''
  file_size: big
  file_num: -1
  mode: rwx
  loggers: {'a=b': INFO, patroni.ha: chatty}
  max_queue_size: [1]
  deduplicate_heartbeat_logs: maybe
  static_fields: [a]
",
        );
        let expected = [
            "log.level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got \"loud\"",
            "log.traceback_level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got \"7\"",
            "log.type: expected \"plain\" or \"json\", got \"xml\"",
            "log.format: unknown field %(member); known fields: asctime,",
            "log.dateformat: \"%Y-%Q\" is not a valid strftime format",
            "log.static_fields: expected a mapping, got [\"a\"]",
            "log.dir: must not be empty",
            "log.file_size: expected an integer, got \"big\"",
            "log.file_num: must be a non-negative integer, got -1",
            "log.mode: expected file permission bits such as 0640 or 0o640, got \"rwx\"",
            "log.loggers.a=b: \"a=b\" is neither a Patroni logger name nor a Rust module path",
            "log.loggers.patroni.ha: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got \"chatty\"",
            "log.max_queue_size: expected an integer, got [1]",
            "log.deduplicate_heartbeat_logs: expected a boolean (true or false), got \"maybe\"",
        ];
        for e in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "missing {e:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn unbounded_or_foreign_settings_warn() {
        let (c, problems, warnings) = read(
            "{file_size: 0, max_queue_size: 0, loggers: {patroni.__main__: DEBUG, botocore.credentials: ERROR, patroni.postmaster: WARNING}}",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((c.file_size, c.max_queue_size), (25_000_000, 1000));
        assert_eq!(c.loggers.keys().collect::<Vec<_>>(), ["patroni.postmaster"]);
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(warnings[0].starts_with("log.file_size: 0 never rotates in Patroni"));
        assert!(warnings
            .iter()
            .any(|w| w.starts_with("log.loggers.patroni.__main__: a Patroni module")));
        assert!(warnings
            .iter()
            .any(|w| w.starts_with("log.loggers.botocore.credentials: a Python logger")));
        assert!(warnings
            .iter()
            .any(|w| w.starts_with("log.max_queue_size: 0 leaves")));
    }
}
