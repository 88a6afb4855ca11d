//! `switchover` and `failover`: ask (or take from the flags), check the candidate, send
//! the request to the leader's API (or write the `failover` key when no leader answers),
//! then follow the cluster until the new leader is confirmed.

use super::actions::{is_connect_failure, member_states, parse_scheduled};
use super::api::{self, ApiError};
use super::args::{FailoverArgs, SwitchoverArgs};
use super::commands::timestamp;
use super::{Ctl, View};
use anyhow::{bail, Result};
use chrono::Local;
use std::collections::BTreeMap;
use warden_api::client::Method;
use warden_consensus::types::{Failover, Role};
use warden_consensus::DynamicConfig;

impl Ctl<'_> {
    pub async fn switchover(&mut self, a: SwitchoverArgs) -> Result<()> {
        self.switch(
            "switchover",
            a.cluster_name.as_deref(),
            a.leader,
            a.candidate,
            a.scheduled,
            a.force,
        )
        .await
    }

    pub async fn failover(&mut self, a: FailoverArgs) -> Result<()> {
        self.switch(
            "failover",
            a.cluster_name.as_deref(),
            a.leader,
            a.candidate,
            None,
            a.force,
        )
        .await
    }

    pub(super) async fn switch(
        &mut self,
        action: &str,
        cluster_name: Option<&str>,
        leader_arg: Option<String>,
        candidate: Option<String>,
        scheduled: Option<String>,
        force: bool,
    ) -> Result<()> {
        let scope = self.config.scope_for(cluster_name)?;
        let view = self.read_existing(&scope).await?;
        self.io.println("Current cluster topology")?;
        self.print_table(&view)?;
        let config = view.cluster.dynamic_config();
        let current = view.cluster.leader_name().map(str::to_string);
        let is_switchover = action == "switchover";

        let leader = self.ask_leader(
            &view,
            &config,
            current.as_deref(),
            leader_arg,
            is_switchover,
            force,
        )?;
        let candidate =
            self.ask_candidate(action, &view, &config, current.as_deref(), candidate, force)?;
        let scheduled_at = if is_switchover {
            self.ask_schedule(&view, scheduled, force)?
        } else {
            None
        };
        if !force {
            self.confirm_switch(action, &scope, current.as_deref(), scheduled_at.as_deref())?;
        }
        let now = self
            .send_switch(
                action,
                &view,
                current.as_deref(),
                leader.as_deref(),
                candidate.as_deref(),
                scheduled_at.as_deref(),
            )
            .await?;
        if !now {
            let view = self.read(&scope).await?;
            return self.print_table(&view);
        }
        self.follow_switch(&scope, current.as_deref(), candidate.as_deref())
            .await
    }

    /// The leader to switch away from: a switchover needs one and defaults to (or asks
    /// for) the current one; whoever is named must be the current leader.
    fn ask_leader(
        &mut self,
        view: &View,
        config: &DynamicConfig,
        current: Option<&str>,
        leader_arg: Option<String>,
        is_switchover: bool,
        force: bool,
    ) -> Result<Option<String>> {
        let scope = &view.scope;
        let mut leader = leader_arg;
        if is_switchover {
            let Some(cur) = current else {
                bail!(
                    "cluster {scope} has no leader: a switchover needs one (use failover \
                     --candidate NAME)"
                );
            };
            if leader.is_none() {
                leader = Some(if force {
                    cur.to_string()
                } else {
                    let label = if config.is_standby_cluster() {
                        "Standby Leader"
                    } else {
                        "Primary"
                    };
                    self.io.prompt(label, Some(cur))?
                });
            }
        }
        if let Some(l) = leader.as_deref() {
            if current != Some(l) {
                bail!(
                    "member {l} is not the leader of cluster {scope} (leader: {})",
                    current.unwrap_or("none")
                );
            }
        }
        Ok(leader)
    }

    /// The member to take over (asked for unless forced; a failover needs one): not the
    /// leader and not tagged nofailover. In synchronous mode a failover to an
    /// asynchronous standby can lose transactions, so that is asked too.
    fn ask_candidate(
        &mut self,
        action: &str,
        view: &View,
        config: &DynamicConfig,
        current: Option<&str>,
        candidate: Option<String>,
        force: bool,
    ) -> Result<Option<String>> {
        let scope = &view.scope;
        let is_switchover = action == "switchover";
        let candidates: Vec<String> = view
            .cluster
            .members
            .iter()
            .filter(|(n, v)| Some(n.as_str()) != current && !v.value.tag_bool("nofailover"))
            .map(|(n, _)| n.clone())
            .collect();
        if candidates.is_empty() {
            bail!(
                "no candidates found to {action} to: every member other than the leader is \
                 missing or tagged nofailover (members: {})",
                view.member_names()
            );
        }
        let mut candidate = candidate;
        if candidate.is_none() && !force {
            let list = candidates
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let answer = self.io.prompt(&format!("Candidate [{list}]"), Some(""))?;
            candidate = Some(answer).filter(|a| !a.is_empty());
        }
        if !is_switchover && candidate.is_none() {
            bail!("failover could be performed only to a specific candidate (--candidate NAME)");
        }
        if let Some(c) = candidate.as_deref() {
            if !candidates.iter().any(|n| n == c) {
                if current == Some(c) {
                    bail!("member {c} is already the leader of cluster {scope}");
                }
                bail!(
                    "member {c} does not exist in cluster {scope} or is tagged as nofailover \
                     (candidates: {})",
                    candidates.join(", ")
                );
            }
        }
        if !is_switchover && !force && config.synchronous_mode.is_enabled() {
            let sync = view.cluster.sync.as_ref().map(|s| &s.value);
            if let (Some(sync), Some(c)) = (sync, candidate.as_deref()) {
                // As patronictl: the last leader in /sync counts as synchronous too.
                let standbys = sync.standbys();
                if !standbys.is_empty()
                    && !standbys.contains(&c)
                    && sync.leader.as_deref() != Some(c)
                    && !self.io.confirm(&format!(
                        "Are you sure you want to failover to the asynchronous node {c}?"
                    ))?
                {
                    bail!("aborting {action}");
                }
            }
        }
        Ok(candidate)
    }

    /// When a switchover is to happen (asked for unless forced); `None` is now.
    fn ask_schedule(
        &mut self,
        view: &View,
        scheduled: Option<String>,
        force: bool,
    ) -> Result<Option<String>> {
        let when = match scheduled {
            Some(s) => s,
            None if force => "now".to_string(),
            None => {
                let example = (Local::now() + chrono::Duration::hours(1))
                    .format("%Y-%m-%dT%H:%M")
                    .to_string();
                self.io.prompt(
                    &format!("When should the switchover take place (e.g. {example} ) "),
                    Some("now"),
                )?
            }
        };
        let scheduled_at = parse_scheduled(Some(&when))?;
        if scheduled_at.is_some() && view.cluster.is_paused() {
            bail!("can't schedule switchover in the paused state");
        }
        Ok(scheduled_at)
    }

    fn confirm_switch(
        &mut self,
        action: &str,
        scope: &str,
        current: Option<&str>,
        scheduled_at: Option<&str>,
    ) -> Result<()> {
        let demote = current
            .map(|l| format!(", demoting current leader {l}"))
            .unwrap_or_default();
        let question = match scheduled_at {
            Some(at) => format!(
                "Are you sure you want to schedule switchover of cluster {scope} at {at}{demote}?"
            ),
            None => format!("Are you sure you want to {action} cluster {scope}{demote}?"),
        };
        if !self.io.confirm(&question)? {
            bail!(
                "aborting {}{action}",
                if scheduled_at.is_some() {
                    "scheduled "
                } else {
                    ""
                }
            );
        }
        Ok(())
    }

    /// Sends the request to the leader's API, or, when no API can be reached, writes it
    /// into the `failover` key. Returns whether the switch is happening now (and so is
    /// to be followed); a scheduled one is only reported.
    async fn send_switch(
        &mut self,
        action: &str,
        view: &View,
        current: Option<&str>,
        leader: Option<&str>,
        candidate: Option<&str>,
        scheduled_at: Option<&str>,
    ) -> Result<bool> {
        let body = api::switchover_body(leader, candidate, scheduled_at);
        // The leader's API does the work; without a leader, the candidate's.
        let target = current.or(candidate).unwrap_or_default().to_string();
        let api_url = view
            .cluster
            .member(&target)
            .map(|m| m.api_url.clone())
            .unwrap_or_default();
        let timeout = Some(self.timing.action_timeout);
        match self
            .api
            .call(
                Method::POST,
                &target,
                &api_url,
                action,
                Some(&body),
                timeout,
            )
            .await
        {
            Ok(r) if r.status == 200 || r.status == 202 => {
                self.io.println(format!("{} {}", timestamp(), r.text()))?;
                Ok(r.status != 202 && scheduled_at.is_none())
            }
            Ok(r) => bail!(
                "{action} failed, details: {}, {}",
                r.status,
                api::failure_detail(&r)
            ),
            Err(e) if is_connect_failure(&e) || matches!(e, ApiError::NoUrl { .. }) => {
                self.io.println(format!(
                    "{} Could not {action} using the REST API of {target} ({e}), falling back \
                     to DCS",
                    timestamp()
                ))?;
                self.write_failover_key(view, leader, candidate, scheduled_at)
                    .await?;
                Ok(scheduled_at.is_none())
            }
            Err(e) => bail!("{action} failed: {e}"),
        }
    }

    /// patronictl's fallback when the API cannot be reached: the request goes straight
    /// into the `failover` key (compare-and-swap), where the agents pick it up.
    pub(super) async fn write_failover_key(
        &mut self,
        view: &View,
        leader: Option<&str>,
        candidate: Option<&str>,
        scheduled_at: Option<&str>,
    ) -> Result<()> {
        let key = view.keys.failover();
        let value = Failover {
            leader: leader.map(str::to_string),
            member: candidate.map(str::to_string),
            scheduled_at: scheduled_at.map(str::to_string),
            extra: Default::default(),
        };
        let rev = view.raw(&key).map_or(0, |kv| kv.mod_revision);
        let dcs = self.dcs().await?;
        let ok = dcs
            .compare_and_swap(&key, serde_json::to_vec(&value)?, rev, None)
            .await
            .map_err(|e| self.dcs_error(&format!("writing {key}"), &e))?;
        if !ok {
            bail!("{key} changed concurrently since it was read; nothing was written, try again");
        }
        self.io
            .println(format!("Wrote {} to {key}", serde_json::to_string(&value)?))
    }

    /// Follows an immediate switchover/failover in the DCS, printing every change of
    /// the leader key and of members' role and state, until the candidate (or, without
    /// one, any new member) holds the leader key and runs. Bounded.
    pub(super) async fn follow_switch(
        &mut self,
        scope: &str,
        old_leader: Option<&str>,
        candidate: Option<&str>,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.timing.switchover_deadline;
        let mut last_leader: Option<Option<String>> = None;
        let mut last_states: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let view = self.read(scope).await?;
            let leader = view.cluster.leader_name().map(str::to_string);
            if last_leader.as_ref() != Some(&leader) {
                self.io.println(format!(
                    "{} leader: {}",
                    timestamp(),
                    leader.as_deref().unwrap_or("(none)")
                ))?;
                last_leader = Some(leader.clone());
            }
            let states = member_states(&view);
            for (name, s) in &states {
                if last_states.get(name) != Some(s) {
                    self.io.println(format!("{} {name}: {s}", timestamp()))?;
                }
            }
            last_states = states;
            let done = leader.as_deref().is_some_and(|l| {
                let new = match candidate {
                    Some(c) => l == c,
                    None => Some(l) != old_leader,
                };
                new && view
                    .cluster
                    .member(l)
                    .is_some_and(|m| m.state.is_running() && m.role != Role::Replica)
            });
            if done {
                return self.print_table(&view);
            }
            if tokio::time::Instant::now() >= deadline {
                self.print_table(&view)?;
                bail!(
                    "{} did not take over within {} s (leader: {}); the operation may still \
                     be in progress",
                    candidate.unwrap_or("a new leader"),
                    self.timing.switchover_deadline.as_secs(),
                    leader.as_deref().unwrap_or("none")
                );
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }
}
