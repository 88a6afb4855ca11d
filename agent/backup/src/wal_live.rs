//! The live `.partial`: the segment the archiver is still receiving, uploaded every
//! `backup.partial_upload_interval` so the repository is at most about that far
//! behind the primary instead of up to a whole segment (16 MiB of WAL, which on a quiet
//! cluster can be hours).
//!
//! It lives apart from the archive proper (`<cluster>/wal_live/<timeline>/<segment>`)
//! because it is replaced on every upload, while an archived name is immutable. Its
//! content is `pg_receivewal`'s partial file: the received prefix of the segment,
//! zero-padded to full size, so PostgreSQL replays it up to the last complete record
//! and then sees the end of WAL. `wal-fetch` serves it only when the complete segment is
//! not archived; once the complete segment (or a timeline's final `.partial`) is
//! archived, the live copy is deleted.

use std::path::Path;

use bytes::Bytes;

use super::codec;
use super::layout::{Layout, WalKind, WalName};
use super::repo::RepoError;
use super::wal::{name_of, Archive, PushError};

impl Layout {
    /// `<cluster>/wal_live/<timeline>/<segment>`: the live copy of a segment still
    /// being received (`name` is the segment's name, without `.partial`).
    pub fn wal_live(&self, segment: &WalName) -> String {
        format!(
            "{}/wal_live/{}/{}",
            self.cluster(),
            segment.timeline(),
            segment.segment()
        )
    }
}

impl WalName {
    /// The segment's own name: `000000010000000A000000FF` for a segment, its
    /// `.partial` or its `.backup` history file.
    pub fn segment(&self) -> &str {
        &self.as_str()[..24.min(self.as_str().len())]
    }
}

impl Archive {
    /// Uploads the partial file at `path` (`<segment>.partial` in the spool) as the
    /// segment's live copy, replacing the previous one. Returns the bytes sealed.
    pub async fn push_live(&self, path: &Path) -> Result<u64, PushError> {
        let name = name_of(path)?;
        let object = self.layout.wal_live(&name);
        // Read, compress and encrypt off the async threads: 16 MiB per call.
        let (key, level, context, file, seg) = (
            self.key.clone(),
            self.compression_level,
            object.clone(),
            path.to_owned(),
            name.to_string(),
        );
        let (sealed, info) = tokio::task::spawn_blocking(move || {
            let plain = std::fs::read(&file).map_err(|source| {
                Box::new(PushError::Local {
                    path: file.clone(),
                    source,
                })
            })?;
            codec::seal_bytes(&key, level, &context, &plain)
                .map_err(|source| Box::new(PushError::Seal { name: seg, source }))
        })
        .await
        .map_err(|e| PushError::Local {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|e| *e)?;
        self.repo
            .put(&object, Bytes::from(sealed))
            .await
            .map_err(|source| PushError::Repo {
                name: name.to_string(),
                source,
            })?;
        Ok(info.len)
    }

    /// Deletes the live copy of `archived`'s segment now that the segment (or its
    /// timeline's final `.partial`) is archived. A missing live copy is fine.
    pub async fn drop_live(&self, archived: &WalName) -> Result<(), RepoError> {
        if !matches!(archived.kind, WalKind::Segment | WalKind::Partial) {
            return Ok(());
        }
        match self.repo.delete(&self.layout.wal_live(archived)).await {
            Ok(()) | Err(RepoError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_paths_use_the_segment_name() {
        let l = Layout::new("demo", 42);
        let p = WalName::parse("000000020000000A000000FF.partial").unwrap();
        assert_eq!(p.segment(), "000000020000000A000000FF");
        assert_eq!(
            l.wal_live(&p),
            "demo/42/wal_live/00000002/000000020000000A000000FF"
        );
        // Outside `<cluster>/wal`, so listings of the archive never see it.
        assert!(!l.wal_live(&p).starts_with(&format!("{}/", l.wal_root())));
    }
}
