//! Where wardenctl learns which cluster to talk to and how.
//!
//! Sources, weakest first: the YAML file (`-c`, `WARDENCTL_CONFIG_FILE`,
//! `PATRONICTL_CONFIG_FILE`, or patronictl's default `~/.config/patroni/patronictl.yaml`
//! when it exists), then Patroni's environment variables (`PATRONI_SCOPE`,
//! `PATRONI_NAMESPACE`, `PATRONI_ETCD3_HOSTS`, `PATRONI_RESTAPI_USERNAME`, ...), then
//! `-d/--dcs-url` (or `DCS_URL`), then a command's CLUSTER_NAME.
//!
//! The file is read leniently on purpose: an agent's full config and a two-line
//! `scope` + `etcd3` file must both work, and a key wardenctl does not need (or that
//! the agent's own loader would reject) must not stop an operator in an incident.

use anyhow::{bail, Context, Result};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use warden_api::client::BasicAuth;
use warden_consensus::etcd::{EtcdSecurity, EtcdTls, EtcdUser};

pub const DEFAULT_NAMESPACE: &str = "/service/";
const ETCD_DEFAULT_PORT: u16 = 2379;

/// What wardenctl needs to know, after every source was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlConfig {
    pub scope: Option<String>,
    pub namespace: String,
    /// etcd endpoints, `host:port` or `http(s)://host:port` each.
    pub etcd_hosts: Vec<String>,
    /// etcd3's `protocol`, `cacert`, `cert`, `key`, `username`, `password`, resolved
    /// by [`CtlConfig::etcd_security`].
    pub etcd: EtcdSettings,
    /// Credentials for the REST API's write endpoints.
    pub auth: Option<BasicAuth>,
    /// The REST API's TLS (`ctl.*` with `restapi.*` fallback).
    pub rest_tls: crate::rest_tls::RestTlsSettings,
    /// The file that was read, if any (for messages).
    pub file: Option<PathBuf>,
    /// The file has an etcd v2 (`etcd:`) section but no `etcd3:` one.
    pub only_etcd_v2: bool,
}

impl Default for CtlConfig {
    fn default() -> Self {
        Self {
            scope: None,
            namespace: DEFAULT_NAMESPACE.to_string(),
            etcd_hosts: Vec::new(),
            etcd: EtcdSettings::default(),
            auth: None,
            rest_tls: crate::rest_tls::RestTlsSettings::default(),
            file: None,
            only_etcd_v2: false,
        }
    }
}

/// The inputs of [`load`]; `env` is a parameter so tests need not touch the process's
/// environment.
pub struct Sources<'a> {
    /// `-c/--config-file`.
    pub config_file: Option<PathBuf>,
    /// `-d/--dcs-url`.
    pub dcs_url: Option<String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// patronictl's default file, used only if it exists.
    pub default_file: Option<PathBuf>,
}

impl std::fmt::Debug for Sources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("config_file", &self.config_file)
            .field("dcs_url", &self.dcs_url)
            .field("default_file", &self.default_file)
            .finish_non_exhaustive()
    }
}

/// patronictl's default config path: `$XDG_CONFIG_HOME/patroni/patronictl.yaml`, else
/// `~/.config/patroni/patronictl.yaml`.
pub fn default_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("patroni").join("patronictl.yaml"))
}

