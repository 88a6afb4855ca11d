//! The checker on hand-made event logs: a clean failover passes, and each
//! kind of violation is reported (and only when it really is one).

use super::*;
use crate::events::{
    to_ranges, FaultRecord, FinalState, NodeInfo, PrimarySample, ProbeError, RunInfo, WriteAck,
};

const MS: Us = 1_000;
const S: Us = 1_000_000;

fn info(sync: bool) -> RunInfo {
    RunInfo {
        seed: 42,
        sync,
        sync_strict: false,
        sync_quorum: false,
        failsafe: false,
        require_no_loss: false,
        converge_bound_s: 60,
        ttl_s: 10,
        started_at: "2025-01-01T00:00:00Z".into(),
        unsafe_test: false,
        dynamic_config: None,
        redis: false,
    }
}

/// A clean failover: node0 is primary until a kill at 5 s, node1 takes over
/// at 6.5 s; writes every 10 ms, probes every 100 ms, `/primary` every 50 ms;
/// converged at 20 s; everything acknowledged is on the final primary.
fn clean_log() -> EventLog {
    let mut log = EventLog {
        info: Some(info(false)),
        nodes: (0..3)
            .map(|i| NodeInfo {
                name: format!("node{}", i + 1),
                pg_port: 5000 + i as u16,
            })
            .collect(),
        round_ms: 50,
        ended: 25 * S,
        ..EventLog::default()
    };
    let mut id = 0;
    for t in (0..25 * S).step_by(10 * MS as usize) {
        let node = if t < 5 * S {
            0
        } else if t >= 6_500 * MS {
            1
        } else {
            continue;
        };
        id += 1;
        log.writes.push(WriteAck {
            id,
            sent: t,
            acked: t + 2 * MS,
            node: Some(node),
        });
    }
    let mut pid = 1_000_000;
    for t in (0..25 * S).step_by(100 * MS as usize) {
        for node in 0..3 {
            let writable = (node == 0 && t < 5 * S) || (node == 1 && t >= 6_500 * MS);
            if writable {
                pid += 1;
                log.probes.push(ProbeAck {
                    node,
                    id: pid,
                    sent: t,
                    acked: t + 3 * MS,
                });
            } else {
                log.push_probe_failure(node, ProbeError::ReadOnly, t, t + MS);
            }
        }
    }
    for round in 0..500 {
        for node in 0..3 {
            let primary = (node == 0 && round < 100) || (node == 1 && round >= 130);
            log.push_primary_sample(PrimarySample {
                node,
                round,
                sent: round * 50 * MS,
                got: round * 50 * MS + 2 * MS,
                status: Some(if primary { 200 } else { 503 }),
            });
        }
    }
    log.faults.push(FaultRecord {
        step: 1,
        kind: FaultKind::KillPrimary,
        target: "node1 (primary)".into(),
        old_primary: Some(0),
        injected: 5 * S,
        healed: Some(12 * S),
        converged: Some(18 * S),
        converge_error: None,
        error: None,
        notes: vec![],
    });
    let writer_ids: Vec<i64> = log.writes.iter().map(|w| w.id).collect();
    let probe_ids: Vec<i64> = log.probes.iter().map(|p| p.id).collect();
    log.final_state = FinalState {
        converge_started: 22 * S,
        converged: Some(23 * S),
        converge_error: None,
        writes_after_convergence: true,
        primary: Some(1),
        writer_present: Some(to_ranges(&writer_ids)),
        probe_present: Some(to_ranges(&probe_ids)),
        read_error: None,
    };
    log
}

fn run(log: &EventLog) -> (Checks, Verdict) {
    let checks = check(log, &Rules::for_log(log));
    let v = verdict(log, &checks);
    (checks, v)
}

fn assert_fails_with(log: &EventLog, needle: &str) -> Verdict {
    let (_, v) = run(log);
    assert!(!v.pass, "expected FAIL with {needle:?}, got PASS");
    assert!(
        v.reasons.iter().any(|r| r.contains(needle)),
        "no reason contains {needle:?}: {:?}",
        v.reasons
    );
    v
}

