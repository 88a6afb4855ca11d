//! The `files` base backup method (the default): PostgreSQL's low-level backup API
//! (`pg_backup_start` / `pg_backup_stop`, one session held open) around a direct copy
//! of the data directory, written as the same tar stream and the same
//! `backup_manifest` (PostgreSQL's format, CRC32C per file) that pg_basebackup would
//! produce, so restore, verify and `pg_verifybackup` treat both methods alike.
//!
//! Why not pg_basebackup: on a replica its bytes cross the walsender, a TCP socket,
//! pg_basebackup's buffers and a pipe before Warden sees them; measured on 2 cores
//! that costs more CPU than compressing them (docs/benchmarks.md). Reading the files
//! here costs one copy out of the page cache. The rules are PostgreSQL's own
//! (`basebackup.c`, and "Making a Base Backup Using the Low Level API"):
//!
//! - the contents of `pg_wal` and of the runtime directories are left out, and so
//!   are temporary files, temporary relations, the non-init forks of unlogged
//!   relations and the files a running server must not be restored with;
//! - a file that shrinks while it is read is padded with zeros to the size its tar
//!   header announced, one that grows is cut there: WAL replay from the backup's start
//!   repairs both, as it repairs torn pages;
//! - `global/pg_control` is copied last: a backup of a standby ends where that copy's
//!   `minRecoveryPoint` says, so it must be taken after every other file.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use warden_pg::lsn::Lsn;

use super::filesums::{Algorithm, FileHasher};
use super::pages::{self, PageCheck};
use super::tar_stream::Scanned;
use crate::catalog::MANIFEST;

const BLOCK: usize = 512;
/// Bytes read from a data file at a time.
const READ_SIZE: usize = 1024 * 1024;
const PG_CONTROL: &str = "global/pg_control";
const BACKUP_LABEL: &str = "backup_label";

/// Top-level directories whose contents a backup leaves out (recreated empty).
const EMPTY_DIRS: &[&str] = &[
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];
/// Files left out wherever they are.
const EXCLUDED_FILES: &[&str] = &[
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "backup_label",
    "tablespace_map",
    MANIFEST,
    "postmaster.pid",
    "postmaster.opts",
];
/// Files left out by prefix (the relation cache init file; temporary files).
const EXCLUDED_PREFIXES: &[&str] = &["pg_internal.init", "pgsql_tmp"];

/// One file as copied into the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub path: String,
    pub size: u64,
    pub mtime: i64,
    /// CRC32C as PostgreSQL's manifest writes it.
    pub crc32c: String,
}

/// Writes the tar stream of a data directory into a sink, counting bytes.
pub struct TarWriter<W: Write> {
    sink: W,
    /// Cancelled: the copy stops at the next read.
    stop: CancellationToken,
    counter: Arc<AtomicU64>,
    total: u64,
    files: Vec<Copied>,
    buf: Vec<u8>,
    /// Set when the cluster has data checksums: relation pages are checked.
    pages: Option<PageCheck>,
}

