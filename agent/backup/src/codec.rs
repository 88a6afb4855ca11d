//! Streaming compress-then-encrypt ([`seal`]) and decrypt-then-decompress ([`open`]).
//!
//! Object format, version 2 (every object written now):
//!
//! ```text
//! header   "WRDNBK02" (8 bytes) | sequence (u64, big-endian) | nonce (19 random bytes)
//! chunks   XChaCha20-Poly1305 STREAM (BE32) over the payload
//!              zstd output ‖ SHA-256 of the plaintext (32 bytes)
//!          every chunk but the last holds exactly CHUNK payload bytes + a 16-byte tag;
//!          the last holds 1..=CHUNK + tag
//! ```
//!
//! Version 3 (base backup parts, issue 15): the version 2 layout ("WRDNBK03") with
//! no plaintext digest in the payload: the payload is a sequence of zstd frames, each
//! of at most [`FRAME`] plaintext bytes and with zstd's own content checksum (XXH64,
//! checked by the decompressor). Independent frames are compressed from the caller's
//! buffer in one call each: no copy into a streaming window, and zstd's faster
//! contiguous-window match finder (about a third less CPU than streaming one frame,
//! for a ratio a few percent lower). STREAM
//! still authenticates every byte, the header and the context; what the SHA-256 added
//! on top (an end-to-end check of the plaintext) is done, for base backups, per file
//! against the server's `backup_manifest`, so hashing every byte again here was a
//! second full pass of SHA-256 for nothing. Older Warden versions refuse a version 3
//! object as an unknown header (they cannot restore such a backup, and say so).
//!
//! Version 1 (read only, so repositories written before keep restoring):
//!
//! ```text
//! header   "WRDNBK01" (8 bytes) | nonce (19 random bytes)
//! chunks   STREAM over the zstd output alone (last chunk 0..=CHUNK + tag)
//! trailer  SHA-256 of the plaintext (32 bytes, in the clear; authenticated by the
//!          last chunk)
//! ```
//!
//! Why version 2: a clear plaintext digest is a confirmation oracle. Anyone who can
//! read the repository could hash a guess of a predictable object (a WAL segment of a
//! known workload, a catalog record, a stock config file) and compare. In version 2
//! the digest is the last 32 payload bytes, encrypted like the rest, and nothing in
//! the clear is derived from the plaintext (the object's size still is, as with any
//! encryption of compressed data).
//!
//! Why this shape: STREAM puts a chunk counter and a last-chunk flag into each nonce,
//! so a modified, dropped, reordered or truncated chunk fails authentication. Every
//! chunk authenticates the header (so the format version and the sequence) and the
//! object's *context* (associated data: its path in the repository, so a validly sealed
//! object moved to another name — one WAL segment swapped for another — fails too).
//! Fixed-size chunks need no length fields: a reader that keeps one chunk (plus, for
//! version 1, the trailer) of look-ahead knows which chunk is last. Neither side ever
//! holds more than a chunk or two in memory.
//!
//! The *sequence* is 0 for objects whose name is written once. An object that is
//! overwritten in place (the live WAL segment, see `wal_live`) carries an increasing
//! sequence, authenticated with everything else, so a reader that knows how far it got
//! can tell an older version put back from the current one; the codec itself only
//! reports it ([`Opener::sequence`]), the caller decides what is too old.
//!
//! The digest is the content checksum: the SHA-256 of what was sealed, as it was on
//! disk, so a later push of the same file can be recognised (after opening the
//! existing object with the key) and a restore verified. Nothing in Warden checks
//! objects without the key, so no keyless digest (of the ciphertext) is kept.
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

