//! Which YAML keys exist, section by section. A key is either implemented by Warden,
//! known to Patroni but not implemented yet (a warning: a Patroni config must still
//! load), or unknown to both (an error: almost always a typo).
//!
//! Free-form maps (`postgresql.parameters`, `tags`, the items of `bootstrap.initdb`)
//! have no table here and are never key-checked; `bootstrap.dcs` is classified by
//! `warden_consensus::dynamic_config::classify_key`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Warden,
    /// Known to Patroni; the note, if not empty, says what ignoring it means.
    Patroni(&'static str),
    /// A security setting Warden cannot honour yet: an error, never a plain-text
    /// fallback. The note says what is missing.
    Refused(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    pub name: &'static str,
    pub kind: Kind,
}

const fn warden(name: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Warden,
    }
}

const fn refused(name: &'static str, note: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Refused(note),
    }
}

const fn patroni(name: &'static str, note: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Patroni(note),
    }
}

const OTHER_DCS: &str = "Warden uses only etcd v3 (the etcd3 section)";
const DYNAMIC: &str = "a dynamic setting; put it under bootstrap.dcs";

pub(super) const TOP: &[Key] = &[
    warden("scope"),
    warden("namespace"),
    warden("name"),
    warden("log"),
    warden("restapi"),
    warden("etcd3"),
    warden("bootstrap"),
    warden("postgresql"),
    warden("redis"),
    warden("tags"),
    warden("ctl"),
    patroni("citus", ""),
    warden("watchdog"),
    warden("backup"),
    patroni("etcd", OTHER_DCS),
    patroni("consul", OTHER_DCS),
    patroni("kubernetes", OTHER_DCS),
    patroni("zookeeper", OTHER_DCS),
    patroni("exhibitor", OTHER_DCS),
    patroni("raft", OTHER_DCS),
    patroni(
        "thread_pool_size",
        "Warden's REST API is asynchronous; no thread pool to size",
    ),
    patroni(
        "thread_stack_size",
        "Warden's REST API is asynchronous; no thread pool to size",
    ),
    patroni("ttl", DYNAMIC),
    patroni("loop_wait", DYNAMIC),
    patroni("retry_timeout", DYNAMIC),
    patroni("maximum_lag_on_failover", DYNAMIC),
];

pub(super) const BACKUP: &[Key] = &[
    warden("repository"),
    warden("encryption_key_file"),
    warden("compression_level"),
    warden("base_method"),
    warden("schedule"),
    warden("retention"),
    warden("dump"),
    warden("drill"),
    warden("heartbeat"),
    warden("webhook_url"),
    warden("wal_wait_timeout"),
    warden("partial_upload_interval"),
    warden("objectives"),
    warden("copies"),
    warden("jobs"),
];

pub(super) const COPY: &[Key] = &[
    warden("name"),
    warden("repository"),
    warden("encryption_key_file"),
    warden("retention"),
    warden("max_lag"),
];

pub(super) const OBJECTIVES: &[Key] = &[
    warden("rpo"),
    warden("rto"),
    warden("max_backup_age"),
    warden("max_drill_age"),
    warden("min_copies"),
];

pub(super) const RETENTION: &[Key] = &[
    warden("keep_last"),
    warden("keep_daily"),
    warden("keep_weekly"),
    warden("keep_monthly"),
];

pub(super) const DUMP: &[Key] = &[warden("schedule"), warden("databases")];

pub(super) const DRILL: &[Key] = &[warden("schedule"), warden("checks"), warden("timeout")];

pub(super) const DRILL_CHECK: &[Key] = &[
    warden("name"),
    warden("database"),
    warden("sql"),
    warden("expect"),
];

/// Both repository kinds' keys; `backup.rs` reports keys of the other kind by name.
pub(super) const REPOSITORY: &[Key] = &[
    warden("type"),
    warden("timeout"),
    warden("path"),
    warden("bucket"),
    warden("endpoint"),
    warden("region"),
    warden("prefix"),
    warden("access_key_id"),
    warden("secret_access_key"),
    warden("allow_http"),
];

