//! The world: the event queue, the clocks, the DCS calls and wake-ups, and the
//! turn scheduler; plus small helpers the other parts share.

use super::*;

impl World {
    pub(crate) fn new(seed: u64, keep_full_trace: bool, fixes: Fixes) -> Self {
        let mut rng = Rng(seed);
        // Per seed: how long a primary may stay down before it hands the key over, and
        // whether replicas must be on a newer timeline than the history to race.
        let primary_start_timeout = [0, 10, 300][rng.pick(3)];
        let check_timeline = rng.chance(500);
        let failsafe_mode = rng.chance(300);
        let watchdog = rng.chance(400);
        let bootstrap_cfg = DynamicConfig::from_json(&json!({
            "ttl": TTL.as_secs(), "loop_wait": LOOP_WAIT_MS / 1000, "retry_timeout": 3,
            "maximum_lag_on_failover": 1_048_576,
            "primary_start_timeout": primary_start_timeout,
            "check_timeline": check_timeline,
            "failsafe_mode": failsafe_mode,
            "postgresql": {"use_pg_rewind": true},
        }))
        .expect("valid bootstrap.dcs");
        let options = format!(
            "primary_start_timeout {primary_start_timeout}s, check_timeline {check_timeline}, \
             failsafe_mode {failsafe_mode}, watchdog device {watchdog}"
        );
        let nodes = (0..NODES)
            .map(|_| Node {
                ppm: rng.range(995_000, 1_005_000),
                machine_up: true,
                partition: Partition::None,
                paused: false,
                pg: Pg::empty(),
                agent: None,
                guards: Vec::new(),
                watchdog: watchdog.then(Watchdog::default),
                boot_gen: 0,
                pause_gen: 0,
                heal_gen: 0,
            })
            .collect();
        let mut w = Self {
            seed,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            store: Store::new(),
            nodes,
            epochs: vec![Epoch {
                timeline: 1,
                parent: None,
                start: 0,
            }],
            bootstrap_cfg,
            options,
            fixes,
            // Later than the origin of every LeaseDeadline the run creates.
            base: Instant::now() + Duration::from_secs(86_400),
            next_turn: 0,
            next_arm: 0,
            faults_started: false,
            trace: VecDeque::new(),
            keep_full_trace,
            failure: None,
            stats: Stats::default(),
        };
        let msg = format!("seed {seed}: {}", w.options);
        w.log(None, msg);
        for n in 0..NODES {
            w.start_agent(n);
        }
        w.push(0, Ev::Tick);
        w.push(FAULTS_FROM_MS, Ev::Fault);
        w.push(FAULTS_UNTIL_MS, Ev::HealAll);
        w
    }

