//! What every restored or verified file must match: its size and checksum.
//!
//! Two sources:
//!
//! - backups recorded before issue 15 carry a SHA-256 per file in their record
//!   (`files`), computed by Warden as the stream passed;
//! - newer backups leave `files` empty and take the per-file checksums from the
//!   server's own `backup_manifest` (PostgreSQL computes them while sending, CRC32C by
//!   default — also in a plain `pg_basebackup` — so Warden no longer hashes every byte
//!   a second time). The manifest is stored as a sealed object next to the parts, so
//!   it is authenticated like them, and its own `Manifest-Checksum` (SHA-256 over the
//!   manifest) is checked too.
//!
//! An empty `files` list can only mean the second: a data directory always has files,
//! and the record is sealed, so nobody without the key can empty it.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::catalog::{FileSum, MANIFEST};
use crate::restore::extract::normalize;

/// A per-file checksum algorithm (PostgreSQL's `--manifest-checksums` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Size only (`--manifest-checksums=none`).
    None,
    Crc32c,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "CRC32C" => Self::Crc32c,
            "SHA224" => Self::Sha224,
            "SHA256" => Self::Sha256,
            "SHA384" => Self::Sha384,
            "SHA512" => Self::Sha512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Crc32c => "CRC32C",
            Self::Sha224 => "SHA224",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }
}

/// One file's expected size and checksum (lowercase hex; empty for [`Algorithm::None`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub algorithm: Algorithm,
    pub checksum: String,
}

impl Expected {
    /// `None` when `size` and `checksum` (from [`FileHasher::finish`]) match, else
    /// what differs.
    pub fn mismatch(&self, size: u64, checksum: &str) -> Option<String> {
        if self.algorithm != Algorithm::None && !self.checksum.eq_ignore_ascii_case(checksum) {
            return Some(format!(
                "{} {checksum} ({size} bytes) does not match the backup's {} ({} bytes)",
                self.algorithm.name(),
                self.checksum,
                self.size
            ));
        }
        (self.size != size).then(|| format!("{size} bytes, the backup says {}", self.size))
    }
}

/// Expected sums by normalized path (as [`normalize`] names tar members).
#[derive(Debug, Clone, Default)]
pub struct FileSums {
    pub files: BTreeMap<String, Expected>,
    /// Files allowed in the stream without an entry (the manifest itself).
    pub exempt: Vec<String>,
}

impl FileSums {
    /// A record's SHA-256 list (backups before issue 15).
    pub fn from_record(files: &[FileSum]) -> Self {
        Self {
            files: files
                .iter()
                .filter_map(|f| {
                    normalize(&f.path).map(|p| {
                        (
                            p,
                            Expected {
                                size: f.size,
                                algorithm: Algorithm::Sha256,
                                checksum: f.sha256.to_ascii_lowercase(),
                            },
                        )
                    })
                })
                .collect(),
            exempt: Vec::new(),
        }
    }

    /// The `Files` of a `backup_manifest`, after checking its `Manifest-Checksum`.
    pub fn from_manifest(bytes: &[u8]) -> Result<Self, String> {
        check_manifest_checksum(bytes)?;
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("backup_manifest: {e}"))?;
        let mut files = BTreeMap::new();
        for f in m.files {
            let path = match (f.path, f.encoded_path) {
                (Some(p), _) => p,
                (None, Some(hex_path)) => hex::decode(&hex_path)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| format!("backup_manifest: bad Encoded-Path {hex_path:?}"))?,
                (None, None) => return Err("backup_manifest: a file without a path".into()),
            };
            let algorithm = match f.algorithm.as_deref() {
                None => Algorithm::None,
                Some(a) => Algorithm::parse(a).ok_or_else(|| {
                    format!("backup_manifest: {path}: unknown checksum algorithm {a:?}")
                })?,
            };
            let checksum = f.checksum.unwrap_or_default().to_ascii_lowercase();
            if algorithm != Algorithm::None && checksum.is_empty() {
                return Err(format!("backup_manifest: {path}: no checksum"));
            }
            let norm = normalize(&path)
                .ok_or_else(|| format!("backup_manifest: refusing the path {path:?}"))?;
            files.insert(
                norm,
                Expected {
                    size: f.size,
                    algorithm,
                    checksum,
                },
            );
        }
        Ok(Self {
            files,
            exempt: vec![MANIFEST.to_owned()],
        })
    }
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "Files")]
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

/// PostgreSQL's rule: the last line holds `"Manifest-Checksum": "<sha256>"`, and the
/// SHA-256 covers everything up to and including the newline before that line.
fn check_manifest_checksum(bytes: &[u8]) -> Result<(), String> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let start = body
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .ok_or("backup_manifest: no Manifest-Checksum line")?;
    let last = std::str::from_utf8(&body[start..])
        .map_err(|_| "backup_manifest: the last line is not UTF-8".to_owned())?;
    let want = last
        .strip_prefix("\"Manifest-Checksum\": \"")
        .and_then(|r| r.strip_suffix("\"}"))
        .ok_or("backup_manifest: no Manifest-Checksum line")?;
    let got = hex::encode(Sha256::digest(&bytes[..start]));
    if !got.eq_ignore_ascii_case(want) {
        return Err(format!(
            "backup_manifest: its Manifest-Checksum {want} does not match its content ({got})"
        ));
    }
    Ok(())
}