pub(super) const LOG: &[Key] = &[
    warden("level"),
    warden("type"),
    warden("format"),
    warden("traceback_level"),
    warden("dateformat"),
    warden("static_fields"),
    warden("max_queue_size"),
    warden("dir"),
    warden("file_num"),
    warden("file_size"),
    warden("mode"),
    warden("loggers"),
    warden("deduplicate_heartbeat_logs"),
];

pub(super) const RESTAPI: &[Key] = &[
    warden("listen"),
    warden("connect_address"),
    warden("authentication"),
    warden("certfile"),
    warden("keyfile"),
    warden("keyfile_password"),
    warden("cafile"),
    refused(
        "ciphers",
        "Warden's REST API uses rustls' default cipher suites (TLS 1.2 AEAD and TLS 1.3) \
         and cannot restrict them to a list yet",
    ),
    warden("verify_client"),
    warden("allowlist"),
    warden("allowlist_include_members"),
    warden("http_extra_headers"),
    warden("https_extra_headers"),
    patroni("request_queue_size", ""),
    patroni("server_tokens", ""),
    patroni(
        "thread_pool_size",
        "Warden's REST API is asynchronous; no thread pool to size",
    ),
];

/// `ctl`: how wardenctl (and a member calling another member) authenticates to the
/// REST API and verifies it.
pub(super) const CTL: &[Key] = &[
    warden("authentication"),
    warden("certfile"),
    warden("keyfile"),
    warden("keyfile_password"),
    warden("cacert"),
    warden("insecure"),
];

pub(super) const RESTAPI_AUTH: &[Key] = &[warden("username"), warden("password")];

pub(super) const ETCD3: &[Key] = &[
    warden("host"),
    warden("hosts"),
    warden("protocol"),
    warden("cacert"),
    warden("cert"),
    warden("key"),
    warden("username"),
    warden("password"),
    patroni("url", "use hosts"),
    patroni("proxy", "use hosts"),
    patroni("srv", "use hosts"),
    patroni("srv_suffix", "use hosts"),
    patroni("use_proxies", ""),
    patroni("port", "use hosts with host:port"),
    refused(
        "key_password",
        "Warden cannot read an encrypted etcd client key (Patroni's etcd3 section has no \
         such key either); give an unencrypted etcd3.key readable only by the agent",
    ),
    refused(
        "verify",
        "Warden always verifies etcd's server certificate (against etcd3.cacert, else the \
         system trust store); turning verification off is not supported",
    ),
];

/// `bootstrap` when `method: warden_restore` (the method and its section are Warden's).
pub(super) const BOOTSTRAP_RESTORE: &[Key] = &[
    warden("dcs"),
    warden("initdb"),
    warden("method"),
    warden("warden_restore"),
    warden("post_bootstrap"),
    warden("post_init"),
    patroni("users", "removed in Patroni 4"),
    patroni("pg_hba", "removed in Patroni 4; use postgresql.pg_hba"),
];

/// `bootstrap.warden_restore`.
pub(super) const WARDEN_RESTORE: &[Key] = &[
    warden("backup"),
    warden("target_time"),
    warden("target_lsn"),
    warden("target_name"),
    warden("immediate"),
    warden("system_identifier"),
    warden("repository"),
    warden("scope"),
];

/// `postgresql.warden_restore` (the replica method's source).
pub(super) const WARDEN_RESTORE_REPLICA: &[Key] = &[warden("repository"), warden("scope")];

pub(super) const BOOTSTRAP: &[Key] = &[
    warden("dcs"),
    warden("initdb"),
    warden("method"),
    warden("post_bootstrap"),
    warden("post_init"),
    patroni("users", "removed in Patroni 4"),
    patroni("pg_hba", "removed in Patroni 4; use postgresql.pg_hba"),
];

pub(super) const REDIS: &[Key] = &[
    warden("listen"),
    warden("connect_address"),
    warden("data_dir"),
    warden("bin_dir"),
    warden("authentication"),
    warden("parameters"),
    warden("tls"),
    warden("sentinel"),
];

pub(super) const REDIS_AUTH: &[Key] = &[warden("username"), warden("password")];