impl<W: Write> std::fmt::Debug for TarWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarWriter")
            .field("total", &self.total)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> TarWriter<W> {
    pub fn new(sink: W, counter: Arc<AtomicU64>, stop: CancellationToken) -> Self {
        Self {
            sink,
            stop,
            counter,
            total: 0,
            files: Vec::new(),
            buf: vec![0u8; READ_SIZE],
            pages: None,
        }
    }

    /// Checks every relation page older than `start` against its checksum (the
    /// cluster has `data_checksums` on).
    pub fn verify_pages(&mut self, start: Lsn) {
        self.pages = Some(PageCheck::new(start));
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sink.write_all(bytes)?;
        self.total += bytes.len() as u64;
        self.counter
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn header(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        size: u64,
        mode: u32,
        mtime: i64,
    ) -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).map_err(|e| {
            io::Error::other(format!("{path}: cannot be named in the tar stream: {e}"))
        })?;
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode & 0o7777);
        h.set_mtime(u64::try_from(mtime).unwrap_or(0));
        h.set_cksum();
        self.put(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn dir(&mut self, rel: &str, meta: &fs::Metadata) -> io::Result<()> {
        self.header(
            rel,
            tar::EntryType::Directory,
            0,
            meta.permissions().mode(),
            meta.mtime(),
        )
    }

    /// Copies one file as it is now. `Ok(false)`: it vanished before it was opened
    /// (a dropped relation, a finished temporary file): it is left out.
    fn file(&mut self, rel: &str, abs: &Path) -> io::Result<bool> {
        let mut f = match File::open(abs) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", abs.display()))),
        };
        let meta = f.metadata()?;
        let size = meta.len();
        self.header(
            rel,
            tar::EntryType::Regular,
            size,
            meta.permissions().mode(),
            meta.mtime(),
        )?;
        let mut hasher = FileHasher::new(Algorithm::Crc32c);
        let segment = self.pages.as_ref().and_then(|_| pages::is_checksummed(rel));
        let mut buf = std::mem::take(&mut self.buf);
        let copied = (|| {
            let mut pos = 0u64;
            while pos < size {
                if self.stop.is_cancelled() {
                    return Err(io::Error::other("the backup was cancelled"));
                }
                let want = usize::try_from(size - pos)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                // Whole chunks (short reads gathered), so pages stay aligned.
                let mut n = 0;
                while n < want {
                    match f.read(&mut buf[n..want]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return Err(io::Error::new(e.kind(), format!("{}: {e}", abs.display())))
                        }
                    }
                }
                if let (Some(check), Some(segment)) = (self.pages.as_mut(), segment) {
                    check.check(rel, segment, &f, pos, &buf[..n]);
                }
                // Truncated while read (vacuum): the header promised `size` bytes.
                buf[n..want].fill(0);
                hasher.update(&buf[..want]);
                self.put(&buf[..want])?;
                pos += want as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        copied?;
        self.pad(size)?;
        self.files.push(Copied {
            path: rel.to_owned(),
            size,
            mtime: meta.mtime(),
            crc32c: hasher.finish(),
        });
        Ok(true)
    }

    /// A file made here (backup_label, the manifest).
    fn bytes(&mut self, rel: &str, data: &[u8], listed: bool) -> io::Result<()> {
        let now = Utc::now().timestamp();
        self.header(rel, tar::EntryType::Regular, data.len() as u64, 0o600, now)?;
        self.put(data)?;
        self.pad(data.len() as u64)?;
        if listed {
            let mut h = FileHasher::new(Algorithm::Crc32c);
            h.update(data);
            self.files.push(Copied {
                path: rel.to_owned(),
                size: data.len() as u64,
                mtime: now,
                crc32c: h.finish(),
            });
        }
        Ok(())
    }
}

/// Copies every file of `data_dir` a backup holds into `w`, `global/pg_control` last.
/// Call between `pg_backup_start` and `pg_backup_stop`.
pub fn copy_data_dir<W: Write>(data_dir: &Path, w: &mut TarWriter<W>) -> io::Result<()> {
    walk(data_dir, "", w)?;
    if !w.file(PG_CONTROL, &data_dir.join(PG_CONTROL))? {
        return Err(io::Error::other(format!(
            "{} is missing: this is not a data directory",
            data_dir.join(PG_CONTROL).display()
        )));
    }
    if let Some(check) = &w.pages {
        check.verdict().map_err(io::Error::other)?;
        tracing::debug!(pages = check.checked, "data page checksums verified");
    }
    Ok(())
}

fn walk<W: Write>(root: &Path, rel: &str, w: &mut TarWriter<W>) -> io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<String> = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        // A database dropped while we walk.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.is_empty() => return Ok(()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    for e in entries {
        let e = e?;
        match e.file_name().into_string() {
            Ok(n) => names.push(n),
            Err(n) => {
                return Err(io::Error::other(format!(
                    "{}: a file name that is not UTF-8 ({n:?})",
                    dir.display()
                )))
            }
        }
    }
    names.sort();
    let db_dir = is_database_dir(rel);
    let unlogged = if db_dir {
        unlogged_relations(&names)
    } else {
        HashSet::new()
    };
    for name in names {
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if child == PG_CONTROL
            || excluded_file(&name)
            || (db_dir && excluded_relation(&name, &unlogged))
        {
            continue;
        }
        let abs = root.join(&child);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", abs.display()))),
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            // pg_wal may live elsewhere (initdb --waldir); its contents are left out
            // anyway. Tablespaces are refused before the backup starts.
            if child == "pg_wal" {
                let target = fs::metadata(&abs)?;
                w.dir(&child, &target)?;
                w.dir("pg_wal/archive_status", &target)?;
                continue;
            }
            return Err(io::Error::other(format!(
                "{} is a symbolic link; Warden backs up a data directory whose only link is \
                 pg_wal (set backup.base_method: pg_basebackup to let PostgreSQL decide)",
                abs.display()
            )));
        }
        if ft.is_dir() {
            w.dir(&child, &meta)?;
            if child == "pg_wal" {
                // Empty, but its archive_status directory must exist for recovery.
                let status = abs.join("archive_status");
                let m = fs::metadata(&status).unwrap_or(meta);
                w.dir("pg_wal/archive_status", &m)?;
            } else if !EMPTY_DIRS.contains(&child.as_str()) {
                walk(root, &child, w)?;
            }
        } else if ft.is_file() {
            w.file(&child, &abs)?;
        } else {
            tracing::warn!(path = %abs.display(), "skipping a special file in the data directory");
        }
    }
    Ok(())
}

