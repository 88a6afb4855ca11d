//! What PostgreSQL's adapter keeps and does for the leader: synchronous replication
//! (`synchronous_mode: on` through [`crate::sync::plan`], `quorum` through
//! [`crate::quorum::plan`]; the loop writes `/sync` and this module
//! `synchronous_standby_names`, in the order the plan gives), the watch on synchronous
//! standbys between turns, and replication slots for the other members.

use crate::quorum::{self, Names, Step};
use crate::sql::{Probe, ReplicationRow};
use crate::sync::{Standby, SyncSettings, SyncTags};
use crate::{PgError, Postgres};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;
use warden_consensus::dynamic_config::SynchronousMode;
use warden_consensus::types::SyncState;
use warden_consensus::{Cluster, DynamicConfig, Versioned};
use warden_ha::{SyncPlan, SyncSetting, SyncStep};

/// How long a replication slot of a member that left the cluster is kept (Patroni's
/// `member_slots_ttl` default), so a member that restarts finds its WAL still there.
const MEMBER_SLOTS_TTL: Duration = Duration::from_secs(30 * 60);

/// `member_slots_ttl` from the dynamic config: seconds, or a duration text (`30min`);
/// Patroni's default when absent or unreadable.
fn member_slots_ttl(dynamic: &DynamicConfig) -> Duration {
    match dynamic.extra.get("member_slots_ttl") {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map_or(MEMBER_SLOTS_TTL, Duration::from_secs)
        }
        Some(serde_json::Value::String(t)) => t
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .or_else(|_| humantime::parse_duration(t.trim()))
            .unwrap_or(MEMBER_SLOTS_TTL),
        _ => MEMBER_SLOTS_TTL,
    }
}

/// How often `pg_stat_replication` is read while the loop sleeps: one small query, and
/// at most this long (plus a turn) of commits blocked by a dead standby.
pub const WATCH_PERIOD: Duration = Duration::from_millis(500);
/// A primary that cannot answer this quickly is the loop's business, not the watch's.
const WATCH_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// The leader's synchronous replication state.
#[derive(Debug, Default)]
pub(crate) struct Synchronous {
    /// The `synchronous_standby_names` the primary's configuration gets (`None`: the
    /// configured one).
    pub(crate) names: Option<String>,
    /// The names in force and the WAL flush position when we first saw them in force
    /// (standbys flushed past it hold every earlier commit).
    mark: Option<(String, u64)>,
    /// The replication rows of the last plan's probe (for the watch list).
    rows: Vec<ReplicationRow>,
    /// The standbys watched between turns; `None`: not chosen since the last plan.
    watched: Option<Vec<String>>,
}

/// Slots seen wanted, for Patroni's `member_slots_ttl`.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    seen: HashMap<String, Instant>,
}

impl Postgres {
    /// See [`warden_ha::Database::set_synchronous`].
    pub(crate) fn set_sync_setting(&mut self, setting: SyncSetting) -> bool {
        let names = match setting {
            SyncSetting::Configured => None,
            SyncSetting::Nobody { strict } => Some(crate::sync::render_names(&[], strict)),
            SyncSetting::Planned(s) => Some(s),
        };
        if names == self.sync.names {
            return false;
        }
        // A fresh mark once these are seen in force, even if the same text was in
        // force before (it may have been replaced meanwhile).
        self.sync.mark = None;
        self.sync.watched = None;
        self.sync.names = names;
        true
    }

    /// `synchronous_standby_names` for the configuration: the leader's choice on a
    /// primary; on a replica nothing (or `*` in strict mode), so a promotion never
    /// starts with a stale list. `None` with synchronous mode off.
    pub(crate) fn names_for(
        &self,
        primary: bool,
        cluster: Option<&Cluster>,
        dynamic: &DynamicConfig,
    ) -> Option<String> {
        let strict = dynamic.synchronous_mode_strict;
        if !dynamic.synchronous_mode.is_enabled() {
            None
        } else if !primary {
            Some(crate::sync::render_names(&[], strict))
        } else {
            Some(self.sync.names.clone().unwrap_or_else(|| {
                crate::sync::names_until_planned(
                    cluster.and_then(|c| c.sync.as_ref()).map(|s| &s.value),
                    &self.settings.name,
                    strict,
                )
            }))
        }
    }

