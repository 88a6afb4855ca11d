//! Fencing: the deadline timer inside the agent and the separate guard process.

use super::*;
use warden_consensus::types::MemberState;

impl World {
    /// `fence::spawn_timer`: at the local deadline, PostgreSQL goes read-only
    /// (standby.signal + fast shutdown). Part of the agent process: frozen with it.
    pub(crate) fn fence_timer(&mut self, n: usize) {
        let now_i = self.instant(self.local_now(n));
        let node = &mut self.nodes[n];
        let a = node.agent.as_mut().expect("the agent is alive");
        let Some(d) = a.deadline.deadline() else {
            return;
        };
        if now_i < d {
            return;
        }
        a.deadline.clear();
        // Tell peers at once (via /patroni) that we no longer run a primary.
        a.shown.is_leader = false;
        a.shown.probe = None;
        a.shown.state = MemberState::Stopping;
        node.pg.standby_signal = true;
        let was_running = node.pg.running;
        node.pg.stop();
        self.stats.fences += 1;
        self.log(
            Some(n),
            format!("fencing timer: lease deadline passed; fenced PostgreSQL (was running: {was_running})"),
        );
    }

    /// `feed_guard`: arm the guard at deadline + margin/2 while we lead, else disarm.
    pub(crate) fn feed_guard(&mut self, n: usize) {
        let ppm = self.nodes[n].ppm;
        let lnow = self.local_now(n);
        let now_i = self.instant(lnow);
        let grace = safety_margin(TTL) / 2;
        let node = &mut self.nodes[n];
        let a = node.agent.as_mut().expect("the agent is alive");
        let target = match (a.holds_leader, a.deadline.deadline(), node.pg.running) {
            (true, Some(d), true) => {
                // The guard gets whole milliseconds, as on its command line.
                let fire_in = (d.saturating_duration_since(now_i) + grace).as_millis() as u64;
                Some((global_ms(ppm, lnow + fire_in), node.pg.incarnation))
            }
            _ => None,
        };
        let Some(mut g) = a.guard else { return };
        if !node.guards[g].alive {
            if self.fixes.guard_respawn {
                node.guards.push(GuardProc {
                    alive: true,
                    input_open: true,
                    armed: None,
                });
                g = node.guards.len() - 1;
                a.guard = Some(g);
            } else {
                a.guard = None;
                self.log(
                    Some(n),
                    "the fencing guard is gone (it exited); no more guard for this agent".into(),
                );
                return;
            }
        }
        let guard = &mut node.guards[g];
        let was_armed = guard.armed.is_some();
        if was_armed != target.is_some() {
            let msg = match target {
                Some((at, _)) => format!(
                    "guard armed (fires at {:.3}s unless re-armed)",
                    at as f64 / 1000.0
                ),
                None => "guard disarmed".to_string(),
            };
            self.log(Some(n), msg);
        }
        let guard = &mut self.nodes[n].guards[g];
        match target {
            Some((fire_at, incarnation)) => {
                self.next_arm += 1;
                let id = self.next_arm;
                guard.armed = Some(Arm {
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
            None => guard.armed = None,
        }
    }

    /// `guard::run`: when its deadline passes without a newer line, kill the postmaster
    /// it was armed for (if that one still runs), then exit.
    pub(crate) fn guard_fires(&mut self, n: usize, g: usize, arm: u64) {
        let node = &mut self.nodes[n];
        let guard = &mut node.guards[g];
        let Some(a) = guard
            .armed
            .filter(|a| a.id == arm && guard.alive && a.fire_at <= self.now)
        else {
            return;
        };
        guard.alive = false;
        guard.armed = None;
        if node.pg.running && node.pg.incarnation == a.incarnation {
            node.pg.stop();
            self.stats.guard_kills += 1;
            self.log(
                Some(n),
                "guard: lease deadline passed without renewal; killed PostgreSQL; guard exits"
                    .into(),
            );
        } else {
            self.log(
                Some(n),
                "guard: deadline passed, PostgreSQL already gone; guard exits".into(),
            );
        }
    }
}
