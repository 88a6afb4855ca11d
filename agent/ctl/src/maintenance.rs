//! `pause`/`resume` and `flush`: requests any member's REST API serves, sent to the
//! leader first and to the others when it does not answer; a scheduled switchover
//! nobody can cancel over the API is cleared in the DCS.

use super::api;
use super::args::{FlushArgs, FlushTarget, PauseArgs};
use super::commands::timestamp;
use super::{Ctl, View};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::Duration;
use warden_api::client::Method;

impl Ctl<'_> {
    /// Members with a REST API, the leader first (where config changes and
    /// switchover cancellations are best sent).
    fn leader_first(view: &View) -> Vec<(String, String)> {
        let leader = view.cluster.leader_name();
        let mut out: Vec<(String, String)> = Vec::new();
        if let Some(l) = leader {
            if let Some(m) = view.cluster.member(l).filter(|m| !m.api_url.is_empty()) {
                out.push((l.to_string(), m.api_url.clone()));
            }
        }
        for (n, v) in &view.cluster.members {
            if Some(n.as_str()) != leader && !v.value.api_url.is_empty() {
                out.push((n.clone(), v.value.api_url.clone()));
            }
        }
        out
    }

    pub async fn toggle_pause(&mut self, a: PauseArgs, pause: bool) -> Result<()> {
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        let view = self.read_existing(&scope).await?;
        if view.cluster.is_paused() == pause {
            bail!(
                "Cluster is {} paused",
                if pause { "already" } else { "not" }
            );
        }
        let (verb, done) = if pause {
            ("pause", "paused")
        } else {
            ("resume", "resumed")
        };
        let body = json!({"pause": if pause { Value::Bool(true) } else { Value::Null }});
        let targets = Self::leader_first(&view);
        if targets.is_empty() {
            bail!(
                "no member of cluster {scope} publishes a REST API URL (members: {})",
                view.member_names()
            );
        }
        let mut unreachable = Vec::new();
        for (name, url) in &targets {
            match self
                .api
                .call(Method::PATCH, name, url, "config", Some(&body), None)
                .await
            {
                Err(e) => {
                    self.io
                        .warn(format!("member {name} is not accessible: {e}"))?;
                    unreachable.push(name.clone());
                }
                Ok(r) if r.status == 200 => {
                    if a.wait {
                        return self.wait_pause(&view, pause).await;
                    }
                    return self
                        .io
                        .println(format!("Success: cluster management is {done}"));
                }
                Ok(r) => bail!(
                    "{verb} cluster management failed: status code={}, ({})",
                    r.status,
                    api::failure_detail(&r)
                ),
            }
        }
        bail!(
            "can not find an accessible cluster member (tried {})",
            unreachable.join(", ")
        )
    }

    /// Polls the member keys until every member that was there reports the new state
    /// (`"pause": true` in its member JSON, or no such flag on resume).
    async fn wait_pause(&mut self, old: &View, pause: bool) -> Result<()> {
        self.io.println(format!(
            "'{}' request sent, waiting until it is recognized by all nodes",
            if pause { "pause" } else { "resume" }
        ))?;
        let names: Vec<String> = old
            .cluster
            .members
            .iter()
            .filter(|(_, v)| !v.value.api_url.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        let loop_wait = u64::from(old.cluster.dynamic_config().loop_wait);
        // Every agent acts on the change within one loop turn; two and some slack.
        let limit = Duration::from_secs(2 * loop_wait + 10);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let view = self.read(&old.scope).await?;
            let lagging: Vec<&str> = names
                .iter()
                .filter(|n| {
                    view.cluster
                        .member(n)
                        .is_some_and(|m| m.pause.unwrap_or(false) != pause)
                })
                .map(String::as_str)
                .collect();
            if lagging.is_empty() {
                return self.io.println(format!(
                    "Success: cluster management is {}",
                    if pause { "paused" } else { "resumed" }
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} did not recognize the {} state within {} seconds",
                    lagging.join(", "),
                    if pause { "pause" } else { "resume" },
                    limit.as_secs()
                );
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }

    pub async fn flush(&mut self, a: FlushArgs) -> Result<()> {
        let (names, target) = a.split().map_err(anyhow::Error::msg)?;
        let view = self.read_existing(&a.cluster_name).await?;
        match target {
            FlushTarget::Restart => {
                let members = self
                    .select_members(&view, &names, a.role, "flush", a.force, true)
                    .await?;
                let mut failed = Vec::new();
                for (name, m) in &members {
                    if m.scheduled_restart.is_none() {
                        self.io
                            .println(format!("No scheduled restart for member {name}"))?;
                        continue;
                    }
                    let line = match self
                        .api
                        .call(Method::DELETE, name, &m.api_url, "restart", None, None)
                        .await
                    {
                        Ok(r) => {
                            let (ok, line) =
                                api::generic_outcome("flush scheduled restart", name, &r);
                            if !ok {
                                failed.push(name.clone());
                            }
                            line
                        }
                        Err(e) => {
                            failed.push(name.clone());
                            format!("Failed: flush scheduled restart for member {name}: {e}")
                        }
                    };
                    self.io.println(line)?;
                }
                if !failed.is_empty() {
                    bail!("flush failed on {}", failed.join(", "));
                }
                Ok(())
            }
            FlushTarget::Switchover => {
                if !names.is_empty() {
                    bail!(
                        "flush switchover takes no member names (got {})",
                        names.join(", ")
                    );
                }
                let scheduled = view
                    .cluster
                    .failover
                    .as_ref()
                    .is_some_and(|f| f.value.scheduled_at.is_some());
                if !scheduled {
                    return self.io.println("No pending scheduled switchover");
                }
                for (name, url) in Self::leader_first(&view) {
                    match self
                        .api
                        .call(Method::DELETE, &name, &url, "switchover", None, None)
                        .await
                    {
                        Ok(r) if r.status == 200 => {
                            return self.io.println(format!("Success: {}", r.text()));
                        }
                        Ok(r) if r.status == 404 => {
                            self.io.println(format!("Failed: {}", r.text()))?;
                            bail!("no switchover was scheduled any more: {}", r.text());
                        }
                        Ok(r) => self.io.println(format!(
                            "Failed: member={name}, status_code={}, ({})",
                            r.status,
                            api::failure_detail(&r)
                        ))?,
                        Err(e) => self
                            .io
                            .warn(format!("member {name} is not accessible: {e}"))?,
                    }
                }
                self.io.println(format!(
                    "{} Could not find any accessible member of cluster {}, clearing the \
                     failover key in DCS",
                    timestamp(),
                    a.cluster_name
                ))?;
                self.clear_failover_key(&view).await
            }
        }
    }

    /// Cancels a scheduled switchover by writing `{}` to the `failover` key (how
    /// Patroni clears it), by compare-and-swap.
    async fn clear_failover_key(&mut self, view: &View) -> Result<()> {
        let key = view.keys.failover();
        let rev = view.raw(&key).map_or(0, |kv| kv.mod_revision);
        let dcs = self.dcs().await?;
        let ok = dcs
            .compare_and_swap(&key, b"{}".to_vec(), rev, None)
            .await
            .map_err(|e| self.dcs_error(&format!("writing {key}"), &e))?;
        if !ok {
            bail!("{key} changed concurrently since it was read; nothing was written, try again");
        }
        self.io.println(format!("Cleared {key}"))
    }
}
