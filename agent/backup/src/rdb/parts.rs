//! The RDB stream cut into sealed parts (`<dir>/dump.rdb.<n>`), each sealed and uploaded
//! as it arrives: one part's sealer and one upload at a time, so memory stays at a
//! few chunks whatever the snapshot's size.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::RdbJobError;
use crate::catalog::{Catalog, Part};
use crate::codec::{self, Sealer};
use crate::repo::Upload;

/// Bytes of the stream kept from its start, for the aux fields after the header.
pub const HEAD_LEN: usize = 512;

/// The name of part `n` inside a snapshot's directory.
pub fn part_name(n: usize) -> String {
    format!("dump.rdb.{n:05}")
}

/// What [`store`] uploaded.
#[derive(Debug, Default)]
pub struct Stored {
    pub parts: Vec<Part>,
    /// The first [`HEAD_LEN`] bytes of the stream.
    pub head: Vec<u8>,
}

/// The sealer's output, drained into the upload after every write.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn repo_err(e: impl std::fmt::Display) -> RdbJobError {
    RdbJobError::Repo(e.to_string())
}

/// One part being sealed and uploaded.
struct PartWriter {
    name: String,
    sealer: Sealer<SharedBuf>,
    out: SharedBuf,
    upload: Upload,
    plain: u64,
    stored: u64,
}

impl PartWriter {
    async fn start(catalog: &Catalog, level: i32, path: &str) -> Result<Self, RdbJobError> {
        let upload = catalog.repo.upload(path).await.map_err(repo_err)?;
        let out = SharedBuf::default();
        let sealer = codec::seal(&catalog.key, level, path, out.clone()).map_err(repo_err)?;
        Ok(Self {
            name: path.rsplit('/').next().unwrap_or(path).to_owned(),
            sealer,
            out,
            upload,
            plain: 0,
            stored: 0,
        })
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), RdbJobError> {
        self.sealer.write_all(data).map_err(repo_err)?;
        self.plain += data.len() as u64;
        let sealed = self.out.take();
        if !sealed.is_empty() {
            self.stored += sealed.len() as u64;
            self.upload.write(&sealed).await.map_err(repo_err)?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Part, RdbJobError> {
        let (_, sealed) = self.sealer.finish().map_err(repo_err)?;
        let rest = self.out.take();
        self.stored += rest.len() as u64;
        self.upload.write(&rest).await.map_err(repo_err)?;
        self.upload.finish().await.map_err(repo_err)?;
        Ok(Part {
            name: self.name,
            plain_size: sealed.len,
            stored_size: self.stored,
            sha256: hex::encode(sealed.digest),
        })
    }
}

/// Reads `input` to its end into parts of `part_size` plaintext bytes under `dir`.
/// On an error the part in progress is aborted (finished parts stay: the caller's
/// to delete) and `input` is dropped, which stops the writer at its other end.
pub async fn store<R: AsyncRead + Unpin>(
    catalog: &Catalog,
    level: i32,
    dir: &str,
    part_size: u64,
    input: R,
) -> (Result<(), RdbJobError>, Stored) {
    store_named(catalog, level, dir, "dump.rdb", part_size, input).await
}

/// [`store`] with parts named `<base>.<n>` (`backup.jobs` sets use it for any stream).
pub async fn store_named<R: AsyncRead + Unpin>(
    catalog: &Catalog,
    level: i32,
    dir: &str,
    base: &str,
    part_size: u64,
    mut input: R,
) -> (Result<(), RdbJobError>, Stored) {
    let mut stored = Stored::default();
    let mut current: Option<PartWriter> = None;
    let mut buf = vec![0u8; codec::CHUNK];
    let result = async {
        loop {
            let n = input
                .read(&mut buf)
                .await
                .map_err(|e| RdbJobError::Repo(format!("reading the fetched stream: {e}")))?;
            if n == 0 {
                break;
            }
            if stored.head.len() < HEAD_LEN {
                let take = (HEAD_LEN - stored.head.len()).min(n);
                stored.head.extend_from_slice(&buf[..take]);
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                if current.is_none() {
                    let path = format!("{dir}/{base}.{:05}", stored.parts.len());
                    current = Some(PartWriter::start(catalog, level, &path).await?);
                }
                let w = current.as_mut().expect("set above");
                let room = usize::try_from(part_size.max(1) - w.plain).unwrap_or(usize::MAX);
                let k = rest.len().min(room);
                w.write(&rest[..k]).await?;
                rest = &rest[k..];
                if w.plain >= part_size {
                    stored
                        .parts
                        .push(current.take().expect("set above").finish().await?);
                }
            }
        }
        if let Some(w) = current.take() {
            stored.parts.push(w.finish().await?);
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        if let Some(w) = current.take() {
            w.upload.abort().await;
        }
    }
    (result, stored)
}
