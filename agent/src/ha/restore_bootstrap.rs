//! `bootstrap.method: warden_restore`: the member that wins the initialize race
//! creates the cluster from the backup repository instead of running initdb.
//!
//! The latest (or named) backup of this scope is restored into the data directory,
//! PostgreSQL replays archived WAL up to the configured target (`warden wal-fetch` as
//! `restore_command`) and promotes; then the recovery settings are removed and the
//! agent's roles updated. The new cluster keeps the source's system identifier and
//! continues on a new timeline, so its WAL lands beside the source's in the same
//! repository without overwriting it (`<scope>/<sysid>/wal/<timeline>/`).

use std::path::Path;
use std::time::{Duration, Instant};

use warden_backup::restore::{self, recovery, target, Recovery};
use warden_config::{Config, RestoreBootstrap};
use warden_consensus::dynamic_config::DynamicConfig;
use warden_pg::{PgError, Postgres};

/// Bound for replaying the archive up to the target.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

fn failed(what: &str, e: impl std::fmt::Display) -> PgError {
    PgError::Files(format!("bootstrap from the repository: {what}: {e:#}"))
}

pub(super) async fn run(
    pg: &mut Postgres,
    cfg: &Config,
    config_path: Option<&Path>,
    spec: &RestoreBootstrap,
    dcs_cfg: &DynamicConfig,
) -> Result<(), PgError> {
    let config_path = config_path
        .and_then(|p| std::fs::canonicalize(p).ok())
        .ok_or_else(|| failed("restore_command", "the agent's config file path is unknown"))?;
    let catalog = super::restore_replica::open(cfg, &spec.source, spec.system_identifier)
        .await
        .map_err(|e| failed("opening the repository", e))?;
    let backup = if spec.backup == "latest" {
        let all = catalog
            .backups()
            .await
            .map_err(|e| failed("listing backups", e))?;
        target::choose_backup(&all, &spec.target)
            .map_err(|e| failed("choosing a backup", e))?
            .cloned()
            .ok_or_else(|| failed("choosing a backup", "the repository holds no backup"))?
    } else {
        let b = catalog
            .backup(&spec.backup)
            .await
            .map_err(|e| failed("reading the backup", e))?;
        warden_backup::restore::target::check_reachable(&spec.target, &b)
            .map_err(|e| failed("target", e))?;
        b
    };
    let dir = pg.settings.data_dir.clone();
    tracing::info!(backup = %backup.id, target = %spec.target.describe(), "bootstrapping from the repository");
    let rec = Recovery {
        target: spec.target.clone(),
        restore_command: super::restore_replica::restore_command(&config_path, &spec.source),
        action: "promote",
        // Archiving is Warden's (the elected archiver), not archive_command's.
        archive_off: false,
        standby: false,
    };
    let report = restore::restore(&catalog, &backup, &dir, &rec)
        .await
        .map_err(|e| failed("restoring", e))?;
    tracing::info!(
        files = report.files,
        bytes = report.bytes,
        seconds = report.total_seconds,
        "backup restored; replaying archived WAL"
    );
    pg.start_bootstrapped(dcs_cfg, super::execute::START_TIMEOUT)
        .await?;
    wait_promoted(pg).await.map_err(|e| failed("recovery", e))?;
    recovery::unconfigure(&dir).map_err(|e| failed("removing the recovery settings", e))?;
    pg.reload().await?;
    pg.create_roles().await
}

/// Waits (bounded) until a just-started PostgreSQL has left recovery: a restored
/// backup replays its WAL, then promotes (`recovery_target_action = promote`).
pub(super) async fn wait_promoted(pg: &mut Postgres) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if !pg.is_running() {
            return Err("PostgreSQL exited during recovery (see its log)".into());
        }
        let done = pg
            .sql()
            .query("SELECT pg_is_in_recovery()")
            .await
            .ok()
            .and_then(|rows| rows.first().map(|r| !r.get::<_, bool>(0)));
        if done == Some(true) {
            break;
        }
        if started.elapsed() > RECOVERY_TIMEOUT {
            return Err(format!("not finished after {RECOVERY_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "recovery finished; the new cluster is promoted"
    );
    Ok(())
}
