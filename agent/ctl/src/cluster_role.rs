//! `promote-cluster` and `demote-cluster` (patronictl 4's commands and flags): remove
//! or set the dynamic config's `standby_cluster` through the leader's `PATCH /config`,
//! then follow the leader's role in the DCS until it changed (bounded by `--timeout`).
//!
//! Unlike patronictl, both refuse without `--force` what could lose data:
//! `promote-cluster` while the standby leader still streams from the remote primary
//! (two writable sites) or cannot say how far behind it is; `demote-cluster` when the
//! new remote does not hold everything this cluster's primary wrote (pg_rewind would
//! discard it). `--force` also skips the confirmation, as patronictl's.

use super::api;
use super::{Ctl, View};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::time::Duration;
use warden_api::client::Method;
use warden_api::PatroniStatus;

#[derive(Debug, Args)]
pub struct PromoteClusterArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// Do not ask for confirmation, and promote even if the remote primary still runs
    /// or the standby leader's lag is unknown.
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the leader to run as a primary.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct DemoteClusterArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// Address of the remote node (the new primary cluster's primary).
    #[arg(long)]
    pub host: Option<String>,
    /// Port of the remote node.
    #[arg(long)]
    pub port: Option<u16>,
    /// Command to restore WAL records from the remote primary.
    #[arg(long = "restore-command")]
    pub restore_command: Option<String>,
    /// Name of the slot on the remote node to use for replication.
    #[arg(long = "primary-slot-name")]
    pub primary_slot_name: Option<String>,
    /// Do not ask for confirmation, and demote even if the remote does not hold every
    /// write of this cluster (they are rewound away).
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the leader to run as the standby leader.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

