//! The typed, validated agent configuration. Values here are final: defaults applied,
//! addresses parsed, paths checked. Built only by [`super::parse`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use warden_consensus::dynamic_config::DynamicConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Cluster name; the etcd prefix is `<namespace><scope>/`.
    pub scope: String,
    /// Always starts and ends with `/` (`/service/`, or `/` for the root).
    pub namespace: String,
    /// This member's name, unique in the cluster.
    pub name: String,
    pub log: LogConfig,
    pub restapi: RestApiConfig,
    pub etcd3: EtcdConfig,
    pub bootstrap: BootstrapConfig,
    /// The database this member runs: the `postgresql` or the `redis` section.
    pub engine: EngineConfig,
    pub tags: Tags,
    pub watchdog: WatchdogConfig,
    /// `backup` (Warden only); `None` when the section is absent.
    pub backup: Option<BackupConfig>,
}

/// Which engine a member runs, with its section: exactly one of `postgresql` and
/// `redis` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineConfig {
    Postgresql(Box<PostgresqlConfig>),
    Redis(Box<crate::redis::RedisConfig>),
}

impl Config {
    /// The `postgresql` section; `None` for a Redis member.
    pub fn postgresql(&self) -> Option<&PostgresqlConfig> {
        match &self.engine {
            EngineConfig::Postgresql(p) => Some(p),
            EngineConfig::Redis(_) => None,
        }
    }

    /// The `redis` section; `None` for a PostgreSQL member.
    pub fn redis(&self) -> Option<&crate::redis::RedisConfig> {
        match &self.engine {
            EngineConfig::Redis(r) => Some(r),
            EngineConfig::Postgresql(_) => None,
        }
    }

    /// The member key's `conn_url`: how clients and other members reach the server
    /// (`postgres://host:port/postgres`; Redis: `redis://host:port`, `rediss://` with
    /// TLS).
    pub fn conn_url(&self) -> String {
        match &self.engine {
            EngineConfig::Postgresql(p) => format!("postgres://{}/postgres", p.connect_address),
            EngineConfig::Redis(r) => {
                let scheme = if r.tls.is_some() { "rediss" } else { "redis" };
                format!("{scheme}://{}", r.connect_address)
            }
        }
    }

    /// The `postgresql` section, or an error naming what needs it (an operation only
    /// PostgreSQL has, asked of a Redis member).
    pub fn require_postgresql(&self, what: &str) -> Result<&PostgresqlConfig, String> {
        self.postgresql()
            .ok_or_else(|| format!("{what} needs a postgresql section (this member runs Redis)"))
    }
}

/// `watchdog`, as in Patroni: a hardware (or softdog) timer that resets the machine if
/// the leader's agent stops feeding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    pub mode: WatchdogMode,
    pub device: PathBuf,
    /// Seconds between the watchdog firing and the lease expiring; `None` (Patroni's
    /// `-1`): half the ttl.
    pub safety_margin: Option<u32>,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            mode: WatchdogMode::Automatic,
            device: PathBuf::from("/dev/watchdog"),
            safety_margin: Some(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogMode {
    /// Never use a watchdog.
    Off,
    /// Use it when the device can be opened; lead without it otherwise.
    Automatic,
    /// Never lead without an armed watchdog.
    Required,
}

/// `log`, as Patroni 4 defines it (see `logging` for how each setting is applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// One of `DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL` (normalised to upper case).
    pub level: String,
    /// `log.type: json` (Patroni 4); plain text otherwise.
    pub json: bool,
    /// `log.format` given as a string: a Python logging format (`%(asctime)s ...`);
    /// for JSON logs its `%(field)` names are the fields. `None`: Patroni's default.
    pub format: Option<String>,
    /// `log.format` given as a list (or mapping) of JSON fields: `(field, key written)`.
    pub json_fields: Option<Vec<(String, String)>>,
    /// strftime-style `%(asctime)s` format; `None`: `YYYY-MM-DD HH:MM:SS,mmm`.
    pub dateformat: Option<String>,
    /// Fields added to every JSON line, in the order given.
    pub static_fields: Vec<(String, serde_json::Value)>,
    /// `log.dir`: write `<dir>/patroni.log` instead of standard error.
    pub dir: Option<PathBuf>,
    /// Rotate `patroni.log` before it reaches this many bytes.
    pub file_size: u64,
    /// Rotated files kept: `patroni.log.1` .. `patroni.log.<file_num>`.
    pub file_num: u32,
    /// Permission bits of the log files; `None`: `0666` less the umask.
    pub mode: Option<u32>,
    /// Patroni logger name -> level (`DEBUG` .. `CRITICAL`).
    pub loggers: BTreeMap<String, String>,
    /// Accepted for Patroni compatibility; Warden logs no stack traces.
    pub traceback_level: String,
    /// Log lines waiting for the writer thread before new ones are dropped (and counted).
    pub max_queue_size: usize,
    /// Accepted for Patroni compatibility; Warden logs a decision only when it changes.
    pub deduplicate_heartbeat_logs: bool,
}

