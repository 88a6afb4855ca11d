//! The `redis` section: a member that runs `redis-server` instead of PostgreSQL. Every
//! other section (`scope`, `name`, `restapi`, `etcd3`, `bootstrap.dcs`, `tags`,
//! `watchdog`, `backup`) keeps its meaning.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_yaml::Value;
use warden_consensus::dynamic_config;
use warden_redis::adapter::{AuthClients, RedisTls, OWNED};
use warden_redis::sentinel::SentinelTls;

use super::address;
use super::reader::{describe_yaml, key_text, Reader, Section};
use super::schema;
use super::sections::host_port;
use super::types::HostPort;

/// `redis`: the local `redis-server` the agent starts, and the Sentinel-compatible
/// port it serves.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis.listen`'s host (`bind`; `0.0.0.0` or `::` for every address) and port.
    pub listen_host: String,
    pub port: u16,
    /// How other members and clients reach this server (`conn_url`,
    /// `replica-announce-ip`/`-port`, the Sentinel port's answers).
    pub connect_address: HostPort,
    /// Absolute; `dump.rdb`, the AOF, `redis.conf` and Warden's marker live here.
    pub data_dir: PathBuf,
    /// Where `redis-server` is; `None`: on `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// `redis.authentication.username`: an ACL user for the agent and replication
    /// (`None`, or `default`: the default user with `requirepass`).
    pub username: Option<String>,
    /// `redis.authentication.password`: `requirepass`/`masterauth` (and the ACL user's).
    pub password: Option<String>,
    /// Further `redis.conf` settings; the ones Warden owns are refused by name.
    pub parameters: BTreeMap<String, String>,
    /// `redis.tls`: the server's port speaks only TLS (`tls-port` semantics).
    pub tls: Option<RedisTlsConfig>,
    /// `redis.sentinel`: the Sentinel-compatible port (`None`: not served).
    pub sentinel: Option<SentinelSection>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("listen_host", &self.listen_host)
            .field("port", &self.port)
            .field("connect_address", &self.connect_address)
            .field("data_dir", &self.data_dir)
            .field("bin_dir", &self.bin_dir)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("parameters", &self.parameters)
            .field("tls", &self.tls)
            .field("sentinel", &self.sentinel)
            .finish()
    }
}

/// `redis.tls`, as the engine takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// `auth_clients`: `yes` (default, as Redis), `optional` or `no`.
    pub auth_clients: AuthClientsConfig,
}

/// `redis.tls.auth_clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClientsConfig {
    Yes,
    Optional,
    No,
}

impl RedisTlsConfig {
    /// The engine's settings.
    pub fn to_engine(&self) -> RedisTls {
        RedisTls {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            ca_file: self.ca_file.clone(),
            client_cert_file: self.client_cert_file.clone(),
            client_key_file: self.client_key_file.clone(),
            auth_clients: match self.auth_clients {
                AuthClientsConfig::Yes => AuthClients::Yes,
                AuthClientsConfig::Optional => AuthClients::Optional,
                AuthClientsConfig::No => AuthClients::No,
            },
        }
    }
}

/// `redis.sentinel`.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelSection {
    pub listen: SocketAddr,
    /// The name clients ask for (`SENTINEL get-master-addr-by-name <name>`); default:
    /// the scope.
    pub master_name: String,
    /// `redis.sentinel.password`: clients must `AUTH` first (Sentinel's `requirepass`).
    pub password: Option<String>,
    pub tls: Option<SentinelTlsConfig>,
}

impl std::fmt::Debug for SentinelSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSection")
            .field("listen", &self.listen)
            .field("master_name", &self.master_name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// `redis.sentinel.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub require_client_cert: bool,
}

impl SentinelTlsConfig {
    pub fn to_engine(&self) -> SentinelTls {
        SentinelTls {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            client_ca_file: self.client_ca_file.clone(),
            require_client_cert: self.require_client_cert,
        }
    }
}

const PATH: &str = "redis";