impl Ctl<'_> {
    pub async fn promote_cluster(&mut self, a: PromoteClusterArgs) -> Result<()> {
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        let view = self.read_existing(&scope).await?;
        let leader = leader_of(&view, "promotion")?;
        if !view.cluster.dynamic_config().is_standby_cluster() {
            bail!("Cluster is already in the required state (not a standby cluster)");
        }
        match self.promotion_risk(&view, &leader).await {
            Some(risk) if !a.force => {
                bail!("refusing to promote {scope}: {risk}; use --force to promote anyway")
            }
            Some(risk) => self.io.warn(format!("promoting despite: {risk}"))?,
            None => {}
        }
        self.change_role(&view, &leader, Value::Null, a.force, "primary", a.timeout)
            .await
    }

    pub async fn demote_cluster(&mut self, a: DemoteClusterArgs) -> Result<()> {
        if a.host.is_none() && a.port.is_none() && a.restore_command.is_none() {
            bail!("At least --host, --port or --restore-command should be specified");
        }
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        let view = self.read_existing(&scope).await?;
        let leader = leader_of(&view, "demotion")?;
        if view.cluster.dynamic_config().is_standby_cluster() {
            bail!("Cluster is already in the required state (a standby cluster)");
        }
        let mut section = serde_json::Map::new();
        for (k, v) in [
            ("host", a.host.clone().map(Value::from)),
            ("port", a.port.map(Value::from)),
            (
                "primary_slot_name",
                a.primary_slot_name.clone().map(Value::from),
            ),
            (
                "restore_command",
                a.restore_command.clone().map(Value::from),
            ),
        ] {
            if let Some(v) = v {
                section.insert(k.into(), v);
            }
        }
        let risk = match &a.host {
            Some(host) => {
                self.demotion_risk(&view, &leader, host, a.port.unwrap_or(5432))
                    .await
            }
            None => {
                Some("no --host: cannot check that the remote holds this cluster's writes".into())
            }
        };
        match risk {
            Some(risk) if !a.force => {
                bail!("refusing to demote {scope}: {risk}; use --force to demote anyway")
            }
            Some(risk) => self.io.warn(format!("demoting despite: {risk}"))?,
            None => {}
        }
        self.change_role(
            &view,
            &leader,
            Value::Object(section),
            a.force,
            "standby_leader",
            a.timeout,
        )
        .await
    }

    /// Why promoting the standby cluster now could lose data or split writes, if so.
    async fn promotion_risk(&mut self, view: &View, leader: &str) -> Option<String> {
        let status = match self.member_status(view, leader).await {
            Ok(s) => s,
            Err(e) => return Some(format!("the standby leader's lag is unknown ({e:#})")),
        };
        let Some(sc) = status.standby_cluster else {
            return Some(format!(
                "the standby leader's lag is unknown ({leader} reports no standby_cluster status; role {})",
                status.role
            ));
        };
        let remote = sc.remote.as_deref().unwrap_or("the remote primary");
        if sc.streaming {
            return Some(format!(
                "{leader} still streams from {remote}: the remote primary is reachable and \
                 running, and promoting would leave two writable sites"
            ));
        }
        match (sc.lag_bytes, sc.lag_seconds) {
            (Some(b), s) => {
                let _ = self.io.println(format!(
                    "standby leader {leader}: {b} bytes behind {remote}'s last reported position{}",
                    s.map(|s| format!(" ({s:.1} s)")).unwrap_or_default()
                ));
                None
            }
            (None, Some(s)) if sc.remote.is_none() => {
                // Fed from an archive only: no receiver to say where the remote is, nor
                // whether it still runs.
                let _ = self.io.println(format!(
                    "standby leader {leader}: newest replayed transaction {s:.1} s old; it does \
                     not stream, so the remote primary's liveness cannot be checked"
                ));
                None
            }
            (None, _) => Some(format!(
                "the standby leader's lag is unknown ({leader} never heard from {remote})"
            )),
        }
    }

    /// Why making this cluster follow `host:port` could rewind away its writes, if so.
    async fn demotion_risk(
        &mut self,
        view: &View,
        leader: &str,
        host: &str,
        port: u16,
    ) -> Option<String> {
        let mine = match self.member_status(view, leader).await {
            Ok(s) => s,
            Err(e) => return Some(format!("cannot read {leader}'s position ({e:#})")),
        };
        let (Some(my_lsn), Some(my_tl)) = (mine.wal_position(), mine.timeline) else {
            return Some(format!("{leader} reports no WAL position or timeline"));
        };
        let remote = match self.wal_place(host, port).await {
            Ok(r) => r,
            Err(e) => {
                return Some(format!(
                    "cannot tell whether {host}:{port} holds this cluster's writes ({e:#})"
                ))
            }
        };
        let _ = self.io.println(format!(
            "this cluster: {leader} at {} on timeline {my_tl}; remote {host}:{port}: {} at {} on timeline {}",
            lsn_text(my_lsn),
            if remote.in_recovery { "standby" } else { "primary" },
            lsn_text(remote.lsn),
            remote.timeline
        ));
        divergence(my_tl, my_lsn, &remote)
    }

    /// `GET /patroni` of `member`.
    async fn member_status(&self, view: &View, member: &str) -> Result<PatroniStatus> {
        let url = view
            .cluster
            .member(member)
            .map(|m| m.api_url.clone())
            .unwrap_or_default();
        let r = self
            .api
            .call(Method::GET, member, &url, "patroni", None, None)
            .await?;
        let body: Value = serde_json::from_slice(&r.body)
            .with_context(|| format!("{member}'s /patroni is not JSON"))?;
        Ok(PatroniStatus::from_json(&body)?)
    }

    /// Confirms, sends `{"standby_cluster": section}` to the leader, and follows the
    /// leader's role in the DCS until it is `want` (or `timeout` seconds passed).
    async fn change_role(
        &mut self,
        view: &View,
        leader: &str,
        section: Value,
        force: bool,
        want: &str,
        timeout: u64,
    ) -> Result<()> {
        let (verb, stem) = if section.is_null() {
            ("promote", "promot")
        } else {
            ("demote", "demot")
        };
        if !force
            && !self.io.confirm(&format!(
                "Are you sure you want to {verb} {} cluster?",
                view.scope
            ))?
        {
            bail!("Aborted cluster {stem}ion");
        }
        let url = view
            .cluster
            .member(leader)
            .map(|m| m.api_url.clone())
            .unwrap_or_default();
        let body = json!({ "standby_cluster": section });
        let r = self
            .api
            .call(Method::PATCH, leader, &url, "config", Some(&body), None)
            .await
            .with_context(|| format!("Failed to {verb} {} cluster", view.scope))?;
        if r.status != 200 {
            bail!(
                "Failed to {verb} {} cluster: /config PATCH status code={}, ({})",
                view.scope,
                r.status,
                api::failure_detail(&r)
            );
        }
        self.io.println(format!(
            "{stem}ing {}: waiting for the leader's role to become {want}",
            view.scope
        ))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut last = String::new();
        loop {
            let now = self.read(&view.scope).await?;
            let leader = now.cluster.leader_name().map(str::to_string);
            let role = leader
                .as_deref()
                .and_then(|l| now.cluster.member(l))
                .map(|m| format!("{} ({})", m.role.as_str(), m.state));
            let line = match (&leader, &role) {
                (Some(l), Some(r)) => format!("leader {l}: {r}"),
                (Some(l), None) => format!("leader {l}: no member key"),
                _ => "no leader".to_string(),
            };
            if line != last {
                self.io.println(format!("  {line}"))?;
                last = line;
            }
            let done = leader
                .as_deref()
                .and_then(|l| now.cluster.member(l))
                .is_some_and(|m| m.role.as_str() == want && m.state.is_running());
            if done {
                return self.io.println(format!(
                    "Cluster {} {stem}ed: the leader runs as {want}",
                    view.scope
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} was not {stem}ed within {timeout}s (last seen: {last}); the change is in \
                     the config and may still complete",
                    view.scope
                );
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }
}

fn leader_of(view: &View, what: &str) -> Result<String> {
    view.cluster
        .leader_name()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("Cluster has no leader, {what} is not possible"))
}

fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Whether following `remote` would rewind away WAL this cluster's primary wrote (on
/// timeline `my_tl`, up to `my_lsn`): the same timeline and behind us, or a timeline
/// that forked off ours before our position, or a history that does not contain ours.
pub fn divergence(my_tl: u32, my_lsn: u64, remote: &super::query::WalPlace) -> Option<String> {
    if remote.timeline == my_tl {
        return (remote.lsn < my_lsn).then(|| {
            format!(
                "the new remote is behind this cluster's primary by {} bytes on the same \
                 timeline: those writes would be discarded",
                my_lsn - remote.lsn
            )
        });
    }
    if remote.timeline < my_tl {
        return Some(format!(
            "the new remote is on timeline {}, older than this cluster's {my_tl}: it does \
             not hold this cluster's history",
            remote.timeline
        ));
    }
    let Some(history) = &remote.history else {
        return Some(format!(
            "cannot read the remote's timeline {} history to find where it forked from \
             timeline {my_tl}",
            remote.timeline
        ));
    };
    let fork = history.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let parent: u32 = f.next()?.parse().ok()?;
        let switch = super::query::parse_lsn(f.next()?)?;
        (parent == my_tl).then_some(switch)
    });
    match fork {
        None => Some(format!(
            "the remote's history does not contain this cluster's timeline {my_tl}"
        )),
        Some(at) if my_lsn > at => Some(format!(
            "this cluster's primary wrote {} bytes of WAL past the point where the remote \
             forked off timeline {my_tl} ({}): pg_rewind would discard them (at least a \
             checkpoint; possibly acknowledged writes)",
            my_lsn - at,
            lsn_text(at)
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::WalPlace;

    fn place(timeline: u32, lsn: u64, history: Option<&str>) -> WalPlace {
        WalPlace {
            in_recovery: false,
            lsn,
            timeline,
            history: history.map(str::to_string),
        }
    }

    #[test]
    fn divergence_rules() {
        // Same timeline: behind us loses data, ahead does not.
        assert!(divergence(2, 100, &place(2, 50, None)).is_some());
        assert!(divergence(2, 100, &place(2, 100, None)).is_none());
        // Forked off our timeline after our position: nothing of ours is lost.
        let h = "1\t0/3000000\tno recovery target specified\n";
        assert!(divergence(1, 0x2F0_0000, &place(2, 0x500_0000, Some(h))).is_none());
        // Forked before our position: our tail would be rewound away.
        let why = divergence(1, 0x310_0000, &place(2, 0x500_0000, Some(h))).unwrap();
        assert!(
            why.contains("past the point where the remote forked"),
            "{why}"
        );
        // Unknown history, older or unrelated timeline.
        assert!(divergence(1, 1, &place(2, 5, None)).is_some());
        assert!(divergence(3, 1, &place(2, 5, Some(h))).is_some());
        assert!(divergence(4, 1, &place(5, 5, Some(h))).is_some());
    }
}
