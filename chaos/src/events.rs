//! What a run recorded: the input of the checker, written as `events.json`.
//!
//! Plain data, no `Instant`s: every time is microseconds since the workload
//! started ([`Us`]), so a log can be stored, reloaded and checked again, and
//! the checker's unit tests can write logs by hand.
//!
//! High-rate series are stored compactly but without losing what the checks
//! need: consecutive `/primary` samples of a node with the same answer in
//! consecutive rounds become one [`StatusSpan`], consecutive failed probe
//! attempts of a node with the same cause one [`ProbeFailSpan`], and the ids
//! present on the final primary ranges of consecutive ids.

use serde::{Deserialize, Serialize};

use crate::fault::FaultKind;
use crate::schedule::Step;

/// Microseconds since the workload started.
pub type Us = u64;

/// Seconds, for messages.
pub fn secs(us: Us) -> String {
    format!("{:.3} s", us as f64 / 1e6)
}

/// How the run was set up (what the checker's rules depend on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub seed: u64,
    /// `synchronous_mode: on` in `bootstrap.dcs`.
    pub sync: bool,
    /// `synchronous_mode_strict: true`.
    pub sync_strict: bool,
    /// `synchronous_mode: quorum` (with `sync`). Absent in reports of older runs.
    #[serde(default)]
    pub sync_quorum: bool,
    /// `failsafe_mode: true`.
    pub failsafe: bool,
    /// Lost acknowledged writes fail the run even in asynchronous mode.
    pub require_no_loss: bool,
    /// Bound on convergence after each fault and at the end, seconds.
    pub converge_bound_s: u64,
    /// The agents' leader lease ttl, seconds.
    pub ttl_s: u64,
    /// Wall-clock start of the workload (RFC 3339), for people.
    pub started_at: String,
    /// The test-only unsafe fault was allowed.
    pub unsafe_test: bool,
    /// The cluster's dynamic configuration (`GET /config`) when the workload
    /// started: shows the mode the agents really run with.
    #[serde(default)]
    pub dynamic_config: Option<serde_json::Value>,
    /// Redis members instead of PostgreSQL (`--redis`). The checks do not depend
    /// on it: writes are ids, nodes are ports, times are instants in either
    /// engine. Absent in reports of older runs.
    #[serde(default)]
    pub redis: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The node's database port: PostgreSQL's, or redis-server's with `--redis`
    /// (the name stays for stored logs).
    pub pg_port: u16,
}

/// A write through HAProxy's write port that was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    pub id: i64,
    pub sent: Us,
    pub acked: Us,
    /// The node whose server committed it (PostgreSQL's `inet_server_port()`;
    /// redis-server's `tcp_port` on the connection).
    pub node: Option<usize>,
}

/// A write through HAProxy that failed (its outcome is unknown: it is never
/// counted as acknowledged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteFailure {
    pub id: i64,
    pub sent: Us,
    pub at: Us,
    pub error: String,
}

/// A direct write on one node that was acknowledged: the node accepted a
/// write at some instant in `[sent, acked]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAck {
    pub node: usize,
    pub id: i64,
    pub sent: Us,
    pub acked: Us,
}

/// Why a direct write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeError {
    /// A replica (or a fenced primary): `read-only transaction`, Redis's `READONLY`.
    ReadOnly,
    /// No connection.
    Connect,
    /// The statement hit its timeout.
    Timeout,
    /// The commit was local but the wait for the synchronous standby was
    /// cancelled (Redis: `WAIT` confirmed no replica in time): not an
    /// acknowledgement.
    SyncWaitCancelled,
    Other,
}

/// Consecutive failed direct writes on one node with the same cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFailSpan {
    pub node: usize,
    pub error: ProbeError,
    /// When the first of them was sent.
    pub first_sent: Us,
    /// When the last of them failed.
    pub last_at: Us,
    pub count: u32,
}

/// One `GET /primary` of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimarySample {
    pub node: usize,
    /// The polling round: `sent / round length`. Every node is polled once
    /// per round, at the round's start.
    pub round: u64,
    pub sent: Us,
    pub got: Us,
    /// HTTP status, `None` if there was no answer in time.
    pub status: Option<u16>,
}

