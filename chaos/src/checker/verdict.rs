//! The verdict over the checks' findings: what fails the run, what is only noted, and
//! the one-line summary.

use serde::{Deserialize, Serialize};

use super::Checks;
use crate::events::{secs, EventLog};

/// PASS or FAIL with the reasons, plus notes that do not fail the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    pub reasons: Vec<String>,
    pub notes: Vec<String>,
}

/// The verdict: every failed check and harness problem is a reason.
pub fn verdict(log: &EventLog, checks: &Checks) -> Verdict {
    let mut reasons: Vec<String> = log
        .harness_errors
        .iter()
        .map(|e| format!("harness: {e}"))
        .collect();
    let mut notes = Vec::new();
    for f in &log.faults {
        if let Some(e) = &f.error {
            reasons.push(format!("step {} ({}): {e}", f.step, f.kind));
        }
    }
    if log.writes.is_empty() {
        reasons.push("no write was acknowledged through HAProxy: nothing was tested".into());
    }
    if log.probes.is_empty() {
        reasons.push("no direct write was ever acknowledged: the probes tested nothing".into());
    }
    if log.primary.is_empty() {
        reasons.push("/primary was never sampled".into());
    }
    let l = &checks.lost_writes;
    let lost_text = format!(
        "{} of {} acknowledged writes and {} of {} acknowledged direct writes missing on the \
         final primary{}",
        l.lost,
        l.acknowledged,
        l.probe_lost,
        l.probe_acknowledged,
        first_ids(&l.lost_ids, &l.probe_lost_ids)
    );
    match (&l.unchecked, l.lost + l.probe_lost) {
        (Some(why), _) if l.required => {
            reasons.push(format!("lost writes: could not be checked: {why}"));
        }
        (Some(why), _) => notes.push(format!("lost writes not checked: {why}")),
        (None, 0) => {}
        (None, _) if l.required => reasons.push(format!("lost writes: {lost_text}")),
        (None, _) => notes.push(format!(
            "asynchronous replication: {lost_text} (counted; a failure only with --sync or \
             --require-no-loss)"
        )),
    }
    for o in checks.split_brain.overlaps.iter().take(5) {
        reasons.push(format!(
            "split brain: {} and {} both accepted direct writes during {} - {} ({})",
            log.node_name(o.a),
            log.node_name(o.b),
            secs(o.from),
            secs(o.to),
            o.evidence
        ));
    }
    more(
        &mut reasons,
        checks.split_brain.overlaps.len(),
        "split brains",
    );
    for v in checks.two_primaries.violations.iter().take(5) {
        reasons.push(format!(
            "two primaries: {} and {} both answered 200 on /primary in {} polling round(s) from {}",
            log.node_name(v.a),
            log.node_name(v.b),
            v.last_round - v.first_round + 1,
            secs(v.at)
        ));
    }
    more(
        &mut reasons,
        checks.two_primaries.violations.len(),
        "double-primary spans",
    );
    reasons.extend(
        checks
            .convergence
            .problems
            .iter()
            .map(|p| format!("convergence: {p}")),
    );
    Verdict {
        pass: reasons.is_empty(),
        reasons,
        notes,
    }
}

fn more(reasons: &mut Vec<String>, n: usize, what: &str) {
    if n > 5 {
        reasons.push(format!("... and {} more {what}", n - 5));
    }
}

fn first_ids(writer: &[i64], probe: &[i64]) -> String {
    let show = |v: &[i64]| {
        v.iter()
            .take(10)
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (writer.is_empty(), probe.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" (ids {})", show(writer)),
        (true, false) => format!(" (direct write ids {})", show(probe)),
        (false, false) => format!(" (ids {}; direct write ids {})", show(writer), show(probe)),
    }
}

/// The one-line summary, `VERDICT: PASS ...` or `VERDICT: FAIL: ...`.
pub fn verdict_line(log: &EventLog, checks: &Checks, v: &Verdict) -> String {
    if v.pass {
        let seed = log.info.as_ref().map_or(0, |i| i.seed);
        let mode =
            log.info
                .as_ref()
                .map_or("async", |i| match (i.sync, i.sync_quorum, i.sync_strict) {
                    (true, true, true) => "quorum-strict",
                    (true, true, false) => "quorum",
                    (true, false, true) => "sync-strict",
                    (true, false, false) => "sync",
                    _ => "async",
                });
        let engine = if log.info.as_ref().is_some_and(|i| i.redis) {
            " engine=redis"
        } else {
            ""
        };
        format!(
            "VERDICT: PASS seed={seed} mode={mode}{engine} faults={} writes={} lost={}{} \
             split-brain=0 two-primaries=0 converged-in={}",
            log.faults.len(),
            checks.lost_writes.acknowledged,
            checks.lost_writes.lost + checks.lost_writes.probe_lost,
            if checks.lost_writes.required {
                ""
            } else {
                " (not required)"
            },
            checks
                .convergence
                .final_after
                .map_or_else(|| "?".into(), secs)
                .replace(' ', "")
        )
    } else {
        format!("VERDICT: FAIL: {}", v.reasons.join("; "))
    }
}