const MAGIC_LEN: usize = 8;
const MAGIC_V1: &[u8; MAGIC_LEN] = b"WRDNBK01";
const MAGIC_V2: &[u8; MAGIC_LEN] = b"WRDNBK02";
const MAGIC_V3: &[u8; MAGIC_LEN] = b"WRDNBK03";
/// STREAM-BE32 over XChaCha20 leaves 24 − 5 = 19 nonce bytes to the caller.
const NONCE_LEN: usize = 19;
const SEQUENCE_LEN: usize = 8;
const HEADER_V1_LEN: usize = MAGIC_LEN + NONCE_LEN;
const HEADER_V2_LEN: usize = MAGIC_LEN + SEQUENCE_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
const DIGEST_LEN: usize = 32;
/// Plaintext bytes per chunk: small enough to stream, large enough that the 16-byte
/// tags cost nothing (0.02 %).
pub const CHUNK: usize = 64 * 1024;
/// Plaintext bytes per zstd frame in version 3 (the base backup's channel messages
/// are this size, so a frame is compressed straight from the message).
pub const FRAME: usize = 1024 * 1024;
const SEALED_CHUNK: usize = CHUNK + TAG_LEN;

/// SHA-256 of an object's plaintext.
pub type Digest32 = [u8; DIGEST_LEN];

/// The object format a stored object was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Clear digest trailer, no sequence (read only).
    V1,
    /// Digest inside the encrypted stream, sequence in the header.
    V2,
    /// As version 2 without the digest (zstd's frame checksum instead).
    V3,
}

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

/// Starts sealing into `inner` (sequence 0: an object written once under its name).
/// Writes go through zstd at `level`, then encryption. Call [`Sealer::finish`];
/// dropping a sealer leaves an unterminated (invalid) object.
pub fn seal<W: Write>(
    key: &EncryptionKey,
    level: i32,
    context: &str,
    inner: W,
) -> Result<Sealer<W>, CodecError> {
    seal_sequenced(key, level, context, 0, inner)
}

/// [`seal`] with a `sequence` in the (authenticated) header: for an object that is
/// replaced in place, so a reader can tell versions apart.
pub fn seal_sequenced<W: Write>(
    key: &EncryptionKey,
    level: i32,
    context: &str,
    sequence: u64,
    inner: W,
) -> Result<Sealer<W>, CodecError> {
    seal_format(key, level, context, sequence, inner, Format::V2)
}

/// [`seal`] in version 3: no plaintext digest (the reported `digest` is all zeros),
/// for objects whose content is checked another way (base backup parts).
pub fn seal_unhashed<W: Write>(
    key: &EncryptionKey,
    level: i32,
    context: &str,
    inner: W,
) -> Result<Sealer<W>, CodecError> {
    seal_format(key, level, context, 0, inner, Format::V3)
}

fn seal_format<W: Write>(
    key: &EncryptionKey,
    level: i32,
    context: &str,
    sequence: u64,
    inner: W,
    format: Format,
) -> Result<Sealer<W>, CodecError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let mut header = Vec::with_capacity(HEADER_V2_LEN);
    header.extend_from_slice(if format == Format::V3 {
        MAGIC_V3
    } else {
        MAGIC_V2
    });
    header.extend_from_slice(&sequence.to_be_bytes());
    header.extend_from_slice(&nonce);
    let mut inner = inner;
    inner.write_all(&header).map_err(CodecError::Io)?;
    let encrypt = EncryptWriter {
        inner,
        encryptor: EncryptorBE32::from_aead(cipher(key), GenericArray::from_slice(&nonce)),
        aad: associated_data(&header, context),
        pending: Vec::with_capacity(SEALED_CHUNK),
    };
    let (zstd, hasher) = if format == Format::V3 {
        (Compress::frames(encrypt, level)?, None)
    } else {
        let stream = zstd::stream::write::Encoder::new(encrypt, level).map_err(CodecError::Io)?;
        (Compress::Stream(stream), Some(Sha256::new()))
    };
    Ok(Sealer {
        zstd,
        hasher,
        len: 0,
    })
}

pub struct Sealer<W: Write> {
    zstd: Compress<W>,
    /// `None` in version 3.
    hasher: Option<Sha256>,
    len: u64,
}

