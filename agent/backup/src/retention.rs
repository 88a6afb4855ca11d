//! Which backups (or dumps) a retention policy keeps: a pure function over their
//! finish times, with restic's meanings (`restic forget --keep-*`).
//!
//! Going from the newest to the oldest, each rule keeps an item when the item falls
//! into a different bucket than the last item that rule kept, until the rule has kept
//! its count: `keep_last` (every item is its own bucket), `keep_daily` (UTC calendar
//! day), `keep_weekly` (ISO week), `keep_monthly` (calendar month). So `keep_daily: 7`
//! keeps the newest item of each of the newest 7 days *that have an item* — days
//! without a backup do not use up the count. An item kept by any rule is kept; no
//! rule at all keeps everything.

use chrono::{DateTime, Datelike, Utc};

use warden_config::Retention;

/// Why an item is kept (for the dry-run listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Last,
    Daily,
    Weekly,
    Monthly,
    /// No rule is set.
    NoPolicy,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Last => "last",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::NoPolicy => "no retention rule",
        }
    }
}

/// The decision for one item, in the order the items were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Empty: the item is not kept.
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

type Bucket = fn(DateTime<Utc>, usize) -> (i64, i64);

fn by_index(_: DateTime<Utc>, i: usize) -> (i64, i64) {
    (i64::try_from(i).unwrap_or(i64::MAX), 0)
}
fn by_day(t: DateTime<Utc>, _: usize) -> (i64, i64) {
    (i64::from(t.year()), i64::from(t.ordinal()))
}
fn by_week(t: DateTime<Utc>, _: usize) -> (i64, i64) {
    let w = t.iso_week();
    (i64::from(w.year()), i64::from(w.week()))
}
fn by_month(t: DateTime<Utc>, _: usize) -> (i64, i64) {
    (i64::from(t.year()), i64::from(t.month()))
}

/// Decides for each of `times` (any order) whether `policy` keeps it.
pub fn decide(policy: &Retention, times: &[DateTime<Utc>]) -> Vec<Decision> {
    let mut out = vec![Decision { reasons: vec![] }; times.len()];
    if policy.keeps_everything() {
        for d in &mut out {
            d.reasons.push(Reason::NoPolicy);
        }
        return out;
    }
    // Newest first; ties keep their given order so the result is deterministic.
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|&a, &b| times[b].cmp(&times[a]).then(a.cmp(&b)));
    let rules: [(Option<u32>, Bucket, Reason); 4] = [
        (policy.keep_last, by_index, Reason::Last),
        (policy.keep_daily, by_day, Reason::Daily),
        (policy.keep_weekly, by_week, Reason::Weekly),
        (policy.keep_monthly, by_month, Reason::Monthly),
    ];
    for (count, bucket, reason) in rules {
        let Some(mut left) = count else { continue };
        let mut last: Option<(i64, i64)> = None;
        for (rank, &i) in order.iter().enumerate() {
            if left == 0 {
                break;
            }
            let b = bucket(times[i], rank);
            if last != Some(b) {
                out[i].reasons.push(reason);
                last = Some(b);
                left -= 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    fn kept(policy: &Retention, times: &[DateTime<Utc>]) -> Vec<usize> {
        decide(policy, times)
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keep())
            .map(|(i, _)| i)
            .collect()
    }

    fn policy(
        last: Option<u32>,
        daily: Option<u32>,
        weekly: Option<u32>,
        monthly: Option<u32>,
    ) -> Retention {
        Retention {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
        }
    }

    #[test]
    fn no_rule_keeps_everything() {
        let times = [t(2026, 1, 1, 0), t(2026, 1, 1, 1)];
        let d = decide(&Retention::default(), &times);
        assert!(d.iter().all(|d| d.reasons == vec![Reason::NoPolicy]));
        assert!(decide(&Retention::default(), &[]).is_empty());
    }

    #[test]
    fn keep_last_keeps_the_newest_regardless_of_input_order() {
        let times = [
            t(2026, 1, 3, 0),
            t(2026, 1, 1, 0),
            t(2026, 1, 4, 0),
            t(2026, 1, 2, 0),
        ];
        assert_eq!(kept(&policy(Some(2), None, None, None), &times), vec![0, 2]);
        assert_eq!(
            kept(&policy(Some(10), None, None, None), &times),
            vec![0, 1, 2, 3]
        );
        assert_eq!(
            kept(&policy(Some(0), None, None, None), &times),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day_and_skips_empty_days() {
        // Two on Jan 5, one on Jan 3 (Jan 4 has none), two on Jan 1.
        let times = [
            t(2026, 1, 5, 10),
            t(2026, 1, 5, 20),
            t(2026, 1, 3, 12),
            t(2026, 1, 1, 1),
            t(2026, 1, 1, 23),
        ];
        // The newest of Jan 5 (index 1), then Jan 3 (2): empty Jan 4 does not count.
        assert_eq!(kept(&policy(None, Some(2), None, None), &times), vec![1, 2]);
        assert_eq!(
            kept(&policy(None, Some(3), None, None), &times),
            vec![1, 2, 4]
        );
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // 2026-01-04 is a Sunday (ISO week 1 of 2026), 2026-01-05 a Monday (week 2);
        // 2025-12-29 (Monday) is in ISO week 1 of 2026 too.
        let times = [
            t(2026, 1, 5, 0),
            t(2026, 1, 4, 0),
            t(2025, 12, 29, 0),
            t(2025, 12, 28, 0),
        ];
        assert_eq!(kept(&policy(None, None, Some(2), None), &times), vec![0, 1]);
        assert_eq!(
            kept(&policy(None, None, Some(3), None), &times),
            vec![0, 1, 3]
        );
    }

    #[test]
    fn keep_monthly_and_union_of_rules() {
        let times = [
            t(2026, 3, 31, 0),
            t(2026, 3, 1, 0),
            t(2026, 2, 15, 0),
            t(2026, 1, 20, 0),
            t(2025, 12, 31, 23),
        ];
        assert_eq!(
            kept(&policy(None, None, None, Some(3)), &times),
            vec![0, 2, 3]
        );
        // keep_last 2 adds Mar 1; reasons accumulate.
        let d = decide(&policy(Some(2), None, None, Some(3)), &times);
        assert_eq!(d[0].reasons, vec![Reason::Last, Reason::Monthly]);
        assert_eq!(d[1].reasons, vec![Reason::Last]);
        assert_eq!(d[2].reasons, vec![Reason::Monthly]);
        assert!(!d[4].keep());
    }

    #[test]
    fn days_are_utc_calendar_days() {
        // 23:30 and 00:30 the next day are different days even 1 h apart.
        let times = [
            Utc.with_ymd_and_hms(2026, 6, 2, 0, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 6, 1, 23, 30, 0).unwrap(),
        ];
        assert_eq!(kept(&policy(None, Some(2), None, None), &times), vec![0, 1]);
    }

    #[test]
    fn equal_times_are_separate_items_for_keep_last() {
        let times = [t(2026, 1, 1, 0), t(2026, 1, 1, 0), t(2026, 1, 1, 0)];
        assert_eq!(kept(&policy(Some(2), None, None, None), &times), vec![0, 1]);
        assert_eq!(kept(&policy(None, Some(5), None, None), &times), vec![0]);
    }
}
