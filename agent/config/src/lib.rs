//! The agent's static configuration: a Patroni YAML file, loaded into a typed
//! [`Config`].
//!
//! Every key is classified (see `schema`): keys Warden implements are parsed and
//! validated; keys Patroni knows but Warden does not implement yet produce a warning, so
//! an existing Patroni config still starts; keys neither knows are errors, since they
//! are almost always typos. All problems are collected and reported together, each
//! naming its dotted key path.

mod address;
mod backup;
mod backup_copies;
pub mod backup_jobs;
pub mod env;
mod error;
pub mod logging;
pub mod methods;
pub mod objectives;
mod postgresql;
mod reader;
pub mod redis;
mod restapi_tls;
mod schema;
mod sections;
pub mod stack_jobs;
mod types;

use std::path::Path;

use serde_yaml::{Mapping, Value};

pub use error::{ConfigError, ConfigProblem};
pub use types::{
    BackupConfig, BootstrapConfig, Config, Credentials, EtcdConfig, HostPort, InitdbOption,
    LogConfig, PgAuth, PostgresqlConfig, RepositoryConfig, RepositoryKind, RestApiConfig, S3Config,
    Secret, Tags, WatchdogConfig, WatchdogMode,
};
pub use types::{
    CopyConfig, CronSchedule, DrillCheck, DrillConfig, DumpConfig, ReplicaMethod, RestoreBootstrap,
    RestoreSource, Retention,
};

pub use types::{BaseMethod, EngineConfig, PgAuthTls};
pub use types::{KeyedPath, RestClientTls, RestTls, VerifyClient};

pub use env::EnvConfig;
pub use objectives::Objectives;
use reader::{Reader, Section};
pub use stack_jobs::{
    CommandJob, MariadbJob, ResticJob, StackCheck, StackDrill, StackJob, StackJobKind,
};

/// A valid configuration and the warnings found on the way (Patroni settings Warden
/// ignores); the caller logs the warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Reads and parses the configuration at `path`, with the `PATRONI_*` variables the
/// agent captured at start laid over it (see [`env`]).
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with(Some(path), env::captured())
}

/// Patroni's order: the file at `path` (or every `*.yml`/`*.yaml` in a directory, in
/// name order) with the environment over it; with no such file,
/// `PATRONI_CONFIGURATION` alone; else the environment alone.
pub fn load_with(path: Option<&Path>, env: Option<&EnvConfig>) -> Result<Loaded, ConfigError> {
    let from_env = env.filter(|e| !e.is_empty());
    let existing = path.filter(|p| p.exists());
    let (mut root, file) = match (existing, from_env) {
        (Some(p), _) => (read_path(p)?, Some(p)),
        (None, Some(e)) => match &e.configuration {
            Some(text) => {
                let root = yaml_tree(text, None)?;
                let mut loaded = from_tree(&root, None)?;
                loaded.warnings.push(
                    "configuration taken from PATRONI_CONFIGURATION; other PATRONI_* variables are not read"
                        .to_owned(),
                );
                return Ok(loaded);
            }
            None => (Value::Mapping(Mapping::new()), None),
        },
        (None, None) => {
            let path = path.unwrap_or(Path::new(""));
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file, and no PATRONI_* variables set",
                ),
            });
        }
    };
    let mut warnings = Vec::new();
    if let Some(e) = from_env {
        e.apply(&mut root);
        warnings.extend(e.ignored.iter().cloned());
    }
    let mut loaded = from_tree(&root, file)?;
    loaded.warnings.extend(warnings);
    Ok(loaded)
}

/// The YAML tree of a file, or of every `*.yml`/`*.yaml` file of a directory merged in
/// name order (Patroni's config directory).
fn read_path(path: &Path) -> Result<Value, ConfigError> {
    let read_err = |p: &Path, source| ConfigError::Read {
        path: p.to_owned(),
        source,
    };
    if !path.is_dir() {
        let text = std::fs::read_to_string(path).map_err(|e| read_err(path, e))?;
        return yaml_tree(&text, Some(path));
    }
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(|e| read_err(path, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    let mut root = Value::Mapping(Mapping::new());
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| read_err(&f, e))?;
        let tree = yaml_tree(&text, Some(&f))?;
        match tree {
            Value::Mapping(_) => EnvConfig::merge_into(&mut root, &tree),
            Value::Null => {}
            _ => {
                return Err(ConfigError::Invalid {
                    file: Some(f),
                    problems: vec![ConfigProblem {
                        key: "(root)".to_owned(),
                        message: "invalid config file: not a mapping of settings".to_owned(),
                    }],
                })
            }
        }
    }
    Ok(root)
}

/// Parses YAML text.
pub fn parse(yaml: &str) -> Result<Loaded, ConfigError> {
    parse_from(yaml, None)
}

fn yaml_tree(yaml: &str, file: Option<&Path>) -> Result<Value, ConfigError> {
    let syntax = |e: serde_yaml::Error| ConfigError::Invalid {
        file: file.map(Path::to_owned),
        problems: vec![ConfigProblem {
            key: "(yaml)".to_owned(),
            message: format!("invalid YAML: {e}"),
        }],
    };
    let mut root: Value = serde_yaml::from_str(yaml).map_err(syntax)?;
    // PyYAML applies `<<` merge keys; serde_yaml needs to be asked.
    root.apply_merge().map_err(syntax)?;
    Ok(root)
}

fn parse_from(yaml: &str, file: Option<&Path>) -> Result<Loaded, ConfigError> {
    from_tree(&yaml_tree(yaml, file)?, file)
}

