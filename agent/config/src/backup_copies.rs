//! `backup.copies`: further repositories (3-2-1) the archiver copies every committed
//! object into.
//!
//! ```yaml
//! backup:
//!   copies:
//!     - name: offsite
//!       repository: {type: s3, bucket: pg-backups-dr, region: eu-central-1}
//!       encryption_key_file: /etc/warden/offsite.key   # default: the main key
//!       retention: {keep_last: 10}                     # default: backup.retention
//!       max_lag: 5m                                    # alert when further behind
//! ```

use std::time::Duration;

use serde_yaml::Value;

use super::backup::{absolute_path, duration, repository};
use super::backup_jobs::retention_at;
use super::reader::Reader;
use super::schema;
use super::types::{BackupConfig, CopyConfig, RepositoryConfig, RepositoryKind, Retention};

/// How far behind a copy may fall before it is reported, unless `max_lag` says.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(300);
/// The name `--repository` gives the main repository (so no copy may use it).
pub const MAIN: &str = "main";
const NAME_MAX: usize = 64;

pub(super) fn copies(
    r: &mut Reader,
    value: &Value,
    main: &RepositoryConfig,
    main_retention: &Retention,
) -> Option<Vec<CopyConfig>> {
    const KEY: &str = "backup.copies";
    let Value::Sequence(items) = value else {
        r.error(
            KEY,
            "expected a list of {name, repository, encryption_key_file, retention, max_lag}",
        );
        return None;
    };
    let mut out: Vec<CopyConfig> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("{KEY}[{i}]");
        match copy(r, &path, item, main, main_retention) {
            Some(c) => {
                if let Some(j) = out.iter().position(|o| o.name == c.name) {
                    r.error(
                        format!("{path}.name"),
                        format!("\"{}\" is already the name of {KEY}[{j}]", c.name),
                    );
                    ok = false;
                } else if let Some(j) = out
                    .iter()
                    .position(|o| same_place(&o.repository, &c.repository))
                {
                    r.error(
                        format!("{path}.repository"),
                        format!("is the same repository as {KEY}[{j}]"),
                    );
                    ok = false;
                } else {
                    out.push(c);
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn copy(
    r: &mut Reader,
    path: &str,
    value: &Value,
    main: &RepositoryConfig,
    main_retention: &Retention,
) -> Option<CopyConfig> {
    let s = r.section(path, value)?;
    r.check_keys(&s, schema::COPY, &[]);
    let name = r
        .required(&s, "name")
        .and_then(|v| r.string(&s.path_of("name"), v))
        .and_then(|n| check_name(r, &s.path_of("name"), n));
    let repo = r
        .required(&s, "repository")
        .and_then(|v| repository(r, &s.path_of("repository"), v));
    let repo = match repo {
        Some(c) if same_place(&c, main) => {
            r.error(
                s.path_of("repository"),
                "is the main repository (backup.repository); a copy must be another place",
            );
            None
        }
        other => other,
    };
    let encryption_key_file = match s.get("encryption_key_file") {
        None => Some(None),
        Some(v) => absolute_path(r, &s.path_of("encryption_key_file"), v).map(Some),
    };
    let retention = match s.get("retention") {
        None => Some(main_retention.clone()),
        Some(v) => retention_at(r, &s.path_of("retention"), v)
            .and_then(|c| keeps_at_least(r, &s.path_of("retention"), c, main_retention)),
    };
    let max_lag = match s.get("max_lag") {
        None => Some(DEFAULT_MAX_LAG),
        Some(v) => duration(r, &s.path_of("max_lag"), v),
    };
    Some(CopyConfig {
        name: name?,
        repository: repo?,
        encryption_key_file: encryption_key_file?,
        retention: retention?,
        max_lag: max_lag?,
    })
}

/// Names appear in metrics labels, flags and log lines: a plain word.
fn check_name(r: &mut Reader, key: &str, name: String) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !valid {
        r.error(
            key,
            format!("must be 1 to {NAME_MAX} characters of [A-Za-z0-9_.-], got \"{name}\""),
        );
        return None;
    }
    if name == MAIN {
        r.error(
            key,
            format!("\"{MAIN}\" names the main repository (--repository {MAIN}); choose another"),
        );
        return None;
    }
    Some(name)
}

/// The same storage: one directory, or one bucket and prefix at one endpoint.
fn same_place(a: &RepositoryConfig, b: &RepositoryConfig) -> bool {
    match (&a.kind, &b.kind) {
        (RepositoryKind::Filesystem { path: p }, RepositoryKind::Filesystem { path: q }) => {
            p.components().eq(q.components())
        }
        (RepositoryKind::S3(x), RepositoryKind::S3(y)) => {
            x.bucket == y.bucket
                && x.prefix == y.prefix
                && x.endpoint.as_deref().map(|e| e.trim_end_matches('/'))
                    == y.endpoint.as_deref().map(|e| e.trim_end_matches('/'))
        }
        _ => false,
    }
}

/// A copy's retention must keep every backup the main one keeps: otherwise the copy
/// would delete what the main repository still holds, and the copier would copy it
/// again. Each rule is monotone in its count, so "every count at least the main one's"
/// is enough; a main repository that keeps everything needs a copy that does too.
fn keeps_at_least(
    r: &mut Reader,
    key: &str,
    copy: Retention,
    main: &Retention,
) -> Option<Retention> {
    if copy.keeps_everything() {
        return Some(copy);
    }
    if main.keeps_everything() {
        r.error(
            key,
            "backup.retention keeps everything, so a copy must too (remove the copy's retention)",
        );
        return None;
    }
    let mut ok = true;
    for (rule, c, m) in [
        ("keep_last", copy.keep_last, main.keep_last),
        ("keep_daily", copy.keep_daily, main.keep_daily),
        ("keep_weekly", copy.keep_weekly, main.keep_weekly),
        ("keep_monthly", copy.keep_monthly, main.keep_monthly),
    ] {
        let m = m.unwrap_or(0);
        if c.unwrap_or(0) < m {
            r.error(
                format!("{key}.{rule}"),
                format!(
                    "must keep at least what backup.retention keeps ({rule}: {m}); a copy may keep longer, not shorter"
                ),
            );
            ok = false;
        }
    }
    ok.then_some(copy)
}

/// `--repository NAME` named no repository of the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown repository \"{name}\": the config names {known}")]
pub struct UnknownRepository {
    pub name: String,
    pub known: String,
}

impl BackupConfig {
    /// The backup settings as seen from repository `name` (`None` or `"main"`: the
    /// main one; else the copy of that name): its repository, key file and retention
    /// in the main fields, and no copies. Everything that reads a repository (verify,
    /// list, restore, drills, wal-fetch) works on the result unchanged.
    pub fn for_repository(&self, name: Option<&str>) -> Result<BackupConfig, UnknownRepository> {
        let Some(name) = name.filter(|n| *n != MAIN) else {
            return Ok(BackupConfig {
                copies: Vec::new(),
                ..self.clone()
            });
        };
        let copy = self.copies.iter().find(|c| c.name == name).ok_or_else(|| {
            let mut known = vec![format!("\"{MAIN}\" (backup.repository)")];
            known.extend(self.copies.iter().map(|c| format!("\"{}\"", c.name)));
            UnknownRepository {
                name: name.to_owned(),
                known: known.join(", "),
            }
        })?;
        Ok(BackupConfig {
            repository: copy.repository.clone(),
            encryption_key_file: copy
                .encryption_key_file
                .clone()
                .or_else(|| self.encryption_key_file.clone()),
            retention: copy.retention.clone(),
            copies: Vec::new(),
            ..self.clone()
        })
    }
}
