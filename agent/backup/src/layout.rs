//! Where objects live in a repository. One repository can hold many clusters:
//!
//! ```text
//! <scope>/<system_identifier>/wal/<timeline>/<file>     archived WAL, by PostgreSQL's
//!                                                       own file name
//! <scope>/<system_identifier>/backups/<id>/...          base backups (later)
//! ```
//!
//! `<scope>` is the cluster's `scope`; `<system_identifier>` (decimal, from
//! `pg_control`) separates clusters that reused a scope after a fresh initdb, whose
//! WAL file names would otherwise collide. `<timeline>` is the 8 hex digits every
//! WAL-related file name starts with, so one timeline lists without the others.
//! S3's `prefix` comes before all of this; it is not part of an object's path as
//! `codec` authenticates it, so a repository can be moved to another prefix.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    scope: String,
    system_identifier: u64,
}

/// The kinds of file PostgreSQL hands to `archive_command` and asks of
/// `restore_command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    /// `000000010000000A000000FF`
    Segment,
    /// `000000010000000A000000FF.partial`: the last, incomplete segment of a timeline
    /// a promotion ended.
    Partial,
    /// `000000010000000A000000FF.00000028.backup`: a base backup's history file.
    BackupHistory,
    /// `00000002.history`: a timeline history file.
    TimelineHistory,
}

/// A valid WAL-related file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalName {
    name: String,
    pub kind: WalKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a WAL segment, .partial, .backup or .history file name")]
pub struct BadWalName(pub String);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl WalName {
    pub fn parse(name: &str) -> Result<Self, BadWalName> {
        let bad = || BadWalName(name.to_owned());
        let kind = match name.split('.').collect::<Vec<_>>().as_slice() {
            [seg] if is_hex(seg, 24) => WalKind::Segment,
            [seg, "partial"] if is_hex(seg, 24) => WalKind::Partial,
            [seg, offset, "backup"] if is_hex(seg, 24) && is_hex(offset, 8) => {
                WalKind::BackupHistory
            }
            [tli, "history"] if is_hex(tli, 8) => WalKind::TimelineHistory,
            _ => return Err(bad()),
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The timeline part: the first 8 hex digits of every kind of name.
    pub fn timeline(&self) -> &str {
        &self.name[..8]
    }
}

impl fmt::Display for WalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Layout {
    pub fn new(scope: &str, system_identifier: u64) -> Self {
        Self {
            scope: scope.to_owned(),
            system_identifier,
        }
    }

    /// The cluster's system identifier (from `global/pg_control`).
    pub fn system_identifier(&self) -> u64 {
        self.system_identifier
    }

    /// `<scope>/<system_identifier>`: everything of this cluster.
    pub fn cluster(&self) -> String {
        format!("{}/{}", self.scope, self.system_identifier)
    }

    /// `<cluster>/wal`: every archived WAL file of this cluster.
    pub fn wal_root(&self) -> String {
        format!("{}/wal", self.cluster())
    }

    /// The object path of one WAL file.
    pub fn wal(&self, name: &WalName) -> String {
        format!("{}/{}/{}", self.wal_root(), name.timeline(), name.as_str())
    }

    /// `<cluster>/backups/<id>`: the objects of one base backup.
    pub fn backup(&self, id: &str) -> String {
        format!("{}/backups/{id}", self.cluster())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names() {
        let ok = |n: &str| WalName::parse(n).unwrap().kind;
        assert_eq!(ok("000000010000000A000000FF"), WalKind::Segment);
        assert_eq!(ok("000000010000000A000000FF.partial"), WalKind::Partial);
        assert_eq!(
            ok("000000010000000A000000FF.00000028.backup"),
            WalKind::BackupHistory
        );
        assert_eq!(ok("00000002.history"), WalKind::TimelineHistory);
        for bad in [
            "",
            "RECOVERYXLOG",
            "000000010000000A000000F",
            "000000010000000A000000FG",
            "000000010000000A000000FF.gz",
            "00000002.history.x",
            "../00000002.history",
        ] {
            assert!(WalName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        let l = Layout::new("demo", 7_312_345_678_901_234_567);
        let seg = WalName::parse("000000020000000A000000FF.partial").unwrap();
        assert_eq!(
            l.wal(&seg),
            "demo/7312345678901234567/wal/00000002/000000020000000A000000FF.partial"
        );
        let hist = WalName::parse("00000003.history").unwrap();
        assert_eq!(
            l.wal(&hist),
            "demo/7312345678901234567/wal/00000003/00000003.history"
        );
        assert_eq!(
            l.backup("20261125T120000Z"),
            "demo/7312345678901234567/backups/20261125T120000Z"
        );
    }
}
