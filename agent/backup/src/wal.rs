//! WAL push (`archive_command`) and fetch (`restore_command`) against a repository.
//!
//! Push follows PostgreSQL's archiver contract: success only after the object is
//! durably stored; never overwrite; an existing object with identical content is
//! success (PostgreSQL re-archives after a crash), different content is a hard error
//! (two primaries, or corruption), which PostgreSQL keeps retrying so it gets noticed.
//!
//! Fetch writes to a temporary file next to the destination, fsyncs it, and renames
//! it into place only once the whole object authenticated: a partial or forged segment
//! never reaches `pg_wal`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::codec::{self, CodecError, Digest32};
use super::key::EncryptionKey;
use super::layout::{BadWalName, Layout, WalKind, WalName};
use super::repo::{RepoError, Repository};

/// What a push needs besides the file.
#[derive(Debug, Clone)]
pub struct Archive {
    pub repo: Repository,
    pub layout: Layout,
    pub key: EncryptionKey,
    pub compression_level: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Stored,
    /// The same content was already archived under that name.
    AlreadyArchived,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    BadName(#[from] BadWalName),
    #[error("cannot read {}: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Split brain or corruption: never overwritten.
    #[error("{name}: already archived with DIFFERENT content (checksum {existing} in the repository, {local} here); refusing to overwrite: two primaries archiving, or a corrupt segment")]
    Conflict {
        name: String,
        existing: String,
        local: String,
    },
    #[error("{name}: the archived copy cannot be read back ({source}); not overwriting it")]
    ExistingCorrupt {
        name: String,
        #[source]
        source: CodecError,
    },
    #[error("{name}: sealing failed: {source}")]
    Seal {
        name: String,
        #[source]
        source: CodecError,
    },
    #[error("{name}: {source}")]
    Repo {
        name: String,
        #[source]
        source: RepoError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    BadName(#[from] BadWalName),
    #[error("{name}: not in the repository")]
    NotFound { name: String },
    /// The stored object is damaged, forged, moved or sealed with another key.
    #[error("{name}: the archived object is corrupt or was tampered with: {source}")]
    Corrupt {
        name: String,
        #[source]
        source: CodecError,
    },
    #[error("{name}: {source}")]
    Repo {
        name: String,
        #[source]
        source: RepoError,
    },
    /// The live copy is older than one already restored into the same directory: an
    /// older sealed version was put back over the newer one (see `wal_live`).
    #[error("{name}: the live copy in the repository (sequence {found}) is older than the one already restored here (sequence {seen}); an older version was put back in place, refusing it")]
    LiveRolledBack { name: String, seen: u64, found: u64 },
    #[error("{name}: cannot write {}: {source}", path.display())]
    Local {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file name part of PostgreSQL's `%p` (`pg_wal/000000010000000000000003`).
pub fn name_of(path: &Path) -> Result<WalName, BadWalName> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BadWalName(path.display().to_string()))?;
    WalName::parse(name)
}

fn sha256_file(path: &Path) -> std::io::Result<Digest32> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; codec::CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

impl Archive {
    /// Archives the file at `path` (PostgreSQL's `%p`) under its own name.
    pub async fn push(&self, path: &Path) -> Result<Pushed, PushError> {
        let name = name_of(path)?;
        let object = self.layout.wal(&name);
        let repo_err = |source| PushError::Repo {
            name: name.to_string(),
            source,
        };
        let local = |source| PushError::Local {
            path: path.to_owned(),
            source,
        };
        if self.repo.exists(&object).await.map_err(repo_err)? {
            let local_digest = sha256_file(path).map_err(local)?;
            return self.compare_existing(&name, &object, local_digest).await;
        }
        let mut file = std::fs::File::open(path).map_err(local)?;
        let seal_err = |source| PushError::Seal {
            name: name.to_string(),
            source,
        };
        let mut sealer = codec::seal(&self.key, self.compression_level, &object, Vec::new())
            .map_err(seal_err)?;
        std::io::copy(&mut file, &mut sealer).map_err(|e| match CodecError::from_io(e) {
            CodecError::Io(source) => local(source),
            other => seal_err(other),
        })?;
        let (sealed, info) = sealer.finish().map_err(seal_err)?;
        let created = self
            .repo
            .put_if_absent(&object, Bytes::from(sealed))
            .await
            .map_err(repo_err)?;
        if !created {
            // Another writer stored it between our check and our PUT.
            let local_digest = info.digest;
            return self.compare_existing(&name, &object, local_digest).await;
        }
        tracing::info!(
            segment = %name,
            bytes = info.len,
            repository = self.repo.url(),
            "archived"
        );
        Ok(Pushed::Stored)
    }

    async fn compare_existing(
        &self,
        name: &WalName,
        object: &str,
        local: Digest32,
    ) -> Result<Pushed, PushError> {
        let sealed = self
            .repo
            .get(object)
            .await
            .map_err(|source| PushError::Repo {
                name: name.to_string(),
                source,
            })?;
        let existing = existing_digest(&self.key, object, &sealed).map_err(|source| {
            PushError::ExistingCorrupt {
                name: name.to_string(),
                source,
            }
        })?;
        if existing == local {
            tracing::warn!(
                segment = %name,
                "already archived with identical content; nothing to do"
            );
            Ok(Pushed::AlreadyArchived)
        } else {
            Err(PushError::Conflict {
                name: name.to_string(),
                existing: hex::encode(existing),
                local: hex::encode(local),
            })
        }
    }

    /// Restores the archived file `name` (PostgreSQL's `%f`) to `dest` (`%p`).
    pub async fn fetch(&self, name: &str, dest: &Path) -> Result<(), FetchError> {
        let name = WalName::parse(name)?;
        let (object, sealed, live) = self.find(&name).await?;
        let local = |path: &Path, source| FetchError::Local {
            name: name.to_string(),
            path: path.to_owned(),
            source,
        };
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".warden-fetch-")
            .tempfile_in(dir)
            .map_err(|e| local(dir, e))?;
        let copied = codec::open(&self.key, &object, &sealed[..]).and_then(|mut opener| {
            std::io::copy(&mut opener, tmp.as_file_mut()).map_err(CodecError::from_io)?;
            // Authenticated now that the whole object was read. A version 1 live
            // copy has no sequence: older than any version 2 one.
            Ok(opener.sequence().unwrap_or(0))
        });
        let sequence = match copied {
            Ok(sequence) => sequence,
            Err(CodecError::Io(e)) => return Err(local(tmp.path(), e)),
            Err(source) => {
                return Err(FetchError::Corrupt {
                    name: name.to_string(),
                    source,
                })
            }
        };
        if live {
            if let Some(seen) = super::wal_live::rolled_back(dir, &name, sequence) {
                return Err(FetchError::LiveRolledBack {
                    name: name.to_string(),
                    seen,
                    found: sequence,
                });
            }
        }
        tmp.as_file_mut()
            .flush()
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| local(tmp.path(), e))?;
        tmp.persist(dest).map_err(|e| local(dest, e.error))?;
        // The rename is durable only once the directory is.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| local(dir, e))?;
        if live {
            super::wal_live::record_seen(dir, &name, sequence);
        }
        tracing::debug!(segment = %name, "restored from the repository");
        Ok(())
    }
}

impl Archive {
    /// The archived object for `name`; for a segment not archived yet, the archiver's
    /// live copy of it (see `wal_live`), so a restore reaches the newest WAL. True
    /// when it is the live copy.
    async fn find(&self, name: &WalName) -> Result<(String, Bytes, bool), FetchError> {
        let mut candidates = vec![self.layout.wal(name)];
        if name.kind == WalKind::Segment {
            candidates.push(self.layout.wal_live(name));
        }
        for (i, object) in candidates.iter().enumerate() {
            match self.repo.get(object).await {
                Ok(b) => {
                    if i > 0 {
                        tracing::info!(segment = %name, "serving the archiver's live partial copy");
                    }
                    return Ok((object.clone(), b, i > 0));
                }
                Err(RepoError::NotFound { .. }) => {}
                Err(source) => {
                    return Err(FetchError::Repo {
                        name: name.to_string(),
                        source,
                    })
                }
            }
        }
        Err(FetchError::NotFound {
            name: name.to_string(),
        })
    }
}

/// Authenticates a whole existing object and returns its sealed checksum.
fn existing_digest(
    key: &EncryptionKey,
    object: &str,
    sealed: &[u8],
) -> Result<Digest32, CodecError> {
    let mut opener = codec::open(key, object, sealed)?;
    std::io::copy(&mut opener, &mut std::io::sink()).map_err(CodecError::from_io)?;
    opener.digest().ok_or(CodecError::Truncated)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;
    use warden_config::{RepositoryConfig, RepositoryKind};

    const SEG: &str = "000000010000000000000003";

    /// An archive over a filesystem repository in `dir/repo` with a fixed test key
    /// (also the live-copy tests').
    pub(crate) fn archive(dir: &Path) -> Archive {
        let repo = Repository::open(&RepositoryConfig {
            kind: RepositoryKind::Filesystem {
                path: dir.join("repo"),
            },
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        Archive {
            repo,
            layout: Layout::new("demo", 42),
            key: EncryptionKey::parse(
                "8f3a1c9e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f13",
                "test",
            )
            .unwrap(),
            compression_level: 3,
        }
    }

    #[tokio::test]
    async fn push_fetch_duplicate_conflict_tamper_missing() {
        let dir = tempfile::tempdir().unwrap();
        let a = archive(dir.path());
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir(&wal).unwrap();
        let seg = wal.join(SEG);
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&seg, &content).unwrap();

        assert_eq!(a.push(&seg).await.unwrap(), Pushed::Stored);
        assert_eq!(a.push(&seg).await.unwrap(), Pushed::AlreadyArchived);

        let dest = wal.join("RECOVERYXLOG");
        a.fetch(SEG, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), content);

        std::fs::write(&seg, b"other content").unwrap();
        let e = a.push(&seg).await.unwrap_err();
        assert!(matches!(e, PushError::Conflict { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{SEG}: already archived with DIFFERENT content")),
            "{e}"
        );

        let missing = a
            .fetch("000000010000000000000009", &dest)
            .await
            .unwrap_err();
        assert!(matches!(missing, FetchError::NotFound { .. }), "{missing}");

        let stored = dir.path().join("repo/demo/42/wal/00000001").join(SEG);
        let mut bytes = std::fs::read(&stored).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&stored, bytes).unwrap();
        std::fs::remove_file(&dest).unwrap();
        let e = a.fetch(SEG, &dest).await.unwrap_err();
        assert!(matches!(e, FetchError::Corrupt { .. }), "{e}");
        assert!(!dest.exists(), "a corrupt object must not reach pg_wal");
        let leftovers: Vec<_> = std::fs::read_dir(&wal).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the segment itself, no temp file");
        let e = a.push(&seg).await.unwrap_err();
        assert!(matches!(e, PushError::ExistingCorrupt { .. }), "{e}");
    }

    #[tokio::test]
    async fn history_partial_and_backup_files_round_trip_and_other_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = archive(dir.path());
        for name in [
            "00000002.history",
            "000000010000000000000004.partial",
            "000000010000000000000002.00000028.backup",
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("contents of {name}")).unwrap();
            assert_eq!(a.push(&path).await.unwrap(), Pushed::Stored, "{name}");
            let dest = dir.path().join("restored");
            a.fetch(name, &dest).await.unwrap();
            assert_eq!(
                std::fs::read_to_string(&dest).unwrap(),
                format!("contents of {name}")
            );
        }
        assert!(dir
            .path()
            .join("repo/demo/42/wal/00000002/00000002.history")
            .is_file());
        let odd = dir.path().join("postmaster.pid");
        std::fs::write(&odd, "1").unwrap();
        assert!(matches!(a.push(&odd).await, Err(PushError::BadName(_))));
    }
}
