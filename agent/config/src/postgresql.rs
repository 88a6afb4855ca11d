//! The `postgresql` and `bootstrap` sections.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use warden_consensus::dynamic_config::{self, DynamicConfig, KeyClass};

use super::address;
use super::reader::{describe_yaml, key_text, Reader, Section};
use super::schema;
use super::sections::{credentials, host_port};
use super::types::{
    BootstrapConfig, HostPort, InitdbOption, PgAuth, PgAuthTls, PostgresqlConfig, ReplicaMethod,
    RestoreBootstrap, RestoreSource,
};
use warden_pg::target::Target;
use warden_pg::tls::{ChannelBinding, ClientTls, SslMode};

pub(super) fn postgresql(
    r: &mut Reader,
    root: &Section<'_>,
    member: Option<&str>,
) -> Option<PostgresqlConfig> {
    let value = r.required(root, "postgresql")?;
    let s = r.section("postgresql", value)?;
    // Each custom replica method named in create_replica_methods has a section of the
    // same name; those are Patroni settings too.
    // Patroni reads either spelling; the plural wins.
    let list = s
        .get("create_replica_methods")
        .or_else(|| s.get("create_replica_method"));
    let methods: Vec<String> = match list {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .filter(|m| m != RESTORE_METHOD && m != "basebackup")
            .collect(),
        _ => Vec::new(),
    };
    let create_replica_methods = replica_methods(r, &s, list);
    r.check_keys(&s, schema::POSTGRESQL, &methods);

    let listen = r
        .required(&s, "listen")
        .and_then(|v| r.string("postgresql.listen", v))
        .and_then(|text| match address::parse_pg_listen(&text) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                r.error("postgresql.listen", e);
                None
            }
        });
    let connect_address = match s.get("connect_address") {
        Some(v) => r
            .string("postgresql.connect_address", v)
            .and_then(|text| host_port(r, "postgresql.connect_address", &text)),
        None => default_connect_address(r, listen.as_ref()),
    };
    let data_dir = data_dir(r, &s);
    let bin_dir = bin_dir(r, &s);
    let pgpass = pgpass(r, &s, data_dir.as_deref(), member);
    let authentication = r.required(&s, "authentication").and_then(|v| pg_auth(r, v));
    let parameters = match s.get("parameters") {
        Some(v) => guc_map(r, "postgresql.parameters", v),
        None => Default::default(),
    };
    // Settings a replica starts with (`restore_command`, `recovery_min_apply_delay`,
    // ...): Patroni's `recovery_conf`, GUCs since PostgreSQL 12.
    let recovery_conf = match s.get("recovery_conf") {
        Some(v) => guc_map(r, "postgresql.recovery_conf", v),
        None => Default::default(),
    };
    let pg_hba = match s.get("pg_hba") {
        Some(v) => r.string_list("postgresql.pg_hba", v).unwrap_or_default(),
        None => Vec::new(),
    };
    for (i, line) in pg_hba.iter().enumerate() {
        if let Some(why) = dynamic_config::control_char_problem(line) {
            r.error(format!("postgresql.pg_hba[{i}]"), why);
        }
    }
    let mut use_unix_socket = false;
    r.bool_key(&s, "use_unix_socket", &mut use_unix_socket);
    let use_pg_rewind = s
        .get("use_pg_rewind")
        .and_then(|v| r.boolean("postgresql.use_pg_rewind", v));

    let callbacks = s
        .get("callbacks")
        .map(|v| callbacks(r, v))
        .unwrap_or_default();
    let pre_promote = s
        .get("pre_promote")
        .and_then(|v| r.string("postgresql.pre_promote", v))
        .filter(|c| !c.trim().is_empty());

    let (listen_hosts, port) = listen?;
    Some(PostgresqlConfig {
        listen_hosts,
        port,
        connect_address: connect_address?,
        data_dir: data_dir?,
        bin_dir: bin_dir?,
        pgpass: pgpass?,
        authentication: authentication?,
        parameters,
        recovery_conf,
        pg_hba,
        use_unix_socket,
        use_pg_rewind,
        callbacks,
        pre_promote,
        create_replica_methods: create_replica_methods?,
        warden_restore: match s.get(RESTORE_METHOD) {
            Some(v) if !v.is_null() => {
                let sec = r.section("postgresql.warden_restore", v)?;
                r.check_keys(&sec, schema::WARDEN_RESTORE_REPLICA, &[]);
                restore_source(r, &sec)?
            }
            _ => RestoreSource::default(),
        },
    })
}

