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
//!
//! Versions (issue 12). Every upload seals the same name with the same context, so
//! without more, any older version put back in place would authenticate. Each upload
//! therefore carries a *sequence* in its authenticated header (see `codec`): the
//! writer's clock in microseconds, strictly increasing within a process. Wall-clock
//! time rather than the WAL position because the archiver moves between members: a
//! new archiver restarts the segment from its beginning, so its first upload holds
//! less WAL than its predecessor's last and must still count as newer (that is
//! harmless to PostgreSQL, which waits for more). The cost is that clocks must agree
//! across members to within the hand-over time (seconds), which the HA lease already
//! assumes.
//!
//! The reader: `wal-fetch` keeps, in the directory it restores into (`pg_wal`), the
//! newest live segment and sequence it served ([`SEEN_FILE`]), and refuses a live copy
//! of that segment with a lower sequence ([`crate::wal::FetchError::LiveRolledBack`]). Forging a
//! higher sequence needs the key. What this does not cover: a reader with no memory
//! (the first fetch of a segment into a fresh data directory) cannot tell which
//! version is newest, and an attacker who can delete can always remove the live copy
//! (or any object) so a restore ends earlier; only the repository's own access
//! control (and its object versioning or retention lock) prevents that.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::codec;
use super::layout::{Layout, WalKind, WalName};
use super::repo::RepoError;
use super::wal::{name_of, Archive, PushError};

/// The reader's memory of the newest live copy served into a directory: one line,
/// `<segment> <sequence>`.
pub const SEEN_FILE: &str = ".warden-live-seen";

/// The highest sequence this process has sealed, so two uploads in the same
/// microsecond (or a clock step back) still get increasing sequences.
static LAST_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The segment this process last uploaded a live copy of: the first upload of another
/// segment first reads the copy already there (another archiver's, before a hand-over).
static LIVE_SEGMENT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The next live sequence: the clock in microseconds, above every earlier one.
fn next_sequence() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let prev = LAST_SEQUENCE
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    now.max(prev.saturating_add(1))
}

/// Reads `dir`'s [`SEEN_FILE`]: the segment and sequence last served (a missing or
/// unreadable file is no memory).
fn read_seen(dir: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(dir.join(SEEN_FILE)).ok()?;
    let (segment, sequence) = text.trim().split_once(' ')?;
    Some((segment.to_owned(), sequence.parse().ok()?))
}

/// The sequence already served into `dir` for `name`'s segment, when `found` is
/// older than it (the caller refuses the copy: [`crate::wal::FetchError::LiveRolledBack`]).
pub(crate) fn rolled_back(dir: &Path, name: &WalName, found: u64) -> Option<u64> {
    match read_seen(dir) {
        Some((segment, seen)) if segment == name.segment() && found < seen => Some(seen),
        _ => None,
    }
}

