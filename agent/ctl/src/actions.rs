//! The commands that ask the agents to act, through their REST API: restart, reinit
//! and reload here, switchover and failover in `switch`, pause/resume and flush in
//! `maintenance`. Member selection, questions and printed lines follow patronictl;
//! failures exit non-zero with the API's answer.

use super::api::{self, ApiError};
use super::args::{ReinitArgs, ReloadArgs, RestartArgs, RoleFilter};
use super::{Ctl, View};
use anyhow::{bail, Result};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use std::collections::BTreeMap;
use std::time::Duration;
use warden_api::client::Method;
use warden_api::{PatroniStatus, RestartRequest, Timeout};
use warden_consensus::types::MemberState;
use warden_consensus::types::{Member, Role};

/// `--scheduled`: `now` (or nothing) is immediate; otherwise an ISO 8601 timestamp,
/// local time when it has no offset. Returns the ISO form sent to the API.
pub fn parse_scheduled(value: Option<&str>) -> Result<Option<String>> {
    let Some(v) = value
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "now")
    else {
        return Ok(None);
    };
    let with_tz: Option<DateTime<FixedOffset>> =
        DateTime::parse_from_rfc3339(v).ok().or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S%z",
                "%Y-%m-%d %H:%M:%S%z",
                "%Y-%m-%dT%H:%M%z",
                "%Y-%m-%d %H:%M%z",
            ]
            .iter()
            .find_map(|f| DateTime::parse_from_str(v, f).ok())
        });
    if let Some(t) = with_tz {
        return Ok(Some(t.to_rfc3339()));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok());
    match naive.and_then(|n| Local.from_local_datetime(&n).earliest()) {
        Some(t) => Ok(Some(t.fixed_offset().to_rfc3339())),
        None => bail!(
            "unable to parse scheduled timestamp {v:?}: use an unambiguous format such as \
             ISO 8601 (2030-01-31T14:30, 2030-01-31T14:30:00+01:00) or now"
        ),
    }
}

/// `--pg-version`: two or three dot-separated numbers.
pub fn check_pg_version(v: &str) -> Result<()> {
    let parts: Vec<&str> = v.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !(2..=3).contains(&parts.len()) || !numeric {
        bail!("invalid PostgreSQL version {v:?}: expected e.g. 15.8 (or 9.6.24)");
    }
    Ok(())
}

/// The role restricted by `POST /restart`'s `role` condition, so a member whose role
/// changed between selection and execution is not restarted by mistake.
fn api_role(role: RoleFilter) -> Option<&'static str> {
    match role {
        RoleFilter::Primary => Some("primary"),
        RoleFilter::StandbyLeader => Some("standby_leader"),
        RoleFilter::Replica | RoleFilter::Standby => Some("replica"),
        RoleFilter::Leader | RoleFilter::Any => None,
    }
}

/// Members having `role`, in name order (patronictl's `get_all_members`).
pub fn members_with_role(view: &View, role: RoleFilter) -> Vec<(String, Member)> {
    let c = &view.cluster;
    let leader = c.leader_name();
    let leader_member = || -> Vec<(String, Member)> {
        leader
            .and_then(|l| c.member(l).map(|m| (l.to_string(), m.clone())))
            .into_iter()
            .collect()
    };
    match role {
        RoleFilter::Leader => leader_member(),
        RoleFilter::Primary => leader_member()
            .into_iter()
            .filter(|(_, m)| m.role != Role::StandbyLeader)
            .collect(),
        RoleFilter::StandbyLeader => leader_member()
            .into_iter()
            .filter(|(_, m)| m.role != Role::Primary)
            .collect(),
        RoleFilter::Replica | RoleFilter::Standby => c
            .members
            .iter()
            .filter(|(n, _)| Some(n.as_str()) != leader)
            .map(|(n, v)| (n.clone(), v.value.clone()))
            .collect(),
        RoleFilter::Any => c
            .members
            .iter()
            .map(|(n, v)| (n.clone(), v.value.clone()))
            .collect(),
    }
}

pub(super) fn is_connect_failure(e: &ApiError) -> bool {
    matches!(e, ApiError::Http(_))
}

/// One short line per member: `node1 primary running`.
pub(super) fn member_states(view: &View) -> BTreeMap<String, String> {
    view.cluster
        .members
        .iter()
        .map(|(n, v)| (n.clone(), format!("{} {}", v.value.role, v.value.state)))
        .collect()
}