pub fn load(src: &Sources<'_>) -> Result<CtlConfig> {
    let env = |k: &str| (src.env)(k).filter(|v| !v.trim().is_empty());
    let explicit = src
        .config_file
        .clone()
        .map(|p| (p, "-c/--config-file"))
        .or_else(|| env("WARDENCTL_CONFIG_FILE").map(|p| (p.into(), "WARDENCTL_CONFIG_FILE")))
        .or_else(|| env("PATRONICTL_CONFIG_FILE").map(|p| (p.into(), "PATRONICTL_CONFIG_FILE")));
    let mut cfg = CtlConfig::default();
    let mut auth = Auth::default();
    match explicit {
        Some((path, from)) => {
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "config file {} (from {from}) does not exist or is not readable",
                    path.display()
                )
            })?;
            auth = apply_file(&mut cfg, &text)
                .with_context(|| format!("config file {}", path.display()))?;
            cfg.file = Some(path);
        }
        None => {
            if let Some(path) = src.default_file.as_ref().filter(|p| p.is_file()) {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                auth = apply_file(&mut cfg, &text)
                    .with_context(|| format!("config file {}", path.display()))?;
                cfg.file = Some(path.clone());
            } else if let Some(text) = env("PATRONI_CONFIGURATION") {
                // No file at all: Patroni's whole configuration in one variable.
                auth = apply_file(&mut cfg, &text).context("PATRONI_CONFIGURATION")?;
            }
        }
    }
    apply_env(&mut cfg, &mut auth, &env);
    // `ctl.authentication` is what patronictl uses when present; the REST API's own
    // credentials are the fallback (the same user usually protects both).
    cfg.auth = auth.ctl.or(auth.restapi);
    if let Some(url) = src.dcs_url.clone().or_else(|| env("DCS_URL")) {
        let (hosts, namespace) = parse_dcs_url(&url)?;
        cfg.etcd_hosts = hosts;
        if let Some(ns) = namespace {
            cfg.namespace = ns;
        }
    }
    Ok(cfg)
}

impl CtlConfig {
    /// The cluster to act on: the command's CLUSTER_NAME, else the configured scope.
    pub fn scope_for(&self, positional: Option<&str>) -> Result<String> {
        if let Some(name) = positional.filter(|s| !s.is_empty()) {
            return Ok(name.to_string());
        }
        match &self.scope {
            Some(s) => Ok(s.clone()),
            None => bail!(
                "no cluster name: pass CLUSTER_NAME, or set `scope` in the config file \
                 (-c FILE) or PATRONI_SCOPE"
            ),
        }
    }

    /// The etcd endpoints, or an error saying where to set them.
    pub fn endpoints(&self) -> Result<&[String]> {
        if self.etcd_hosts.is_empty() {
            if self.only_etcd_v2 {
                bail!(
                    "the config file has an `etcd` (v2) section; wardenctl speaks etcd v3 only: \
                     use `etcd3: {{hosts: ...}}` or -d etcd3://HOST:PORT"
                );
            }
            bail!(
                "no etcd endpoints: pass -d etcd3://HOST:PORT, set etcd3.hosts in the config \
                 file (-c FILE), or PATRONI_ETCD3_HOSTS"
            );
        }
        Ok(&self.etcd_hosts)
    }
}

