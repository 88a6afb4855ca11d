//! Which OS user PostgreSQL runs as.
//!
//! PostgreSQL refuses to run as root. When the agent itself runs as root (common in
//! containers and in CI), every PostgreSQL command runs as the owner of the data
//! directory, or of its nearest existing parent before the first initdb/clone.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    #[error("postgresql.data_dir: no existing directory found at or above {0}")]
    NoDirectory(PathBuf),
    #[error(
        "postgresql.data_dir: {0} is owned by root and PostgreSQL refuses to run as root; \
         chown it (or its parent, before the first start) to the user PostgreSQL should run as"
    )]
    OwnedByRoot(PathBuf),
}

/// `None` when the agent is not root: PostgreSQL then runs as the agent's own user.
pub fn resolve(data_dir: &Path) -> Result<Option<RunAs>, RunAsError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let mut dir = Some(data_dir);
    while let Some(d) = dir {
        if let Ok(meta) = std::fs::metadata(d) {
            if meta.uid() == 0 {
                return Err(RunAsError::OwnedByRoot(d.to_path_buf()));
            }
            return Ok(Some(RunAs {
                uid: meta.uid(),
                gid: meta.gid(),
            }));
        }
        dir = d.parent();
    }
    Err(RunAsError::NoDirectory(data_dir.to_path_buf()))
}

/// Hands a file the agent wrote (as root) to the PostgreSQL user.
pub fn chown(path: &Path, run_as: Option<RunAs>) -> std::io::Result<()> {
    if let Some(r) = run_as {
        std::os::unix::fs::chown(path, Some(r.uid), Some(r.gid))?;
    }
    Ok(())
}