pub(super) const REDIS_TLS: &[Key] = &[
    warden("cert_file"),
    warden("key_file"),
    warden("ca_file"),
    warden("client_cert_file"),
    warden("client_key_file"),
    warden("auth_clients"),
];

pub(super) const REDIS_SENTINEL: &[Key] = &[
    warden("listen"),
    warden("master_name"),
    warden("password"),
    warden("tls"),
];

pub(super) const REDIS_SENTINEL_TLS: &[Key] = &[
    warden("cert_file"),
    warden("key_file"),
    warden("client_ca_file"),
    warden("require_client_cert"),
];

pub(super) const POSTGRESQL: &[Key] = &[
    warden("warden_restore"),
    warden("listen"),
    warden("connect_address"),
    warden("data_dir"),
    warden("bin_dir"),
    warden("pgpass"),
    warden("authentication"),
    warden("parameters"),
    warden("pg_hba"),
    warden("use_unix_socket"),
    warden("use_pg_rewind"),
    warden("callbacks"),
    warden("create_replica_methods"),
    warden("create_replica_method"),
    patroni("basebackup", ""),
    warden("recovery_conf"),
    patroni("custom_conf", ""),
    patroni("config_dir", "configuration files live in data_dir"),
    patroni("pg_ctl_timeout", ""),
    patroni("remove_data_directory_on_rewind_failure", ""),
    patroni("remove_data_directory_on_diverged_timelines", ""),
    warden("pre_promote"),
    patroni("before_stop", ""),
    patroni("bin_name", "binaries are looked up by their standard names"),
    patroni("proxy_address", ""),
    patroni("use_unix_socket_repl", ""),
    patroni("pg_ident", ""),
];

pub(super) const WATCHDOG: &[Key] = &[
    warden("mode"),
    warden("device"),
    warden("safety_margin"),
    patroni("driver", "Warden drives the Linux watchdog device only"),
];

pub(super) const PG_AUTH: &[Key] = &[warden("superuser"), warden("replication"), warden("rewind")];

/// libpq children cannot take `sslpassword` without a command line showing it, and the
/// agent's own connections do not decrypt keys.
const NO_SSLPASSWORD: &str = "encrypted client keys are not supported: use an unencrypted sslkey readable only by PostgreSQL's user";

/// Each role under `postgresql.authentication`: libpq's connection settings, checked
/// and honoured in `postgresql.rs` (`role_tls`).
pub(super) const PG_CREDENTIALS: &[Key] = &[
    warden("username"),
    warden("password"),
    warden("sslmode"),
    warden("sslkey"),
    refused("sslpassword", NO_SSLPASSWORD),
    warden("sslcert"),
    warden("sslrootcert"),
    warden("sslcrl"),
    warden("sslcrldir"),
    warden("sslnegotiation"),
    warden("gssencmode"),
    warden("channel_binding"),
    // Warden's own: whether the agent's SQL connections answer a cleartext password
    // request (refused by default).
    warden("allow_cleartext_password"),
];

/// Tags Patroni knows that Warden does not act on (none left; kept for the check).
pub(super) const PATRONI_ONLY_TAGS: &[(&str, &str)] = &[];

pub(super) fn find(spec: &[Key], name: &str) -> Option<Kind> {
    spec.iter().find(|k| k.name == name).map(|k| k.kind)
}

/// The closest known name, if close enough to be a likely typo.
pub(super) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (distance(&name.to_ascii_lowercase(), c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let names = RESTAPI.iter().map(|k| k.name);
        assert_eq!(suggest("lisen", names.clone()), Some("listen"));
        assert_eq!(
            suggest("conect_address", names.clone()),
            Some("connect_address")
        );
        assert_eq!(suggest("LISTEN", names.clone()), Some("listen"));
        assert_eq!(suggest("zzzzzz", names), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "ab"), 2);
    }

    #[test]
    fn tables_have_no_duplicates() {
        for spec in [
            TOP,
            LOG,
            RESTAPI,
            CTL,
            ETCD3,
            BOOTSTRAP,
            POSTGRESQL,
            PG_CREDENTIALS,
        ] {
            let mut names: Vec<&str> = spec.iter().map(|k| k.name).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len());
        }
    }
}