impl Ctl<'_> {
    /// patronictl's `get_members`: the members to act on, chosen by name and role,
    /// shown in a table, asked for when none were named (and not forced), confirmed.
    pub(super) async fn select_members(
        &mut self,
        view: &View,
        names: &[String],
        role: RoleFilter,
        action: &str,
        force: bool,
        confirm: bool,
    ) -> Result<Vec<(String, Member)>> {
        let candidates = members_with_role(view, role);
        let cand_names: Vec<String> = candidates.iter().map(|(n, _)| n.clone()).collect();
        if names.is_empty() && candidates.is_empty() {
            bail!(
                "cluster {} has no {} members (members: {})",
                view.scope,
                role.as_str(),
                view.member_names()
            );
        }
        self.print_table(view)?;
        let mut chosen: Vec<String> = Vec::new();
        for n in names {
            if !view.cluster.members.contains_key(n) {
                bail!("unknown member {n:?} (members: {})", view.member_names());
            }
            if cand_names.contains(n) && !chosen.contains(n) {
                chosen.push(n.clone());
            }
        }
        if !names.is_empty() && chosen.is_empty() {
            bail!(
                "no {} among the named members {} ({} members: {})",
                role.as_str(),
                names.join(", "),
                role.as_str(),
                if cand_names.is_empty() {
                    "none".to_string()
                } else {
                    cand_names.join(", ")
                }
            );
        }
        if names.is_empty() && action != "reinitialize" {
            chosen = cand_names.clone();
        }
        if chosen.is_empty() {
            if force {
                bail!("name the member(s) to {action}");
            }
            let answer = self.io.prompt(
                &format!(
                    "Which member do you want to {action} [{}]?",
                    cand_names.join(", ")
                ),
                Some(""),
            )?;
            if !cand_names.contains(&answer) {
                bail!(
                    "{answer:?} is not a {} member of cluster {} (candidates: {})",
                    role.as_str(),
                    view.scope,
                    cand_names.join(", ")
                );
            }
            chosen.push(answer);
        }
        let selected: Vec<(String, Member)> = candidates
            .into_iter()
            .filter(|(n, _)| chosen.contains(n))
            .collect();
        if confirm {
            self.confirm_members(&selected, force, action, None, false)?;
        }
        Ok(selected)
    }

    fn confirm_members(
        &mut self,
        members: &[(String, Member)],
        force: bool,
        action: &str,
        scheduled_at: Option<&str>,
        pending: bool,
    ) -> Result<()> {
        if force {
            return Ok(());
        }
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        let question = match (scheduled_at, pending) {
            (Some(_), true) => "The nodes needing a restart will be identified at the scheduled \
                                time, and might be different from the ones showing pending \
                                restart right now. Is this fine?"
                .to_string(),
            (Some(at), false) => format!(
                "Are you sure you want to schedule {action} of members {} at {at}?",
                names.join(", ")
            ),
            (None, _) => format!(
                "Are you sure you want to {action} members {}?",
                names.join(", ")
            ),
        };
        if !self.io.confirm(&question)? {
            bail!(
                "aborted {}{action}",
                if scheduled_at.is_some() {
                    "scheduled "
                } else {
                    ""
                }
            );
        }
        Ok(())
    }

    pub async fn restart(&mut self, a: RestartArgs) -> Result<()> {
        let view = self.read_existing(&a.cluster_name).await?;
        let mut members = self
            .select_members(&view, &a.member_names, a.role, "restart", a.force, false)
            .await?;
        let when = match a.scheduled.clone() {
            Some(s) => s,
            None if a.force => "now".to_string(),
            None => {
                let example = (Local::now() + chrono::Duration::hours(1))
                    .format("%Y-%m-%dT%H:%M")
                    .to_string();
                self.io.prompt(
                    &format!("When should the restart take place (e.g. {example}) "),
                    Some("now"),
                )?
            }
        };
        let schedule = parse_scheduled(Some(&when))?;
        let mut req = RestartRequest {
            role: api_role(a.role).map(str::to_string),
            timeout: a.timeout.clone().map(Timeout::Text),
            restart_pending: a.pending,
            ..RestartRequest::default()
        };
        if a.pending && schedule.is_none() {
            // Who needs a restart at a scheduled time is decided then, by the agent.
            members.retain(|(_, m)| m.pending_restart.unwrap_or(false));
        }
        if a.any && members.len() > 1 {
            let i = random_index(members.len());
            members = vec![members.swap_remove(i)];
        }
        if members.is_empty() {
            self.io.println("No member needs a restart")?;
            return Ok(());
        }
        self.confirm_members(&members, a.force, "restart", schedule.as_deref(), a.pending)?;
        let version = match a.pg_version.clone() {
            Some(v) => Some(v),
            None if a.force => None,
            None => Some(self.io.prompt(
                "Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ",
                Some(""),
            )?),
        };
        if let Some(v) = version.filter(|v| !v.is_empty()) {
            check_pg_version(&v)?;
            req.postgres_version = Some(v);
        }
        if schedule.is_some() && view.cluster.is_paused() {
            bail!("can't schedule restart in the paused state");
        }
        req.schedule = schedule;
        // An immediate restart is answered when it is done; give the agent the
        // restart's own timeout and then some.
        let timeout = req
            .timeout_duration()
            .map_or(self.timing.action_timeout, |t| {
                (t + Duration::from_secs(30)).max(self.timing.action_timeout)
            });
        let body = api::restart_body(&req);
        let mut failed = Vec::new();
        for (name, m) in &members {
            if req.schedule.is_some() && a.force && m.scheduled_restart.is_some() {
                // --force replaces a restart already scheduled there.
                match self
                    .api
                    .call(Method::DELETE, name, &m.api_url, "restart", None, None)
                    .await
                {
                    Ok(r) if r.status >= 400 => {
                        self.io
                            .println(api::failed_line("flush scheduled restart", name, &r))?;
                    }
                    Ok(_) => {}
                    Err(e) => self.io.println(format!(
                        "Failed: flush scheduled restart for member {name}: {e}"
                    ))?,
                }
            }
            let line = match self
                .api
                .call(
                    Method::POST,
                    name,
                    &m.api_url,
                    "restart",
                    Some(&body),
                    Some(timeout),
                )
                .await
            {
                Ok(r) => {
                    let (ok, line) = api::restart_outcome(name, &r);
                    if !ok {
                        failed.push(name.clone());
                    }
                    line
                }
                Err(e) => {
                    failed.push(name.clone());
                    format!("Failed: restart for member {name}: {e}")
                }
            };
            self.io.println(line)?;
        }
        if !failed.is_empty() {
            bail!(
                "restart failed on {} of {} members ({})",
                failed.len(),
                members.len(),
                failed.join(", ")
            );
        }
        Ok(())
    }

    pub async fn reinit(&mut self, a: ReinitArgs) -> Result<()> {
        let view = self.read_existing(&a.cluster_name).await?;
        let members = self
            .select_members(
                &view,
                &a.member_names,
                RoleFilter::Replica,
                "reinitialize",
                a.force,
                true,
            )
            .await?;
        let mut failed = Vec::new();
        let mut waiting = Vec::new();
        for (name, m) in &members {
            let before = self.postmaster_start(name, &m.api_url).await;
            let mut force = a.force;
            loop {
                let body = api::reinitialize_body(force, a.from_leader);
                let r = match self
                    .api
                    .call(
                        Method::POST,
                        name,
                        &m.api_url,
                        "reinitialize",
                        Some(&body),
                        None,
                    )
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        self.io
                            .println(format!("Failed: reinitialize for member {name}: {e}"))?;
                        failed.push(name.clone());
                        break;
                    }
                };
                let (ok, line) = api::generic_outcome("reinitialize", name, &r);
                self.io.println(line)?;
                if !ok
                    && r.text().ends_with("already in progress")
                    && !force
                    && self
                        .io
                        .confirm("Do you want to cancel it and reinitialize anyway?")?
                {
                    force = true;
                    continue;
                }
                if ok {
                    waiting.push((name.clone(), m.api_url.clone(), before));
                } else {
                    failed.push(name.clone());
                }
                break;
            }
        }
        if a.wait && !waiting.is_empty() {
            self.wait_reinit(&a.cluster_name, waiting, &mut failed)
                .await?;
        }
        if !failed.is_empty() {
            bail!("reinitialize failed on {}", failed.join(", "));
        }
        Ok(())
    }

    /// `postmaster_start_time` from `/patroni`: a new one means PostgreSQL came back.
    async fn postmaster_start(&self, name: &str, api_url: &str) -> Option<String> {
        let r = self
            .api
            .call(Method::GET, name, api_url, "patroni", None, None)
            .await
            .ok()?;
        serde_json::from_slice::<PatroniStatus>(&r.body)
            .ok()?
            .postmaster_start_time
    }

    /// Waits until each reinitialized member runs again with a new postmaster (or
    /// after having been seen not running), or reports a failure state.
    async fn wait_reinit(
        &mut self,
        scope: &str,
        mut waiting: Vec<(String, String, Option<String>)>,
        failed: &mut Vec<String>,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.timing.reinit_deadline;
        let mut seen_down: Vec<String> = Vec::new();
        let mut shown = String::new();
        while !waiting.is_empty() {
            let names: Vec<&str> = waiting.iter().map(|(n, _, _)| n.as_str()).collect();
            let list = names.join(", ");
            if list != shown {
                self.io
                    .println(format!("Waiting for reinitialize to complete on: {list}"))?;
                shown = list;
            }
            tokio::time::sleep(self.timing.poll).await;
            let view = self.read(scope).await?;
            let mut still = Vec::new();
            for (name, url, before) in waiting {
                let state = view.cluster.member(&name).map(|m| m.state.clone());
                let now = self.postmaster_start(&name, &url).await;
                match state {
                    Some(s) if s.is_failure() => {
                        self.io
                            .println(format!("Reinitialize failed on: {name} (state: {s})"))?;
                        failed.push(name);
                    }
                    Some(MemberState::Running)
                        if seen_down.contains(&name) || (now.is_some() && now != before) =>
                    {
                        self.io
                            .println(format!("Reinitialize is completed on: {name}"))?;
                    }
                    other => {
                        if other != Some(MemberState::Running) && !seen_down.contains(&name) {
                            seen_down.push(name.clone());
                        }
                        still.push((name, url, before));
                    }
                }
            }
            waiting = still;
            if !waiting.is_empty() && tokio::time::Instant::now() >= deadline {
                let names: Vec<String> = waiting.into_iter().map(|(n, _, _)| n).collect();
                bail!(
                    "reinitialize still not complete after {} s on {}; it goes on in the agent",
                    self.timing.reinit_deadline.as_secs(),
                    names.join(", ")
                );
            }
        }
        Ok(())
    }

    pub async fn reload(&mut self, a: ReloadArgs) -> Result<()> {
        let view = self.read_existing(&a.cluster_name).await?;
        let members = self
            .select_members(&view, &a.member_names, a.role, "reload", a.force, true)
            .await?;
        let loop_wait = view.cluster.dynamic_config().loop_wait;
        let mut failed = Vec::new();
        for (name, m) in &members {
            let line = match self
                .api
                .call(Method::POST, name, &m.api_url, "reload", None, None)
                .await
            {
                Ok(r) => {
                    let (ok, line) = api::reload_outcome(name, &r, loop_wait);
                    if !ok {
                        failed.push(name.clone());
                    }
                    line
                }
                Err(e) => {
                    failed.push(name.clone());
                    format!("Failed: reload for member {name}: {e}")
                }
            };
            self.io.println(line)?;
        }
        if !failed.is_empty() {
            bail!("reload failed on {}", failed.join(", "));
        }
        Ok(())
    }
}

