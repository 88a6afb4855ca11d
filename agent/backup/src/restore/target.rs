//! Which backup can reach a recovery target (the target itself is PostgreSQL's:
//! [`warden_pg::target`]).

use crate::catalog::BackupRecord;
use warden_pg::lsn::Lsn;
pub use warden_pg::target::{parse_time, pg_time, Target, TargetError};

/// Whether `backup` can reach this target (a restore cannot stop before the end of
/// its backup). A time is compared with the backup's finish time, which is a little
/// after its end LSN was written: conservative, never accepts an unreachable time.
pub fn check_reachable(target: &Target, backup: &BackupRecord) -> Result<(), TargetError> {
    match target {
        Target::Time(t) if *t < backup.finished_at => Err(TargetError::TimeBeforeBackup {
            target: pg_time(t),
            id: backup.id.clone(),
            finished: pg_time(&backup.finished_at),
        }),
        Target::Lsn(l) => match Lsn::parse(&backup.end_lsn) {
            Some(end) if *l < end => Err(TargetError::LsnBeforeBackup {
                target: l.to_string(),
                id: backup.id.clone(),
                end: backup.end_lsn.clone(),
            }),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// For `--backup latest`: the newest backup that can reach `target` (for a time
/// target, the newest one that finished before it). `backups` is oldest first.
pub fn choose_backup<'a>(
    backups: &'a [BackupRecord],
    target: &Target,
) -> Result<Option<&'a BackupRecord>, TargetError> {
    match target {
        Target::Time(t) => {
            let chosen = backups.iter().rev().find(|b| b.finished_at <= *t);
            match (chosen, backups.first()) {
                (Some(b), _) => Ok(Some(b)),
                (None, Some(oldest)) => Err(TargetError::NoBackupBefore {
                    target: pg_time(t),
                    id: oldest.id.clone(),
                    finished: pg_time(&oldest.finished_at),
                }),
                (None, None) => Ok(None),
            }
        }
        Target::Lsn(l) => {
            let reaches = |b: &&BackupRecord| Lsn::parse(&b.end_lsn).is_none_or(|end| end <= *l);
            match (backups.iter().rev().find(reaches), backups.first()) {
                (Some(b), _) => Ok(Some(b)),
                (None, Some(oldest)) => Err(TargetError::LsnBeforeBackup {
                    target: l.to_string(),
                    id: oldest.id.clone(),
                    end: oldest.end_lsn.clone(),
                }),
                (None, None) => Ok(None),
            }
        }
        _ => Ok(backups.last()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, finished: &str, end_lsn: &str) -> BackupRecord {
        let t = parse_time(finished).unwrap();
        BackupRecord {
            format: 1,
            id: id.into(),
            member: "n1".into(),
            system_identifier: 1,
            pg_version: 150000,
            started_at: t,
            finished_at: t,
            timeline: 1,
            start_lsn: "0/2000028".into(),
            end_lsn: end_lsn.into(),
            start_wal: "000000010000000000000002".into(),
            end_wal: "000000010000000000000002".into(),
            size: 0,
            stored_size: 0,
            compression_level: 3,
            parts: vec![],
            files: vec![],
            file_count: None,
        }
    }

    #[test]
    fn chooses_newest_backup_before_the_target() {
        let b = vec![
            record("a", "2026-12-02T10:00:00Z", "0/3000000"),
            record("b", "2026-12-02T11:00:00Z", "0/5000000"),
            record("c", "2026-12-02T12:00:00Z", "0/7000000"),
        ];
        let at = |s: &str| Target::Time(parse_time(s).unwrap());
        assert_eq!(
            choose_backup(&b, &at("2026-12-02T11:30:00Z"))
                .unwrap()
                .unwrap()
                .id,
            "b"
        );
        assert_eq!(
            choose_backup(&b, &at("2026-12-03T00:00:00Z"))
                .unwrap()
                .unwrap()
                .id,
            "c"
        );
        let e = choose_backup(&b, &at("2026-12-02T09:00:00Z")).unwrap_err();
        assert!(matches!(e, TargetError::NoBackupBefore { .. }), "{e}");
        assert_eq!(
            choose_backup(&b, &Target::Lsn(Lsn(0x600_0000)))
                .unwrap()
                .unwrap()
                .id,
            "b"
        );
        assert_eq!(choose_backup(&b, &Target::Latest).unwrap().unwrap().id, "c");
        assert!(choose_backup(&[], &Target::Latest).unwrap().is_none());
    }

    #[test]
    fn refuses_targets_before_the_backup_end() {
        let b = record("b", "2026-12-02T11:00:00Z", "0/5000000");
        let early = Target::Time(parse_time("2026-12-02T10:59:59Z").unwrap());
        let e = check_reachable(&early, &b).unwrap_err();
        assert!(e.to_string().contains("before backup b finished"), "{e}");
        assert!(check_reachable(&Target::Lsn(Lsn(0x400_0000)), &b).is_err());
        assert!(check_reachable(&Target::Lsn(Lsn(0x500_0000)), &b).is_ok());
        assert!(check_reachable(&Target::Immediate, &b).is_ok());
    }
}
