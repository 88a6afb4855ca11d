//! A Redis member's config turned into what the snapshot side needs: the catalog (the
//! cluster identity stands where PostgreSQL's system identifier does), the drill's
//! options and its checks.
//!
//! Redis has no system identifier: the cluster identity is the DCS `initialize` value,
//! a random 64-bit decimal number a bootstrap writes into Warden's marker file in the
//! data directory (`warden-redis.json`, `cluster`). It names the cluster's directory
//! in the repository (`<scope>/<identity>/rdb/<id>/`), like a system identifier.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::drill::{RdbCheck, RdbDrillOptions};
use crate::catalog::Catalog;
use crate::key::EncryptionKey;
use crate::layout::Layout;
use crate::repo::Repository;
use warden_config::{Config, DrillCheck};

/// The cluster identity in a Redis data directory's marker, if it has one.
pub fn identity_in(data_dir: &Path) -> Option<u64> {
    warden_redis::adapter::Marker::read(data_dir)
        .cluster
        .and_then(|c| c.trim().parse().ok())
}

/// Parses a cluster identity (the DCS `initialize` value) as the layout wants it.
pub fn parse_identity(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The catalog of `scope` (default: the config's) for cluster `identity`; `None`: the
/// local data directory's marker, else the only cluster with snapshots under
/// `<scope>/` in the repository.
pub async fn catalog(cfg: &Config, scope: Option<&str>, identity: Option<u64>) -> Result<Catalog> {
    let backup = cfg
        .backup
        .as_ref()
        .ok_or_else(|| anyhow!("the config has no backup section (backup.repository)"))?;
    let key = EncryptionKey::load(backup.encryption_key_file.as_deref())?;
    let repo = Repository::open(&backup.repository)?;
    let scope = scope.unwrap_or(&cfg.scope);
    let id = match identity.or_else(|| cfg.redis().and_then(|r| identity_in(&r.data_dir))) {
        Some(id) => id,
        None => discover(&repo, scope).await?,
    };
    Ok(Catalog {
        repo,
        layout: Layout::new(scope, id),
        key,
    })
}

/// The only cluster identity with RDB snapshots under `<scope>/`.
async fn discover(repo: &Repository, scope: &str) -> Result<u64> {
    let prefix = format!("{scope}/");
    let objects = repo
        .list(&prefix)
        .await
        .with_context(|| format!("listing {prefix} in the repository"))?;
    let found: BTreeSet<u64> = objects
        .iter()
        .filter_map(|o| {
            let mut parts = o.path.strip_prefix(&prefix)?.split('/');
            let id = parts.next()?.parse().ok()?;
            (parts.next() == Some("rdb")).then_some(id)
        })
        .collect();
    let mut ids = found.iter();
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(*id),
        (None, _) => bail!(
            "the repository holds no RDB snapshot under {prefix} (and there is no local data \
             directory with Warden's marker to read the cluster identity from)"
        ),
        _ => bail!(
            "the repository holds snapshots of several clusters under {prefix} ({}); name the \
             one to use with --system-identifier (the cluster's initialize value)",
            found
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `backup.drill.checks` read as Redis checks. A check's `sql` is a Redis command:
/// `DBSIZE` with `expect: ">= N"` (or `N`: at least N keys), or `GET <key>` with
/// `expect` the exact value. Anything else is an error naming the check.
pub fn checks(config: &[DrillCheck]) -> Result<Vec<RdbCheck>> {
    config
        .iter()
        .enumerate()
        .map(|(i, c)| check(c).map_err(|e| anyhow!("backup.drill.checks[{i}] ({}): {e}", c.name)))
        .collect()
}

fn check(c: &DrillCheck) -> Result<RdbCheck, String> {
    let words: Vec<&str> = c.sql.split_whitespace().collect();
    match words.as_slice() {
        [cmd] if cmd.eq_ignore_ascii_case("DBSIZE") => {
            let n = c.expect.trim();
            let n = n.strip_prefix(">=").unwrap_or(n).trim();
            n.parse().map(RdbCheck::DbSizeAtLeast).map_err(|_| {
                format!(
                    "expect: for DBSIZE give the least number of keys (\">= 1000\" or \"1000\"), \
                     got {:?}",
                    c.expect
                )
            })
        }
        [cmd, key] if cmd.eq_ignore_ascii_case("GET") => Ok(RdbCheck::Get {
            key: (*key).to_owned(),
            value: c.expect.clone(),
        }),
        _ => Err(format!(
            "sql: a Redis member's drill checks are \"DBSIZE\" (expect \">= N\") or \"GET <key>\" \
             (expect the value), got {:?}",
            c.sql
        )),
    }
}

/// The drill of snapshot `snapshot` (`None`: the newest) with the config's checks and
/// timeout, `redis-server` from `redis.bin_dir` (else `PATH`).
pub fn drill_options(cfg: &Config, snapshot: Option<String>) -> Result<RdbDrillOptions> {
    let redis = cfg.redis().ok_or_else(|| {
        anyhow!("an RDB drill needs a redis section (this member runs PostgreSQL)")
    })?;
    let mut opts = RdbDrillOptions::new(cfg.name.clone());
    opts.snapshot = snapshot;
    opts.redis_server = redis
        .bin_dir
        .as_ref()
        .map_or_else(|| "redis-server".into(), |d| d.join("redis-server"));
    match &cfg.backup {
        Some(b) => {
            opts.checks = checks(&b.drill.checks)?;
            opts.timeout = b.drill.timeout;
        }
        None => opts.timeout = Duration::from_secs(3600),
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dc(sql: &str, expect: &str) -> DrillCheck {
        DrillCheck {
            name: "c".into(),
            database: "postgres".into(),
            sql: sql.into(),
            expect: expect.into(),
        }
    }

    #[test]
    fn drill_checks_read_as_redis_commands() {
        let got = checks(&[
            dc("DBSIZE", ">= 100"),
            dc("dbsize", "7"),
            dc("GET k:1", "v 1"),
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                RdbCheck::DbSizeAtLeast(100),
                RdbCheck::DbSizeAtLeast(7),
                RdbCheck::Get {
                    key: "k:1".into(),
                    value: "v 1".into()
                }
            ]
        );
        let e = checks(&[dc("DBSIZE", "many")]).unwrap_err().to_string();
        assert!(
            e.contains("backup.drill.checks[0]") && e.contains("expect"),
            "{e}"
        );
        let e = checks(&[dc("GET k", "v"), dc("SELECT 1", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("backup.drill.checks[1]") && e.contains("sql"),
            "{e}"
        );
    }
}
