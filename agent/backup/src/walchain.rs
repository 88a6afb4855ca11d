//! WAL continuity over archived names, pure: which segments a restore from a given
//! start needs to reach the newest archived WAL, following timeline switches the way
//! PostgreSQL's recovery does, and which of them are missing.
//!
//! A timeline history file (`00000003.history`) lists every ancestor timeline and the
//! LSN where it was left. Recovery reads a segment from the newest timeline of the
//! chain that had begun by that segment, so the segment holding a switch point comes
//! from the *new* timeline, and the old timeline's copy of it (often `.partial`) is not
//! needed. Segment numbers are absolute (`lsn / wal_segment_size`), so the arithmetic
//! below needs the segment size (16 MiB unless initdb chose otherwise).

use std::collections::{BTreeMap, BTreeSet};

use crate::layout::{WalKind, WalName};

/// PostgreSQL's default `wal_segment_size`.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// Absolute segment number and timeline of a segment-like name.
pub fn segno(name: &WalName, seg_size: u64) -> Option<(u64, u32)> {
    if !matches!(
        name.kind,
        WalKind::Segment | WalKind::Partial | WalKind::BackupHistory
    ) {
        return None;
    }
    let s = name.as_str();
    let tli = u32::from_str_radix(&s[..8], 16).ok()?;
    let log = u64::from_str_radix(&s[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&s[16..24], 16).ok()?;
    Some((log * per_log(seg_size) + seg, tli))
}

fn per_log(seg_size: u64) -> u64 {
    (1u64 << 32) / seg_size.max(1)
}

/// The segment file name for `segno` on `tli`.
pub fn segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let p = per_log(seg_size);
    format!("{tli:08X}{:08X}{:08X}", segno / p, segno % p)
}

/// `X/Y` as PostgreSQL prints LSNs.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// One line of a history file: `parent` was left at `switch` for the next timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub parent: u32,
    pub switch: u64,
}

/// Parses a timeline history file (`<parentTLI>\t<switchpoint>\t<reason>` lines,
/// comments and blank lines ignored).
pub fn parse_history(text: &str) -> Result<Vec<Switch>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let parent = fields.next().and_then(|f| f.parse::<u32>().ok());
        let switch = fields.next().and_then(parse_lsn);
        match (parent, switch) {
            (Some(parent), Some(switch)) => out.push(Switch { parent, switch }),
            _ => return Err(format!("line {}: not \"<timeline> <lsn> ...\"", i + 1)),
        }
    }
    Ok(out)
}

/// What is archived: segment-like names per timeline, and parsed history files.
#[derive(Debug, Default, Clone)]
pub struct Archived {
    /// timeline → segment numbers of complete segments.
    pub segments: BTreeMap<u32, BTreeSet<u64>>,
    /// timeline → segment numbers of `.partial` files.
    pub partials: BTreeMap<u32, BTreeSet<u64>>,
    /// timeline → its history (the ancestors and where each was left).
    pub histories: BTreeMap<u32, Vec<Switch>>,
}

impl Archived {
    pub fn add(&mut self, name: &WalName, seg_size: u64) {
        let Some((n, tli)) = segno(name, seg_size) else {
            return;
        };
        match name.kind {
            WalKind::Segment => {
                self.segments.entry(tli).or_default().insert(n);
            }
            WalKind::Partial => {
                self.partials.entry(tli).or_default().insert(n);
            }
            _ => {}
        }
    }
}

/// Where a backup's WAL starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub tli: u32,
    pub segno: u64,
    /// The last segment the backup needs at least (its `end_wal`): checked even
    /// when nothing newer is archived.
    pub needed_to: u64,
}

/// The result of a continuity check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Continuity {
    /// The timeline followed to the end.
    pub timeline: u32,
    /// Newest segment reached (name), if any WAL was found at all.
    pub newest: Option<String>,
    /// Segments checked.
    pub checked: u64,
    /// Names of needed segments that are not archived.
    pub missing: Vec<String>,
    /// Problems that are not single missing segments (unreadable chain).
    pub problems: Vec<String>,
}

/// The timelines whose histories descend from `start` (the start's own timeline, or
/// one branched from it at or after the start): the newest is the one to follow.
fn target_timeline(a: &Archived, start: Start, seg_size: u64) -> u32 {
    let mut best = start.tli;
    for (&tli, hist) in &a.histories {
        if tli <= best {
            continue;
        }
        let descends = hist
            .iter()
            .any(|s| s.parent == start.tli && s.switch / seg_size >= start.segno);
        if descends {
            best = tli;
        }
    }
    best
}