    /// See [`warden_ha::Database::plan_synchronous`].
    pub(crate) async fn plan_sync(
        &mut self,
        c: &Cluster,
        me: &str,
        d: &DynamicConfig,
        probe: Option<&Probe>,
    ) -> Result<SyncPlan, PgError> {
        self.sync.watched = None;
        self.sync.rows.clear();
        let Some(probe) = probe.filter(|p| !p.in_recovery) else {
            return Ok(SyncPlan::default());
        };
        self.sync.rows.clone_from(&probe.replication);
        let standbys = standbys(c, probe);
        let settings = SyncSettings {
            mode: d.synchronous_mode,
            strict: d.synchronous_mode_strict,
            node_count: d.synchronous_node_count,
            max_lag: d.maximum_lag_on_syncnode,
        };
        if d.synchronous_mode == SynchronousMode::Quorum {
            self.plan_quorum(c, me, probe, &standbys, settings).await
        } else {
            self.plan_on(c, me, probe, &standbys, settings).await
        }
    }

    /// `synchronous_mode: on`: shrink `/sync`, then `synchronous_standby_names`, then
    /// grow `/sync` — one key write per turn (the next turn reads the new revision).
    async fn plan_on(
        &mut self,
        c: &Cluster,
        me: &str,
        probe: &Probe,
        standbys: &[Standby],
        settings: SyncSettings,
    ) -> Result<SyncPlan, PgError> {
        let mine = my_sync_key(c, me);
        let in_key: Vec<String> = mine
            .map(|s| s.value.standbys().iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        // A quorum left by quorum mode does not mean every listed standby has every
        // commit, which is what `on` reads into the list: start it afresh.
        let from_quorum = mine.is_some_and(|s| s.value.quorum.unwrap_or(0) > 0);
        let plan = crate::sync::plan(standbys, &in_key, settings);
        let wanted = crate::sync::pick(standbys, settings);
        let key = |voters: Vec<String>| SyncStep::Key { quorum: 0, voters };
        // /sync must name us as leader before anything else relies on it.
        if mine.is_none() || from_quorum {
            tracing::warn!("claiming /sync for this leader, with no synchronous standby yet");
            return Ok(SyncPlan {
                steps: vec![key(Vec::new())],
                pending: true,
            });
        }
        if let Some(set) = plan.shrink_key_to {
            tracing::warn!(standbys = ?set, "synchronous standbys in /sync reduced");
            return Ok(SyncPlan {
                steps: vec![key(set)],
                pending: true,
            });
        }
        let mut steps = Vec::new();
        if self.sync.names.as_deref() != Some(plan.names.as_str()) {
            tracing::info!(names = %plan.names, "setting synchronous_standby_names");
            steps.push(SyncStep::Setting(plan.names.clone()));
        }
        let mut in_key_now = in_key;
        in_key_now.sort();
        if let Some(set) = &plan.grow_key_to {
            if let Some(grow) = self
                .confirmed_growth(probe, &in_key_now, set, &plan.names)
                .await?
            {
                tracing::info!(standbys = ?grow, "synchronous standbys confirmed; recording them in /sync");
                in_key_now.clone_from(&grow);
                steps.push(key(grow));
            }
        }
        // A standby named but not confirmed yet: look again in a second, not a loop_wait.
        Ok(SyncPlan {
            steps,
            pending: in_key_now != wanted,
        })
    }

    /// The `synchronous_standby_names` PostgreSQL enforces, and their mark: the WAL
    /// flush position when we first saw them in force. A standby flushed past the mark
    /// holds every commit acknowledged before them.
    async fn names_in_force(&mut self) -> Result<(String, u64), PgError> {
        let (text, flush) =
            self.sql().sync_names_in_force().await.map_err(|e| {
                PgError::Files(format!("cannot read synchronous_standby_names: {e}"))
            })?;
        match &self.sync.mark {
            Some((t, mark)) if *t == text => Ok((text, *mark)),
            _ => {
                self.sync.mark = Some((text.clone(), flush));
                Ok((text, flush))
            }
        }
    }

    /// The part of a planned `/sync` growth that is safe now. PostgreSQL reports a
    /// standby `sync` as soon as the names list it, but commits acknowledged before
    /// those names took effect may not be on it: a new standby joins `/sync` only once
    /// it flushed past the primary's flush position of the moment we first saw the
    /// names in force (a later moment than they took effect, so on the safe side).
    async fn confirmed_growth(
        &mut self,
        probe: &Probe,
        in_key: &[String],
        planned: &[String],
        names: &str,
    ) -> Result<Option<Vec<String>>, PgError> {
        let (text, mark) = self.names_in_force().await?;
        let mark = (text == names).then_some(mark);
        let flushed = |name: &str| {
            probe.replication.iter().any(|r| {
                r.application_name.as_deref() == Some(name)
                    && matches!((r.flush_lsn, mark), (Some(f), Some(m)) if f >= m)
            })
        };
        let set: Vec<String> = planned
            .iter()
            .filter(|n| in_key.contains(n) || flushed(n))
            .cloned()
            .collect();
        Ok((set.as_slice() != in_key).then_some(set))
    }

    /// `synchronous_mode: quorum`: reads the names PostgreSQL enforces (and takes their
    /// mark), then returns [`quorum::plan`]'s steps.
    async fn plan_quorum(
        &mut self,
        c: &Cluster,
        me: &str,
        probe: &Probe,
        standbys: &[Standby],
        settings: SyncSettings,
    ) -> Result<SyncPlan, PgError> {
        let (text, mark) = self.names_in_force().await?;
        let in_force = Names::parse(&text).unwrap_or_else(|| {
            tracing::warn!(names = %text, "cannot parse synchronous_standby_names; treating it as asynchronous");
            Names::none()
        });
        // The probe's flush positions are older than the mark: at worst too low.
        let confirmed: BTreeSet<String> = probe
            .replication
            .iter()
            .filter(|r| r.flush_lsn.is_some_and(|f| f >= mark))
            .filter_map(|r| r.application_name.clone())
            .collect();
        // Settled: what we set is what PostgreSQL enforces (no reload pending). A fresh
        // leader (after a restart) keeps what is in force until its plan changes it.
        let settled = self.sync.names.as_deref().and_then(Names::parse).as_ref() == Some(&in_force);
        if self.sync.names.is_none() {
            self.sync.names = Some(text);
        }
        let input = quorum::Input {
            key: my_sync_key(c, me).map(|s| quorum::Key {
                quorum: usize::try_from(s.value.quorum.unwrap_or(0)).unwrap_or(usize::MAX),
                voters: s.value.standbys().iter().map(|n| n.to_string()).collect(),
            }),
            in_force,
            settled,
            active: quorum::pick(standbys, settings),
            confirmed,
            node_count: settings.node_count,
            strict: settings.strict,
        };
        let plan = quorum::plan(&input);
        let mut steps = Vec::new();
        for step in plan.steps {
            steps.push(match step {
                Step::Key(k) => {
                    tracing::info!(quorum = k.quorum, voters = ?k.voters, "quorum commit: writing /sync");
                    SyncStep::Key {
                        quorum: u32::try_from(k.quorum).unwrap_or(u32::MAX),
                        voters: k.voters.into_iter().collect(),
                    }
                }
                Step::Names(n) => {
                    let names = n.render();
                    tracing::info!(names = %names, "quorum commit: setting synchronous_standby_names");
                    SyncStep::Setting(names)
                }
            });
        }
        Ok(SyncPlan {
            steps,
            pending: plan.pending,
        })
    }

    /// We do not lead: forget the mark and the watch (a later leadership starts
    /// afresh; an old mark would count stale flushes as confirmation).
    pub(crate) fn forget_leader_state(&mut self) {
        self.sync.mark = None;
        self.sync.watched = Some(Vec::new());
    }

    /// See [`warden_ha::Database::lost_standby`]: the standbys listed in the names now
    /// in place that were streaming at the last plan; only they can go missing (a
    /// listed standby that is not streaming now is the next turn's business, and
    /// watching it would wake the loop every period).
    pub(crate) async fn watch_standbys(&mut self) -> String {
        let sync = &mut self.sync;
        let watched = sync.watched.get_or_insert_with(|| {
            sync.names
                .as_deref()
                .map(|n| watch_list(n, &sync.rows))
                .unwrap_or_default()
        });
        if watched.is_empty() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(WATCH_PERIOD).await;
            match self.sql.streaming_standbys(WATCH_QUERY_TIMEOUT).await {
                Ok(streaming) => {
                    let watched = self.sync.watched.get_or_insert_with(Vec::new);
                    if let Some(i) = watched.iter().position(|w| !streaming.contains(w)) {
                        // Once per loss: if the next turn cannot act (e.g. the DCS is
                        // cut off too), waking again every period would only repeat it.
                        return watched.remove(i);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read pg_stat_replication"),
            }
        }
    }

    /// See [`warden_ha::Database::retain`]: a physical slot per member and per
    /// permanent physical slot (`slots` in the dynamic config); on a replica advanced to
    /// where the leader reports it, never past our own replay position. Slots nobody
    /// wants are dropped (Patroni's rule) unless `ignore_slots` matches them or they
    /// belong to a member gone for less than `member_slots_ttl`. Logical slots are
    /// `logical_slots`' business, except that unwanted ones are dropped here too.
    pub(crate) async fn retain_slots(
        &mut self,
        members: &[String],
        leader_positions: Option<&BTreeMap<String, u64>>,
        dynamic: &DynamicConfig,
        probe: Option<&Probe>,
    ) -> Result<(), PgError> {
        if !dynamic.postgresql.use_slots {
            return Ok(());
        }
        let Some(p) = probe else {
            // Not answering: nothing known to keep in step.
            return Ok(());
        };
        let me = crate::conf::slot_name(&self.settings.name);
        let (permanent, problems) = crate::slots::permanent_slots(dynamic);
        for problem in problems {
            tracing::warn!("{problem}");
        }
        let ignore = crate::slots::ignore_rules(dynamic);
        let now = Instant::now();
        let member_slots: Vec<String> = members
            .iter()
            .map(|m| crate::conf::slot_name(m))
            .filter(|s| *s != me)
            .collect();
        for s in &member_slots {
            self.slots.seen.insert(s.clone(), now);
        }
        let mut wanted = member_slots.clone();
        wanted.extend(
            permanent
                .iter()
                .filter(|s| !s.is_logical() && s.name != me)
                .map(|s| s.name.clone()),
        );
        wanted.sort();
        wanted.dedup();
        self.ensure_slots(&p.physical_slots, &wanted).await?;
        let ttl = member_slots_ttl(dynamic);
        let logical_wanted: Vec<&crate::slots::PermanentSlot> =
            permanent.iter().filter(|s| s.is_logical()).collect();
        for slot in &p.slots {
            if crate::slots::untouchable(&ignore, slot) {
                continue;
            }
            if slot.logical {
                let keep = logical_wanted
                    .iter()
                    .any(|w| w.name == slot.name && crate::slots::logical_matches(slot, w));
                if !keep && !slot.active {
                    tracing::info!(slot = %slot.name, "dropping a logical slot no permanent slot names");
                    self.drop_slot(&slot.name).await?;
                }
                continue;
            }
            if wanted.contains(&slot.name) || slot.active {
                continue;
            }
            // A member's slot outlives the member by member_slots_ttl, so a member
            // that comes back finds its WAL; anything else nobody wants goes now.
            let recent = self
                .slots
                .seen
                .get(&slot.name)
                .is_some_and(|seen| now.duration_since(*seen) <= ttl);
            let reported = leader_positions.is_some_and(|r| r.contains_key(&slot.name));
            if recent || reported {
                continue;
            }
            tracing::info!(slot = %slot.name, "dropping a replication slot no member or permanent slot needs");
            self.drop_slot(&slot.name).await?;
            self.slots.seen.remove(&slot.name);
        }
        if !logical_wanted.is_empty() {
            // Logical slots never stop the physical ones being kept: their failures
            // are logged and tried again next turn.
            if let Err(e) = self
                .logical_slots(&logical_wanted, p, leader_positions)
                .await
            {
                tracing::warn!(error = %e, "managing the permanent logical slots failed");
            }
        }
        let Some(reported) = leader_positions else {
            return Ok(());
        };
        // A replica never moves a slot past what it replayed; the leader (cascaded
        // members' slots) past what it wrote.
        let replayed = p.replay_lsn.or(p.wal_position).unwrap_or(0);
        for slot in &wanted {
            let Some(target) = reported.get(slot).map(|l| (*l).min(replayed)) else {
                continue;
            };
            // A slot created this turn is not in the probe yet; it reserved WAL from
            // now, so advancing it is for the next turn.
            let Some(current) = p.physical_slots.get(slot).copied().flatten() else {
                continue;
            };
            if target > current {
                self.advance_slot(slot, target).await?;
            }
        }
        Ok(())
    }

    /// See [`warden_ha::Database::retained`].
    /// What the leader writes to `/status`, as Patroni writes it: `slots` holds every
    /// member's and permanent slot's position (logical ones at their confirmed
    /// position) and our own slot name at our WAL position, so replicas move the slot
    /// they keep for us; `retain_slots` the member slots we keep.
    pub(crate) fn retained_slots(&self, probe: Option<&Probe>) -> warden_ha::Retained {
        let mut positions: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(p) = probe {
            for s in &p.slots {
                if s.name == crate::slots::ARCHIVER_SLOT {
                    continue;
                }
                let lsn = if s.logical {
                    s.confirmed_flush
                } else {
                    s.restart_lsn
                };
                if let Some(l) = lsn {
                    positions.insert(s.name.clone(), l);
                }
            }
            if !p.in_recovery {
                if let Some(w) = p.wal_position {
                    positions.insert(crate::conf::slot_name(&self.settings.name), w);
                }
            }
        }
        let mut names: Vec<String> = self.slots.seen.keys().cloned().collect();
        names.push(crate::conf::slot_name(&self.settings.name));
        names.sort();
        names.dedup();
        warden_ha::Retained { positions, names }
    }
}

/// `/sync`, if it names us as leader.
fn my_sync_key<'c>(c: &'c Cluster, me: &str) -> Option<&'c Versioned<SyncState>> {
    c.sync
        .as_ref()
        .filter(|s| s.value.leader.as_deref() == Some(me))
}

