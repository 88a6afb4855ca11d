//! Streaming compress-then-encrypt ([`seal`]) and decrypt-then-decompress ([`open`]).
//!
//! Object format (version 1):
//!
//! ```text
//! header   "WRDNBK01" (8 bytes) | nonce (19 random bytes)
//! chunks   XChaCha20-Poly1305 STREAM (BE32): every chunk but the last holds exactly
//!          CHUNK bytes of zstd output + a 16-byte tag; the last holds 0..=CHUNK + tag
//! trailer  SHA-256 of the plaintext (32 bytes)
//! ```
//!
//! Why this shape: STREAM puts a chunk counter and a last-chunk flag into each nonce,
//! so a modified, dropped, reordered or truncated chunk fails authentication. Every
//! chunk authenticates the header and the object's *context* (associated data: its
//! path in the repository, so a validly sealed object moved to another name — one WAL
//! segment swapped for another — fails too), and the last one also the trailer. Fixed-size chunks need no length fields: a
//! reader that keeps one chunk plus the trailer of look-ahead knows which chunk is last.
//! Neither side ever holds more than a chunk or two in memory.
//!
//! The trailer is the content checksum: the SHA-256 of what was sealed, as it was on
//! disk, so a later push of the same file can be recognised and a restore verified.
//!
//! [`Opener`] hands out plaintext chunk by chunk as each chunk authenticates; the end
//! of the stream (and so truncation) is only proven when it reports end-of-file. A
//! caller must not trust what it read until then (write to a temporary file, rename
//! only after a clean end).

use std::io::{self, BufReader, Read, Write};

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::key::EncryptionKey;

const MAGIC: &[u8; 8] = b"WRDNBK01";
/// STREAM-BE32 over XChaCha20 leaves 24 − 5 = 19 nonce bytes to the caller.
const NONCE_LEN: usize = 19;
const HEADER_LEN: usize = MAGIC.len() + NONCE_LEN;
const TAG_LEN: usize = 16;
const DIGEST_LEN: usize = 32;
/// Plaintext bytes per chunk: small enough to stream, large enough that the 16-byte
/// tags cost nothing (0.02 %).
pub const CHUNK: usize = 64 * 1024;
const SEALED_CHUNK: usize = CHUNK + TAG_LEN;

/// SHA-256 of an object's plaintext.
pub type Digest32 = [u8; DIGEST_LEN];

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not a Warden backup object (unknown header); written by another tool or version, or damaged")]
    BadHeader,
    #[error("authentication failed: the object was modified, truncated or reordered, or sealed with another key")]
    Tampered,
    #[error("the object is truncated")]
    Truncated,
    #[error("checksum mismatch: the content does not match the checksum sealed with it")]
    ChecksumMismatch,
    #[error("compressed data is corrupt: {0}")]
    Decompress(String),
    #[error("{0}")]
    Io(#[source] io::Error),
}

impl CodecError {
    /// Recovers a codec error carried through an `io::Error` (the `Read`/`Write`
    /// interfaces can only return those).
    pub fn from_io(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<CodecError>()) {
            if let Ok(inner) = e
                .into_inner()
                .expect("checked above")
                .downcast::<CodecError>()
            {
                return *inner;
            }
            return CodecError::Tampered;
        }
        CodecError::Io(e)
    }

    /// True for problems of the stored bytes (as opposed to reading or writing them).
    pub fn is_corruption(&self) -> bool {
        !matches!(self, CodecError::Io(_))
    }
}

fn io_err(e: CodecError) -> io::Error {
    io::Error::other(e)
}

fn cipher(key: &EncryptionKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(GenericArray::from_slice(key.bytes()))
}

/// What [`Sealer::finish`] reports about the sealed content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    pub digest: Digest32,
    /// Plaintext bytes sealed.
    pub len: u64,
}