/// Version 2: one streaming frame. Version 3: independent frames of [`FRAME`] bytes.
enum Compress<W: Write> {
    Stream(zstd::stream::write::Encoder<'static, EncryptWriter<W>>),
    Frames {
        zstd: zstd::bulk::Compressor<'static>,
        /// Plaintext of the frame being filled (empty while writes come in whole
        /// frames: those are compressed straight from the caller's buffer).
        pending: Vec<u8>,
        /// One frame's compressed bytes.
        out: Vec<u8>,
        /// Frames written so far.
        frames: u64,
        encrypt: EncryptWriter<W>,
    },
}

impl<W: Write> Compress<W> {
    fn frames(encrypt: EncryptWriter<W>, level: i32) -> Result<Self, CodecError> {
        let mut zstd = zstd::bulk::Compressor::new(level).map_err(CodecError::Io)?;
        zstd.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .map_err(CodecError::Io)?;
        Ok(Self::Frames {
            zstd,
            pending: Vec::new(),
            out: Vec::with_capacity(zstd::zstd_safe::compress_bound(FRAME)),
            frames: 0,
            encrypt,
        })
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stream(s) => s.write(buf),
            Self::Frames {
                zstd,
                pending,
                out,
                frames,
                encrypt,
            } => {
                let mut rest = buf;
                while !rest.is_empty() {
                    if pending.is_empty() && rest.len() >= FRAME {
                        frame(zstd, &rest[..FRAME], out, encrypt)?;
                        *frames += 1;
                        rest = &rest[FRAME..];
                        continue;
                    }
                    let n = rest.len().min(FRAME - pending.len());
                    pending.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if pending.len() == FRAME {
                        frame(zstd, pending, out, encrypt)?;
                        *frames += 1;
                        pending.clear();
                    }
                }
                Ok(buf.len())
            }
        }
    }

    fn finish(self) -> io::Result<EncryptWriter<W>> {
        match self {
            Self::Stream(s) => s.finish(),
            Self::Frames {
                mut zstd,
                pending,
                mut out,
                frames,
                mut encrypt,
            } => {
                // An empty object still holds one (empty) frame, as version 2 does.
                if !pending.is_empty() || frames == 0 {
                    frame(&mut zstd, &pending, &mut out, &mut encrypt)?;
                }
                Ok(encrypt)
            }
        }
    }
}

/// Compresses `plain` as one frame and passes it on to the cipher.
fn frame<W: Write>(
    zstd: &mut zstd::bulk::Compressor<'static>,
    plain: &[u8],
    out: &mut Vec<u8>,
    encrypt: &mut EncryptWriter<W>,
) -> io::Result<()> {
    out.clear();
    zstd.compress_to_buffer(plain, out)?;
    encrypt.write_all(out)
}

impl<W: Write> std::fmt::Debug for Sealer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("len", &self.len).finish()
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.zstd.write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.zstd {
            Compress::Stream(s) => s.flush(),
            // Frames are only cut at FRAME bytes or at the end: cutting one early would
            // only lower the ratio.
            Compress::Frames { .. } => Ok(()),
        }
    }
}

impl<W: Write> Sealer<W> {
    /// Ends the zstd frame, appends the digest to the payload and seals the last chunk.
    pub fn finish(self) -> Result<(W, Sealed), CodecError> {
        let digest: Option<Digest32> = self.hasher.map(|h| h.finalize().into());
        let encrypt = self.zstd.finish().map_err(CodecError::from_io)?;
        let inner = encrypt.finish(digest.as_ref())?;
        let digest = digest.unwrap_or([0u8; DIGEST_LEN]);
        Ok((
            inner,
            Sealed {
                digest,
                len: self.len,
            },
        ))
    }
}

/// Cuts the payload (compressed stream, then digest) into chunks and encrypts each.
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
    /// The digest goes through the same chunking as the compressed data, so it may
    /// straddle the last two chunks; the last chunk is never empty.
    fn finish(mut self, digest: Option<&Digest32>) -> Result<W, CodecError> {
        if let Some(digest) = digest {
            self.write_all(digest).map_err(CodecError::Io)?;
        }
        let sealed = self
            .encryptor
            .encrypt_last(Payload {
                msg: &self.pending,
                aad: &self.aad,
            })
            .map_err(|_| CodecError::Io(io::Error::other("encryption failed")))?;
        self.inner.write_all(&sealed).map_err(CodecError::Io)?;
        self.inner.flush().map_err(CodecError::Io)?;
        Ok(self.inner)
    }
}