/// The cluster members among the standbys connected to us, with their tags.
fn standbys(c: &Cluster, probe: &Probe) -> Vec<Standby> {
    let leader_wal = probe.wal_position.unwrap_or(0);
    probe
        .replication
        .iter()
        .filter_map(|row| {
            Standby::from_row(
                row,
                leader_wal,
                probe.synchronous_commit.as_deref(),
                |name| {
                    let m = c.member(name)?;
                    let priority = m.tag_priority("sync_priority").unwrap_or(1);
                    Some(SyncTags {
                        nosync: m.tag_bool("nosync"),
                        nofailover: m.tag_bool("nofailover")
                            || m.tag_priority("failover_priority") == Some(0),
                        priority,
                    })
                },
            )
        })
        .collect()
}

/// The standbys to watch: those listed in `names` (`synchronous_standby_names`) that
/// were streaming.
pub fn watch_list(names: &str, rows: &[ReplicationRow]) -> Vec<String> {
    let Some(listed) = Names::parse(names) else {
        return Vec::new();
    };
    rows.iter()
        .filter(|r| r.state.as_deref() == Some("streaming"))
        .filter_map(|r| r.application_name.clone())
        .filter(|n| listed.standbys.contains(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, state: &str) -> ReplicationRow {
        ReplicationRow {
            usename: None,
            application_name: Some(name.into()),
            client_addr: None,
            state: Some(state.into()),
            sync_state: None,
            sync_priority: None,
            write_lsn: None,
            flush_lsn: None,
            replay_lsn: None,
        }
    }

    #[test]
    fn watches_listed_streaming_standbys_only() {
        let rows = [
            row("a", "streaming"),
            row("b", "catchup"),
            row("c", "streaming"),
        ];
        assert_eq!(watch_list("ANY 1 (\"a\", \"b\")", &rows), vec!["a"]);
        assert_eq!(watch_list("FIRST 1 (\"c\")", &rows), vec!["c"]);
        assert!(watch_list("", &rows).is_empty());
        assert!(watch_list("*", &rows).is_empty());
    }
}