impl LogConfig {
    pub const DEFAULT_FORMAT: &'static str = "%(asctime)s %(levelname)s: %(message)s";
    pub const DEFAULT_FILE_SIZE: u64 = 25_000_000;
    pub const DEFAULT_FILE_NUM: u32 = 4;
    pub const DEFAULT_MAX_QUEUE_SIZE: usize = 1000;
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "INFO".to_owned(),
            json: false,
            format: None,
            json_fields: None,
            dateformat: None,
            static_fields: Vec::new(),
            dir: None,
            file_size: Self::DEFAULT_FILE_SIZE,
            file_num: Self::DEFAULT_FILE_NUM,
            mode: None,
            loggers: BTreeMap::new(),
            traceback_level: "ERROR".to_owned(),
            max_queue_size: Self::DEFAULT_MAX_QUEUE_SIZE,
            deduplicate_heartbeat_logs: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestApiConfig {
    /// Address to bind; `:8008` in the YAML means all IPv4 addresses.
    pub listen: SocketAddr,
    /// Address other members and tools use; published as `api_url`.
    pub connect_address: HostPort,
    /// Basic-auth credentials protecting the unsafe (write) endpoints.
    pub authentication: Option<Credentials>,
    /// `certfile` (and its keys): the API serves https only; `None`: plain http.
    pub tls: Option<RestTls>,
    /// `allowlist`: who may call the unsafe endpoints (IP, CIDR or host name); empty
    /// with `allowlist_include_members` false: anyone.
    pub allowlist: Vec<String>,
    /// `allowlist_include_members`: members' `api_url` hosts are allowed too.
    pub allowlist_include_members: bool,
    /// `http_extra_headers`: added to every response.
    pub http_extra_headers: Vec<(String, String)>,
    /// `https_extra_headers`: added to every response served over TLS.
    pub https_extra_headers: Vec<(String, String)>,
    /// What this member presents and trusts when it calls other members' APIs:
    /// `ctl.*`, else `restapi.*` (Patroni's request fallback).
    pub client: RestClientTls,
}

impl RestApiConfig {
    /// The `api_url` this member publishes: https when it serves TLS, as Patroni.
    pub fn api_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/patroni", self.connect_address)
    }
}

/// `restapi.certfile` and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestTls {
    pub certfile: PathBuf,
    /// `None`: the key is in `certfile`.
    pub keyfile: Option<PathBuf>,
    pub keyfile_password: Option<Secret>,
    /// CA certificates client certificates are checked against.
    pub cafile: Option<PathBuf>,
    pub verify_client: VerifyClient,
}

/// `restapi.verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyClient {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; when given it must verify; the unsafe endpoints require one.
    Optional,
    /// Every connection must present a certificate that verifies.
    Required,
}

/// A file setting and the key it came from (`ctl.cacert` or `restapi.cafile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedPath {
    pub key: &'static str,
    pub path: PathBuf,
}

