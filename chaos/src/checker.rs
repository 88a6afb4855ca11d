//! The invariant checker: a pure function of an [`EventLog`].
//!
//! (a) **Lost writes**: every write acknowledged through HAProxy, and every
//!     direct write a probe saw acknowledged, must be present on the final
//!     primary. Required with `synchronous_mode` or `--require-no-loss`;
//!     otherwise (asynchronous replication loses the tail of WAL on a
//!     failover by design) counted and reported.
//! (b) **Split brain**: no two nodes accepted direct writes at the same time;
//!     see [`split_brain`] for what the probes prove and what they cannot.
//! (c) **Two primaries**: in no polling round did two nodes answer 200 on
//!     `/primary`.
//! (d) **Convergence**: after every fault and at the end, one primary, every
//!     other node a streaming replica, the old primary rejoined, within the
//!     bound; and writes flow again at the end.
//! (e) **Durations**: per fault, the failover (or switchover) time — from the
//!     injection to the first write acknowledged through HAProxy by another
//!     node than the old primary — and the longest gap between acknowledged
//!     writes around it; per kind, their median and maximum.
//!
//! Besides, a run that acknowledged no write, or never sampled `/primary`,
//! tested nothing and fails, and so does every problem the harness had
//! injecting faults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::{in_ranges, secs, EventLog, ProbeAck, Us};
use crate::fault::FaultKind;

mod verdict;
pub use verdict::{verdict, verdict_line, Verdict};

/// Two consecutive acknowledged probes of a node count as one continuous
/// writable period only if the next was sent at most this long after the
/// previous was acknowledged, and neither took longer than this (probes run
/// every 50-100 ms; a longer silence or a long wait — a commit blocked on a
/// synchronous standby — leaves the time in between unknown).
pub const MAX_PROBE_LINK_US: Us = 1_000_000;
/// Lists in the report are capped at this many entries.
const LIST_CAP: usize = 100;

/// What the checks require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Lost acknowledged writes fail the run.
    pub require_no_loss: bool,
    /// Bound on each convergence, microseconds.
    pub converge_bound: Us,
    pub max_probe_link: Us,
}

