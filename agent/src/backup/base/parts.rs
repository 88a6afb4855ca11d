//! Cutting a stream into sealed parts and uploading them, with bounded memory.
//!
//! The blocking side ([`PartWriter`], a `Write`) seals each slice of `part_size`
//! plaintext bytes as its own object (`codec::seal`, context = the object's path) and
//! sends the sealed bytes over a bounded channel; the async side ([`upload_parts`])
//! streams them into [`Repository::upload`]. A slow repository fills the channel and
//! so slows the writer, which slows pg_basebackup: nothing is staged on disk.

use std::io::{self, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::backup::catalog::Part;
use crate::backup::codec::{self, Sealer};
use crate::backup::key::EncryptionKey;
use crate::backup::repo::{RepoError, Repository, Upload};

/// Plaintext bytes per part: large enough that per-object overhead is noise, small
/// enough that a failed part is cheap to retry and a restore can fetch in parallel.
pub const PART_SIZE: u64 = 64 * 1024 * 1024;
/// Sealed bytes per channel message.
const MESSAGE_SIZE: usize = 1024 * 1024;
/// Messages in flight between the two sides (so at most this many MiB buffered).
pub const CHANNEL_CAPACITY: usize = 8;

/// The name of part `n` inside a backup's directory.
pub fn part_name(n: u32) -> String {
    format!("base.tar.{n:05}")
}

/// From the sealing side to the uploading side, in order.
#[derive(Debug)]
pub enum Msg {
    Begin { path: String, name: String },
    Data(Bytes),
    End { plain_size: u64, sha256: String },
}

/// Sends sealed bytes in messages of about [`MESSAGE_SIZE`].
struct ChannelWriter {
    tx: mpsc::Sender<Msg>,
    buf: Vec<u8>,
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the uploader stopped")
}

impl ChannelWriter {
    fn send(&mut self, msg: Msg) -> io::Result<()> {
        self.tx.blocking_send(msg).map_err(|_| stopped())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let data = Bytes::from(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(MESSAGE_SIZE),
            ));
            self.send(Msg::Data(data))?;
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
        // Sealer::finish flushes at the very end; sending then is what we want anyway.
        self.flush_buf()
    }
}

