//! The safety invariants (after every event) and liveness (at the end), and the
//! state dump printed with a failure.

use super::*;

impl World {
    /// Checked after every event.
    ///
    /// 1. At most one node believes it is the writable primary: PostgreSQL accepts
    ///    writes and its agent's local lease deadline has not passed.
    /// 2. At most one node accepts writes at all, whatever its agent believes (the
    ///    property the chaos checker measures; it needs the timer and the guard).
    /// 3. An agent whose local deadline has not passed holds the leader key on the
    ///    server, on a live lease (the local deadline precedes the server's expiry) —
    ///    unless failsafe confirmations extended it: then the others promised instead.
    pub(crate) fn check_safety(&self) -> Result<(), String> {
        let now = self.now;
        let writable = |n: usize| self.nodes[n].pg.writable(now);
        let believes = |n: usize| {
            self.nodes[n]
                .agent
                .as_ref()
                .is_some_and(|a| a.deadline.valid_at(self.instant(self.local_now(n))))
        };
        let count = |f: &dyn Fn(usize) -> bool| (0..NODES).filter(|&n| f(n)).count();
        if count(&|n| writable(n) && believes(n)) > 1 {
            let both: Vec<usize> = (0..NODES).filter(|&n| writable(n) && believes(n)).collect();
            return Err(format!(
                "two nodes believe they are the writable primary: {}",
                names(&both)
            ));
        }
        if count(&writable) > 1 {
            let both: Vec<usize> = (0..NODES).filter(|&n| writable(n)).collect();
            return Err(format!("two writable primaries at once: {}", names(&both)));
        }
        let held_by_dcs = |n: usize| {
            self.nodes[n]
                .agent
                .as_ref()
                .is_some_and(|a| !a.failsafe_held)
        };
        for n in (0..NODES).filter(|&n| believes(n) && held_by_dcs(n)) {
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

    /// With every fault healed long enough: exactly one writable primary, holding the
    /// leader key, every other node streaming from it; and at least one failover
    /// happened in this run.
    pub(crate) fn check_liveness(&mut self) -> Result<(), String> {
        let now = self.now;
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
            } else if stream(&self.epochs, pg.wal, self.nodes[p].pg.wal, 0).is_none() {
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
        let mut out = format!(
            "seed {} ({}) at {}ms, etcd leader key (name, lease expiry): {:?}\n",
            self.seed,
            self.options,
            self.now,
            self.leader_key()
        );
        for (n, node) in self.nodes.iter().enumerate() {
            let pg = &node.pg;
            out.push_str(&format!(
                "  {}: machine_up {} partition {:?} paused {} | pg running {} ready {} in_recovery {} tl {} lsn {} upstream {:?} streaming {}",
                NAMES[n],
                node.machine_up,
                node.partition,
                node.paused,
                pg.running,
                pg.ready(self.now),
                pg.in_recovery,
                timeline(&self.epochs, pg),
                pg.wal.lsn,
                pg.upstream.map(|u| NAMES[u]),
                pg.streaming,
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
                node.watchdog
            ));
            match &node.agent {
                None => out.push_str(" | agent dead\n"),
                Some(a) => {
                    let deadline = a.deadline.deadline().map(|d| {
                        let local = (d - self.base).as_millis() as u64;
                        global_ms(node.ppm, local)
                    });
                    out.push_str(&format!(
                        " | agent holds_leader {} deadline(global ms) {deadline:?} lease {:?} phase {:?} its guard {:?}\n",
                        a.holds_leader,
                        a.lease,
                        a.turn.as_ref().map(|t| t.phase),
                        a.guard,
                    ));
                }
            }
        }
        out
    }
}
