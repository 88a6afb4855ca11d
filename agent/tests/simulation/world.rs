//! The world: its construction, the driver that runs a seed, the event queue, the
//! seam calls' common path (stop, apply, latency, invariants), replication and the
//! workload; plus small helpers the other parts share.

use super::*;
use serde_json::json;
use tokio::time::Instant;

/// Runs one seed to its end on a fresh paused runtime.
pub(crate) fn run_seed(engine: EngineKind, seed: u64, full_trace: bool, fixes: Fixes) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let trace = Trace::new(full_trace);
    let (_sim, result, stats, dump) = local.block_on(&rt, async {
        let _log = trace::install(&trace);
        let sim = Sim(Arc::new(Mutex::new(World::new(
            engine,
            seed,
            Instant::now(),
            trace.clone(),
            fixes,
        ))));
        let result = drive(&sim).await;
        let (stats, dump) = sim.with(|w| {
            w.trace.freeze();
            let dump = w
                .failure
                .as_ref()
                .map_or_else(|| w.dump(), |(_, d)| d.clone());
            (w.stats, dump)
        });
        (sim, result, stats, dump)
    });
    // Every task (and with them the seams holding the world) goes with the runtime.
    drop(local);
    drop(rt);
    Run {
        seed,
        result,
        stats,
        trace: trace.lines(),
        dump,
    }
}

/// Handles the world's events in time order until the end or the first violated
/// invariant; then judges liveness.
async fn drive(sim: &Sim) -> Result<(), String> {
    for n in 0..NODES {
        agent::start(sim, n);
    }
    loop {
        let next = sim.with(|w| w.queue.peek().map(|Reverse((at, _, _))| *at));
        let at = next.unwrap_or(END_MS).min(END_MS);
        let origin = sim.with(|w| w.origin);
        tokio::time::sleep_until(origin + Duration::from_millis(at)).await;
        if let Some((why, _)) = sim.with(|w| w.failure.clone()) {
            return Err(why);
        }
        if at >= END_MS {
            break;
        }
        let starts = sim.with(|w| {
            let mut starts = Vec::new();
            while let Some(Reverse((t, _, ev))) = w.queue.peek().copied() {
                if t > at {
                    break;
                }
                w.queue.pop();
                w.stats.events += 1;
                starts.extend(w.handle(ev));
                w.check();
            }
            starts
        });
        for n in starts {
            agent::start(sim, n);
        }
    }
    sim.with(World::check_liveness)
}

impl Sim {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut w = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut w)
    }

    /// Waits while node `n`'s agent process is stopped.
    pub(crate) async fn pass(&self, n: usize) {
        let gate = self.with(|w| w.nodes[n].gate.clone());
        loop {
            let notified = gate.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.with(|w| w.nodes[n].frozen) {
                return;
            }
            notified.await;
        }
    }

    /// One call of node `n`'s agent into the world: waits while the process is stopped,
    /// applies `f` at once, checks the invariants, then takes the time `f` says the
    /// call takes (ms) and waits again should the process have been stopped meanwhile.
    pub(crate) async fn io<T>(&self, n: usize, f: impl FnOnce(&mut World) -> (T, u64)) -> T {
        self.pass(n).await;
        let (out, took) = self.with(|w| {
            w.stats.events += 1;
            let (out, took) = f(w);
            // SIGSTOP lands anywhere now and then.
            if w.faults_running() && w.rng.chance(3) {
                let how_long = w.rng.range(200, 25_000);
                w.pause(n, how_long, "");
            }
            w.check();
            (out, took)
        });
        if took > 0 {
            tokio::time::sleep(Duration::from_millis(took)).await;
        }
        self.pass(n).await;
        out
    }
}