/// Why a backup's expected sums could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SumsError {
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error("{object}: {source}")]
    Corrupt {
        object: String,
        source: crate::codec::CodecError,
    },
    #[error("{0}")]
    Manifest(String),
}

/// What `record`'s files must match, and the manifest's plaintext when it was read
/// for that (the restore writes it into the data directory).
pub async fn for_backup(
    catalog: &crate::catalog::Catalog,
    record: &crate::catalog::BackupRecord,
) -> Result<(FileSums, Option<Vec<u8>>), SumsError> {
    if !record.files.is_empty() {
        return Ok((FileSums::from_record(&record.files), None));
    }
    let object = format!("{}/{MANIFEST}", catalog.backup_dir(&record.id));
    let sealed = catalog.repo.get(&object).await?;
    let (plain, _) =
        crate::codec::open_bytes(&catalog.key, &object, &sealed).map_err(|source| {
            SumsError::Corrupt {
                object: object.clone(),
                source,
            }
        })?;
    let sums = FileSums::from_manifest(&plain).map_err(SumsError::Manifest)?;
    Ok((sums, Some(plain)))
}

/// Hashes one file's content with the algorithm its [`Expected`] names.
pub enum FileHasher {
    None,
    Crc32c(crc_fast::Digest),
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl std::fmt::Debug for FileHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileHasher")
    }
}

impl FileHasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::None => Self::None,
            Algorithm::Crc32c => {
                Self::Crc32c(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
            }
            Algorithm::Sha224 => Self::Sha224(Sha224::new()),
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
            Algorithm::Sha384 => Self::Sha384(Sha384::new()),
            Algorithm::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::None => {}
            Self::Crc32c(d) => d.update(data),
            Self::Sha224(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// Lowercase hex, as the manifest writes it.
    pub fn finish(self) -> String {
        match self {
            Self::None => String::new(),
            // PostgreSQL hex-encodes the CRC's bytes as they sit in memory (native
            // order): the server is the one on this machine, pg_basebackup's.
            Self::Crc32c(d) => {
                hex::encode((u32::try_from(d.finalize()).unwrap_or(u32::MAX)).to_ne_bytes())
            }
            Self::Sha224(h) => hex::encode(h.finalize()),
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha384(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A manifest as PostgreSQL 15 writes it (layout and checksum rule).
    pub(crate) fn manifest_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut s = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
        let lines: Vec<String> = files
            .iter()
            .map(|(p, data)| {
                let mut h = FileHasher::new(Algorithm::Crc32c);
                h.update(data);
                format!(
                    "{{ \"Path\": \"{p}\", \"Size\": {}, \"Last-Modified\": \"2026-12-07 19:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\" }}",
                    data.len(),
                    h.finish()
                )
            })
            .collect();
        s.push_str(&lines.join(",\n"));
        s.push_str("\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n");
        let sum = hex::encode(Sha256::digest(s.as_bytes()));
        s.push_str(&format!("\"Manifest-Checksum\": \"{sum}\"}}\n"));
        s.into_bytes()
    }

    #[test]
    fn crc32c_is_castagnoli_in_postgresqls_byte_order() {
        let mut h = FileHasher::new(Algorithm::Crc32c);
        h.update(b"12345");
        h.update(b"6789");
        // The standard check value 0xE3069283, bytes as a little-endian server
        // stores them.
        assert_eq!(h.finish(), "839206e3");
    }

    #[test]
    fn reads_a_manifest_and_checks_its_own_checksum() {
        let m = manifest_of(&[("PG_VERSION", b"15\n"), ("./base/1/1259", b"abc")]);
        let sums = FileSums::from_manifest(&m).unwrap();
        assert_eq!(sums.files.len(), 2);
        let v = &sums.files["PG_VERSION"];
        assert_eq!(v.algorithm, Algorithm::Crc32c);
        assert_eq!(v.size, 3);
        let mut h = FileHasher::new(Algorithm::Crc32c);
        h.update(b"15\n");
        assert_eq!(v.mismatch(3, &h.finish()), None);
        assert!(v.mismatch(3, "00000000").is_some());
        assert!(sums.files.contains_key("base/1/1259"));
        assert_eq!(sums.exempt, ["backup_manifest"]);
        // One changed byte anywhere in the manifest breaks its checksum.
        let mut bad = m.clone();
        let i = bad.windows(4).position(|w| w == b"\"15\"").unwrap_or(40);
        bad[i + 1] ^= 1;
        assert!(FileSums::from_manifest(&bad).is_err());
        let mut size_changed = String::from_utf8(m).unwrap();
        size_changed = size_changed.replacen("\"Size\": 3", "\"Size\": 4", 1);
        let e = FileSums::from_manifest(size_changed.as_bytes()).unwrap_err();
        assert!(e.contains("Manifest-Checksum"), "{e}");
    }

    #[test]
    fn record_sums_are_sha256() {
        let sums = FileSums::from_record(&[FileSum {
            path: "./PG_VERSION".into(),
            size: 3,
            sha256: hex::encode(Sha256::digest(b"15\n")).to_uppercase(),
        }]);
        let v = &sums.files["PG_VERSION"];
        let mut h = FileHasher::new(v.algorithm);
        h.update(b"15\n");
        assert_eq!(v.mismatch(3, &h.finish()), None);
        assert!(sums.exempt.is_empty());
    }
}
