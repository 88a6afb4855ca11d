//! The fault schedule: a sequence of steps derived only from a seed.
//!
//! Every step draws the same values from the generator in the same order
//! (kind, pause, hold, target pick, repeat count), whatever its kind, so
//! step `n` depends only on the seed and on `n` — a run that stops early
//! and a longer one with the same seed agree on their common prefix, and
//! `--seed N` replays a run's faults, targets (by role) and timings. Only the
//! outcome depends on the cluster (who is primary at the time, how long a
//! failover takes).
//!
//! The generator is Xoshiro256++ seeded through `seed_from_u64`: a fixed
//! algorithm, so a seed means the same schedule with every build that uses
//! the locked `rand` version.

use std::fmt;
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::fault::FaultKind;

/// Pause before a fault (the cluster has converged and writes flow).
pub const PAUSE_RANGE_MS: (u64, u64) = (1_000, 5_000);
/// `repeated-failovers`: kills in a row.
pub const REPEAT_RANGE: (u32, u32) = (2, 3);
/// Targets are picked as `pick % candidates`; 6 is divisible by 1, 2 and 3,
/// so the choice is uniform for every candidate count a 3-node cluster has.
const PICK_RANGE: u32 = 6;

/// Which kinds the steps have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "order", content = "kinds")]
pub enum Order {
    /// Each step draws its kind uniformly from these.
    Random(Vec<FaultKind>),
    /// The kinds in this order, then again from the start.
    Listed(Vec<FaultKind>),
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// 1-based position in the schedule.
    pub index: usize,
    pub kind: FaultKind,
    /// Quiet time before the fault, in milliseconds.
    pub pause_ms: u64,
    /// How long the fault is held before it is healed, in milliseconds (0 for
    /// faults that are not held).
    pub hold_ms: u64,
    /// Target choice among the candidates of the role, as `pick % count`, the
    /// candidates in node (or member) order.
    pub pick: u32,
    /// Kills in a row, for `repeated-failovers` (drawn for every step).
    pub repeat: u32,
}

impl Step {
    pub fn pause(&self) -> Duration {
        Duration::from_millis(self.pause_ms)
    }

    pub fn hold(&self) -> Duration {
        Duration::from_millis(self.hold_ms)
    }

    /// The role targeted, in words, for a cluster of 3 nodes and 3 etcd
    /// members (2 replicas, 2 etcd followers).
    pub fn target_role(&self) -> String {
        let nth = self.pick % 2 + 1;
        match self.kind {
            FaultKind::KillReplica => format!("replica #{nth} of 2 (node order)"),
            FaultKind::RoguePromote => format!("replica #{nth} of 2 (node order), agent frozen"),
            FaultKind::Switchover => {
                format!(
                    "leader -> replica #{nth} of 2 (node order; of the sync standbys with --sync)"
                )
            }
            FaultKind::KillEtcdMember => format!("etcd follower #{nth} of 2 (member order)"),
            FaultKind::KillEtcdLeader => "the etcd raft leader".into(),
            FaultKind::EtcdOutage => "every etcd member".into(),
            FaultKind::RepeatedFailovers => format!("the primary, {} times", self.repeat),
            FaultKind::KillPrimary
            | FaultKind::KillPostgres
            | FaultKind::FreezeAgent
            | FaultKind::FreezePostgres
            | FaultKind::PartitionPrimary => "the primary".into(),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {}: {} on {}, after {:.1} s",
            self.index,
            self.kind,
            self.target_role(),
            self.pause_ms as f64 / 1000.0
        )?;
        if self.kind.hold_range().is_some() {
            write!(f, ", held {:.1} s", self.hold_ms as f64 / 1000.0)?;
        }
        Ok(())
    }
}

/// The generator of steps for one seed.
#[derive(Debug, Clone)]
pub struct Schedule {
    seed: u64,
    order: Order,
    rng: Xoshiro256PlusPlus,
    next: usize,
}

