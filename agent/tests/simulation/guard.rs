//! Fencing: the deadline timer of the agent process, the separate guard process and the
//! agent's end of it (`GuardLink`), and the watchdog device.

use super::*;
use async_trait::async_trait;
use warden_agent::ha::env::{GuardLink, WatchdogDevice, WatchdogFeed};
use warden_agent::state::Shared;
use warden_consensus::types::MemberState;

/// How often the timer re-reads a deadline that may have moved (`fence.rs`).
const TIMER_GRANULARITY_MS: u64 = 100;

/// `fence::spawn_timer`: at the local deadline, the server stops acknowledging writes
/// (PostgreSQL: standby.signal + fast shutdown, `PgFence`; Redis: writes paused, a
/// replica of no one, `RedisFence`). A task of the agent process: stopped with it.
pub(crate) async fn fence_timer(sim: Sim, n: usize, shared: Arc<Shared>) {
    let clock = sim.with(|w| w.nodes[n].clock);
    loop {
        sim.pass(n).await;
        let now = clock.now_std();
        let wait = match shared.deadline.deadline() {
            Some(d) if now >= d => {
                sim.with(|w| w.fence(n, &shared));
                continue;
            }
            Some(d) => {
                let at = clock.global_ms(clock.local_of(d));
                let now_ms = sim.with(|w| w.now());
                at.saturating_sub(now_ms).clamp(1, TIMER_GRANULARITY_MS)
            }
            None => TIMER_GRANULARITY_MS,
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

impl World {
    /// The fencing timer's action.
    pub(crate) fn fence(&mut self, n: usize, shared: &Shared) {
        shared.deadline.clear();
        let what = match self.engine {
            EngineKind::Postgres => {
                let pg = &mut self.nodes[n].pg;
                pg.standby_signal = true;
                let was_running = pg.running;
                pg.stop(true);
                format!("fenced PostgreSQL (was running: {was_running})")
            }
            EngineKind::Redis => format!("fenced Redis: {}", self.redis_fence(n)),
        };
        // Tell peers at once (via /patroni) that we no longer run a primary.
        shared.update(|s| {
            s.is_leader = false;
            s.probe = None;
            s.state = MemberState::Stopping;
        });
        self.stats.fences += 1;
        self.log(
            Some(n),
            format!("fencing timer: lease deadline passed; {what}"),
        );
        self.check();
    }

    /// The fencing timer, if its deadline has passed (SIGCONT may run it first).
    pub(crate) fn fence_if_due(&mut self, n: usize) {
        let Some(shared) = self.nodes[n].proc.as_ref().map(|p| p.shared.clone()) else {
            return;
        };
        if shared
            .deadline
            .deadline()
            .is_some_and(|d| self.node_now(n) >= d)
        {
            self.fence(n, &shared);
        }
    }

    /// A line to the guard (`arm-at <ns> <pid>` or `disarm`); false if it could not be
    /// written (the guard is gone).
    fn feed_guard(&mut self, n: usize, target: Option<(std::time::Instant, i32)>) -> bool {
        let Some(mut g) = self.nodes[n].proc.as_ref().and_then(|p| p.guard) else {
            return false;
        };
        if !self.nodes[n].guards[g].alive {
            let node = &mut self.nodes[n];
            if self.fixes.guard_respawn {
                node.guards.push(GuardProc {
                    alive: true,
                    input_open: true,
                    armed: None,
                });
                g = node.guards.len() - 1;
                node.proc.as_mut().expect("alive").guard = Some(g);
                self.log(Some(n), "the fencing guard was gone; respawned it".into());
            } else {
                node.proc.as_mut().expect("alive").guard = None;
                node.unguarded = true;
                self.log(
                    Some(n),
                    "the fencing guard is gone (it exited); no more guard for this agent".into(),
                );
                return false;
            }
        }
        let clock = self.nodes[n].clock;
        let (running, incarnation) = self.server(n);
        // The guard arms only for a live process (checked by pid and start time), at an
        // absolute reading of the machine's monotonic clock.
        let arm = target
            .filter(|&(_, pid)| running && i64::from(pid) == 100 + incarnation as i64)
            .map(|(at, _)| (clock.global_ms(clock.local_of(at)), incarnation));
        let was_armed = self.nodes[n].guards[g].armed.is_some();
        match arm {
            Some((fire_at, incarnation)) => {
                self.nodes[n].unguarded = false;
                self.next_arm += 1;
                let id = self.next_arm;
                self.nodes[n].guards[g].armed = Some(Arm {
                    id,
                    fire_at,
                    incarnation,
                });
                self.push(
                    fire_at,
                    Ev::Guard {
                        node: n,
                        guard: g,
                        arm: id,
                    },
                );
            }
            None => self.nodes[n].guards[g].armed = None,
        }
        if was_armed != arm.is_some() {
            let msg = match arm {
                Some((at, _)) => format!(
                    "guard armed (fires at {:.3}s unless re-armed)",
                    at as f64 / 1000.0
                ),
                None => "guard disarmed".to_string(),
            };
            self.log(Some(n), msg);
        }
        true
    }

    /// `guard::run`: when its deadline passes without a newer line, kill the postmaster
    /// it was armed for (if that one still runs), then exit.
    pub(crate) fn guard_fires(&mut self, n: usize, g: usize, arm: u64) {
        let now = self.now();
        let node = &mut self.nodes[n];
        let guard = &mut node.guards[g];
        let Some(a) = guard
            .armed
            .filter(|a| a.id == arm && guard.alive && a.fire_at <= now)
        else {
            return;
        };
        // `warden guard` stays, disarmed, for the agent's next arm; with its input
        // closed (the agent is dead) there is nothing more to wait for.
        guard.armed = None;
        let stays = guard.input_open;
        guard.alive = stays;
        let then = if stays { "guard stays" } else { "guard exits" };
        if self.server(n) == (true, a.incarnation) {
            self.kill_server(n);
            self.stats.guard_kills += 1;
            self.log(
                Some(n),
                format!("guard: lease deadline passed without renewal; killed the server; {then}"),
            );
        } else {
            self.log(
                Some(n),
                format!("guard: deadline passed, the server already gone; {then}"),
            );
        }
    }

    /// Opens (arms) or feeds the watchdog device.
    fn arm_watchdog(&mut self, n: usize, timeout: Duration) {
        let clock = self.nodes[n].clock;
        let fires_at = clock.global_ms(clock.local_ns() + timeout.as_nanos() as u64);
        let Some(wd) = self.nodes[n].watchdog.as_mut() else {
            return;
        };
        wd.fires_at = Some(fires_at);
        wd.timeout_ms = timeout.as_millis() as u64;
        wd.gen += 1;
        let gen = wd.gen;
        self.push(fires_at, Ev::WatchdogFires { node: n, gen });
    }

    pub(crate) fn watchdog_fires(&mut self, n: usize, gen: u64) {
        let now = self.now();
        let due = self.nodes[n]
            .watchdog
            .is_some_and(|w| w.gen == gen && w.fires_at.is_some_and(|t| t <= now));
        if !due || !self.nodes[n].machine_up {
            return;
        }
        self.stats.watchdog_resets += 1;
        if !self.nodes[n].frozen && self.nodes[n].proc.is_some() {
            self.stats.watchdog_resets_live += 1;
            if self.failsafe_held(n) {
                self.stats.watchdog_resets_failsafe += 1;
            }
        }
        self.log(Some(n), "WATCHDOG: not fed in time; machine reset".into());
        self.crash_machine(n, false);
        self.nodes[n].boot_gen += 1;
        let gen = self.nodes[n].boot_gen;
        let at = now + self.rng.range(5_000, 30_000);
        self.push(at, Ev::Boot { node: n, gen });
    }

    /// The agent's local deadline is the one its last successful failsafe round gave
    /// it, not a lease renewal's.
    pub(crate) fn failsafe_held(&self, n: usize) -> bool {
        let node = &self.nodes[n];
        let Some(p) = node.proc.as_ref() else {
            return false;
        };
        let Some(d) = p.shared.deadline.deadline() else {
            return false;
        };
        let d = node.clock.local_of(d);
        p.failsafe_deadlines.iter().any(|f| f.abs_diff(d) < 1_000)
    }
}

/// The agent's end of its guard process (`fence::Guard`): one line per feed, the same
/// `disarm` not repeated; a guard found gone is replaced (fix `guard-respawn`, which
/// the daemon has), else nothing more is written.
#[derive(Debug)]
pub(crate) struct SimGuard {
    pub(crate) sim: Sim,
    pub(crate) node: usize,
    pub(crate) last: String,
    pub(crate) gone: bool,
}

#[async_trait]
impl GuardLink for SimGuard {
    async fn feed(&mut self, target: Option<(std::time::Instant, i32)>) {
        let n = self.node;
        let line = match target {
            Some((at, pid)) => {
                let ns = self.sim.with(|w| w.nodes[n].clock.local_of(at));
                format!("arm-at {ns} {pid}")
            }
            None => "disarm".to_string(),
        };
        if (line == "disarm" && self.last == line) || self.gone {
            // Nothing written; the aimed freeze lands at the next call.
            self.sim.with(|w| {
                if std::mem::take(&mut w.nodes[n].aim_after_feed) {
                    w.aimed_pause(n, "after starting as primary");
                }
            });
            return;
        }
        let written = self
            .sim
            .io(n, |w| {
                let written = w.feed_guard(n, target);
                if std::mem::take(&mut w.nodes[n].aim_after_feed) {
                    w.aimed_pause(n, "after starting as primary");
                }
                (written, 0)
            })
            .await;
        if written {
            self.last = line;
        } else {
            self.gone = true;
        }
    }

    async fn stop(self: Box<Self>) {
        let n = self.node;
        self.sim
            .io(n, |w| {
                let g = w.nodes[n].proc.as_ref().and_then(|p| p.guard);
                if let Some(g) = g {
                    w.nodes[n].guards[g].alive = false;
                    w.nodes[n].guards[g].armed = None;
                }
                ((), 0)
            })
            .await;
    }
}

/// The machine's watchdog device, as node `n`'s agent process opens it.
#[derive(Debug)]
pub(crate) struct SimWatchdog {
    pub(crate) sim: Sim,
    pub(crate) node: usize,
    pub(crate) proc_id: u64,
}

impl WatchdogDevice for SimWatchdog {
    fn available(&self) -> Result<(), String> {
        let n = self.node;
        if self.sim.with(|w| w.nodes[n].watchdog.is_some()) {
            Ok(())
        } else {
            Err("/dev/watchdog: no such device".into())
        }
    }

    fn open(&self, timeout: Duration) -> std::io::Result<Box<dyn WatchdogFeed>> {
        self.available()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e))?;
        let n = self.node;
        self.sim.with(|w| w.arm_watchdog(n, timeout));
        Ok(Box::new(SimFeed {
            sim: self.sim.clone(),
            node: n,
            proc_id: self.proc_id,
            timeout,
        }))
    }
}

/// The open device; dropping it writes the magic character, unless the process was
/// killed (the kernel closes the file without it, and the machine resets).
#[derive(Debug)]
struct SimFeed {
    sim: Sim,
    node: usize,
    proc_id: u64,
    timeout: Duration,
}

impl WatchdogFeed for SimFeed {
    fn keepalive(&mut self) -> std::io::Result<()> {
        let (n, timeout) = (self.node, self.timeout);
        self.sim.with(|w| w.arm_watchdog(n, timeout));
        Ok(())
    }
}

impl Drop for SimFeed {
    fn drop(&mut self) {
        let (n, id) = (self.node, self.proc_id);
        self.sim.with(|w| {
            if w.nodes[n].proc.as_ref().is_some_and(|p| p.id == id) {
                if let Some(wd) = w.nodes[n].watchdog.as_mut() {
                    wd.fires_at = None;
                    wd.gen += 1;
                }
            }
        });
    }
}
