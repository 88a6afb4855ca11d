//! `wardenctl restore` and `wardenctl drill`: local operations on the backup
//! repository, with the Warden config (`-c`, its `backup` section) for the
//! repository, key and scope.
//!
//! With a Redis member's config they work on RDB snapshots: `restore` writes a
//! verified `dump.rdb` into a new data directory; `drill` restores the snapshot into a
//! scratch directory, starts `redis-server` on it, runs `backup.drill.checks` (`DBSIZE`,
//! `GET key`) and reports RTO and RPO. The cluster identity (the `initialize` value)
//! comes from `--system-identifier`, the local data directory's marker, or the only
//! cluster with snapshots in the repository.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use super::Ctl;
use warden_backup::catalog::CatalogError;
use warden_backup::drill::{self, DrillOptions};
use warden_backup::rdb;
use warden_backup::restore::{self, source, target, Recovery, Target};
use warden_config::Config;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup id, or `latest` (with --target-time: the newest backup that finished
    /// before the target).
    #[arg(long = "backup", value_name = "ID|latest", default_value = "latest")]
    pub backup: String,
    /// Recover up to this time (RFC 3339, or 'YYYY-MM-DD HH:MM:SS[+HH]'; UTC without
    /// an offset).
    #[arg(long = "target-time", value_name = "TIME")]
    pub target_time: Option<String>,
    /// Recover up to this WAL position (e.g. 0/3000060).
    #[arg(long = "target-lsn", value_name = "LSN")]
    pub target_lsn: Option<String>,
    /// Recover up to this restore point (pg_create_restore_point).
    #[arg(long = "target-name", value_name = "NAME")]
    pub target_name: Option<String>,
    /// Stop as soon as the backup is consistent.
    #[arg(long = "immediate")]
    pub immediate: bool,
    /// The new data directory (must not exist, or be empty).
    #[arg(long = "to", visible_alias = "data-dir", value_name = "DIR")]
    pub to: PathBuf,
    /// Restore a set of this `backup.jobs` job (its restore_command, with
    /// $WARDEN_RESTORE_DIR = DIR) instead of a base backup.
    #[arg(long = "job", value_name = "NAME")]
    pub job: Option<String>,
    /// The cluster's system identifier (Redis: its initialize value), when the
    /// repository holds several under the scope (default: the local data directory's,
    /// else the only one).
    #[arg(long = "system-identifier", value_name = "ID")]
    pub system_identifier: Option<u64>,
    /// Restore from this repository: a `backup.copies` name (default: `main`,
    /// `backup.repository`); the restored copy's `restore_command` reads WAL from it too.
    #[arg(long = "repository", value_name = "NAME")]
    pub repository: Option<String>,
    /// Print the report as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Backup id (default: the newest).
    #[arg(long = "backup", value_name = "ID")]
    pub backup: Option<String>,
    /// The cluster's system identifier (as for `restore`).
    #[arg(long = "system-identifier", value_name = "ID")]
    pub system_identifier: Option<u64>,
    /// Parent directory of the scratch directory (default: the system's temp dir).
    #[arg(long = "scratch-dir", value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Drill this `backup.jobs` job instead of PostgreSQL.
    #[arg(long = "job", value_name = "NAME")]
    pub job: Option<String>,
    /// Drill from this repository: a `backup.copies` name (default: `main`); the
    /// drill record is written there too. Proves that copy alone is enough.
    #[arg(long = "repository", value_name = "NAME")]
    pub repository: Option<String>,
    /// Print the drill record as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

/// The full Warden config `-c` names (restore and drill need its backup section).
fn warden_config(file: Option<&Path>) -> Result<(Config, PathBuf)> {
    let file = file.ok_or_else(|| {
        anyhow!("restore and drill need the Warden config with a backup section: pass -c CONFIG")
    })?;
    let path =
        std::fs::canonicalize(file).with_context(|| format!("config file {}", file.display()))?;
    let loaded = warden_config::load(&path)?;
    if loaded.config.backup.is_none() {
        bail!("{}: no backup section (backup.repository)", path.display());
    }
    Ok((loaded.config, path))
}

/// `cfg` as seen from repository `name` (`--repository`): its `backup` section reads
/// that copy's repository with that copy's key.
pub(super) fn on_repository(mut cfg: Config, name: Option<&str>) -> Result<Config> {
    if let Some(backup) = cfg.backup.as_ref() {
        let seen = backup
            .for_repository(name)
            .map_err(|e| anyhow!("--repository: {e}"))?;
        cfg.backup = Some(seen);
    }
    Ok(cfg)
}

/// The `-c` config when it is a Redis member's with a backup section (anything else,
/// including a config that does not load, goes the PostgreSQL way, which reports it).
fn redis_config(file: Option<&Path>) -> Option<Config> {
    warden_config(file)
        .ok()
        .map(|(c, _)| c)
        .filter(|c| c.redis().is_some())
}

/// `--to` must be new or empty; checked before anything is fetched.
fn check_target_dir(dir: &Path) -> Result<PathBuf> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    if let Ok(mut entries) = std::fs::read_dir(&abs) {
        if entries.next().is_some() {
            bail!(
                "--to {}: the directory is not empty; restore into a new or empty directory",
                abs.display()
            );
        }
    } else if abs.exists() {
        bail!("--to {}: not a directory", abs.display());
    }
    Ok(abs)
}

