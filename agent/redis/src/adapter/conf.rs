//! The adapter's settings and the `redis.conf` it writes into the data directory.
//!
//! Warden owns the settings that decide where the server listens, where its data is,
//! whom it follows and who may log in; a user's parameter naming one of them is refused
//! with its name. Everything else is passed to `redis-server` as written.

use super::tls::RedisTls;
use super::RedisError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use warden_ha::RoleConfig;

/// Where the local Redis listens, keeps its data and how members reach it.
#[derive(Clone)]
pub struct RedisSettings {
    /// The address `redis-server` binds (`bind`); the agent connects to it, or to
    /// 127.0.0.1 when it is a wildcard.
    pub listen_host: String,
    pub port: u16,
    /// How other members reach this server (`replica-announce-ip`/`-port`, and the
    /// member key's `conn_url`).
    pub connect_host: String,
    pub connect_port: u16,
    pub data_dir: PathBuf,
    /// Where `redis-server` is; `None`: found on the agent's `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// An ACL user for the agent and replication (`masteruser`); `None`: the default
    /// user.
    pub username: Option<String>,
    /// The password clients and replicas log in with (`requirepass`, `masterauth`, and
    /// the ACL user's); never in argv or logs, only in the 0600 `redis.conf`.
    pub password: Option<String>,
    /// Further `redis.conf` settings, passed as written (e.g. `appendonly`, `save`,
    /// `maxmemory`).
    pub parameters: BTreeMap<String, String>,
    /// TLS on the server's port (then TLS only: `port 0`, `tls-port <port>`), for
    /// replication and for the agent's own connections; `None`: plain TCP.
    pub tls: Option<RedisTls>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("listen_host", &self.listen_host)
            .field("port", &self.port)
            .field("connect_host", &self.connect_host)
            .field("connect_port", &self.connect_port)
            .field("data_dir", &self.data_dir)
            .field("bin_dir", &self.bin_dir)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("parameters", &self.parameters)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Settings Warden writes itself (lower case, with the old `slave` names): where the
/// server listens and keeps its files, whom it follows, who may log in, how it runs
/// (the agent supervises the process, in the foreground), and commands the agent needs
/// (`rename-command`), plus `include`, which could bring any of them back.
pub const OWNED: &[&str] = &[
    "port",
    "bind",
    "dir",
    "daemonize",
    "supervised",
    "pidfile",
    "logfile",
    "replicaof",
    "slaveof",
    "masterauth",
    "masteruser",
    "requirepass",
    "user",
    "include",
    "rename-command",
    "replica-read-only",
    "slave-read-only",
    "replica-announce-ip",
    "slave-announce-ip",
    "replica-announce-port",
    "slave-announce-port",
    // TLS: from `tls`, so that a TLS-only server cannot be half configured.
    "tls-port",
    "tls-cert-file",
    "tls-key-file",
    "tls-ca-cert-file",
    "tls-ca-cert-dir",
    "tls-client-cert-file",
    "tls-client-key-file",
    "tls-auth-clients",
    "tls-replication",
    // Snapshots are fetched from replicas over the replication protocol: a disk-based
    // sync would rewrite the source replica's own dump.rdb.
    "repl-diskless-sync",
];

/// The host a replica configured with no source follows: port 0 never accepts a
/// connection, so the server stays a read-only replica of nobody (Redis has no
/// read-only primary) and keeps its data and replication id until it is pointed at a
/// leader.
pub const NOBODY: (&str, u16) = ("127.0.0.1", 0);

impl RedisSettings {
    /// Refuses parameters naming a setting Warden owns, and names or values a
    /// configuration line cannot carry.
    pub fn validate(&self) -> Result<(), RedisError> {
        for (k, v) in &self.parameters {
            let key = k.trim().to_ascii_lowercase();
            if OWNED.contains(&key.as_str()) {
                return Err(RedisError::OwnedParameter(k.clone()));
            }
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(RedisError::BadParameter {
                    key: k.clone(),
                    why: "not a redis.conf setting name".into(),
                });
            }
            if v.contains(['\n', '\r', '\0']) {
                return Err(RedisError::BadParameter {
                    key: k.clone(),
                    why: "the value spans lines".into(),
                });
            }
        }
        for (what, v) in [
            ("username", self.username.as_deref()),
            ("password", self.password.as_deref()),
        ] {
            if v.is_some_and(|v| v.is_empty() || v.contains(['\n', '\r', '\0'])) {
                return Err(RedisError::BadParameter {
                    key: what.into(),
                    why: "empty or spans lines".into(),
                });
            }
        }
        if self
            .username
            .as_deref()
            .is_some_and(|u| u.contains(char::is_whitespace) || u == "default")
        {
            return Err(RedisError::BadParameter {
                key: "username".into(),
                why: "must be a name other than `default`, without spaces".into(),
            });
        }
        if let Some(tls) = &self.tls {
            tls.validate().map_err(|e| RedisError::BadParameter {
                key: e.setting,
                why: e.why,
            })?;
        }
        Ok(())
    }

