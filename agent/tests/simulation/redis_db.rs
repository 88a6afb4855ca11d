//! The engine interface over the Redis model: `warden_ha::Database` with Redis's facts
//! (`warden_redis::policy::RedisLocal`), as `agent/redis/src/adapter.rs` implements it
//! for a real `redis-server`: the marker file for the identity and the last lineage,
//! `INFO` for the facts, `REPLICAOF`, `CLIENT PAUSE WRITE`, `SHUTDOWN`.

use super::*;
use database::SimError;
use redis::{Marker, Rs};
use warden_agent::ha::observation::Local;
use warden_ha::{Database, RepairOutcome, RoleConfig, StopMode};
use warden_redis::policy::{RedisLocal, ServerRole};

fn err<T>(msg: impl Into<String>) -> Result<T, SimError> {
    Err(SimError(msg.into()))
}

/// Node `n`'s Redis as its agent process sees it (the adapter's process memory: the
/// role last configured and the write pause it set).
#[derive(Debug)]
pub(crate) struct SimRedis {
    pub(crate) sim: Sim,
    pub(crate) node: usize,
    pub(crate) role: RoleConfig,
    /// Global ms until which the agent's own `CLIENT PAUSE WRITE` holds.
    pub(crate) paused_until: Option<u64>,
    /// As the real adapter: the server follows another upstream than configured (the
    /// fence pointed it at no one), so the next `configure` reports a change.
    pub(crate) drifted: bool,
}

impl warden_agent::ha::LocalEngine for SimRedis {}

impl SimRedis {
    pub(crate) fn new(sim: Sim, node: usize) -> Self {
        Self {
            sim,
            node,
            role: RoleConfig::Replica { source: None },
            paused_until: None,
            drifted: false,
        }
    }

    fn source(host: &str) -> Result<usize, SimError> {
        World::index(host).map_or_else(|| err(format!("unknown host {host}")), Ok)
    }

    fn with<T>(&self, f: impl FnOnce(&mut World, usize) -> T) -> T {
        self.sim.with(|w| f(w, self.node))
    }

    fn conf_of(role: &RoleConfig) -> Conf {
        match role {
            RoleConfig::Primary => Conf::Primary,
            RoleConfig::Replica { source } => {
                Conf::Replica(source.as_ref().and_then(|s| World::index(&s.host)))
            }
        }
    }

    /// `write_conf`: remembers the role, writes `redis.conf`; whether the file changed.
    fn write_conf(&mut self, role: &RoleConfig) -> bool {
        self.role = role.clone();
        let conf = Self::conf_of(role);
        self.with(|w, n| {
            let rs = &mut w.nodes[n].rs;
            let changed = rs.conf != Some(conf);
            rs.conf = Some(conf);
            changed
        })
    }