/// `postgresql.create_replica_methods`: `basebackup`, `warden_restore`, and custom
/// methods (a command, configured in the section `postgresql.NAME`), tried in order.
fn replica_methods(
    r: &mut Reader,
    s: &Section<'_>,
    value: Option<&Value>,
) -> Option<Vec<ReplicaMethod>> {
    const PATH: &str = "postgresql.create_replica_methods";
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Some(Vec::new());
    };
    let items = r.string_list(PATH, value)?;
    let mut out = Vec::new();
    for m in items {
        match m.as_str() {
            "basebackup" => out.push(ReplicaMethod::Basebackup),
            RESTORE_METHOD => out.push(ReplicaMethod::WardenRestore),
            other => {
                let method = crate::methods::replica_method(r, other, s.get(other))?;
                out.push(ReplicaMethod::Custom(method));
            }
        }
    }
    Some(out)
}

/// Patroni's callback events; anything else under `callbacks` is a typo.
const CALLBACK_EVENTS: &[&str] = &[
    "on_start",
    "on_stop",
    "on_restart",
    "on_reload",
    "on_role_change",
];

fn callbacks(r: &mut Reader, value: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(section) = r.section("postgresql.callbacks", value) else {
        return out;
    };
    for (k, v) in section.entries() {
        let Some(event) = k.as_str() else { continue };
        let path = format!("postgresql.callbacks.{event}");
        if !CALLBACK_EVENTS.contains(&event) {
            r.error(
                &path,
                format!(
                    "unknown callback event; expected one of {}",
                    CALLBACK_EVENTS.join(", ")
                ),
            );
            continue;
        }
        if let Some(cmd) = r.string(&path, v).filter(|c| !c.trim().is_empty()) {
            out.insert(event.to_string(), cmd);
        }
    }
    out
}

/// Without `connect_address`, a single concrete listen host is the only sensible
/// address to publish; a wildcard or several hosts leave the choice to the user.
fn default_connect_address(
    r: &mut Reader,
    listen: Option<&(Vec<String>, u16)>,
) -> Option<HostPort> {
    let (hosts, port) = listen?;
    match hosts.as_slice() {
        [host] if !address::is_wildcard(host) => Some(HostPort {
            host: host.clone(),
            port: *port,
        }),
        _ => {
            r.error(
                "postgresql.connect_address",
                "missing required key (postgresql.listen does not name a single address \
                 other members can connect to)",
            );
            None
        }
    }
}

/// Free-form map values as PostgreSQL GUC text, keyed by name.
fn guc_map(r: &mut Reader, path: &str, value: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(s) = r.section(path, value) else {
        return out;
    };
    for (key, value) in s.entries() {
        let Some(name) = key_text(key) else {
            r.error(path, "parameter names must be strings");
            continue;
        };
        let item = s.path_of(&name);
        if let Some(why) = dynamic_config::guc_name_problem(&name) {
            r.error(item, why);
            continue;
        }
        let text = r
            .json(&item, value)
            .and_then(|json| dynamic_config::guc_text(&json));
        match text {
            Some(text) if dynamic_config::control_char_problem(&text).is_some() => {
                r.error(
                    item,
                    dynamic_config::control_char_problem(&text).unwrap_or_default(),
                );
            }
            Some(text) => {
                out.insert(name, text);
            }
            None if value.is_null() => r.error(item, "missing value"),
            None => r.error(
                item,
                format!(
                    "expected a string, number or boolean, got {}",
                    describe_yaml(value)
                ),
            ),
        }
    }
    out
}

fn path_value(r: &mut Reader, s: &Section<'_>, key: &str) -> Option<PathBuf> {
    s.get(key)
        .and_then(|v| r.string(&s.path_of(key), v))
        .map(PathBuf::from)
}

