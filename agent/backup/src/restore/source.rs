//! The catalog a restore (or drill, or bootstrap) reads: the config's repository and
//! key, and the layout of the cluster whose backups are wanted.
//!
//! The system identifier (part of every object path) comes from, in order: the
//! caller (config or flag), the local data directory's `pg_control`, or the
//! repository itself when it holds exactly one cluster under the scope (a new machine
//! restoring a cluster it never ran).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::catalog::Catalog;
use crate::key::EncryptionKey;
use crate::layout::Layout;
use crate::repo::Repository;
use warden_config::Config;

/// The catalog of `scope` (default: the config's) in the config's repository.
pub async fn catalog(
    cfg: &Config,
    scope: Option<&str>,
    system_identifier: Option<u64>,
) -> Result<Catalog> {
    let backup = cfg
        .backup
        .as_ref()
        .ok_or_else(|| anyhow!("the config has no backup section (backup.repository)"))?;
    let key = EncryptionKey::load(backup.encryption_key_file.as_deref())?;
    let repo = Repository::open(&backup.repository)?;
    let scope = scope.unwrap_or(&cfg.scope);
    let sysid = match system_identifier {
        Some(s) => s,
        None => match cfg
            .postgresql()
            .map(|pg| warden_pg::control::system_identifier(&pg.data_dir))
        {
            Some(Ok(s)) => s,
            _ => discover(&repo, scope).await?,
        },
    };
    Ok(Catalog {
        repo,
        layout: Layout::new(scope, sysid),
        key,
    })
}

/// The only system identifier with backups under `<scope>/` in the repository.
async fn discover(repo: &Repository, scope: &str) -> Result<u64> {
    let objects = repo
        .list(&format!("{scope}/"))
        .await
        .with_context(|| format!("listing {scope}/ in the repository"))?;
    let found: BTreeSet<u64> = objects
        .iter()
        .filter_map(|o| {
            let mut parts = o.path.strip_prefix(&format!("{scope}/"))?.split('/');
            let id = parts.next()?.parse().ok()?;
            (parts.next() == Some("backups")).then_some(id)
        })
        .collect();
    match found.len() {
        1 => Ok(*found.iter().next().expect("one")),
        0 => bail!(
            "the repository holds no backup under {scope}/ (and there is no local data \
             directory to read the system identifier from)"
        ),
        _ => bail!(
            "the repository holds backups of several clusters under {scope}/ ({}); name \
             the one to restore (--system-identifier, or system_identifier in the \
             bootstrap method's section)",
            found
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `warden` binary that PostgreSQL's `restore_command` runs: beside the running
/// executable (`wardenctl` and `warden` are installed together), else `warden` on PATH.
pub fn warden_binary() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("warden")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| Path::new("warden").to_path_buf())
}