#[test]
fn a_clean_failover_passes_and_is_timed() {
    let log = clean_log();
    let (c, v) = run(&log);
    assert!(v.pass, "{:?}", v.reasons);
    assert!(v.notes.is_empty(), "{:?}", v.notes);
    assert!(c.split_brain.ok && c.two_primaries.ok && c.convergence.ok && c.lost_writes.ok);
    // One run per primary period; replicas never acknowledged.
    let runs: Vec<usize> = c.split_brain.runs.iter().map(|r| r.node).collect();
    assert_eq!(runs, vec![0, 1]);
    assert_eq!(c.two_primaries.rounds, 500);
    let f = &c.faults[0];
    assert_eq!(f.new_primary, Some(1));
    // Kill at 5 s, first write acknowledged by node2 at 6.502 s.
    assert_eq!(f.failover, Some(1_502 * MS));
    // Last ack before: 4.992 s; first after: 6.502 s.
    assert_eq!(f.write_gap, Some(1_510 * MS));
    assert!(!f.gap_open);
    assert_eq!(c.per_kind.len(), 1);
    assert_eq!(c.per_kind[0].failover.median, Some(1_502 * MS));
    assert_eq!(c.convergence.final_after, Some(S));
    assert_eq!(c.convergence.per_step, vec![(1, Some(6 * S))]);
    let line = verdict_line(&log, &c, &v);
    assert!(
        line.starts_with("VERDICT: PASS seed=42 mode=async faults=1 writes="),
        "{line}"
    );
    assert!(line.contains("lost=0 (not required)"), "{line}");
}

#[test]
fn lost_writes_are_counted_in_async_mode_and_fail_in_sync_mode() {
    let mut log = clean_log();
    // The final primary lacks ids 400..=410 (acknowledged by node1 before the kill).
    let ids: Vec<i64> = log
        .writes
        .iter()
        .map(|w| w.id)
        .filter(|id| !(400..=410).contains(id))
        .collect();
    log.final_state.writer_present = Some(to_ranges(&ids));
    let (c, v) = run(&log);
    assert_eq!(c.lost_writes.lost, 11);
    assert_eq!(c.lost_writes.lost_ids[0], 400);
    assert!(v.pass, "async loss must not fail: {:?}", v.reasons);
    assert!(v.notes[0].contains("11 of"), "{:?}", v.notes);

    log.info.as_mut().unwrap().sync = true;
    let v = assert_fails_with(&log, "lost writes: 11 of");
    assert!(v.reasons[0].contains("ids 400, 401"), "{:?}", v.reasons);

    log.info.as_mut().unwrap().sync = false;
    log.info.as_mut().unwrap().require_no_loss = true;
    assert_fails_with(&log, "lost writes");
}

#[test]
fn a_lost_direct_write_counts_too_and_unreadable_rows_fail_when_required() {
    let mut log = clean_log();
    log.info.as_mut().unwrap().sync = true;
    let keep: Vec<i64> = log.probes.iter().skip(1).map(|p| p.id).collect();
    log.final_state.probe_present = Some(to_ranges(&keep));
    let (c, _) = run(&log);
    assert_eq!((c.lost_writes.lost, c.lost_writes.probe_lost), (0, 1));
    assert_fails_with(&log, "1 of");

    let mut log = clean_log();
    log.info.as_mut().unwrap().sync = true;
    log.final_state.writer_present = None;
    log.final_state.read_error = Some("connection refused".into());
    assert_fails_with(&log, "could not be checked: connection refused");
}

/// A second node acknowledges direct writes in a row while the first still
/// does: both certain intervals intersect.
#[test]
fn overlapping_writers_are_a_split_brain() {
    let mut log = clean_log();
    for k in 0..10u64 {
        let t = 4 * S + k * 100 * MS + 50 * MS;
        log.probes.push(ProbeAck {
            node: 2,
            id: 9_000 + k as i64,
            sent: t,
            acked: t + 2 * MS,
        });
    }
    let (c, _) = run(&log);
    let o = &c.split_brain.overlaps;
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!((o[0].a, o[0].b), (0, 2));
    // node3's run: first acked 4.052 s, last sent 4.950 s; node1's certain
    // interval ends at 4.9 s, its last probe's send.
    assert_eq!((o[0].from, o[0].to), (4_052 * MS, 4_900 * MS));
    assert_fails_with(
        &log,
        "split brain: node1 and node3 both accepted direct writes",
    );
}

/// A single acknowledgement whose whole window lies inside another node's
/// certain interval proves an overlap; one straddling its end does not.
#[test]
fn a_single_write_inside_another_nodes_run_is_a_split_brain_but_not_at_its_edge() {
    let mut log = clean_log();
    log.probes.push(ProbeAck {
        node: 2,
        id: 9_999,
        sent: 2 * S + 10 * MS,
        acked: 2 * S + 20 * MS,
    });
    assert_fails_with(&log, "split brain: node1 and node3");

    let mut log = clean_log();
    // node1's last probe was sent at 4.9 s and acknowledged at 4.903 s; a
    // node3 write sent at 4.899 s and acknowledged at 4.950 s may have
    // committed after node1's last commit: not proof.
    log.probes.push(ProbeAck {
        node: 2,
        id: 9_999,
        sent: 4_899 * MS,
        acked: 4_950 * MS,
    });
    let (c, v) = run(&log);
    assert!(c.split_brain.ok, "{:?}", c.split_brain.overlaps);
    assert!(v.pass, "{:?}", v.reasons);
}