/// Reads `redis`; `scope` is the default `sentinel.master_name`. Every key is read
/// before any is combined, so that one bad key does not hide the problems of others.
pub(super) fn redis(r: &mut Reader, value: &Value, scope: Option<&str>) -> Option<RedisConfig> {
    let s = r.section(PATH, value)?;
    r.check_keys(&s, schema::REDIS, &[]);
    let listen = listen(r, &s);
    let connect_address = connect_address(r, &s, listen.as_ref());
    let data_dir = data_dir(r, &s);
    let bin_dir = bin_dir(r, &s);
    let auth = optional(r, &s, "authentication", authentication);
    let parameters = optional(r, &s, "parameters", parameters);
    let tls = optional(r, &s, "tls", tls);
    let sentinel = optional(r, &s, "sentinel", |r, v| sentinel(r, v, scope));
    let (listen_host, port) = listen?;
    let sentinel = sentinel?;
    if let Some(sentinel) = &sentinel {
        // Refused on any address: with either side on a wildcard the two would collide,
        // and one port number per service keeps clients' configuration unambiguous.
        if sentinel.listen.port() == port {
            r.error(
                "redis.sentinel.listen",
                format!("port {port} is redis-server's own (redis.listen)"),
            );
            return None;
        }
    }
    let (username, password) = auth?.unwrap_or_default();
    Some(RedisConfig {
        listen_host,
        port,
        connect_address: connect_address?,
        data_dir: data_dir?,
        bin_dir: bin_dir?,
        username,
        password,
        parameters: parameters?.unwrap_or_default(),
        tls: tls?,
        sentinel,
    })
}

/// An optional key read by `read`: `Some(None)` when absent, `None` when invalid (the
/// problem is recorded).
fn optional<T>(
    r: &mut Reader,
    s: &Section<'_>,
    key: &str,
    read: impl FnOnce(&mut Reader, &Value) -> Option<T>,
) -> Option<Option<T>> {
    match s.get(key) {
        None => Some(None),
        Some(v) => read(r, v).map(Some),
    }
}

/// `redis.listen`: the address `redis-server` binds, as `(ip, port)`.
fn listen(r: &mut Reader, s: &Section<'_>) -> Option<(String, u16)> {
    let text = r
        .required(s, "listen")
        .and_then(|v| r.string("redis.listen", v))?;
    match address::parse_listen(&text) {
        Ok((addr, _)) => Some((addr.ip().to_string(), addr.port())),
        Err(e) => {
            r.error("redis.listen", e);
            None
        }
    }
}

/// `redis.connect_address`, by default `listen` unless that is a wildcard.
fn connect_address(
    r: &mut Reader,
    s: &Section<'_>,
    listen: Option<&(String, u16)>,
) -> Option<HostPort> {
    match (s.get("connect_address"), listen) {
        (Some(v), _) => r
            .string("redis.connect_address", v)
            .and_then(|text| host_port(r, "redis.connect_address", &text)),
        (None, Some((host, _))) if address::is_wildcard(host) => {
            r.error(
                "redis.connect_address",
                "missing required key (redis.listen is a wildcard address other members \
                 cannot connect to)",
            );
            None
        }
        (None, Some((host, port))) => Some(HostPort {
            host: host.clone(),
            port: *port,
        }),
        (None, None) => None,
    }
}

fn path_value(r: &mut Reader, s: &Section<'_>, key: &str) -> Option<PathBuf> {
    let path = s
        .get(key)
        .and_then(|v| r.string(&s.path_of(key), v))
        .map(PathBuf::from)?;
    if path.as_os_str().is_empty() || !path.is_absolute() {
        r.error(
            s.path_of(key),
            format!("must be an absolute path, got \"{}\"", path.display()),
        );
        return None;
    }
    Some(path)
}

fn data_dir(r: &mut Reader, s: &Section<'_>) -> Option<PathBuf> {
    r.required(s, "data_dir")?;
    let path = path_value(r, s, "data_dir")?;
    let existing = path
        .ancestors()
        .find(|p| std::fs::symlink_metadata(p).is_ok());
    if let Some(found) = existing.filter(|f| !f.is_dir()) {
        r.error(
            "redis.data_dir",
            format!(
                "\"{}\" is not a directory, so \"{}\" cannot be used",
                found.display(),
                path.display()
            ),
        );
        return None;
    }
    Some(path)
}

/// `Some(None)`: not given (on `PATH`); `None`: invalid.
fn bin_dir(r: &mut Reader, s: &Section<'_>) -> Option<Option<PathBuf>> {
    if s.get("bin_dir").is_none() {
        return Some(None);
    }
    let path = path_value(r, s, "bin_dir")?;
    let executable = std::fs::metadata(path.join("redis-server"))
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    if executable {
        Some(Some(path))
    } else {
        r.error(
            "redis.bin_dir",
            format!("no executable \"redis-server\" in \"{}\"", path.display()),
        );
        None
    }
}