/// The etcd3 settings as written (file, then environment); each one overrides alone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EtcdSettings {
    pub protocol: Option<String>,
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("protocol", &self.protocol)
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl EtcdSettings {
    const KEYS: [&'static str; 6] = ["protocol", "cacert", "cert", "key", "username", "password"];

    fn slot(&mut self, key: &str) -> &mut Option<String> {
        match key {
            "protocol" => &mut self.protocol,
            "cacert" => &mut self.cacert,
            "cert" => &mut self.cert,
            "key" => &mut self.key,
            "username" => &mut self.username,
            _ => &mut self.password,
        }
    }
}

impl CtlConfig {
    /// TLS and the etcd user as the agent reads them (Patroni's meanings): https when
    /// `protocol: https` or a host is an `https://` URL; certificates beside plain http
    /// are an error, never ignored.
    pub fn etcd_security(&self) -> Result<EtcdSecurity> {
        let e = &self.etcd;
        let https = match e.protocol.as_deref() {
            Some("https") => true,
            Some("http") | None => self.etcd_hosts.iter().any(|h| h.starts_with("https://")),
            Some(other) => bail!("etcd3.protocol: expected http or https, got {other:?}"),
        };
        let path = |v: &Option<String>| {
            v.clone()
                .filter(|p| !p.trim().is_empty())
                .map(PathBuf::from)
        };
        let (cacert, cert, key) = (path(&e.cacert), path(&e.cert), path(&e.key));
        if !https {
            for (name, v) in [("cacert", &cacert), ("cert", &cert), ("key", &key)] {
                if v.is_some() {
                    bail!(
                        "etcd3.{name}: set, but etcd is reached over plain http; set \
                         etcd3.protocol: https (or https:// hosts)"
                    );
                }
            }
        }
        let user = match (&e.username, &e.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some(EtcdUser {
                username: u.clone(),
                password: p.clone(),
            }),
            (None, None) => None,
            (Some(_), None) => bail!("etcd3.password: missing; etcd3.username needs it"),
            (_, Some(_)) => bail!("etcd3.username: missing; etcd3.password needs it"),
        };
        Ok(EtcdSecurity {
            tls: https.then_some(EtcdTls { cacert, cert, key }),
            user,
        })
    }
}

/// Credentials by section; the environment overrides each section separately.
#[derive(Debug, Default)]
struct Auth {
    ctl: Option<BasicAuth>,
    restapi: Option<BasicAuth>,
}

fn apply_file(cfg: &mut CtlConfig, text: &str) -> Result<Auth> {
    let doc: Value = serde_yaml::from_str(text).context("not valid YAML")?;
    let root = match doc {
        Value::Null => return Ok(Auth::default()),
        Value::Mapping(_) => doc,
        _ => bail!("expected a YAML mapping at the top level"),
    };
    if let Some(s) = scalar(root.get("scope")) {
        cfg.scope = Some(s);
    }
    if let Some(ns) = scalar(root.get("namespace")) {
        cfg.namespace = ns;
    }
    match root.get("etcd3") {
        Some(etcd3) => {
            let hosts = match etcd3.get("hosts") {
                Some(h) => host_list(h).context("etcd3.hosts")?,
                None => Vec::new(),
            };
            cfg.etcd_hosts = if hosts.is_empty() {
                match etcd3.get("host") {
                    Some(h) => host_list(h).context("etcd3.host")?,
                    None => Vec::new(),
                }
            } else {
                hosts
            };
        }
        None => cfg.only_etcd_v2 = root.get("etcd").is_some(),
    }
    if let Some(etcd3) = root.get("etcd3") {
        for key in EtcdSettings::KEYS {
            if let Some(v) = scalar(etcd3.get(key)) {
                *cfg.etcd.slot(key) = Some(v);
            }
        }
    }
    cfg.rest_tls.apply_file(&root);
    let auth_of = |section: &str| -> Option<BasicAuth> {
        let a = root.get(section)?.get("authentication")?;
        Some(BasicAuth {
            username: scalar(a.get("username"))?,
            password: scalar(a.get("password")).unwrap_or_default(),
        })
    };
    Ok(Auth {
        ctl: auth_of("ctl"),
        restapi: auth_of("restapi"),
    })
}

fn apply_env(cfg: &mut CtlConfig, auth: &mut Auth, env: &dyn Fn(&str) -> Option<String>) {
    cfg.rest_tls.apply_env(env);
    if let Some(s) = env("PATRONI_SCOPE") {
        cfg.scope = Some(s);
    }
    if let Some(ns) = env("PATRONI_NAMESPACE") {
        cfg.namespace = ns;
    }
    if let Some(h) = env("PATRONI_ETCD3_HOSTS").or_else(|| env("PATRONI_ETCD3_HOST")) {
        cfg.etcd_hosts = split_hosts(&h);
    }
    for key in EtcdSettings::KEYS {
        if let Some(v) = env(&format!("PATRONI_ETCD3_{}", key.to_uppercase())) {
            *cfg.etcd.slot(key) = Some(v);
        }
    }
    let auth_env = |section: &str| -> Option<BasicAuth> {
        Some(BasicAuth {
            username: env(&format!("PATRONI_{section}_USERNAME"))?,
            password: env(&format!("PATRONI_{section}_PASSWORD")).unwrap_or_default(),
        })
    };
    if let Some(a) = auth_env("CTL") {
        auth.ctl = Some(a);
    }
    if let Some(a) = auth_env("RESTAPI") {
        auth.restapi = Some(a);
    }
}

fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn host_list(v: &Value) -> Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(split_hosts(s)),
        Value::Sequence(items) => items
            .iter()
            .map(|i| scalar(Some(i)).context("expected a list of host:port strings"))
            .map(|r| r.map(|s| s.trim().to_string()))
            .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => bail!("expected \"host:port,host:port\" or a list of host:port"),
    }
}

