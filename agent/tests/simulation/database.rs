//! The engine interface over the PostgreSQL model: `warden_ha::Database` with
//! PostgreSQL's facts, as `agent/pg/src/database.rs` implements it for a real server.
//! Each operation takes effect when it starts and then takes its time.

use super::*;
use warden_agent::ha::observation::Local;
use warden_ha::{Database, RepairOutcome, RoleConfig, StopMode};
use warden_pg::policy::PgLocal;
use world::pair;

/// What went wrong, as text (the loop only displays it).
#[derive(Debug)]
pub(crate) struct SimError(pub(crate) String);

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, SimError> {
    Err(SimError(msg.into()))
}

/// Node `n`'s PostgreSQL as its agent process sees it.
#[derive(Debug)]
pub(crate) struct SimPg {
    pub(crate) sim: Sim,
    pub(crate) node: usize,
    /// The system identifier read once from the control file (process memory).
    pub(crate) known_system_identifier: Option<String>,
}

impl warden_agent::ha::LocalEngine for SimPg {}

impl SimPg {
    /// The member at `host` (`n1`, ...), as `conn_url` names it.
    fn source(host: &str) -> Result<usize, SimError> {
        World::index(host).map_or_else(|| err(format!("unknown host {host}")), Ok)
    }

    fn with<T>(&self, f: impl FnOnce(&mut World, usize) -> T) -> T {
        self.sim.with(|w| f(w, self.node))
    }
}

impl World {
    /// Mostly quick; sometimes a long crash recovery.
    pub(crate) fn startup_ms(&mut self) -> u64 {
        if self.rng.chance(50) {
            self.rng.range(3_000, 12_000)
        } else {
            self.rng.range(200, 2_000)
        }
    }

    /// `pg_promote`: a new timeline forks off where the replica stands.
    fn promote(&mut self, n: usize) -> Result<(), SimError> {
        let now = self.now();
        let pg = &self.nodes[n].pg;
        if !pg.ready(now) || !pg.in_recovery {
            return err("pg_promote failed: not a running standby");
        }
        let (tl, epoch, lsn) = (pg::timeline(&self.epochs, pg) + 1, pg.wal.epoch, pg.wal.lsn);
        if self.epochs.iter().any(|e| e.timeline == tl) {
            // Another history already has this name: PostgreSQL cannot tell them apart.
            self.stats.timeline_reuses += 1;
            self.log(
                Some(n),
                format!("TIMELINE ID REUSED: timeline {tl} exists already"),
            );
        }
        self.epochs.push(Epoch {
            timeline: tl,
            parent: Some(epoch),
            start: lsn,
        });
        let epoch = self.epochs.len() - 1;
        let pg = &mut self.nodes[n].pg;
        pg.wal.epoch = epoch;
        pg.in_recovery = false;
        pg.standby_signal = false;
        pg.control_primary = true;
        pg.upstream = None;
        pg.streaming = false;
        let (lsn, incarnation) = (pg.wal.lsn, pg.incarnation);
        // PostgreSQL requests a checkpoint after the promotion by itself; the loop's
        // CHECKPOINT may come first.
        let at = now + self.rng.range(200, 3_000);
        self.push(
            at,
            Ev::Checkpoint {
                node: n,
                incarnation,
            },
        );
        if self.faults_started {
            self.stats.failovers += 1;
        }
        self.log(Some(n), format!("PROMOTED to timeline {tl} at {lsn}"));
        self.aimed_pause(n, "after promoting");
        Ok(())
    }

    /// PostgreSQL's own checkpoint after a promotion.
    pub(crate) fn background_checkpoint(&mut self, n: usize, incarnation: u64) {
        let tl = pg::timeline(&self.epochs, &self.nodes[n].pg);
        let pg = &mut self.nodes[n].pg;
        if pg.running && pg.incarnation == incarnation && !pg.in_recovery {
            pg.checkpoint_tl = tl;
        }
    }

