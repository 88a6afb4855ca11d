//! Per-test directories, and the ownership PostgreSQL needs.
//!
//! Tests run as root, PostgreSQL refuses to, and the agent runs PostgreSQL as
//! the owner of the data directory (or of its nearest existing parent). So
//! when we are root, each node directory is created owned by `postgres`, and
//! every directory above it must be traversable by that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::unistd::{chown, Gid, Uid, User};

/// Set to keep test directories (logs, data dirs) after a run, for debugging.
pub const KEEP_ENV: &str = "WARDEN_KEEP_TEST_DIRS";

/// The uid/gid PostgreSQL must run as: `postgres` when we are root, `None`
/// (keep our own user) otherwise.
pub fn postgres_owner() -> Result<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .context("looking up the postgres user")?
        .context("running as root needs a `postgres` OS user (install postgresql) to own the data directories")?;
    Ok(Some((user.uid, user.gid)))
}

/// Create `path` (and parents) for a node; when root, hand it to `postgres`.
pub fn create_node_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))?;
    chown_to_postgres(path)
}

/// Give `path` to the `postgres` user when we are root (no-op otherwise).
pub fn chown_to_postgres(path: &Path) -> Result<()> {
    if let Some((uid, gid)) = postgres_owner()? {
        chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown postgres {}", path.display()))?;
    }
    Ok(())
}

/// A directory for one test (or one demo run) holding every process's files.
///
/// A temporary one is removed on drop unless [`KEEP_ENV`] is set; a fixed one
/// (the demo's) is kept so its logs can be read after the run.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl WorkDir {
    /// A fresh directory under the system temp dir, traversable by the
    /// `postgres` user (mode 0755; tempfile creates 0700).
    pub fn temp() -> Result<WorkDir> {
        let t = tempfile::Builder::new()
            .prefix("warden-test-")
            .tempdir()
            .context("creating a temp dir")?;
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755))
            .context("chmod temp dir")?;
        let path = t.path().to_path_buf();
        let keep = std::env::var_os(KEEP_ENV).is_some();
        let temp = if keep {
            // Leak the directory on purpose: the developer asked to keep it.
            eprintln!("warden-tests: keeping {}", path.display());
            let _ = t.keep();
            None
        } else {
            Some(t)
        };
        Ok(WorkDir { path, temp })
    }

    /// Use an existing or new fixed directory; never removed by the kit.
    pub fn fixed(path: &Path) -> Result<WorkDir> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", path.display()))?;
        Ok(WorkDir {
            path: path.to_path_buf(),
            temp: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the directory is removed on drop.
    pub fn is_temporary(&self) -> bool {
        self.temp.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn temp_dir_is_traversable_and_removed() {
        let w = WorkDir::temp().unwrap();
        let p = w.path().to_path_buf();
        let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let node = p.join("node1");
        create_node_dir(&node).unwrap();
        if let Some((uid, _)) = postgres_owner().unwrap() {
            assert_eq!(std::fs::metadata(&node).unwrap().uid(), uid.as_raw());
        }
        if w.is_temporary() {
            drop(w);
            assert!(!p.exists());
        }
    }
}
