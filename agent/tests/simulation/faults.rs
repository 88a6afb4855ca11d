//! Faults and their healing: crashes, kills, freezes, partitions.

use super::*;

impl World {
    pub(crate) fn start_agent(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.guards.push(GuardProc {
            alive: true,
            input_open: true,
            armed: None,
        });
        let mut a = Agent::new(NAMES[n], node.guards.len() - 1);
        a.wake_gen = 1;
        node.agent = Some(a);
        let at = self.now + self.rng.range(1, 500);
        self.push(at, Ev::Wake { node: n, gen: 1 });
    }

    pub(crate) fn boot(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if !node.machine_up {
            node.machine_up = true;
            self.log(Some(n), "machine back up".into());
        }
        if self.nodes[n].agent.is_none() {
            self.log(Some(n), "agent starts".into());
            self.start_agent(n);
        }
    }

    pub(crate) fn pause(&mut self, n: usize, for_ms: u64) {
        let node = &mut self.nodes[n];
        if node.paused || node.agent.is_none() {
            return;
        }
        node.paused = true;
        node.pause_gen += 1;
        let gen = node.pause_gen;
        self.stats.faults += 1;
        let phase = node
            .agent
            .as_ref()
            .and_then(|a| a.turn.as_ref())
            .map(|t| t.phase);
        self.log(
            Some(n),
            format!("FAULT: agent SIGSTOPped for {for_ms}ms (mid-turn: {phase:?})"),
        );
        self.push(self.now + for_ms, Ev::Resume { node: n, gen });
    }

    /// SIGCONT. The fencing timer and the loop resume together; which runs first is up
    /// to the scheduler, so the model picks either order.
    pub(crate) fn resume(&mut self, n: usize) {
        if !self.nodes[n].paused {
            return;
        }
        self.nodes[n].paused = false;
        self.log(Some(n), "agent resumed (SIGCONT)".into());
        let Some(a) = self.nodes[n].agent.as_ref() else {
            return;
        };
        let (held, idle, dirty) = (a.held, a.turn.is_none(), a.dirty);
        let timer_first = self.rng.chance(500);
        if timer_first {
            self.fence_timer(n);
        }
        let a = self.agent(n);
        if held {
            a.held = false;
            let id = a.turn.as_ref().expect("held turn").id;
            self.push(self.now, Ev::Continue { node: n, turn: id });
        } else if idle && dirty {
            a.wake_gen += 1;
            let gen = a.wake_gen;
            self.push(self.now, Ev::Wake { node: n, gen });
        }
        if !timer_first {
            self.push(self.now, Ev::FenceTimer { node: n });
        }
    }

    /// The agent process dies (SIGKILL); PostgreSQL and the guard live on.
    pub(crate) fn kill_agent(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if let Some(g) = node.agent.take().and_then(|a| a.guard) {
            let guard = &mut node.guards[g];
            guard.input_open = false;
            if guard.armed.is_none() {
                guard.alive = false;
            }
        }
        node.paused = false;
    }

    pub(crate) fn crash_machine(&mut self, n: usize, lose_disk: bool) {
        self.kill_agent(n);
        let node = &mut self.nodes[n];
        node.machine_up = false;
        node.pg.stop();
        for g in &mut node.guards {
            g.alive = false;
        }
        if let Some(wd) = node.watchdog.as_mut() {
            wd.fires_at = None;
            wd.gen += 1;
        }
        if lose_disk {
            node.pg = Pg::empty();
        }
    }

    pub(crate) fn fault(&mut self) {
        if self.now >= FAULTS_UNTIL_MS {
            return;
        }
        let next = self.now + self.rng.range(1_000, 8_000);
        self.push(next, Ev::Fault);
        let leader = self.leader_key().and_then(|(name, _)| Self::index(&name));
        if !self.faults_started {
            // Every run starts its fault phase by crashing the leader: at least one
            // failover per run.
            self.faults_started = true;
            if let Some(l) = leader {
                self.stats.faults += 1;
                self.log(Some(l), "FAULT: machine crash (the leader)".into());
                self.crash_machine(l, false);
                self.nodes[l].boot_gen += 1;
                let gen = self.nodes[l].boot_gen;
                let at = self.now + self.rng.range(2_000, 40_000);
                self.push(at, Ev::Boot { node: l, gen });
            }
            return;
        }
        let n = match leader {
            Some(l) if self.rng.chance(500) => l,
            _ => self.rng.pick(NODES),
        };
        if !self.nodes[n].machine_up {
            return;
        }
        let roll = self.rng.range(0, 99);
        let now = self.now;
        match roll {
            0..=14 => {
                // A streaming replica may come back with a new, empty disk.
                let pg = &self.nodes[n].pg;
                let lose_disk =
                    pg.in_recovery && pg.streaming && leader != Some(n) && self.rng.chance(200);
                self.stats.faults += 1;
                self.log(
                    Some(n),
                    format!("FAULT: machine crash (disk lost: {lose_disk})"),
                );
                self.crash_machine(n, lose_disk);
                self.nodes[n].boot_gen += 1;
                let gen = self.nodes[n].boot_gen;
                let at = now + self.rng.range(2_000, 40_000);
                self.push(at, Ev::Boot { node: n, gen });
            }
            15..=26 => {
                if self.nodes[n].agent.is_none() {
                    return;
                }
                self.stats.faults += 1;
                self.log(
                    Some(n),
                    "FAULT: agent SIGKILLed (PostgreSQL and guard live on)".into(),
                );
                self.kill_agent(n);
                self.nodes[n].boot_gen += 1;
                let gen = self.nodes[n].boot_gen;
                let at = now + self.rng.range(1_000, 15_000);
                self.push(at, Ev::Boot { node: n, gen });
            }
            27..=49 => {
                let how_long = self.rng.range(200, 25_000);
                self.pause(n, how_long);
            }
            50..=74 => {
                if self.nodes[n].partition != Partition::None {
                    return;
                }
                let kind = if roll < 62 {
                    Partition::Full
                } else {
                    Partition::DcsOnly
                };
                let node = &mut self.nodes[n];
                node.partition = kind;
                node.heal_gen += 1;
                let gen = node.heal_gen;
                if let Some(a) = node.agent.as_mut() {
                    a.watching = false;
                }
                self.stats.faults += 1;
                let how_long = self.rng.range(1_000, 30_000);
                self.log(
                    Some(n),
                    format!("FAULT: partition {kind:?} for {how_long}ms"),
                );
                self.push(now + how_long, Ev::Heal { node: n, gen });
            }
            75..=89 if self.nodes[n].pg.running => {
                self.stats.faults += 1;
                self.log(Some(n), "FAULT: PostgreSQL killed".into());
                self.nodes[n].pg.stop();
            }
            _ => {}
        }
    }

    pub(crate) fn heal_all(&mut self) {
        self.log(None, "all faults healed; the cluster must settle".into());
        for n in 0..NODES {
            let node = &mut self.nodes[n];
            node.partition = Partition::None;
            node.boot_gen += 1;
            node.pause_gen += 1;
            node.heal_gen += 1;
            self.resume(n);
            self.boot(n);
        }
    }
}
