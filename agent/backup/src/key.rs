//! The repository encryption key: 32 bytes, written as 64 hex digits (whitespace
//! around them is ignored), read from `backup.encryption_key_file` or the
//! `WARDEN_BACKUP_KEY` environment variable.
//!
//! The key is never logged: its `Debug` output is redacted and no error message quotes
//! it. Generate one with `openssl rand -hex 32`.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable holding the key when no key file is configured.
pub const KEY_ENV: &str = "WARDEN_BACKUP_KEY";

/// A random 32-byte key has about 30 distinct byte values; fewer than this means a
/// hand-made key (`000…`, `abab…`, a short phrase repeated), not a random one.
const MIN_DISTINCT_BYTES: usize = 16;

#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("backup.encryption_key_file: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no encryption key: set backup.encryption_key_file or the {KEY_ENV} environment variable"
    )]
    Missing,
    /// `source` names where the key came from; the key text is never included.
    #[error("{source_name}: {problem} (generate a key with `openssl rand -hex 32`)")]
    Invalid {
        source_name: String,
        problem: String,
    },
}

impl EncryptionKey {
    /// From the configured file, else from [`KEY_ENV`].
    pub fn load(file: Option<&Path>) -> Result<Self, KeyError> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                warn_if_exposed(path);
                Self::parse(
                    &text,
                    &format!("backup.encryption_key_file ({})", path.display()),
                )
            }
            None => match std::env::var(KEY_ENV) {
                Ok(text) if !text.trim().is_empty() => Self::parse(&text, KEY_ENV),
                _ => Err(KeyError::Missing),
            },
        }
    }

    /// Parses 64 hex digits; `source_name` says where they came from, for errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, KeyError> {
        let invalid = |problem: String| KeyError::Invalid {
            source_name: source_name.to_owned(),
            problem,
        };
        let digits = text.trim();
        if digits.len() != 64 {
            return Err(invalid(format!(
                "expected 64 hex digits (32 bytes), got {} characters",
                digits.chars().count()
            )));
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(digits, &mut key)
            .map_err(|_| invalid("expected 64 hex digits (0-9, a-f)".to_owned()))?;
        let distinct: HashSet<u8> = key.iter().copied().collect();
        if distinct.len() < MIN_DISTINCT_BYTES {
            return Err(invalid(format!(
                "the key is not random (only {} distinct byte values); refusing a weak key",
                distinct.len()
            )));
        }
        Ok(Self(key))
    }

    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A key file others can read is worth a warning (not an error: some setups give a
/// group of service users access on purpose).
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the backup encryption key file is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "8f3a1c9e5b7d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f13";

    #[test]
    fn accepts_hex_with_whitespace_and_redacts_debug() {
        let key = EncryptionKey::parse(&format!("  {GOOD}\n"), "test").unwrap();
        assert_eq!(key.bytes()[0], 0x8f);
        assert_eq!(format!("{key:?}"), "EncryptionKey(***)");
    }

    #[test]
    fn refuses_malformed_and_weak_keys_without_quoting_them() {
        let short = EncryptionKey::parse("abcd", "K").unwrap_err().to_string();
        assert!(
            short.starts_with("K: expected 64 hex digits (32 bytes), got 4"),
            "{short}"
        );
        let bad = "zz".repeat(32);
        let e = EncryptionKey::parse(&bad, "K").unwrap_err().to_string();
        assert!(e.contains("expected 64 hex digits (0-9, a-f)"), "{e}");
        assert!(!e.contains(&bad), "{e}");
        let weak = "00".repeat(32);
        let e = EncryptionKey::parse(&weak, "K").unwrap_err().to_string();
        assert!(e.contains("not random"), "{e}");
        let weak = "0102".repeat(16);
        assert!(EncryptionKey::parse(&weak, "K").is_err());
    }

    #[test]
    fn reads_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, GOOD).unwrap();
        assert!(EncryptionKey::load(Some(&path)).is_ok());
        let e = EncryptionKey::load(Some(&dir.path().join("missing"))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("backup.encryption_key_file: cannot read"),
            "{e}"
        );
    }
}
