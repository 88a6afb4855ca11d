//! Faults and their healing: crashes, kills, freezes, partitions.

use super::*;

impl World {
    /// The machine is up again and its agent starts (returns the nodes whose agent the
    /// driver must start).
    pub(crate) fn boot(&mut self, n: usize) -> Vec<usize> {
        let node = &mut self.nodes[n];
        if !node.machine_up {
            node.machine_up = true;
            self.log(Some(n), "machine back up".into());
        }
        if self.nodes[n].proc.is_some() {
            return Vec::new();
        }
        self.log(Some(n), "agent starts".into());
        vec![n]
    }

    /// SIGSTOP for `for_ms`.
    pub(crate) fn pause(&mut self, n: usize, for_ms: u64, why: &str) {
        let node = &mut self.nodes[n];
        if node.frozen || node.proc.is_none() {
            return;
        }
        node.frozen = true;
        node.pause_gen += 1;
        let gen = node.pause_gen;
        self.stats.faults += 1;
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        };
        self.log(
            Some(n),
            format!("FAULT: agent SIGSTOPped for {for_ms}ms{why}"),
        );
        self.push(self.now() + for_ms, Ev::Resume { node: n, gen });
    }

    /// A SIGSTOP aimed at one of the riskiest moments (taking the key, promoting).
    pub(crate) fn aimed_pause(&mut self, n: usize, why: &str) {
        if self.faults_running() && self.rng.chance(40) {
            let how_long = self.rng.range(200, 25_000);
            self.pause(n, how_long, why);
        }
    }

    /// SIGCONT. The fencing timer and the loop resume together; which runs first is up
    /// to the scheduler, so the model picks either order.
    pub(crate) fn resume(&mut self, n: usize) {
        if !self.nodes[n].frozen {
            return;
        }
        self.nodes[n].frozen = false;
        self.log(Some(n), "agent resumed (SIGCONT)".into());
        if self.rng.chance(500) {
            self.fence_if_due(n);
        }
        self.nodes[n].gate.notify_waiters();
    }

    /// The agent process dies (SIGKILL): its tasks end; PostgreSQL and the guard live
    /// on (a disarmed guard exits when its input closes).
    pub(crate) fn kill_agent(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let Some(p) = node.proc.take() else { return };
        for t in &p.tasks {
            t.abort();
        }
        if let Some(g) = p.guard {
            let guard = &mut node.guards[g];
            guard.input_open = false;
            if guard.armed.is_none() {
                guard.alive = false;
            }
        }
        node.frozen = false;
        // Whoever waited on its answer (a peer's probe) sees the connection drop.
        node.gate.notify_waiters();
    }

    pub(crate) fn crash_machine(&mut self, n: usize, lose_disk: bool) {
        self.kill_agent(n);
        self.kill_server(n);
        let node = &mut self.nodes[n];
        node.machine_up = false;
        for g in &mut node.guards {
            g.alive = false;
        }
        if let Some(wd) = node.watchdog.as_mut() {
            wd.fires_at = None;
            wd.gen += 1;
        }
        if lose_disk {
            self.lose_disk(n);
        }
    }

    fn crash_and_reboot(&mut self, n: usize, lose_disk: bool, within: (u64, u64)) {
        self.crash_machine(n, lose_disk);
        self.nodes[n].boot_gen += 1;
        let gen = self.nodes[n].boot_gen;
        let at = self.now() + self.rng.range(within.0, within.1);
        self.push(at, Ev::Boot { node: n, gen });
    }

    pub(crate) fn fault(&mut self) -> Vec<usize> {
        let now = self.now();
        if now >= FAULTS_UNTIL_MS {
            return Vec::new();
        }
        let next = now + self.rng.range(1_000, 8_000);
        self.push(next, Ev::Fault);
        let leader = self.leader_key().and_then(|(name, _)| Self::index(&name));
        if !self.faults_started {
            // Every run starts its fault phase by crashing the leader: at least one
            // failover per run.
            self.faults_started = true;
            if let Some(l) = leader {
                self.stats.faults += 1;
                self.log(Some(l), "FAULT: machine crash (the leader)".into());
                self.crash_and_reboot(l, false, (2_000, 40_000));
            }
            return Vec::new();
        }
        let n = match leader {
            Some(l) if self.rng.chance(500) => l,
            _ => self.rng.pick(NODES),
        };
        if !self.nodes[n].machine_up {
            return Vec::new();
        }
        let roll = self.rng.range(0, 99);
        match roll {
            0..=14 => {
                // A streaming replica may come back with a new, empty disk.
                let lose_disk =
                    self.streaming_replica(n) && leader != Some(n) && self.rng.chance(200);
                self.stats.faults += 1;
                self.log(
                    Some(n),
                    format!("FAULT: machine crash (disk lost: {lose_disk})"),
                );
                self.crash_and_reboot(n, lose_disk, (2_000, 40_000));
            }
            15..=26 => {
                if self.nodes[n].proc.is_none() {
                    return Vec::new();
                }
                self.stats.faults += 1;
                self.log(
                    Some(n),
                    "FAULT: agent SIGKILLed (the database server and guard live on)".into(),
                );
                self.kill_agent(n);
                self.nodes[n].boot_gen += 1;
                let gen = self.nodes[n].boot_gen;
                let at = now + self.rng.range(1_000, 15_000);
                self.push(at, Ev::Boot { node: n, gen });
            }
            27..=49 => {
                let how_long = self.rng.range(200, 25_000);
                self.pause(n, how_long, "");
            }
            50..=74 => self.partition(n, roll < 62),
            75..=89 if self.server(n).0 => {
                self.stats.faults += 1;
                self.log(Some(n), "FAULT: database server killed".into());
                self.kill_server(n);
            }
            _ => {}
        }
        Vec::new()
    }

    fn partition(&mut self, n: usize, full: bool) {
        if self.nodes[n].partition != Partition::None {
            return;
        }
        let kind = if full {
            Partition::Full
        } else {
            Partition::DcsOnly
        };
        let node = &mut self.nodes[n];
        node.partition = kind;
        node.heal_gen += 1;
        let gen = node.heal_gen;
        self.break_watches(n);
        self.stats.faults += 1;
        let how_long = self.rng.range(1_000, 30_000);
        self.log(
            Some(n),
            format!("FAULT: partition {kind:?} for {how_long}ms"),
        );
        self.push(self.now() + how_long, Ev::Heal { node: n, gen });
    }

    pub(crate) fn heal_all(&mut self) -> Vec<usize> {
        self.log(None, "all faults healed; the cluster must settle".into());
        let mut starts = Vec::new();
        for n in 0..NODES {
            let node = &mut self.nodes[n];
            node.partition = Partition::None;
            node.boot_gen += 1;
            node.pause_gen += 1;
            node.heal_gen += 1;
            self.resume(n);
            starts.extend(self.boot(n));
        }
        starts
    }
}
