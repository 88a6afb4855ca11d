//! Reading pg_basebackup's tar stream as it passes through: every byte goes on to the
//! sink unchanged (the parts), while the archive's entries are parsed to list each
//! file (path, size) and keep `backup_manifest` and `backup_label`. Nothing is hashed
//! here: the per-file checksums are the server's, in `backup_manifest`
//! (`filesums`).

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::catalog::MANIFEST;

/// A manifest larger than this is refused rather than held in memory (PostgreSQL
/// writes about 150 bytes per file: this allows millions of files).
pub const MANIFEST_MAX: u64 = 512 * 1024 * 1024;

/// What the stream held.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Regular files (path as in the tar, size), in stream order.
    pub files: Vec<(String, u64)>,
    pub manifest: Option<Vec<u8>>,
    pub backup_label: Option<String>,
    /// Bytes of the whole tar stream.
    pub size: u64,
}

/// Passes every byte read on to `sink` and counts it.
struct Tee<R, W> {
    inner: R,
    sink: W,
    counter: Arc<AtomicU64>,
    total: u64,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.sink.write_all(&buf[..n])?;
            self.total += n as u64;
            self.counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Reads the whole tar stream from `input`, copying it into `sink`. Blocking: run it
/// on a blocking thread.
pub fn scan<R: Read, W: Write>(
    input: R,
    sink: W,
    counter: Arc<AtomicU64>,
) -> io::Result<(Scanned, W)> {
    let tee = Tee {
        inner: input,
        sink,
        counter,
        total: 0,
    };
    let mut archive = tar::Archive::new(tee);
    let mut out = Scanned::default();
    let mut buf = vec![0u8; 256 * 1024];
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let size = entry.size();
        let keep = match path.as_str() {
            MANIFEST if size > MANIFEST_MAX => {
                return Err(io::Error::other(format!(
                    "backup_manifest is {size} bytes, more than the {MANIFEST_MAX} accepted"
                )))
            }
            MANIFEST | "backup_label" => true,
            _ => false,
        };
        let mut kept = Vec::new();
        let mut read = 0u64;
        // Large reads (fewer pipe reads and sink writes); data files are only passed
        // on by the tee, never looked at.
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            read += n as u64;
            if keep {
                kept.extend_from_slice(&buf[..n]);
            }
        }
        if read != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the tar stream ends inside {path} ({read} of {size} bytes)"),
            ));
        }
        match path.as_str() {
            MANIFEST => out.manifest = Some(kept),
            "backup_label" => out.backup_label = Some(String::from_utf8_lossy(&kept).into_owned()),
            _ => {}
        }
        out.files.push((path, size));
    }
    // The end-of-archive blocks (and any padding after them) still belong to the
    // stream: pass them on too.
    let mut tee = archive.into_inner();
    io::copy(&mut tee, &mut io::sink())?;
    out.size = tee.total;
    Ok((out, tee.sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o700);
        dir.set_cksum();
        b.append_data(&mut dir, "base", io::empty()).unwrap();
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn every_byte_passes_through_and_files_are_listed() {
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        let stream = tar_of(&[
            ("PG_VERSION", b"15\n"),
            ("base/1/1259", &big),
            ("backup_label", b"START WAL LOCATION: 0/2000028\n"),
            (
                "backup_manifest",
                b"{\"PostgreSQL-Backup-Manifest-Version\": 1}",
            ),
        ]);
        let counter = Arc::new(AtomicU64::new(0));
        let (scanned, copy) = scan(&stream[..], Vec::new(), counter.clone()).unwrap();
        assert_eq!(copy, stream, "the sink gets the stream unchanged");
        assert_eq!(scanned.size, stream.len() as u64);
        assert_eq!(counter.load(Ordering::Relaxed), stream.len() as u64);
        let paths: Vec<&str> = scanned.files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "PG_VERSION",
                "base/1/1259",
                "backup_label",
                "backup_manifest"
            ]
        );
        assert_eq!(scanned.files[1].1, big.len() as u64);
        assert_eq!(
            scanned.manifest.as_deref(),
            Some(&b"{\"PostgreSQL-Backup-Manifest-Version\": 1}"[..])
        );
        assert!(scanned.backup_label.unwrap().starts_with("START WAL"));
    }

    #[test]
    fn a_truncated_stream_is_an_error() {
        let stream = tar_of(&[("base/1/1", &[7u8; 5000])]);
        let cut = &stream[..1024];
        assert!(scan(cut, Vec::new(), Arc::new(AtomicU64::new(0))).is_err());
    }
}
