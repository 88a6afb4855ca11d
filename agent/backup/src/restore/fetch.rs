//! The download side of a restore: the backup's parts are fetched in order by an async
//! task and handed, chunk by chunk through a bounded channel, to a blocking reader
//! that opens each part with the codec and yields the concatenated tar stream. Memory
//! stays bounded by the channel's capacity, whatever the backup's size.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use super::RestoreError;
use crate::catalog::Part;
use crate::codec::{self, CodecError, Opener};
use crate::key::EncryptionKey;
use crate::repo::Repository;

/// Chunks in flight between the download task and the extractor.
pub(super) const CHANNEL_CAPACITY: usize = 32;

pub(super) enum Msg {
    Chunk(Bytes),
    /// The current part's object ended.
    EndOfPart,
}

/// Downloads `parts` (object paths) in order into `tx`. Returns the time spent waiting
/// for the repository (the "fetch" share of the restore). Stops quietly when the
/// extractor hung up (it failed; its error is the one reported).
pub(super) async fn send_parts(
    repo: &Repository,
    paths: &[String],
    tx: mpsc::Sender<Msg>,
) -> Result<(Duration, u64), RestoreError> {
    let mut waited = Duration::ZERO;
    let mut stored = 0u64;
    for path in paths {
        let started = Instant::now();
        let mut download = repo.download(path).await?;
        waited += started.elapsed();
        loop {
            let started = Instant::now();
            let chunk = download.next_chunk().await?;
            waited += started.elapsed();
            let Some(chunk) = chunk else { break };
            stored += chunk.len() as u64;
            if tx.send(Msg::Chunk(chunk)).await.is_err() {
                return Ok((waited, stored));
            }
        }
        if tx.send(Msg::EndOfPart).await.is_err() {
            return Ok((waited, stored));
        }
    }
    Ok((waited, stored))
}

/// The sealed bytes of one part, read from the channel.
struct ChunkReader {
    rx: Arc<std::sync::Mutex<mpsc::Receiver<Msg>>>,
    buf: Bytes,
    ended: bool,
    /// Nanoseconds spent blocked on the channel (shared with [`PartsReader`]).
    waited: Arc<AtomicU64>,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            if self.ended {
                return Ok(0);
            }
            let started = Instant::now();
            let msg = self
                .rx
                .lock()
                .map_err(|_| io::Error::other("download channel poisoned"))?
                .blocking_recv();
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.waited.fetch_add(nanos, Ordering::Relaxed);
            match msg {
                Some(Msg::Chunk(b)) => self.buf = b,
                Some(Msg::EndOfPart) => self.ended = true,
                // The download task stopped early: its own error is reported.
                None => return Err(io::Error::other("the download stopped")),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(n)
    }
}

/// The plaintext tar stream across all parts; each part's digest is checked against
/// the record when it ends. Errors travel as `io::Error` wrapping a [`RestoreError`].
pub(super) struct PartsReader {
    key: EncryptionKey,
    parts: Vec<(String, Part)>,
    next: usize,
    current: Option<(usize, Opener<ChunkReader>)>,
    rx: Arc<std::sync::Mutex<mpsc::Receiver<Msg>>>,
    pub(super) waited: Arc<AtomicU64>,
    pub(super) plain_bytes: u64,
}

impl PartsReader {
    /// `parts`: (object path, record entry) in order.
    pub(super) fn new(
        key: EncryptionKey,
        parts: Vec<(String, Part)>,
        rx: mpsc::Receiver<Msg>,
    ) -> Self {
        Self {
            key,
            parts,
            next: 0,
            current: None,
            rx: Arc::new(std::sync::Mutex::new(rx)),
            waited: Arc::new(AtomicU64::new(0)),
            plain_bytes: 0,
        }
    }
}

fn wrap(e: RestoreError) -> io::Error {
    io::Error::other(e)
}

/// Recovers a [`RestoreError`] carried through `io::Error` (else a local I/O error).
pub(super) fn unwrap_io(e: io::Error, what: &std::path::Path) -> RestoreError {
    if e.get_ref().is_some_and(|i| i.is::<RestoreError>()) {
        if let Ok(inner) = e.into_inner().expect("checked").downcast::<RestoreError>() {
            return *inner;
        }
        return RestoreError::Tar("unreadable error".into());
    }
    RestoreError::Io {
        path: what.to_path_buf(),
        source: e,
    }
}

impl Read for PartsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() {
                if self.next == self.parts.len() {
                    return Ok(0);
                }
                let path = &self.parts[self.next].0;
                let source = ChunkReader {
                    rx: self.rx.clone(),
                    buf: Bytes::new(),
                    ended: false,
                    waited: self.waited.clone(),
                };
                let opener = codec::open(&self.key, path, source).map_err(|source| {
                    wrap(RestoreError::Corrupt {
                        object: path.clone(),
                        source,
                    })
                })?;
                self.current = Some((self.next, opener));
                self.next += 1;
            }
            let (index, opener) = self.current.as_mut().expect("set above");
            let object = &self.parts[*index].0;
            let n = opener.read(out).map_err(|e| match CodecError::from_io(e) {
                // Reading the download failed (its own error is reported first).
                CodecError::Io(inner) => {
                    wrap(RestoreError::Tar(format!("reading {object}: {inner}")))
                }
                source => wrap(RestoreError::Corrupt {
                    object: object.clone(),
                    source,
                }),
            })?;
            if n > 0 {
                self.plain_bytes += n as u64;
                return Ok(n);
            }
            // End of this part: its sealed digest must be the record's.
            let got = opener.digest().map(hex::encode).unwrap_or_default();
            let part = &self.parts[*index].1;
            // An empty record checksum: a codec version 3 part (no digest sealed;
            // authenticated, and its files are checked against backup_manifest).
            if !part.sha256.is_empty() && !got.eq_ignore_ascii_case(&part.sha256) {
                return Err(wrap(RestoreError::PartDigest {
                    object: object.clone(),
                    expected: part.sha256.clone(),
                    got,
                }));
            }
            self.current = None;
        }
    }
}

/// Plaintext chunks handed from the decoding thread to the extractor.
const PLAIN_CHUNK: usize = 256 * 1024;
const PLAIN_CAPACITY: usize = 16;

/// Runs `parts` (authenticate, decompress, check) on a thread of its own, so opening
/// the parts and unpacking the files use two cores; returns the plaintext stream.
/// Memory stays bounded: at most `PLAIN_CAPACITY` chunks of `PLAIN_CHUNK` in flight.
pub(super) fn decode_ahead(mut parts: PartsReader) -> io::Result<PlainReader> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(PLAIN_CAPACITY);
    std::thread::Builder::new()
        .name("restore-decode".into())
        .spawn(move || loop {
            let mut buf = vec![0u8; PLAIN_CHUNK];
            let msg = match read_some(&mut parts, &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(e) => Err(e),
            };
            let last = !matches!(&msg, Ok(b) if !b.is_empty());
            // The extractor hung up (it failed): stop quietly, its error is reported.
            if tx.send(msg).is_err() || last {
                return;
            }
        })?;
    Ok(PlainReader {
        rx,
        buf: Vec::new(),
        pos: 0,
        done: false,
    })
}

/// Fills `buf` as far as the stream allows (fewer, larger messages).
fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The plaintext tar stream from [`decode_ahead`]; an empty chunk marks its end.
pub(super) struct PlainReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for PlainReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(b)) if b.is_empty() => self.done = true,
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => return Err(io::Error::other("the decoding thread stopped")),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
