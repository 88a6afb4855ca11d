//! The outputs of a run, all in one directory: `report.json` (verdict,
//! checks, timings), `events.json` (the whole [`EventLog`], which the checker
//! can be run on again), `summary.md` (for people) and `timeline.svg`
//! ([`crate::svg`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::checker::{self, Checks, Rules, Stats, Verdict};
use crate::events::{secs, EventLog, NodeInfo, RunInfo, Us};
use crate::schedule::Step;

/// Totals of what the workload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub writes_acknowledged: usize,
    pub writes_failed: usize,
    pub probe_acknowledged: usize,
    pub probe_failed: u64,
    pub primary_rounds: u64,
    pub faults_injected: usize,
    /// Length of the workload, microseconds.
    pub workload: Us,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub verdict_line: String,
    pub verdict: Verdict,
    /// The command that replays this run's schedule.
    pub replay: String,
    pub run: Option<RunInfo>,
    pub nodes: Vec<NodeInfo>,
    pub steps: Vec<Step>,
    pub counts: Counts,
    pub checks: Checks,
}

/// Check `log` and build the report.
pub fn build(log: &EventLog, replay: &str) -> Report {
    let checks = checker::check(log, &Rules::for_log(log));
    let verdict = checker::verdict(log, &checks);
    Report {
        verdict_line: checker::verdict_line(log, &checks, &verdict),
        replay: replay.to_string(),
        run: log.info.clone(),
        nodes: log.nodes.clone(),
        steps: log.steps.clone(),
        counts: Counts {
            writes_acknowledged: log.writes.len(),
            writes_failed: log.write_failures.len(),
            probe_acknowledged: log.probes.len(),
            probe_failed: log.probe_failures.iter().map(|f| u64::from(f.count)).sum(),
            primary_rounds: checks.two_primaries.rounds,
            faults_injected: log.faults.len(),
            workload: log.ended,
        },
        verdict,
        checks,
    }
}

fn opt_secs(v: Option<Us>) -> String {
    v.map_or_else(|| "-".into(), |us| format!("{:.2}", us as f64 / 1e6))
}

fn stats_cells(s: &Stats) -> String {
    format!("{} | {}", opt_secs(s.median), opt_secs(s.max))
}

/// `summary.md`.
pub fn markdown(r: &Report, log: &EventLog) -> String {
    let mut m = String::new();
    let pass = if r.verdict.pass { "PASS" } else { "FAIL" };
    let _ = writeln!(
        m,
        "# Warden chaos run: {pass}\n\n```\n{}\n```\n",
        r.verdict_line
    );
    if let Some(i) = &r.run {
        let mode = match (i.sync, i.sync_quorum, i.sync_strict) {
            (true, true, true) => "synchronous, quorum (strict)",
            (true, true, false) => "synchronous, quorum",
            (true, false, true) => "synchronous (strict)",
            (true, false, false) => "synchronous",
            _ => "asynchronous",
        };
        let _ = writeln!(m, "| | |\n|---|---|");
        let _ = writeln!(m, "| seed | {} |", i.seed);
        let _ = writeln!(m, "| replay | `{}` |", r.replay);
        let engine = if i.redis {
            "Redis (synchronous: `WAIT 1` confirms each counted write)"
        } else {
            "PostgreSQL"
        };
        let engine = if i.redis && !i.sync { "Redis" } else { engine };
        let _ = writeln!(m, "| engine | {engine} |");
        let _ = writeln!(m, "| replication | {mode} |");
        let _ = writeln!(
            m,
            "| failsafe mode | {} |",
            if i.failsafe { "on" } else { "off" }
        );
        let _ = writeln!(m, "| lease ttl | {} s |", i.ttl_s);
        let _ = writeln!(m, "| started | {} |", i.started_at);
        if let Some(c) = &i.dynamic_config {
            let keys = [
                "ttl",
                "loop_wait",
                "retry_timeout",
                "synchronous_mode",
                "synchronous_mode_strict",
                "failsafe_mode",
            ];
            let shown: Vec<String> = keys
                .iter()
                .filter(|k| !c[**k].is_null())
                .map(|k| format!("{k}={}", c[*k]))
                .collect();
            let _ = writeln!(
                m,
                "| dynamic config (`GET /config`) | {} |",
                shown.join(" ")
            );
        }
    }
    let c = &r.counts;
    let _ = writeln!(
        m,
        "| workload | {}; {} writes acknowledged through HAProxy, {} failed; {} direct writes \
         acknowledged, {} refused; {} `/primary` rounds |\n",
        secs(c.workload),
        c.writes_acknowledged,
        c.writes_failed,
        c.probe_acknowledged,
        c.probe_failed,
        c.primary_rounds
    );
    if !r.verdict.reasons.is_empty() {
        let _ = writeln!(m, "## Why it failed\n");
        for reason in &r.verdict.reasons {
            let _ = writeln!(m, "- {reason}");
        }
        m.push('\n');
    }
    if !r.verdict.notes.is_empty() {
        let _ = writeln!(m, "## Notes\n");
        for n in &r.verdict.notes {
            let _ = writeln!(m, "- {n}");
        }
        m.push('\n');
    }
    faults_table(&mut m, r, log);
    checks_section(&mut m, r, log);
    let _ = writeln!(
        m,
        "## Files\n\n- `report.json`: this report as JSON\n- `events.json`: everything recorded \
         (the checker's input)\n- `timeline.svg`: primary per node, direct writes, write gaps, \
         faults\n- `logs/`: agent, PostgreSQL, etcd and HAProxy logs"
    );
    m
}

