//! The executor (`execute.rs`): each action's effect on the model, and what the
//! agent publishes.

use super::*;

impl World {
    pub(crate) fn execute(&mut self, n: usize, action: &Action, obs: &Observation) -> Outcome {
        let me = NAMES[n];
        let cluster = obs.cluster.as_ref();
        let leader_only = matches!(
            action,
            Action::Promote { .. } | Action::WriteStatus | Action::Start(StartAs::Primary)
        );
        let now_i = self.instant(self.local_now(n));
        if self.fixes.leader_actions_need_lease
            && leader_only
            && !self.agent(n).deadline.valid_at(now_i)
        {
            return Outcome::Failed(0, "our local lease deadline has passed".into());
        }
        // `Member::conn_host_port` of the named member, as the executor resolves it.
        let member = |name: &str| {
            cluster
                .and_then(|c| c.member(name))
                .and_then(warden_consensus::types::Member::conn_host_port)
                .and_then(|_| Self::index(name))
        };
        match action {
            // Synchronous mode is not modelled: it is off in the simulation, where the
            // executor's step is a no-op.
            Action::SyncReplication => Outcome::Done(0),
            Action::HandOver { .. }
            | Action::ClearFailover
            | Action::Restart { .. }
            | Action::Reinitialize { .. } => {
                // Only operator requests lead to these, and the simulation makes none.
                self.failure = Some(format!(
                    "{me} chose an operator action unprompted: {action:?}"
                ));
                Outcome::Done(0)
            }
            Action::Fatal(msg) => {
                self.failure = Some(format!("{me} stopped with a fatal error: {msg}"));
                self.nodes[n].agent = None;
                Outcome::Done(0)
            }
            Action::RaceInitialize => {
                let key = self.store.keys.initialize();
                match self.call(n, |s, _| s.create(&key, Vec::new(), None)) {
                    (Some(Ok(true)), t) => {
                        self.log(Some(n), "won the bootstrap race".into());
                        Outcome::Done(t)
                    }
                    (Some(_), t) => {
                        Outcome::Failed(t, "another member won the bootstrap race".into())
                    }
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
            Action::Bootstrap => {
                self.agent(n).state = "initializing new cluster";
                self.publish_state(n);
                self.keep_lease_during(n);
                let now = self.now;
                let pg = &mut self.nodes[n].pg;
                pg.data = DataState::Initialized;
                pg.wal = Wal {
                    epoch: 0,
                    lsn: 0x0100_0000,
                };
                pg.standby_signal = false;
                pg.start(now, 0, None, 1);
                let a = self.agent(n);
                a.bootstrapped_here = true;
                a.state = "running";
                self.log(
                    Some(n),
                    "bootstrapped a new cluster (initdb, started as primary)".into(),
                );
                Outcome::Done(self.rng.range(3_000, 6_000))
            }
            Action::SetInitialize { system_identifier } => {
                let key = self.store.keys.initialize();
                let sysid = system_identifier.as_bytes().to_vec();
                let fresh = cluster.and_then(|c| c.initialize.as_deref()).is_none();
                let (r, t1) = self.call(n, |s, _| {
                    if fresh {
                        s.create(&key, sysid, None)
                    } else {
                        s.put_if_value(&key, b"", sysid, None)
                    }
                });
                if r != Some(Ok(true)) {
                    return Outcome::Failed(t1, "the initialize key changed under us".into());
                }
                let cfg_key = self.store.keys.config();
                let body = serde_json::to_vec(&self.bootstrap_cfg.to_json()).expect("json");
                let (r, t2) = self.call(n, |s, _| s.create(&cfg_key, body, None));
                if r.is_none() {
                    return Outcome::Failed(t1 + t2, "etcd unreachable".into());
                }
                self.agent(n).bootstrapped_here = false;
                Outcome::Done(t1 + t2)
            }
            Action::Clone { from } => {
                let Some(src) = member(from) else {
                    return Outcome::Failed(1, format!("member {from} has no usable conn_url"));
                };
                self.agent(n).state = "creating replica";
                self.publish_state(n);
                self.keep_lease_during(n);
                let took = self.rng.range(2_000, 6_000);
                match self.clone_from(n, src) {
                    Ok(()) => Outcome::Done(took),
                    Err(why) => Outcome::Failed(took, why),
                }
            }
            Action::AcquireLeader => {
                let Some(lease) = self.agent(n).lease else {
                    return Outcome::Failed(0, "no lease".into());
                };
                let key = self.store.keys.leader();
                let history = self.store.keys.history();
                let seen = obs.cluster.as_ref().map_or(0, |c| c.history_revision);
                match self.call(n, |s, _| {
                    s.create_unless_changed(
                        &key,
                        me.as_bytes().to_vec(),
                        Some(lease),
                        (&history, seen),
                    )
                }) {
                    (Some(Ok(true)), t) => {
                        self.leadership_confirmed(n);
                        self.log(Some(n), format!("acquired the leader key (lease {lease})"));
                        Outcome::Done(t)
                    }
                    (Some(Ok(false)), t) => Outcome::Failed(
                        t,
                        "another member took the leader key first, or /history changed since we looked"
                            .into(),
                    ),
                    (Some(Err(e)), t) => Outcome::Failed(t, format!("{e:?}")),
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
            Action::RenewLeader => {
                let Some(lease) = self.agent(n).lease else {
                    return Outcome::Failed(0, "no lease".into());
                };
                let key = self.store.keys.leader();
                let name = me.as_bytes();
                match self.call(n, |s, _| {
                    s.put_if_value(&key, name, name.to_vec(), Some(lease))
                }) {
                    (Some(Ok(true)), t) => {
                        self.leadership_confirmed(n);
                        Outcome::Done(t)
                    }
                    (Some(Ok(false)), t) => {
                        let a = self.agent(n);
                        a.holds_leader = false;
                        a.deadline.clear();
                        Outcome::Failed(t, "the leader key is no longer ours".into())
                    }
                    (Some(Err(e)), t) => Outcome::Failed(t, format!("{e:?}")),
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
            Action::Start(start_as) => {
                // write_config: standby.signal exactly when starting as a replica.
                let (standby, upstream) = match start_as {
                    StartAs::Primary => (false, None),
                    StartAs::Replica { upstream } => (true, upstream.as_deref().and_then(member)),
                };
                let startup = self.startup_ms();
                let tl = timeline(&self.epochs, &self.nodes[n].pg);
                let now = self.now;
                let pg = &mut self.nodes[n].pg;
                let was_running = pg.running;
                pg.standby_signal = standby;
                pg.start(now, startup, upstream, tl);
                self.agent(n).state = "starting";
                if !was_running {
                    self.log(Some(n), format!("PostgreSQL started ({start_as:?})"));
                }
                Outcome::Done(self.rng.range(5, 20))
            }
            Action::Promote { reason } => self.promote(n, reason, obs),
            Action::Demote { upstream } => {
                let a = self.agent(n);
                a.holds_leader = false;
                a.deadline.clear();
                a.state = "stopped";
                let startup = self.startup_ms();
                let tl = timeline(&self.epochs, &self.nodes[n].pg);
                let now = self.now;
                let pg = &mut self.nodes[n].pg;
                pg.stop();
                if upstream.is_none() {
                    pg.standby_signal = true;
                    pg.start(now, startup, None, tl);
                    self.agent(n).state = "starting";
                }
                self.log(
                    Some(n),
                    format!("demoted: PostgreSQL stopped (upstream {upstream:?})"),
                );
                Outcome::Done(self.rng.range(200, 1_500))
            }
            Action::FailsafeHold => {
                if let Some(started) = self.agent(n).failsafe_round.take() {
                    self.set_deadline(n, started);
                    self.agent(n).failsafe_held = true;
                    self.stats.failsafe_holds += 1;
                }
                Outcome::Done(0)
            }
            Action::ReleaseLeader => {
                let a = self.agent(n);
                a.holds_leader = false;
                a.deadline.clear();
                let key = self.store.keys.leader();
                match self.call(n, |s, _| s.delete_if_value(&key, me.as_bytes())) {
                    (Some(_), t) => {
                        self.log(Some(n), "released the leader key".into());
                        Outcome::Done(t)
                    }
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
            Action::Repair { from } => {
                let Some(src) = member(from) else {
                    return Outcome::Failed(1, format!("member {from} has no usable conn_url"));
                };
                if !self.net_ok(n, src) || !self.nodes[src].pg.ready(self.now) {
                    return Outcome::Failed(3_000, format!("cannot connect to {from}"));
                }
                let src_tl = timeline(&self.epochs, &self.nodes[src].pg);
                if self.nodes[src].pg.checkpoint_tl != src_tl {
                    return Outcome::Failed(
                        5,
                        "the leader has not checkpointed since its promotion".into(),
                    );
                }
                self.nodes[n].pg.standby_signal = false;
                let took = self.rng.range(300, 3_000);
                // pg_rewind itself sometimes fails (e.g. WAL already recycled): then the
                // executor re-clones.
                let result = if self.nodes[n].pg.running || self.rng.chance(30) {
                    self.log(
                        Some(n),
                        format!("pg_rewind from {from} failed; cloning afresh"),
                    );
                    self.clone_from(n, src)
                } else {
                    let (target, source) = pair(&mut self.nodes, n, src);
                    let what = pg_rewind(&self.epochs, &mut target.pg, &source.pg);
                    self.log(Some(n), format!("pg_rewind from {from}: {what}"));
                    Ok(())
                };
                match result {
                    Ok(()) => {
                        self.agent(n).rewound = true;
                        Outcome::Done(took)
                    }
                    Err(why) => Outcome::Failed(took, why),
                }
            }
            Action::Follow { leader } => {
                let up = member(leader);
                let pg = &mut self.nodes[n].pg;
                pg.standby_signal = true;
                if pg.upstream != up {
                    if !pg.running {
                        return Outcome::Failed(
                            5,
                            "reload failed: PostgreSQL is not running".into(),
                        );
                    }
                    pg.upstream = up;
                }
                Outcome::Done(self.rng.range(2, 6))
            }
            Action::ConfigurePrimary => {
                let pg = &mut self.nodes[n].pg;
                pg.standby_signal = false;
                pg.upstream = None;
                Outcome::Done(2)
            }
            Action::Retain { .. } => {
                if self.nodes[n].pg.ready(self.now) {
                    Outcome::Done(self.rng.range(2, 6))
                } else {
                    Outcome::Failed(2, "cannot create slots: PostgreSQL does not answer".into())
                }
            }
            Action::WriteStatus => {
                let Some(optime) = obs.local.engine.probe.as_ref().and_then(|p| p.wal_position)
                else {
                    return Outcome::Done(0);
                };
                let key = self.store.keys.status();
                let body = serde_json::to_vec(&Status {
                    optime: Some(optime),
                    ..Status::default()
                })
                .expect("json");
                match self.call(n, |s, _| s.put(&key, body, None)) {
                    (Some(_), t) => match self.write_failsafe(n, cluster) {
                        Ok(t2) => Outcome::Done(t + t2),
                        Err(t2) => Outcome::Failed(t + t2, "etcd unreachable".into()),
                    },
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
        }
    }

    /// `write_failsafe`: with failsafe mode on, `/failsafe` lists every member's REST API.
    pub(crate) fn write_failsafe(
        &mut self,
        n: usize,
        cluster: Option<&Cluster>,
    ) -> Result<u64, u64> {
        let Some(c) = cluster else { return Ok(0) };
        let mode = c
            .config
            .as_ref()
            .map_or(self.bootstrap_cfg.failsafe_mode, |c| c.value.failsafe_mode);
        let key = self.store.keys.failsafe();
        if !mode {
            if c.failsafe.is_none() {
                return Ok(0);
            }
            return match self.call(n, |s, _| s.remove(&key)) {
                (Some(_), t) => Ok(t),
                (None, t) => Err(t),
            };
        }
        let mut wanted: BTreeMap<String, String> = c
            .members
            .iter()
            .map(|(name, m)| (name.clone(), m.value.api_url.clone()))
            .collect();
        wanted.insert(
            NAMES[n].to_string(),
            format!("http://{}:8008/patroni", NAMES[n]),
        );
        if c.failsafe.as_ref() == Some(&wanted) {
            return Ok(0);
        }
        let body = serde_json::to_vec(&wanted).expect("json");
        match self.call(n, |s, _| s.put(&key, body, None)) {
            (Some(_), t) => {
                self.log(
                    Some(n),
                    format!("wrote /failsafe: {:?}", wanted.keys().collect::<Vec<_>>()),
                );
                self.agent(n).failsafe_known = Some(wanted);
                Ok(t)
            }
            (None, t) => Err(t),
        }
    }

    pub(crate) fn startup_ms(&mut self) -> u64 {
        // Mostly quick; sometimes a long crash recovery.
        if self.rng.chance(50) {
            self.rng.range(3_000, 12_000)
        } else {
            self.rng.range(200, 2_000)
        }
    }

    pub(crate) fn promote(&mut self, n: usize, reason: &str, obs: &Observation) -> Outcome {
        let probe = obs.local.engine.probe.as_ref();
        let old_timeline = probe.and_then(|p| p.timeline).unwrap_or(1);
        let lsn = probe
            .and_then(|p| p.replay_lsn.or(p.wal_position))
            .unwrap_or(0);
        let now = self.now;
        let pg = &self.nodes[n].pg;
        if !pg.ready(now) || !pg.in_recovery {
            return Outcome::Failed(5, "pg_promote failed: not a running standby".into());
        }
        let tl = timeline(&self.epochs, pg) + 1;
        self.epochs.push(Epoch {
            timeline: tl,
            parent: Some(pg.wal.epoch),
            start: pg.wal.lsn,
        });
        let epoch = self.epochs.len() - 1;
        let pg = &mut self.nodes[n].pg;
        pg.wal.epoch = epoch;
        pg.in_recovery = false;
        pg.standby_signal = false;
        pg.control_primary = true;
        pg.upstream = None;
        pg.streaming = false;
        // The CHECKPOINT right after promotion.
        pg.checkpoint_tl = tl;
        if self.faults_started {
            self.stats.failovers += 1;
        }
        self.log(
            Some(n),
            format!("PROMOTED to timeline {tl} at {lsn} ({reason})"),
        );
        let mut history = obs
            .cluster
            .as_ref()
            .map(|c| c.history.clone())
            .unwrap_or_default();
        history.push(HistoryEntry {
            timeline: old_timeline,
            lsn,
            reason: reason.to_string(),
            timestamp: Some(format!("{now}ms")),
            new_leader: Some(NAMES[n].to_string()),
        });
        let key = self.store.keys.history();
        let body = serde_json::to_vec(&history).expect("json");
        let (_, t) = self.call(n, |s, _| s.put(&key, body, None));
        Outcome::Done(self.rng.range(50, 400) + self.rng.range(10, 1_500) + t)
    }

    /// pg_basebackup from `src` (also the executor's fallback when pg_rewind fails).
    pub(crate) fn clone_from(&mut self, n: usize, src: usize) -> Result<(), String> {
        let now = self.now;
        if !self.net_ok(n, src) || !self.nodes[src].pg.ready(now) {
            self.nodes[n].pg.data = DataState::NoCluster;
            self.agent(n).state = "stopped";
            return Err(format!("clone from {} failed: cannot connect", NAMES[src]));
        }
        let tl = timeline(&self.epochs, &self.nodes[src].pg);
        let (target, source) = pair(&mut self.nodes, n, src);
        let pg = &mut target.pg;
        pg.data = DataState::Initialized;
        pg.wal = source.pg.wal;
        pg.control_primary = !source.pg.in_recovery;
        pg.backup_label = true;
        pg.standby_signal = false;
        pg.checkpoint_tl = tl;
        let a = self.agent(n);
        a.rewound = true;
        a.state = "stopped";
        self.log(Some(n), format!("cloned from {}", NAMES[src]));
        Ok(())
    }

    /// `keep_lease_during`: renew the lease every loop_wait while a long job runs.
    pub(crate) fn keep_lease_during(&mut self, n: usize) {
        self.agent(n).keep_lease = Some(self.now);
        self.background_keepalive(n);
    }

    pub(crate) fn background_keepalive(&mut self, n: usize) {
        let now = self.now;
        let a = self.agent(n);
        a.keep_lease = Some(now);
        if let Some(id) = a.lease {
            let _ = self.call(n, |s, now| s.keepalive(now, id));
        }
    }

    pub(crate) fn leadership_confirmed(&mut self, n: usize) {
        let a = self.agent(n);
        a.holds_leader = true;
        a.failsafe_held = false;
        self.feed_watchdog(n);
        if let Some(started) = self.agent(n).renewed_at {
            self.set_deadline(n, started);
        }
    }

    /// `LeaseDeadline::renewed` from a request that started at `started` (node clock),
    /// and the fencing timer's wake-up for it.
    pub(crate) fn set_deadline(&mut self, n: usize, started: u64) {
        let ppm = self.nodes[n].ppm;
        let a = self.nodes[n].agent.as_mut().expect("the agent is alive");
        a.deadline
            .renewed(self.base + Duration::from_millis(started), TTL);
        let d = a.deadline.deadline().expect("just renewed");
        let local = (d - self.base).as_nanos().div_ceil(1_000_000) as u64;
        self.push(global_ms(ppm, local), Ev::FenceTimer { node: n });
    }

    /// `feed_watchdog`: open (arm) the device the first time we lead, feed it after.
    pub(crate) fn feed_watchdog(&mut self, n: usize) {
        let ppm = self.nodes[n].ppm;
        let lnow = self.local_now(n);
        let timeout = TTL
            .saturating_sub(WATCHDOG_MARGIN)
            .max(Duration::from_secs(1));
        let fires_at = global_ms(ppm, lnow + timeout.as_millis() as u64);
        let node = &mut self.nodes[n];
        let Some(wd) = node.watchdog.as_mut() else {
            return; // automatic mode without a device: lead without one
        };
        wd.fires_at = Some(fires_at);
        wd.gen += 1;
        let gen = wd.gen;
        node.agent
            .as_mut()
            .expect("the agent is alive")
            .watchdog_open = true;
        self.push(fires_at, Ev::WatchdogFires { node: n, gen });
    }

    /// Dropping the `Watchdog`: the magic close disarms it.
    pub(crate) fn close_watchdog(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let a = node.agent.as_mut().expect("the agent is alive");
        if std::mem::take(&mut a.watchdog_open) {
            if let Some(wd) = node.watchdog.as_mut() {
                wd.fires_at = None;
                wd.gen += 1;
            }
        }
    }

    /// `publish_state`: the member key before a long job.
    pub(crate) fn publish_state(&mut self, n: usize) {
        let data = self.nodes[n].pg.data;
        let a = self.agent(n);
        let local = Local {
            data,
            system_identifier: a.system_identifier.clone(),
            was_primary: false,
            running: false,
            engine: PgLocal {
                rewound: a.rewound,
                ..PgLocal::default()
            },
        };
        self.write_member(n, &local);
    }

    /// `write_member`: our member key under our lease, when it changed.
    pub(crate) fn write_member(&mut self, n: usize, local: &Local) -> u64 {
        let a = self.agent(n);
        let Some(lease) = a.lease else { return 0 };
        let sig: MemberSig = (
            a.state,
            role_of(local),
            local
                .engine
                .probe
                .as_ref()
                .map(|p| (p.wal_position, p.timeline, p.in_recovery, p.streaming)),
        );
        if a.last_member
            .as_ref()
            .is_some_and(|(l, s)| *l == lease && *s == sig)
        {
            return 0;
        }
        let body = member_json(n, a.state, local).into_bytes();
        let key = self.store.keys.member(NAMES[n]);
        let (r, took) = self.call(n, |s, _| s.put(&key, body, Some(lease)));
        if r == Some(Ok(())) {
            self.agent(n).last_member = Some((lease, sig));
        }
        took
    }
}