/// Starts sealing into `inner`: writes go through zstd at `level`, then encryption.
/// Call [`Sealer::finish`]; dropping a sealer leaves an unterminated (invalid) object.
pub fn seal<W: Write>(
    key: &EncryptionKey,
    level: i32,
    context: &str,
    inner: W,
) -> Result<Sealer<W>, CodecError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()..].copy_from_slice(&nonce);
    let mut inner = inner;
    inner.write_all(&header).map_err(CodecError::Io)?;
    let encrypt = EncryptWriter {
        inner,
        encryptor: EncryptorBE32::from_aead(cipher(key), GenericArray::from_slice(&nonce)),
        aad: associated_data(&header, context),
        pending: Vec::with_capacity(SEALED_CHUNK),
    };
    let zstd = zstd::stream::write::Encoder::new(encrypt, level).map_err(CodecError::Io)?;
    Ok(Sealer {
        zstd,
        hasher: Sha256::new(),
        len: 0,
    })
}

pub struct Sealer<W: Write> {
    zstd: zstd::stream::write::Encoder<'static, EncryptWriter<W>>,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> std::fmt::Debug for Sealer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("len", &self.len).finish()
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.zstd.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.zstd.flush()
    }
}

impl<W: Write> Sealer<W> {
    /// Ends the zstd frame, seals the last chunk and writes the trailer.
    pub fn finish(self) -> Result<(W, Sealed), CodecError> {
        let digest: Digest32 = self.hasher.finalize().into();
        let encrypt = self.zstd.finish().map_err(CodecError::from_io)?;
        let inner = encrypt.finish(&digest)?;
        Ok((
            inner,
            Sealed {
                digest,
                len: self.len,
            },
        ))
    }
}

/// Cuts the compressed stream into chunks and encrypts each.
struct EncryptWriter<W: Write> {
    inner: W,
    encryptor: EncryptorBE32<XChaCha20Poly1305>,
    aad: Vec<u8>,
    /// At most CHUNK bytes: a full chunk is only sealed once more data follows, since
    /// until then it might be the last one.
    pending: Vec<u8>,
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while self.pending.len() > CHUNK {
            let sealed = self
                .encryptor
                .encrypt_next(Payload {
                    msg: &self.pending[..CHUNK],
                    aad: &self.aad,
                })
                .map_err(|_| io::Error::other("encryption failed"))?;
            self.inner.write_all(&sealed)?;
            self.pending.drain(..CHUNK);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> EncryptWriter<W> {
    fn finish(mut self, digest: &Digest32) -> Result<W, CodecError> {
        let aad = [&self.aad[..], digest].concat();
        let sealed = self
            .encryptor
            .encrypt_last(Payload {
                msg: &self.pending,
                aad: &aad,
            })
            .map_err(|_| CodecError::Io(io::Error::other("encryption failed")))?;
        self.inner.write_all(&sealed).map_err(CodecError::Io)?;
        self.inner.write_all(digest).map_err(CodecError::Io)?;
        self.inner.flush().map_err(CodecError::Io)?;
        Ok(self.inner)
    }
}

/// Starts opening a sealed stream: reads and checks the header.
pub fn open<R: Read>(
    key: &EncryptionKey,
    context: &str,
    mut inner: R,
) -> Result<Opener<R>, CodecError> {
    let mut header = [0u8; HEADER_LEN];
    read_full(&mut inner, &mut header).map_err(CodecError::from_io)?;
    if &header[..MAGIC.len()] != MAGIC {
        return Err(CodecError::BadHeader);
    }
    let decryptor = DecryptorBE32::from_aead(
        cipher(key),
        GenericArray::from_slice(&header[MAGIC.len()..]),
    );
    let decrypt = DecryptReader {
        inner,
        decryptor: Some(decryptor),
        aad: associated_data(&header, context),
        sealed: Vec::with_capacity(2 * SEALED_CHUNK),
        plain: Vec::new(),
        pos: 0,
        digest: None,
        source_done: false,
    };
    let zstd = zstd::stream::read::Decoder::new(decrypt).map_err(CodecError::Io)?;
    Ok(Opener {
        zstd,
        hasher: Sha256::new(),
        done: false,
    })
}

/// Reads until `buf` is full; a short stream is [`CodecError::Truncated`] (as an
/// `io::Error` carrying it).
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Err(io_err(CodecError::Truncated)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub struct Opener<R: Read> {
    zstd: zstd::stream::read::Decoder<'static, BufReader<DecryptReader<R>>>,
    hasher: Sha256,
    done: bool,
}

impl<R: Read> std::fmt::Debug for Opener<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener").field("done", &self.done).finish()
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.zstd.read(buf).map_err(|e| {
            // Ours (including the source's read errors) pass through tagged; anything
            // else comes from zstd itself: the compressed data is bad.
            if e.get_ref().is_some_and(|i| i.is::<CodecError>()) {
                e
            } else {
                io_err(CodecError::Decompress(e.to_string()))
            }
        })?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        self.finish_checks()?;
        self.done = true;
        Ok(0)
    }
}

impl<R: Read> Opener<R> {
    /// At the end of the zstd frame: the sealed stream must end too (its last chunk
    /// authenticated), and the plaintext must hash to the sealed checksum.
    fn finish_checks(&mut self) -> io::Result<()> {
        let buffered = self.zstd.get_mut();
        if !buffered.buffer().is_empty() {
            return Err(io_err(CodecError::Decompress(
                "data after the end of the compressed stream".to_owned(),
            )));
        }
        let decrypt = buffered.get_mut();
        let mut probe = [0u8; 1];
        if decrypt.read(&mut probe)? != 0 {
            return Err(io_err(CodecError::Decompress(
                "data after the end of the compressed stream".to_owned(),
            )));
        }
        let expected = decrypt
            .digest
            .ok_or_else(|| io_err(CodecError::Truncated))?;
        let actual: Digest32 = self.hasher.clone().finalize().into();
        if actual != expected {
            return Err(io_err(CodecError::ChecksumMismatch));
        }
        Ok(())
    }