/// A quick hand-over whose windows touch is not a split brain: the new
/// primary's first write was sent before the old one's last was
/// acknowledged, but acknowledged after the old one's last was sent.
#[test]
fn a_tight_hand_over_is_not_a_split_brain() {
    let mut log = clean_log();
    log.probes.retain(|p| p.node != 1);
    for k in 0..20u64 {
        // node2 from 4.899 s (just before node1's last probe at 4.9 s).
        let t = 4_899 * MS + k * 100 * MS;
        let acked = if k == 0 { 4_905 * MS } else { t + 2 * MS };
        log.probes.push(ProbeAck {
            node: 1,
            id: 8_000 + k as i64,
            sent: t,
            acked,
        });
    }
    let (c, _) = run(&log);
    assert!(c.split_brain.ok, "{:?}", c.split_brain.overlaps);
}

/// A failed attempt between two acknowledgements ends a run: the node may
/// have stopped being writable in between, so its runs do not cover the
/// other node's writes.
#[test]
fn a_failure_between_writes_breaks_the_run() {
    let mut log = clean_log();
    log.probes.retain(|p| p.node != 1);
    // node1 writable 0-5 s; node2 has a run inside 2.2-2.8 s.
    let node2 = |log: &mut EventLog| {
        for k in 0..7u64 {
            let t = 2_200 * MS + k * 100 * MS;
            log.probes.push(ProbeAck {
                node: 1,
                id: 7_000 + k as i64,
                sent: t,
                acked: t + MS,
            });
        }
    };
    node2(&mut log);
    assert_fails_with(&log, "split brain");

    // The same, but node1 failed one probe at 2.05 s and node1's probes
    // between 2.1 s and 3 s are gone: node1's runs are 0-2 s and 3-5 s.
    let mut log = clean_log();
    log.probes
        .retain(|p| p.node != 1 && !(p.node == 0 && (2_050 * MS..3_000 * MS).contains(&p.sent)));
    log.push_probe_failure(0, ProbeError::Connect, 2_050 * MS, 2_060 * MS);
    log.probe_failures.sort_by_key(|f| f.first_sent);
    node2(&mut log);
    let (c, _) = run(&log);
    assert!(c.split_brain.ok, "{:?}", c.split_brain.overlaps);
    let node0_runs = c.split_brain.runs.iter().filter(|r| r.node == 0).count();
    assert_eq!(node0_runs, 2);
}

#[test]
fn a_long_silence_breaks_the_run() {
    let mut log = clean_log();
    log.probes.retain(|p| p.node != 1);
    // node1's probes between 1.5 s and 3 s vanish without a failure (stuck).
    log.probes
        .retain(|p| !(p.node == 0 && (1_500 * MS..3_000 * MS).contains(&p.sent)));
    log.probes.push(ProbeAck {
        node: 1,
        id: 7_777,
        sent: 2 * S,
        acked: 2 * S + MS,
    });
    let (c, _) = run(&log);
    assert!(c.split_brain.ok, "{:?}", c.split_brain.overlaps);
    assert_eq!(c.split_brain.runs.iter().filter(|r| r.node == 0).count(), 2);
}

#[test]
fn two_200s_in_one_round_are_two_primaries_but_adjacent_rounds_are_not() {
    let mut log = clean_log();
    // node3 also answers 200 in rounds 40-42.
    log.primary.retain(|s| s.node != 2);
    for round in 0..500 {
        log.push_primary_sample(PrimarySample {
            node: 2,
            round,
            sent: round * 50 * MS,
            got: round * 50 * MS + MS,
            status: Some(if (40..=42).contains(&round) { 200 } else { 503 }),
        });
    }
    let (c, _) = run(&log);
    assert_eq!(c.two_primaries.violations.len(), 1);
    let v = &c.two_primaries.violations[0];
    assert_eq!((v.a, v.b, v.first_round, v.last_round), (0, 2, 40, 42));
    assert_eq!(v.at, 2 * S);
    assert_fails_with(
        &log,
        "two primaries: node1 and node3 both answered 200 on /primary in 3 polling round(s) from 2.000 s",
    );

    // node3 answers 200 in round 100, right after node1's last 200 (round 99).
    let mut log = clean_log();
    log.primary.retain(|s| s.node != 2);
    for round in 0..500 {
        log.push_primary_sample(PrimarySample {
            node: 2,
            round,
            sent: round * 50 * MS,
            got: round * 50 * MS + MS,
            status: Some(if round == 100 { 200 } else { 503 }),
        });
    }
    let (c, v) = run(&log);
    assert!(c.two_primaries.ok, "{:?}", c.two_primaries.violations);
    assert!(v.pass, "{:?}", v.reasons);
}