/// Starts opening a sealed stream (either format): reads and checks the header.
pub fn open<R: Read>(
    key: &EncryptionKey,
    context: &str,
    mut inner: R,
) -> Result<Opener<R>, CodecError> {
    let mut magic = [0u8; MAGIC_LEN];
    read_full(&mut inner, &mut magic).map_err(CodecError::from_io)?;
    let (format, header_len) = match &magic {
        m if m == MAGIC_V2 => (Format::V2, HEADER_V2_LEN),
        m if m == MAGIC_V3 => (Format::V3, HEADER_V2_LEN),
        m if m == MAGIC_V1 => (Format::V1, HEADER_V1_LEN),
        _ => return Err(CodecError::BadHeader),
    };
    let mut header = vec![0u8; header_len];
    header[..MAGIC_LEN].copy_from_slice(&magic);
    read_full(&mut inner, &mut header[MAGIC_LEN..]).map_err(CodecError::from_io)?;
    let sequence = match format {
        Format::V1 => None,
        Format::V2 | Format::V3 => {
            let mut seq = [0u8; SEQUENCE_LEN];
            seq.copy_from_slice(&header[MAGIC_LEN..MAGIC_LEN + SEQUENCE_LEN]);
            Some(u64::from_be_bytes(seq))
        }
    };
    let decryptor = DecryptorBE32::from_aead(
        cipher(key),
        GenericArray::from_slice(&header[header_len - NONCE_LEN..]),
    );
    let decrypt = DecryptReader {
        inner,
        format,
        decryptor: Some(decryptor),
        aad: associated_data(&header, context),
        sealed: Vec::with_capacity(2 * SEALED_CHUNK),
        plain: Vec::new(),
        pos: 0,
        held: Vec::new(),
        digest: None,
        source_done: false,
    };
    let zstd = zstd::stream::read::Decoder::new(decrypt).map_err(CodecError::Io)?;
    Ok(Opener {
        zstd,
        hasher: (format != Format::V3).then(Sha256::new),
        done: false,
        format,
        sequence,
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
    /// `None` in version 3 (zstd checks its frame checksum itself).
    hasher: Option<Sha256>,
    done: bool,
    format: Format,
    sequence: Option<u64>,
}

impl<R: Read> std::fmt::Debug for Opener<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("done", &self.done)
            .field("format", &self.format)
            .field("sequence", &self.sequence)
            .finish()
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
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
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
        let Some(hasher) = self.hasher.clone() else {
            // Version 3: the last chunk authenticated (so nothing was cut), and zstd
            // checked its frame's content checksum at the frame's end.
            return Ok(());
        };
        let expected = decrypt
            .digest
            .ok_or_else(|| io_err(CodecError::Truncated))?;
        let actual: Digest32 = hasher.finalize().into();
        if actual != expected {
            return Err(io_err(CodecError::ChecksumMismatch));
        }
        Ok(())
    }

    /// The sealed checksum; known only once [`Read::read`] returned 0 (so `Some`
    /// also means the whole object was read and authenticated). Version 3 seals no
    /// digest: all zeros.
    pub fn digest(&self) -> Option<Digest32> {
        if !self.done {
            return None;
        }
        if self.format == Format::V3 {
            return Some([0u8; DIGEST_LEN]);
        }
        self.zstd.get_ref().get_ref().digest
    }

    /// The object's format (from its header).
    pub fn format(&self) -> Format {
        self.format
    }

    /// The header's sequence (`None` for a version 1 object, which has none). Read
    /// from the header at once, but authenticated only with the first chunk: trust it
    /// once [`Read::read`] returned 0, like the content.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }
}

/// Authenticates and decrypts chunk by chunk, keeping a chunk (plus the version 1
/// trailer) of look-ahead to know which chunk is the last. For version 2 it also
/// holds back the last [`DIGEST_LEN`] payload bytes seen, which are the digest once
/// the last chunk is opened.
struct DecryptReader<R: Read> {
    inner: R,
    format: Format,
    /// `None` once the last chunk was opened.
    decryptor: Option<DecryptorBE32<XChaCha20Poly1305>>,
    aad: Vec<u8>,
    sealed: Vec<u8>,
    plain: Vec<u8>,
    pos: usize,
    /// Version 2: payload bytes that may still turn out to be (part of) the digest.
    held: Vec<u8>,
    digest: Option<Digest32>,
    source_done: bool,
}