fn faults_table(m: &mut String, r: &Report, log: &EventLog) {
    let _ = writeln!(m, "## Faults\n");
    if r.checks.faults.is_empty() {
        let _ = writeln!(m, "No fault was injected.\n");
        return;
    }
    let _ = writeln!(
        m,
        "Times in seconds from the start of the workload. Failover: from the injection to the \
         first write acknowledged through HAProxy by another node. Write gap: the longest time \
         without an acknowledged write around the fault.\n"
    );
    let _ = writeln!(
        m,
        "| step | fault | target | injected | new primary | failover | write gap | converged after | notes |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for (t, f) in r.checks.faults.iter().zip(&log.faults) {
        let conv = f
            .converged
            .map(|c| c.saturating_sub(f.healed.unwrap_or(f.injected)));
        let mut notes = f.notes.join("; ");
        if let Some(e) = &f.error {
            notes = format!("ERROR: {e}; {notes}");
        }
        if let Some(e) = &f.converge_error {
            notes = format!("NOT CONVERGED: {e}; {notes}");
        }
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {}{} | {} | {} |",
            t.step,
            t.kind,
            t.target.replace('|', "/"),
            opt_secs(Some(t.injected)),
            t.new_primary.map_or("-", |n| log.node_name(n)),
            opt_secs(t.failover),
            opt_secs(t.write_gap),
            if t.gap_open { " (open)" } else { "" },
            opt_secs(conv),
            notes.replace('|', "/").trim_end_matches("; ")
        );
    }
    let _ = writeln!(
        m,
        "\n### Per fault kind\n\n| fault | injected | failover median | failover max | write gap median | write gap max |\n\
         |---|---|---|---|---|---|"
    );
    for k in &r.checks.per_kind {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} |",
            k.kind,
            k.injected,
            stats_cells(&k.failover),
            stats_cells(&k.write_gap)
        );
    }
    m.push('\n');
}

fn checks_section(m: &mut String, r: &Report, log: &EventLog) {
    let ok = |b: bool| if b { "ok" } else { "VIOLATED" };
    let c = &r.checks;
    let l = &c.lost_writes;
    let _ = writeln!(m, "## Checks\n");
    let _ = writeln!(
        m,
        "- (a) lost writes — {}: {} of {} acknowledged writes and {} of {} acknowledged direct \
         writes missing on the final primary ({}){}",
        ok(l.ok),
        l.lost,
        l.acknowledged,
        l.probe_lost,
        l.probe_acknowledged,
        if l.required {
            "required"
        } else {
            "counted only: asynchronous mode"
        },
        l.unchecked
            .as_ref()
            .map_or(String::new(), |u| format!("; not checked: {u}"))
    );
    let _ = writeln!(
        m,
        "- (b) split brain — {}: {} runs of acknowledged direct writes, {} overlaps between nodes",
        ok(c.split_brain.ok),
        c.split_brain.runs.len(),
        c.split_brain.overlaps.len()
    );
    for o in &c.split_brain.overlaps {
        let _ = writeln!(
            m,
            "  - {} and {} during {} - {}: {}",
            log.node_name(o.a),
            log.node_name(o.b),
            secs(o.from),
            secs(o.to),
            o.evidence
        );
    }
    let _ = writeln!(
        m,
        "- (c) two primaries — {}: {} polling rounds, {} spans with two 200s",
        ok(c.two_primaries.ok),
        c.two_primaries.rounds,
        c.two_primaries.violations.len()
    );
    let _ = writeln!(
        m,
        "- (d) convergence — {}: bound {}, final convergence after {}",
        ok(c.convergence.ok),
        secs(c.convergence.bound),
        c.convergence.final_after.map_or_else(|| "-".into(), secs)
    );
    for p in &c.convergence.problems {
        let _ = writeln!(m, "  - {p}");
    }
    let _ = writeln!(m, "- (e) durations: per fault and per kind above\n");
}