/// A uniformly drawn index below `n` for `restart --any`, from the standard library's
/// randomly keyed hasher (no random-number crate needed for one draw).
fn random_index(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_timestamps() {
        assert_eq!(parse_scheduled(None).unwrap(), None);
        assert_eq!(parse_scheduled(Some("now")).unwrap(), None);
        assert_eq!(parse_scheduled(Some("")).unwrap(), None);
        assert_eq!(
            parse_scheduled(Some("2030-01-31T14:30:00+01:00"))
                .unwrap()
                .as_deref(),
            Some("2030-01-31T14:30:00+01:00")
        );
        assert_eq!(
            parse_scheduled(Some("2030-01-31T14:30:00Z"))
                .unwrap()
                .as_deref(),
            Some("2030-01-31T14:30:00+00:00")
        );
        // No offset: local time, sent with the local offset.
        let local = parse_scheduled(Some("2030-01-31T14:30")).unwrap().unwrap();
        let back = DateTime::parse_from_rfc3339(&local).unwrap();
        assert_eq!(back.naive_local().to_string(), "2030-01-31 14:30:00");
        assert!(parse_scheduled(Some("2030-01-31 14:30")).unwrap().is_some());
        let e = parse_scheduled(Some("tomorrow")).unwrap_err().to_string();
        assert!(e.contains("\"tomorrow\"") && e.contains("ISO 8601"), "{e}");
    }

    #[test]
    fn pg_versions_and_roles() {
        for ok in ["15.8", "9.6.24", "16.0"] {
            check_pg_version(ok).unwrap();
        }
        for bad in ["15", "15.x", "1.2.3.4", ""] {
            assert!(check_pg_version(bad).is_err(), "{bad}");
        }
        assert_eq!(api_role(RoleFilter::Standby), Some("replica"));
        assert_eq!(api_role(RoleFilter::Any), None);
        assert!(MemberState::StartFailed.is_failure() && MemberState::Crashed.is_failure());
        assert!(MemberState::parse("custom bootstrap failed").is_failure());
        assert!(!MemberState::CreatingReplica.is_failure());
        for n in [1, 2, 7] {
            assert!(random_index(n) < n);
        }
    }
}