    /// pg_basebackup from `src` into node `n` (the old data kept aside).
    fn basebackup(&mut self, n: usize, src: usize) -> Result<(), SimError> {
        let now = self.now();
        if !self.net_ok(n, src) || !self.nodes[src].pg.ready(now) {
            return err(format!("pg_basebackup: cannot connect to {}", NAMES[src]));
        }
        let tl = pg::timeline(&self.epochs, &self.nodes[src].pg);
        let (target, source) = pair(&mut self.nodes, n, src);
        let pg = &mut target.pg;
        pg.data = DataState::Initialized;
        pg.wal = source.pg.wal;
        pg.control_primary = !source.pg.in_recovery;
        pg.clean_shutdown = false;
        pg.backup_label = true;
        pg.standby_signal = false;
        pg.conf = None;
        pg.checkpoint_tl = tl;
        self.log(Some(n), format!("cloned from {}", NAMES[src]));
        Ok(())
    }

    /// The local look of `observe`: control file and probe.
    fn observe(&mut self, n: usize, known: &mut Option<String>, repaired: bool) -> Local<PgLocal> {
        let now = self.now();
        let pg = &self.nodes[n].pg;
        let (data, running) = (pg.data, pg.running);
        let mut was_primary = false;
        let mut stopped_timeline = None;
        if data == DataState::Initialized && (known.is_none() || !running) {
            *known = Some(SYSID.to_string());
            was_primary = !pg.backup_label && pg.control_primary;
            if !running && !pg.backup_label {
                stopped_timeline = Some(pg::timeline(&self.epochs, pg));
            }
        } else if data != DataState::Initialized {
            *known = None;
        }
        let probe = pg.ready(now).then(|| pg::probe_of(&self.epochs, pg));
        // The adapter keeps the data's timeline while the server starts (not a fresh
        // copy: its control file names the source's).
        if probe.is_none() && running && data == DataState::Initialized && !pg.backup_label {
            stopped_timeline = Some(pg::timeline(&self.epochs, pg));
        }
        let mut rewound = repaired;
        if let Some(p) = &probe {
            was_primary = !p.in_recovery;
            if was_primary {
                rewound = false;
            }
        }
        Local {
            data,
            system_identifier: known.clone(),
            was_primary,
            running,
            engine: PgLocal {
                probe,
                rewound,
                stopped_timeline,
                use_pg_rewind: false,
            },
        }
    }
}

impl Database for SimPg {
    type Facts = PgLocal;
    type Error = SimError;

    fn data_state(&self) -> DataState {
        self.with(|w, n| w.nodes[n].pg.data)
    }

    fn is_running(&mut self) -> bool {
        self.with(|w, n| w.nodes[n].pg.running)
    }

    fn server_pid(&mut self) -> Option<i32> {
        self.with(|w, n| {
            let pg = &w.nodes[n].pg;
            pg.running.then(|| 100 + pg.incarnation as i32)
        })
    }

    async fn observe(&mut self, repaired: bool, dynamic: &DynamicConfig) -> Local<PgLocal> {
        let n = self.node;
        let mut known = self.known_system_identifier.take();
        let mut local = self
            .sim
            .io(n, |w| (w.observe(n, &mut known, repaired), 5))
            .await;
        self.known_system_identifier = known;
        local.engine.use_pg_rewind = dynamic.postgresql.use_pg_rewind;
        local
    }

    async fn bootstrap(&mut self, _initial: &DynamicConfig) -> Result<(), SimError> {
        let n = self.node;
        // initdb, then the server starts as a primary and the roles are created.
        let took = self
            .sim
            .io(n, |w| {
                w.nodes[n].pg.data = DataState::NoCluster;
                let took = w.rng.range(3_000, 6_000);
                (took, took)
            })
            .await;
        let _ = took;
        self.sim
            .io(n, |w| {
                let now = w.now();
                let pg = &mut w.nodes[n].pg;
                pg.data = DataState::Initialized;
                pg.wal = Wal {
                    epoch: 0,
                    lsn: 0x0100_0000,
                };
                pg.standby_signal = false;
                pg.conf = Some(Conf::Primary);
                pg.start(now, 0, 1);
                w.log(
                    Some(n),
                    "bootstrapped a new cluster (initdb, started as primary)".into(),
                );
                (Ok(()), 0)
            })
            .await
    }

