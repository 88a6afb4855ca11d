//! The quorum planner's transitions, and a seeded simulation that checks the safety rule
//! (at most `quorum` voters lack any acknowledged commit) after every single step.

use super::*;
use std::collections::BTreeMap;

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn any(count: usize, standbys: &[&str]) -> Names {
    Names {
        count,
        standbys: set(standbys),
        any_standby: false,
        first: false,
    }
}

fn key(quorum: usize, voters: &[&str]) -> Key {
    Key {
        quorum,
        voters: set(voters),
    }
}

fn input(key: Option<Key>, in_force: Names, active: &[&str], confirmed: &[&str]) -> Input {
    Input {
        key,
        in_force,
        settled: true,
        active: set(active),
        confirmed: set(confirmed),
        node_count: 1,
        strict: false,
    }
}

#[test]
fn names_render_and_parse() {
    let n = any(1, &["a", "b"]);
    assert_eq!(n.render(), "ANY 1 (a,b)");
    assert_eq!(Names::parse(&n.render()), Some(n));
    assert_eq!(Names::none().render(), "");
    assert_eq!(Names::any_one().render(), "*");
    assert_eq!(Names::parse("*"), Some(Names::any_one()));
    assert_eq!(Names::parse("  "), Some(Names::none()));
    let first = Names::parse("FIRST 2 (x, \"y \"\"z\"\"\")").unwrap();
    assert_eq!((first.count, first.first), (2, true));
    assert_eq!(first.standbys, set(&["x", "y \"z\""]));
    let bare = Names::parse("a, b").unwrap();
    assert_eq!(
        (bare.count, bare.first, bare.standbys),
        (1, true, set(&["a", "b"]))
    );
    assert_eq!(Names::parse("2 (a, b)").unwrap().count, 2);
    assert_eq!(Names::parse("any 1 (a)").unwrap(), any(1, &["a"]));
    for bad in ["ANY 1 (a", "a,", "ANY 1 ()", "1", "a b", "\"open"] {
        assert_eq!(Names::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn how_many_voters_may_lack_a_commit() {
    let v = set(&["a", "b"]);
    assert_eq!(any(1, &["a", "b"]).may_lack(&v), 1);
    assert_eq!(any(2, &["a", "b"]).may_lack(&v), 0);
    // c acknowledges in place of a voter.
    assert_eq!(any(1, &["a", "b", "c"]).may_lack(&v), 2);
    assert_eq!(Names::none().may_lack(&v), 2);
    assert_eq!(Names::any_one().may_lack(&v), 2);
    assert!(Key::leader_only().covers(&Names::none()));
}

#[test]
fn three_nodes_one_ack_is_any_1_of_both_with_quorum_1() {
    let (k, n) = target(&set(&["a", "b"]), 1, false);
    assert_eq!(k, key(1, &["a", "b"]));
    assert_eq!(n.render(), "ANY 1 (a,b)");
}

#[test]
fn after_a_promotion_names_come_first_and_the_key_once_a_standby_confirmed() {
    // The new leader claimed /sync for itself and runs asynchronously.
    let i = input(Some(Key::leader_only()), Names::none(), &["a", "b"], &[]);
    let p = plan(&i);
    assert_eq!(p.steps, vec![Step::Names(any(1, &["a", "b"]))]);
    assert!(p.pending);
    // In force, but nobody has flushed the mark yet: wait.
    let i = input(
        Some(Key::leader_only()),
        any(1, &["a", "b"]),
        &["a", "b"],
        &[],
    );
    assert_eq!(plan(&i).steps, vec![]);
    assert!(plan(&i).pending);
    // Not settled (a reload still pending): the evidence does not count.
    let mut i = input(
        Some(Key::leader_only()),
        any(1, &["a", "b"]),
        &["a", "b"],
        &["a"],
    );
    i.settled = false;
    assert_eq!(plan(&i).steps, vec![]);
    i.settled = true;
    let p = plan(&i);
    assert_eq!(p.steps, vec![Step::Key(key(1, &["a", "b"]))]);
    assert!(!p.pending);
}

#[test]
fn a_new_standby_joins_the_key_before_the_names() {
    let i = input(
        Some(key(1, &["a", "b"])),
        any(1, &["a", "b"]),
        &["a", "b", "c"],
        &["a", "b"],
    );
    let p = plan(&i);
    assert_eq!(
        p.steps,
        vec![
            Step::Key(key(2, &["a", "b", "c"])),
            Step::Names(any(1, &["a", "b", "c"]))
        ]
    );
}

#[test]
fn a_dead_standby_leaves_the_names_first_and_the_key_a_turn_later() {
    let i = input(
        Some(key(2, &["a", "b", "c"])),
        any(1, &["a", "b", "c"]),
        &["a", "b"],
        &["a", "b"],
    );
    assert_eq!(plan(&i).steps, vec![Step::Names(any(1, &["a", "b"]))]);
    // Next turn, the new names in force: only once a voter flushed their mark.
    let i = input(
        Some(key(2, &["a", "b", "c"])),
        any(1, &["a", "b"]),
        &["a", "b"],
        &[],
    );
    assert_eq!(plan(&i).steps, vec![]);
    let i = input(
        Some(key(2, &["a", "b", "c"])),
        any(1, &["a", "b"]),
        &["a", "b"],
        &["b"],
    );
    assert_eq!(plan(&i).steps, vec![Step::Key(key(1, &["a", "b"]))]);
}

#[test]
fn a_dead_standby_with_quorum_0_leaves_the_key_first() {
    // Two acknowledgements from two standbys: each has every commit.
    let mut i = input(
        Some(key(0, &["a", "b"])),
        any(2, &["a", "b"]),
        &["a"],
        &["a"],
    );
    i.node_count = 2;
    assert_eq!(
        plan(&i).steps,
        vec![Step::Key(key(0, &["a"])), Step::Names(any(1, &["a"]))]
    );
}

#[test]
fn a_swapped_standby_goes_through_a_wider_key() {
    let i = input(
        Some(key(1, &["a", "b"])),
        any(1, &["a", "b"]),
        &["a", "c"],
        &["a", "b"],
    );
    assert_eq!(
        plan(&i).steps,
        vec![
            Step::Key(key(2, &["a", "b", "c"])),
            Step::Names(any(1, &["a", "c"]))
        ]
    );
}

#[test]
fn more_acknowledgements_first_in_postgresql_then_a_smaller_quorum() {
    let mut i = input(
        Some(key(1, &["a", "b"])),
        any(1, &["a", "b"]),
        &["a", "b"],
        &["a", "b"],
    );
    i.node_count = 2;
    assert_eq!(plan(&i).steps, vec![Step::Names(any(2, &["a", "b"]))]);
    // Quorum 0 claims both have every commit: both must have flushed the mark.
    i.in_force = any(2, &["a", "b"]);
    i.confirmed = set(&["a"]);
    assert_eq!(plan(&i).steps, vec![]);
    i.confirmed = set(&["a", "b"]);
    assert_eq!(plan(&i).steps, vec![Step::Key(key(0, &["a", "b"]))]);
}

#[test]
fn fewer_acknowledgements_first_a_larger_quorum_then_postgresql() {
    let i = input(
        Some(key(0, &["a", "b"])),
        any(2, &["a", "b"]),
        &["a", "b"],
        &[],
    );
    assert_eq!(
        plan(&i).steps,
        vec![
            Step::Key(key(1, &["a", "b"])),
            Step::Names(any(1, &["a", "b"]))
        ]
    );
}

#[test]
fn with_every_standby_gone_the_key_empties_before_replication_stops() {
    let i = input(Some(key(1, &["a", "b"])), any(1, &["a", "b"]), &[], &[]);
    assert_eq!(
        plan(&i).steps,
        vec![Step::Key(Key::leader_only()), Step::Names(Names::none())]
    );
    // Strict: commits wait for any standby instead.
    let mut i = i;
    i.strict = true;
    assert_eq!(
        plan(&i).steps,
        vec![Step::Key(Key::leader_only()), Step::Names(Names::any_one())]
    );
    // A standby comes back under strict mode: listed, then a voter once confirmed.
    let mut i = input(Some(Key::leader_only()), Names::any_one(), &["a"], &["a"]);
    i.strict = true;
    assert_eq!(plan(&i).steps, vec![Step::Names(any(1, &["a"]))]);
    i.in_force = any(1, &["a"]);
    assert_eq!(plan(&i).steps, vec![Step::Key(key(0, &["a"]))]);
}

#[test]
fn a_key_of_another_leader_is_claimed_first() {
    let i = input(None, any(1, &["a", "b"]), &["a", "b"], &["a", "b"]);
    assert_eq!(plan(&i).steps, vec![Step::Key(Key::leader_only())]);
}

#[test]
fn a_key_postgresql_does_not_back_is_reset() {
    // A restarted leader found PostgreSQL asynchronous while /sync still lists voters.
    let i = input(
        Some(key(1, &["a", "b"])),
        Names::none(),
        &["a", "b"],
        &["a", "b"],
    );
    assert_eq!(
        plan(&i).steps,
        vec![
            Step::Key(Key::leader_only()),
            Step::Names(any(1, &["a", "b"]))
        ]
    );
}

#[test]
fn switching_from_on_mode_widens_the_key_then_writes_any() {
    let first = Names::parse("FIRST 1 (\"a\")").unwrap();
    let i = input(Some(key(0, &["a"])), first, &["a", "b"], &["a"]);
    assert_eq!(
        plan(&i).steps,
        vec![
            Step::Key(key(1, &["a", "b"])),
            Step::Names(any(1, &["a", "b"]))
        ]
    );
}

#[test]
fn steady_state_plans_nothing() {
    let i = input(
        Some(key(1, &["a", "b"])),
        any(1, &["a", "b"]),
        &["a", "b"],
        &[],
    );
    let p = plan(&i);
    assert!(p.steps.is_empty() && !p.pending, "{p:?}");
}

fn standby(name: &str) -> Standby {
    Standby {
        name: name.into(),
        streaming: true,
        sync: false,
        lag: Some(0),
        nosync: false,
        nofailover: false,
        priority: 1,
    }
}

#[test]
fn pick_takes_every_eligible_standby_and_nofailover_ones_only_to_reach_the_count() {
    let settings = |n| SyncSettings {
        mode: warden_consensus::dynamic_config::SynchronousMode::Quorum,
        strict: false,
        node_count: n,
        max_lag: 1000,
    };
    let mut nosync = standby("n");
    nosync.nosync = true;
    let mut lagging = standby("l");
    lagging.lag = Some(5000);
    let mut catchup = standby("c");
    catchup.streaming = false;
    let mut nofailover = standby("z");
    nofailover.nofailover = true;
    let all = [
        standby("a"),
        standby("b"),
        nosync,
        lagging,
        catchup,
        nofailover,
    ];
    assert_eq!(pick(&all, settings(1)), set(&["a", "b"]));
    assert_eq!(pick(&all, settings(3)), set(&["a", "b", "z"]));
}

/// A tiny deterministic generator: the failing seed is printed and replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap_or(0)
    }
}

/// The cluster as the simulation sees it: commits are numbered, a standby's flush is
/// the highest commit it holds (WAL is a prefix), PostgreSQL acknowledges a commit once
/// the names in force are satisfied.
struct Sim {
    rng: Rng,
    live: BTreeSet<String>,
    flush: BTreeMap<String, u64>,
    head: u64,
    in_force: Names,
    pending_reload: Option<Names>,
    key: Key,
    mark: Option<(Names, u64)>,
    node_count: u32,
    strict: bool,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let names = ["s1", "s2", "s3", "s4"];
        Sim {
            rng: Rng(seed),
            live: set(&names),
            flush: names.iter().map(|n| (n.to_string(), 0)).collect(),
            head: 0,
            in_force: Names::none(),
            pending_reload: None,
            key: Key::leader_only(),
            mark: None,
            node_count: 1,
            strict: false,
        }
    }

    /// At most `quorum` voters lack the latest acknowledged commit (and so any).
    fn check(&self, seed: u64, what: &str) {
        let lacking = self
            .key
            .voters
            .iter()
            .filter(|v| self.flush[*v] < self.head)
            .count();
        assert!(
            self.key.voters.is_empty() || lacking <= self.key.quorum,
            "seed {seed}: after {what}: {lacking} voters lack commit {} but quorum is {} (key {:?}, names {:?}, flush {:?})",
            self.head,
            self.key.quorum,
            self.key,
            self.in_force,
            self.flush
        );
    }

    fn commit(&mut self) {
        let n = &self.in_force;
        let candidates: Vec<String> = if n.any_standby {
            self.live.iter().cloned().collect()
        } else {
            n.standbys.intersection(&self.live).cloned().collect()
        };
        if candidates.len() < n.count {
            return; // the commit waits
        }
        let mut pool = candidates;
        self.head += 1;
        for _ in 0..n.count {
            let who = pool.remove(self.rng.below(pool.len()));
            self.flush.insert(who, self.head);
        }
    }

    fn turn(&mut self, seed: u64) {
        if let Some(n) = self.pending_reload.take() {
            if self.rng.below(3) == 0 {
                self.pending_reload = Some(n); // the reload is not processed yet
            } else {
                self.in_force = n;
            }
        }
        if self.mark.as_ref().map(|(n, _)| n) != Some(&self.in_force) {
            self.mark = Some((self.in_force.clone(), self.head));
        }
        let mark = self.mark.as_ref().map_or(0, |(_, m)| *m);
        let input = Input {
            key: Some(self.key.clone()),
            in_force: self.in_force.clone(),
            settled: self.pending_reload.is_none(),
            active: self.live.clone(),
            confirmed: self
                .live
                .iter()
                .filter(|s| self.flush[*s] >= mark)
                .cloned()
                .collect(),
            node_count: self.node_count,
            strict: self.strict,
        };
        let p = plan(&input);
        let keys = p.steps.iter().filter(|s| matches!(s, Step::Key(_))).count();
        assert!(keys <= 1, "seed {seed}: two key writes in one turn: {p:?}");
        for step in p.steps {
            match step {
                Step::Key(k) => {
                    self.key = k;
                    self.check(seed, "a key write");
                }
                Step::Names(n) => {
                    // Commits keep coming while PostgreSQL reloads; the mark is taken
                    // afresh once the leader sees the new names in force.
                    self.pending_reload = Some(n);
                    self.mark = None;
                    self.commit();
                    self.check(seed, "a names change");
                }
            }
        }
    }

    fn event(&mut self, seed: u64) {
        let names: Vec<String> = self.flush.keys().cloned().collect();
        match self.rng.below(10) {
            0..=3 => self.commit(),
            4 => {
                let s = &names[self.rng.below(names.len())];
                if self.live.contains(s) {
                    self.flush.insert(s.clone(), self.head);
                }
            }
            5 => {
                let s = names[self.rng.below(names.len())].clone();
                self.live.remove(&s);
            }
            6 => {
                let s = names[self.rng.below(names.len())].clone();
                self.live.insert(s);
            }
            7 => self.node_count = u32::try_from(1 + self.rng.below(3)).unwrap_or(1),
            8 => self.strict = self.rng.below(2) == 0,
            _ => self.turn(seed),
        }
        self.check(seed, "an event");
    }
}

#[test]
fn simulated_membership_changes_never_break_the_quorum_rule() {
    for seed in 1..=300u64 {
        let mut sim = Sim::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for _ in 0..400 {
            sim.event(seed);
        }
        // Calm: every live standby catches up and the leader converges to the target.
        let mut converged = false;
        for _ in 0..20 {
            for s in sim.live.clone() {
                sim.flush.insert(s, sim.head);
            }
            sim.turn(seed);
            let (k, n) = target(&sim.live, sim.node_count, sim.strict);
            if sim.key == k && sim.in_force == n && sim.pending_reload.is_none() {
                converged = true;
                break;
            }
        }
        assert!(
            converged,
            "seed {seed}: no convergence: key {:?}, names {:?}",
            sim.key, sim.in_force
        );
    }
}