/// Remembers that the live copy of `name`'s segment at `sequence` was served into
/// `dir`. Best effort: failing to remember only weakens the next check, it does not
/// make this restore wrong, so it is logged and not an error.
pub(crate) fn record_seen(dir: &Path, name: &WalName, sequence: u64) {
    if let Some((segment, seen)) = read_seen(dir) {
        if segment == name.segment() && seen >= sequence {
            return;
        }
    }
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".warden-live-seen-")
            .tempfile_in(dir)?;
        std::io::Write::write_all(
            tmp.as_file_mut(),
            format!("{} {sequence}\n", name.segment()).as_bytes(),
        )?;
        tmp.as_file().sync_all()?;
        tmp.persist(dir.join(SEEN_FILE)).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(
            dir = %dir.display(),
            error = %e,
            "cannot record the live WAL copy's sequence; an older copy put back later would not be noticed here"
        );
    }
}

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
        self.raise_floor(&name, &object).await;
        let sequence = next_sequence();
        let (sealed, info) = tokio::task::spawn_blocking(move || {
            let plain = std::fs::read(&file).map_err(|source| {
                Box::new(PushError::Local {
                    path: file.clone(),
                    source,
                })
            })?;
            codec::seal_bytes_sequenced(&key, level, &context, sequence, &plain)
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

    /// On the first upload of a segment here, lifts this process's sequences above the
    /// live copy already in the repository: after a hand-over the previous archiver's
    /// clock may be ahead of ours, and a reader that served its copy would refuse ours
    /// as a rollback until our clock caught up. The copy's sequence counts only once
    /// its first chunk authenticated. Best effort: without it, sequences are the clock.
    async fn raise_floor(&self, name: &WalName, object: &str) {
        {
            let mut last = LIVE_SEGMENT
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.as_deref() == Some(name.segment()) {
                return;
            }
            *last = Some(name.segment().to_owned());
        }
        let sealed = match self.repo.get(object).await {
            Ok(b) => b,
            Err(RepoError::NotFound { .. }) => return,
            Err(e) => {
                tracing::warn!(object, error = %e, "cannot read the live WAL copy already in the repository; sequencing by the clock alone");
                return;
            }
        };
        let key = self.key.clone();
        let context = object.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            let mut opener = codec::open(&key, &context, &sealed[..]).ok()?;
            let mut first = [0u8; 1];
            std::io::Read::read(&mut opener, &mut first).ok()?;
            opener.sequence()
        })
        .await
        .ok()
        .flatten();
        if let Some(seq) = found {
            LAST_SEQUENCE.fetch_max(seq, Ordering::SeqCst);
        }
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

    use crate::wal::tests::archive;
    use crate::wal::FetchError;

    const SEG: &str = "000000010000000000000005";

    #[test]
    fn sequences_increase_strictly() {
        let mut last = next_sequence();
        for _ in 0..1000 {
            let next = next_sequence();
            assert!(next > last, "{next} after {last}");
            last = next;
        }
    }

    /// A hand-over from an archiver whose clock runs ahead: the new archiver's first
    /// upload of the segment still gets a higher sequence than the copy it replaces,
    /// so a reader that served the old one accepts the new one.
    #[tokio::test]
    async fn a_new_archiver_sequences_above_the_copy_it_replaces() {
        // A segment no other test uses: the "last segment uploaded" slot is per process.
        const AHEAD: &str = "0000000100000000000000A7";
        let dir = tempfile::tempdir().unwrap();
        let a = archive(dir.path());
        let name = WalName::parse(AHEAD).unwrap();
        let object = a.layout.wal_live(&name);
        let ahead = next_sequence() + 3_600_000_000; // an hour ahead of our clock
        let (sealed, _) =
            codec::seal_bytes_sequenced(&a.key, 3, &object, ahead, b"the previous archiver's")
                .unwrap();
        a.repo.put(&object, Bytes::from(sealed)).await.unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let partial = spool.join(format!("{AHEAD}.partial"));
        std::fs::write(&partial, b"the previous archiver's, and ours").unwrap();
        a.push_live(&partial).await.unwrap();
        let ours = a.repo.get(&object).await.unwrap();
        let mut opener = codec::open(&a.key, &object, &ours[..]).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut opener, &mut plain).unwrap();
        assert!(opener.sequence().unwrap() > ahead);
    }

    /// Issue 12: an older sealed version of the live object copied over the newer
    /// one authenticates on its own (same name, same key), but a reader that already
    /// restored the newer one refuses it by name.
    #[tokio::test]
    async fn an_older_live_copy_put_back_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = archive(dir.path());
        let spool = dir.path().join("spool");
        let pg_wal = dir.path().join("pg_wal");
        std::fs::create_dir_all(&spool).unwrap();
        std::fs::create_dir_all(&pg_wal).unwrap();
        let partial = spool.join(format!("{SEG}.partial"));
        let live = dir
            .path()
            .join("repo")
            .join(a.layout.wal_live(&WalName::parse(SEG).unwrap()));
        let dest = pg_wal.join("RECOVERYXLOG");

        std::fs::write(&partial, b"older prefix").unwrap();
        a.push_live(&partial).await.unwrap();
        let older = std::fs::read(&live).unwrap();
        std::fs::write(&partial, b"older prefix, then newer WAL").unwrap();
        a.push_live(&partial).await.unwrap();
        let newer = std::fs::read(&live).unwrap();

        a.fetch(SEG, &dest).await.unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"older prefix, then newer WAL"
        );
        assert!(pg_wal.join(SEEN_FILE).is_file());

        std::fs::remove_file(&dest).unwrap();
        std::fs::write(&live, &older).unwrap();
        let e = a.fetch(SEG, &dest).await.unwrap_err();
        assert!(matches!(e, FetchError::LiveRolledBack { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("older than the one already restored"),
            "{e}"
        );
        assert!(!dest.exists(), "a rolled-back copy must not reach pg_wal");

        // Claiming a newer sequence needs the key: the header is authenticated.
        let mut bumped = older.clone();
        bumped[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        std::fs::write(&live, &bumped).unwrap();
        let e = a.fetch(SEG, &dest).await.unwrap_err();
        assert!(matches!(e, FetchError::Corrupt { .. }), "{e}");

        // A version 1 live copy (no sequence, written before the upgrade) counts as
        // older than any versioned one this directory has seen...
        let v1 = crate::codec::tests::seal_v1(
            &a.key,
            &a.layout.wal_live(&WalName::parse(SEG).unwrap()),
            b"pre-upgrade",
        );
        std::fs::write(&live, &v1).unwrap();
        let e = a.fetch(SEG, &dest).await.unwrap_err();
        assert!(
            matches!(e, FetchError::LiveRolledBack { found: 0, .. }),
            "{e}"
        );

        // ...and the current version is still served.
        std::fs::write(&live, &newer).unwrap();
        a.fetch(SEG, &dest).await.unwrap();

        // The limit, documented in docs/security.md: a directory with no memory of
        // the segment cannot tell an old version from the newest.
        let fresh = dir.path().join("fresh");
        std::fs::create_dir_all(&fresh).unwrap();
        std::fs::write(&live, &older).unwrap();
        a.fetch(SEG, &fresh.join("RECOVERYXLOG")).await.unwrap();
        std::fs::write(&live, &v1).unwrap();
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        a.fetch(SEG, &other.join("RECOVERYXLOG")).await.unwrap();
        assert_eq!(
            std::fs::read(other.join("RECOVERYXLOG")).unwrap(),
            b"pre-upgrade"
        );
    }

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