    async fn clone_from(
        &mut self,
        host: &str,
        _port: u16,
        _timeout: Duration,
    ) -> Result<(), SimError> {
        let n = self.node;
        let src = Self::source(host)?;
        let reachable = self
            .sim
            .io(n, |w| {
                // A leftover is kept aside; pg_basebackup starts in an empty directory.
                w.nodes[n].pg.data = DataState::NoCluster;
                if w.net_ok(n, src) {
                    (true, w.rng.range(2_000, 6_000))
                } else {
                    (false, 5_000)
                }
            })
            .await;
        if !reachable {
            return err(format!("pg_basebackup: cannot connect to {host}"));
        }
        // The copy is consistent as of its end.
        self.sim.io(n, |w| (w.basebackup(n, src), 0)).await
    }

    fn configure(
        &mut self,
        role: &RoleConfig,
        _cluster: Option<&warden_consensus::Cluster>,
        _dynamic: &DynamicConfig,
    ) -> Result<bool, SimError> {
        let conf = match role {
            RoleConfig::Primary => Conf::Primary,
            RoleConfig::Replica { source } => {
                Conf::Replica(source.as_ref().and_then(|s| World::index(&s.host)))
            }
        };
        Ok(self.with(|w, n| {
            let pg = &mut w.nodes[n].pg;
            pg.standby_signal = conf != Conf::Primary;
            let changed = pg.conf != Some(conf);
            pg.conf = Some(conf);
            changed
        }))
    }

