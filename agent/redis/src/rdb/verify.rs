//! The checks an RDB must pass before it is sealed, verified or restored: the header
//! `REDIS` + a four-digit version, and the trailer — the EOF opcode `0xFF` followed by
//! the CRC-64 (little-endian) of every byte before it. This is what `redis-server`
//! checks when it loads a file; the records in between are not parsed (a flipped byte
//! there changes the CRC).
//!
//! A checksum of 0 means the source ran with `rdbchecksum no`. Redis then loads the
//! file unchecked; Warden refuses it ([`RdbError::ChecksumDisabled`]): a snapshot that
//! cannot be checked cannot keep the promise that a flipped byte is refused at backup,
//! verify and restore, and the agent owns the replica's configuration, where
//! `rdbchecksum yes` is the default. (A real CRC of 0 has a 2⁻⁶⁴ chance.)

use std::io::Read;
use std::path::Path;

use super::crc64::Crc64;

/// `REDIS0010`: magic and version.
pub const HEADER_LEN: usize = 9;
/// The EOF opcode and the 8-byte checksum.
pub const TRAILER_LEN: usize = 9;
/// The EOF opcode.
pub const EOF_OPCODE: u8 = 0xFF;
/// The newest version accepted: what Redis 7.0 writes. A newer file (7.2 writes 11)
/// would not load into the 7.0 servers restores and drills start.
pub const MAX_VERSION: u32 = 10;
/// The oldest version accepted: version 5 (Redis 2.6) added the checksum; an older
/// file cannot be checked.
pub const MIN_VERSION: u32 = 5;

/// What a verified RDB is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdbSummary {
    pub version: u32,
    /// The whole file, trailer included.
    pub len: u64,
    pub crc: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    #[error("not an RDB: it starts with {found:?}, not \"REDIS\" and a four-digit version")]
    BadMagic { found: String },
    #[error(
        "RDB format version {version} is not supported (accepted: {MIN_VERSION} to {MAX_VERSION}, Redis 2.6 to 7.0)"
    )]
    UnsupportedVersion { version: u32 },
    #[error("the RDB is truncated: {len} bytes, shorter than a header and a trailer")]
    Truncated { len: u64 },
    #[error(
        "the RDB does not end with the EOF opcode and a checksum (byte 0x{found:02x} where 0xff belongs, {len} bytes): truncated or corrupt"
    )]
    NoEofOpcode { found: u8, len: u64 },
    #[error(
        "RDB checksum mismatch: the file says {stored:016x}, its bytes give {computed:016x} (corrupt)"
    )]
    ChecksumMismatch { stored: u64, computed: u64 },
    #[error(
        "the RDB carries no checksum (written with rdbchecksum no), so it cannot be verified and is refused; set rdbchecksum yes on the source"
    )]
    ChecksumDisabled { computed: u64 },
}

/// One pass over an RDB arriving in pieces: the header is checked as soon as it is
/// complete, the CRC runs over all but the newest [`TRAILER_LEN`] - 1 bytes, and
/// [`finish`](Self::finish) checks the trailer. Memory: a few dozen bytes.
#[derive(Debug, Clone, Default)]
pub struct RdbVerifier {
    header: [u8; HEADER_LEN],
    header_len: usize,
    version: u32,
    /// The newest bytes, not yet in the CRC (the trailer, once the stream ends).
    tail: [u8; TRAILER_LEN],
    tail_len: usize,
    crc: Crc64,
    len: u64,
    failed: Option<RdbError>,
}

impl RdbVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the next bytes. An error (a bad header) is final: the caller can stop
    /// early, and [`finish`](Self::finish) returns it too.
    pub fn update(&mut self, data: &[u8]) -> Result<(), RdbError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.len += data.len() as u64;
        if self.header_len < HEADER_LEN {
            let n = (HEADER_LEN - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            if self.header_len == HEADER_LEN {
                match parse_header(&self.header) {
                    Ok(v) => self.version = v,
                    Err(e) => {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
            }
        }
        if data.len() >= TRAILER_LEN {
            self.crc.update(&self.tail[..self.tail_len]);
            let (body, newest) = data.split_at(data.len() - TRAILER_LEN);
            self.crc.update(body);
            self.tail.copy_from_slice(newest);
            self.tail_len = TRAILER_LEN;
        } else {
            let overflow = (self.tail_len + data.len()).saturating_sub(TRAILER_LEN);
            self.crc.update(&self.tail[..overflow]);
            self.tail.copy_within(overflow..self.tail_len, 0);
            self.tail_len -= overflow;
            self.tail[self.tail_len..self.tail_len + data.len()].copy_from_slice(data);
            self.tail_len += data.len();
        }
        Ok(())
    }

    /// The verdict on everything given.
    pub fn finish(mut self) -> Result<RdbSummary, RdbError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.header_len < HEADER_LEN || self.len < (HEADER_LEN + TRAILER_LEN) as u64 {
            return Err(RdbError::Truncated { len: self.len });
        }
        if self.tail[0] != EOF_OPCODE {
            return Err(RdbError::NoEofOpcode {
                found: self.tail[0],
                len: self.len,
            });
        }
        self.crc.update(&self.tail[..1]);
        let computed = self.crc.value();
        let stored = u64::from_le_bytes(self.tail[1..].try_into().expect("8 bytes"));
        if stored == computed {
            Ok(RdbSummary {
                version: self.version,
                len: self.len,
                crc: computed,
            })
        } else if stored == 0 {
            Err(RdbError::ChecksumDisabled { computed })
        } else {
            Err(RdbError::ChecksumMismatch { stored, computed })
        }
    }
}