/// Write every output into `dir` (created). Returns the paths written.
pub fn write_all(dir: &Path, log: &EventLog, report: &Report) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("report.json", serde_json::to_string_pretty(report)?),
        ("events.json", serde_json::to_string(log)?),
        ("summary.md", markdown(report, log)),
        ("timeline.svg", crate::svg::timeline(log, &report.checks)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::{FaultRecord, FinalState, PrimarySample, ProbeAck, WriteAck};
    use crate::fault::FaultKind;

    /// A small run: node1 primary, a kill at 2 s, node2 primary from 3 s.
    pub(crate) fn sample_log() -> EventLog {
        let mut log = EventLog {
            info: Some(RunInfo {
                seed: 5,
                sync: false,
                sync_strict: false,
                sync_quorum: false,
                failsafe: false,
                require_no_loss: false,
                converge_bound_s: 60,
                ttl_s: 10,
                started_at: "2025-01-01T00:00:00+00:00".into(),
                unsafe_test: false,
                dynamic_config: None,
                redis: false,
            }),
            nodes: (0..3)
                .map(|i| NodeInfo {
                    name: format!("node{}", i + 1),
                    pg_port: 6000 + i as u16,
                })
                .collect(),
            round_ms: 50,
            ended: 6_000_000,
            ..EventLog::default()
        };
        for k in 0..60u64 {
            let t = k * 100_000;
            let node = if t < 2_000_000 {
                Some(0)
            } else if t >= 3_000_000 {
                Some(1)
            } else {
                continue;
            };
            log.writes.push(WriteAck {
                id: k as i64,
                sent: t,
                acked: t + 1_000,
                node,
            });
            log.probes.push(ProbeAck {
                node: node.unwrap_or(0),
                id: 1_000 + k as i64,
                sent: t,
                acked: t + 2_000,
            });
        }
        for round in 0..120 {
            for node in 0..3 {
                let p = (node == 0 && round < 40) || (node == 1 && round >= 60);
                log.push_primary_sample(PrimarySample {
                    node,
                    round,
                    sent: round * 50_000,
                    got: round * 50_000 + 1_000,
                    status: if node == 0 && (40..50).contains(&round) {
                        None
                    } else {
                        Some(if p { 200 } else { 503 })
                    },
                });
            }
        }
        log.faults.push(FaultRecord {
            step: 1,
            kind: FaultKind::KillPrimary,
            target: "node1 (primary) -> <x> & \"y\"".into(),
            old_primary: Some(0),
            injected: 2_000_000,
            healed: Some(2_500_000),
            converged: Some(4_000_000),
            converge_error: None,
            error: None,
            notes: vec!["a note".into()],
        });
        let w: Vec<i64> = log.writes.iter().map(|w| w.id).collect();
        let p: Vec<i64> = log.probes.iter().map(|p| p.id).collect();
        log.final_state = FinalState {
            converge_started: 5_000_000,
            converged: Some(5_100_000),
            writes_after_convergence: true,
            primary: Some(1),
            writer_present: Some(crate::events::to_ranges(&w)),
            probe_present: Some(crate::events::to_ranges(&p)),
            ..FinalState::default()
        };
        log
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let log = sample_log();
        let r = build(&log, "warden-chaos --seed 5");
        assert!(r.verdict.pass, "{:?}", r.verdict.reasons);
        assert!(
            r.verdict_line.starts_with("VERDICT: PASS seed=5"),
            "{}",
            r.verdict_line
        );
        let text = serde_json::to_string_pretty(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let events = serde_json::to_string(&log).unwrap();
        let back: EventLog = serde_json::from_str(&events).unwrap();
        assert_eq!(back, log);
        // The reloaded log checks the same.
        assert_eq!(build(&back, "warden-chaos --seed 5"), r);
    }

    #[test]
    fn the_markdown_summary_names_verdict_faults_and_checks() {
        let log = sample_log();
        let r = build(&log, "warden-chaos --seed 5");
        let md = markdown(&r, &log);
        assert!(md.starts_with("# Warden chaos run: PASS"), "{md}");
        assert!(md.contains("| replay | `warden-chaos --seed 5` |"), "{md}");
        assert!(md.contains("| 1 | kill-primary | node1 (primary)"), "{md}");
        assert!(
            md.contains("| node2 | 1.00 |"),
            "failover 2 s -> 3.001 s: {md}"
        );
        assert!(md.contains("(b) split brain — ok"), "{md}");
        assert!(!md.contains("## Why it failed"), "{md}");

        let mut bad = log;
        bad.faults[0].converge_error = Some("stuck".into());
        bad.faults[0].converged = None;
        let r = build(&bad, "x");
        let md = markdown(&r, &bad);
        assert!(md.starts_with("# Warden chaos run: FAIL"), "{md}");
        assert!(
            md.contains("## Why it failed\n\n- convergence: step 1"),
            "{md}"
        );
        assert!(md.contains("NOT CONVERGED: stuck"), "{md}");
    }

    #[test]
    fn write_all_writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = sample_log();
        let r = build(&log, "x");
        let files = write_all(&dir.path().join("out"), &log, &r).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["report.json", "events.json", "summary.md", "timeline.svg"]
        );
        for f in files {
            assert!(
                std::fs::metadata(&f).unwrap().len() > 100,
                "{}",
                f.display()
            );
        }
    }
}