    /// The sealed checksum; known only once [`Read::read`] returned 0.
    pub fn digest(&self) -> Option<Digest32> {
        if !self.done {
            return None;
        }
        self.zstd.get_ref().get_ref().digest
    }
}

/// Authenticates and decrypts chunk by chunk, keeping a chunk plus trailer of
/// look-ahead to know which chunk is the last.
struct DecryptReader<R: Read> {
    inner: R,
    /// `None` once the last chunk was opened.
    decryptor: Option<DecryptorBE32<XChaCha20Poly1305>>,
    aad: Vec<u8>,
    sealed: Vec<u8>,
    plain: Vec<u8>,
    pos: usize,
    digest: Option<Digest32>,
    source_done: bool,
}

impl<R: Read> DecryptReader<R> {
    /// Reads from the source until more than one sealed chunk plus trailer is buffered,
    /// or the source ends.
    fn fill(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; SEALED_CHUNK];
        while !self.source_done && self.sealed.len() <= SEALED_CHUNK + DIGEST_LEN {
            match self.inner.read(&mut buf) {
                Ok(0) => self.source_done = true,
                Ok(n) => self.sealed.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Tagged, so that above zstd a failed read of the source is told
                // apart from corrupt data (zstd's own errors are untagged).
                Err(e) => return Err(io_err(CodecError::Io(e))),
            }
        }
        Ok(())
    }