fn excluded_file(name: &str) -> bool {
    EXCLUDED_FILES.contains(&name) || EXCLUDED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `base/<oid>`: a database's relation files.
fn is_database_dir(rel: &str) -> bool {
    rel.strip_prefix("base/")
        .is_some_and(|oid| !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()))
}

/// A relation file name: `<relfilenode>[_fork][.segment]`, as (relfilenode, fork).
fn relation_name(name: &str) -> Option<(&str, &str)> {
    let base = name.split_once('.').map_or(name, |(b, seg)| {
        if !seg.is_empty() && seg.bytes().all(|c| c.is_ascii_digit()) {
            b
        } else {
            ""
        }
    });
    let (node, fork) = base.split_once('_').unwrap_or((base, ""));
    (!node.is_empty() && node.bytes().all(|b| b.is_ascii_digit())).then_some((node, fork))
}

/// Relfilenodes with an init fork: unlogged relations.
fn unlogged_relations(names: &[String]) -> HashSet<String> {
    names
        .iter()
        .filter_map(|n| relation_name(n))
        .filter(|(_, fork)| *fork == "init")
        .map(|(node, _)| node.to_owned())
        .collect()
}

/// Temporary relations (`t<backend>_<relfilenode>...`) and every fork but the init
/// fork of unlogged relations: a restored server resets both.
fn excluded_relation(name: &str, unlogged: &HashSet<String>) -> bool {
    if let Some(rest) = name.strip_prefix('t') {
        if let Some((backend, rel)) = rest.split_once('_') {
            if !backend.is_empty()
                && backend.bytes().all(|b| b.is_ascii_digit())
                && relation_name(rel).is_some()
            {
                return true;
            }
        }
    }
    matches!(relation_name(name), Some((node, fork)) if fork != "init" && unlogged.contains(node))
}

/// The backup's WAL range, for the manifest.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub timeline: u32,
    pub start: Lsn,
    pub end: Lsn,
}

