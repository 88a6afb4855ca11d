//! Unpacks pg_basebackup's tar stream into the data directory, checking every regular
//! file against the size and checksum the backup has for it (`base::filesums`).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::fetch::unwrap_io;
use super::RestoreError;
use crate::base::filesums::{Algorithm, FileHasher, FileSums};
use crate::catalog::FileSum;

/// What the extraction wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub files: u64,
    pub bytes: u64,
    /// Regular files the record had no checksum for (written, with a warning).
    pub unchecked: Vec<String>,
    /// Whether the tar carried `backup_manifest` (pg_basebackup injects it when it
    /// writes a tar to stdout).
    pub had_manifest: bool,
}

/// A tar member's path as the record names it: relative, without `./`.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_owned()),
            Component::CurDir => {}
            // `..`, `/`: never write outside the target directory.
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// [`extract_checked`] against a record's SHA-256 list.
pub fn extract<R: Read>(
    reader: R,
    dir: &Path,
    files: &[FileSum],
) -> Result<(Extracted, R), RestoreError> {
    extract_checked(reader, dir, FileSums::from_record(files))
}

/// Extracts `reader` (a tar stream) into `dir`, which must exist, checking every
/// regular file against `sums`. Reads `reader` to its end, so every part's digest is
/// checked even after the tar's end marker.
pub fn extract_checked<R: Read>(
    reader: R,
    dir: &Path,
    sums: FileSums,
) -> Result<(Extracted, R), RestoreError> {
    let FileSums {
        files: mut expected,
        exempt,
    } = sums;
    let mut out = Extracted::default();
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| unwrap_io(e, dir))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unwrap_io(e, dir))?;
        let raw = entry.path().map_err(|e| unwrap_io(e, dir))?;
        let raw = raw.to_string_lossy().into_owned();
        let Some(rel) = normalize(&raw) else {
            if raw.trim_start_matches("./").is_empty() {
                continue; // the archive's root `./`
            }
            return Err(RestoreError::Tar(format!(
                "refusing a tar member outside the data directory: {raw:?}"
            )));
        };
        let dest = dir.join(&rel);
        // No setuid, setgid or sticky bit, nothing for others: a restored data
        // directory is PostgreSQL's alone (group read survives, for
        // `data_directory_mode` 0750 clusters).
        let mode = entry.header().mode().unwrap_or(0o600) & 0o750;
        let kind = entry.header().entry_type();
        if is_below_tablespace_link(&rel) && kind != tar::EntryType::Symlink {
            // pg_basebackup sends a tablespace's contents in a tar of its own; a
            // member below `pg_tblspc/<oid>/` would be written through that link.
            return Err(RestoreError::Tar(format!(
                "refusing a tar member below a tablespace link: {rel:?}"
            )));
        }
        match kind {
            tar::EntryType::Directory => {
                fs::create_dir_all(&dest).map_err(|e| io_err(&dest, e))?;
                set_mode(&dest, 0o700)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
                }
                let want = expected.remove(&rel);
                let algorithm = want.as_ref().map_or(Algorithm::None, |w| w.algorithm);
                let (size, digest) = write_file(&mut entry, &dest, algorithm)?;
                set_mode(&dest, mode)?;
                out.files += 1;
                out.bytes += size;
                if rel == "backup_manifest" {
                    out.had_manifest = true;
                }
                match want {
                    Some(want) if want.mismatch(size, &digest).is_some() => {
                        let (expected, got) = if want.size == size {
                            (
                                format!("{} {}", want.algorithm.name(), want.checksum),
                                digest,
                            )
                        } else {
                            (format!("{} bytes", want.size), format!("{size} bytes"))
                        };
                        return Err(RestoreError::FileChecksum {
                            path: rel,
                            expected,
                            got,
                        });
                    }
                    Some(_) => {}
                    None if exempt.contains(&rel) => {}
                    None => out.unchecked.push(rel),
                }
            }
            tar::EntryType::Symlink => {
                // PostgreSQL's only links are the tablespaces' `pg_tblspc/<oid>`; a link
                // anywhere else could send later members (or PostgreSQL) outside the
                // data directory.
                if !is_tablespace_link(&rel) {
                    return Err(RestoreError::Tar(format!(
                        "refusing a symbolic link outside pg_tblspc: {rel:?}"
                    )));
                }
                let target = entry
                    .link_name()
                    .map_err(|e| unwrap_io(e, dir))?
                    .ok_or_else(|| RestoreError::Tar(format!("symlink {rel} has no target")))?;
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
                }
                std::os::unix::fs::symlink(&target, &dest).map_err(|e| io_err(&dest, e))?;
            }
            other => {
                tracing::warn!(path = %rel, kind = ?other, "skipping an unexpected tar member");
            }
        }
    }
    if !expected.is_empty() {
        let missing: Vec<String> = expected.into_keys().collect();
        return Err(RestoreError::MissingFiles(missing));
    }
    let mut reader = archive.into_inner();
    io::copy(&mut reader, &mut io::sink()).map_err(|e| unwrap_io(e, dir))?;
    Ok((out, reader))
}

/// `pg_tblspc/<oid>`: where PostgreSQL keeps its tablespace links.
fn is_tablespace_link(rel: &str) -> bool {
    rel.strip_prefix("pg_tblspc/")
        .is_some_and(|oid| !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()))
}