    /// Polls (like `wait_for`/`wait_ready`) until `done` holds of a ready server;
    /// `Err` once the server is gone or `timeout` passes.
    async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Rs) -> bool,
    ) -> Result<(), SimError> {
        let n = self.node;
        let deadline = self.sim.with(|w| w.now()) + timeout.as_millis() as u64;
        loop {
            let state = self
                .sim
                .io(n, |w| {
                    let now = w.now();
                    let rs = &w.nodes[n].rs;
                    ((rs.running, rs.ready(now) && done(rs), now), 1)
                })
                .await;
            match state {
                (_, true, _) => return Ok(()),
                (false, _, _) => return err(format!("redis-server exited ({what})")),
                (_, _, now) if now >= deadline => {
                    return err(format!("{what} did not finish within {timeout:?}"))
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// A command to the local server: `Err` unless it answers.
    async fn command<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut World, usize) -> T,
    ) -> Result<T, SimError> {
        let n = self.node;
        self.sim
            .io(n, |w| {
                if !w.nodes[n].rs.ready(w.now()) {
                    return (err(format!("{what}: the server does not answer")), 2);
                }
                (Ok(f(w, n)), w.rng.range(1, 3))
            })
            .await
    }

    /// `shutdown`: writes paused, the last offset read, `SHUTDOWN [SAVE]` (a server
    /// that does not answer gets SIGTERM); the marker records the clean shutdown's
    /// offset.
    async fn shutdown(&mut self, save: bool) -> Result<(), SimError> {
        let n = self.node;
        let persist = self.sim.with(|w| w.persist);
        self.sim
            .io(n, |w| {
                let now = w.now();
                let rs = &mut w.nodes[n].rs;
                if !rs.running {
                    return ((), 1);
                }
                let last = rs.ready(now).then_some((rs.lin, rs.master));
                if save {
                    rs.disk = Some(rs.lin);
                }
                rs.stop(persist);
                // The adapter writes its marker after every SHUTDOWN (creating one if
                // there was none).
                if rs.dir {
                    let m = rs.marker.get_or_insert_with(Marker::default);
                    m.shutdown_offset = None;
                    if let Some((lin, master)) = last {
                        m.last = Some(lin.lineage());
                        m.last_role_master = master;
                        m.shutdown_offset = Some(lin.offset);
                    }
                }
                w.log(Some(n), format!("Redis shut down (save: {save})"));
                ((), w.rng.range(50, 600))
            })
            .await;
        self.paused_until = None;
        Ok(())
    }

    /// `observe`'s look: `INFO`, the marker (updated when the ids or role moved).
    fn look(w: &mut World, n: usize, paused: bool) -> Local<RedisLocal> {
        let now = w.now();
        let rs = &mut w.nodes[n].rs;
        let data = rs.data_state();
        let running = rs.running;
        let replication = rs.ready(now).then(|| rs.info(|u| NAMES[u].to_string()));
        if let (Some(r), DataState::Initialized, Some(m)) = (&replication, data, rs.marker.as_mut())
        {
            let master = r.role == ServerRole::Master;
            let lineage = r.lineage();
            let moved = m.last.as_ref().map(|l| (&l.replid, &l.replid2))
                != Some((&lineage.replid, &lineage.replid2));
            if moved || m.last_role_master != master {
                m.last = Some(lineage);
                m.last_role_master = master;
            }
        }
        let marker = rs.marker.clone().unwrap_or_default();
        let was_primary = match &replication {
            Some(r) => r.role == ServerRole::Master,
            None => marker.last_role_master,
        };
        Local {
            data,
            system_identifier: (data == DataState::Initialized)
                .then(|| marker.cluster.clone())
                .flatten(),
            was_primary,
            running,
            engine: RedisLocal {
                last_known: if replication.is_none() {
                    marker.last
                } else {
                    None
                },
                replication,
                writes_paused: paused,
            },
        }
    }
}

impl Database for SimRedis {
    type Facts = RedisLocal;
    type Error = SimError;

    fn data_state(&self) -> DataState {
        self.with(|w, n| w.nodes[n].rs.data_state())
    }

    fn is_running(&mut self) -> bool {
        self.with(|w, n| w.nodes[n].rs.running)
    }

    fn server_pid(&mut self) -> Option<i32> {
        self.with(|w, n| {
            let rs = &w.nodes[n].rs;
            rs.running.then(|| 100 + rs.incarnation as i32)
        })
    }

    async fn observe(&mut self, _repaired: bool, _dynamic: &DynamicConfig) -> Local<RedisLocal> {
        let n = self.node;
        let until = self.paused_until;
        let local = self
            .sim
            .io(n, |w| {
                let paused = until.is_some_and(|t| t > w.now());
                (Self::look(w, n, paused), 3)
            })
            .await;
        if let (Some(r), RoleConfig::Replica { source }) = (&local.engine.replication, &self.role) {
            let want = source
                .as_ref()
                .map_or(("127.0.0.1".to_string(), 0), |s| (s.host.clone(), s.port));
            if r.role == ServerRole::Replica && r.master.as_ref() != Some(&want) {
                self.drifted = true;
            }
        }
        local
    }

    async fn bootstrap(&mut self, _initial: &DynamicConfig) -> Result<(), SimError> {
        if Database::data_state(self) == DataState::Initialized {
            return err("the data directory already holds a Redis of a cluster");
        }
        self.with(|w, n| w.nodes[n].rs.dir = true);
        self.write_conf(&RoleConfig::Primary);
        Database::start(self)?;
        Database::wait_ready(self, Duration::from_secs(60)).await?;
        let n = self.node;
        self.sim
            .io(n, |w| {
                let rs = &mut w.nodes[n].rs;
                if !rs.master {
                    return (err("the bootstrapped server does not run as a primary"), 1);
                }
                rs.marker = Some(Marker {
                    cluster: Some(SYSID.to_string()),
                    last_role_master: true,
                    ..Marker::default()
                });
                w.log(
                    Some(n),
                    "bootstrapped a new Redis (started as primary)".into(),
                );
                (Ok(()), 1)
            })
            .await
    }

    async fn clone_from(
        &mut self,
        host: &str,
        _port: u16,
        timeout: Duration,
    ) -> Result<(), SimError> {
        let src = Self::source(host)?;
        if self.is_running() {
            return err("cannot copy into the data of a running server");
        }
        self.with(|w, n| {
            let rs = &mut w.nodes[n].rs;
            // A leftover is moved aside; the copy starts in a new directory.
            rs.marker = None;
            rs.disk = None;
            rs.dir = true;
        });
        let role = RoleConfig::Replica {
            source: Some(warden_ha::Source {
                member: NAMES[src].into(),
                host: host.into(),
                port: 6379,
            }),
        };
        self.write_conf(&role);
        Database::start(self)?;
        let copied = self
            .wait_until("copying from the primary", timeout, |rs| {
                !rs.master && rs.link_up
            })
            .await;
        if let Err(e) = copied {
            let _ = Database::stop(self, StopMode::Immediate, Duration::from_secs(5)).await;
            return Err(e);
        }
        self.with(|w, n| {
            let rs = &mut w.nodes[n].rs;
            rs.marker = Some(Marker {
                last: Some(rs.lin.lineage()),
                ..Marker::default()
            });
            w.log(Some(n), format!("copied from {}", NAMES[src]));
        });
        self.shutdown(true).await
    }

    fn configure(
        &mut self,
        role: &RoleConfig,
        cluster: Option<&warden_consensus::Cluster>,
        _dynamic: &DynamicConfig,
    ) -> Result<bool, SimError> {
        let initialize = cluster
            .and_then(|c| c.initialize.clone())
            .filter(|i| !i.is_empty());
        if let (RoleConfig::Replica { source: Some(_) }, Some(id)) = (role, initialize) {
            self.with(|w, n| {
                if let Some(m) = w.nodes[n]
                    .rs
                    .marker
                    .as_mut()
                    .filter(|m| m.cluster.is_none())
                {
                    m.cluster = Some(id);
                }
            });
        }
        let changed_role = *role != self.role;
        let changed_file = self.write_conf(role);
        let drifted = std::mem::take(&mut self.drifted);
        Ok(changed_role || changed_file || drifted)
    }

    fn start(&mut self) -> Result<(), SimError> {
        if self.is_running() {
            return Ok(());
        }
        if !self.with(|w, n| w.nodes[n].rs.dir) {
            return err("redis-server: no data directory to start in");
        }
        if self.with(|w, n| w.nodes[n].rs.conf.is_none()) {
            let role = self.role.clone();
            self.write_conf(&role);
        }
        self.paused_until = None;
        self.with(|w, n| {
            let startup = w.startup_ms();
            let (now, id) = (w.now(), w.new_replid());
            let rs = &mut w.nodes[n].rs;
            if let Some(m) = rs.marker.as_mut() {
                m.shutdown_offset = None;
            }
            rs.start(now, startup, id);
            let master = rs.master;
            w.log(
                Some(n),
                format!(
                    "Redis started (as {})",
                    if master { "master" } else { "replica" }
                ),
            );
            w.nodes[n].aim_after_feed |= master;
            Ok(())
        })
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), SimError> {
        self.wait_until("waiting for redis-server", timeout, |_| true)
            .await
    }

    async fn stop(&mut self, mode: StopMode, _timeout: Duration) -> Result<(), SimError> {
        match mode {
            StopMode::Fast => self.shutdown(false).await,
            StopMode::Immediate => {
                let n = self.node;
                let persist = self.sim.with(|w| w.persist);
                self.sim
                    .io(n, |w| {
                        let rs = &mut w.nodes[n].rs;
                        let was = rs.running;
                        rs.stop(persist);
                        if let Some(m) = rs.marker.as_mut() {
                            m.shutdown_offset = None;
                        }
                        if was {
                            w.log(Some(n), "Redis killed (SIGKILL)".into());
                        }
                        ((), 1)
                    })
                    .await;
                self.paused_until = None;
                Ok(())
            }
        }
    }

    async fn promote(&mut self, timeout: Duration) -> Result<(), SimError> {
        self.command("REPLICAOF NO ONE", |w, n| {
            let id = w.new_replid();
            if w.nodes[n].rs.promote(id) {
                if w.faults_started {
                    w.stats.failovers += 1;
                }
                let l = w.nodes[n].rs.lin;
                w.log(
                    Some(n),
                    format!(
                        "PROMOTED (REPLICAOF NO ONE): replid #{} at offset {}",
                        l.id, l.offset
                    ),
                );
                w.aimed_pause(n, "after promoting");
            }
        })
        .await?;
        self.write_conf(&RoleConfig::Primary);
        self.wait_until("the promotion", timeout, |rs| rs.master)
            .await
    }

    async fn reload(&mut self) -> Result<(), SimError> {
        let up = match &self.role {
            RoleConfig::Primary => None,
            RoleConfig::Replica { source } => {
                Some(source.as_ref().and_then(|s| World::index(&s.host)))
            }
        };
        // CONFIG SET of the parameters: fails when the server does not answer.
        self.command("CONFIG SET", |_, _| ()).await?;
        let Some(up) = up else { return Ok(()) };
        self.command("REPLICAOF", |w, n| {
            let rs = &mut w.nodes[n].rs;
            if rs.master || rs.upstream != up {
                let was_master = rs.master;
                rs.follow(up);
                w.log(
                    Some(n),
                    format!(
                        "REPLICAOF {}{}",
                        up.map_or("127.0.0.1 0 (no one)", |u| NAMES[u]),
                        if was_master { " (was master)" } else { "" }
                    ),
                );
            }
        })
        .await
    }

    async fn repair(
        &mut self,
        host: &str,
        _port: u16,
        _timeout: Duration,
    ) -> Result<RepairOutcome<SimError>, SimError> {
        if self.is_running() {
            return err("repair needs a stopped server");
        }
        Self::source(host)?;
        self.write_conf(&RoleConfig::Replica {
            source: Some(warden_ha::Source {
                member: String::new(),
                host: host.into(),
                port: 6379,
            }),
        });
        Ok(RepairOutcome::Repaired)
    }

    fn remove_data(&mut self) -> Result<(), SimError> {
        if self.is_running() {
            return err("cannot remove the data of a running server");
        }
        self.with(|w, n| {
            let rs = &mut w.nodes[n].rs;
            rs.dir = false;
            rs.marker = None;
            rs.disk = None;
            rs.conf = None;
        });
        Ok(())
    }

    fn set_aside(&mut self) -> Result<Option<String>, SimError> {
        Ok(self.with(|w, n| {
            let rs = &mut w.nodes[n].rs;
            rs.dir.then(|| {
                rs.dir = false;
                rs.marker = None;
                rs.disk = None;
                rs.conf = None;
                "data.failed".to_string()
            })
        }))
    }

    async fn pause_for_handover(&mut self, bound: Duration) -> Result<Option<u64>, SimError> {
        let ms = bound.as_millis() as u64;
        let (master, offset, until) = self
            .command("CLIENT PAUSE WRITE", |w, n| {
                let until = w.now() + ms;
                let rs = &mut w.nodes[n].rs;
                rs.paused_until = Some(until);
                (rs.master, rs.lin.offset, until)
            })
            .await?;
        self.paused_until = Some(until);
        if !master {
            let _ = self.resume_writes(false).await;
            return err("a switchover needs this server to run as the primary");
        }
        Ok(Some(offset.saturating_sub(1)))
    }

    async fn resume_writes(&mut self, _disconnect: bool) -> Result<(), SimError> {
        self.command("CLIENT UNPAUSE", |w, n| w.nodes[n].rs.paused_until = None)
            .await?;
        self.paused_until = None;
        Ok(())
    }

    async fn shutdown_position(&self) -> Result<u64, SimError> {
        self.with(|w, n| {
            w.nodes[n]
                .rs
                .marker
                .as_ref()
                .and_then(|m| m.shutdown_offset)
                .map_or_else(
                    || err("the server did not shut down cleanly since it last ran"),
                    Ok,
                )
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
            let rs = &w.nodes[peer].rs;
            if !w.net_ok(n, peer) || !rs.ready(w.now()) {
                return err(format!("{host}: INFO did not answer"));
            }
            if rs.master {
                return err(format!("{host} runs as a primary"));
            }
            Ok(rs.lin.offset)
        })
    }
}