/// The REST client's TLS settings (members calling members; wardenctl reads the same
/// keys itself).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestClientTls {
    /// `ctl.cacert`, else `restapi.cafile`; `None`: the system trust store.
    pub cacert: Option<KeyedPath>,
    /// `ctl.certfile`, else `restapi.certfile`.
    pub certfile: Option<KeyedPath>,
    /// The keyfile that goes with `certfile`'s section.
    pub keyfile: Option<KeyedPath>,
    pub keyfile_password: Option<Secret>,
    /// `ctl.insecure`: server certificates are not verified.
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Endpoints as `host:port` (port 2379 when the YAML gave none); the scheme is
    /// `security.tls` (https when set).
    pub hosts: Vec<String>,
    /// `protocol: https` with `cacert`/`cert`/`key`, and `username`/`password`.
    pub security: warden_consensus::etcd::EtcdSecurity,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BootstrapConfig {
    /// Written to the `config` key by the member that initialises the cluster.
    pub dcs: DynamicConfig,
    pub initdb: Vec<InitdbOption>,
    /// `bootstrap.method: warden_restore`: the member that wins the initialize race
    /// restores a backup from the repository instead of running initdb.
    pub restore: Option<RestoreBootstrap>,
    /// `bootstrap.method: NAME` with `bootstrap.NAME.command`: a user's script creates
    /// the data directory (Patroni's custom bootstrap).
    pub custom: Option<crate::methods::CustomBootstrap>,
    /// `bootstrap.post_bootstrap` (or `post_init`): run once after the cluster is
    /// created, with a connection string to the new primary as its argument.
    pub post_bootstrap: Option<String>,
}

/// `bootstrap.warden_restore`: which backup, and how far to recover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreBootstrap {
    /// A backup id or `latest`.
    pub backup: String,
    pub target: warden_pg::target::Target,
    /// Needed only when the repository holds several clusters under this scope.
    pub system_identifier: Option<u64>,
    /// Which repository and which cluster's objects (`repository`, `scope`).
    pub source: RestoreSource,
}

/// Where a restore from the repository reads (`bootstrap.warden_restore`,
/// `postgresql.warden_restore`): which repository, and whose objects in it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreSource {
    /// `None` or `main`: `backup.repository`; else the name of one of `backup.copies`
    /// (checked at load).
    pub repository: Option<String>,
    /// The cluster whose backups and WAL are read (default: this member's `scope`): a
    /// standby cluster fed from the primary cluster's repository, under a scope of its
    /// own, names the primary cluster's scope here.
    pub scope: Option<String>,
}

/// One `bootstrap.initdb` item: `- data-checksums` or `- encoding: UTF8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitdbOption {
    Flag(String),
    Value { name: String, value: String },
}

