//! Cutting a stream into sealed parts and uploading them, with bounded memory.
//!
//! Three stages joined by bounded channels, so each runs on its own core:
//!
//! - [`Splitter`] (a `Write`, on the reading thread) cuts the plaintext stream into
//!   slices of `part_size` bytes and hands part `n` to sealing worker `n % workers`;
//! - [`seal_worker`] (one blocking thread each) seals every part it is given as its own
//!   object (`codec::seal`, context = the object's path) and sends the sealed bytes on;
//! - [`upload_parts`] (async) streams each part into its own [`Repository::upload`].
//!
//! A slow repository fills the channels and so slows the reader, which slows
//! pg_basebackup: nothing is staged on disk.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::catalog::Part;
use crate::codec::{self, Sealer};
use crate::key::EncryptionKey;
use crate::repo::{RepoError, Repository, Upload};

/// Plaintext bytes per part: large enough that per-object overhead is noise, small
/// enough that a failed part is cheap to retry and a restore can fetch in parallel.
pub const PART_SIZE: u64 = 64 * 1024 * 1024;
/// Bytes per channel message (plaintext or sealed): one codec frame.
const MESSAGE_SIZE: usize = crate::codec::FRAME;
/// Sealed messages in flight to the uploader.
pub const CHANNEL_CAPACITY: usize = 8;
/// Plaintext messages in flight to each sealing worker.
pub const RAW_CAPACITY: usize = 8;

/// The name of part `n` inside a backup's directory.
pub fn part_name(n: u32) -> String {
    format!("base.tar.{n:05}")
}

/// Sealing workers: compression dominates the cost, and parts are independent.
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .clamp(2, 4)
}

/// From the reader to one sealing worker.
#[derive(Debug)]
pub enum Raw {
    Begin(u32),
    Data(Vec<u8>),
    End,
}

/// From the sealing workers to the uploader; messages of one part come in order,
/// parts interleave.
#[derive(Debug)]
pub enum Msg {
    Begin {
        part: u32,
        path: String,
    },
    Data {
        part: u32,
        data: Bytes,
    },
    End {
        part: u32,
        plain_size: u64,
        sha256: String,
    },
}

fn stopped(who: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, format!("the {who} stopped"))
}

/// The reading side's sink.
#[derive(Debug)]
pub struct Splitter {
    workers: Vec<SyncSender<Raw>>,
    part_size: u64,
    /// The part being cut and how much of it was cut.
    current: Option<u32>,
    in_part: u64,
    next: u32,
    buf: Vec<u8>,
}

impl Splitter {
    pub fn new(workers: Vec<SyncSender<Raw>>, part_size: u64) -> Self {
        assert!(!workers.is_empty(), "at least one sealing worker");
        Self {
            workers,
            part_size: part_size.max(1),
            current: None,
            in_part: 0,
            next: 0,
            buf: Vec::with_capacity(MESSAGE_SIZE),
        }
    }

    fn send(&self, part: u32, msg: Raw) -> io::Result<()> {
        let w = part as usize % self.workers.len();
        self.workers[w]
            .send(msg)
            .map_err(|_| stopped("sealing worker"))
    }

    fn begin(&mut self) -> io::Result<u32> {
        let part = self.next;
        self.next += 1;
        self.send(part, Raw::Begin(part))?;
        self.current = Some(part);
        self.in_part = 0;
        Ok(part)
    }

    fn send_buf(&mut self, part: u32) -> io::Result<()> {
        if !self.buf.is_empty() {
            let data = std::mem::replace(&mut self.buf, Vec::with_capacity(MESSAGE_SIZE));
            self.send(part, Raw::Data(data))?;
        }
        Ok(())
    }

    fn end(&mut self, part: u32) -> io::Result<()> {
        self.send_buf(part)?;
        self.send(part, Raw::End)?;
        self.current = None;
        Ok(())
    }

    /// Ends the last part (a stream of zero bytes still yields one, empty, part) and
    /// lets the workers finish. Returns the number of parts.
    pub fn finish(mut self) -> io::Result<u32> {
        let part = match self.current {
            Some(p) => p,
            None if self.next == 0 => self.begin()?,
            None => return Ok(self.next),
        };
        self.end(part)?;
        Ok(self.next)
    }
}

