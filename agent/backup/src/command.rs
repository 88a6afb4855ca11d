//! `warden wal-push` and `warden wal-fetch`: the programs PostgreSQL runs as its
//! `archive_command` and `restore_command`.
//!
//! ```text
//! archive_command = 'warden wal-push -c /etc/warden/warden.yml %p'
//! restore_command = 'warden wal-fetch -c /etc/warden/warden.yml %f %p'
//! ```
//!
//! PostgreSQL runs both in the data directory, so the cluster's system identifier is
//! read from `./global/pg_control` there (falling back to `postgresql.data_dir`).
//!
//! Exit codes. wal-push: 0 archived (or already archived with identical content), 1
//! anything else (PostgreSQL retries, and keeps the segment). wal-fetch: see
//! [`fetch_exit`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use super::key::EncryptionKey;
use super::layout::Layout;
use super::repo::Repository;
use super::wal::{Archive, FetchError, Pushed};
use warden_config::{self as config, Config};

/// Config file path when `-c` is not given.
pub const CONFIG_ENV: &str = "WARDEN_CONFIG";

/// wal-fetch: the file is not in the repository. PostgreSQL treats it as "no more
/// archived WAL" (ends archive recovery, or switches a standby to streaming). Silent.
pub const FETCH_NOT_FOUND: u8 = 1;
/// wal-fetch: the repository could not be asked (unreachable, timed out, local write
/// failed). PostgreSQL treats it like a missing file and asks again later; a recovery
/// target that is then not reached is still reported by PostgreSQL (FATAL).
pub const FETCH_UNAVAILABLE: u8 = 3;
/// wal-fetch: the object exists but is corrupt or forged, or the configuration or key
/// is unusable. Above 125, so PostgreSQL aborts recovery instead of silently ending it
/// early on damaged WAL.
pub const FETCH_ABORT: u8 = 200;

#[derive(Debug, Parser)]
#[command(name = "warden wal-push", bin_name = "warden wal-push")]
/// Archive one WAL file into the backup repository (for `archive_command`).
struct PushArgs {
    /// Warden config file (with a `backup` section).
    #[arg(short = 'c', long = "config", env = CONFIG_ENV)]
    config: PathBuf,
    /// The file to archive: PostgreSQL's %p.
    path: PathBuf,
}

#[derive(Debug, Parser)]
#[command(name = "warden wal-fetch", bin_name = "warden wal-fetch")]
/// Restore one WAL file from the backup repository (for `restore_command`).
struct FetchArgs {
    /// Warden config file (with a `backup` section).
    #[arg(short = 'c', long = "config", env = CONFIG_ENV)]
    config: PathBuf,
    /// Read from this repository: a `backup.copies` name (default: `main`, the
    /// `backup.repository`).
    #[arg(long = "repository", value_name = "NAME")]
    repository: Option<String>,
    /// Read another cluster's WAL: the scope it archives under (default: the config's
    /// `scope`). A standby cluster fed from the primary cluster's repository runs under
    /// a scope of its own; its data is a physical copy, so the system identifier (read
    /// from the data directory) is the primary cluster's.
    #[arg(long = "scope", value_name = "SCOPE")]
    scope: Option<String>,
    /// The archived file's name: PostgreSQL's %f.
    name: String,
    /// Where to write it: PostgreSQL's %p.
    dest: PathBuf,
}