/// A password: non-empty, and nothing that could end a configuration line.
fn password(r: &mut Reader, path: &str, value: &Value) -> Option<String> {
    let text = r.string(path, value)?;
    let problem = if text.is_empty() {
        Some("must not be empty".to_owned())
    } else {
        dynamic_config::control_char_problem(&text)
    };
    match problem {
        Some(why) => {
            r.error(path, why);
            None
        }
        None => Some(text),
    }
}

/// `(username, password)`; `username: default` is Redis's default user.
fn authentication(r: &mut Reader, value: &Value) -> Option<(Option<String>, Option<String>)> {
    const P: &str = "redis.authentication";
    let s = r.section(P, value)?;
    r.check_keys(&s, schema::REDIS_AUTH, &[]);
    let username = optional(r, &s, "username", |r, v| {
        let path = format!("{P}.username");
        let name = r.string(&path, v)?;
        let why = if name.is_empty() {
            "must not be empty"
        } else if name.contains(|c: char| c.is_whitespace() || c.is_control()) {
            "must not contain whitespace or control characters"
        } else {
            return Some(name);
        };
        r.error(path, why);
        None
    });
    let password = optional(r, &s, "password", |r, v| {
        password(r, &format!("{P}.password"), v)
    });
    let username = username?.filter(|u| u != "default");
    let password = password?;
    if username.is_some() && password.is_none() {
        r.error(
            format!("{P}.password"),
            "missing required key (an ACL user needs a password)",
        );
        return None;
    }
    Some((username, password))
}

