//! One object from the main repository into a copy, streamed, authenticated on the
//! way: the source is opened with the main key to its authenticated end, and only then
//! is the copy's upload completed (an object that does not authenticate leaves
//! nothing in the copy). With the same key the sealed bytes go across unchanged; with
//! the copy's own key the plaintext is sealed again (same path as context, same
//! sequence), so the copy opens with its key alone.
//!
//! The codec is synchronous (`Read`/`Write`), so it runs on a blocking thread between
//! two bounded channels: downloaded chunks in, bytes to upload out. Memory stays a few
//! chunks whatever the object's size.

use std::io::{self, Read, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::codec::{self, CodecError};
use crate::key::EncryptionKey;
use crate::repo::{RepoError, Repository};

/// Chunks in flight each way.
const CHANNEL: usize = 8;
/// Bytes gathered before one is handed to the upload.
const OUT_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The source object does not authenticate (or is not a Warden object): it is
    /// never copied, and retrying will not help.
    #[error("{path} does not authenticate in the main repository: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: CodecError,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("copying {path}: {message}")]
    Other { path: String, message: String },
}

/// How the copy is sealed.
#[derive(Debug, Clone)]
pub enum Seal {
    /// The copy uses the main key: the bytes go across as they are.
    Verbatim,
    /// The copy's own key (and the compression level to seal with).
    Reseal(EncryptionKey, i32),
}

/// Copies `path` from `src` (opened with `src_key`) to `dst`. Returns the bytes
/// written to the copy.
pub async fn copy_object(
    src: &Repository,
    src_key: &EncryptionKey,
    dst: &Repository,
    seal: &Seal,
    path: &str,
) -> Result<u64, TransferError> {
    let mut download = src.download(path).await?;
    let mut upload = dst.upload(path).await?;
    let (in_tx, in_rx) = mpsc::channel::<Bytes>(CHANNEL);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(CHANNEL);
    let worker = {
        let key = src_key.clone();
        let seal = seal.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || transform(&key, &seal, &path, in_rx, out_tx))
    };
    let feed = async {
        while let Some(chunk) = download.next_chunk().await? {
            if in_tx.send(chunk).await.is_err() {
                // The worker stopped (its error is the one reported).
                break;
            }
        }
        drop(in_tx);
        Ok::<(), RepoError>(())
    };
    let drain = async {
        let mut written = 0u64;
        while let Some(bytes) = out_rx.recv().await {
            written += bytes.len() as u64;
            upload.write(&bytes).await?;
        }
        Ok::<u64, RepoError>(written)
    };
    let (fed, drained) = tokio::join!(feed, drain);
    let transformed = worker.await.map_err(|e| TransferError::Other {
        path: path.to_owned(),
        message: format!("the codec thread failed: {e}"),
    });
    match (fed, drained, transformed) {
        (Ok(()), Ok(written), Ok(Ok(()))) => {
            upload.finish().await?;
            Ok(written)
        }
        (_, _, Ok(Err(source))) if source.is_corruption() => {
            upload.abort().await;
            Err(TransferError::Corrupt {
                path: path.to_owned(),
                source,
            })
        }
        (Err(e), _, _) | (_, Err(e), _) => {
            upload.abort().await;
            Err(e.into())
        }
        (_, _, Ok(Err(e))) => {
            upload.abort().await;
            Err(TransferError::Other {
                path: path.to_owned(),
                message: e.to_string(),
            })
        }
        (_, _, Err(e)) => {
            upload.abort().await;
            Err(e)
        }
    }
}