    pub fn conf_path(&self) -> PathBuf {
        self.data_dir.join("redis.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("redis.log")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.data_dir.join("redis.pid")
    }

    pub fn server_program(&self) -> PathBuf {
        self.bin_dir
            .as_ref()
            .map_or_else(|| PathBuf::from("redis-server"), |d| d.join("redis-server"))
    }

    /// The address the agent connects to its own server on.
    pub fn local_host(&self) -> String {
        let first = self.listen_host.split_whitespace().next().unwrap_or("");
        match first.trim_start_matches('-') {
            "" | "*" | "0.0.0.0" => "127.0.0.1".into(),
            "::" | "::*" => "::1".into(),
            h => h.into(),
        }
    }

    /// `redis.conf` for `role`: Warden's settings, then the user's parameters, then
    /// the role (`replicaof`; a primary has none).
    pub fn render(&self, role: &RoleConfig) -> String {
        let mut s = String::from(
            "# Written by Warden, rewritten on every role change: edit Warden's configuration instead.\n",
        );
        let dir = |p: &Path| quote(&p.display().to_string());
        match &self.tls {
            None => {
                let _ = writeln!(s, "port {}", self.port);
            }
            Some(tls) => {
                // TLS only: no plain-text listener at all.
                s.push_str("port 0\n");
                let _ = writeln!(s, "tls-port {}", self.port);
                let _ = writeln!(s, "tls-cert-file {}", dir(&tls.cert_file));
                let _ = writeln!(s, "tls-key-file {}", dir(&tls.key_file));
                let _ = writeln!(s, "tls-ca-cert-file {}", dir(&tls.ca_file));
                let _ = writeln!(s, "tls-auth-clients {}", tls.auth_clients.as_str());
                s.push_str("tls-replication yes\n");
            }
        }
        let _ = writeln!(s, "bind {}", self.listen_host);
        let _ = writeln!(s, "dir {}", dir(&self.data_dir));
        s.push_str("daemonize no\n");
        let _ = writeln!(s, "pidfile {}", dir(&self.pid_path()));
        let _ = writeln!(s, "logfile {}", dir(&self.log_path()));
        s.push_str("replica-read-only yes\n");
        let _ = writeln!(s, "replica-announce-ip {}", quote(&self.connect_host));
        let _ = writeln!(s, "replica-announce-port {}", self.connect_port);
        if let Some(pw) = &self.password {
            let _ = writeln!(s, "requirepass {}", quote(pw));
            let _ = writeln!(s, "masterauth {}", quote(pw));
            if let Some(user) = &self.username {
                // The agent's and replication's user: every command, key and channel.
                let _ = writeln!(s, "user {user} on {} ~* &* +@all", quote(&format!(">{pw}")));
                let _ = writeln!(s, "masteruser {}", quote(user));
            }
        }
        s.push_str("repl-diskless-sync yes\n");
        for (k, v) in &self.parameters {
            let _ = writeln!(s, "{} {v}", k.trim().to_ascii_lowercase());
        }
        let (host, port) = match role {
            RoleConfig::Primary => return s,
            RoleConfig::Replica { source: Some(src) } => (src.host.as_str(), src.port),
            RoleConfig::Replica { source: None } => NOBODY,
        };
        let _ = writeln!(s, "replicaof {} {port}", quote(host));
        // A replica serves only snapshot fetches: no reason to wait for more replicas to
        // share the transfer (the primary keeps the configured delay).
        s.push_str("repl-diskless-sync-delay 0\n");
        s
    }

    /// `repl-diskless-sync-delay` for `role`: 0 on a replica, the configured value (or
    /// Redis's default, 5) on a primary.
    pub fn diskless_delay(&self, role: &RoleConfig) -> String {
        match role {
            RoleConfig::Replica { .. } => "0".to_string(),
            RoleConfig::Primary => self
                .parameters
                .iter()
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("repl-diskless-sync-delay"))
                .map_or_else(|| "5".to_string(), |(_, v)| v.clone()),
        }
    }
}

