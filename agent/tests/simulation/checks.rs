//! The safety invariants (after every seam call and world event) and liveness (at the
//! end), and the state dump printed with a failure.

use super::*;
use world::names;

impl World {
    /// Node `n`'s agent believes it leads: its local lease deadline (the real
    /// `Shared::deadline`, which `/primary` and the fencing timer read) has not passed
    /// on its clock.
    fn believes(&self, n: usize) -> bool {
        self.nodes[n]
            .proc
            .as_ref()
            .is_some_and(|p| p.shared.deadline.valid_at(self.node_now(n)))
    }

    /// 1. At most one node believes it is the writable primary: PostgreSQL accepts
    ///    writes and its agent's local lease deadline has not passed.
    /// 2. At most one node accepts writes at all, whatever its agent believes (the
    ///    property the chaos checker measures; it needs the timer and the guard).
    /// 3. An agent whose local deadline has not passed holds the leader key on the
    ///    server, on a live lease (the local deadline precedes the server's expiry) —
    ///    unless failsafe confirmations extended it: then the others promised instead.
    pub(crate) fn check_safety(&self) -> Result<(), String> {
        let now = self.now();
        let writable = |n: usize| self.nodes[n].pg.writable(now);
        let both: Vec<usize> = (0..NODES)
            .filter(|&n| writable(n) && self.believes(n))
            .collect();
        if both.len() > 1 {
            return Err(format!(
                "two nodes believe they are the writable primary: {}",
                names(&both)
            ));
        }
        let both: Vec<usize> = (0..NODES).filter(|&n| writable(n)).collect();
        if both.len() > 1 {
            let how: Vec<String> = both.iter().map(|&n| self.fencing_of(n)).collect();
            return Err(format!(
                "two writable primaries at once: {} ({})",
                names(&both),
                how.join("; ")
            ));
        }
        for n in (0..NODES).filter(|&n| self.believes(n) && !self.failsafe_held(n)) {
            let leader = self.store.leader_at(now);
            if leader.map(|(name, _)| name) != Some(NAMES[n]) {
                return Err(format!(
                    "{}'s local lease deadline has not passed but etcd's leader key is {leader:?}",
                    NAMES[n]
                ));
            }
        }
        Ok(())
    }

    /// What could still fence node `n`: its agent (unless stopped or dead), its guard,
    /// its watchdog.
    fn fencing_of(&self, n: usize) -> String {
        let node = &self.nodes[n];
        let agent = match &node.proc {
            None => "agent dead",
            Some(_) if node.frozen => "agent stopped",
            Some(_) => "agent running",
        };
        let incarnation = node.pg.incarnation;
        let guard = if node
            .guards
            .iter()
            .any(|g| g.alive && g.armed.is_some_and(|a| a.incarnation == incarnation))
        {
            "guard armed"
        } else if node.unguarded {
            "no guard armed since an agent found its guard gone"
        } else {
            "guard not armed"
        };
        let watchdog = match node.watchdog {
            None => "no watchdog",
            Some(w) if w.fires_at.is_some() => "watchdog armed",
            Some(_) => "watchdog disarmed",
        };
        format!("{}: {agent}, {guard}, {watchdog}", NAMES[n])
    }

    /// With every fault healed long enough: exactly one writable primary, holding the
    /// leader key, every other node streaming from it; and at least one failover
    /// happened in this run.
    pub(crate) fn check_liveness(&mut self) -> Result<(), String> {
        let now = self.now();
        let writable: Vec<usize> = (0..NODES)
            .filter(|&n| self.nodes[n].pg.writable(now))
            .collect();
        let settle = (END_MS - FAULTS_UNTIL_MS) / 1000;
        let [p] = writable[..] else {
            return Err(format!(
                "{settle}s after all faults healed there are {} writable primaries ({})",
                writable.len(),
                names(&writable)
            ));
        };
        let leader = self.leader_key();
        if leader.as_ref().map(|(name, _)| name.as_str()) != Some(NAMES[p]) {
            return Err(format!(
                "the primary is {} but the leader key is {leader:?}",
                NAMES[p]
            ));
        }
        if self.stats.failovers == 0 {
            return Err("no failover happened in this run".into());
        }
        for r in (0..NODES).filter(|&r| r != p) {
            let pg = &self.nodes[r].pg;
            if pg.ready(now) && pg.in_recovery && pg.streaming && pg.upstream == Some(p) {
                continue;
            }
            let why = if !pg.ready(now) {
                "PostgreSQL not running"
            } else if pg.upstream != Some(p) {
                "not configured to follow the primary"
            } else if pg::stream(&self.epochs, pg.wal, self.nodes[p].pg.wal, 0).is_none() {
                "its WAL diverged from the primary's (it cannot stream)"
            } else {
                "not streaming"
            };
            return Err(format!(
                "{settle}s after all faults healed {} is not a replica streaming from {}: {why}",
                NAMES[r], NAMES[p]
            ));
        }
        Ok(())
    }

    pub(crate) fn dump(&self) -> String {
        let now = self.now();
        let mut out = format!(
            "seed {} ({}) at {now}ms, etcd leader key (name, lease expiry): {:?}\n",
            self.seed,
            self.options,
            self.leader_key()
        );
        for (n, node) in self.nodes.iter().enumerate() {
            let pg = &node.pg;
            out.push_str(&format!(
                "  {}: machine_up {} partition {:?} stopped {} | pg running {} ready {} in_recovery {} tl {} lsn {} upstream {:?} streaming {} conf {:?}",
                NAMES[n],
                node.machine_up,
                node.partition,
                node.frozen,
                pg.running,
                pg.ready(now),
                pg.in_recovery,
                pg::timeline(&self.epochs, pg),
                pg.wal.lsn,
                pg.upstream.map(|u| NAMES[u]),
                pg.streaming,
                pg.conf,
            ));
            let guards: Vec<String> = node
                .guards
                .iter()
                .enumerate()
                .filter(|(_, g)| g.alive)
                .map(|(i, g)| {
                    format!(
                        "#{i} armed {:?}",
                        g.armed.map(|a| (a.fire_at, a.incarnation))
                    )
                })
                .collect();
            out.push_str(&format!(
                " pg incarnation {} | live guard processes [{}] | watchdog {:?}",
                pg.incarnation,
                guards.join(", "),
                node.watchdog.map(|w| w.fires_at)
            ));
            match &node.proc {
                None => out.push_str(" | agent dead\n"),
                Some(p) => {
                    let s = p.shared.snapshot();
                    let deadline = p
                        .shared
                        .deadline
                        .deadline()
                        .map(|d| node.clock.global_ms(node.clock.local_of(d)));
                    out.push_str(&format!(
                        " | agent #{} state {} leader {} deadline(global ms) {deadline:?} its guard {:?} note {:?}\n",
                        p.id, s.state, s.is_leader, p.guard, s.note,
                    ));
                }
            }
        }
        out
    }
}