/// The blocking half: open the source to its authenticated end; forward its bytes
/// (verbatim) or the re-sealed plaintext (own key).
fn transform(
    key: &EncryptionKey,
    seal: &Seal,
    path: &str,
    rx: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Vec<u8>>,
) -> Result<(), CodecError> {
    let input = ChannelReader {
        rx,
        buf: Bytes::new(),
    };
    let mut out = ChannelWriter {
        tx,
        buf: Vec::with_capacity(OUT_CHUNK),
    };
    match seal {
        Seal::Verbatim => {
            let tee = Tee {
                inner: input,
                out: &mut out,
            };
            let mut opener = codec::open(key, path, tee)?;
            io::copy(&mut opener, &mut io::sink()).map_err(CodecError::from_io)?;
            opener.digest().ok_or(CodecError::Truncated)?;
        }
        Seal::Reseal(copy_key, level) => {
            let mut opener = codec::open(key, path, input)?;
            let sequence = opener.sequence().unwrap_or(0);
            // The same format as the source: a base backup part sealed without the
            // plaintext digest (format 3) stays so, and its stored size matches the
            // record's when the copy compresses at the same level.
            let mut sealer = if opener.format() == codec::Format::V3 {
                codec::seal_unhashed(copy_key, *level, path, &mut out)?
            } else {
                codec::seal_sequenced(copy_key, *level, path, sequence, &mut out)?
            };
            io::copy(&mut opener, &mut sealer).map_err(CodecError::from_io)?;
            opener.digest().ok_or(CodecError::Truncated)?;
            sealer.finish()?;
        }
    }
    out.flush().map_err(CodecError::Io)
}

/// The downloaded chunks as a `Read` (blocking on the channel).
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.buf = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// Bytes for the upload, handed over in [`OUT_CHUNK`]s.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= OUT_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(OUT_CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::other("the upload stopped"))
    }
}

/// Reads from `inner` and forwards everything read to `out` (the verbatim copy).
struct Tee<'a> {
    inner: ChannelReader,
    out: &'a mut ChannelWriter,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use std::time::Duration;
    use warden_config::{RepositoryConfig, RepositoryKind};

    const OTHER_KEY: &str = "1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b35";

    fn repo(dir: &std::path::Path) -> Repository {
        Repository::open(&RepositoryConfig {
            kind: RepositoryKind::Filesystem {
                path: dir.to_owned(),
            },
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn verbatim_and_resealed_copies_open_and_corrupt_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let main = testkit::catalog(dir.path());
        let copy = repo(&dir.path().join("copy"));
        let other = EncryptionKey::parse(OTHER_KEY, "test").unwrap();
        // Large enough for several codec chunks and output chunks.
        let plain: Vec<u8> = (0..700_000u32).flat_map(u32::to_le_bytes).collect();
        let path = "demo/42/wal/00000001/000000010000000000000001";
        let (sealed, _) = codec::seal_bytes_sequenced(&main.key, 3, path, 7, &plain).unwrap();
        main.repo.put(path, sealed.clone().into()).await.unwrap();

        copy_object(&main.repo, &main.key, &copy, &Seal::Verbatim, path)
            .await
            .unwrap();
        assert_eq!(
            copy.get(path).await.unwrap(),
            sealed,
            "same key: same bytes"
        );

        let path2 = "demo/42/wal/00000001/000000010000000000000002";
        let (sealed2, _) = codec::seal_bytes_sequenced(&main.key, 3, path2, 7, &plain).unwrap();
        main.repo.put(path2, sealed2.into()).await.unwrap();
        copy_object(
            &main.repo,
            &main.key,
            &copy,
            &Seal::Reseal(other.clone(), 3),
            path2,
        )
        .await
        .unwrap();
        let stored = copy.get(path2).await.unwrap();
        assert!(codec::open_bytes(&main.key, path2, &stored).is_err());
        let (back, _) = codec::open_bytes(&other, path2, &stored).unwrap();
        assert_eq!(back, plain, "own key: same plaintext");
        let opener = codec::open(&other, path2, &stored[..]).unwrap();
        assert_eq!(opener.sequence(), Some(7), "the sequence is kept");

        // One flipped byte: nothing arrives in the copy, either way.
        let path3 = "demo/42/wal/00000001/000000010000000000000003";
        let mut bad = sealed.clone();
        bad[1000] ^= 1;
        main.repo.put(path3, bad.into()).await.unwrap();
        for seal in [Seal::Verbatim, Seal::Reseal(other.clone(), 3)] {
            let err = copy_object(&main.repo, &main.key, &copy, &seal, path3)
                .await
                .unwrap_err();
            assert!(matches!(err, TransferError::Corrupt { .. }), "{err}");
            assert!(!copy.exists(path3).await.unwrap());
        }
        // A valid object under another name does not authenticate either.
        main.repo.put(path3, sealed.into()).await.unwrap();
        let err = copy_object(&main.repo, &main.key, &copy, &Seal::Verbatim, path3)
            .await
            .unwrap_err();
        assert!(matches!(err, TransferError::Corrupt { .. }), "{err}");
        let listed = copy.list("demo/").await.unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
    }
}
