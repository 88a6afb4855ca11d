//! The `backup` section (Warden only; Patroni has no such key).
//!
//! ```yaml
//! backup:
//!   repository:
//!     type: s3            # or filesystem (with path: /var/lib/warden-repo)
//!     bucket: pg-backups
//!     endpoint: https://s3.eu-west-1.amazonaws.com
//!     region: eu-west-1
//!     prefix: prod
//!     timeout: 60s
//!   encryption_key_file: /etc/warden/backup.key
//!   compression_level: 3
//!   base_method: files  # or pg_basebackup
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::backup_copies as copies;
use super::backup_jobs as jobs;
use super::reader::{Reader, Section};
use super::schema;
use super::types::{
    BackupConfig, BaseMethod, RepositoryConfig, RepositoryKind, Retention, S3Config, Secret,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_COMPRESSION: i32 = 3;
/// zstd's ordinary levels; 20–22 ("ultra") need far more memory on both sides.
const COMPRESSION_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;
/// zstd's fast levels (negative: less compression, much less CPU); 0 would mean
/// zstd's default and is refused to avoid the surprise.
const FAST_LEVELS: std::ops::RangeInclusive<i32> = -7..=-1;

const FILESYSTEM_KEYS: &[&str] = &["type", "timeout", "path"];
const S3_KEYS: &[&str] = &[
    "type",
    "timeout",
    "bucket",
    "endpoint",
    "region",
    "prefix",
    "access_key_id",
    "secret_access_key",
    "allow_http",
];

/// `Some(None)`: no `backup` section. `None`: the section is invalid (reported).
pub(super) fn backup(r: &mut Reader, root: &Section<'_>) -> Option<Option<BackupConfig>> {
    let Some(value) = root.get("backup") else {
        return Some(None);
    };
    let s = r.section("backup", value)?;
    r.check_keys(&s, schema::BACKUP, &[]);
    let repository = r
        .required(&s, "repository")
        .and_then(|v| repository(r, "backup.repository", v));
    let encryption_key_file = match s.get("encryption_key_file") {
        None => Some(None),
        Some(v) => absolute_path(r, "backup.encryption_key_file", v).map(Some),
    };
    let compression_level = match s.get("compression_level") {
        None => Some(DEFAULT_COMPRESSION),
        Some(v) => compression_level(r, v),
    };
    let base_method = base_method(r, s.get("base_method"));
    let schedule = match s.get("schedule") {
        None => Some(None),
        Some(v) => jobs::schedule(r, "backup.schedule", v).map(Some),
    };
    let retention = match s.get("retention") {
        None => Some(Retention::default()),
        Some(v) => jobs::retention(r, v),
    };
    let dump = match s.get("dump") {
        None => Some(None),
        Some(v) => jobs::dump(r, v).map(Some),
    };
    let drill = jobs::drill(r, s.get("drill"));
    let heartbeat = jobs::heartbeat(r, s.get("heartbeat"));
    let webhook_url = jobs::webhook_url(r, s.get("webhook_url"));
    let wal_wait_timeout = jobs::wal_wait_timeout(r, &s);
    let partial_upload_interval =
        jobs::partial_upload_interval(r, s.get("partial_upload_interval"));
    let objectives = super::objectives::objectives(r, s.get("objectives"));
    let copies = match (s.get("copies"), &repository, &retention) {
        (None, _, _) => Some(Vec::new()),
        (Some(v), Some(main), Some(main_retention)) => copies::copies(r, v, main, main_retention),
        // The main repository or retention is invalid (reported): copies are compared
        // with them, so they are checked once those are fixed.
        (Some(_), _, _) => None,
    };
    let stack_jobs = match s.get("jobs") {
        None => Some(Vec::new()),
        Some(v) => super::stack_jobs::jobs(r, v),
    };
    Some(Some(BackupConfig {
        repository: repository?,
        encryption_key_file: encryption_key_file?,
        compression_level: compression_level?,
        base_method: base_method?,
        schedule: schedule?,
        retention: retention?,
        dump: dump?,
        drill: drill?,
        heartbeat: heartbeat?,
        webhook_url: webhook_url?,
        wal_wait_timeout: wal_wait_timeout?,
        partial_upload_interval: partial_upload_interval?,
        objectives: objectives?,
        copies: copies?,
        jobs: stack_jobs?,
    }))
}

fn base_method(r: &mut Reader, value: Option<&Value>) -> Option<BaseMethod> {
    match value {
        None => Some(BaseMethod::default()),
        Some(Value::String(s)) if s == "files" => Some(BaseMethod::Files),
        Some(Value::String(s)) if s == "pg_basebackup" => Some(BaseMethod::PgBasebackup),
        Some(v) => {
            let shown = match v {
                Value::String(s) => format!("{s:?}"),
                other => serde_yaml::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            };
            r.error(
                "backup.base_method",
                format!("must be \"files\" or \"pg_basebackup\", got {shown}"),
            );
            None
        }
    }
}

fn compression_level(r: &mut Reader, value: &Value) -> Option<i32> {
    const KEY: &str = "backup.compression_level";
    let level = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let ok = |l: &i32| COMPRESSION_LEVELS.contains(l) || FAST_LEVELS.contains(l);
    match level.map(i32::try_from) {
        Some(Ok(l)) if ok(&l) => Some(l),
        _ => {
            r.error(
                KEY,
                format!(
                    "must be a zstd level from {} to {}, or a fast level from {} to {}, got {}",
                    COMPRESSION_LEVELS.start(),
                    COMPRESSION_LEVELS.end(),
                    FAST_LEVELS.start(),
                    FAST_LEVELS.end(),
                    level.map_or_else(|| format!("{value:?}"), |l| l.to_string())
                ),
            );
            None
        }
    }
}

/// A repository's section at `key` (`backup.repository`, `backup.copies[i].repository`):
/// every error names the key under it.
pub(super) fn repository(r: &mut Reader, key: &str, value: &Value) -> Option<RepositoryConfig> {
    let s = r.section(key, value)?;
    r.check_keys(&s, schema::REPOSITORY, &[]);
    let kind_text = r
        .required(&s, "type")
        .and_then(|v| r.string(&s.path_of("type"), v));
    let timeout = match s.get("timeout") {
        None => Some(DEFAULT_TIMEOUT),
        Some(v) => duration(r, &s.path_of("timeout"), v),
    };
    let kind = match kind_text.as_deref().map(str::trim) {
        Some("filesystem") => {
            reject_other_kind(r, &s, FILESYSTEM_KEYS, "filesystem");
            r.required(&s, "path")
                .and_then(|v| absolute_path(r, &s.path_of("path"), v))
                .map(|path| RepositoryKind::Filesystem { path })
        }
        Some("s3") => {
            reject_other_kind(r, &s, S3_KEYS, "s3");
            s3(r, &s).map(RepositoryKind::S3)
        }
        Some(other) => {
            r.error(
                s.path_of("type"),
                format!("expected \"filesystem\" or \"s3\", got \"{other}\""),
            );
            None
        }
        None => None,
    };
    Some(RepositoryConfig {
        kind: kind?,
        timeout: timeout?,
    })
}

/// A key that belongs to the other repository kind (`bucket` on a filesystem) would
/// be silently ignored; it is almost certainly a mistake.
fn reject_other_kind(r: &mut Reader, s: &Section<'_>, allowed: &[&str], kind: &str) {
    for (key, _) in s.entries() {
        let Some(name) = key.as_str() else { continue };
        let known = schema::REPOSITORY.iter().any(|k| k.name == name);
        if known && !allowed.contains(&name) {
            r.error(
                s.path_of(name),
                format!("not a setting of a repository of type \"{kind}\""),
            );
        }
    }
}

fn s3(r: &mut Reader, s: &Section<'_>) -> Option<S3Config> {
    let bucket = r
        .required(s, "bucket")
        .and_then(|v| r.string(&s.path_of("bucket"), v));
    let bucket = match bucket {
        Some(b) if b.trim().is_empty() || b.contains('/') => {
            r.error(
                s.path_of("bucket"),
                format!("must be a bucket name (not empty, no '/'), got \"{b}\""),
            );
            None
        }
        other => other,
    };
    let mut text = |key: &str| -> Option<Option<String>> {
        match s.get(key) {
            None => Some(None),
            Some(v) => r.string(&s.path_of(key), v).map(Some),
        }
    };
    let endpoint = text("endpoint");
    let region = text("region");
    let prefix = text("prefix");
    let access_key_id = text("access_key_id");
    let secret_access_key = text("secret_access_key");
    let mut allow_http = false;
    r.bool_key(s, "allow_http", &mut allow_http);
    if let Some(Some(e)) = &endpoint {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            r.error(
                s.path_of("endpoint"),
                format!("must be an http:// or https:// URL, got \"{e}\""),
            );
        } else if e.starts_with("http://") && !allow_http {
            r.error(
                s.path_of("endpoint"),
                format!(
                    "is plain http://; set {}: true to allow it",
                    s.path_of("allow_http")
                ),
            );
        }
    }
    if let (Some(id), Some(secret)) = (&access_key_id, &secret_access_key) {
        if id.is_some() != secret.is_some() {
            r.error(
                s.path.clone(),
                "set both access_key_id and secret_access_key, or neither (then the AWS \
                 environment variables are used)",
            );
            return None;
        }
    }
    let prefix = prefix?.map(|p| p.trim_matches('/').to_owned());
    Some(S3Config {
        bucket: bucket?,
        endpoint: endpoint?,
        region: region?,
        prefix: prefix.unwrap_or_default(),
        access_key_id: access_key_id?,
        secret_access_key: secret_access_key?.map(Secret),
        allow_http,
    })
}

pub(super) fn absolute_path(r: &mut Reader, key: &str, value: &Value) -> Option<PathBuf> {
    let path = PathBuf::from(r.string(key, value)?);
    if !path.is_absolute() {
        r.error(
            key,
            format!("must be an absolute path, got \"{}\"", path.display()),
        );
        return None;
    }
    Some(path)
}

pub(super) fn duration(r: &mut Reader, key: &str, value: &Value) -> Option<Duration> {
    let text = r.string(key, value)?;
    // A bare number means seconds, like Patroni's timeouts.
    let parsed = match text.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text.trim()).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            r.error(key, "must be greater than zero");
            None
        }
        Err(e) => {
            r.error(
                key,
                format!("expected a duration like 30s or 2m, got \"{text}\" ({e})"),
            );
            None
        }
    }
}