/// Samples of one node with the same answer in consecutive rounds
/// `first_round..=last_round`: each of those rounds has exactly one sample
/// of this node, and it had `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusSpan {
    pub node: usize,
    pub status: Option<u16>,
    pub first_round: u64,
    pub last_round: u64,
    pub first_sent: Us,
    pub last_got: Us,
}

/// One injected fault (a `repeated-failovers` step records one per kill).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub step: usize,
    pub kind: FaultKind,
    /// What was hit, e.g. `node2 (primary)`.
    pub target: String,
    /// The primary when the fault was injected.
    pub old_primary: Option<usize>,
    pub injected: Us,
    /// When whatever was broken was repaired (restart, SIGCONT, heal).
    pub healed: Option<Us>,
    /// When the cluster was seen converged afterwards (only on the last
    /// record of a step).
    pub converged: Option<Us>,
    /// Why it did not converge within the bound.
    pub converge_error: Option<String>,
    /// The fault could not be injected as planned.
    pub error: Option<String>,
    pub notes: Vec<String>,
}

/// What the end of the run found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FinalState {
    /// When the final convergence wait started.
    pub converge_started: Us,
    /// When the cluster was seen converged, if it was.
    pub converged: Option<Us>,
    pub converge_error: Option<String>,
    /// A write went through HAProxy after the final convergence.
    pub writes_after_convergence: bool,
    /// The node that alone answered 200 on `/primary` at the end (also when
    /// the cluster did not converge), whose rows are read.
    pub primary: Option<usize>,
    /// Ids of the writer's table present on the final primary, as inclusive
    /// ranges; `None` if they could not be read.
    pub writer_present: Option<Vec<(i64, i64)>>,
    /// Same for the direct writes' table.
    pub probe_present: Option<Vec<(i64, i64)>>,
    pub read_error: Option<String>,
}

/// Everything a run recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventLog {
    pub info: Option<RunInfo>,
    pub nodes: Vec<NodeInfo>,
    /// Round length of the `/primary` polls, milliseconds.
    pub round_ms: u64,
    pub steps: Vec<Step>,
    pub writes: Vec<WriteAck>,
    pub write_failures: Vec<WriteFailure>,
    pub probes: Vec<ProbeAck>,
    pub probe_failures: Vec<ProbeFailSpan>,
    pub primary: Vec<StatusSpan>,
    pub faults: Vec<FaultRecord>,
    pub final_state: FinalState,
    /// Problems of the harness itself (a fault it could not inject, a run cut
    /// short): each fails the run.
    pub harness_errors: Vec<String>,
    /// End of the workload.
    pub ended: Us,
}

impl EventLog {
    /// Node index of a database port.
    pub fn node_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.pg_port == port)
    }

    pub fn node_name(&self, i: usize) -> &str {
        self.nodes.get(i).map_or("?", |n| n.name.as_str())
    }

    /// Append a `/primary` sample, extending the node's last span when the
    /// sample continues it (same answer, the next round).
    pub fn push_primary_sample(&mut self, s: PrimarySample) {
        push_sample(&mut self.primary, s);
    }

    /// Append a failed probe attempt, extending the node's last span when it
    /// is the node's latest probe event and has the same cause.
    pub fn push_probe_failure(&mut self, node: usize, error: ProbeError, sent: Us, at: Us) {
        let last_ack = self
            .probes
            .iter()
            .rev()
            .find(|p| p.node == node)
            .map(|p| p.sent);
        if let Some(span) = self
            .probe_failures
            .iter_mut()
            .rev()
            .find(|f| f.node == node)
        {
            let continues = span.error == error && last_ack.is_none_or(|a| a < span.first_sent);
            if continues {
                span.last_at = at;
                span.count += 1;
                return;
            }
        }
        self.probe_failures.push(ProbeFailSpan {
            node,
            error,
            first_sent: sent,
            last_at: at,
            count: 1,
        });
    }
}