impl World {
    fn new(engine: EngineKind, seed: u64, origin: Instant, trace: Trace, fixes: Fixes) -> Self {
        trace.start(origin);
        let mut rng = Rng(seed);
        // Per seed: how long a primary may stay down before it hands the key over, and
        // whether replicas must be on a newer timeline than the history to race.
        let primary_start_timeout = [0, 10, 300][rng.pick(3)];
        let check_timeline = rng.chance(500);
        let failsafe_mode = rng.chance(300);
        let watchdog = rng.chance(400);
        let dcs = DynamicConfig::from_json(&json!({
            "ttl": TTL.as_secs(), "loop_wait": LOOP_WAIT_S, "retry_timeout": RETRY_TIMEOUT_S,
            "maximum_lag_on_failover": MAX_LAG_ON_FAILOVER,
            "primary_start_timeout": primary_start_timeout,
            "check_timeline": check_timeline,
            "failsafe_mode": failsafe_mode,
            "postgresql": {"use_pg_rewind": true},
        }))
        .expect("valid bootstrap.dcs");
        let mut options = format!(
            "{}: primary_start_timeout {primary_start_timeout}s, check_timeline {check_timeline}, \
             failsafe_mode {failsafe_mode}, watchdog device {watchdog}",
            engine.name()
        );
        // Drawn only for Redis, so the PostgreSQL world's seeds replay as before.
        let persist = match engine {
            EngineKind::Redis if rng.chance(250) => redis::Persist::Never,
            _ => redis::Persist::Always,
        };
        if engine == EngineKind::Redis {
            options.push_str(&format!(", persistence {persist:?}"));
        }
        let nodes = (0..NODES)
            .map(|_| Node {
                clock: NodeClock::new(origin, rng.range(995_000, 1_005_000)),
                machine_up: true,
                partition: Partition::None,
                frozen: false,
                aim_after_feed: false,
                unguarded: false,
                gate: Arc::new(tokio::sync::Notify::new()),
                pg: Pg::empty(),
                rs: redis::Rs::empty(),
                proc: None,
                guards: Vec::new(),
                watchdog: watchdog.then(Watchdog::default),
                dcs_timeout: warden_consensus::request_timeout(RETRY_TIMEOUT_S as u32),
                boot_gen: 0,
                pause_gen: 0,
                heal_gen: 0,
            })
            .collect();
        let configs = (0..NODES).map(|n| agent::config(engine, n, &dcs)).collect();
        let mut w = Self {
            seed,
            engine,
            persist,
            next_replid: 0,
            max_offset: 0,
            rng,
            origin,
            seq: 0,
            queue: BinaryHeap::new(),
            delivering: false,
            store: Store::new(),
            nodes,
            epochs: vec![Epoch {
                timeline: 1,
                parent: None,
                start: 0,
            }],
            configs,
            options,
            fixes,
            next_proc: 0,
            next_arm: 0,
            faults_started: false,
            trace,
            failure: None,
            stats: Stats::default(),
        };
        let msg = format!("seed {seed}: {}", w.options);
        w.log(None, msg);
        w.push(0, Ev::Tick);
        w.push(LESSOR_MS, Ev::Lessor);
        w.push(FAULTS_FROM_MS, Ev::Fault);
        w.push(FAULTS_UNTIL_MS, Ev::HealAll);
        w
    }

    /// Simulated ms since the start.
    pub(crate) fn now(&self) -> u64 {
        Instant::now().duration_since(self.origin).as_millis() as u64
    }

    /// Schedules `ev`; an instant already past means "now".
    pub(crate) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        let at = at.max(self.now());
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    pub(crate) fn log(&mut self, node: Option<usize>, msg: String) {
        let who = node.map_or("--", |n| NAMES[n]);
        self.trace.push(who, msg);
    }

    pub(crate) fn faults_running(&self) -> bool {
        self.faults_started && self.now() < FAULTS_UNTIL_MS
    }

    pub(crate) fn index(host: &str) -> Option<usize> {
        NAMES.iter().position(|n| *n == host)
    }

    pub(crate) fn dcs_reachable(&self, n: usize) -> bool {
        self.nodes[n].machine_up && self.nodes[n].partition == Partition::None
    }

    /// Whether `a` and `b` can talk (REST, replication, pg_rewind, pg_basebackup).
    pub(crate) fn net_ok(&self, a: usize, b: usize) -> bool {
        let up = |n: usize| self.nodes[n].machine_up && self.nodes[n].partition != Partition::Full;
        up(a) && up(b)
    }

    /// Node `n`'s database server acknowledges writes now (either engine).
    pub(crate) fn writable(&self, n: usize) -> bool {
        let now = self.now();
        match self.engine {
            EngineKind::Postgres => self.nodes[n].pg.writable(now),
            EngineKind::Redis => self.nodes[n].rs.writable(now),
        }
    }

    /// Node `n`'s database server process runs, and which start of it that is (its
    /// pid, with the start time, as the guard checks it).
    pub(crate) fn server(&self, n: usize) -> (bool, u64) {
        match self.engine {
            EngineKind::Postgres => (self.nodes[n].pg.running, self.nodes[n].pg.incarnation),
            EngineKind::Redis => (self.nodes[n].rs.running, self.nodes[n].rs.incarnation),
        }
    }

    /// Node `n`'s server process dies (SIGKILL, OOM, a crash of the machine).
    pub(crate) fn kill_server(&mut self, n: usize) {
        match self.engine {
            EngineKind::Postgres => self.nodes[n].pg.stop(false),
            EngineKind::Redis => self.nodes[n].rs.stop(self.persist),
        }
    }

    /// Node `n` runs a replica whose link to its upstream is up.
    pub(crate) fn streaming_replica(&self, n: usize) -> bool {
        match self.engine {
            EngineKind::Postgres => self.nodes[n].pg.in_recovery && self.nodes[n].pg.streaming,
            EngineKind::Redis => {
                let rs = &self.nodes[n].rs;
                rs.running && !rs.master && rs.link_up
            }
        }
    }