    fn start(&mut self) -> Result<(), SimError> {
        self.with(|w, n| {
            let pg = &w.nodes[n].pg;
            if pg.running {
                return Ok(());
            }
            if pg.data != DataState::Initialized {
                return err("postgres: no data directory to start on");
            }
            let startup = w.startup_ms();
            let (now, tl) = (w.now(), pg::timeline(&w.epochs, &w.nodes[n].pg));
            let pg = &mut w.nodes[n].pg;
            pg.start(now, startup, tl);
            let primary = !pg.in_recovery;
            w.log(
                Some(n),
                format!(
                    "PostgreSQL started (as {})",
                    if primary { "primary" } else { "replica" }
                ),
            );
            // Frozen right after starting a primary is one of the riskiest moments; the
            // freeze is aimed after the guard feed that follows (`GuardLink::feed`), as a
            // real SIGSTOP is unlikely to land in the microseconds between the two.
            w.nodes[n].aim_after_feed |= primary;
            Ok(())
        })
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), SimError> {
        let n = self.node;
        let deadline = self.sim.with(|w| w.now()) + timeout.as_millis() as u64;
        loop {
            let state = self
                .sim
                .io(n, |w| {
                    let now = w.now();
                    let pg = &w.nodes[n].pg;
                    ((pg.running, pg.ready(now), now), 0)
                })
                .await;
            match state {
                (_, true, _) => return Ok(()),
                (false, _, _) => return err("PostgreSQL exited during start-up"),
                (_, _, now) if now >= deadline => return err("PostgreSQL did not start in time"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn stop(&mut self, mode: StopMode, _timeout: Duration) -> Result<(), SimError> {
        let n = self.node;
        self.sim
            .io(n, |w| {
                let was_running = w.nodes[n].pg.running;
                w.nodes[n].pg.stop(mode == StopMode::Fast);
                if !was_running {
                    return (Ok(()), 1);
                }
                w.log(Some(n), format!("PostgreSQL stopped ({mode:?})"));
                (Ok(()), w.rng.range(200, 1_500))
            })
            .await
    }

    async fn promote(&mut self, _timeout: Duration) -> Result<(), SimError> {
        let n = self.node;
        self.sim
            .io(n, |w| {
                let r = w.promote(n);
                let took = if r.is_ok() { w.rng.range(50, 400) } else { 5 };
                (r, took)
            })
            .await
    }

    async fn reload(&mut self) -> Result<(), SimError> {
        let n = self.node;
        self.sim
            .io(n, |w| {
                let now = w.now();
                let pg = &mut w.nodes[n].pg;
                if !pg.ready(now) {
                    return (err("pg_reload_conf: PostgreSQL does not answer"), 5);
                }
                if pg.in_recovery {
                    if let Some(Conf::Replica(up)) = pg.conf {
                        pg.upstream = up;
                    }
                }
                (Ok(()), w.rng.range(2, 6))
            })
            .await
    }

    async fn repair(
        &mut self,
        host: &str,
        _port: u16,
        _timeout: Duration,
    ) -> Result<RepairOutcome<SimError>, SimError> {
        let n = self.node;
        let src = Self::source(host)?;
        self.sim
            .io(n, |w| (w.rewind(n, src), w.rng.range(300, 3_000)))
            .await
    }

    fn remove_data(&mut self) -> Result<(), SimError> {
        self.with(|w, n| w.nodes[n].pg.data = DataState::Missing);
        self.known_system_identifier = None;
        Ok(())
    }

    fn set_aside(&mut self) -> Result<Option<String>, SimError> {
        Ok(self.with(|w, n| {
            let pg = &mut w.nodes[n].pg;
            (pg.data != DataState::Missing).then(|| {
                pg.data = DataState::Missing;
                "data.failed".to_string()
            })
        }))
    }

    async fn checkpoint(&mut self, _timeout: Duration) -> Result<(), SimError> {
        let n = self.node;
        self.sim
            .io(n, |w| {
                let now = w.now();
                let tl = pg::timeline(&w.epochs, &w.nodes[n].pg);
                let pg = &mut w.nodes[n].pg;
                if !pg.ready(now) {
                    return (err("CHECKPOINT: PostgreSQL does not answer"), 5);
                }
                if !pg.in_recovery {
                    pg.checkpoint_tl = tl;
                }
                (Ok(()), w.rng.range(10, 1_500))
            })
            .await
    }

    async fn shutdown_position(&self) -> Result<u64, SimError> {
        self.with(|w, n| {
            let pg = &w.nodes[n].pg;
            if pg.running || !pg.clean_shutdown {
                return err("the primary did not shut down cleanly");
            }
            Ok(pg.wal.lsn)
        })
    }

    async fn received_by(
        &self,
        host: &str,
        _port: u16,
        _timeout: Duration,
    ) -> Result<u64, SimError> {
        let (n, peer) = (self.node, Self::source(host)?);
        self.with(|w, _| {
            let pg = &w.nodes[peer].pg;
            if !w.net_ok(n, peer) || !pg.ready(w.now()) || !pg.in_recovery {
                return err(format!("{host}: cannot ask how far it received"));
            }
            Ok(pg.wal.lsn)
        })
    }
}

impl World {
    /// `Database::repair`: the source checkpointed since its promotion, no recovery
    /// signal files, then pg_rewind (which fails on a running target, and now and then
    /// for other reasons, e.g. WAL already recycled: the loop then clones).
    fn rewind(&mut self, n: usize, src: usize) -> Result<RepairOutcome<SimError>, SimError> {
        let now = self.now();
        if !self.net_ok(n, src) || !self.nodes[src].pg.ready(now) {
            return err(format!("cannot connect to {}", NAMES[src]));
        }
        let src_tl = pg::timeline(&self.epochs, &self.nodes[src].pg);
        if self.nodes[src].pg.checkpoint_tl != src_tl {
            return err("the leader has not checkpointed since its promotion");
        }
        self.nodes[n].pg.standby_signal = false;
        if self.nodes[n].pg.running || self.rng.chance(30) {
            self.log(Some(n), format!("pg_rewind from {} failed", NAMES[src]));
            return Ok(RepairOutcome::Unrepairable(SimError(
                "pg_rewind failed".into(),
            )));
        }
        let (target, source) = pair(&mut self.nodes, n, src);
        let what = pg::pg_rewind(&self.epochs, &mut target.pg, &source.pg);
        self.log(Some(n), format!("pg_rewind from {}: {what}", NAMES[src]));
        Ok(RepairOutcome::Repaired)
    }
}