fn data_dir(r: &mut Reader, s: &Section<'_>) -> Option<PathBuf> {
    const KEY: &str = "postgresql.data_dir";
    if s.get("data_dir").is_none() {
        r.error(KEY, "missing required key");
        return None;
    }
    let path = path_value(r, s, "data_dir")?;
    if path.as_os_str().is_empty() {
        r.error(KEY, "must not be empty");
        return None;
    }
    if !path.is_absolute() {
        r.error(
            KEY,
            format!("must be an absolute path, got \"{}\"", path.display()),
        );
        return None;
    }
    // A missing directory is fine (initdb or a clone creates it) as long as its
    // nearest existing ancestor is a directory; a file anywhere on the way is not.
    let existing = path
        .ancestors()
        .find(|p| std::fs::symlink_metadata(p).is_ok());
    if let Some(found) = existing.filter(|f| !f.is_dir()) {
        let message = if found == path.as_path() {
            format!("\"{}\" exists and is not a directory", path.display())
        } else {
            format!(
                "\"{}\" is not a directory, so \"{}\" cannot be created",
                found.display(),
                path.display()
            )
        };
        r.error(KEY, message);
        return None;
    }
    Some(path)
}

/// `Some(None)`: not given (look up on PATH); `None`: invalid.
fn bin_dir(r: &mut Reader, s: &Section<'_>) -> Option<Option<PathBuf>> {
    const KEY: &str = "postgresql.bin_dir";
    if s.get("bin_dir").is_none() {
        return Some(None);
    }
    let path = path_value(r, s, "bin_dir")?;
    // Patroni treats an empty bin_dir like an absent one.
    if path.as_os_str().is_empty() {
        return Some(None);
    }
    let postgres = path.join("postgres");
    let executable = std::fs::metadata(&postgres)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    if executable {
        Some(Some(path))
    } else {
        let why = if path.is_dir() {
            ""
        } else {
            " (no such directory)"
        };
        r.error(
            KEY,
            format!("no executable \"postgres\" in \"{}\"{why}", path.display()),
        );
        None
    }
}

fn pgpass(
    r: &mut Reader,
    s: &Section<'_>,
    data_dir: Option<&Path>,
    member: Option<&str>,
) -> Option<PathBuf> {
    let path = match s.get("pgpass") {
        Some(_) => path_value(r, s, "pgpass")?,
        None => {
            let file = format!("pgpass.{}", member.unwrap_or("warden"));
            // Without a valid data_dir the config fails anyway; any placeholder will do.
            let parent = data_dir.and_then(Path::parent).unwrap_or(Path::new("/"));
            return Some(parent.join(file));
        }
    };
    if path.as_os_str().is_empty() {
        r.error("postgresql.pgpass", "must not be empty");
        return None;
    }
    if path.is_dir() {
        r.error(
            "postgresql.pgpass",
            format!(
                "\"{}\" is a directory; expected a file path",
                path.display()
            ),
        );
        return None;
    }
    Some(path)
}

fn pg_auth(r: &mut Reader, value: &Value) -> Option<PgAuth> {
    const PATH: &str = "postgresql.authentication";
    let s = r.section(PATH, value)?;
    r.check_keys(&s, schema::PG_AUTH, &[]);
    let role = |r: &mut Reader, name: &str, v: &Value| {
        let path = s.path_of(name);
        let credentials = credentials(r, &path, v, schema::PG_CREDENTIALS);
        let tls = role_tls(r, &path, v);
        Some((credentials?, tls?))
    };
    let superuser = r
        .required(&s, "superuser")
        .and_then(|v| role(r, "superuser", v));
    let replication = r
        .required(&s, "replication")
        .and_then(|v| role(r, "replication", v));
    let rewind = match s.get("rewind") {
        Some(v) => Some(role(r, "rewind", v)?),
        None => None,
    };
    let (superuser, superuser_tls) = superuser?;
    let (replication, replication_tls) = replication?;
    let (rewind, rewind_tls) = rewind.map_or((None, None), |(c, t)| (Some(c), Some(t)));
    Some(PgAuth {
        superuser,
        replication,
        rewind,
        tls: PgAuthTls {
            superuser: superuser_tls,
            replication: replication_tls,
            rewind: rewind_tls,
        },
    })
}