/// The sealing side: a `Write` that cuts what it is given into parts.
pub struct PartWriter {
    tx: mpsc::Sender<Msg>,
    key: EncryptionKey,
    level: i32,
    /// The backup's directory; parts go to `<dir>/base.tar.<n>`.
    dir: String,
    part_size: u64,
    current: Option<Sealer<ChannelWriter>>,
    current_len: u64,
    next: u32,
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter")
            .field("dir", &self.dir)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl PartWriter {
    pub fn new(
        tx: mpsc::Sender<Msg>,
        key: EncryptionKey,
        level: i32,
        dir: String,
        part_size: u64,
    ) -> Self {
        Self {
            tx,
            key,
            level,
            dir,
            part_size: part_size.max(1),
            current: None,
            current_len: 0,
            next: 0,
        }
    }

    fn begin(&mut self) -> io::Result<()> {
        let name = part_name(self.next);
        let path = format!("{}/{name}", self.dir);
        self.next += 1;
        let mut inner = ChannelWriter {
            tx: self.tx.clone(),
            buf: Vec::with_capacity(MESSAGE_SIZE),
        };
        inner.send(Msg::Begin {
            path: path.clone(),
            name,
        })?;
        let sealer = codec::seal(&self.key, self.level, &path, inner).map_err(io::Error::other)?;
        self.current = Some(sealer);
        self.current_len = 0;
        Ok(())
    }

    fn end_part(&mut self) -> io::Result<()> {
        if let Some(sealer) = self.current.take() {
            let (mut inner, sealed) = sealer.finish().map_err(io::Error::other)?;
            inner.flush_buf()?;
            inner.send(Msg::End {
                plain_size: sealed.len,
                sha256: hex::encode(sealed.digest),
            })?;
        }
        Ok(())
    }

    /// Seals the last part. A stream of zero bytes still yields one (empty) part.
    pub fn finish(mut self) -> io::Result<u32> {
        if self.current.is_none() && self.next == 0 {
            self.begin()?;
        }
        self.end_part()?;
        Ok(self.next)
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.current.is_none() {
                self.begin()?;
            }
            let room = usize::try_from(self.part_size - self.current_len).unwrap_or(usize::MAX);
            let n = rest.len().min(room);
            self.current
                .as_mut()
                .expect("begun above")
                .write_all(&rest[..n])?;
            self.current_len += n as u64;
            rest = &rest[n..];
            if self.current_len == self.part_size {
                self.end_part()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("the stream ended in the middle of part {0}")]
    Unfinished(String),
    #[error("out-of-order message from the sealing side")]
    Protocol,
}

/// The uploading side: completes one object per part, in order, and returns what was
/// stored. On error the part being uploaded is aborted (earlier ones are the caller's
/// to delete).
pub async fn upload_parts(
    repo: &Repository,
    mut rx: mpsc::Receiver<Msg>,
) -> Result<Vec<Part>, UploadError> {
    let mut current: Option<(Upload, String, u64)> = None;
    let mut parts = Vec::new();
    let result = async {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Begin { path, name } => {
                    if current.is_some() {
                        return Err(UploadError::Protocol);
                    }
                    current = Some((repo.upload(&path).await?, name, 0));
                }
                Msg::Data(data) => {
                    let (up, _, stored) = current.as_mut().ok_or(UploadError::Protocol)?;
                    up.write(&data).await?;
                    *stored += data.len() as u64;
                }
                Msg::End { plain_size, sha256 } => {
                    let (up, name, stored_size) = current.take().ok_or(UploadError::Protocol)?;
                    up.finish().await?;
                    parts.push(Part {
                        name,
                        plain_size,
                        stored_size,
                        sha256,
                    });
                }
            }
        }
        match &current {
            Some((_, name, _)) => Err(UploadError::Unfinished(name.clone())),
            None => Ok(()),
        }
    }
    .await;
    // Stop the sealing side too (its next send fails).
    rx.close();
    if let Some((up, _, _)) = current.take() {
        up.abort().await;
    }
    result.map(|()| parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::repo::Repository;
    use crate::config::{RepositoryConfig, RepositoryKind};
    use std::time::Duration;

    fn key() -> EncryptionKey {
        let hex: String = (0..32u8)
            .map(|i| format!("{:02x}", i.wrapping_mul(29).wrapping_add(5)))
            .collect();
        EncryptionKey::parse(&hex, "test").unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_is_cut_into_sealed_parts_that_open_back_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(&RepositoryConfig {
            kind: RepositoryKind::Filesystem {
                path: dir.path().join("repo"),
            },
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        let data: Vec<u8> = (0..250_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let input = data.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = PartWriter::new(tx, key(), 3, "c/backups/x".into(), 100_000);
            // Odd-sized writes cross part boundaries.
            for chunk in input.chunks(33_333) {
                w.write_all(chunk)?;
            }
            w.finish()
        });
        let parts = upload_parts(&repo, rx).await.unwrap();
        assert_eq!(writer.await.unwrap().unwrap(), 3);
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
            let (plain, digest) = codec::open_bytes(&key(), &path, &sealed).unwrap();
            assert_eq!(plain.len() as u64, p.plain_size);
            assert_eq!(hex::encode(digest), p.sha256);
            joined.extend_from_slice(&plain);
        }
        assert_eq!(joined, data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_uploader_stops_the_writer() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let result = tokio::task::spawn_blocking(move || {
            let mut w = PartWriter::new(tx, key(), 1, "d".into(), 1000);
            w.write_all(&[0u8; 10])
        })
        .await
        .unwrap();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
