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

    /// 1. At most one node believes it is the writable primary: its server accepts
    ///    writes (PostgreSQL out of recovery; Redis a master whose writes are not
    ///    paused) and its agent's local lease deadline has not passed.
    /// 2. At most one node accepts writes at all, whatever its agent believes (the
    ///    property the chaos checker measures; it needs the timer and the guard).
    /// 3. An agent whose local deadline has not passed holds the leader key on the
    ///    server, on a live lease (the local deadline precedes the server's expiry) —
    ///    unless failsafe confirmations extended it: then the others promised instead.
    pub(crate) fn check_safety(&self) -> Result<(), String> {
        let now = self.now();
        let writable = |n: usize| self.writable(n);
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
        let incarnation = self.server(n).1;
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
        let writable: Vec<usize> = (0..NODES).filter(|&n| self.writable(n)).collect();
        if writable.is_empty() && self.latest_data_lost() {
            self.stats.leaderless_after_loss += 1;
            self.log(
                None,
                "no primary: every copy of the latest data was lost (no persistence)".into(),
            );
            return Ok(());
        }
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
            if self.engine == EngineKind::Redis {
                self.redis_follows(r, p)
                    .map_err(|why| format!("{settle}s after all faults healed {why}"))?;
                continue;
            }
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

    /// A Redis world without persistence lost every copy of the latest data: each
    /// member is further behind the highest offset written than a failover may lose.
    fn latest_data_lost(&self) -> bool {
        self.engine == EngineKind::Redis
            && self.persist == redis::Persist::Never
            && self
                .nodes
                .iter()
                .all(|node| node.rs.lin.offset + MAX_LAG_ON_FAILOVER < self.max_offset)
    }

    /// Redis replica `r` follows primary `p`: a replica of it, its link up, on its
    /// replication id.
    fn redis_follows(&self, r: usize, p: usize) -> Result<(), String> {
        let now = self.now();
        let (rs, up) = (&self.nodes[r].rs, &self.nodes[p].rs);
        if rs.ready(now)
            && !rs.master
            && rs.upstream == Some(p)
            && rs.link_up
            && rs.lin.id == up.lin.id
        {
            return Ok(());
        }
        let why = if !rs.ready(now) {
            "Redis not running"
        } else if rs.master {
            "it runs as a master"
        } else if rs.upstream != Some(p) {
            "not a replica of the primary"
        } else if rs.full_sync_until.is_some() {
            "still in a full resync"
        } else {
            "its link is down"
        };
        Err(format!(
            "{} is not a replica streaming from {}: {why}",
            NAMES[r], NAMES[p]
        ))
    }

    /// One node's database server, for the dump.
    fn server_dump(&self, n: usize) -> String {
        let now = self.now();
        if self.engine == EngineKind::Redis {
            let rs = &self.nodes[n].rs;
            return format!(
                "redis data {:?} running {} ready {} master {} paused {} replid #{} replid2 {:?} offset {} upstream {:?} link_up {} full_sync {:?} conf {:?} disk {:?} marker {:?} incarnation {}",
                rs.data_state(),
                rs.running,
                rs.ready(now),
                rs.master,
                rs.paused(now),
                rs.lin.id,
                rs.lin.id2,
                rs.lin.offset,
                rs.upstream.map(|u| NAMES[u]),
                rs.link_up,
                rs.full_sync_until,
                rs.conf,
                rs.disk.map(|d| (d.id, d.offset)),
                rs.marker.as_ref().map(|m| (m.cluster.is_some(), m.last_role_master, m.shutdown_offset)),
                rs.incarnation,
            );
        }
        let pg = &self.nodes[n].pg;
        format!(
            "pg running {} ready {} in_recovery {} tl {} lsn {} upstream {:?} streaming {} conf {:?} pg incarnation {}",
            pg.running,
            pg.ready(now),
            pg.in_recovery,
            pg::timeline(&self.epochs, pg),
            pg.wal.lsn,
            pg.upstream.map(|u| NAMES[u]),
            pg.streaming,
            pg.conf,
            pg.incarnation,
        )
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
            out.push_str(&format!(
                "  {}: machine_up {} partition {:?} stopped {} | {}",
                NAMES[n],
                node.machine_up,
                node.partition,
                node.frozen,
                self.server_dump(n),
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
                " | live guard processes [{}] | watchdog {:?}",
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