/// Checks that every segment from `start` to the newest archived WAL of the followed
/// timeline is archived. The newest position may be a `.partial` (the archiver
/// uploads the segment it is still receiving); every one before it must be complete.
pub fn check(a: &Archived, start: Start, seg_size: u64) -> Continuity {
    let target = target_timeline(a, start, seg_size);
    let mut out = Continuity {
        timeline: target,
        ..Continuity::default()
    };
    // (first segment, timeline) of each timeline in the chain, oldest first.
    let mut begins: Vec<(u64, u32)> = vec![(0, start.tli)];
    if target != start.tli {
        let Some(hist) = a.histories.get(&target) else {
            out.problems
                .push(format!("{target:08X}.history is missing"));
            return out;
        };
        let from = hist.iter().position(|s| s.parent == start.tli);
        let Some(from) = from else {
            out.problems.push(format!(
                "{target:08X}.history does not descend from timeline {}",
                start.tli
            ));
            return out;
        };
        let chain = &hist[from..];
        for (i, s) in chain.iter().enumerate() {
            let next = chain.get(i + 1).map_or(target, |n| n.parent);
            begins.push((s.switch / seg_size, next));
        }
    }
    let tli_for = |n: u64| {
        begins
            .iter()
            .rev()
            .find(|(b, _)| *b <= n)
            .map_or(start.tli, |(_, t)| *t)
    };
    // The newest archived position on the followed chain.
    let end_full = begins
        .iter()
        .filter_map(|&(_, t)| {
            a.segments
                .get(&t)
                .and_then(|s| s.iter().next_back().copied())
        })
        .max();
    // WAL of a newer timeline that cannot be followed (its history is not archived)
    // would be silently out of reach of a restore.
    for (&tli, segs) in a.segments.iter().chain(a.partials.iter()) {
        if tli > target && !segs.is_empty() && !a.histories.contains_key(&tli) {
            let p = format!("timeline {tli} has archived WAL but {tli:08X}.history is missing");
            if !out.problems.contains(&p) {
                out.problems.push(p);
            }
        }
    }
    // A `.partial` counts only on the timeline recovery would read it from (the old
    // timeline's last `.partial` at a switch point does not).
    let end_partial = begins
        .iter()
        .filter_map(|&(_, t)| {
            a.partials
                .get(&t)
                .and_then(|s| s.iter().rev().find(|&&p| tli_for(p) == t).copied())
        })
        .max();
    let newest = match (end_full, end_partial) {
        (Some(f), Some(p)) => Some(f.max(p)),
        (f, p) => f.or(p),
    };
    let end = newest.unwrap_or(0).max(start.needed_to).max(start.segno);
    for n in start.segno..=end {
        let tli = tli_for(n);
        out.checked += 1;
        let full = a.segments.get(&tli).is_some_and(|s| s.contains(&n));
        let partial = Some(n) == newest && a.partials.get(&tli).is_some_and(|s| s.contains(&n));
        if full || partial {
            out.newest = Some(if full {
                segment_name(tli, n, seg_size)
            } else {
                format!("{}.partial", segment_name(tli, n, seg_size))
            });
        } else {
            out.missing.push(segment_name(tli, n, seg_size));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SZ: u64 = DEFAULT_SEGMENT_SIZE;

    fn archived(names: &[&str], histories: &[(u32, &str)]) -> Archived {
        let mut a = Archived::default();
        for n in names {
            a.add(&WalName::parse(n).unwrap(), SZ);
        }
        for (tli, text) in histories {
            a.histories.insert(*tli, parse_history(text).unwrap());
        }
        a
    }

    #[test]
    fn names_and_numbers_round_trip() {
        let n = WalName::parse("00000002000000010000000A").unwrap();
        assert_eq!(segno(&n, SZ), Some((256 + 10, 2)));
        assert_eq!(segment_name(2, 266, SZ), "00000002000000010000000A");
        assert_eq!(parse_lsn("1/A000028"), Some(0x1_0A00_0028));
        assert_eq!(parse_lsn("nope"), None);
    }

    #[test]
    fn history_files_parse() {
        let h = parse_history("1\t0/3000000\tno recovery target specified\n\n2\t0/5000060\tx\n")
            .unwrap();
        assert_eq!(
            h,
            vec![
                Switch {
                    parent: 1,
                    switch: 0x300_0000
                },
                Switch {
                    parent: 2,
                    switch: 0x500_0060
                }
            ]
        );
        assert!(parse_history("garbage").is_err());
    }

    #[test]
    fn continuous_single_timeline() {
        let a = archived(
            &[
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000000000004.partial",
            ],
            &[],
        );
        let c = check(
            &a,
            Start {
                tli: 1,
                segno: 2,
                needed_to: 2,
            },
            SZ,
        );
        assert!(c.missing.is_empty(), "{c:?}");
        assert_eq!(c.checked, 3);
        assert_eq!(
            c.newest.as_deref(),
            Some("000000010000000000000004.partial")
        );
    }

    #[test]
    fn a_gap_is_named() {
        let a = archived(
            &[
                "000000010000000000000002",
                "000000010000000000000004",
                "000000010000000000000005",
            ],
            &[],
        );
        let c = check(
            &a,
            Start {
                tli: 1,
                segno: 2,
                needed_to: 2,
            },
            SZ,
        );
        assert_eq!(c.missing, vec!["000000010000000000000003"]);
        // The start itself missing is a gap too.
        let c = check(
            &a,
            Start {
                tli: 1,
                segno: 1,
                needed_to: 1,
            },
            SZ,
        );
        assert_eq!(
            c.missing,
            vec!["000000010000000000000001", "000000010000000000000003"]
        );
    }

    #[test]
    fn the_backups_own_range_is_needed_even_when_it_is_the_newest() {
        let a = archived(&["000000010000000000000002"], &[]);
        let c = check(
            &a,
            Start {
                tli: 1,
                segno: 2,
                needed_to: 3,
            },
            SZ,
        );
        assert_eq!(c.missing, vec!["000000010000000000000003"]);
    }

    #[test]
    fn no_wal_at_all_reports_the_start() {
        let c = check(
            &Archived::default(),
            Start {
                tli: 1,
                segno: 2,
                needed_to: 2,
            },
            SZ,
        );
        assert_eq!(c.missing, vec!["000000010000000000000002"]);
    }

    #[test]
    fn follows_timeline_switches() {
        // Timeline 1 left in segment 4 (0/4000100), timeline 2 left in segment 6.
        let a = archived(
            &[
                "000000010000000000000003",
                "000000010000000000000004.partial",
                "000000020000000000000004",
                "000000020000000000000005",
                "000000020000000000000006.partial",
                "000000030000000000000006",
                "000000030000000000000007",
            ],
            &[
                (2, "1\t0/4000100\tx\n"),
                (3, "1\t0/4000100\tx\n2\t0/6000200\ty\n"),
            ],
        );
        let c = check(
            &a,
            Start {
                tli: 1,
                segno: 3,
                needed_to: 3,
            },
            SZ,
        );
        assert_eq!(c.timeline, 3);
        assert!(c.missing.is_empty(), "{c:?}");
        assert_eq!(c.checked, 5);
        assert_eq!(c.newest.as_deref(), Some("000000030000000000000007"));

        // Without timeline 2's segment 5 the chain has a gap, named on timeline 2.
        let mut b = a.clone();
        b.segments.get_mut(&2).unwrap().remove(&5);
        let c = check(
            &b,
            Start {
                tli: 1,
                segno: 3,
                needed_to: 3,
            },
            SZ,
        );
        assert_eq!(c.missing, vec!["000000020000000000000005"]);

        // Missing history file of the newest timeline: its WAL cannot be followed,
        // which is a problem of its own.
        let mut d = a;
        d.histories.remove(&3);
        let c = check(
            &d,
            Start {
                tli: 1,
                segno: 3,
                needed_to: 3,
            },
            SZ,
        );
        assert_eq!(c.timeline, 2);
        assert_eq!(
            c.problems,
            vec!["timeline 3 has archived WAL but 00000003.history is missing"]
        );
    }

    #[test]
    fn a_timeline_branched_before_the_start_is_not_followed() {
        let a = archived(
            &[
                "000000010000000000000005",
                "000000010000000000000006",
                "000000020000000000000002",
            ],
            &[(2, "1\t0/2000000\tx\n")],
        );
        let c = check(
            &a,
            Start {
                tli: 1,
                segno: 5,
                needed_to: 5,
            },
            SZ,
        );
        assert_eq!(c.timeline, 1);
        assert!(c.missing.is_empty(), "{c:?}");
    }
}