impl InitdbOption {
    /// The initdb command-line argument: `--data-checksums`, `--encoding=UTF8`.
    pub fn to_arg(&self) -> String {
        match self {
            InitdbOption::Flag(name) => format!("--{name}"),
            InitdbOption::Value { name, value } => format!("--{name}={value}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresqlConfig {
    /// Hosts of `postgresql.listen`, as written (`*`, `127.0.0.1`, `::1`); joined with
    /// commas they form `listen_addresses`.
    pub listen_hosts: Vec<String>,
    pub port: u16,
    /// Published as `conn_url`.
    pub connect_address: HostPort,
    /// Absolute.
    pub data_dir: PathBuf,
    /// `None`: find the binaries on `PATH` at run time (Patroni's behaviour for an
    /// absent or empty `bin_dir`).
    pub bin_dir: Option<PathBuf>,
    /// Password file Warden writes for libpq tools. Default: `pgpass.<name>` beside the
    /// data directory (`/var/lib/pg/node1/data` → `/var/lib/pg/node1/pgpass.<name>`).
    /// Patroni's default, `~/pgpass` in the home of the user running it, would be shared
    /// by every member on one machine; inside the data directory it would be wiped by
    /// a re-clone.
    pub pgpass: PathBuf,
    pub authentication: PgAuth,
    /// Local GUCs in PostgreSQL text form (`true` → `on`, `10` → `10`).
    pub parameters: BTreeMap<String, String>,
    /// `postgresql.recovery_conf`: settings only a replica runs with.
    pub recovery_conf: BTreeMap<String, String>,
    pub pg_hba: Vec<String>,
    pub use_unix_socket: bool,
    /// A local `postgresql.use_pg_rewind`. Patroni lets the local YAML override the
    /// dynamic config for this key, so when `Some` it wins over
    /// `DynamicConfig::postgresql.use_pg_rewind`.
    pub use_pg_rewind: Option<bool>,
    /// `postgresql.callbacks`: event (`on_start`, `on_stop`, `on_restart`, `on_reload`,
    /// `on_role_change`) → command, run as `<command> <event> <role> <scope>`.
    pub callbacks: BTreeMap<String, String>,
    /// `postgresql.pre_promote`: a command whose non-zero exit aborts a promotion.
    pub pre_promote: Option<String>,
    /// `postgresql.create_replica_methods`: how a replica is created, tried in order
    /// (Patroni's semantics). Empty: `basebackup`.
    pub create_replica_methods: Vec<ReplicaMethod>,
    /// `postgresql.warden_restore`: where the `warden_restore` replica method (and a
    /// standby cluster's `create_replica_methods: [warden_restore]`) reads.
    pub warden_restore: RestoreSource,
}

/// A way to create a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaMethod {
    /// `pg_basebackup` from the leader.
    Basebackup,
    /// The newest base backup from the repository, then archived WAL, then streaming.
    WardenRestore,
    /// A user's command (Patroni's custom method).
    Custom(crate::methods::CustomReplicaMethod),
}

impl ReplicaMethod {
    /// The name it has in `create_replica_methods`.
    pub fn name(&self) -> &str {
        match self {
            ReplicaMethod::Basebackup => "basebackup",
            ReplicaMethod::WardenRestore => "warden_restore",
            ReplicaMethod::Custom(m) => &m.name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgAuth {
    pub superuser: Credentials,
    pub replication: Credentials,
    pub rewind: Option<Credentials>,
    /// Each role's TLS settings (`sslmode`, `sslrootcert`, ...).
    pub tls: PgAuthTls,
}

/// The TLS part of `postgresql.authentication`, per role; `rewind` is `None` when
/// there is no rewind role (pg_rewind then uses the superuser's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgAuthTls {
    pub superuser: warden_pg::tls::ClientTls,
    pub replication: warden_pg::tls::ClientTls,
    pub rewind: Option<warden_pg::tls::ClientTls>,
}

/// A user name and optional password. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A connectable `host:port`. The host may be a name, an IPv4 or an IPv6 address
/// (stored without brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Member tags. The well-known ones are typed; any other tag is kept in `other` and
/// published unchanged (Patroni lets users query them with `?tag_<k>=<v>`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tags {
    pub nofailover: bool,
    pub noloadbalance: bool,
    pub clonefrom: bool,
    pub nosync: bool,
    pub failover_priority: Option<u32>,
    pub nostream: bool,
    /// `replicatefrom`: stream from this member instead of the leader (cascading),
    /// while its member key exists.
    pub replicatefrom: Option<String>,
    pub other: BTreeMap<String, serde_json::Value>,
    /// The boolean tags and `failover_priority` exactly as written (`'0'`, `"yes"`,
    /// `1`), published in the member key with the type they were given, as Patroni
    /// publishes them.
    pub given: BTreeMap<String, serde_json::Value>,
}

impl Tags {
    /// Whether this member may take part in a leader race, as Patroni decides it:
    /// an explicit `nofailover` wins; otherwise `failover_priority: 0` excludes it.
    pub fn can_failover(&self) -> bool {
        !self.nofailover && self.failover_priority != Some(0)
    }

    /// Priority used to break ties in the leader race (Patroni: 0 with `nofailover`,
    /// 1 when unset).
    pub fn effective_failover_priority(&self) -> u32 {
        if self.nofailover {
            0
        } else {
            self.failover_priority.unwrap_or(1)
        }
    }

    /// The `tags` object of the member key, as Patroni publishes it: every tag with
    /// the value (and type) it was written with, except that a boolean tag that is off
    /// is left out (`nofailover` is kept while `failover_priority` is given, `nosync`
    /// while `sync_priority` is, so readers see the contradiction as written).
    pub fn to_member_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out: serde_json::Map<String, serde_json::Value> = self
            .other
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let flags = [
            ("nofailover", self.nofailover),
            ("noloadbalance", self.noloadbalance),
            ("clonefrom", self.clonefrom),
            ("nosync", self.nosync),
            ("nostream", self.nostream),
        ];
        for (name, set) in flags {
            let kept_for = match name {
                "nofailover" => self.failover_priority.is_some(),
                "nosync" => self.other.contains_key("sync_priority"),
                _ => false,
            };
            if set || (kept_for && self.given.contains_key(name)) {
                let value = self
                    .given
                    .get(name)
                    .cloned()
                    .unwrap_or(serde_json::Value::Bool(set));
                out.insert(name.to_owned(), value);
            }
        }
        if let Some(from) = &self.replicatefrom {
            let value = self
                .given
                .get("replicatefrom")
                .cloned()
                .unwrap_or_else(|| from.clone().into());
            out.insert("replicatefrom".to_owned(), value);
        }
        if let Some(priority) = self.failover_priority {
            let value = self
                .given
                .get("failover_priority")
                .cloned()
                .unwrap_or_else(|| priority.into());
            out.insert("failover_priority".to_owned(), value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_display_brackets_ipv6() {
        let v4 = HostPort {
            host: "10.0.0.1".into(),
            port: 5432,
        };
        let v6 = HostPort {
            host: "::1".into(),
            port: 5432,
        };
        assert_eq!(v4.to_string(), "10.0.0.1:5432");
        assert_eq!(v6.to_string(), "[::1]:5432");
    }

    #[test]
    fn credentials_debug_redacts_the_password() {
        let c = Credentials {
            username: "postgres".into(),
            password: Some("hunter2".into()),
        };
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("postgres") && text.contains("<redacted>"),
            "{text}"
        );
        let none = Credentials {
            username: "u".into(),
            password: None,
        };
        assert!(format!("{none:?}").contains("None"));
    }

    #[test]
    fn initdb_args() {
        assert_eq!(
            InitdbOption::Flag("data-checksums".into()).to_arg(),
            "--data-checksums"
        );
        let v = InitdbOption::Value {
            name: "encoding".into(),
            value: "UTF8".into(),
        };
        assert_eq!(v.to_arg(), "--encoding=UTF8");
    }

    #[test]
    fn failover_eligibility_follows_patroni() {
        let mut t = Tags::default();
        assert!(t.can_failover());
        assert_eq!(t.effective_failover_priority(), 1);
        t.failover_priority = Some(0);
        assert!(!t.can_failover());
        t.failover_priority = Some(3);
        assert_eq!(t.effective_failover_priority(), 3);
        t.nofailover = true;
        assert!(!t.can_failover());
        assert_eq!(t.effective_failover_priority(), 0);
    }

    #[test]
    fn member_tags_omit_false_flags() {
        let mut t = Tags {
            clonefrom: true,
            failover_priority: Some(2),
            ..Tags::default()
        };
        t.other.insert("zone".into(), serde_json::json!("a"));
        let json = serde_json::Value::Object(t.to_member_json());
        assert_eq!(
            json,
            serde_json::json!({"clonefrom": true, "failover_priority": 2, "zone": "a"})
        );
    }
}

/// `backup.base_method`: how a base backup reads the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaseMethod {
    /// PostgreSQL's low-level backup API around a direct copy of the files (the
    /// agent runs as the data directory's owner).
    #[default]
    Files,
    /// `pg_basebackup` over a replication connection.
    PgBasebackup,
}

impl BaseMethod {
    pub fn name(self) -> &'static str {
        match self {
            Self::Files => "files",
            Self::PgBasebackup => "pg_basebackup",
        }
    }
}

/// `backup` (Warden only): where WAL and backups go and how they are sealed. Absent:
/// no backup feature is used and nothing else changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    pub repository: RepositoryConfig,
    /// File holding the 32-byte key (64 hex digits). `None`: the key comes from the
    /// `WARDEN_BACKUP_KEY` environment variable. Only the path is kept here, never the
    /// key, so the config can be printed and logged.
    pub encryption_key_file: Option<PathBuf>,
    /// zstd level, 1..=19 or a fast level -7..=-1.
    pub compression_level: i32,
    /// `backup.base_method`: how a base backup reads the data directory.
    pub base_method: BaseMethod,
    /// `backup.schedule`: cron expression (UTC) for base backups; `None`: on demand only.
    pub schedule: Option<CronSchedule>,
    /// `backup.retention`; all `None`: keep everything.
    pub retention: Retention,
    /// `backup.dump`: scheduled logical dumps; `None`: none.
    pub dump: Option<DumpConfig>,
    /// `backup.drill`.
    pub drill: DrillConfig,
    /// `backup.heartbeat`: the leader writes `now()` into `warden.heartbeat` this often,
    /// so a restore can tell how recent the data it reached is (drill RPO). `None`: off.
    pub heartbeat: Option<std::time::Duration>,
    /// `backup.webhook_url`: Slack-compatible JSON POSTed on backup, archive or drill
    /// failure. Secret-bearing (Slack URLs carry a token), so never logged.
    pub webhook_url: Option<Secret>,
    /// `backup.wal_wait_timeout`: how long a finished base backup waits for the WAL it
    /// needs to reach the repository before it is abandoned (not committed).
    pub wal_wait_timeout: std::time::Duration,
    /// `backup.partial_upload_interval`: how often the archiver uploads the segment it
    /// is still receiving (`.partial`), bounding the archive's RPO; `None`: only complete
    /// segments are uploaded.
    pub partial_upload_interval: Option<std::time::Duration>,
    /// `backup.objectives`: what `wardenctl dr-report` and the DR gauges judge.
    pub objectives: crate::objectives::Objectives,
    /// `backup.copies`: further repositories every committed object is copied to.
    pub copies: Vec<CopyConfig>,
    /// `backup.jobs`: backups of the rest of the stack (`stack_jobs.rs`).
    pub jobs: Vec<crate::stack_jobs::StackJob>,
}

/// `backup.copies[i]`: a further repository (3-2-1) the archiver copies into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyConfig {
    /// How `--repository NAME` and the metrics' `copy` label name it.
    pub name: String,
    pub repository: RepositoryConfig,
    /// The copy's own key file; `None`: the main repository's key.
    pub encryption_key_file: Option<PathBuf>,
    /// The copy's retention (default: `backup.retention`); keeps at least as much.
    pub retention: Retention,
    /// Behind by more than this (age of the oldest object not yet copied): alert.
    pub max_lag: std::time::Duration,
}