    /// Opens the next chunk into `plain`; false at the end of the stream.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.decryptor.is_none() {
            return Ok(false);
        }
        self.fill()?;
        if self.sealed.len() > SEALED_CHUNK + DIGEST_LEN {
            let decryptor = self.decryptor.as_mut().expect("checked above");
            self.plain = decryptor
                .decrypt_next(Payload {
                    msg: &self.sealed[..SEALED_CHUNK],
                    aad: &self.aad,
                })
                .map_err(|_| io_err(CodecError::Tampered))?;
            self.sealed.drain(..SEALED_CHUNK);
        } else {
            if self.sealed.len() < TAG_LEN + DIGEST_LEN {
                return Err(io_err(CodecError::Truncated));
            }
            let split = self.sealed.len() - DIGEST_LEN;
            let mut digest = [0u8; DIGEST_LEN];
            digest.copy_from_slice(&self.sealed[split..]);
            let aad = [&self.aad[..], &digest].concat();
            let decryptor = self.decryptor.take().expect("checked above");
            self.plain = decryptor
                .decrypt_last(Payload {
                    msg: &self.sealed[..split],
                    aad: &aad,
                })
                .map_err(|_| io_err(CodecError::Tampered))?;
            self.sealed.clear();
            self.digest = Some(digest);
        }
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.plain.len() - self.pos);
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Header, then the context's length and bytes (the length keeps `a`+`bc` and `ab`+`c`
/// apart).
fn associated_data(header: &[u8; HEADER_LEN], context: &str) -> Vec<u8> {
    let len = u64::try_from(context.len()).unwrap_or(u64::MAX);
    [&header[..], &len.to_be_bytes(), context.as_bytes()].concat()
}

/// Seals all of `plain` into memory (small objects, tests).
pub fn seal_bytes(
    key: &EncryptionKey,
    level: i32,
    context: &str,
    plain: &[u8],
) -> Result<(Vec<u8>, Sealed), CodecError> {
    let mut sealer = seal(key, level, context, Vec::new())?;
    sealer.write_all(plain).map_err(CodecError::from_io)?;
    sealer.finish()
}

