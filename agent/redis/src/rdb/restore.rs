//! A verified RDB placed as `dump.rdb` in a new data directory, ready for a
//! `redis-server --dir <dir> --dbfilename dump.rdb --appendonly no` (with `appendonly
//! yes` Redis would load the AOF instead and ignore the RDB).
//!
//! The bytes go to a temporary file in the directory while they are verified; only a
//! file that passed is synced, renamed to `dump.rdb` and the directory synced, so
//! `dump.rdb` is either absent or a complete, verified snapshot. A refused file leaves
//! nothing behind (the temporary file, and the directory when this restore created it,
//! are removed). Blocking I/O: from async code, run it on `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::verify::{RdbError, RdbSummary, RdbVerifier};

/// The file name Redis loads by default (`dbfilename`).
pub const DUMP_FILE: &str = "dump.rdb";
/// Where the bytes are written until they are verified.
const TEMP_FILE: &str = "dump.rdb.warden-restore";
/// Entries named in a refusal.
const SHOWN_ENTRIES: usize = 5;

#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Restore into a directory that already has files (an existing `dump.rdb` is
    /// replaced atomically; other files stay). Default: refuse, a restore goes into a
    /// new data directory.
    pub allow_non_empty: bool,
}

/// A restored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The `dump.rdb` written.
    pub path: PathBuf,
    pub summary: RdbSummary,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{dir} is not empty ({entries}); a restore goes into a new data directory")]
    TargetNotEmpty { dir: String, entries: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("the RDB is refused, nothing was restored: {0}")]
    Invalid(#[source] RdbError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RestoreError + 'a {
    move |source| RestoreError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// A `dump.rdb` being written: feed it the RDB's bytes, then [`commit`](Self::commit).
/// Dropped without a commit, it removes what it wrote.
#[derive(Debug)]
pub struct RestoreTarget {
    dir: PathBuf,
    temp: PathBuf,
    file: Option<File>,
    verifier: RdbVerifier,
    created_dir: bool,
    done: bool,
}

impl RestoreTarget {
    /// Prepares `data_dir` (created if absent, mode 0700) and the temporary file.
    pub fn create(data_dir: &Path, opts: RestoreOptions) -> Result<Self, RestoreError> {
        let temp = data_dir.join(TEMP_FILE);
        let created_dir = match fs::read_dir(data_dir) {
            Ok(entries) => {
                let names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // A leftover of an interrupted restore is ours to replace.
                    .filter(|n| n != TEMP_FILE)
                    .collect();
                if !names.is_empty() && !opts.allow_non_empty {
                    let mut shown = names[..names.len().min(SHOWN_ENTRIES)].join(", ");
                    if names.len() > SHOWN_ENTRIES {
                        shown.push_str(&format!(", and {} more", names.len() - SHOWN_ENTRIES));
                    }
                    return Err(RestoreError::TargetNotEmpty {
                        dir: data_dir.display().to_string(),
                        entries: shown,
                    });
                }
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(data_dir)
                    .map_err(io_err("creating", data_dir))?;
                true
            }
            Err(e) => return Err(io_err("reading", data_dir)(e)),
        };
        let mut target = Self {
            dir: data_dir.to_owned(),
            temp,
            file: None,
            verifier: RdbVerifier::new(),
            created_dir,
            done: false,
        };
        match fs::remove_file(&target.temp) {
            Ok(()) => {
                tracing::info!(path = %target.temp.display(), "removed the leftover of an interrupted restore")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &target.temp)(e)),
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target.temp)
            .map_err(io_err("creating", &target.temp))?;
        target.file = Some(file);
        Ok(target)
    }

    /// The next bytes of the RDB. A bad header is refused at once.
    pub fn put(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        self.verifier.update(data).map_err(RestoreError::Invalid)?;
        let file = self.file.as_mut().expect("open until commit");
        file.write_all(data).map_err(io_err("writing", &self.temp))
    }

    /// Verifies the whole RDB, then makes it `dump.rdb`, durably.
    pub fn commit(mut self) -> Result<Restored, RestoreError> {
        let summary = self
            .verifier
            .clone()
            .finish()
            .map_err(RestoreError::Invalid)?;
        let file = self.file.take().expect("open until commit");
        file.sync_all().map_err(io_err("syncing", &self.temp))?;
        drop(file);
        let path = self.dir.join(DUMP_FILE);
        fs::rename(&self.temp, &path).map_err(io_err("renaming into", &path))?;
        self.done = true;
        // The rename is durable once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", &self.dir))?;
        tracing::info!(path = %path.display(), bytes = summary.len, "RDB restored");
        Ok(Restored { path, summary })
    }
}

impl Drop for RestoreTarget {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.file = None;
        let _ = fs::remove_file(&self.temp);
        if self.created_dir {
            // Only if empty: nothing of anyone else's is removed.
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// `io::Write` for pipes such as the repository's decrypting reader; a refused RDB
/// surfaces as `InvalidData` (the verdict itself comes from [`RestoreTarget::commit`]
/// or [`RestoreTarget::put`]).
impl Write for RestoreTarget {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.put(data).map_err(|e| match e {
            RestoreError::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        })?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Restores the RDB `file` as `<data_dir>/dump.rdb`, verifying it on the way.
pub fn restore_rdb(
    file: &Path,
    data_dir: &Path,
    opts: RestoreOptions,
) -> Result<Restored, RestoreError> {
    let mut src = File::open(file).map_err(io_err("opening", file))?;
    let mut target = RestoreTarget::create(data_dir, opts)?;
    let mut buf = vec![0u8; super::fetch::CHUNK];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", file)(e)),
        };
        target.put(&buf[..n])?;
    }
    target.commit()
}