/// `redis.parameters`, keyed by the lower-case name (`redis.conf` names are
/// case-insensitive).
fn parameters(r: &mut Reader, value: &Value) -> Option<BTreeMap<String, String>> {
    const P: &str = "redis.parameters";
    let s = r.section(P, value)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, value) in s.entries() {
        let Some(name) = key_text(key) else {
            r.error(P, "parameter names must be strings");
            ok = false;
            continue;
        };
        let item = s.path_of(&name);
        match parameter(&name, value) {
            Ok((lower, text)) => match out.entry(lower) {
                Entry::Vacant(e) => {
                    e.insert(text);
                }
                Entry::Occupied(e) => {
                    r.error(
                        item,
                        format!("given twice (as \"{}\" in any case)", e.key()),
                    );
                    ok = false;
                }
            },
            Err(why) => {
                r.error(item, why);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// One parameter as `(lower-case name, value text)`, or why it is refused.
fn parameter(name: &str, value: &Value) -> Result<(String, String), String> {
    let lower = name.trim().to_ascii_lowercase();
    if OWNED.contains(&lower.as_str()) {
        return Err(
            "set by Warden (the agent owns where redis-server listens, whom it \
                    follows, who logs in and its TLS; see redis.listen, \
                    redis.authentication, redis.tls)"
                .to_owned(),
        );
    }
    if lower.is_empty()
        || !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("not a redis.conf setting name".to_owned());
    }
    let text = match value {
        Value::String(t) => t.clone(),
        Value::Number(n) => n.to_string(),
        // redis.conf spells booleans yes/no.
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        other => {
            return Err(format!(
                "expected a string, number or boolean, got {}",
                describe_yaml(other)
            ))
        }
    };
    match dynamic_config::control_char_problem(&text) {
        Some(why) => Err(why),
        None => Ok((lower, text)),
    }
}

/// A file that must exist and be readable now: a TLS setting that cannot be honoured
/// is an error, never a plain-text fallback. `Some(None)`: optional and not given.
fn readable_file(
    r: &mut Reader,
    s: &Section<'_>,
    key: &str,
    required: bool,
) -> Option<Option<PathBuf>> {
    if s.get(key).is_none() {
        if required {
            r.error(s.path_of(key), "missing required key");
            return None;
        }
        return Some(None);
    }
    let path = path_value(r, s, key)?;
    // A directory opens too, but is no certificate or key.
    let problem = match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some("not a regular file".to_owned()),
        Err(e) => Some(e.to_string()),
    };
    match problem {
        None => Some(Some(path)),
        Some(why) => {
            r.error(
                s.path_of(key),
                format!("cannot read \"{}\": {why}", path.display()),
            );
            None
        }
    }
}

fn auth_clients(r: &mut Reader, value: &Value) -> Option<AuthClientsConfig> {
    match value {
        Value::Bool(true) => Some(AuthClientsConfig::Yes),
        Value::Bool(false) => Some(AuthClientsConfig::No),
        Value::String(t) if t == "yes" => Some(AuthClientsConfig::Yes),
        Value::String(t) if t == "no" => Some(AuthClientsConfig::No),
        Value::String(t) if t == "optional" => Some(AuthClientsConfig::Optional),
        other => {
            r.error(
                "redis.tls.auth_clients",
                format!("expected yes, optional or no, got {}", describe_yaml(other)),
            );
            None
        }
    }
}

fn tls(r: &mut Reader, value: &Value) -> Option<RedisTlsConfig> {
    let s = r.section("redis.tls", value)?;
    r.check_keys(&s, schema::REDIS_TLS, &[]);
    let cert_file = readable_file(r, &s, "cert_file", true);
    let key_file = readable_file(r, &s, "key_file", true);
    let ca_file = readable_file(r, &s, "ca_file", true);
    let client_cert_file = readable_file(r, &s, "client_cert_file", false);
    let client_key_file = readable_file(r, &s, "client_key_file", false);
    let auth_clients = optional(r, &s, "auth_clients", auth_clients);
    let (client_cert_file, client_key_file) = (client_cert_file?, client_key_file?);
    match (&client_cert_file, &client_key_file) {
        (Some(_), None) => {
            r.error(
                "redis.tls.client_key_file",
                "required with client_cert_file",
            );
            return None;
        }
        (None, Some(_)) => {
            r.error(
                "redis.tls.client_cert_file",
                "required with client_key_file",
            );
            return None;
        }
        _ => {}
    }
    Some(RedisTlsConfig {
        cert_file: cert_file??,
        key_file: key_file??,
        ca_file: ca_file??,
        client_cert_file,
        client_key_file,
        auth_clients: auth_clients?.unwrap_or(AuthClientsConfig::Yes),
    })
}

fn sentinel(r: &mut Reader, value: &Value, scope: Option<&str>) -> Option<SentinelSection> {
    const P: &str = "redis.sentinel";
    let s = r.section(P, value)?;
    r.check_keys(&s, schema::REDIS_SENTINEL, &[]);
    let listen = r
        .required(&s, "listen")
        .and_then(|v| r.string("redis.sentinel.listen", v))
        .and_then(|text| match address::parse_listen(&text) {
            Ok((addr, _)) => Some(addr),
            Err(e) => {
                r.error("redis.sentinel.listen", e);
                None
            }
        });
    let master_name = match s.get("master_name") {
        Some(v) => r.string("redis.sentinel.master_name", v).and_then(|n| {
            let bad = n.is_empty() || n.contains(|c: char| c.is_whitespace() || c.is_control());
            if bad {
                r.error(
                    "redis.sentinel.master_name",
                    "must be a non-empty name without whitespace",
                );
                None
            } else {
                Some(n)
            }
        }),
        // A missing scope is reported at `scope`.
        None => scope.map(str::to_owned),
    };
    let password = optional(r, &s, "password", |r, v| {
        password(r, "redis.sentinel.password", v)
    });
    let tls = optional(r, &s, "tls", sentinel_tls);
    Some(SentinelSection {
        listen: listen?,
        master_name: master_name?,
        password: password?,
        tls: tls?,
    })
}

fn sentinel_tls(r: &mut Reader, value: &Value) -> Option<SentinelTlsConfig> {
    let t = r.section("redis.sentinel.tls", value)?;
    r.check_keys(&t, schema::REDIS_SENTINEL_TLS, &[]);
    let cert_file = readable_file(r, &t, "cert_file", true);
    let key_file = readable_file(r, &t, "key_file", true);
    let client_ca_file = readable_file(r, &t, "client_ca_file", false);
    let require_client_cert = optional(r, &t, "require_client_cert", |r, v| {
        r.boolean("redis.sentinel.tls.require_client_cert", v)
    });
    let (client_ca_file, require_client_cert) =
        (client_ca_file?, require_client_cert?.unwrap_or(false));
    if require_client_cert && client_ca_file.is_none() {
        r.error(
            "redis.sentinel.tls.require_client_cert",
            "needs redis.sentinel.tls.client_ca_file",
        );
        return None;
    }
    Some(SentinelTlsConfig {
        cert_file: cert_file??,
        key_file: key_file??,
        client_ca_file,
        require_client_cert,
    })
}