/// Below `pg_tblspc/<oid>/`.
fn is_below_tablespace_link(rel: &str) -> bool {
    rel.strip_prefix("pg_tblspc/")
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(oid, _)| !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()))
}

fn io_err(path: &Path, source: io::Error) -> RestoreError {
    RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), RestoreError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
}

/// Copies one member into a new file, hashing it on the way.
fn write_file<R: Read>(
    src: &mut R,
    dest: &PathBuf,
    algorithm: Algorithm,
) -> Result<(u64, String), RestoreError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| io_err(dest, e))?;
    let mut hasher = FileHasher::new(algorithm);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(|e| unwrap_io(e, dest))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| io_err(dest, e))?;
        size += n as u64;
    }
    // Durability comes from the sync of the whole directory at the end of the restore.
    Ok((size, hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o700);
        dir.set_size(0);
        b.append_data(&mut dir, "global", io::empty()).unwrap();
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o600);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn sum(path: &str, data: &[u8]) -> FileSum {
        FileSum {
            path: path.into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        }
    }

    fn tar_with(members: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, mode) in members {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(if *kind == tar::EntryType::Regular {
                2
            } else {
                0
            });
            if *kind == tar::EntryType::Symlink {
                h.set_link_name(link).unwrap();
            }
            h.set_path(name).unwrap();
            h.set_cksum();
            let data: &[u8] = if *kind == tar::EntryType::Regular {
                b"ok"
            } else {
                b""
            };
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn links_outside_pg_tblspc_and_special_bits_are_refused() {
        use tar::EntryType::{Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        // A link that would redirect a later member, then that member.
        let evil = tar_with(&[
            ("base", Symlink, "/etc", 0o777),
            ("base/x", Regular, "", 0o600),
        ]);
        let e = extract(&evil[..], dir.path(), &[]).unwrap_err();
        assert!(e.to_string().contains("outside pg_tblspc"), "{e}");
        assert!(!dir.path().join("base").exists());
        // A member below a tablespace link.
        let dir = tempfile::tempdir().unwrap();
        let below = tar_with(&[
            ("pg_tblspc/16384", Symlink, "/srv/ts", 0o777),
            ("pg_tblspc/16384/PG_15/x", Regular, "", 0o600),
        ]);
        let e = extract(&below[..], dir.path(), &[]).unwrap_err();
        assert!(e.to_string().contains("below a tablespace link"), "{e}");
        // A tablespace link alone is fine; setuid and world bits are dropped.
        let dir = tempfile::tempdir().unwrap();
        let fine = tar_with(&[
            ("pg_tblspc/16384", Symlink, "/srv/ts", 0o777),
            ("PG_VERSION", Regular, "", 0o4777),
        ]);
        extract(&fine[..], dir.path(), &[]).unwrap();
        let mode = std::fs::metadata(dir.path().join("PG_VERSION"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o750);
        assert!(
            std::fs::symlink_metadata(dir.path().join("pg_tblspc/16384"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(normalize("./base/1/123").as_deref(), Some("base/1/123"));
        assert_eq!(
            normalize("global/pg_control").as_deref(),
            Some("global/pg_control")
        );
        assert_eq!(normalize("../etc/passwd"), None);
        assert_eq!(normalize("/etc/passwd"), None);
        assert_eq!(normalize("./"), None);
    }

    #[test]
    fn extracts_and_checks_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("PG_VERSION", b"15\n"), ("global/pg_control", b"ctl")]);
        let files = vec![sum("PG_VERSION", b"15\n"), sum("global/pg_control", b"ctl")];
        let (out, _) = extract(&tar[..], dir.path(), &files).unwrap();
        assert_eq!(out.files, 2);
        assert_eq!(out.bytes, 6);
        assert!(out.unchecked.is_empty());
        assert_eq!(
            fs::read(dir.path().join("global/pg_control")).unwrap(),
            b"ctl"
        );
        let mode = fs::metadata(dir.path().join("PG_VERSION"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("PG_VERSION", b"16\n")]);
        let files = vec![sum("PG_VERSION", b"15\n")];
        let e = extract(&tar[..], dir.path(), &files).unwrap_err();
        assert!(
            matches!(e, RestoreError::FileChecksum { ref path, .. } if path == "PG_VERSION"),
            "{e}"
        );
    }

    #[test]
    fn manifest_sums_catch_a_flipped_byte() {
        let good: &[u8] = b"0123456789";
        let m = crate::base::filesums::tests::manifest_of(&[
            ("PG_VERSION", b"15\n"),
            ("base/1/2", good),
        ]);
        let sums = FileSums::from_manifest(&m).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            ("PG_VERSION", b"15\n"),
            ("base/1/2", good),
            ("backup_manifest", &m),
        ]);
        let (out, _) = extract_checked(&tar[..], dir.path(), sums.clone()).unwrap();
        assert!(out.unchecked.is_empty(), "{:?}", out.unchecked);
        assert!(out.had_manifest);
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("PG_VERSION", b"15\n"), ("base/1/2", b"0123456788")]);
        let e = extract_checked(&tar[..], dir.path(), sums).unwrap_err();
        assert!(
            matches!(e, RestoreError::FileChecksum { ref path, .. } if path == "base/1/2"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("PG_VERSION", b"15\n")]);
        let files = vec![sum("PG_VERSION", b"15\n"), sum("global/pg_control", b"x")];
        let e = extract(&tar[..], dir.path(), &files).unwrap_err();
        assert!(e.to_string().contains("global/pg_control"), "{e}");
    }
}