/// A role's libpq connection settings (Patroni passes them to libpq as given). Each
/// is honoured by the libpq programs and by the agent's own connections, or refused:
/// never accepted and then weakened.
pub(super) fn role_tls(r: &mut Reader, path: &str, value: &Value) -> Option<ClientTls> {
    let Value::Mapping(map) = value else {
        return None;
    };
    let s = Section {
        path: path.to_owned(),
        map,
    };
    let before = r.problems.len();
    let text = |r: &mut Reader, key: &str| match s.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => r.string(&s.path_of(key), v),
    };
    let mut tls = ClientTls::default();
    if let Some(mode) = text(r, "sslmode") {
        tls.sslmode = SslMode::parse(&mode);
        if tls.sslmode.is_none() {
            r.error(
                s.path_of("sslmode"),
                format!("expected {}, got {mode:?}", SslMode::NAMES),
            );
        }
    }
    let file = |r: &mut Reader, key: &str, dir: bool| {
        let value = text(r, key)?;
        let p = PathBuf::from(&value);
        let ok = if dir { p.is_dir() } else { p.is_file() };
        if value.is_empty() {
            r.error(s.path_of(key), "must not be empty");
        } else if !p.is_absolute() {
            r.error(
                s.path_of(key),
                format!("must be an absolute path, got {value:?}"),
            );
        } else if !ok {
            let what = if dir { "directory" } else { "file" };
            r.error(s.path_of(key), format!("no such {what} {value:?}"));
        }
        Some(p)
    };
    tls.sslrootcert = file(r, "sslrootcert", false);
    tls.sslcert = file(r, "sslcert", false);
    tls.sslkey = file(r, "sslkey", false);
    tls.sslcrl = file(r, "sslcrl", false);
    tls.sslcrldir = file(r, "sslcrldir", true);
    if matches!(tls.sslmode, Some(SslMode::VerifyCa | SslMode::VerifyFull))
        && s.get("sslrootcert").is_none()
    {
        r.error(
            s.path_of("sslrootcert"),
            format!(
                "required with sslmode {}: the CA certificate(s) to check the server \
                 against (Warden does not read ~/.postgresql/root.crt)",
                tls.mode().as_str()
            ),
        );
    }
    match (&tls.sslcert, &tls.sslkey) {
        (Some(_), None) => r.error(s.path_of("sslkey"), "required with sslcert"),
        (None, Some(_)) => r.error(s.path_of("sslcert"), "required with sslkey"),
        _ => {}
    }
    match text(r, "sslnegotiation").as_deref() {
        None | Some("postgres") => {}
        Some("direct") => r.error(
            s.path_of("sslnegotiation"),
            "cannot be honoured: PostgreSQL 15's libpq (pg_basebackup, pg_rewind, the \
             walreceiver) knows only the postgres negotiation",
        ),
        Some(other) => r.error(
            s.path_of("sslnegotiation"),
            format!("expected postgres or direct, got {other:?}"),
        ),
    }
    match text(r, "gssencmode") {
        None => {}
        Some(m) if matches!(m.as_str(), "disable" | "allow" | "prefer") => {
            tls.gssencmode = Some(m);
        }
        Some(m) if m == "require" => r.error(
            s.path_of("gssencmode"),
            "cannot be honoured: the agent's own connections do not use GSSAPI encryption",
        ),
        Some(m) => r.error(
            s.path_of("gssencmode"),
            format!("expected disable, allow, prefer or require, got {m:?}"),
        ),
    }
    if let Some(cb) = text(r, "channel_binding") {
        tls.channel_binding = ChannelBinding::parse(&cb);
        if tls.channel_binding.is_none() {
            r.error(
                s.path_of("channel_binding"),
                format!("expected disable, prefer or require, got {cb:?}"),
            );
        }
    }
    if let Some(v) = s.get("allow_cleartext_password") {
        tls.allow_cleartext_password = r
            .boolean(&s.path_of("allow_cleartext_password"), v)
            .unwrap_or(false);
    }
    if r.problems.len() != before {
        return None;
    }
    // The files are there; check they hold what the mode needs (a certificate, a
    // key) now rather than at the first connection.
    if tls.mode() != SslMode::Disable {
        if let Err(e) = warden_pg::tls::client_config(&tls) {
            r.error(path, e.to_string());
            return None;
        }
    }
    Some(tls)
}