/// A validated cron expression (5 fields, or 6 with seconds first), evaluated in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule(pub String);

/// `backup.retention`, with restic's meanings: `keep_last` newest backups; for each
/// of the newest `keep_daily` days (weeks, months) that have a backup, the newest
/// backup of that day. A backup kept by any rule is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

impl Retention {
    /// No rule set: nothing is ever pruned.
    pub fn keeps_everything(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
    }
}

/// `backup.dump`: `pg_dump --format=custom` of each database on a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpConfig {
    pub schedule: CronSchedule,
    /// Empty: every database that accepts connections except template0/template1.
    pub databases: Vec<String>,
}

/// `backup.drill`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillConfig {
    /// `None`: only `wardenctl drill`.
    pub schedule: Option<CronSchedule>,
    /// Validation queries run against the restored server.
    pub checks: Vec<DrillCheck>,
    /// Bound on the whole drill (fetch, replay, checks).
    pub timeout: std::time::Duration,
}

/// One validation query and the text its first column of its first row must equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillCheck {
    pub name: String,
    pub database: String,
    pub sql: String,
    pub expect: String,
}

/// `backup.repository`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryConfig {
    pub kind: RepositoryKind,
    /// Bound for every single repository call (one PUT, one GET, one listing page).
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryKind {
    /// A directory (local disk or a mounted filesystem).
    Filesystem {
        path: PathBuf,
    },
    S3(S3Config),
}

/// An S3-compatible bucket. Credentials left unset come from the standard AWS
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// `None`: AWS itself (or `AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Key prefix inside the bucket, without leading or trailing `/`; may be empty.
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Allow `http://` endpoints (test servers, a local MinIO).
    pub allow_http: bool,
}

/// A secret string whose `Debug` output hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