impl<R: Read> DecryptReader<R> {
    /// The clear trailer after the last chunk.
    fn trailer_len(&self) -> usize {
        match self.format {
            Format::V1 => DIGEST_LEN,
            Format::V2 | Format::V3 => 0,
        }
    }

    /// Reads from the source until more than one sealed chunk plus trailer is buffered,
    /// or the source ends.
    fn fill(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; SEALED_CHUNK];
        let want = SEALED_CHUNK + self.trailer_len();
        while !self.source_done && self.sealed.len() <= want {
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
        let trailer = self.trailer_len();
        let (opened, last) = if self.sealed.len() > SEALED_CHUNK + trailer {
            let decryptor = self.decryptor.as_mut().expect("checked above");
            let opened = decryptor
                .decrypt_next(Payload {
                    msg: &self.sealed[..SEALED_CHUNK],
                    aad: &self.aad,
                })
                .map_err(|_| io_err(CodecError::Tampered))?;
            self.sealed.drain(..SEALED_CHUNK);
            (opened, false)
        } else {
            if self.sealed.len() < TAG_LEN + trailer {
                return Err(io_err(CodecError::Truncated));
            }
            let split = self.sealed.len() - trailer;
            // Version 1: the clear trailer is authenticated as associated data of
            // the last chunk.
            let aad = [&self.aad[..], &self.sealed[split..]].concat();
            let decryptor = self.decryptor.take().expect("checked above");
            let opened = decryptor
                .decrypt_last(Payload {
                    msg: &self.sealed[..split],
                    aad: &aad,
                })
                .map_err(|_| io_err(CodecError::Tampered))?;
            if self.format == Format::V1 {
                let mut digest = [0u8; DIGEST_LEN];
                digest.copy_from_slice(&self.sealed[split..]);
                self.digest = Some(digest);
            }
            self.sealed.clear();
            (opened, true)
        };
        self.plain = match self.format {
            Format::V1 | Format::V3 => opened,
            Format::V2 => self.split_digest(&opened, last)?,
        };
        self.pos = 0;
        Ok(true)
    }

    /// Version 2: returns the payload bytes that are certainly compressed data, and
    /// at the last chunk takes the final [`DIGEST_LEN`] bytes as the digest.
    fn split_digest(&mut self, opened: &[u8], last: bool) -> io::Result<Vec<u8>> {
        let mut all = std::mem::take(&mut self.held);
        all.extend_from_slice(opened);
        let Some(keep) = all.len().checked_sub(DIGEST_LEN) else {
            // Only the last chunk can leave fewer: an authenticated payload too short
            // to hold a digest was not written by Warden.
            return Err(io_err(CodecError::Truncated));
        };
        let tail = all.split_off(keep);
        if last {
            let mut digest = [0u8; DIGEST_LEN];
            digest.copy_from_slice(&tail);
            self.digest = Some(digest);
        } else {
            self.held = tail;
        }
        Ok(all)
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
/// apart). The header carries the format version and, in version 2, the sequence.
fn associated_data(header: &[u8], context: &str) -> Vec<u8> {
    let len = u64::try_from(context.len()).unwrap_or(u64::MAX);
    [header, &len.to_be_bytes(), context.as_bytes()].concat()
}

/// Seals all of `plain` into memory (small objects, tests).
pub fn seal_bytes(
    key: &EncryptionKey,
    level: i32,
    context: &str,
    plain: &[u8],
) -> Result<(Vec<u8>, Sealed), CodecError> {
    seal_bytes_sequenced(key, level, context, 0, plain)
}

/// [`seal_bytes`] with a header sequence (see [`seal_sequenced`]).
pub fn seal_bytes_sequenced(
    key: &EncryptionKey,
    level: i32,
    context: &str,
    sequence: u64,
    plain: &[u8],
) -> Result<(Vec<u8>, Sealed), CodecError> {
    let mut sealer = seal_sequenced(key, level, context, sequence, Vec::new())?;
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
pub(crate) mod tests;
