//! What to do with the files `pg_receivewal` leaves in the spool directory: a pure
//! plan over their names, so the rules are tested without processes.
//!
//! `pg_receivewal` writes `<segment>.partial` while a segment fills, renames it to
//! `<segment>` once complete and fsynced, writes `<tli>.history` when it follows a
//! timeline switch, and leaves the old timeline's last segment as `.partial` (it was
//! never completed on that timeline). So:
//! - `.history` files and complete segments are ready to upload;
//! - a `.partial` is ready only once a newer timeline appears in the spool (it is then
//!   final, and uploaded under its `.partial` name, as PostgreSQL's archiver does
//!   after a promotion); the current `.partial` is still being written;
//! - after upload a file is deleted, except the newest segment-like file: a restarted
//!   `pg_receivewal` finds where to resume from the newest file in the spool, and
//!   without one it would fall back to the server's current position, leaving a gap.

use crate::layout::{WalKind, WalName};

/// The position of a segment-like file: (segment number, timeline), as
/// `pg_receivewal` orders them when it looks for its start.
fn position(name: &WalName) -> Option<(u64, u32)> {
    if !matches!(name.kind, WalKind::Segment | WalKind::Partial) {
        return None;
    }
    let s = name.as_str();
    let tli = u32::from_str_radix(&s[..8], 16).ok()?;
    let log = u64::from_str_radix(&s[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&s[16..24], 16).ok()?;
    // Monotonic for any segment size: the log part counts in 4 GiB units.
    Some(((log << 32) | seg, tli))
}

fn timeline(name: &WalName) -> u32 {
    u32::from_str_radix(name.timeline(), 16).unwrap_or(0)
}

/// One file the uploader should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub name: String,
    /// Delete it from the spool once it is in the repository.
    pub delete: bool,
}

/// The files ready for upload, in upload order: timeline histories first (a restore
/// needs the history before the new timeline's segments), then segments by position.
/// Names that are not WAL files (pg_receivewal's temporary files) are ignored.
pub fn plan(names: &[String]) -> Vec<Ready> {
    let parsed: Vec<WalName> = names
        .iter()
        .filter_map(|n| WalName::parse(n).ok())
        .collect();
    let newest = parsed.iter().filter_map(position).max();
    let top_timeline = parsed.iter().map(timeline).max().unwrap_or(0);
    let mut histories: Vec<Ready> = Vec::new();
    let mut segments: Vec<((u64, u32), Ready)> = Vec::new();
    for n in &parsed {
        match n.kind {
            WalKind::TimelineHistory => histories.push(Ready {
                name: n.to_string(),
                delete: true,
            }),
            WalKind::Segment | WalKind::Partial => {
                let final_partial = n.kind == WalKind::Partial && timeline(n) < top_timeline;
                if n.kind == WalKind::Partial && !final_partial {
                    continue;
                }
                let Some(pos) = position(n) else { continue };
                segments.push((
                    pos,
                    Ready {
                        name: n.to_string(),
                        delete: Some(pos) != newest,
                    },
                ));
            }
            WalKind::BackupHistory => {}
        }
    }
    histories.sort_by(|a, b| a.name.cmp(&b.name));
    segments.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    histories.extend(segments.into_iter().map(|(_, r)| r));
    histories
}

/// The `.partial` `pg_receivewal` is writing now: the one on the newest timeline (an
/// older timeline's `.partial` is final and goes up through [`plan`]).
pub fn live_partial(names: &[String]) -> Option<String> {
    let parsed: Vec<WalName> = names
        .iter()
        .filter_map(|n| WalName::parse(n).ok())
        .collect();
    let top_timeline = parsed.iter().map(timeline).max()?;
    parsed
        .iter()
        .filter(|n| n.kind == WalKind::Partial && timeline(n) == top_timeline)
        .filter_map(|n| position(n).map(|p| (p, n.to_string())))
        .max()
        .map(|(_, n)| n)
}

/// Whether the spool holds anything `pg_receivewal` can resume from.
pub fn has_start(names: &[String]) -> bool {
    names
        .iter()
        .filter_map(|n| WalName::parse(n).ok())
        .any(|n| position(&n).is_some())
}

/// The newest complete segment among archived object names: where a new archiver
/// resumes (it streams from the segment after it).
pub fn newest_segment<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    names
        .filter_map(|n| WalName::parse(n).ok())
        .filter(|n| n.kind == WalKind::Segment)
        .filter_map(|n| position(&n).map(|p| (p, n.to_string())))
        .max()
        .map(|(_, n)| n)
}

/// The LSN just past the end of a complete segment, given the segment size (the
/// file's size).
pub fn end_lsn(name: &str, segment_size: u64) -> Option<u64> {
    let n = WalName::parse(name).ok()?;
    let (pos, _) = position(&n)?;
    let (log, seg) = (pos >> 32, pos & 0xFFFF_FFFF);
    if segment_size == 0 || segment_size > 1 << 32 {
        return None;
    }
    let per_log = (1u64 << 32) / segment_size;
    Some((log * per_log + seg + 1) * segment_size)
}

