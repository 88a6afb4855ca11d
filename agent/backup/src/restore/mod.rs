//! Restore and point-in-time recovery: a committed base backup from the repository
//! becomes a data directory that starts in archive recovery and replays archived WAL
//! (through `warden wal-fetch`) up to a target.
//!
//! - `target`: recovery targets, choosing a backup that can reach one.
//! - `fetch`: parts downloaded in order and opened with the codec (each part's digest
//!   checked against the record), as one bounded stream.
//! - `extract`: the tar stream unpacked, each file's SHA-256 checked.
//! - `recovery`: `recovery.signal` and the recovery settings.
//! - `source`: the catalog a restore reads (config, key, system identifier).

pub mod extract;
pub mod fetch;
pub mod recovery;
pub mod source;
pub mod target;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::base::filesums;
use crate::catalog::{BackupRecord, Catalog, CatalogError, MANIFEST};
use crate::codec::{self, CodecError};
use crate::repo::RepoError;
use warden_pg::runas::RunAs;

pub use recovery::Recovery;
pub use target::Target;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0} is not empty; restore into a new or empty directory")]
    NotEmpty(PathBuf),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{object}: {source}")]
    Corrupt {
        object: String,
        #[source]
        source: CodecError,
    },
    #[error("{object}: its content's SHA-256 {got} is not the {expected} the backup recorded")]
    PartDigest {
        object: String,
        expected: String,
        got: String,
    },
    #[error("{path}: restored content does not match the backup's record (expected {expected}, got {got})")]
    FileChecksum {
        path: String,
        expected: String,
        got: String,
    },
    #[error("the backup's tar stream lacks files it recorded: {}", .0.join(", "))]
    MissingFiles(Vec<String>),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tar stream: {0}")]
    Tar(String),
    #[error("running as root: no `postgres` OS user to own the restored data directory (create it, or give {0} to the user PostgreSQL runs as)")]
    NoOwner(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a restore did, for `wardenctl restore --json` and drills.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreReport {
    pub backup_id: String,
    pub dir: PathBuf,
    pub target: String,
    pub files: u64,
    /// Plaintext bytes of the tar stream and bytes downloaded.
    pub bytes: u64,
    pub stored_bytes: u64,
    /// Time spent waiting for the repository.
    pub fetch_seconds: f64,
    /// Time spent opening, checking and writing (overlaps the download).
    pub extract_seconds: f64,
    pub total_seconds: f64,
    /// Files the record had no checksum for.
    pub unchecked_files: Vec<String>,
}

/// Who should own the restored directory: when root, the owner of `dir` (or of its
/// nearest existing parent) unless that is root, else the `postgres` user.
pub fn owner_for(dir: &Path) -> Result<Option<RunAs>, RestoreError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let mut d = Some(dir);
    while let Some(p) = d {
        if let Ok(meta) = std::fs::metadata(p) {
            if meta.uid() != 0 {
                return Ok(Some(RunAs {
                    uid: meta.uid(),
                    gid: meta.gid(),
                }));
            }
            break;
        }
        d = p.parent();
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(u)) => Ok(Some(RunAs {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        })),
        _ => Err(RestoreError::NoOwner(dir.to_path_buf())),
    }
}

/// Creates `dir` (mode 0700) or checks that it is empty.
fn prepare(dir: &Path) -> Result<(), RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RestoreError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        Err(e) => return Err(io_err(dir)(e)),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Restores `backup` into `dir` (new or empty) and configures recovery.
pub async fn restore(
    catalog: &Catalog,
    backup: &BackupRecord,
    dir: &Path,
    recovery: &Recovery,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let owner = owner_for(dir)?;
    prepare(dir)?;
    let result = restore_into(catalog, backup, dir, recovery, owner, started).await;
    if result.is_err() {
        // The directory was empty: leave it so, not half restored (a retry would
        // otherwise be refused as "not empty", and nobody must start on it).
        empty_dir(dir);
    }
    result
}

fn empty_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if let Err(err) = removed {
            tracing::warn!(path = %p.display(), error = %err, "cannot remove what a failed restore wrote");
        }
    }
}