    /// Schedules `ev`; an instant already past (a deadline computed from an old
    /// renewal) means "now": simulated time never runs backwards.
    pub(crate) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at.max(self.now), self.seq, ev)));
    }

    /// Appends to the trace (only what a reader needs: faults, decisions whose note
    /// changed, failures, fencing, promotions).
    pub(crate) fn log(&mut self, node: Option<usize>, msg: String) {
        let who = node.map_or("--", |n| NAMES[n]);
        let mut line = msg;
        line.insert_str(0, &format!("{:>9.3}s {who}: ", self.now as f64 / 1000.0));
        self.trace.push_back(line);
        if !self.keep_full_trace && self.trace.len() > TRACE_SHOWN {
            self.trace.pop_front();
        }
    }

    pub(crate) fn agent(&mut self, n: usize) -> &mut Agent {
        self.nodes[n].agent.as_mut().expect("the agent is alive")
    }

    pub(crate) fn local_now(&self, n: usize) -> u64 {
        local_ms(self.nodes[n].ppm, self.now)
    }

    pub(crate) fn instant(&self, local: u64) -> Instant {
        self.base + Duration::from_millis(local)
    }

    pub(crate) fn index(name: &str) -> Option<usize> {
        NAMES.iter().position(|n| *n == name)
    }

    pub(crate) fn dcs_reachable(&self, n: usize) -> bool {
        self.nodes[n].machine_up && self.nodes[n].partition == Partition::None
    }

    /// Whether `a` and `b` can talk (REST, replication, pg_rewind, pg_basebackup).
    pub(crate) fn net_ok(&self, a: usize, b: usize) -> bool {
        let up = |n: usize| self.nodes[n].machine_up && self.nodes[n].partition != Partition::Full;
        up(a) && up(b)
    }

    /// The leader key as the server holds it now.
    pub(crate) fn leader_key(&self) -> Option<(String, u64)> {
        self.store
            .leader_at(self.now)
            .map(|(name, exp)| (name.to_string(), exp))
    }

    pub(crate) fn run(&mut self) -> Result<Stats, String> {
        while let Some(Reverse((at, _, ev))) = self.queue.pop() {
            if at > END_MS {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            self.handle(ev);
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
            self.check_safety()?;
        }
        self.now = END_MS;
        self.check_liveness()?;
        Ok(self.stats)
    }

    pub(crate) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick => self.tick(),
            Ev::Fault => self.fault(),
            Ev::HealAll => self.heal_all(),
            Ev::Wake { node, gen } => self.wake(node, gen),
            Ev::Continue { node, turn } => {
                let Some(a) = self.nodes[node].agent.as_mut() else {
                    return;
                };
                if a.turn.as_ref().map(|t| t.id) != Some(turn) {
                    return;
                }
                if self.nodes[node].paused {
                    self.agent(node).held = true;
                } else {
                    self.advance_turn(node);
                }
            }
            Ev::FenceTimer { node } => {
                if self.nodes[node].agent.is_some() && !self.nodes[node].paused {
                    self.fence_timer(node);
                }
            }
            Ev::Guard { node, guard, arm } => self.guard_fires(node, guard, arm),
            Ev::WatchdogFires { node, gen } => {
                let due = self.nodes[node]
                    .watchdog
                    .is_some_and(|w| w.gen == gen && w.fires_at.is_some_and(|t| t <= self.now));
                if due && self.nodes[node].machine_up {
                    self.stats.watchdog_resets += 1;
                    if !self.nodes[node].paused {
                        if let Some(a) = self.nodes[node].agent.as_ref() {
                            self.stats.watchdog_resets_live += 1;
                            if a.failsafe_held {
                                self.stats.watchdog_resets_failsafe += 1;
                            }
                        }
                    }
                    self.log(
                        Some(node),
                        "WATCHDOG: not fed in time; machine reset".into(),
                    );
                    self.crash_machine(node, false);
                    self.nodes[node].boot_gen += 1;
                    let gen = self.nodes[node].boot_gen;
                    let at = self.now + self.rng.range(5_000, 30_000);
                    self.push(at, Ev::Boot { node, gen });
                }
            }
            Ev::Boot { node, gen } => {
                if gen == self.nodes[node].boot_gen {
                    self.boot(node);
                }
            }
            Ev::Resume { node, gen } => {
                if gen == self.nodes[node].pause_gen {
                    self.resume(node);
                }
            }
            Ev::Heal { node, gen } => {
                if gen == self.nodes[node].heal_gen && self.nodes[node].partition != Partition::None
                {
                    self.nodes[node].partition = Partition::None;
                    self.log(Some(node), "partition healed".into());
                }
            }
        }
    }

    /// Workload, replication, etcd's lease revocation, `keep_lease_during`.
    pub(crate) fn tick(&mut self) {
        self.expire_leases();
        let now = self.now;
        for n in 0..NODES {
            if self.nodes[n].pg.writable(now) {
                self.nodes[n].pg.wal.lsn += self.rng.range(0, WRITE_PER_TICK);
            }
        }
        for r in 0..NODES {
            let budget = self.rng.range(STREAM_PER_TICK / 4, STREAM_PER_TICK);
            let pg = &self.nodes[r].pg;
            let upstream = pg
                .upstream
                .filter(|_| pg.ready(now) && pg.in_recovery && pg.data == DataState::Initialized);
            let next = upstream
                .filter(|&u| u != r && self.net_ok(r, u) && self.nodes[u].pg.ready(now))
                .and_then(|u| stream(&self.epochs, pg.wal, self.nodes[u].pg.wal, budget));
            let pg = &mut self.nodes[r].pg;
            pg.streaming = next.is_some();
            if let Some(wal) = next {
                pg.wal = wal;
            }
        }
        for n in 0..NODES {
            let due = self.nodes[n]
                .agent
                .as_ref()
                .and_then(|a| a.keep_lease)
                .is_some_and(|last| now >= last + LOOP_WAIT_MS);
            if due && !self.nodes[n].paused {
                self.background_keepalive(n);
            }
        }
        self.push(now + TICK_MS, Ev::Tick);
    }

    pub(crate) fn expire_leases(&mut self) {
        let now = self.now;
        if !self.store.leases.values().any(|exp| *exp <= now) {
            return;
        }
        let before = self.leader_key();
        self.store.expire(self.now);
        if std::mem::take(&mut self.store.watched_changed) {
            if let Some((name, _)) = before.filter(|_| self.leader_key().is_none()) {
                self.log(
                    None,
                    format!("etcd: the lease of leader {name} expired; leader key deleted"),
                );
            }
            self.wake_watchers(None);
        }
    }

    /// One etcd request from node `n`: takes effect now if `n` can reach etcd; returns
    /// the result (`None`: unreachable, after the request timeout) and the time it took.
    pub(crate) fn call<T>(
        &mut self,
        n: usize,
        f: impl FnOnce(&mut Store, u64) -> T,
    ) -> (Option<T>, u64) {
        if !self.dcs_reachable(n) {
            return (None, DCS_TIMEOUT_MS);
        }
        self.expire_leases();
        let out = f(&mut self.store, self.now);
        if std::mem::take(&mut self.store.watched_changed) {
            self.wake_watchers(Some(n));
        }
        (Some(out), self.rng.range(1, 4))
    }

    /// A watched key changed: every agent with a live watch turns at once.
    ///
    /// Deviation from `run.rs`, on purpose: there the leader's own `RenewLeader` (a Put
    /// on the leader key) also wakes the leader, so a leader would turn again
    /// immediately after every turn, without end. The model wakes only the other agents
    /// on a write, so the leader keeps its `loop_wait` rhythm.
    pub(crate) fn wake_watchers(&mut self, writer: Option<usize>) {
        for n in 0..NODES {
            if Some(n) == writer || !self.dcs_reachable(n) {
                continue;
            }
            let paused = self.nodes[n].paused;
            let Some(a) = self.nodes[n].agent.as_mut() else {
                continue;
            };
            if !a.watching {
                continue;
            }
            if a.turn.is_some() || paused {
                a.dirty = true;
            } else {
                a.wake_gen += 1;
                let gen = a.wake_gen;
                let at = self.now + self.rng.range(1, 3);
                self.push(at, Ev::Wake { node: n, gen });
            }
        }
    }

    pub(crate) fn wake(&mut self, n: usize, gen: u64) {
        let paused = self.nodes[n].paused;
        let Some(a) = self.nodes[n].agent.as_mut() else {
            return;
        };
        if gen != a.wake_gen {
            return;
        }
        if paused || a.turn.is_some() {
            a.dirty = true;
            return;
        }
        self.next_turn += 1;
        a.turns += 1;
        a.dirty = false;
        a.turn = Some(Turn {
            id: self.next_turn,
            phase: Phase::Lease,
            lease_renewed: false,
            cluster: None,
            local: None,
            peers: Vec::new(),
            peer_timelines: BTreeMap::new(),
            failsafe_confirmed: None,
            obs: None,
            actions: Vec::new(),
            next: 0,
            changed_local: false,
            just_did: None,
        });
        self.stats.turns += 1;
        self.advance_turn(n);
    }

    /// Runs the turn's current phase, then schedules the next one after the time this
    /// one took, or ends the turn and sleeps until the next tick or watch event.
    pub(crate) fn advance_turn(&mut self, n: usize) {
        let a = self.agent(n);
        a.keep_lease = None;
        let mut turn = a.turn.take().expect("a turn in progress");
        let next = self.turn_phase(n, &mut turn);
        if self.nodes[n].agent.is_none() {
            return; // Fatal
        }
        let just_did = turn.just_did.take();
        let id = turn.id;
        match next {
            Some(took) => {
                self.agent(n).turn = Some(turn);
                self.push(self.now + took, Ev::Continue { node: n, turn: id });
            }
            None => {
                let watching = self.dcs_reachable(n);
                let a = self.agent(n);
                a.watching = watching;
                a.wake_gen += 1;
                let gen = a.wake_gen;
                let sleep = if a.dirty && watching { 1 } else { LOOP_WAIT_MS };
                self.push(self.now + sleep, Ev::Wake { node: n, gen });
            }
        }
        // SIGSTOP lands anywhere in a turn now and then, and more often right after the
        // steps where being frozen is most dangerous.
        if self.faults_started && self.now < FAULTS_UNTIL_MS {
            let aimed = matches!(
                just_did,
                Some(
                    Action::AcquireLeader
                        | Action::Promote { .. }
                        | Action::Start(StartAs::Primary)
                )
            );
            if self.rng.chance(if aimed { 40 } else { 3 }) {
                let how_long = self.rng.range(200, 25_000);
                self.pause(n, how_long);
            }
        }
    }
}

