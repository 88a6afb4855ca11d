//! The repository: one interface over a directory and an S3-compatible bucket, both
//! through `object_store`.
//!
//! Objects are opaque bytes here; what they contain (sealed by `codec`, with the
//! plaintext checksum in their authenticated trailer) and where they live (`layout`)
//! is decided above. Every call is bounded by the configured timeout, on top of
//! `object_store`'s own bounded retries for S3, so a hung server fails the caller
//! instead of stalling PostgreSQL's archiver forever.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig, WriteMultipart,
};

use warden_config::{RepositoryConfig, RepositoryKind};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: not in the repository")]
    NotFound { path: String },
    #[error("{op} {path}: no answer from the repository within {}", humantime::format_duration(*after))]
    Timeout {
        op: &'static str,
        path: String,
        after: Duration,
    },
    #[error("{op} {path}: {source}")]
    Store {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("backup.repository: {0}")]
    Setup(String),
}

/// One object found by [`Repository::list`]; `path` is relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub path: String,
    pub size: u64,
    /// When the store last wrote it (copies use it for lag and for the live segment
    /// overwritten in place).
    pub modified: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    /// Prefix inside the store (an S3 `prefix`; empty for a directory).
    root: String,
    timeout: Duration,
    /// For messages: `file:///repo` or `s3://bucket/prefix`.
    url: String,
}