async fn restore_into(
    catalog: &Catalog,
    backup: &BackupRecord,
    dir: &Path,
    recovery: &Recovery,
    owner: Option<RunAs>,
    started: Instant,
) -> Result<RestoreReport, RestoreError> {
    let backup_dir = catalog.backup_dir(&backup.id);
    let parts: Vec<(String, crate::catalog::Part)> = backup
        .parts
        .iter()
        .map(|p| (format!("{backup_dir}/{}", p.name), p.clone()))
        .collect();
    let paths: Vec<String> = parts.iter().map(|(p, _)| p.clone()).collect();
    // Every file is checked as it is written: against the server's backup_manifest
    // (read and authenticated first), or an older record's own list.
    let (sums, manifest) = filesums::for_backup(catalog, backup)
        .await
        .map_err(|e| match e {
            filesums::SumsError::Repo(e) => RestoreError::Repo(e),
            filesums::SumsError::Corrupt { object, source } => {
                RestoreError::Corrupt { object, source }
            }
            filesums::SumsError::Manifest(m) => RestoreError::Tar(m),
        })?;
    let (tx, rx) = mpsc::channel(fetch::CHANNEL_CAPACITY);
    let parts_reader = fetch::PartsReader::new(catalog.key.clone(), parts, rx);
    let download_wait = parts_reader.waited.clone();
    let reader = fetch::decode_ahead(parts_reader).map_err(io_err(dir))?;
    let target_dir = dir.to_path_buf();
    let extractor = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let result = extract::extract_checked(reader, &target_dir, sums);
        (result, t.elapsed())
    });
    let download = fetch::send_parts(&catalog.repo, &paths, tx).await;
    let (extracted, extract_elapsed) = extractor
        .await
        .map_err(|e| RestoreError::Tar(format!("extractor failed: {e}")))?;
    // A download failure explains an extraction failure ("the download stopped").
    let (fetch_wait, stored_bytes) = download?;
    let (extracted, _) = extracted?;
    let waited = Duration::from_nanos(download_wait.load(std::sync::atomic::Ordering::Relaxed));

    if let (false, Some(plain)) = (extracted.had_manifest, &manifest) {
        let dest = dir.join(MANIFEST);
        std::fs::write(&dest, plain).map_err(io_err(&dest))?;
    } else if !extracted.had_manifest {
        let path = format!("{backup_dir}/{MANIFEST}");
        match catalog.repo.get(&path).await {
            Ok(sealed) => {
                let (plain, _) =
                    codec::open_bytes(&catalog.key, &path, &sealed).map_err(|source| {
                        RestoreError::Corrupt {
                            object: path.clone(),
                            source,
                        }
                    })?;
                let dest = dir.join(MANIFEST);
                std::fs::write(&dest, plain).map_err(io_err(&dest))?;
            }
            Err(RepoError::NotFound { .. }) => {
                tracing::warn!(backup = %backup.id, "the backup has no backup_manifest; pg_verifybackup cannot check this restore");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // pg_basebackup leaves WAL to the archive; PostgreSQL needs the directories.
    for d in ["pg_wal", "pg_wal/archive_status"] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).map_err(io_err(&p))?;
    }
    recovery::configure(dir, recovery).map_err(io_err(dir))?;
    // Walking and syncing a large directory blocks: not on the async workers (the
    // agent's HA loop shares them during a bootstrap or a drill).
    let finish_dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if let Some(o) = owner {
            chown_tree(&finish_dir, o)?;
        }
        sync_tree(&finish_dir)
    })
    .await
    .map_err(|e| RestoreError::Tar(format!("finishing the directory: {e}")))??;
    let report = RestoreReport {
        backup_id: backup.id.clone(),
        dir: dir.to_path_buf(),
        target: recovery.target.describe(),
        files: extracted.files,
        bytes: extracted.bytes,
        stored_bytes,
        fetch_seconds: fetch_wait.as_secs_f64(),
        extract_seconds: extract_elapsed.saturating_sub(waited).as_secs_f64(),
        total_seconds: started.elapsed().as_secs_f64(),
        unchecked_files: extracted.unchecked,
    };
    if !report.unchecked_files.is_empty() {
        tracing::warn!(files = ?report.unchecked_files, "restored files the backup recorded no checksum for");
    }
    tracing::info!(backup = %backup.id, dir = %dir.display(), bytes = report.bytes, seconds = report.total_seconds, "restored");
    Ok(report)
}

fn chown_tree(dir: &Path, o: RunAs) -> Result<(), RestoreError> {
    std::os::unix::fs::lchown(dir, Some(o.uid), Some(o.gid)).map_err(io_err(dir))?;
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io_err(&path))?;
        if ft.is_dir() {
            chown_tree(&path, o)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(o.uid), Some(o.gid)).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// One `syncfs` of the filesystem holding `dir`: the restore is durable before
/// anything starts on it (cheaper than an fsync per file).
fn sync_tree(dir: &Path) -> Result<(), RestoreError> {
    let f = std::fs::File::open(dir).map_err(io_err(dir))?;
    nix::unistd::syncfs(&f).map_err(|e| io_err(dir)(std::io::Error::from(e)))
}

#[cfg(test)]
mod tests;