#[test]
fn a_missing_sample_is_not_a_200() {
    let mut log = clean_log();
    // node3 answers 200 in round 150, but node2 (the primary then) was not
    // sampled in that round: nothing to compare, no violation.
    log.primary.clear();
    for round in 0..500 {
        for node in 0..3 {
            if node == 1 && round == 150 {
                continue;
            }
            let primary = (node == 0 && round < 100)
                || (node == 1 && round >= 130)
                || (node == 2 && round == 150);
            log.push_primary_sample(PrimarySample {
                node,
                round,
                sent: round * 50 * MS,
                got: round * 50 * MS + MS,
                status: Some(if primary { 200 } else { 503 }),
            });
        }
    }
    let (c, _) = run(&log);
    assert!(c.two_primaries.ok, "{:?}", c.two_primaries.violations);
}

#[test]
fn non_convergence_fails() {
    let mut log = clean_log();
    log.faults[0].converged = None;
    log.faults[0].converge_error = Some("node1 is not streaming".into());
    assert_fails_with(
        &log,
        "step 1 (kill-primary): not converged within 60.000 s: node1 is not streaming",
    );

    let mut log = clean_log();
    log.faults[0].converged = Some(100 * S);
    assert_fails_with(&log, "converged only after 88.000 s");

    let mut log = clean_log();
    log.final_state.converged = None;
    log.final_state.converge_error = Some("two nodes answer 200".into());
    assert_fails_with(
        &log,
        "not converged at the end within 60.000 s: two nodes answer 200",
    );

    let mut log = clean_log();
    log.final_state.writes_after_convergence = false;
    assert_fails_with(
        &log,
        "no write went through HAProxy after the final convergence",
    );
}

#[test]
fn a_run_that_tested_nothing_or_could_not_inject_fails() {
    let mut log = clean_log();
    log.writes.clear();
    log.final_state.writer_present = Some(vec![]);
    assert_fails_with(&log, "no write was acknowledged through HAProxy");

    let mut log = clean_log();
    log.probes.clear();
    assert_fails_with(&log, "no direct write was ever acknowledged");

    let mut log = clean_log();
    log.primary.clear();
    assert_fails_with(&log, "/primary was never sampled");

    let mut log = clean_log();
    log.faults[0].error = Some("switchover refused: 412".into());
    assert_fails_with(&log, "step 1 (kill-primary): switchover refused: 412");

    let mut log = clean_log();
    log.harness_errors.push("cluster did not form".into());
    let (c, v) = run(&log);
    assert!(!v.pass);
    assert!(verdict_line(&log, &c, &v).starts_with("VERDICT: FAIL: harness: cluster did not form"));
}

#[test]
fn durations_per_kind_take_median_and_max() {
    let s = Stats::of(&[5, 1, 3]);
    assert_eq!((s.n, s.median, s.max), (3, Some(3), Some(5)));
    let s = Stats::of(&[4, 1, 3, 10]);
    assert_eq!((s.median, s.max), (Some(3), Some(10)));
    assert_eq!(Stats::of(&[]), Stats::default());

    // Two faults: the second one without a change of primary.
    let mut log = clean_log();
    log.faults.push(FaultRecord {
        step: 2,
        kind: FaultKind::KillEtcdMember,
        target: "etcd2".into(),
        old_primary: Some(1),
        injected: 20 * S,
        healed: Some(21 * S),
        converged: Some(21 * S),
        converge_error: None,
        error: None,
        notes: vec![],
    });
    let (c, v) = run(&log);
    assert!(v.pass, "{:?}", v.reasons);
    assert_eq!(c.faults[1].failover, None);
    assert_eq!(c.faults[1].write_gap, Some(10 * MS));
    // The first fault's window now ends at 20 s: still the same failover.
    assert_eq!(c.faults[0].failover, Some(1_502 * MS));
    let kinds: Vec<FaultKind> = c.per_kind.iter().map(|k| k.kind).collect();
    assert_eq!(
        kinds,
        vec![FaultKind::KillPrimary, FaultKind::KillEtcdMember]
    );
    assert_eq!(c.per_kind[1].failover.n, 0);
}