/// The proposed `race_refusal` rule (fix `failsafe-membership`): in failsafe mode, a
/// replica the leader's `/failsafe` key does not list never promised anything to that
/// leader, so it must not race.
pub(crate) fn failsafe_outsider(o: &Observation) -> Option<String> {
    let c = o.cluster.as_ref()?;
    let racing = o.local.engine.probe.as_ref().is_some_and(|p| p.in_recovery) && c.leader.is_none();
    let listed = c.failsafe.as_ref().filter(|f| !f.is_empty())?;
    (racing && c.dynamic_config().failsafe_mode && !listed.contains_key(&o.me))
        .then(|| "not racing: failsafe mode and /failsafe does not list us".to_string())
}

pub(crate) fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|&n| NAMES[n])
        .collect::<Vec<_>>()
        .join(", ")
}

/// Two distinct nodes, one mutable.
pub(crate) fn pair(nodes: &mut [Node], a: usize, b: usize) -> (&mut Node, &Node) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = nodes.split_at_mut(b);
        (&mut lo[a], &hi[0])
    } else {
        let (lo, hi) = nodes.split_at_mut(a);
        (&mut hi[0], &lo[b])
    }
}

/// `publish.rs`: `role_of`.
pub(crate) fn role_of(local: &Local) -> Role {
    match (&local.engine.probe, local.data) {
        (Some(p), _) if !p.in_recovery => Role::Primary,
        (Some(_), _) => Role::Replica,
        (None, DataState::Initialized) if local.was_primary => Role::Demoted,
        (None, DataState::Initialized) => Role::Replica,
        (None, _) => Role::Uninitialized,
    }
}

/// `publish.rs`: `member_json`, in Patroni's shape.
///
/// Written out by hand (every string is a plain identifier, nothing needs escaping):
/// building a `serde_json::Value` per turn dominated the run time in debug builds.
pub(crate) fn member_json(n: usize, state: &str, local: &Local) -> String {
    let name = NAMES[n];
    let role = role_of(local).as_str();
    let mut m = format!(
        r#"{{"conn_url":"postgres://{name}:5432/postgres","api_url":"http://{name}:8008/patroni","state":"{state}","role":"{role}","version":"4.0.0""#
    );
    if let Some(p) = &local.engine.probe {
        let num = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        m.push_str(&format!(
            r#","xlog_location":{},"timeline":{}"#,
            num(p.wal_position),
            num(p.timeline.map(u64::from))
        ));
        if p.in_recovery {
            let repl = if p.streaming {
                "streaming"
            } else {
                "in archive recovery"
            };
            m.push_str(&format!(
                r#","replay_lsn":{},"replication_state":"{repl}""#,
                num(p.replay_lsn)
            ));
        }
    }
    m.push('}');
    m
}
