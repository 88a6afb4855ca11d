//! The WAL a base backup needs, from its `backup_manifest`, as segment names.

use serde::Deserialize;

use warden_pg::lsn::Lsn;

/// `WAL-Ranges` of a manifest: the backup must be replayed from `start` to at least
/// `end` on `timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: u32,
    pub start: u64,
    pub end: u64,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "WAL-Ranges")]
    wal_ranges: Vec<Range>,
}

#[derive(Deserialize)]
struct Range {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start: String,
    #[serde(rename = "End-LSN")]
    end: String,
}

/// The range from the manifest's JSON. A backup of a standby that saw a timeline
/// switch during the backup lists several ranges; the newest timeline is the one a
/// restore ends on, but every range must be archived: we keep it simple and refuse
/// such a backup (it is rare, and the next one will be fine).
pub fn from_manifest(json: &[u8]) -> Result<WalRange, String> {
    let m: Manifest = serde_json::from_slice(json)
        .map_err(|e| format!("backup_manifest is not a valid manifest: {e}"))?;
    let [r] = m.wal_ranges.as_slice() else {
        return Err(format!(
            "backup_manifest lists {} WAL ranges; expected exactly one (a timeline switch \
             during the backup?)",
            m.wal_ranges.len()
        ));
    };
    let lsn = |t: &str| Lsn::parse(t).ok_or_else(|| format!("backup_manifest: bad LSN {t:?}"));
    let (start, end) = (lsn(&r.start)?.0, lsn(&r.end)?.0);
    if end < start {
        return Err(format!(
            "backup_manifest: End-LSN {} before Start-LSN {}",
            r.end, r.start
        ));
    }
    Ok(WalRange {
        timeline: r.timeline,
        start,
        end,
    })
}

/// The name of the segment holding `lsn` on `timeline` (PostgreSQL's XLogFileName).
pub fn segment_name(timeline: u32, lsn: u64, seg_size: u64) -> String {
    let segno = lsn / seg_size;
    let per_id = 0x1_0000_0000 / seg_size;
    format!("{timeline:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

impl WalRange {
    /// First and last segment needed. The last is the one holding the byte just
    /// before `end` (PostgreSQL's own rule: a backup ending exactly on a segment
    /// boundary does not need the next segment).
    pub fn segments(&self, seg_size: u64) -> Vec<String> {
        let first = self.start / seg_size;
        let last = (self.end.max(self.start + 1) - 1) / seg_size;
        (first..=last.max(first))
            .map(|n| segment_name(self.timeline, n * seg_size, seg_size))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 * 1024 * 1024;

    #[test]
    fn range_from_a_manifest() {
        let json = br#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [],
            "WAL-Ranges": [{ "Timeline": 2, "Start-LSN": "0/5000028", "End-LSN": "0/7000100" }],
            "Manifest-Checksum": "x"}"#;
        let r = from_manifest(json).unwrap();
        assert_eq!(r.timeline, 2);
        assert_eq!(r.start, 0x500_0028);
        assert_eq!(
            r.segments(SEG),
            [
                "000000020000000000000005",
                "000000020000000000000006",
                "000000020000000000000007"
            ]
        );
        assert!(from_manifest(br#"{"WAL-Ranges": []}"#).is_err());
        assert!(from_manifest(b"not json").is_err());
    }

    #[test]
    fn segment_names_follow_postgresql() {
        assert_eq!(
            segment_name(1, 0x1_FF00_0000, SEG),
            "0000000100000001000000FF"
        );
        assert_eq!(
            segment_name(3, 0x2_0000_0000, SEG),
            "000000030000000200000000"
        );
        // 1 GiB segments: 4 per "log id".
        assert_eq!(
            segment_name(1, 0x1_C000_0000, 1 << 30),
            "000000010000000100000003"
        );
        // Ending exactly on a boundary needs nothing of the next segment.
        let r = WalRange {
            timeline: 1,
            start: 0x200_0028,
            end: 0x300_0000,
        };
        assert_eq!(r.segments(SEG), ["000000010000000000000002"]);
    }
}