/// Runs `warden <sub> ...`; `sub` is `wal-push` or `wal-fetch`.
pub fn main(sub: &str) -> ExitCode {
    // Skip `warden`; clap then sees `wal-push` as the program name.
    let args = std::env::args_os().skip(1);
    match sub {
        "wal-push" => push_main(&PushArgs::parse_from(args)),
        _ => fetch_main(&FetchArgs::parse_from(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Config, key, repository and this cluster's layout.
/// `repository`: a `backup.copies` name to read from instead; `scope`: another
/// cluster's objects (both wal-fetch only).
fn archive(
    config_path: &Path,
    repository: Option<&str>,
    scope: Option<&str>,
) -> anyhow::Result<Archive> {
    if let Some(s) = scope.filter(|s| s.is_empty() || s.contains('/')) {
        anyhow::bail!("--scope: expected a cluster's scope (no '/'), got {s:?}");
    }
    let loaded = config::load(config_path)?;
    let cfg: Config = loaded.config;
    warden_config::logging::init(&cfg.log.level, cfg.log.json);
    for w in &loaded.warnings {
        tracing::debug!("config: {w}");
    }
    let backup = cfg.backup.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no backup section; wal-push and wal-fetch need backup.repository",
            config_path.display()
        )
    })?;
    let backup = backup
        .for_repository(repository)
        .map_err(|e| anyhow::anyhow!("--repository: {e}"))?;
    let key = EncryptionKey::load(backup.encryption_key_file.as_deref())?;
    let repo = Repository::open(&backup.repository)?;
    // PostgreSQL runs archive and restore commands in the data directory.
    let here = Path::new(".");
    let data_dir = if here.join("global/pg_control").is_file() {
        here
    } else {
        cfg.require_postgresql("wal-push and wal-fetch")
            .map_err(anyhow::Error::msg)?
            .data_dir
            .as_path()
    };
    let system_identifier = warden_pg::control::system_identifier(data_dir)?;
    Ok(Archive {
        repo,
        layout: Layout::new(scope.unwrap_or(&cfg.scope), system_identifier),
        key,
        compression_level: backup.compression_level,
    })
}

fn push_main(args: &PushArgs) -> ExitCode {
    let result = archive(&args.config, None, None).and_then(|archive| {
        runtime()?
            .block_on(archive.push(&args.path))
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(Pushed::Stored | Pushed::AlreadyArchived) => ExitCode::SUCCESS,
        Err(e) => {
            // Plain stderr (PostgreSQL's log), not tracing: it also covers failures
            // before logging is set up (an unreadable config).
            eprintln!("warden wal-push {}: error: {e}", args.path.display());
            ExitCode::from(1)
        }
    }
}

fn fetch_main(args: &FetchArgs) -> ExitCode {
    let archive = match archive(
        &args.config,
        args.repository.as_deref(),
        args.scope.as_deref(),
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("warden wal-fetch {}: error: {e}", args.name);
            return ExitCode::from(FETCH_ABORT);
        }
    };
    let result = match runtime() {
        Ok(rt) => rt.block_on(archive.fetch(&args.name, &args.dest)),
        Err(e) => {
            eprintln!("warden wal-fetch {}: error: {e}", args.name);
            return ExitCode::from(FETCH_UNAVAILABLE);
        }
    };
    let code = fetch_exit(&result);
    if let Err(e) = &result {
        if code != FETCH_NOT_FOUND {
            eprintln!("warden wal-fetch: error: {e}");
        }
    }
    ExitCode::from(code)
}

/// 0 restored; [`FETCH_NOT_FOUND`]; [`FETCH_UNAVAILABLE`]; [`FETCH_ABORT`].
pub fn fetch_exit(result: &Result<(), FetchError>) -> u8 {
    match result {
        Ok(()) => 0,
        // PostgreSQL asks for names that never exist (`RECOVERYHISTORY` is not one of
        // them, but a future timeline's history file is): a name that cannot be in the
        // repository is simply not there.
        Err(FetchError::NotFound { .. } | FetchError::BadName(_)) => FETCH_NOT_FOUND,
        Err(FetchError::Repo { .. } | FetchError::Local { .. }) => FETCH_UNAVAILABLE,
        // A rolled-back live copy would end recovery early, short of WAL the
        // repository held: the loss the attack is after. Stop loudly instead.
        Err(FetchError::Corrupt { .. } | FetchError::LiveRolledBack { .. }) => FETCH_ABORT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CodecError;
    use crate::layout::BadWalName;
    use crate::repo::RepoError;

    #[test]
    fn fetch_exit_codes() {
        let name = || "000000010000000000000003".to_owned();
        assert_eq!(fetch_exit(&Ok(())), 0);
        assert_eq!(fetch_exit(&Err(FetchError::NotFound { name: name() })), 1);
        assert_eq!(
            fetch_exit(&Err(FetchError::BadName(BadWalName("x".into())))),
            1
        );
        let timeout = RepoError::Timeout {
            op: "get",
            path: name(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            fetch_exit(&Err(FetchError::Repo {
                name: name(),
                source: timeout
            })),
            FETCH_UNAVAILABLE
        );
        let corrupt = FetchError::Corrupt {
            name: name(),
            source: CodecError::Tampered,
        };
        assert!(fetch_exit(&Err(corrupt)) > 125, "must abort recovery");
        let rolled_back = FetchError::LiveRolledBack {
            name: name(),
            seen: 2,
            found: 1,
        };
        assert!(fetch_exit(&Err(rolled_back)) > 125, "must abort recovery");
    }
}