fn from_tree(root: &Value, file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let invalid = |problems: Vec<ConfigProblem>| ConfigError::Invalid {
        file: file.map(Path::to_owned),
        problems,
    };
    let empty = Mapping::new();
    let map = match root {
        Value::Mapping(map) => map,
        // An empty file: report the missing keys rather than a type error.
        Value::Null => &empty,
        other => {
            return Err(invalid(vec![ConfigProblem {
                key: "(root)".to_owned(),
                message: format!(
                    "expected a mapping of settings, got {}",
                    reader::describe_yaml(other)
                ),
            }]))
        }
    };
    let mut r = Reader::default();
    let config = build(
        &mut r,
        &Section {
            path: String::new(),
            map,
        },
    );
    match config {
        Some(config) if r.problems.is_empty() => Ok(Loaded {
            config,
            warnings: r.warnings,
        }),
        _ => Err(invalid(r.problems)),
    }
}

/// Only the `backup` section of the YAML file at `path` (for `wardenctl backup ...`,
/// which may be given a config whose other sections it does not need). `Ok(None)`: the
/// file has no backup section.
pub fn load_backup_section(path: &Path) -> Result<Option<BackupConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |problems: Vec<ConfigProblem>| ConfigError::Invalid {
        file: Some(path.to_owned()),
        problems,
    };
    let syntax = |e: serde_yaml::Error| {
        invalid(vec![ConfigProblem {
            key: "(yaml)".to_owned(),
            message: format!("invalid YAML: {e}"),
        }])
    };
    let mut root: Value = serde_yaml::from_str(&text).map_err(syntax)?;
    root.apply_merge().map_err(syntax)?;
    let empty = Mapping::new();
    let map = match &root {
        Value::Mapping(map) => map,
        _ => &empty,
    };
    let mut r = Reader::default();
    let section = backup::backup(
        &mut r,
        &Section {
            path: String::new(),
            map,
        },
    );
    match section {
        Some(b) if r.problems.is_empty() => Ok(b),
        _ => Err(invalid(r.problems)),
    }
}

/// Reads every section before combining, so that one missing section does not hide
/// the problems of the others.
fn build(r: &mut Reader, root: &Section<'_>) -> Option<Config> {
    r.check_keys(root, schema::TOP, &[]);
    let scope = sections::identifier(r, root, "scope");
    let namespace = sections::namespace(r, root);
    let name = sections::identifier(r, root, "name");
    let log = sections::log(r, root);
    let restapi = sections::restapi(r, root);
    let etcd3 = sections::etcd3(r, root);
    let bootstrap = postgresql::bootstrap(r, root);
    let engine = engine(r, root, name.as_deref(), scope.as_deref());
    // Standby clusters follow a remote PostgreSQL primary; Redis has no such mode.
    if matches!(engine, Some(EngineConfig::Redis(_)))
        && bootstrap
            .as_ref()
            .is_some_and(|b| b.dcs.is_standby_cluster())
    {
        r.error(
            "bootstrap.dcs.standby_cluster",
            "standby clusters are PostgreSQL only: a Redis cluster cannot follow a remote primary",
        );
    }
    let tags = sections::tags(r, root);
    let watchdog = sections::watchdog(r, root);
    let backup = backup::backup(r, root);
    if let (Some(b), Some(backup)) = (&bootstrap, &backup) {
        if let Some(restore) = &b.restore {
            restore_repository(
                r,
                "bootstrap.warden_restore",
                &restore.source,
                backup.as_ref(),
            );
        }
    }
    if let (Some(EngineConfig::Postgresql(pg)), Some(backup)) = (&engine, &backup) {
        restore_repository(
            r,
            "postgresql.warden_restore",
            &pg.warden_restore,
            backup.as_ref(),
        );
    }
    Some(Config {
        scope: scope?,
        namespace,
        name: name?,
        log,
        restapi: restapi?,
        etcd3: etcd3?,
        bootstrap: bootstrap?,
        engine: engine?,
        tags,
        watchdog,
        backup: backup?,
    })
}

/// A `warden_restore` section's `repository` must name `backup.repository` (`main`)
/// or one of `backup.copies`.
fn restore_repository(
    r: &mut Reader,
    path: &str,
    source: &RestoreSource,
    backup: Option<&BackupConfig>,
) {
    let Some(name) = source.repository.as_deref() else {
        return;
    };
    match backup {
        None => r.error(
            format!("{path}.repository"),
            "names a repository, but the config has no backup section (backup.repository)",
        ),
        Some(b) => {
            if let Err(e) = b.for_repository(Some(name)) {
                r.error(format!("{path}.repository"), e.to_string());
            }
        }
    }
}

/// Exactly one of `postgresql` and `redis`.
fn engine(
    r: &mut Reader,
    root: &Section<'_>,
    name: Option<&str>,
    scope: Option<&str>,
) -> Option<EngineConfig> {
    match (root.get("postgresql"), root.get("redis")) {
        (Some(_), Some(_)) => {
            r.error(
                "redis",
                "a member runs PostgreSQL or Redis: give the postgresql or the redis section, \
                 not both",
            );
            None
        }
        (None, Some(v)) => redis::redis(r, v, scope).map(|c| EngineConfig::Redis(Box::new(c))),
        _ => postgresql::postgresql(r, root, name).map(|c| EngineConfig::Postgresql(Box::new(c))),
    }
}

#[cfg(test)]
mod tests;