impl Rules {
    /// The rules a run's own settings imply.
    pub fn for_log(log: &EventLog) -> Rules {
        let info = log.info.as_ref();
        Rules {
            require_no_loss: info.is_some_and(|i| i.sync || i.require_no_loss),
            converge_bound: info.map_or(120, |i| i.converge_bound_s) * 1_000_000,
            max_probe_link: MAX_PROBE_LINK_US,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWrites {
    pub required: bool,
    pub acknowledged: usize,
    pub lost: usize,
    /// The first lost ids.
    pub lost_ids: Vec<i64>,
    pub probe_acknowledged: usize,
    pub probe_lost: usize,
    pub probe_lost_ids: Vec<i64>,
    /// Why the final primary's ids are unknown, if they are.
    pub unchecked: Option<String>,
    pub ok: bool,
}

/// Two nodes both writable during `[from, to]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    pub a: usize,
    pub b: usize,
    pub from: Us,
    pub to: Us,
    /// What proves it.
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrain {
    /// Maximal runs of acknowledged direct writes, per node.
    pub runs: Vec<WriteRun>,
    pub overlaps: Vec<Overlap>,
    pub ok: bool,
}

/// Consecutive acknowledged direct writes of one node, with no failed
/// attempt and no long silence between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRun {
    pub node: usize,
    pub first_sent: Us,
    pub first_acked: Us,
    pub last_sent: Us,
    pub last_acked: Us,
    pub acks: usize,
}

impl WriteRun {
    /// The instants at which the node was certainly writable (see
    /// [`split_brain`]): `[first_acked, last_sent]`, if not empty.
    pub fn certain(&self) -> Option<(Us, Us)> {
        (self.first_acked <= self.last_sent).then_some((self.first_acked, self.last_sent))
    }
}

/// Nodes `a` and `b` both answered 200 in rounds `first_round..=last_round`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoublePrimary {
    pub a: usize,
    pub b: usize,
    pub first_round: u64,
    pub last_round: u64,
    /// Start of the first of those rounds.
    pub at: Us,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoPrimaries {
    pub rounds: u64,
    pub violations: Vec<DoublePrimary>,
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convergence {
    pub bound: Us,
    /// Time from the heal (or the end of the faults) to convergence, per
    /// step that waited for it.
    pub per_step: Vec<(usize, Option<Us>)>,
    /// Final convergence time from the start of the wait.
    pub final_after: Option<Us>,
    pub problems: Vec<String>,
    pub ok: bool,
}

/// Timing of one injected fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultTiming {
    pub step: usize,
    pub kind: FaultKind,
    pub target: String,
    pub injected: Us,
    pub old_primary: Option<usize>,
    /// The first node other than the old primary to acknowledge a write
    /// through HAProxy after the fault (before the next one).
    pub new_primary: Option<usize>,
    /// Injection to that acknowledgement.
    pub failover: Option<Us>,
    /// Longest time without an acknowledged write, among the gaps that
    /// ended (writes came back) before the next fault.
    pub write_gap: Option<Us>,
    /// No write was acknowledged between this fault and the next one (or
    /// the end of the run): the gap lasted at least that long.
    pub gap_open: bool,
}

/// Median and maximum of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    pub median: Option<Us>,
    pub max: Option<Us>,
}

impl Stats {
    pub fn of(values: &[Us]) -> Stats {
        let mut v = values.to_vec();
        v.sort_unstable();
        let n = v.len();
        let median = match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2),
        };
        Stats {
            n,
            median,
            max: v.last().copied(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindStats {
    pub kind: FaultKind,
    pub injected: usize,
    pub failover: Stats,
    pub write_gap: Stats,
}

/// Every check's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    pub lost_writes: LostWrites,
    pub split_brain: SplitBrain,
    pub two_primaries: TwoPrimaries,
    pub convergence: Convergence,
    pub faults: Vec<FaultTiming>,
    pub per_kind: Vec<KindStats>,
}

/// Run every check.
pub fn check(log: &EventLog, rules: &Rules) -> Checks {
    let faults = fault_timings(log);
    Checks {
        lost_writes: lost_writes(log, rules),
        split_brain: split_brain(log, rules),
        two_primaries: two_primaries(log),
        convergence: convergence(log, rules),
        per_kind: per_kind(&faults),
        faults,
    }
}

/// (a) Acknowledged ids that the final primary does not have.
pub fn lost_writes(log: &EventLog, rules: &Rules) -> LostWrites {
    let fin = &log.final_state;
    let missing = |present: &Option<Vec<(i64, i64)>>, ids: &mut dyn Iterator<Item = i64>| {
        present
            .as_ref()
            .map(|r| ids.filter(|&id| !in_ranges(r, id)).collect::<Vec<i64>>())
    };
    let lost = missing(&fin.writer_present, &mut log.writes.iter().map(|w| w.id));
    let probe_lost = missing(&fin.probe_present, &mut log.probes.iter().map(|p| p.id));
    let unchecked = match (&lost, &probe_lost) {
        (Some(_), Some(_)) => None,
        _ => Some(
            fin.read_error
                .clone()
                .unwrap_or_else(|| "the final primary's rows were not read".into()),
        ),
    };
    let (lost, probe_lost) = (lost.unwrap_or_default(), probe_lost.unwrap_or_default());
    let ok =
        !rules.require_no_loss || (unchecked.is_none() && lost.is_empty() && probe_lost.is_empty());
    LostWrites {
        required: rules.require_no_loss,
        acknowledged: log.writes.len(),
        lost: lost.len(),
        lost_ids: lost.iter().copied().take(LIST_CAP).collect(),
        probe_acknowledged: log.probes.len(),
        probe_lost: probe_lost.len(),
        probe_lost_ids: probe_lost.iter().copied().take(LIST_CAP).collect(),
        unchecked,
        ok,
    }
}

/// The runs of acknowledged direct writes of every node.
pub fn write_runs(log: &EventLog, rules: &Rules) -> Vec<WriteRun> {
    let mut runs = Vec::new();
    for node in 0..log.nodes.len() {
        let mut acks: Vec<&ProbeAck> = log.probes.iter().filter(|p| p.node == node).collect();
        acks.sort_by_key(|p| p.sent);
        let failures: Vec<Us> = log
            .probe_failures
            .iter()
            .filter(|f| f.node == node)
            .map(|f| f.first_sent)
            .collect();
        let mut cur: Option<WriteRun> = None;
        let slow = |sent: Us, acked: Us| acked.saturating_sub(sent) > rules.max_probe_link;
        for a in acks {
            if let Some(r) = cur.as_mut() {
                let failed_between = failures.iter().any(|&f| r.last_sent < f && f < a.sent);
                let silent = a.sent.saturating_sub(r.last_acked) > rules.max_probe_link;
                let blocked = slow(r.last_sent, r.last_acked) || slow(a.sent, a.acked);
                if !failed_between && !silent && !blocked {
                    r.last_sent = a.sent;
                    r.last_acked = a.acked;
                    r.acks += 1;
                    continue;
                }
                runs.push(*r);
            }
            cur = Some(WriteRun {
                node,
                first_sent: a.sent,
                first_acked: a.acked,
                last_sent: a.sent,
                last_acked: a.acked,
                acks: 1,
            });
        }
        runs.extend(cur);
    }
    runs
}

/// (b) Two nodes accepting writes at the same time, from the direct-write
/// probes.
///
/// What one acknowledged probe proves: its INSERT committed at some instant
/// of `[sent, acked]` — the node was writable then, but where in the window
/// is unknown. A single acknowledgement therefore proves writability at *an*
/// unknown instant, never over an interval.
///
/// To speak about intervals we assume continuity within a run: a node whose
/// probes were acknowledged one after another (every 50-100 ms, no failed
/// attempt in between, no silence or wait over [`MAX_PROBE_LINK_US`]) stayed
/// writable between those commits — no fence, restart and re-promotion fits
/// in such a gap. A run's commits span at least `[first_acked, last_sent]`
/// (the first commit happened before its ack arrived, the last after its
/// request was sent), so the node was certainly writable throughout that
/// interval ([`WriteRun::certain`]).
///
/// Two nodes were then certainly writable at the same instant if
/// * their certain intervals intersect, or
/// * a run with no certain interval (a single acknowledgement, window
///   `[sent, acked]`) lies entirely inside another node's certain interval:
///   wherever in its window that commit happened, the other node was
///   writable at that instant.
///
/// This never reports a correct hand-over as split brain: the old primary's
/// certain interval ends when its last acknowledged probe was *sent*, before
/// its last commit, and the new one's begins when its first was
/// *acknowledged*, after its first commit; so a report means the new primary
/// committed a write before the old one committed its last. The price is
/// blindness to overlaps shorter than about one probe period.
pub fn split_brain(log: &EventLog, rules: &Rules) -> SplitBrain {
    let runs = write_runs(log, rules);
    let mut overlaps = Vec::new();
    for (i, x) in runs.iter().enumerate() {
        for y in &runs[i + 1..] {
            if x.node == y.node {
                continue;
            }
            if let Some(o) = overlap(log, x, y).or_else(|| overlap(log, y, x)) {
                overlaps.push(o);
            }
        }
    }
    overlaps.sort_by_key(|o| (o.from, o.a, o.b));
    SplitBrain {
        ok: overlaps.is_empty(),
        overlaps,
        runs,
    }
}

/// Proof that `x` and `y` were writable at the same time, if there is one.
fn overlap(log: &EventLog, x: &WriteRun, y: &WriteRun) -> Option<Overlap> {
    let (a, b) = (x.node.min(y.node), x.node.max(y.node));
    let name = |n: usize| log.node_name(n).to_string();
    match (x.certain(), y.certain()) {
        (Some((xl, xh)), Some((yl, yh))) => {
            let (from, to) = (xl.max(yl), xh.min(yh));
            (from <= to).then(|| Overlap {
                a,
                b,
                from,
                to,
                evidence: format!(
                    "{} acknowledged {} direct writes in a row from {} to {}, {} acknowledged {} \
                     from {} to {}",
                    name(x.node),
                    x.acks,
                    secs(x.first_sent),
                    secs(x.last_acked),
                    name(y.node),
                    y.acks,
                    secs(y.first_sent),
                    secs(y.last_acked)
                ),
            })
        }
        (None, Some((yl, yh))) => (yl <= x.first_sent && x.last_acked <= yh).then(|| Overlap {
            a,
            b,
            from: x.first_sent,
            to: x.last_acked,
            evidence: format!(
                "{} acknowledged a direct write sent at {} and acknowledged at {}, while {} \
                 acknowledged {} in a row from {} to {}",
                name(x.node),
                secs(x.first_sent),
                secs(x.last_acked),
                name(y.node),
                y.acks,
                secs(y.first_sent),
                secs(y.last_acked)
            ),
        }),
        _ => None,
    }
}

/// (c) Rounds in which two nodes answered 200 on `/primary`.
///
/// Every node is polled at the start of each round (its own thread, so a
/// frozen node delays only its own samples); a round's samples were sent
/// within one round length of each other. Two 200s in one round mean two
/// nodes claimed to be primary within that window plus the request
/// timeout — a hand-over leaves a far longer gap (the lease margin on a
/// failover, the old primary's shutdown on a switchover).
pub fn two_primaries(log: &EventLog) -> TwoPrimaries {
    let ok_spans: Vec<_> = log
        .primary
        .iter()
        .filter(|s| s.status == Some(200))
        .collect();
    let mut violations = Vec::new();
    for (i, x) in ok_spans.iter().enumerate() {
        for y in &ok_spans[i + 1..] {
            if x.node == y.node {
                continue;
            }
            let (first, last) = (
                x.first_round.max(y.first_round),
                x.last_round.min(y.last_round),
            );
            if first <= last {
                violations.push(DoublePrimary {
                    a: x.node.min(y.node),
                    b: x.node.max(y.node),
                    first_round: first,
                    last_round: last,
                    at: first * log.round_ms * 1000,
                });
            }
        }
    }
    violations.sort_by_key(|v| (v.first_round, v.a, v.b));
    let rounds = log
        .primary
        .iter()
        .map(|s| s.last_round + 1)
        .max()
        .unwrap_or(0)
        - log.primary.iter().map(|s| s.first_round).min().unwrap_or(0);
    TwoPrimaries {
        rounds,
        ok: violations.is_empty(),
        violations,
    }
}

/// (d) Every convergence within the bound.
pub fn convergence(log: &EventLog, rules: &Rules) -> Convergence {
    let mut problems = Vec::new();
    let mut per_step = Vec::new();
    for f in &log.faults {
        let from = f.healed.unwrap_or(f.injected);
        if let Some(e) = &f.converge_error {
            problems.push(format!(
                "step {} ({}): not converged within {}: {e}",
                f.step,
                f.kind,
                secs(rules.converge_bound)
            ));
            per_step.push((f.step, None));
        } else if let Some(c) = f.converged {
            let took = c.saturating_sub(from);
            if took > rules.converge_bound {
                problems.push(format!(
                    "step {} ({}): converged only after {} (bound {})",
                    f.step,
                    f.kind,
                    secs(took),
                    secs(rules.converge_bound)
                ));
            }
            per_step.push((f.step, Some(took)));
        }
    }
    let fin = &log.final_state;
    let final_after = fin
        .converged
        .map(|c| c.saturating_sub(fin.converge_started));
    match final_after {
        None => problems.push(format!(
            "not converged at the end within {}: {}",
            secs(rules.converge_bound),
            fin.converge_error
                .as_deref()
                .unwrap_or("no convergence seen")
        )),
        Some(took) if took > rules.converge_bound => problems.push(format!(
            "converged at the end only after {} (bound {})",
            secs(took),
            secs(rules.converge_bound)
        )),
        Some(_) if !fin.writes_after_convergence => {
            problems.push("no write went through HAProxy after the final convergence".into());
        }
        Some(_) => {}
    }
    Convergence {
        bound: rules.converge_bound,
        per_step,
        final_after,
        ok: problems.is_empty(),
        problems,
    }
}

/// (e) Per fault: failover time and longest write gap.
pub fn fault_timings(log: &EventLog) -> Vec<FaultTiming> {
    let mut acks: Vec<_> = log.writes.clone();
    acks.sort_by_key(|a| a.acked);
    let mut out = Vec::new();
    for (i, f) in log.faults.iter().enumerate() {
        let end = log
            .faults
            .get(i + 1)
            .map_or(log.ended, |n| n.injected)
            .max(f.injected);
        let first_new = acks.iter().find(|a| {
            a.acked >= f.injected
                && a.acked < end
                && a.node.is_some()
                && a.node != f.old_primary
                && f.old_primary.is_some()
        });
        // The longest ack-to-ack interval closed by an acknowledgement inside
        // this fault's window [injected, next injection): an outage belongs to
        // the fault during which writes came back, never to two faults.
        let mut prev = acks
            .iter()
            .rev()
            .find(|a| a.acked < f.injected)
            .map_or(f.injected, |a| a.acked);
        let mut gap: Option<Us> = None;
        for a in acks
            .iter()
            .filter(|a| a.acked >= f.injected && a.acked < end)
        {
            gap = Some(gap.unwrap_or(0).max(a.acked - prev));
            prev = a.acked;
        }
        // No write was acknowledged in the whole window: the gap is at least
        // the window, still open at its end.
        let gap_open = gap.is_none();
        let gap = gap.or_else(|| Some(end.saturating_sub(prev)));
        out.push(FaultTiming {
            step: f.step,
            kind: f.kind,
            target: f.target.clone(),
            injected: f.injected,
            old_primary: f.old_primary,
            new_primary: first_new.and_then(|a| a.node),
            failover: first_new.map(|a| a.acked - f.injected),
            write_gap: gap,
            gap_open,
        });
    }
    out
}

/// Median and maximum per fault kind.
pub fn per_kind(faults: &[FaultTiming]) -> Vec<KindStats> {
    let mut by: BTreeMap<FaultKind, Vec<&FaultTiming>> = BTreeMap::new();
    for f in faults {
        by.entry(f.kind).or_default().push(f);
    }
    by.into_iter()
        .map(|(kind, fs)| KindStats {
            kind,
            injected: fs.len(),
            failover: Stats::of(&fs.iter().filter_map(|f| f.failover).collect::<Vec<_>>()),
            write_gap: Stats::of(&fs.iter().filter_map(|f| f.write_gap).collect::<Vec<_>>()),
        })
        .collect()
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
