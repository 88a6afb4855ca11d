//! `postgresql.create_replica_methods: [warden_restore, basebackup]`: a new replica
//! is created from the newest base backup in the repository instead of a
//! `pg_basebackup` of the leader, sparing the leader the copy. It starts as a standby
//! that replays archived WAL (`restore_command = warden wal-fetch ...`) and then
//! streams from the leader (the agent's managed `primary_conninfo`). Patroni's
//! semantics: methods are tried in order until one succeeds.

use std::path::Path;

use warden_backup::catalog::Catalog;
use warden_backup::restore::{self, recovery, source, Recovery, Target};
use warden_config::{Config, RestoreSource};
use warden_pg::{PgError, Postgres};

fn failed(what: &str, e: impl std::fmt::Display) -> PgError {
    PgError::Files(format!("replica from the repository: {what}: {e:#}"))
}

/// Restores the newest backup of the cluster `system_identifier` into the data
/// directory as a standby. Returns the backup's id.
pub(super) async fn run(
    pg: &Postgres,
    cfg: &Config,
    config_path: Option<&Path>,
    system_identifier: Option<u64>,
) -> Result<String, PgError> {
    let config_path = config_path
        .and_then(|p| std::fs::canonicalize(p).ok())
        .ok_or_else(|| failed("restore_command", "the agent's config file path is unknown"))?;
    let from = cfg
        .postgresql()
        .map(|pg| pg.warden_restore.clone())
        .unwrap_or_default();
    let catalog = open(cfg, &from, system_identifier)
        .await
        .map_err(|e| failed("opening the repository", e))?;
    let backup = catalog
        .backup("latest")
        .await
        .map_err(|e| failed("finding a backup", e))?;
    let dir = pg.settings.data_dir.clone();
    if dir.exists() {
        // A leftover of a failed clone: kept aside, as for pg_basebackup.
        let aside = warden_pg::aside_path(&dir);
        std::fs::rename(&dir, &aside).map_err(|e| failed("moving the old directory aside", e))?;
        tracing::warn!(from = %dir.display(), to = %aside.display(), "moved an unusable data directory aside");
    }
    let rec = Recovery {
        target: Target::Latest,
        restore_command: restore_command(&config_path, &from),
        action: "promote",
        archive_off: false,
        standby: true,
    };
    let report = restore::restore(&catalog, &backup, &dir, &rec)
        .await
        .map_err(|e| failed("restoring", e))?;
    tracing::info!(backup = %backup.id, bytes = report.bytes, seconds = report.total_seconds, "restored the newest backup as a replica");
    Ok(backup.id)
}

/// The catalog of the cluster `from` names (its `scope`, default ours) in the
/// repository it names (`main`: `backup.repository`; else a `backup.copies` entry,
/// with its own credentials and key).
pub(super) async fn open(
    cfg: &Config,
    from: &RestoreSource,
    system_identifier: Option<u64>,
) -> anyhow::Result<Catalog> {
    let backup = cfg
        .backup
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the config has no backup section (backup.repository)"))?
        .for_repository(from.repository.as_deref())?;
    let cfg = Config {
        backup: Some(backup),
        ..cfg.clone()
    };
    source::catalog(&cfg, from.scope.as_deref(), system_identifier).await
}

/// `warden wal-fetch` reading where `from` says, for the restored copy's recovery.
pub(super) fn restore_command(config_path: &Path, from: &RestoreSource) -> String {
    recovery::restore_command_for(
        &source::warden_binary(),
        config_path,
        from.repository.as_deref(),
        from.scope.as_deref(),
    )
}