impl Schedule {
    /// Panics on an empty kind list (a bug: the command line rejects it).
    pub fn new(seed: u64, order: Order) -> Schedule {
        let kinds = match &order {
            Order::Random(k) | Order::Listed(k) => k,
        };
        assert!(!kinds.is_empty(), "a schedule needs at least one kind");
        Schedule {
            seed,
            order,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            next: 0,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn order(&self) -> &Order {
        &self.order
    }

    /// The next step.
    pub fn next_step(&mut self) -> Step {
        let i = self.next;
        self.next += 1;
        let r = &mut self.rng;
        let kind_draw: u32 = r.random_range(0..u32::MAX);
        let pause_ms = r.random_range(PAUSE_RANGE_MS.0..=PAUSE_RANGE_MS.1);
        let hold_permille: u64 = r.random_range(0..=1000);
        let pick = r.random_range(0..PICK_RANGE);
        let repeat = r.random_range(REPEAT_RANGE.0..=REPEAT_RANGE.1);
        let kind = match &self.order {
            Order::Random(kinds) => kinds[kind_draw as usize % kinds.len()],
            Order::Listed(kinds) => kinds[i % kinds.len()],
        };
        let hold_ms = kind.hold_range().map_or(0, |(lo, hi)| {
            let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
            lo + (hi - lo) * hold_permille / 1000
        });
        Step {
            index: i + 1,
            kind,
            pause_ms,
            hold_ms,
            pick,
            repeat,
        }
    }

    /// The first `n` steps of a fresh schedule with this seed and order.
    pub fn first(seed: u64, order: Order, n: usize) -> Vec<Step> {
        let mut s = Schedule::new(seed, order);
        (0..n).map(|_| s.next_step()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::SAFE_KINDS;

    fn random() -> Order {
        Order::Random(SAFE_KINDS.to_vec())
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(
            Schedule::first(42, random(), 50),
            Schedule::first(42, random(), 50)
        );
        let listed = Order::Listed(vec![FaultKind::Switchover, FaultKind::KillPrimary]);
        assert_eq!(
            Schedule::first(7, listed.clone(), 9),
            Schedule::first(7, listed, 9)
        );
    }

    #[test]
    fn a_longer_run_extends_a_shorter_one() {
        let short = Schedule::first(9, random(), 10);
        let long = Schedule::first(9, random(), 30);
        assert_eq!(short[..], long[..10]);
    }

    #[test]
    fn different_seeds_give_different_schedules() {
        assert_ne!(
            Schedule::first(1, random(), 20),
            Schedule::first(2, random(), 20)
        );
    }

    #[test]
    fn a_random_schedule_draws_every_kind_within_its_ranges() {
        let steps = Schedule::first(3, random(), 400);
        for &k in SAFE_KINDS {
            assert!(steps.iter().any(|s| s.kind == k), "{k} never drawn");
        }
        for (i, s) in steps.iter().enumerate() {
            assert_eq!(s.index, i + 1);
            assert!((PAUSE_RANGE_MS.0..=PAUSE_RANGE_MS.1).contains(&s.pause_ms));
            assert!((REPEAT_RANGE.0..=REPEAT_RANGE.1).contains(&s.repeat));
            assert!(s.pick < PICK_RANGE);
            match s.kind.hold_range() {
                Some((lo, hi)) => {
                    let h = s.hold();
                    assert!(lo <= h && h <= hi, "{s}: hold outside {lo:?}..{hi:?}");
                }
                None => assert_eq!(s.hold_ms, 0, "{s}"),
            }
        }
    }

    #[test]
    fn a_listed_schedule_follows_the_list_and_repeats_it() {
        let kinds = vec![
            FaultKind::KillPrimary,
            FaultKind::PartitionPrimary,
            FaultKind::Switchover,
        ];
        let steps = Schedule::first(5, Order::Listed(kinds.clone()), 7);
        let got: Vec<FaultKind> = steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            got,
            [&kinds[..], &kinds[..], &kinds[..1]].concat(),
            "listed order"
        );
    }

    #[test]
    fn the_display_names_kind_target_and_timing() {
        let s = Step {
            index: 2,
            kind: FaultKind::FreezeAgent,
            pause_ms: 2500,
            hold_ms: 14_300,
            pick: 1,
            repeat: 2,
        };
        assert_eq!(
            s.to_string(),
            "step 2: freeze-agent on the primary, after 2.5 s, held 14.3 s"
        );
        let s = Step {
            kind: FaultKind::Switchover,
            hold_ms: 0,
            ..s
        };
        assert_eq!(
            s.to_string(),
            "step 2: switchover on leader -> replica #2 of 2 (node order; of the sync standbys \
             with --sync), after 2.5 s"
        );
    }
}