/// Ends the stream: `backup_label` (from `pg_backup_stop`), then the manifest, then
/// the end-of-archive blocks. Returns what the stream held and the sink.
pub fn finish<W: Write>(
    mut w: TarWriter<W>,
    label: &str,
    range: Range,
) -> io::Result<(Scanned, W)> {
    w.bytes(BACKUP_LABEL, label.as_bytes(), true)?;
    let manifest = manifest(&w.files, range);
    w.bytes(MANIFEST, &manifest, false)?;
    w.put(&[0u8; 2 * BLOCK])?;
    let mut files: Vec<(String, u64)> = w.files.iter().map(|f| (f.path.clone(), f.size)).collect();
    files.push((MANIFEST.to_owned(), manifest.len() as u64));
    Ok((
        Scanned {
            files,
            manifest: Some(manifest),
            backup_label: Some(label.to_owned()),
            size: w.total,
        },
        w.sink,
    ))
}

/// A `backup_manifest` as PostgreSQL 15 writes it: one file per line, the WAL range,
/// and the SHA-256 of everything before the `Manifest-Checksum` line.
pub fn manifest(files: &[Copied], range: Range) -> Vec<u8> {
    let mut s = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
    let lines: Vec<String> = files
        .iter()
        .map(|f| {
            let modified = DateTime::<Utc>::from_timestamp(f.mtime, 0)
                .unwrap_or_default()
                .format("%Y-%m-%d %H:%M:%S GMT");
            format!(
                "{{ \"Path\": {}, \"Size\": {}, \"Last-Modified\": \"{modified}\", \
                 \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\" }}",
                serde_json::Value::String(f.path.clone()),
                f.size,
                f.crc32c
            )
        })
        .collect();
    s.push_str(&lines.join(",\n"));
    s.push_str(&format!(
        "\n],\n\"WAL-Ranges\": [\n{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}\n],\n",
        range.timeline, range.start, range.end
    ));
    let sum = hex::encode(Sha256::digest(s.as_bytes()));
    s.push_str(&format!("\"Manifest-Checksum\": \"{sum}\"}}\n"));
    s.into_bytes()
}

