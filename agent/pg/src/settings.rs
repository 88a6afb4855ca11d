//! What the adapter knows of the agent's config (resolved once at start-up), and the
//! libpq connection strings made from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Credentials of one PostgreSQL role the agent uses.
#[derive(Clone)]
pub struct Role {
    pub username: String,
    pub password: Option<String>,
    /// `sslmode`, `sslrootcert`, ... of this role (libpq's meanings).
    pub tls: crate::tls::ClientTls,
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Role")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("tls", &self.tls)
            .finish()
    }
}

/// Everything the adapter needs from the agent's config, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub scope: String,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub listen_hosts: Vec<String>,
    pub port: u16,
    pub pgpass: PathBuf,
    pub superuser: Role,
    pub replication: Role,
    pub rewind: Option<Role>,
    pub parameters: BTreeMap<String, String>,
    /// `postgresql.recovery_conf`: settings a replica runs with (`restore_command`).
    pub recovery_conf: BTreeMap<String, String>,
    pub pg_hba: Vec<String>,
    /// initdb arguments (`--data-checksums`, `--encoding=UTF8`, ...).
    pub initdb: Vec<String>,
    pub use_unix_socket: bool,
    /// `postgresql.use_pg_rewind` of the local file: overrides the dynamic config's.
    pub use_pg_rewind: Option<bool>,
}

impl Settings {
    /// A libpq connection string for the agent's own connection to its PostgreSQL.
    pub fn local_conn_string(&self) -> String {
        self.local_conn_string_to("postgres", true)
    }

    /// The same for database `dbname`; `with_password: false` for a program's command
    /// line (visible in `ps`): pass the password as `PGPASSWORD` instead.
    pub fn local_conn_string_to(&self, dbname: &str, with_password: bool) -> String {
        let host = if self.use_unix_socket {
            self.parameters
                .get("unix_socket_directories")
                .and_then(|d| d.split(',').next())
                .map_or_else(
                    || "/var/run/postgresql".to_string(),
                    |d| d.trim().to_string(),
                )
        } else {
            local_tcp_host(&self.listen_hosts)
        };
        let mut s = format!(
            "host='{}' port={} user='{}' dbname='{}' application_name='warden' connect_timeout=3",
            host,
            self.port,
            self.superuser.username,
            libpq_escape(dbname)
        );
        if let Some(p) = self.superuser.password.as_ref().filter(|_| with_password) {
            s.push_str(&format!(" password='{}'", libpq_escape(p)));
        }
        // A program's string (no password) goes to libpq, which knows only libpq's keys.
        if with_password {
            s.push_str(&self.superuser.tls.sql_conninfo());
        } else {
            s.push_str(&self.superuser.tls.conninfo());
        }
        s
    }
}

impl Settings {
    /// A connection string for another member's PostgreSQL, as our superuser (members
    /// share the superuser credentials, as pg_rewind from a peer already requires).
    pub fn remote_conn_string(&self, host: &str, port: u16) -> String {
        let mut s = format!(
            "host='{}' port={} user='{}' dbname=postgres application_name='warden' connect_timeout=2",
            libpq_escape(host),
            port,
            libpq_escape(&self.superuser.username)
        );
        if let Some(p) = &self.superuser.password {
            s.push_str(&format!(" password='{}'", libpq_escape(p)));
        }
        s.push_str(&self.superuser.tls.sql_conninfo());
        s
    }

    /// The role pg_rewind and its checks use: `rewind`, else the superuser.
    pub fn rewind_role(&self) -> &Role {
        self.rewind.as_ref().unwrap_or(&self.superuser)
    }
}

impl Settings {
    /// A replication connection to the local PostgreSQL over TCP, without the
    /// password (pass it as `PGPASSWORD`, never on a command line).
    pub fn local_replication_conninfo(&self, application_name: &str) -> String {
        format!(
            "host='{}' port={} user='{}' application_name='{}' connect_timeout=5{}",
            libpq_escape(&local_tcp_host(&self.listen_hosts)),
            self.port,
            libpq_escape(&self.replication.username),
            libpq_escape(application_name),
            self.replication.tls.conninfo(),
        )
    }
}

/// Escapes a value for a single-quoted libpq connection-string parameter.
pub(crate) fn libpq_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The address the agent uses to reach its own PostgreSQL over TCP.
pub fn local_tcp_host(listen: &[String]) -> String {
    match listen.first().map(String::as_str) {
        None | Some("*" | "0.0.0.0" | "") => "127.0.0.1".into(),
        Some("::") => "::1".into(),
        Some(h) => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_host_for_wildcards() {
        assert_eq!(local_tcp_host(&["*".into()]), "127.0.0.1");
        assert_eq!(local_tcp_host(&["0.0.0.0".into()]), "127.0.0.1");
        assert_eq!(
            local_tcp_host(&["10.1.2.3".into(), "127.0.0.1".into()]),
            "10.1.2.3"
        );
    }
}