fn parse_header(h: &[u8; HEADER_LEN]) -> Result<u32, RdbError> {
    let digits = &h[5..];
    if &h[..5] != b"REDIS" || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RdbError::BadMagic {
            found: String::from_utf8_lossy(h).into_owned(),
        });
    }
    let version = digits
        .iter()
        .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    if (MIN_VERSION..=MAX_VERSION).contains(&version) {
        Ok(version)
    } else {
        Err(RdbError::UnsupportedVersion { version })
    }
}

/// Verifies a whole RDB in memory.
pub fn verify_rdb(bytes: &[u8]) -> Result<RdbSummary, RdbError> {
    let mut v = RdbVerifier::new();
    v.update(bytes)?;
    v.finish()
}

/// Why a file could not be verified: it could not be read, or it is not a valid RDB.
#[derive(Debug, thiserror::Error)]
pub enum FileCheckError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Rdb { path: String, source: RdbError },
}

impl FileCheckError {
    /// The RDB's verdict, when the file was read.
    pub fn rdb(&self) -> Option<&RdbError> {
        match self {
            Self::Rdb { source, .. } => Some(source),
            Self::Io { .. } => None,
        }
    }
}

/// Verifies a file in one streaming pass (blocking I/O: from async code, call it on
/// `spawn_blocking`).
pub fn verify_rdb_file(path: &Path) -> Result<RdbSummary, FileCheckError> {
    let shown = || path.display().to_string();
    let io = |source| FileCheckError::Io {
        path: shown(),
        source,
    };
    let rdb = |source| FileCheckError::Rdb {
        path: shown(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut v = RdbVerifier::new();
    let mut buf = vec![0u8; super::fetch::CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        v.update(&buf[..n]).map_err(rdb)?;
    }
    v.finish().map_err(rdb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::crc64::crc64;

    /// A small RDB as Redis writes it: header, an aux field, one key, EOF, CRC.
    fn sample(version: &[u8; 4]) -> Vec<u8> {
        let mut b = b"REDIS".to_vec();
        b.extend_from_slice(version);
        b.extend_from_slice(b"\xfa\x09redis-ver\x067.0.15");
        b.extend_from_slice(b"\xfe\x00\xfb\x01\x00\x00\x03key\x05value");
        b.push(EOF_OPCODE);
        let crc = crc64(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn a_well_formed_rdb_passes_whole_and_in_every_split() {
        let b = sample(b"0010");
        let s = verify_rdb(&b).expect("valid");
        assert_eq!(s.version, 10);
        assert_eq!(s.len, b.len() as u64);
        for step in 1..=b.len() {
            let mut v = RdbVerifier::new();
            for piece in b.chunks(step) {
                v.update(piece).expect("header fine");
            }
            assert_eq!(v.finish(), Ok(s), "pieces of {step}");
        }
        assert_eq!(verify_rdb(&sample(b"0005")).map(|s| s.version), Ok(5));
    }

    #[test]
    fn every_single_flipped_byte_is_refused() {
        let b = sample(b"0010");
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(verify_rdb(&c).is_err(), "byte {i} bit {bit} accepted");
            }
        }
        let mut c = b.clone();
        c[20] ^= 0x40;
        assert!(matches!(
            verify_rdb(&c),
            Err(RdbError::ChecksumMismatch { stored, computed })
                if stored == crc64(&b[..b.len() - 8]) && computed == crc64(&c[..c.len() - 8])
        ));
    }

    #[test]
    fn named_errors() {
        let b = sample(b"0010");
        assert!(matches!(
            verify_rdb(b"RUDIS0010\xff\0\0\0\0\0\0\0\0"),
            Err(RdbError::BadMagic { .. })
        ));
        assert!(matches!(
            verify_rdb(b"REDIS00x0"),
            Err(RdbError::BadMagic { .. })
        ));
        assert_eq!(
            verify_rdb(&sample(b"0011")),
            Err(RdbError::UnsupportedVersion { version: 11 })
        );
        assert_eq!(
            verify_rdb(&sample(b"0004")),
            Err(RdbError::UnsupportedVersion { version: 4 })
        );
        assert_eq!(verify_rdb(&b[..12]), Err(RdbError::Truncated { len: 12 }));
        assert_eq!(verify_rdb(b""), Err(RdbError::Truncated { len: 0 }));
        assert!(matches!(
            verify_rdb(&b[..b.len() - 3]),
            Err(RdbError::NoEofOpcode { .. })
        ));
        let mut off = b;
        let n = off.len();
        off[n - 8..].fill(0);
        assert!(matches!(
            verify_rdb(&off),
            Err(RdbError::ChecksumDisabled { .. })
        ));
    }

    #[test]
    fn a_bad_header_stops_the_stream_early() {
        let mut v = RdbVerifier::new();
        assert!(v.update(b"REDIS").is_ok());
        assert!(v.update(b"0099 and more").is_err());
        assert!(v.update(b"x").is_err());
        assert_eq!(
            v.finish(),
            Err(RdbError::UnsupportedVersion { version: 99 })
        );
    }
}