/// The data directory's path, checked readable before a backup starts (the agent
/// runs as the data directory's owner, or as root).
pub fn check_readable(data_dir: &Path) -> Result<PathBuf, String> {
    let control = data_dir.join(PG_CONTROL);
    File::open(&control)
        .map(|_| data_dir.to_path_buf())
        .map_err(|e| {
            format!(
                "cannot read {} ({e}): backup.base_method files copies the data directory, so \
             the agent must run as its owner or as root (or set backup.base_method: \
             pg_basebackup)",
                control.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::filesums::FileSums;

    fn lsn(s: &str) -> Lsn {
        Lsn::parse(s).unwrap()
    }

    #[test]
    fn relation_names() {
        assert_eq!(relation_name("16384"), Some(("16384", "")));
        assert_eq!(relation_name("16384_fsm"), Some(("16384", "fsm")));
        assert_eq!(relation_name("16384.12"), Some(("16384", "")));
        assert_eq!(relation_name("16384_vm.3"), Some(("16384", "vm")));
        assert_eq!(relation_name("PG_VERSION"), None);
        assert_eq!(relation_name("pg_filenode.map"), None);
        assert_eq!(relation_name("16384.x"), None);
    }

    #[test]
    fn unlogged_and_temporary_relations_are_left_out() {
        let names: Vec<String> = [
            "16384",
            "16384_init",
            "16384_fsm",
            "16384.1",
            "16390",
            "t3_16400",
            "t3_16400_fsm",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let unlogged = unlogged_relations(&names);
        let kept: Vec<&String> = names
            .iter()
            .filter(|n| !excluded_relation(n, &unlogged))
            .collect();
        assert_eq!(kept, ["16384_init", "16390"]);
        assert!(is_database_dir("base/5"));
        assert!(!is_database_dir("base"));
        assert!(!is_database_dir("global"));
        assert!(!is_database_dir("base/pgsql_tmp"));
    }

    #[test]
    fn copies_a_data_directory_by_the_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for dir in [
            "global",
            "base/5",
            "pg_wal/archive_status",
            "pg_replslot/slot",
            "pg_stat_tmp",
            "base/pgsql_tmp",
        ] {
            fs::create_dir_all(d.join(dir)).unwrap();
        }
        let files: &[(&str, &[u8])] = &[
            ("PG_VERSION", b"15\n"),
            ("global/pg_control", b"control"),
            ("global/1262", b"db"),
            ("base/5/16384", b"unlogged main"),
            ("base/5/16384_init", b"init"),
            ("base/5/16385", &[7u8; 3000]),
            ("base/5/t3_16400", b"temp"),
            ("base/5/pg_internal.init", b"cache"),
            ("base/pgsql_tmp/pgsql_tmp1.0", b"sort"),
            ("pg_wal/000000010000000000000001", b"wal"),
            ("pg_replslot/slot/state", b"slot"),
            ("pg_stat_tmp/x", b"stat"),
            ("postmaster.pid", b"1"),
            ("backup_label", b"old"),
        ];
        for (p, data) in files {
            fs::write(d.join(p), data).unwrap();
        }
        let mut w = TarWriter::new(
            Vec::new(),
            Arc::new(AtomicU64::new(0)),
            CancellationToken::new(),
        );
        copy_data_dir(d, &mut w).unwrap();
        let range = Range {
            timeline: 1,
            start: lsn("0/2000028"),
            end: lsn("0/2000100"),
        };
        let (scanned, tar_bytes) = finish(w, "START WAL LOCATION: 0/2000028\n", range).unwrap();
        assert_eq!(scanned.size, tar_bytes.len() as u64);
        let paths: Vec<&str> = scanned.files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "PG_VERSION",
                "base/5/16384_init",
                "base/5/16385",
                "global/1262",
                "global/pg_control",
                "backup_label",
                "backup_manifest"
            ]
        );
        // The stream reads back with tar, holds the directories the server needs
        // (empty where their contents are left out), and matches the manifest.
        let sums = FileSums::from_manifest(scanned.manifest.as_deref().unwrap()).unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut dirs = Vec::new();
        let mut seen = 0;
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            if e.header().entry_type() == tar::EntryType::Directory {
                dirs.push(path);
                continue;
            }
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if path == MANIFEST {
                continue;
            }
            let mut h = FileHasher::new(Algorithm::Crc32c);
            h.update(&data);
            assert_eq!(
                sums.files[&path].mismatch(data.len() as u64, &h.finish()),
                None,
                "{path}"
            );
            seen += 1;
        }
        assert_eq!(seen, sums.files.len());
        for dir in [
            "pg_wal",
            "pg_wal/archive_status",
            "pg_replslot",
            "pg_stat_tmp",
            "base/5",
        ] {
            assert!(dirs.iter().any(|d| d == dir), "{dir} in {dirs:?}");
        }
        assert!(
            !dirs.iter().any(|d| d.starts_with("pg_replslot/")),
            "{dirs:?}"
        );
        let range =
            crate::base::wal_range::from_manifest(scanned.manifest.as_deref().unwrap()).unwrap();
        assert_eq!(
            (range.timeline, range.start, range.end),
            (1, 0x200_0028, 0x200_0100)
        );
    }

    #[test]
    fn a_file_that_shrinks_is_padded_to_its_header() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        fs::write(&path, [1u8; 10_000]).unwrap();
        // A sink that truncates the file once the header is out, as vacuum might.
        struct Truncating(Vec<u8>, PathBuf, bool);
        impl Write for Truncating {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if !self.2 {
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&self.1)?
                        .set_len(100)?;
                    self.2 = true;
                }
                self.0.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = TarWriter::new(
            Truncating(Vec::new(), path.clone(), false),
            Arc::new(AtomicU64::new(0)),
            CancellationToken::new(),
        );
        assert!(w.file("f", &path).unwrap());
        assert_eq!(w.files[0].size, 10_000);
        assert!(!w.file("gone", &tmp.path().join("gone")).unwrap());
        let out = w.sink.0;
        assert_eq!(out.len(), BLOCK + 10_240);
        assert!(out[BLOCK..BLOCK + 100].iter().all(|b| *b == 1));
        assert!(out[BLOCK + 100..].iter().all(|b| *b == 0));
    }
}