/// Opens all of `sealed` into memory (small objects, tests).
pub fn open_bytes(
    key: &EncryptionKey,
    context: &str,
    sealed: &[u8],
) -> Result<(Vec<u8>, Digest32), CodecError> {
    let mut opener = open(key, context, sealed)?;
    let mut out = Vec::new();
    opener.read_to_end(&mut out).map_err(CodecError::from_io)?;
    let digest = opener.digest().ok_or(CodecError::Truncated)?;
    Ok((out, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> EncryptionKey {
        let hex: String = (0..32u8)
            .map(|i| format!("{:02x}", i.wrapping_mul(37).wrapping_add(seed)))
            .collect();
        EncryptionKey::parse(&hex, "test").unwrap()
    }

    /// Pseudo-random, poorly compressible bytes so the sealed form spans many chunks.
    fn noise(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x1234_5678;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    fn err_of(sealed: &[u8], k: &EncryptionKey) -> CodecError {
        match open_bytes(k, "ctx", sealed) {
            Ok(_) => panic!("opening should fail"),
            Err(e) => e,
        }
    }

    #[test]
    fn round_trips_empty_small_chunk_sized_and_large() {
        let k = key(1);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17] {
            let plain = noise(len);
            let (sealed, info) = seal_bytes(&k, 3, "ctx", &plain).unwrap();
            assert_eq!(info.len, len as u64);
            assert_eq!(info.digest, <[u8; 32]>::from(Sha256::digest(&plain)));
            let (back, digest) = open_bytes(&k, "ctx", &sealed).unwrap();
            assert_eq!(back, plain, "len {len}");
            assert_eq!(digest, info.digest);
        }
    }

    #[test]
    fn compresses_before_encrypting() {
        let plain = vec![7u8; 4 * CHUNK];
        let (sealed, _) = seal_bytes(&key(1), 3, "ctx", &plain).unwrap();
        assert!(sealed.len() < 1024, "{} bytes", sealed.len());
    }

    #[test]
    fn same_plaintext_seals_differently() {
        let (a, _) = seal_bytes(&key(1), 3, "ctx", b"segment").unwrap();
        let (b, _) = seal_bytes(&key(1), 3, "ctx", b"segment").unwrap();
        assert_ne!(a, b, "a fresh nonce per object");
    }

    #[test]
    fn detects_flipped_bits_everywhere() {
        let k = key(1);
        let (sealed, _) = seal_bytes(&k, 1, "ctx", &noise(3 * CHUNK)).unwrap();
        // The header, a middle chunk, the last chunk and the trailer.
        for at in [
            0,
            HEADER_LEN - 1,
            HEADER_LEN + 10,
            HEADER_LEN + SEALED_CHUNK + 5,
            sealed.len() - DIGEST_LEN - 3,
            sealed.len() - 1,
        ] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            let e = err_of(&bad, &k);
            assert!(e.is_corruption(), "flip at {at}: {e}");
        }
    }

    #[test]
    fn detects_truncation_at_and_between_chunk_boundaries() {
        let k = key(1);
        let (sealed, _) = seal_bytes(&k, 1, "ctx", &noise(3 * CHUNK)).unwrap();
        assert!(sealed.len() > HEADER_LEN + 3 * SEALED_CHUNK);
        // Cut after the first chunk (+ a fake trailer's worth of bytes: looks complete).
        for cut in [
            HEADER_LEN + SEALED_CHUNK + DIGEST_LEN,
            HEADER_LEN + 2 * SEALED_CHUNK,
            sealed.len() - 1,
            HEADER_LEN + 3,
            5,
        ] {
            let e = err_of(&sealed[..cut], &k);
            assert!(e.is_corruption(), "cut at {cut}: {e}");
        }
    }

    #[test]
    fn detects_reordered_and_dropped_chunks() {
        let k = key(1);
        let (sealed, _) = seal_bytes(&k, 1, "ctx", &noise(4 * CHUNK)).unwrap();
        let c =
            |i: usize| &sealed[HEADER_LEN + i * SEALED_CHUNK..HEADER_LEN + (i + 1) * SEALED_CHUNK];
        let rest = &sealed[HEADER_LEN + 2 * SEALED_CHUNK..];
        let swapped = [&sealed[..HEADER_LEN], c(1), c(0), rest].concat();
        assert!(matches!(err_of(&swapped, &k), CodecError::Tampered));
        let dropped = [&sealed[..HEADER_LEN], c(1), rest].concat();
        assert!(matches!(err_of(&dropped, &k), CodecError::Tampered));
    }

    #[test]
    fn wrong_key_and_foreign_data_are_refused() {
        let (sealed, _) = seal_bytes(&key(1), 3, "ctx", b"wal").unwrap();
        assert!(matches!(err_of(&sealed, &key(2)), CodecError::Tampered));
        assert!(matches!(
            err_of(b"plain old file contents here", &key(1)),
            CodecError::BadHeader
        ));
    }

    #[test]
    fn an_object_moved_to_another_name_is_refused() {
        let k = key(1);
        let (sealed, _) = seal_bytes(&k, 3, "wal/1/A", b"segment A").unwrap();
        assert!(open_bytes(&k, "wal/1/A", &sealed).is_ok());
        assert!(matches!(
            open_bytes(&k, "wal/1/B", &sealed),
            Err(CodecError::Tampered)
        ));
    }

    /// A source that fails after some bytes: the failure must stay an I/O error (a
    /// retry may help), never look like corruption.
    #[test]
    fn a_failing_source_is_not_corruption() {
        struct Failing(Vec<u8>, usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() / 2 {
                    return Err(io::Error::other("connection reset"));
                }
                let n = buf.len().min(self.0.len() / 2 - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let k = key(1);
        let (sealed, _) = seal_bytes(&k, 1, "ctx", &noise(4 * CHUNK)).unwrap();
        let mut opener = open(&k, "ctx", Failing(sealed, 0)).unwrap();
        let e = CodecError::from_io(opener.read_to_end(&mut Vec::new()).unwrap_err());
        assert!(matches!(e, CodecError::Io(_)), "{e}");
        assert!(!e.is_corruption());
    }

    #[test]
    fn errors_read_clearly() {
        let msg = CodecError::Tampered.to_string();
        assert!(msg.starts_with("authentication failed"), "{msg}");
    }
}