impl Write for Splitter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let part = match self.current {
                Some(p) => p,
                None => self.begin()?,
            };
            let room = usize::try_from(self.part_size - self.in_part).unwrap_or(usize::MAX);
            // Messages of exactly MESSAGE_SIZE (= codec::FRAME): the sealer compresses
            // each as one frame straight from the message, without gathering it again.
            let n = rest.len().min(room).min(MESSAGE_SIZE - self.buf.len());
            self.buf.extend_from_slice(&rest[..n]);
            self.in_part += n as u64;
            rest = &rest[n..];
            if self.in_part == self.part_size {
                self.end(part)?;
            } else if self.buf.len() >= MESSAGE_SIZE {
                self.send_buf(part)?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends one part's sealed bytes in messages of about [`MESSAGE_SIZE`].
struct ChannelWriter {
    tx: mpsc::Sender<Msg>,
    part: u32,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self, msg: Msg) -> io::Result<()> {
        self.tx.blocking_send(msg).map_err(|_| stopped("uploader"))
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let data = Bytes::from(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(MESSAGE_SIZE),
            ));
            let part = self.part;
            self.send(Msg::Data { part, data })?;
        }
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= MESSAGE_SIZE {
            self.flush_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

/// How a sealing worker seals.
#[derive(Clone)]
pub struct SealSpec {
    pub key: EncryptionKey,
    pub level: i32,
    /// The backup's directory; parts go to `<dir>/base.tar.<n>`.
    pub dir: String,
}

impl std::fmt::Debug for SealSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealSpec")
            .field("level", &self.level)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// One sealing worker (a blocking thread). Ends when the splitter is gone; a part
/// left unfinished then is a broken stream (`UnexpectedEof`).
pub fn seal_worker(rx: &Receiver<Raw>, tx: &mpsc::Sender<Msg>, spec: &SealSpec) -> io::Result<()> {
    let mut current: Option<(u32, Sealer<ChannelWriter>)> = None;
    loop {
        match rx.recv() {
            Ok(Raw::Begin(part)) => {
                let path = format!("{}/{}", spec.dir, part_name(part));
                let mut inner = ChannelWriter {
                    tx: tx.clone(),
                    part,
                    buf: Vec::with_capacity(MESSAGE_SIZE),
                };
                inner.send(Msg::Begin {
                    part,
                    path: path.clone(),
                })?;
                // Codec version 3: no SHA-256 of the part (the files inside are checked
                // against backup_manifest); STREAM authenticates every byte.
                let sealer = codec::seal_unhashed(&spec.key, spec.level, &path, inner)
                    .map_err(io::Error::other)?;
                current = Some((part, sealer));
            }
            Ok(Raw::Data(data)) => match current.as_mut() {
                Some((_, sealer)) => sealer.write_all(&data)?,
                None => return Err(io::Error::other("data outside a part")),
            },
            Ok(Raw::End) => {
                let (part, sealer) = current
                    .take()
                    .ok_or_else(|| io::Error::other("end outside a part"))?;
                let (mut inner, sealed) = sealer.finish().map_err(io::Error::other)?;
                inner.flush_buf()?;
                inner.send(Msg::End {
                    part,
                    plain_size: sealed.len,
                    // Version 3 parts carry no digest; the record says so with "".
                    sha256: String::new(),
                })?;
            }
            Err(_) if current.is_some() => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the reading side stopped in the middle of a part",
                ))
            }
            Err(_) => return Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("the stream ended in the middle of part {0}")]
    Unfinished(String),
    #[error("inconsistent messages from the sealing workers: {0}")]
    Protocol(String),
}

