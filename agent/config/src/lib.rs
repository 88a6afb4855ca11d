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
pub mod backup_jobs;
mod error;
pub mod logging;
mod postgresql;
mod reader;
mod schema;
mod sections;
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
    CronSchedule, DrillCheck, DrillConfig, DumpConfig, ReplicaMethod, RestoreBootstrap, Retention,
};

use reader::{Reader, Section};

/// A valid configuration and the warnings found on the way (Patroni settings Warden
/// ignores); the caller logs the warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Reads and parses the YAML file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_from(&text, Some(path))
}

/// Parses YAML text.
pub fn parse(yaml: &str) -> Result<Loaded, ConfigError> {
    parse_from(yaml, None)
}

fn parse_from(yaml: &str, file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let invalid = |problems: Vec<ConfigProblem>| ConfigError::Invalid {
        file: file.map(Path::to_owned),
        problems,
    };
    let syntax = |e: serde_yaml::Error| {
        invalid(vec![ConfigProblem {
            key: "(yaml)".to_owned(),
            message: format!("invalid YAML: {e}"),
        }])
    };
    let mut root: Value = serde_yaml::from_str(yaml).map_err(syntax)?;
    // PyYAML applies `<<` merge keys; serde_yaml needs to be asked.
    root.apply_merge().map_err(syntax)?;

    let empty = Mapping::new();
    let map = match &root {
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
    let postgresql = postgresql::postgresql(r, root, name.as_deref());
    let tags = sections::tags(r, root);
    let watchdog = sections::watchdog(r, root);
    let backup = backup::backup(r, root);
    Some(Config {
        scope: scope?,
        namespace,
        name: name?,
        log,
        restapi: restapi?,
        etcd3: etcd3?,
        bootstrap: bootstrap?,
        postgresql: postgresql?,
        tags,
        watchdog,
        backup: backup?,
    })
}

#[cfg(test)]
mod tests;