pub(super) fn bootstrap(r: &mut Reader, root: &Section<'_>) -> Option<BootstrapConfig> {
    let Some(value) = root.get("bootstrap") else {
        return Some(BootstrapConfig::default());
    };
    let s = r.section("bootstrap", value)?;
    // `method: NAME` refers to a section `NAME` with the method's settings.
    let method: Vec<String> = match s.get("method") {
        Some(Value::String(name)) if name != "initdb" => vec![name.clone()],
        _ => Vec::new(),
    };
    let mut custom = None;
    let restore = if method.first().map(String::as_str) == Some(RESTORE_METHOD) {
        r.check_keys(&s, schema::BOOTSTRAP_RESTORE, &[]);
        Some(restore_method(r, s.get(RESTORE_METHOD))?)
    } else {
        r.check_keys(&s, schema::BOOTSTRAP, &method);
        if let Some(name) = method.first() {
            custom = Some(crate::methods::bootstrap_method(r, name, s.get(name))?);
        }
        None
    };
    let post_bootstrap = s
        .get("post_bootstrap")
        .or_else(|| s.get("post_init"))
        .and_then(|v| r.string("bootstrap.post_bootstrap", v));
    let dcs = match s.get("dcs") {
        Some(v) => dcs(r, v),
        None => Some(DynamicConfig::default()),
    };
    let initdb = match s.get("initdb") {
        Some(v) => initdb(r, v),
        None => Some(Vec::new()),
    };
    Some(BootstrapConfig {
        dcs: dcs?,
        initdb: initdb?,
        restore,
        custom,
        post_bootstrap,
    })
}

/// `bootstrap.method` value that restores from the backup repository.
pub const RESTORE_METHOD: &str = "warden_restore";