impl Ctl<'_> {
    pub async fn restore(&mut self, a: RestoreArgs) -> Result<()> {
        if let Some(cfg) = redis_config(self.config.file.as_deref()) {
            let cfg = on_repository(cfg, a.repository.as_deref())?;
            return self.restore_rdb(&cfg, a).await;
        }
        let target = Target::from_options(
            a.target_time.as_deref(),
            a.target_lsn.as_deref(),
            a.target_name.as_deref(),
            a.immediate,
        )?;
        let dir = check_target_dir(&a.to)?;
        let (cfg, cfg_path) = warden_config(self.config.file.as_deref())?;
        let cfg = on_repository(cfg, a.repository.as_deref())?;
        let catalog = source::catalog(&cfg, None, a.system_identifier).await?;
        let backup = if a.backup == "latest" {
            let all = catalog.backups().await?;
            target::choose_backup(&all, &target)?
                .cloned()
                .ok_or(CatalogError::NoBackup)?
        } else {
            let b = catalog.backup(&a.backup).await?;
            target::check_reachable(&target, &b)?;
            b
        };
        let recovery = Recovery {
            target,
            restore_command: restore::recovery::restore_command_from(
                &source::warden_binary(),
                &cfg_path,
                a.repository.as_deref(),
            ),
            action: "promote",
            archive_off: true,
            standby: false,
        };
        let report = restore::restore(&catalog, &backup, &dir, &recovery).await?;
        if a.json {
            self.io.println(serde_json::to_string_pretty(&report)?)?;
        } else {
            self.io.println(format!(
                "Restored backup {} into {} ({} files, {:.1} MB; stored {:.1} MB)\n  \
                 fetch {:.1} s, extract {:.1} s, total {:.1} s\n  \
                 recovery target: {}; on start PostgreSQL replays archived WAL with\n  \
                 restore_command = '{}'\n  and promotes at the target (archive_mode = off).",
                report.backup_id,
                report.dir.display(),
                report.files,
                report.bytes as f64 / 1e6,
                report.stored_bytes as f64 / 1e6,
                report.fetch_seconds,
                report.extract_seconds,
                report.total_seconds,
                report.target,
                recovery.restore_command
            ))?;
        }
        Ok(())
    }

    /// `restore` with a Redis config: the snapshot as `<DIR>/dump.rdb`, verified on the
    /// way (a corrupt snapshot leaves no file).
    async fn restore_rdb(&mut self, cfg: &Config, a: RestoreArgs) -> Result<()> {
        if a.target_time.is_some()
            || a.target_lsn.is_some()
            || a.target_name.is_some()
            || a.immediate
        {
            bail!(
                "--target-time, --target-lsn, --target-name and --immediate are PostgreSQL's \
                 (WAL replay); an RDB snapshot restores as it was taken"
            );
        }
        let dir = check_target_dir(&a.to)?;
        let catalog = rdb::source::catalog(cfg, None, a.system_identifier).await?;
        let record = catalog.rdb(&a.backup).await.map_err(|e| match e {
            CatalogError::NoBackup => anyhow!(
                "the repository holds no committed RDB snapshot of cluster {} ({})",
                catalog.layout.cluster(),
                catalog.repo.url()
            ),
            e => anyhow!("RDB snapshot {:?}: {e}", a.backup),
        })?;
        let started = std::time::Instant::now();
        let restored = rdb::restore(&catalog, &record, &dir).await?;
        let seconds = started.elapsed().as_secs_f64();
        if a.json {
            self.io
                .println(serde_json::to_string_pretty(&serde_json::json!({
                    "backup_id": record.id,
                    "kind": "rdb",
                    "dir": dir,
                    "path": restored.path,
                    "bytes": restored.summary.len,
                    "rdb_version": restored.summary.version,
                    "crc64": format!("{:016x}", restored.summary.crc),
                    "stored_bytes": record.stored_size,
                    "total_seconds": seconds,
                }))?)?;
        } else {
            self.io.println(format!(
                "Restored RDB snapshot {} into {} ({:.1} MB, RDB v{}, CRC-64 {:016x} verified) in \
                 {seconds:.1} s\n  start it with: redis-server --dir {} --dbfilename {}",
                record.id,
                restored.path.display(),
                restored.summary.len as f64 / 1e6,
                restored.summary.version,
                restored.summary.crc,
                dir.display(),
                restored
                    .path
                    .file_name()
                    .map_or_else(|| "dump.rdb".into(), |n| n.to_string_lossy())
            ))?;
        }
        Ok(())
    }

    /// `drill` with a Redis config.
    async fn drill_rdb(&mut self, cfg: &Config, a: DrillArgs) -> Result<()> {
        let catalog = rdb::source::catalog(cfg, None, a.system_identifier).await?;
        let mut opts = rdb::source::drill_options(cfg, a.backup)?;
        opts.scratch_parent = a.scratch_dir;
        let record = rdb::drill::run(&catalog, &opts).await?;
        if a.json {
            self.io.println(serde_json::to_string_pretty(&record)?)?;
        } else {
            self.io.println(rdb::drill::render(&record).trim_end())?;
        }
        if !record.ok {
            bail!(
                "the drill failed: {}",
                record.error.as_deref().unwrap_or("unknown error")
            );
        }
        Ok(())
    }

    pub async fn drill(&mut self, a: DrillArgs) -> Result<()> {
        if let Some(cfg) = redis_config(self.config.file.as_deref()) {
            let cfg = on_repository(cfg, a.repository.as_deref())?;
            return self.drill_rdb(&cfg, a).await;
        }
        let (cfg, cfg_path) = warden_config(self.config.file.as_deref())?;
        let cfg = on_repository(cfg, a.repository.as_deref())?;
        let catalog = source::catalog(&cfg, None, a.system_identifier).await?;
        let mut opts = DrillOptions::from_config(&cfg, &cfg_path, a.backup)?;
        opts.restore_command = restore::recovery::restore_command_from(
            &source::warden_binary(),
            &cfg_path,
            a.repository.as_deref(),
        );
        opts.scratch_parent = a.scratch_dir;
        let record = drill::run(&catalog, &opts).await?;
        if a.json {
            self.io.println(serde_json::to_string_pretty(&record)?)?;
        } else {
            self.io.println(drill::render(&record).trim_end())?;
        }
        if !record.ok {
            bail!(
                "the drill failed: {}",
                record.error.as_deref().unwrap_or("unknown error")
            );
        }
        Ok(())
    }
}