/// `a:2379,b:2379`, or Patroni's YAML list form `[a:2379, 'b:2379']`.
fn split_hosts(s: &str) -> Vec<String> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.split(',')
        .map(|h| h.trim().trim_matches(|c| c == '\'' || c == '"'))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect()
}

/// `etcd3://HOST:PORT[,HOST:PORT...][/NAMESPACE]`; `etcd://` and a bare `HOST:PORT` mean
/// the same (Warden's DCS is etcd v3). Host defaults to localhost, port to 2379.
pub fn parse_dcs_url(url: &str) -> Result<(Vec<String>, Option<String>)> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", url.strip_prefix("//").unwrap_or(url)),
    };
    match scheme {
        "" | "etcd" | "etcd3" => {}
        "consul" | "zookeeper" | "exhibitor" | "kubernetes" | "raft" => bail!(
            "bad DCS URL {url:?}: wardenctl supports etcd only (etcd3://HOST:PORT), not {scheme}"
        ),
        other => bail!("bad DCS URL {url:?}: unknown DCS scheme {other:?} (use etcd3://HOST:PORT)"),
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut hosts = Vec::new();
    for part in authority.split(',') {
        let part = part.trim();
        let (host, port) = match part.rsplit_once(':') {
            // An IPv6 literal without a port ends in `]`.
            Some((h, p)) if !p.contains(']') => (h, Some(p)),
            _ => (part, None),
        };
        let host = if host.is_empty() { "localhost" } else { host };
        let port = match port {
            None | Some("") => ETCD_DEFAULT_PORT,
            Some(p) => p.parse::<u16>().map_err(|_| {
                anyhow::anyhow!("bad DCS URL {url:?}: port {p:?} is not a number from 1 to 65535")
            })?,
        };
        if port == 0 {
            bail!("bad DCS URL {url:?}: port 0");
        }
        hosts.push(format!("{host}:{port}"));
    }
    let namespace = match path.trim() {
        "" | "/" => None,
        p => Some(p.to_string()),
    };
    Ok((hosts, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_with(file: Option<&str>, dcs: Option<&str>, env: &[(&str, &str)]) -> Result<CtlConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|text| {
            let p = dir.path().join("c.yml");
            std::fs::write(&p, text).unwrap();
            p
        });
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = move |k: &str| env.get(k).cloned();
        load(&Sources {
            config_file: path,
            dcs_url: dcs.map(str::to_string),
            env: &get,
            default_file: None,
        })
    }

    #[test]
    fn minimal_patronictl_file() {
        let c = load_with(
            Some("scope: demo\netcd3: {hosts: 127.0.0.1:2379}\n"),
            None,
            &[],
        )
        .unwrap();
        assert_eq!(c.scope.as_deref(), Some("demo"));
        assert_eq!(c.namespace, "/service/");
        assert_eq!(c.etcd_hosts, vec!["127.0.0.1:2379"]);
        assert_eq!(c.auth, None);
        assert_eq!(c.scope_for(Some("other")).unwrap(), "other");
        assert_eq!(c.scope_for(None).unwrap(), "demo");
    }

    #[test]
    fn full_agent_config_with_unrelated_and_odd_keys() {
        let text = r#"
scope: 42
namespace: /wardens/
name: node1
restapi:
  listen: 127.0.0.1:8008
  authentication: {username: admin, password: s3cret}
etcd3:
  hosts: [ "10.0.0.1:2379", "10.0.0.2:2379" ]
bootstrap: {dcs: {ttl: "not even a number"}}
postgresql: {listen: 127.0.0.1:5432, parameters: {work_mem: 4MB}}
some_future_key: [1, 2, {x: y}]
"#;
        let c = load_with(Some(text), None, &[]).unwrap();
        assert_eq!(c.scope.as_deref(), Some("42"));
        assert_eq!(c.namespace, "/wardens/");
        assert_eq!(c.etcd_hosts, vec!["10.0.0.1:2379", "10.0.0.2:2379"]);
        let a = c.auth.unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("admin", "s3cret")
        );
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn ctl_authentication_wins_and_host_string_forms() {
        let text =
            "etcd3: {host: 'h1:1, h2:2'}\nrestapi: {authentication: {username: a, password: b}}\n\
                    ctl: {authentication: {username: ops, password: pw}}\n";
        let c = load_with(Some(text), None, &[]).unwrap();
        assert_eq!(c.auth.unwrap().username, "ops");
        assert_eq!(c.etcd_hosts, vec!["h1:1", "h2:2"]);
    }

    #[test]
    fn environment_overrides_the_file_and_dcs_url_overrides_both() {
        let env = [
            ("PATRONI_SCOPE", "envscope"),
            ("PATRONI_NAMESPACE", "/ns/"),
            ("PATRONI_ETCD3_HOSTS", "e1:2379,e2:2379"),
            ("PATRONI_RESTAPI_USERNAME", "u"),
            ("PATRONI_RESTAPI_PASSWORD", "p"),
        ];
        let c = load_with(Some("scope: demo\netcd3: {hosts: f:1}\n"), None, &env).unwrap();
        assert_eq!(c.scope.as_deref(), Some("envscope"));
        assert_eq!(c.namespace, "/ns/");
        assert_eq!(c.etcd_hosts, vec!["e1:2379", "e2:2379"]);
        assert_eq!(c.auth.as_ref().unwrap().username, "u");

        let c = load_with(None, Some("etcd3://x:9/custom"), &env).unwrap();
        assert_eq!(c.etcd_hosts, vec!["x:9"]);
        assert_eq!(c.namespace, "/custom");
        let c = load_with(None, None, &[("DCS_URL", "etcd://y")]).unwrap();
        assert_eq!(c.etcd_hosts, vec!["y:2379"]);
    }

    #[test]
    fn patroni_configuration_and_yaml_host_lists() {
        let env = [(
            "PATRONI_CONFIGURATION",
            "scope: whole\netcd3: {hosts: 'a:1'}\n",
        )];
        let c = load_with(None, None, &env).unwrap();
        assert_eq!(c.scope.as_deref(), Some("whole"));
        assert_eq!(c.etcd_hosts, vec!["a:1"]);
        // A file wins over it, as in Patroni.
        let c = load_with(Some("scope: file\n"), None, &env).unwrap();
        assert_eq!(c.scope.as_deref(), Some("file"));
        let c = load_with(None, None, &[("PATRONI_ETCD3_HOSTS", "['x:1', \"y:2\"]")]).unwrap();
        assert_eq!(c.etcd_hosts, vec!["x:1", "y:2"]);
    }

    #[test]
    fn credentials_precedence() {
        let file = "etcd3: {hosts: h:1}\nctl: {authentication: {username: filectl, password: a}}\n";
        // REST API credentials from the environment do not override a ctl section.
        let c = load_with(Some(file), None, &[("PATRONI_RESTAPI_USERNAME", "envapi")]).unwrap();
        assert_eq!(c.auth.unwrap().username, "filectl");
        let c = load_with(Some(file), None, &[("PATRONI_CTL_USERNAME", "envctl")]).unwrap();
        assert_eq!(c.auth.unwrap().username, "envctl");
        let c = load_with(None, None, &[("PATRONI_RESTAPI_USERNAME", "envapi")]).unwrap();
        let a = c.auth.unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("envapi", ""));
    }

    #[test]
    fn config_file_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.yml");
        std::fs::write(&p, "scope: fromenv\n").unwrap();
        let ps = p.display().to_string();
        for var in ["WARDENCTL_CONFIG_FILE", "PATRONICTL_CONFIG_FILE"] {
            let get = |k: &str| (k == var).then(|| ps.clone());
            let c = load(&Sources {
                config_file: None,
                dcs_url: None,
                env: &get,
                default_file: None,
            })
            .unwrap();
            assert_eq!(c.scope.as_deref(), Some("fromenv"), "{var}");
        }
        let get = |k: &str| (k == "WARDENCTL_CONFIG_FILE").then(|| "/no/such/file.yml".to_string());
        let e = load(&Sources {
            config_file: None,
            dcs_url: None,
            env: &get,
            default_file: Some(p.clone()),
        })
        .unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("/no/such/file.yml") && msg.contains("WARDENCTL_CONFIG_FILE"),
            "{msg}"
        );
        // The default file is used only when nothing names one.
        let none = |_: &str| None;
        let c = load(&Sources {
            config_file: None,
            dcs_url: None,
            env: &none,
            default_file: Some(p),
        })
        .unwrap();
        assert_eq!(c.scope.as_deref(), Some("fromenv"));
        assert_eq!(
            default_file(&|k| (k == "HOME").then(|| "/home/u".to_string())),
            Some(PathBuf::from("/home/u/.config/patroni/patronictl.yaml"))
        );
    }

    #[test]
    fn missing_pieces_are_named() {
        let c = load_with(Some("{}"), None, &[]).unwrap();
        let e = c.scope_for(None).unwrap_err().to_string();
        assert!(e.contains("CLUSTER_NAME") && e.contains("scope"), "{e}");
        let e = c.endpoints().unwrap_err().to_string();
        assert!(e.contains("etcd3.hosts") && e.contains("-d"), "{e}");
        let c = load_with(Some("etcd: {host: h:2379}\n"), None, &[]).unwrap();
        assert!(c
            .endpoints()
            .unwrap_err()
            .to_string()
            .contains("etcd v3 only"));
        let e = format!("{:#}", load_with(Some("[1, 2]"), None, &[]).unwrap_err());
        assert!(e.contains("mapping"), "{e}");
        let e = format!(
            "{:#}",
            load_with(Some("etcd3: {hosts: {a: b}}"), None, &[]).unwrap_err()
        );
        assert!(e.contains("etcd3.hosts"), "{e}");
    }

    #[test]
    fn dcs_urls() {
        let ok = |u: &str| parse_dcs_url(u).unwrap();
        assert_eq!(
            ok("etcd3://127.0.0.1:2379"),
            (vec!["127.0.0.1:2379".into()], None)
        );
        assert_eq!(ok("etcd://h"), (vec!["h:2379".into()], None));
        assert_eq!(ok("etcd3://:2399"), (vec!["localhost:2399".into()], None));
        assert_eq!(ok("h:1"), (vec!["h:1".into()], None));
        assert_eq!(
            ok("etcd3://a:1,b:2/ns/"),
            (vec!["a:1".into(), "b:2".into()], Some("/ns/".into()))
        );
        assert_eq!(ok("etcd3://[::1]:2379"), (vec!["[::1]:2379".into()], None));
        for (bad, needle) in [
            ("consul://h:8500", "etcd only"),
            ("http2://h", "unknown DCS scheme"),
            ("etcd3://h:abc", "port \"abc\""),
            ("etcd3://h:99999", "99999"),
        ] {
            let e = parse_dcs_url(bad).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn etcd_tls_and_user_from_file_and_env() {
        let file = "scope: s\netcd3:\n  hosts: [h:1]\n  protocol: https\n  cacert: /ca.pem\n  \
                    cert: /c.pem\n  key: /c.key\n  username: filer\n  password: pw\n";
        let c = load_with(Some(file), None, &[("PATRONI_ETCD3_USERNAME", "envuser")]).unwrap();
        let sec = c.etcd_security().unwrap();
        let tls = sec.tls.unwrap();
        assert_eq!(tls.cacert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(tls.key, Some(PathBuf::from("/c.key")));
        let user = sec.user.unwrap();
        assert_eq!(
            (user.username.as_str(), user.password.as_str()),
            ("envuser", "pw")
        );
        assert!(!format!("{c:?}").contains("pw\""), "{c:?}");
        // An https URL host means TLS even without protocol.
        let c = load_with(Some("etcd3: {hosts: 'https://h:1'}"), None, &[]).unwrap();
        assert!(c.etcd_security().unwrap().tls.is_some());
        // Certificates beside plain http are refused, not ignored.
        let c = load_with(Some("etcd3: {hosts: h:1, cacert: /ca.pem}"), None, &[]).unwrap();
        let e = c.etcd_security().unwrap_err().to_string();
        assert!(
            e.contains("etcd3.cacert") && e.contains("plain http"),
            "{e}"
        );
        let c = load_with(Some("etcd3: {hosts: h:1, username: u}"), None, &[]).unwrap();
        assert!(c
            .etcd_security()
            .unwrap_err()
            .to_string()
            .contains("etcd3.password"));
    }
}
