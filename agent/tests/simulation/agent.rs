//! An agent process: the daemon's real loop (`Agent::run`) over the simulated seams,
//! plus the fencing timer the daemon spawns beside it; both tasks die together.

use super::*;
use database::SimPg;
use dcs::SimDcs;
use guard::{SimGuard, SimWatchdog};
use redis_db::SimRedis;
use seams::SimPeers;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use warden_agent::ha::env::Env;
use warden_agent::ha::run::Agent;
use warden_agent::ha::LocalEngine;
use warden_agent::state::{NodeStatus, Shared};

/// Member `n`'s configuration file, with the seed's `bootstrap.dcs`.
pub(crate) fn config(
    engine: EngineKind,
    n: usize,
    dcs: &DynamicConfig,
) -> Arc<warden_config::Config> {
    let name = NAMES[n];
    let section = match engine {
        EngineKind::Postgres => format!(
            r"postgresql:
  listen: 127.0.0.1:5432
  connect_address: {name}:5432
  data_dir: /nonexistent/warden-sim/{name}/data
  authentication:
    superuser: {{username: postgres}}
    replication: {{username: replicator}}"
        ),
        EngineKind::Redis => format!(
            r"redis:
  listen: 127.0.0.1:6379
  connect_address: {name}:6379
  data_dir: /nonexistent/warden-sim/{name}/redis"
        ),
    };
    let yaml = format!(
        r"
scope: sim
namespace: /service/
name: {name}
restapi:
  listen: 127.0.0.1:8008
  connect_address: {name}:8008
etcd3:
  host: 127.0.0.1:2379
{section}
watchdog:
  mode: automatic
  device: /nonexistent/warden-sim/watchdog
"
    );
    let mut cfg = warden_config::parse(&yaml)
        .unwrap_or_else(|e| panic!("the simulation's config: {e}"))
        .config;
    cfg.bootstrap.dcs = dcs.clone();
    Arc::new(cfg)
}

impl World {
    /// A new agent process on node `n` (its memory: the cached status, a new guard
    /// process): returns its id, status and start-up delay.
    fn new_process(&mut self, n: usize) -> (u64, Arc<Shared>, u64) {
        self.next_proc += 1;
        let id = self.next_proc;
        let shared = Shared::new(NodeStatus::new(
            "sim".into(),
            NAMES[n].into(),
            serde_json::Map::new(),
        ));
        let node = &mut self.nodes[n];
        node.guards.push(GuardProc {
            alive: true,
            input_open: true,
            armed: None,
        });
        node.proc = Some(Proc {
            id,
            shared: shared.clone(),
            tasks: Vec::new(),
            guard: Some(node.guards.len() - 1),
            failsafe_deadlines: Vec::new(),
        });
        node.frozen = false;
        (id, shared, self.rng.range(1, 500))
    }

    /// The loop returned: only a fatal error ends it in the simulation.
    fn agent_exited(&mut self, n: usize, id: u64, fatal: Option<String>) {
        if self.nodes[n].proc.as_ref().is_some_and(|p| p.id == id) {
            self.nodes[n].proc = None;
        }
        let why = fatal.unwrap_or_else(|| "the loop returned".into());
        self.fail(format!("{} stopped: {why}", NAMES[n]));
    }
}

/// Starts node `n`'s agent process (called without the world locked: building the
/// agent asks the watchdog seam).
pub(crate) fn start(sim: &Sim, n: usize) {
    if sim.with(|w| w.nodes[n].proc.is_some() || !w.nodes[n].machine_up) {
        return;
    }
    match sim.with(|w| w.engine) {
        EngineKind::Postgres => {
            let db = SimPg {
                sim: sim.clone(),
                node: n,
                known_system_identifier: None,
            };
            start_with(sim, n, db);
        }
        EngineKind::Redis => start_with(sim, n, SimRedis::new(sim.clone(), n)),
    }
}

/// Starts node `n`'s agent process over the engine adapter `db`.
fn start_with<D: LocalEngine>(sim: &Sim, n: usize, db: D) {
    let (cfg, clock) = sim.with(|w| (w.configs[n].clone(), w.nodes[n].clock));
    let (id, shared, delay) = sim.with(|w| w.new_process(n));
    let env = Env {
        clock: Arc::new(clock),
        peers: Arc::new(SimPeers {
            sim: sim.clone(),
            node: n,
        }),
        watchdog: Arc::new(SimWatchdog {
            sim: sim.clone(),
            node: n,
            proc_id: id,
        }),
    };
    let guard = SimGuard {
        sim: sim.clone(),
        node: n,
        last: String::new(),
        gone: false,
    };
    let dcs = Arc::new(SimDcs {
        sim: sim.clone(),
        node: n,
    });
    let span = trace::span(n);
    // `Agent::new` first looks at the configured (here: absent) watchdog device; only
    // what it says about the simulated one counts.
    let agent = trace::quiet(|| Agent::new(cfg, dcs, db, shared.clone()));
    let agent = span.in_scope(|| agent.with_env(env).with_guard(Box::new(guard)));
    let world = sim.clone();
    let run = tokio::task::spawn_local(
        async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let result = Box::pin(agent.run(CancellationToken::new())).await;
            world.with(|w| w.agent_exited(n, id, result.err().map(|f| f.0)));
        }
        .instrument(span.clone()),
    );
    let timer =
        tokio::task::spawn_local(guard::fence_timer(sim.clone(), n, shared).instrument(span));
    sim.with(|w| {
        if let Some(p) = w.nodes[n].proc.as_mut().filter(|p| p.id == id) {
            p.tasks = vec![run.abort_handle(), timer.abort_handle()];
        }
    });
}