/// A `redis.conf` argument in double quotes, with backslashes, quotes and control
/// characters escaped (Redis reads `\\`, `\"` and `\xHH` inside double quotes).
pub fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_ha::Source;

    fn settings() -> RedisSettings {
        RedisSettings {
            listen_host: "127.0.0.1".into(),
            port: 6390,
            connect_host: "10.0.0.5".into(),
            connect_port: 6390,
            data_dir: "/var/lib/redis data".into(),
            bin_dir: None,
            username: None,
            password: None,
            parameters: BTreeMap::new(),
            tls: None,
        }
    }

    #[test]
    fn owned_settings_are_refused_by_name() {
        for key in [
            "port",
            "Replicaof",
            "slaveof",
            "masterauth",
            "daemonize",
            " dir",
            "include",
        ] {
            let mut s = settings();
            s.parameters.insert(key.into(), "x".into());
            let e = s.validate().unwrap_err();
            assert!(
                matches!(&e, RedisError::OwnedParameter(k) if k == key),
                "{e}"
            );
            assert!(e.to_string().contains(key), "{e}");
        }
        let mut s = settings();
        s.parameters
            .insert("maxmemory".into(), "1\nreplicaof x 1".into());
        assert!(
            matches!(s.validate(), Err(RedisError::BadParameter { key, .. }) if key == "maxmemory")
        );
        let mut s = settings();
        s.parameters.insert("save x".into(), "1".into());
        assert!(s.validate().is_err());
        let mut s = settings();
        s.parameters.insert("appendonly".into(), "yes".into());
        s.parameters.insert("save".into(), "\"\"".into());
        s.validate().unwrap();
    }

    #[test]
    fn the_role_decides_replicaof() {
        let s = settings();
        let primary = s.render(&RoleConfig::Primary);
        assert!(!primary.contains("replicaof"), "{primary}");
        assert!(
            primary.contains("dir \"/var/lib/redis data\"\n"),
            "{primary}"
        );
        assert!(primary.contains("replica-read-only yes\n"));
        let source = Source {
            member: "b".into(),
            host: "10.0.0.6".into(),
            port: 6391,
        };
        let replica = s.render(&RoleConfig::Replica {
            source: Some(source),
        });
        assert!(
            replica.ends_with("replicaof \"10.0.0.6\" 6391\nrepl-diskless-sync-delay 0\n"),
            "{replica}"
        );
        let nobody = s.render(&RoleConfig::Replica { source: None });
        assert!(
            nobody.ends_with("replicaof \"127.0.0.1\" 0\nrepl-diskless-sync-delay 0\n"),
            "{nobody}"
        );
        // Snapshots never touch a replica's disk; a primary keeps the configured delay.
        assert!(primary.contains("repl-diskless-sync yes\n"), "{primary}");
        assert!(!primary.contains("repl-diskless-sync-delay"), "{primary}");
    }

    #[test]
    fn tls_makes_the_port_tls_only() {
        let mut s = settings();
        s.tls = Some(RedisTls {
            cert_file: "/etc/r/s.crt".into(),
            key_file: "/etc/r/s.key".into(),
            ca_file: "/etc/r/ca.crt".into(),
            client_cert_file: None,
            client_key_file: None,
            auth_clients: crate::adapter::AuthClients::Optional,
        });
        let conf = s.render(&RoleConfig::Primary);
        for line in [
            "port 0\n",
            "tls-port 6390\n",
            "tls-cert-file \"/etc/r/s.crt\"\n",
            "tls-key-file \"/etc/r/s.key\"\n",
            "tls-ca-cert-file \"/etc/r/ca.crt\"\n",
            "tls-auth-clients optional\n",
            "tls-replication yes\n",
        ] {
            assert!(conf.contains(line), "{line:?} missing from {conf}");
        }
        assert!(!conf.lines().any(|l| l == "port 6390"), "{conf}");
        s.tls = None;
        s.parameters.insert("tls-port".into(), "6391".into());
        assert!(matches!(s.validate(), Err(RedisError::OwnedParameter(k)) if k == "tls-port"));
    }

    #[test]
    fn passwords_are_quoted_and_never_debug_printed() {
        let mut s = settings();
        s.password = Some("p\"w\\x y".into());
        s.username = Some("warden".into());
        let conf = s.render(&RoleConfig::Primary);
        assert!(conf.contains("requirepass \"p\\\"w\\\\x y\"\n"), "{conf}");
        assert!(conf.contains("masteruser \"warden\"\n"), "{conf}");
        assert!(
            conf.contains("user warden on \">p\\\"w\\\\x y\" ~* &* +@all\n"),
            "{conf}"
        );
        assert!(!format!("{s:?}").contains("p\\\"w"));
        assert_eq!(quote("a\tb"), "\"a\\x09b\"");
    }
}