    /// Node `n`'s machine comes back with a new, empty disk.
    pub(crate) fn lose_disk(&mut self, n: usize) {
        match self.engine {
            EngineKind::Postgres => self.nodes[n].pg = Pg::empty(),
            EngineKind::Redis => {
                // The process counter is the kernel's pid space, not the disk's.
                let incarnation = self.nodes[n].rs.incarnation;
                self.nodes[n].rs = redis::Rs::empty();
                self.nodes[n].rs.incarnation = incarnation;
            }
        }
    }

    /// Node `n`'s clock now, as the loop reads it.
    pub(crate) fn node_now(&self, n: usize) -> std::time::Instant {
        self.nodes[n].clock.now_std()
    }

    /// The leader key as the server holds it now.
    pub(crate) fn leader_key(&self) -> Option<(String, u64)> {
        self.store
            .leader_at(self.now())
            .map(|(name, exp)| (name.to_string(), exp))
    }

    /// Records the first violated invariant.
    pub(crate) fn check(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if let Err(why) = self.check_safety() {
            self.fail(why);
        }
    }

    pub(crate) fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.log(None, format!("INVARIANT VIOLATED: {why}"));
            let dump = self.dump();
            self.trace.freeze();
            self.failure = Some((why, dump));
        }
    }

    /// Returns the nodes whose agent must be started now.
    fn handle(&mut self, ev: Ev) -> Vec<usize> {
        match ev {
            Ev::Tick => self.tick(),
            Ev::Lessor => {
                self.expire_leases();
                self.push(self.now() + LESSOR_MS, Ev::Lessor);
            }
            Ev::Deliver => self.deliver(),
            Ev::Fault => return self.fault(),
            Ev::HealAll => return self.heal_all(),
            Ev::Guard { node, guard, arm } => self.guard_fires(node, guard, arm),
            Ev::WatchdogFires { node, gen } => self.watchdog_fires(node, gen),
            Ev::Checkpoint { node, incarnation } => self.background_checkpoint(node, incarnation),
            Ev::Boot { node, gen } => {
                if gen == self.nodes[node].boot_gen {
                    return self.boot(node);
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
        Vec::new()
    }

    /// Workload and replication.
    fn tick(&mut self) {
        let now = self.now();
        if self.engine == EngineKind::Redis {
            for n in 0..NODES {
                if self.nodes[n].rs.writable(now) {
                    let rs = &mut self.nodes[n].rs;
                    rs.lin.offset += self.rng.range(0, WRITE_PER_TICK);
                    self.max_offset = self.max_offset.max(rs.lin.offset);
                }
            }
            for r in 0..NODES {
                let budget = self.rng.range(STREAM_PER_TICK / 4, STREAM_PER_TICK);
                self.redis_replicate(r, budget);
            }
            self.push(now + TICK_MS, Ev::Tick);
            return;
        }
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
                .and_then(|u| pg::stream(&self.epochs, pg.wal, self.nodes[u].pg.wal, budget));
            let pg = &mut self.nodes[r].pg;
            pg.streaming = next.is_some();
            if let Some(wal) = next {
                pg.wal = wal;
            }
        }
        self.push(now + TICK_MS, Ev::Tick);
    }

    /// etcd's lessor: revokes expired leases (and their keys).
    pub(crate) fn expire_leases(&mut self) {
        let now = self.now();
        if !self.store.leases.values().any(|(_, exp)| *exp <= now) {
            return;
        }
        let before = self.leader_key();
        self.store.expire(now);
        if let Some((name, _)) = before.filter(|_| self.leader_key().is_none()) {
            self.log(
                None,
                format!("etcd: the lease of leader {name} expired; leader key deleted"),
            );
        }
        self.dispatch_watch();
    }

    /// Hands the store's changes to the watchers; they arrive a millisecond later.
    pub(crate) fn dispatch_watch(&mut self) {
        if self.store.changes.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.store.changes);
        for w in self.store.watchers.iter_mut().filter(|w| !w.broken) {
            w.pending.extend(changes.iter().cloned());
        }
        self.schedule_delivery();
    }

    pub(crate) fn schedule_delivery(&mut self) {
        if !self.delivering {
            self.delivering = true;
            self.push(self.now() + 1, Ev::Deliver);
        }
    }

    /// Watch events reach the agents (a full queue drops them, as the client does).
    fn deliver(&mut self) {
        self.delivering = false;
        self.store.watchers.retain_mut(|w| {
            for ev in w.pending.drain(..) {
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = w.tx.try_send(ev) {
                    return false;
                }
            }
            !w.broken
        });
    }

    /// The connection of node `n` to etcd broke: its watches end.
    pub(crate) fn break_watches(&mut self, n: usize) {
        for w in self.store.watchers.iter_mut().filter(|w| w.node == n) {
            w.pending
                .push(WatchEvent::Broken("connection to etcd lost".into()));
            w.broken = true;
        }
        self.schedule_delivery();
    }
}

/// Patroni's member name of the node at `host` (`n1`, ...).
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