#[test]
fn a_gap_that_never_closes_is_open_to_the_end() {
    let mut log = clean_log();
    log.writes.retain(|w| w.acked < 5 * S);
    let ids: Vec<i64> = log.writes.iter().map(|w| w.id).collect();
    log.final_state.writer_present = Some(to_ranges(&ids));
    let (c, _) = run(&log);
    let f = &c.faults[0];
    assert!(f.gap_open);
    assert_eq!(f.write_gap, Some(25 * S - 4_992 * MS));
    assert_eq!(f.failover, None);
}

/// A write that waited long (a commit blocked on a synchronous standby) says
/// nothing about when in its window the node was writable: it ends the run
/// on both sides instead of stretching it over the wait.
#[test]
fn a_blocked_write_does_not_stretch_a_run() {
    let mut log = clean_log();
    log.probes.retain(|p| p.node != 1);
    // node1's probe sent at 1.0 s waits until 3.0 s; the next ones follow.
    log.probes
        .retain(|p| !(p.node == 0 && (1_000 * MS..3_000 * MS).contains(&p.sent)));
    log.probes.push(ProbeAck {
        node: 0,
        id: 5_555,
        sent: S,
        acked: 3 * S,
    });
    // node2 accepted writes 1.5-2.5 s.
    for k in 0..10u64 {
        let t = 1_500 * MS + k * 100 * MS;
        log.probes.push(ProbeAck {
            node: 1,
            id: 6_000 + k as i64,
            sent: t,
            acked: t + MS,
        });
    }
    let (c, _) = run(&log);
    assert!(c.split_brain.ok, "{:?}", c.split_brain.overlaps);
    // 0-0.9 s, the blocked write alone, 3.0-4.9 s.
    assert_eq!(c.split_brain.runs.iter().filter(|r| r.node == 0).count(), 3);
}

/// An outage that starts just before the next fault and ends after it is
/// that fault's, not the previous one's.
#[test]
fn a_gap_belongs_to_the_fault_during_which_writes_came_back() {
    let mut log = clean_log();
    log.writes.retain(|w| !(10 * S..14 * S).contains(&w.acked));
    let ids: Vec<i64> = log.writes.iter().map(|w| w.id).collect();
    log.final_state.writer_present = Some(to_ranges(&ids));
    log.faults.push(FaultRecord {
        step: 2,
        kind: FaultKind::FreezePostgres,
        target: "node2".into(),
        old_primary: Some(1),
        injected: 10 * S + 5 * MS,
        healed: Some(13 * S),
        converged: Some(15 * S),
        converge_error: None,
        error: None,
        notes: vec![],
    });
    let (c, v) = run(&log);
    assert!(v.pass, "{:?}", v.reasons);
    // Writes at 9.990 s (acked 9.992 s), then 14.000 s (acked 14.002 s).
    assert_eq!(c.faults[0].write_gap, Some(1_510 * MS));
    assert_eq!(c.faults[1].write_gap, Some(4_010 * MS));
    assert!(!c.faults[0].gap_open && !c.faults[1].gap_open);
}

#[test]
fn a_redis_run_is_judged_by_the_same_rules() {
    // The same events from Redis members: only the label differs.
    let mut log = clean_log();
    log.info.as_mut().unwrap().redis = true;
    let (c, v) = run(&log);
    assert!(v.pass, "{:?}", v.reasons);
    let line = verdict_line(&log, &c, &v);
    assert!(
        line.starts_with("VERDICT: PASS seed=42 mode=async engine=redis faults=1 writes="),
        "{line}"
    );
    assert_eq!(check(&clean_log(), &Rules::for_log(&clean_log())), c);

    // Asynchronous Redis may lose a killed primary's last writes: counted; with
    // --sync (a write counted only once `WAIT 1` confirmed it) it fails.
    let ids: Vec<i64> = log
        .writes
        .iter()
        .map(|w| w.id)
        .filter(|&id| id != 400)
        .collect();
    log.final_state.writer_present = Some(to_ranges(&ids));
    let (_, v) = run(&log);
    assert!(v.pass && v.notes[0].contains("1 of"), "{v:?}");
    log.info.as_mut().unwrap().sync = true;
    assert_fails_with(&log, "lost writes: 1 of");

    // Stored logs from before the flag read as PostgreSQL runs.
    let mut json: serde_json::Value = serde_json::to_value(clean_log()).unwrap();
    json["info"].as_object_mut().unwrap().remove("redis");
    let back: EventLog = serde_json::from_value(json).unwrap();
    assert!(!back.info.unwrap().redis);
}