/// `bootstrap.warden_restore` (optional: absent means the latest backup, all WAL).
fn restore_method(r: &mut Reader, value: Option<&Value>) -> Option<RestoreBootstrap> {
    const PATH: &str = "bootstrap.warden_restore";
    let mut out = RestoreBootstrap {
        backup: "latest".into(),
        target: Target::Latest,
        system_identifier: None,
        source: RestoreSource::default(),
    };
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Some(out);
    };
    let s = r.section(PATH, value)?;
    r.check_keys(&s, schema::WARDEN_RESTORE, &[]);
    let text = |r: &mut Reader, key: &str| {
        s.get(key)
            .and_then(|v| r.string(&format!("{PATH}.{key}"), v))
    };
    if let Some(b) = text(r, "backup") {
        out.backup = b;
    }
    out.source = restore_source(r, &s)?;
    let time = text(r, "target_time");
    let lsn = text(r, "target_lsn");
    let name = text(r, "target_name");
    let mut immediate = false;
    r.bool_key(&s, "immediate", &mut immediate);
    match Target::from_options(time.as_deref(), lsn.as_deref(), name.as_deref(), immediate) {
        Ok(t) => out.target = t,
        Err(e) => {
            r.error(
                PATH,
                e.to_string()
                    .replace("--target-", "target_")
                    .replace("--immediate", "immediate"),
            );
            return None;
        }
    }
    if let Some(v) = s.get("system_identifier") {
        match text(r, "system_identifier").map(|t| t.parse::<u64>()) {
            Some(Ok(id)) => out.system_identifier = Some(id),
            _ => {
                r.error(
                    format!("{PATH}.system_identifier"),
                    format!(
                        "expected a number (pg_controldata's system identifier), got {}",
                        describe_yaml(v)
                    ),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// `repository` and `scope` of a `warden_restore` section (the names are checked
/// against `backup` once the whole file is read).
fn restore_source(r: &mut Reader, s: &Section<'_>) -> Option<RestoreSource> {
    let mut out = RestoreSource::default();
    if let Some(v) = s.get("repository") {
        out.repository = Some(r.string(&s.path_of("repository"), v)?);
    }
    if let Some(v) = s.get("scope") {
        let path = s.path_of("scope");
        let scope = r.string(&path, v)?;
        if scope.is_empty() || scope.contains('/') {
            r.error(
                path,
                format!("expected a cluster's scope (no '/'), got {scope:?}"),
            );
            return None;
        }
        out.scope = Some(scope);
    }
    Some(out)
}

/// `bootstrap.dcs` is written to the cluster's `config` key, so unlike a value read
/// back from etcd, an unknown key here is a typo and an error.
fn dcs(r: &mut Reader, value: &Value) -> Option<DynamicConfig> {
    const PATH: &str = "bootstrap.dcs";
    let s = r.section(PATH, value)?;
    check_dcs_keys(r, &s, "");
    if let Some(Value::Mapping(pg)) = s.get("postgresql") {
        let pg = Section {
            path: format!("{PATH}.postgresql"),
            map: pg,
        };
        check_dcs_keys(r, &pg, "postgresql");
    }
    let json = r.json(PATH, value)?;
    match DynamicConfig::from_written_json(&json) {
        Ok((config, adjusted)) => {
            // Patroni adjusts these too, and the adjusted values are what is stored.
            for a in adjusted {
                r.warn(format!("{PATH}: {a}"));
            }
            Some(config)
        }
        Err(errors) => {
            for e in errors {
                r.error(format!("{PATH}.{}", e.key), e.reason);
            }
            None
        }
    }
}

/// Classifies the keys of `bootstrap.dcs` (`prefix` "") or `bootstrap.dcs.postgresql`.
fn check_dcs_keys(r: &mut Reader, s: &Section<'_>, prefix: &str) {
    for (key, value) in s.entries() {
        let Some(name) = key_text(key) else {
            r.error(s.path.clone(), "keys must be strings");
            continue;
        };
        let relative = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let path = s.path_of(&name);
        match dynamic_config::classify_key(&relative) {
            KeyClass::Implemented | KeyClass::FreeForm => {}
            KeyClass::Alias { canonical } => {
                r.warn(format!("{path}: legacy Patroni name; prefer {canonical}"))
            }
            KeyClass::PatroniOnly if value.is_null() => {}
            KeyClass::PatroniOnly => r.not_implemented(&path, "kept in the DCS config"),
            KeyClass::Unknown => {
                r.unknown_key(&path, &name, dynamic_config::candidate_keys(prefix));
            }
        }
    }
}

/// initdb options Warden sets itself, or that would break what it expects.
const RESERVED_INITDB: &[&str] = &[
    "pgdata",
    "pwfile",
    "username",
    "nosync",
    "no-sync",
    "sync-only",
    "version",
    "help",
    "show",
];

fn initdb(r: &mut Reader, value: &Value) -> Option<Vec<InitdbOption>> {
    const PATH: &str = "bootstrap.initdb";
    let Value::Sequence(items) = value else {
        r.error(
            PATH,
            format!(
                "expected a list such as [data-checksums, {{encoding: UTF8}}], got {}",
                describe_yaml(value)
            ),
        );
        return None;
    };
    let before = r.problems.len();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{PATH}[{i}]");
        match item {
            Value::String(flag) => {
                if check_initdb_name(r, &path, flag) {
                    out.push(InitdbOption::Flag(flag.clone()));
                }
            }
            Value::Mapping(map) if !map.is_empty() => {
                for (k, v) in map {
                    let Some(name) = key_text(k) else {
                        r.error(&path, "option names must be strings");
                        continue;
                    };
                    let text = match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    };
                    let item_path = format!("{path}.{name}");
                    match text {
                        Some(value) if check_initdb_name(r, &item_path, &name) => {
                            out.push(InitdbOption::Value { name, value });
                        }
                        Some(_) => {}
                        None => r.error(
                            item_path,
                            format!("expected a string or number, got {}", describe_yaml(v)),
                        ),
                    }
                }
            }
            other => r.error(
                path,
                format!(
                    "expected an option name or a one-key mapping, got {}",
                    describe_yaml(other)
                ),
            ),
        }
    }
    (r.problems.len() == before).then_some(out)
}

fn check_initdb_name(r: &mut Reader, path: &str, name: &str) -> bool {
    let well_formed = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.starts_with('-') {
        r.error(
            path,
            format!(
                "write the option without leading dashes (\"{}\")",
                name.trim_start_matches('-')
            ),
        );
        false
    } else if !well_formed {
        r.error(path, format!("invalid initdb option name \"{name}\""));
        false
    } else if RESERVED_INITDB.contains(&name) {
        r.error(
            path,
            format!("\"{name}\" is set by Warden and cannot be given"),
        );
        false
    } else {
        true
    }
}
