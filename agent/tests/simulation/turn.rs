//! One agent turn, phase by phase as in `run.rs`: lease, DCS read, local probe,
//! peer probes, failsafe round, decide.

use super::*;

impl World {
    pub(crate) fn turn_phase(&mut self, n: usize, t: &mut Turn) -> Option<u64> {
        match t.phase {
            Phase::Lease => {
                let (renewed, took) = self.refresh_lease(n);
                t.lease_renewed = renewed;
                t.phase = Phase::Read;
                Some(took)
            }
            Phase::Read => {
                let (cluster, took) = self.call(n, |s, _| s.cluster());
                let now_i = self.instant(self.local_now(n));
                let a = self.agent(n);
                if a.holds_leader && !a.deadline.valid_at(now_i) {
                    // run.rs: we lead again only after a successful renewal.
                    a.holds_leader = false;
                }
                if let Some(c) = &cluster {
                    let a = self.agent(n);
                    a.failsafe_known.clone_from(&c.failsafe);
                    if c.leader_name() != Some(NAMES[n]) && a.holds_leader {
                        a.holds_leader = false;
                        a.deadline.clear();
                        let msg = format!(
                            "the DCS no longer shows us as leader (leader {:?})",
                            c.leader_name()
                        );
                        self.log(Some(n), msg);
                    }
                }
                t.cluster = cluster;
                t.phase = Phase::Observe;
                Some(took)
            }
            Phase::Observe => {
                let local = self.observe_local(n);
                let a = self.agent(n);
                a.shown.running = local.running;
                a.shown.probe.clone_from(&local.engine.probe);
                let race_possible = t
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.leader.is_none() && c.initialize.is_some())
                    && local.engine.probe.as_ref().is_some_and(|p| p.in_recovery);
                let (peers, took) = match (&t.cluster, race_possible) {
                    (Some(c), true) => self.probe_peers(n, c, &mut t.peer_timelines),
                    _ => (Vec::new(), 0),
                };
                t.local = Some(local);
                t.peers = peers;
                t.phase = Phase::Failsafe;
                Some(LOCAL_PROBE_MS + took)
            }
            Phase::Failsafe => {
                let primary = t
                    .local
                    .as_ref()
                    .is_some_and(|l| l.engine.probe.as_ref().is_some_and(|p| !p.in_recovery));
                let (confirmed, took) = self.failsafe_round(n, t.cluster.is_some(), primary);
                t.failsafe_confirmed = confirmed;
                t.phase = Phase::Decide;
                Some(took)
            }
            Phase::Decide => {
                self.decide_phase(n, t);
                Some(0)
            }
            Phase::Act => {
                let Some(action) = t.actions.get(t.next).cloned() else {
                    t.phase = Phase::Publish;
                    return Some(0);
                };
                t.next += 1;
                t.changed_local |= matches!(
                    action,
                    Action::Bootstrap
                        | Action::Clone { .. }
                        | Action::Start(_)
                        | Action::Promote { .. }
                        | Action::Demote { .. }
                );
                let obs = t.obs.take().expect("decided");
                let outcome = self.execute(n, &action, &obs);
                t.obs = Some(obs);
                // A `Fatal` action stopped the agent.
                self.nodes[n].agent.as_ref()?;
                if self.fixes.guard_each_action {
                    self.feed_guard(n);
                }
                match outcome {
                    Outcome::Done(took) => {
                        t.just_did = Some(action);
                        Some(took)
                    }
                    Outcome::Failed(took, why) => {
                        self.log(
                            Some(n),
                            format!("{action:?} failed: {why}; skipping the rest of this turn"),
                        );
                        t.phase = Phase::Publish;
                        Some(took)
                    }
                }
            }
            Phase::Publish => {
                let obs = t.obs.take().expect("decided");
                let local = if t.changed_local {
                    self.observe_local(n)
                } else {
                    obs.local
                };
                if !self.agent(n).holds_leader {
                    self.close_watchdog(n);
                }
                if let Some(c) = obs.cluster {
                    self.agent(n).last_cluster = Some(c);
                }
                let took = self.write_member(n, &local);
                let a = self.agent(n);
                a.shown.state = MemberState::parse(a.state);
                a.shown.role = role_of(&local);
                a.shown.running = local.running;
                a.shown.probe = local.engine.probe;
                a.shown.is_leader = a.holds_leader;
                t.phase = Phase::FeedGuard;
                Some(took)
            }
            Phase::FeedGuard => {
                self.feed_guard(n);
                None
            }
        }
    }

    /// `refresh_lease`: keepalive, or a new lease when ours is gone.
    pub(crate) fn refresh_lease(&mut self, n: usize) -> (bool, u64) {
        let started = self.local_now(n);
        let mut took = 0;
        if let Some(id) = self.agent(n).lease {
            let (r, t) = self.call(n, |s, now| s.keepalive(now, id));
            took += t;
            match r {
                None => return (false, took),
                Some(Ok(())) => {
                    self.agent(n).renewed_at = Some(started);
                    return (true, took);
                }
                Some(Err(DcsError::LeaseNotFound)) => {
                    self.log(
                        Some(n),
                        format!("our lease {id} expired; granting a new one"),
                    );
                }
            }
        }
        let (r, t) = self.call(n, |s, now| s.grant(now));
        took += t;
        match r {
            None => (false, took),
            Some(id) => {
                let a = self.agent(n);
                a.lease = Some(id);
                a.last_member = None;
                a.renewed_at = Some(started);
                (true, took)
            }
        }
    }

    /// `observe_local`, including its caching of the system identifier.
    pub(crate) fn observe_local(&mut self, n: usize) -> Local {
        let now = self.now;
        let epochs = &self.epochs;
        let node = &mut self.nodes[n];
        let pg = &node.pg;
        let a = node.agent.as_mut().expect("the agent is alive");
        let data = pg.data;
        let running = pg.running;
        let mut was_primary = false;
        if data == DataState::Initialized && (a.system_identifier.is_none() || !running) {
            a.system_identifier = Some(SYSID.to_string());
            was_primary = !pg.backup_label && pg.control_primary;
        } else if data != DataState::Initialized {
            a.system_identifier = None;
        }
        let probe = pg.ready(now).then(|| probe_of(epochs, pg));
        if !running && a.state == "running" {
            a.state = "stopped";
        }
        if let Some(p) = &probe {
            a.state = "running";
            was_primary = !p.in_recovery;
            if was_primary {
                a.rewound = false;
            }
        }
        Local {
            data,
            system_identifier: a.system_identifier.clone(),
            was_primary,
            running,
            engine: PgLocal {
                stopped_timeline: (!running && data == DataState::Initialized && !pg.backup_label)
                    .then(|| timeline(epochs, pg)),
                probe,
                rewound: a.rewound,
                // The decide phase sets it from the dynamic config.
                use_pg_rewind: false,
            },
        }
    }

    /// `peers::probe_peers`: every other member's `/patroni`, in parallel, each bounded
    /// by the peer timeout. Bodies come from the real `views::patroni` and are read by
    /// the real `parse_status`.
    pub(crate) fn probe_peers(
        &mut self,
        n: usize,
        c: &Cluster,
        timelines: &mut BTreeMap<String, u32>,
    ) -> (Vec<Peer>, u64) {
        let mut took = 0;
        let mut peers = Vec::new();
        let mut names: Vec<&String> = c.members.keys().collect();
        if self.fixes.failsafe_peers && c.dynamic_config().failsafe_mode {
            names.extend(c.failsafe.iter().flat_map(|f| f.keys()));
            names.sort();
            names.dedup();
        }
        for name in names.into_iter().filter(|m| m.as_str() != NAMES[n]) {
            let (status, t) = match Self::index(name) {
                Some(p) if !self.net_ok(n, p) => (None, PEER_TIMEOUT_MS),
                Some(p) => match &self.nodes[p].agent {
                    None => (None, 1), // connection refused
                    Some(_) if self.nodes[p].paused => (None, PEER_TIMEOUT_MS),
                    Some(a) => {
                        let valid = a.deadline.valid_at(self.instant(self.local_now(p)));
                        // Through JSON, as it crosses the wire.
                        let body = serde_json::to_value(views::patroni(&a.shown, valid))
                            .unwrap_or_default();
                        if let Some(tl) = body.get("timeline").and_then(serde_json::Value::as_u64) {
                            timelines.insert(name.clone(), tl as u32);
                        }
                        (parse_status(&body, &Tags::default()), 2)
                    }
                },
                None => (None, PEER_TIMEOUT_MS),
            };
            took = took.max(t);
            peers.push(Peer {
                name: name.clone(),
                status,
            });
        }
        (peers, took)
    }

    /// `failsafe_round`: with failsafe mode on, the DCS unreachable and us leading a
    /// running primary, ask every member of the last known `/failsafe` key to confirm us.
    pub(crate) fn failsafe_round(
        &mut self,
        n: usize,
        dcs_read: bool,
        primary: bool,
    ) -> (Option<bool>, u64) {
        let lnow = self.local_now(n);
        let default_mode = self.bootstrap_cfg.failsafe_mode;
        let last_written = self.fixes.failsafe_last_written;
        let a = self.agent(n);
        a.failsafe_round = None;
        let Some(last) = a.last_cluster.as_ref() else {
            return (None, 0);
        };
        let mode = last
            .config
            .as_ref()
            .map_or(default_mode, |c| c.value.failsafe_mode);
        if dcs_read || !primary || !a.holds_leader || !mode {
            return (None, 0);
        }
        let listed = if last_written {
            a.failsafe_known.as_ref()
        } else {
            last.failsafe.as_ref()
        };
        let members: Vec<String> = listed
            .iter()
            .flat_map(|f| f.keys())
            .filter(|m| m.as_str() != NAMES[n])
            .cloned()
            .collect();
        let mut ok = true;
        let mut took = 0;
        for m in &members {
            let (yes, t) = self.ask_failsafe(n, m);
            ok &= yes;
            took = took.max(t);
        }
        if ok {
            self.agent(n).failsafe_round = Some(lnow);
        }
        self.log(
            Some(n),
            format!("failsafe round: asked {members:?}: all confirmed: {ok}"),
        );
        (Some(ok), took)
    }

    /// `POST /failsafe` to `name`: accepted unless it runs a primary itself; it then
    /// refuses to race for `ttl`.
    pub(crate) fn ask_failsafe(&mut self, from: usize, name: &str) -> (bool, u64) {
        let Some(p) = Self::index(name) else {
            return (false, PEER_TIMEOUT_MS);
        };
        if !self.net_ok(from, p) || self.nodes[p].paused {
            return (false, PEER_TIMEOUT_MS);
        }
        let at = self.instant(self.local_now(p));
        let Some(a) = self.nodes[p].agent.as_mut() else {
            return (false, 1);
        };
        if a.shown.in_recovery() == Some(false) {
            return (false, 2);
        }
        a.shown.failsafe_leader = Some((NAMES[from].to_string(), at));
        (true, 2)
    }

    pub(crate) fn decide_phase(&mut self, n: usize, t: &mut Turn) {
        let mut local = t.local.take().expect("observed");
        let lnow = self.local_now(n);
        let now_i = self.instant(lnow);
        let leads = t.cluster.as_ref().and_then(Cluster::leader_name) == Some(NAMES[n]);
        let primary_ok = local.engine.probe.as_ref().is_some_and(|p| !p.in_recovery);
        let use_pg_rewind = t
            .cluster
            .as_ref()
            .and_then(|c| c.config.as_ref())
            .map_or(self.bootstrap_cfg.postgresql.use_pg_rewind, |c| {
                c.value.postgresql.use_pg_rewind
            });
        local.engine.use_pg_rewind = use_pg_rewind;
        let fixes = self.fixes;
        let a = self.agent(n);
        let failsafe_leader_active = a
            .shown
            .failsafe_leader
            .as_ref()
            .is_some_and(|(_, at)| now_i.saturating_duration_since(*at) < TTL);
        if leads && !primary_ok && local.data == DataState::Initialized {
            a.primary_down_since.get_or_insert(lnow);
        } else {
            a.primary_down_since = None;
        }
        if local
            .engine
            .probe
            .as_ref()
            .is_some_and(|p| p.in_recovery && !p.streaming)
        {
            let leader = t
                .cluster
                .as_ref()
                .and_then(|c| c.leader_name().map(str::to_string));
            if a.not_streaming_since
                .as_ref()
                .is_none_or(|(_, l)| *l != leader)
            {
                a.not_streaming_since = Some((lnow, leader));
            }
        } else {
            a.not_streaming_since = None;
        }
        let mut peers = std::mem::take(&mut t.peers);
        if fixes.race_eligible_peers {
            let mine = local
                .engine
                .probe
                .as_ref()
                .and_then(|p| p.wal_position)
                .unwrap_or(0);
            let cfg = t
                .cluster
                .as_ref()
                .map(Cluster::dynamic_config)
                .unwrap_or_default();
            let superseded = t
                .cluster
                .as_ref()
                .filter(|_| cfg.check_timeline)
                .and_then(Cluster::history_timeline);
            let listed = t
                .cluster
                .as_ref()
                .filter(|_| cfg.failsafe_mode && fixes.failsafe_membership)
                .and_then(|c| c.failsafe.clone())
                .filter(|f| !f.is_empty());
            peers.retain(|p| {
                p.status.as_ref().is_none_or(|s| {
                    let tie = s.position == mine && s.priority == Tags::default().priority();
                    let stale = superseded
                        .is_some_and(|h| t.peer_timelines.get(&p.name).is_some_and(|tl| *tl <= h));
                    let outsider = listed.as_ref().is_some_and(|f| !f.contains_key(&p.name));
                    s.is_primary || !(tie || stale || outsider)
                })
            });
        }
        let obs = Observation {
            // No operator requests in the simulation: the wall clock does not matter.
            now: chrono::DateTime::UNIX_EPOCH,
            manual: None,
            me: NAMES[n].to_string(),
            tags: Tags::default(),
            cluster: t.cluster.take(),
            lease_renewed: t.lease_renewed,
            lease_valid: a.deadline.valid_at(now_i),
            local,
            peers,
            bootstrapped_here: a.bootstrapped_here,
            primary_down_for: a
                .primary_down_since
                .map(|s| Duration::from_millis(lnow - s)),
            failsafe_confirmed: t.failsafe_confirmed,
            failsafe_leader_active,
            watchdog_missing: None,
            not_streaming_for: a
                .not_streaming_since
                .as_ref()
                .map(|(s, _)| Duration::from_millis(lnow - s)),
        };
        let mut d = decide(&obs);
        let restart = [Action::RenewLeader, Action::Start(StartAs::Primary)];
        if self.fixes.primary_down_needs_renewal && !obs.lease_renewed && d.actions == restart {
            d.actions.clear();
            d.note = "lease not renewed this turn; not restarting the primary".into();
        }
        if self.fixes.failsafe_membership && d.actions.first() == Some(&Action::AcquireLeader) {
            if let Some(why) = failsafe_outsider(&obs) {
                d.actions.clear();
                d.note = why;
            }
        }
        let a = self.agent(n);
        if d.note != a.last_note {
            a.last_note.clone_from(&d.note);
            let msg = format!("decide: {} -> {:?}", d.note, d.actions);
            self.log(Some(n), msg);
        }
        t.actions = d.actions;
        t.obs = Some(obs);
        t.phase = Phase::Act;
    }
}