impl Repository {
    /// Builds the store; creates a filesystem repository's directory if needed. Talks
    /// to no server yet.
    pub fn open(cfg: &RepositoryConfig) -> Result<Self, RepoError> {
        let timeout = cfg.timeout;
        match &cfg.kind {
            RepositoryKind::Filesystem { path } => {
                std::fs::create_dir_all(path).map_err(|e| {
                    RepoError::Setup(format!("cannot create {}: {e}", path.display()))
                })?;
                // fsync of the file and its directory before a put reports success:
                // PostgreSQL recycles a segment as soon as the archiver says it is safe.
                let store = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| RepoError::Setup(format!("{}: {e}", path.display())))?
                    .with_fsync(true);
                Ok(Self {
                    store: Arc::new(store),
                    root: String::new(),
                    timeout,
                    url: format!("file://{}", path.display()),
                })
            }
            RepositoryKind::S3(s3) => {
                // Env first, so unset config keys fall back to AWS_* variables.
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_allow_http(s3.allow_http)
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(10).min(timeout))
                            .with_timeout(timeout)
                            .with_allow_http(s3.allow_http),
                    )
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: timeout,
                        ..RetryConfig::default()
                    });
                if let Some(e) = &s3.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = &s3.region {
                    b = b.with_region(r);
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(id).with_secret_access_key(&secret.0);
                }
                let store = b.build().map_err(|e| RepoError::Setup(e.to_string()))?;
                let url = if s3.prefix.is_empty() {
                    format!("s3://{}", s3.bucket)
                } else {
                    format!("s3://{}/{}", s3.bucket, s3.prefix)
                };
                Ok(Self {
                    store: Arc::new(store),
                    root: s3.prefix.clone(),
                    timeout,
                    url,
                })
            }
        }
    }

    /// Where the repository is, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn full(&self, path: &str) -> ObjectPath {
        if self.root.is_empty() {
            ObjectPath::from(path)
        } else {
            ObjectPath::from(format!("{}/{path}", self.root))
        }
    }

    async fn bounded<T, F>(&self, op: &'static str, path: &str, call: F) -> Result<T, RepoError>
    where
        F: std::future::Future<Output = object_store::Result<T>>,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(object_store::Error::NotFound { .. })) => Err(RepoError::NotFound {
                path: path.to_owned(),
            }),
            Ok(Err(source)) => Err(RepoError::Store {
                op,
                path: path.to_owned(),
                source,
            }),
            Err(_) => Err(RepoError::Timeout {
                op,
                path: path.to_owned(),
                after: self.timeout,
            }),
        }
    }

    /// Stores `data` at `path`, replacing any object there. Returns only after the
    /// store confirmed the write (a completed PUT, or a fsynced file and directory).
    pub async fn put(&self, path: &str, data: Bytes) -> Result<(), RepoError> {
        let full = self.full(path);
        self.bounded("put", path, self.store.put(&full, data.into()))
            .await
            .map(|_| ())
    }

    /// Stores `data` at `path` only if no object is there (create-only: a directory
    /// publishes with a hard link, S3 sends `If-None-Match: *`), so two writers racing
    /// for one name cannot overwrite each other. `Ok(false)`: an object already exists.
    pub async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, RepoError> {
        let full = self.full(path);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .bounded("put", path, self.store.put_opts(&full, data.into(), opts))
            .await
        {
            Ok(_) => Ok(true),
            Err(RepoError::Store {
                source:
                    object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The whole object in memory: for small objects (a WAL segment); large ones go
    /// through [`Repository::download`].
    pub async fn get(&self, path: &str) -> Result<Bytes, RepoError> {
        let full = self.full(path);
        self.bounded("get", path, async {
            self.store.get(&full).await?.bytes().await
        })
        .await
    }

    /// The object's size, `None` if there is none.
    pub async fn head(&self, path: &str) -> Result<Option<u64>, RepoError> {
        let full = self.full(path);
        match self.bounded("head", path, self.store.head(&full)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(RepoError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn exists(&self, path: &str) -> Result<bool, RepoError> {
        Ok(self.head(path).await?.is_some())
    }

    /// Every object under `prefix` (a directory-like prefix: `a/b` lists `a/b/...`),
    /// sorted by path.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, RepoError> {
        let full = self.full(prefix);
        let strip = if self.root.is_empty() {
            String::new()
        } else {
            format!("{}/", self.root)
        };
        let mut found: Vec<ObjectInfo> = self
            .bounded(
                "list",
                prefix,
                self.store.list(Some(&full)).try_collect::<Vec<_>>(),
            )
            .await?
            .into_iter()
            .map(|meta| {
                let p = meta.location.to_string();
                ObjectInfo {
                    path: p.strip_prefix(&strip).unwrap_or(&p).to_owned(),
                    size: meta.size,
                    modified: meta.last_modified,
                }
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    /// Starts a streamed upload to `path` (S3 multipart; a temporary file for a
    /// directory): nothing is visible at `path` until [`Upload::finish`], and memory
    /// stays bounded by a few parts however large the object.
    pub async fn upload(&self, path: &str) -> Result<Upload, RepoError> {
        let full = self.full(path);
        let inner = self
            .bounded("upload", path, self.store.put_multipart(&full))
            .await?;
        Ok(Upload {
            writer: Some(WriteMultipart::new(inner)),
            path: path.to_owned(),
            timeout: self.timeout,
        })
    }

    /// Reads `path` as a stream of chunks, each chunk bounded by the timeout (a
    /// large object may take longer in total, but never stalls).
    pub async fn download(&self, path: &str) -> Result<Download, RepoError> {
        let full = self.full(path);
        let result = self.bounded("get", path, self.store.get(&full)).await?;
        Ok(Download {
            stream: result.into_stream(),
            path: path.to_owned(),
            timeout: self.timeout,
        })
    }

    /// Deletes `path`; deleting a missing object is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), RepoError> {
        let full = self.full(path);
        match self.bounded("delete", path, self.store.delete(&full)).await {
            Ok(()) | Err(RepoError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Parts uploaded at once by an [`Upload`].
const UPLOAD_CONCURRENCY: usize = 4;

fn timed_out(op: &'static str, path: &str, after: Duration) -> RepoError {
    RepoError::Timeout {
        op,
        path: path.to_owned(),
        after,
    }
}

fn store_error(op: &'static str, path: &str, source: object_store::Error) -> RepoError {
    RepoError::Store {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A streamed upload from [`Repository::upload`]. Dropping it without
/// [`Upload::finish`] leaves nothing at the path (call [`Upload::abort`] to also free
/// the parts already sent).
pub struct Upload {
    /// `None` once finished or aborted.
    writer: Option<WriteMultipart>,
    path: String,
    timeout: Duration,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("path", &self.path).finish()
    }
}

impl Upload {
    /// Queues `data`, first waiting (bounded) until fewer than a few parts are in
    /// flight, so a slow repository slows the writer down instead of filling memory.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), RepoError> {
        let writer = self.writer.as_mut().expect("upload already finished");
        match tokio::time::timeout(self.timeout, writer.wait_for_capacity(UPLOAD_CONCURRENCY)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(store_error("upload", &self.path, e)),
            Err(_) => return Err(timed_out("upload", &self.path, self.timeout)),
        }
        writer.write(data);
        Ok(())
    }

    /// Sends the last part and completes the object; only now is it visible.
    pub async fn finish(mut self) -> Result<(), RepoError> {
        let writer = self.writer.take().expect("upload already finished");
        match tokio::time::timeout(self.timeout, writer.finish()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(store_error("upload", &self.path, e)),
            Err(_) => Err(timed_out("upload", &self.path, self.timeout)),
        }
    }

    /// Gives up: frees the parts sent so far (bounded; errors only logged).
    pub async fn abort(mut self) {
        if let Some(writer) = self.writer.take() {
            match tokio::time::timeout(self.timeout, writer.abort()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(path = %self.path, error = %e, "aborting an upload failed")
                }
                Err(_) => tracing::warn!(path = %self.path, "aborting an upload timed out"),
            }
        }
    }
}

/// A streamed read from [`Repository::download`].
pub struct Download {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    path: String,
    timeout: Duration,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("path", &self.path)
            .finish()
    }
}

impl Download {
    /// The next chunk, `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, RepoError> {
        match tokio::time::timeout(self.timeout, self.stream.next()).await {
            Ok(None) => Ok(None),
            Ok(Some(Ok(b))) => Ok(Some(b)),
            Ok(Some(Err(e))) => Err(store_error("get", &self.path, e)),
            Err(_) => Err(timed_out("get", &self.path, self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_repo(dir: &std::path::Path) -> Repository {
        Repository::open(&RepositoryConfig {
            kind: RepositoryKind::Filesystem {
                path: dir.join("repo"),
            },
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn filesystem_put_get_head_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let repo = fs_repo(dir.path());
        assert_eq!(repo.head("a/b/x").await.unwrap(), None);
        assert!(matches!(
            repo.get("a/b/x").await,
            Err(RepoError::NotFound { .. })
        ));
        repo.put("a/b/x", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        repo.put("a/b/y", Bytes::from_static(b"hi")).await.unwrap();
        repo.put("a/c/z", Bytes::from_static(b"z")).await.unwrap();
        assert!(!repo
            .put_if_absent("a/c/z", Bytes::from_static(b"new"))
            .await
            .unwrap());
        assert!(repo
            .put_if_absent("a/c/w", Bytes::from_static(b"w"))
            .await
            .unwrap());
        assert_eq!(
            &repo.get("a/c/z").await.unwrap()[..],
            b"z",
            "never overwritten"
        );
        assert_eq!(repo.head("a/b/x").await.unwrap(), Some(5));
        assert!(repo.exists("a/b/y").await.unwrap());
        assert_eq!(&repo.get("a/b/x").await.unwrap()[..], b"hello");
        let listed = repo.list("a/b").await.unwrap();
        let paths: Vec<&str> = listed.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["a/b/x", "a/b/y"]);
        repo.delete("a/b/x").await.unwrap();
        repo.delete("a/b/x").await.unwrap();
        assert!(!repo.exists("a/b/x").await.unwrap());
        assert!(dir.path().join("repo/a/c/z").is_file());
    }

    #[tokio::test]
    async fn streamed_upload_and_download() {
        let dir = tempfile::tempdir().unwrap();
        let repo = fs_repo(dir.path());
        let mut up = repo.upload("big/object").await.unwrap();
        let piece: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        for _ in 0..12 {
            up.write(&piece).await.unwrap();
        }
        assert!(
            !repo.exists("big/object").await.unwrap(),
            "visible only once finished"
        );
        up.finish().await.unwrap();
        assert_eq!(repo.head("big/object").await.unwrap(), Some(12 << 20));
        let mut down = repo.download("big/object").await.unwrap();
        let mut total = 0usize;
        while let Some(chunk) = down.next_chunk().await.unwrap() {
            assert!(chunk
                .iter()
                .enumerate()
                .all(|(i, b)| *b == ((total + i) % 256) as u8));
            total += chunk.len();
        }
        assert_eq!(total, 12 << 20);
        let abandoned = repo.upload("big/abandoned").await.unwrap();
        abandoned.abort().await;
        assert!(!repo.exists("big/abandoned").await.unwrap());
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::*;
    use warden_config::S3Config;

    /// A server that accepts connections and never answers must fail the call within
    /// the configured bound, not hang the archiver.
    #[tokio::test]
    async fn a_silent_s3_server_fails_within_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let repo = Repository::open(&RepositoryConfig {
            kind: RepositoryKind::S3(S3Config {
                bucket: "b".into(),
                endpoint: Some(format!("http://127.0.0.1:{port}")),
                region: Some("us-east-1".into()),
                prefix: String::new(),
                access_key_id: Some("id".into()),
                secret_access_key: Some(warden_config::Secret("secret".into())),
                allow_http: true,
            }),
            timeout: Duration::from_millis(500),
        })
        .unwrap();
        let started = std::time::Instant::now();
        let result = repo.head("x").await;
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        drop(listener);
    }
}