/// See [`EventLog::push_primary_sample`]; spans of other nodes may be
/// interleaved, so the node's own last span is searched for.
pub fn push_sample(spans: &mut Vec<StatusSpan>, s: PrimarySample) {
    if let Some(last) = spans.iter_mut().rev().find(|x| x.node == s.node) {
        if last.status == s.status && last.last_round + 1 == s.round {
            last.last_round = s.round;
            last.last_got = s.got;
            return;
        }
    }
    spans.push(StatusSpan {
        node: s.node,
        status: s.status,
        first_round: s.round,
        last_round: s.round,
        first_sent: s.sent,
        last_got: s.got,
    });
}

/// Sorted, deduplicated ids as inclusive ranges of consecutive values.
pub fn to_ranges(ids: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for id in sorted {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == id => *hi = id,
            _ => out.push((id, id)),
        }
    }
    out
}

/// True if `id` lies in one of the sorted, disjoint `ranges`.
pub fn in_ranges(ranges: &[(i64, i64)], id: i64) -> bool {
    let i = ranges.partition_point(|&(_, hi)| hi < id);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress_and_answer_membership() {
        let r = to_ranges(&[5, 1, 2, 3, 9, 10, 3, 12]);
        assert_eq!(r, vec![(1, 3), (5, 5), (9, 10), (12, 12)]);
        for id in [1, 2, 3, 5, 9, 10, 12] {
            assert!(in_ranges(&r, id), "{id}");
        }
        for id in [0, 4, 6, 8, 11, 13, -1] {
            assert!(!in_ranges(&r, id), "{id}");
        }
        assert!(to_ranges(&[]).is_empty());
        assert!(!in_ranges(&[], 1));
    }

    fn sample(node: usize, round: u64, status: Option<u16>) -> PrimarySample {
        PrimarySample {
            node,
            round,
            sent: round * 50_000,
            got: round * 50_000 + 2_000,
            status,
        }
    }

    #[test]
    fn samples_merge_per_node_only_across_consecutive_rounds() {
        let mut log = EventLog::default();
        for s in [
            sample(0, 1, Some(200)),
            sample(1, 1, Some(503)),
            sample(0, 2, Some(200)),
            sample(1, 2, Some(503)),
            sample(0, 3, Some(200)),
            // Round 4 of node 1 missing (no answer in time): a new span.
            sample(1, 5, Some(503)),
            sample(0, 4, None),
        ] {
            log.push_primary_sample(s);
        }
        let spans: Vec<(usize, Option<u16>, u64, u64)> = log
            .primary
            .iter()
            .map(|s| (s.node, s.status, s.first_round, s.last_round))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, Some(200), 1, 3),
                (1, Some(503), 1, 2),
                (1, Some(503), 5, 5),
                (0, None, 4, 4),
            ]
        );
        assert_eq!(log.primary[0].last_got, 3 * 50_000 + 2_000);
    }

    #[test]
    fn probe_failures_merge_until_an_ack_or_another_cause() {
        let mut log = EventLog::default();
        log.push_probe_failure(0, ProbeError::ReadOnly, 10, 11);
        log.push_probe_failure(1, ProbeError::Connect, 12, 13);
        log.push_probe_failure(0, ProbeError::ReadOnly, 20, 21);
        log.probes.push(ProbeAck {
            node: 0,
            id: 1,
            sent: 30,
            acked: 31,
        });
        log.push_probe_failure(0, ProbeError::ReadOnly, 40, 41);
        log.push_probe_failure(0, ProbeError::Timeout, 50, 51);
        let got: Vec<(usize, ProbeError, Us, Us, u32)> = log
            .probe_failures
            .iter()
            .map(|f| (f.node, f.error, f.first_sent, f.last_at, f.count))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, ProbeError::ReadOnly, 10, 21, 2),
                (1, ProbeError::Connect, 12, 13, 1),
                (0, ProbeError::ReadOnly, 40, 41, 1),
                (0, ProbeError::Timeout, 50, 51, 1),
            ]
        );
    }
}
