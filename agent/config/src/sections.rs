//! The small sections: names, `log`, `restapi`, `etcd3`, `tags`.

use serde_yaml::Value;

use super::address;
use super::reader::{key_text, Reader, Section};
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

pub(super) fn log(r: &mut Reader, root: &Section<'_>) -> LogConfig {
    let mut config = LogConfig::default();
    let Some(s) = root.get("log").and_then(|v| r.section("log", v)) else {
        return config;
    };
    r.check_keys(&s, schema::LOG, &[]);
    if let Some(text) = s.get("level").and_then(|v| r.string("log.level", v)) {
        let upper = text.trim().to_ascii_uppercase();
        // Python's logging also accepts these two spellings.
        let level = match upper.as_str() {
            "WARN" => "WARNING".to_owned(),
            "FATAL" => "CRITICAL".to_owned(),
            _ => upper,
        };
        if LOG_LEVELS.contains(&level.as_str()) {
            config.level = level;
        } else {
            r.error(
                "log.level",
                format!("expected one of {}, got \"{text}\"", LOG_LEVELS.join(", ")),
            );
        }
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
    match s.get("format") {
        None => {}
        Some(Value::String(format)) => config.format = Some(format.clone()),
        // Patroni 4 takes a list or mapping of JSON fields for `type: json`.
        Some(Value::Sequence(_) | Value::Mapping(_)) => r.not_implemented(
            "log.format",
            "a list or mapping of JSON log fields; the default fields are used",
        ),
        Some(other) => {
            r.string("log.format", other);
        }
    }
    config
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
    Some(RestApiConfig {
        listen: listen?.0,
        connect_address: connect_address?,
        authentication,
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
    let mut hosts = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (path, text) in raw {
        match address::parse_etcd_host(&text) {
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
    ok.then_some(EtcdConfig { hosts })
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
                }
            }
        } else if name == "failover_priority" {
            if !value.is_null() {
                tags.failover_priority = r.unsigned(&path, value);
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
    if let Some(m) = s
        .get("safety_margin")
        .and_then(|v| r.unsigned("watchdog.safety_margin", v))
    {
        config.safety_margin = m;
    }
    config
}