/// The uploading side: one object per part (several at once), and what was stored, in
/// part order. On error the uploads in progress are aborted (completed parts are the
/// caller's to delete).
pub async fn upload_parts(
    repo: &Repository,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<Vec<Part>, UploadError> {
    let mut open: HashMap<u32, (Upload, u64)> = HashMap::new();
    let mut parts: Vec<(u32, Part)> = Vec::new();
    let proto = |m: String| UploadError::Protocol(m);
    let result = async {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Begin { part, path } => {
                    if open.contains_key(&part) {
                        return Err(proto(format!("part {part} begun twice")));
                    }
                    open.insert(part, (repo.upload(&path).await?, 0));
                }
                Msg::Data { part, data } => {
                    let (up, stored) = open
                        .get_mut(&part)
                        .ok_or_else(|| proto(format!("data for part {part} before it began")))?;
                    up.write(&data).await?;
                    *stored += data.len() as u64;
                }
                Msg::End {
                    part,
                    plain_size,
                    sha256,
                } => {
                    let (up, stored_size) = open
                        .remove(&part)
                        .ok_or_else(|| proto(format!("end of part {part} before it began")))?;
                    up.finish().await?;
                    parts.push((
                        part,
                        Part {
                            name: part_name(part),
                            plain_size,
                            stored_size,
                            sha256,
                        },
                    ));
                }
            }
        }
        if let Some(part) = open.keys().min() {
            return Err(UploadError::Unfinished(part_name(*part)));
        }
        parts.sort_by_key(|(n, _)| *n);
        if let Some((i, (n, _))) = parts
            .iter()
            .enumerate()
            .find(|(i, (n, _))| *n as usize != *i)
        {
            return Err(proto(format!("part {i} missing (next is {n})")));
        }
        Ok(())
    }
    .await;
    // Stop the sealing side too (its next send fails).
    rx.close();
    for (_, (up, _)) in open.drain() {
        up.abort().await;
    }
    result.map(|()| parts.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;
    use std::io::Read;
    use std::time::Duration;
    use warden_config::{RepositoryConfig, RepositoryKind};

    fn key() -> EncryptionKey {
        let hex: String = (0..32u8)
            .map(|i| format!("{:02x}", i.wrapping_mul(29).wrapping_add(5)))
            .collect();
        EncryptionKey::parse(&hex, "test").unwrap()
    }

    /// Splitter, `n` workers and the uploader, as `take` wires them.
    async fn run(
        repo: &Repository,
        n: usize,
        part_size: u64,
        feed: impl FnOnce(&mut Splitter) -> io::Result<()> + Send + 'static,
    ) -> (
        io::Result<u32>,
        Vec<io::Result<()>>,
        Result<Vec<Part>, UploadError>,
    ) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let spec = SealSpec {
            key: key(),
            level: 3,
            dir: "c/backups/x".into(),
        };
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..n {
            let (wtx, wrx) = std::sync::mpsc::sync_channel(RAW_CAPACITY);
            senders.push(wtx);
            let (tx, spec) = (tx.clone(), spec.clone());
            handles.push(tokio::task::spawn_blocking(move || {
                seal_worker(&wrx, &tx, &spec)
            }));
        }
        drop(tx);
        let reader = tokio::task::spawn_blocking(move || {
            let mut s = Splitter::new(senders, part_size);
            feed(&mut s)?;
            s.finish()
        });
        let uploaded = upload_parts(repo, rx).await;
        let mut workers = Vec::new();
        for h in handles {
            workers.push(h.await.unwrap());
        }
        (reader.await.unwrap(), workers, uploaded)
    }

    fn repo(dir: &std::path::Path) -> Repository {
        Repository::open(&RepositoryConfig {
            kind: RepositoryKind::Filesystem {
                path: dir.join("repo"),
            },
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_is_cut_into_sealed_parts_that_open_back_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let data: Vec<u8> = (0..250_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let input = data.clone();
        let (read, workers, uploaded) = run(&repo, 2, 100_000, move |s| {
            // Odd-sized writes cross part boundaries.
            for chunk in input.chunks(33_333) {
                s.write_all(chunk)?;
            }
            Ok(())
        })
        .await;
        assert_eq!(read.unwrap(), 3);
        assert!(workers.iter().all(Result::is_ok), "{workers:?}");
        let parts = uploaded.unwrap();
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["base.tar.00000", "base.tar.00001", "base.tar.00002"]
        );
        let mut joined = Vec::new();
        for p in &parts {
            let path = format!("c/backups/x/{}", p.name);
            let sealed = repo.get(&path).await.unwrap();
            assert_eq!(sealed.len() as u64, p.stored_size);
            let mut opener = codec::open(&key(), &path, &sealed[..]).unwrap();
            let mut plain = Vec::new();
            opener.read_to_end(&mut plain).unwrap();
            assert_eq!(opener.format(), codec::Format::V3);
            assert_eq!(opener.digest(), Some([0u8; 32]));
            assert_eq!(plain.len() as u64, p.plain_size);
            assert_eq!(p.sha256, "");
            joined.extend_from_slice(&plain);
        }
        assert_eq!(joined, data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_that_breaks_mid_part_commits_no_part() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let (read, workers, uploaded) = run(&repo, 2, 100_000, |s| {
            s.write_all(&[1u8; 150_000])?;
            Err(io::Error::other("pg_basebackup died"))
        })
        .await;
        assert!(read.is_err());
        assert!(
            workers.iter().any(|w| w
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::UnexpectedEof)),
            "{workers:?}"
        );
        assert!(
            matches!(uploaded, Err(UploadError::Unfinished(_))),
            "{uploaded:?}"
        );
        assert!(
            !repo.exists("c/backups/x/base.tar.00001").await.unwrap(),
            "the unfinished part is not visible"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_uploader_stops_the_workers_and_the_reader() {
        let (wtx, wrx) = std::sync::mpsc::sync_channel(1);
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let spec = SealSpec {
            key: key(),
            level: 1,
            dir: "d".into(),
        };
        let worker = tokio::task::spawn_blocking(move || seal_worker(&wrx, &tx, &spec));
        let reader = tokio::task::spawn_blocking(move || {
            let mut s = Splitter::new(vec![wtx], 1000);
            s.write_all(&[0u8; 10_000])
        });
        assert_eq!(
            worker.await.unwrap().unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert_eq!(
            reader.await.unwrap().unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