/// `pg_receivewal` resumes on the timeline of the newest file in the spool. When that
/// timeline ended exactly where streaming resumes (a promotion right after a segment
/// switch), the server has nothing more to send on it, and `pg_receivewal` (15) fails
/// on the empty answer instead of following the switch, at every restart. Then it must
/// start on the next timeline, at the same position: an empty `.partial` of that
/// timeline there makes it do so (it pads the file and fills it from the segment's
/// start). Returns that file's name.
///
/// `files`: spool names with their sizes; `switches`: the server's `(timeline, end,
/// next timeline)` list.
pub fn resume_on_next_timeline(
    files: &[(String, u64)],
    switches: &[(u32, u64, u32)],
) -> Option<String> {
    let ((pos, tli), size, partial) = files
        .iter()
        .filter_map(|(n, size)| {
            let w = WalName::parse(n).ok()?;
            Some((position(&w)?, *size, w.kind == WalKind::Partial))
        })
        .max_by_key(|(p, _, _)| *p)?;
    if size == 0 || size > 1 << 32 || !(1u64 << 32).is_multiple_of(size) {
        return None;
    }
    let per_log = (1u64 << 32) / size;
    let segno = (pos >> 32) * per_log + (pos & 0xFFFF_FFFF);
    let start = if partial { segno } else { segno + 1 } * size;
    let &(_, _, next) = switches
        .iter()
        .find(|&&(t, end, _)| t == tli && end == start)?;
    let start_seg = start / size;
    Some(format!(
        "{next:08X}{:08X}{:08X}.partial",
        start_seg / per_log,
        start_seg % per_log
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }
    fn ready(v: &[&str]) -> Vec<(String, bool)> {
        plan(&names(v))
            .into_iter()
            .map(|r| (r.name, r.delete))
            .collect()
    }
    fn r(n: &str, delete: bool) -> (String, bool) {
        (n.to_string(), delete)
    }

    #[test]
    fn complete_segments_upload_in_order_and_the_newest_stays() {
        assert_eq!(
            ready(&[
                "000000010000000000000005.partial",
                "000000010000000000000004",
                "000000010000000000000003",
            ]),
            vec![
                r("000000010000000000000003", true),
                r("000000010000000000000004", true)
            ]
        );
        // Just renamed, its successor not yet created: uploaded, kept as the start.
        assert_eq!(
            ready(&["000000010000000000000003", "000000010000000000000004"]),
            vec![
                r("000000010000000000000003", true),
                r("000000010000000000000004", false)
            ]
        );
    }

    #[test]
    fn the_current_partial_waits_and_a_finished_one_goes_up() {
        assert!(ready(&["000000010000000000000005.partial"]).is_empty());
        assert_eq!(
            ready(&[
                "000000010000000000000005.partial",
                "00000002.history",
                "000000020000000000000005.partial",
            ]),
            vec![
                r("00000002.history", true),
                r("000000010000000000000005.partial", true)
            ]
        );
        // The history arrived, the new timeline's file not yet: the old .partial is
        // final (uploaded) but still the resume point (kept).
        assert_eq!(
            ready(&["000000010000000000000005.partial", "00000002.history"]),
            vec![
                r("00000002.history", true),
                r("000000010000000000000005.partial", false)
            ]
        );
    }

    #[test]
    fn other_files_are_ignored() {
        assert!(ready(&["00000002.history.tmp", "junk", ".warden-fetch-x"]).is_empty());
        assert!(!has_start(&names(&["00000002.history"])));
        assert!(has_start(&names(&["000000010000000000000005.partial"])));
    }

    #[test]
    fn newest_segment_orders_by_position_then_timeline() {
        let objs = [
            "000000010000000000000009",
            "000000010000000100000000",
            "00000002.history",
            "000000010000000100000001.partial",
            "000000020000000100000000",
        ];
        assert_eq!(
            newest_segment(objs.iter().copied()).as_deref(),
            Some("000000020000000100000000")
        );
        assert_eq!(newest_segment(["00000002.history"].into_iter()), None);
    }

    #[test]
    fn end_lsn_of_a_segment() {
        let mib16 = 16 << 20;
        assert_eq!(end_lsn("000000010000000000000003", mib16), Some(0x400_0000));
        assert_eq!(
            end_lsn("0000000100000001000000FF", mib16),
            Some(0x2_0000_0000)
        );
        assert_eq!(end_lsn("00000002.history", mib16), None);
    }

    #[test]
    fn a_timeline_that_ended_at_the_resume_point_is_skipped() {
        let mib16 = 16 << 20;
        let files = vec![("000000010000000000000007".to_string(), mib16)];
        // Timeline 1 ended at 0/8000000, exactly after segment 7.
        let switches = [(1, 0x800_0000, 2)];
        assert_eq!(
            resume_on_next_timeline(&files, &switches).as_deref(),
            Some("000000020000000000000008.partial")
        );
        // Ended inside segment 8: pg_receivewal streams up to it and follows.
        assert_eq!(resume_on_next_timeline(&files, &[(1, 0x800_00A8, 2)]), None);
        // Already on timeline 2.
        let files = vec![("000000020000000000000008.partial".to_string(), 0)];
        assert_eq!(resume_on_next_timeline(&files, &switches), None);
        // A .partial resumes at its own start.
        let files = vec![("000000010000000000000008.partial".to_string(), mib16)];
        assert_eq!(
            resume_on_next_timeline(&files, &[(1, 0x800_0000, 2)]).as_deref(),
            Some("000000020000000000000008.partial")
        );
    }

    #[test]
    fn live_partial_is_the_newest_timelines_partial() {
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            live_partial(&names(&[
                "000000010000000000000004",
                "000000010000000000000005.partial",
                "00000002.history",
                "000000020000000000000005.partial",
            ])),
            Some("000000020000000000000005.partial".into())
        );
        // The old timeline's final .partial is not live once the next timeline began.
        assert_eq!(
            live_partial(&names(&[
                "000000010000000000000005.partial",
                "000000020000000000000005",
            ])),
            None
        );
        assert_eq!(live_partial(&names(&["000000010000000000000004"])), None);
        assert_eq!(live_partial(&[]), None);
    }
}
