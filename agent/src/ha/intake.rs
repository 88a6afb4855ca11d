//! Operator requests reaching the loop between turns: the API's queued requests
//! (restart, reinitialize, reload), `SIGHUP` / `POST /reload` re-reading the config
//! file, and the next scheduled action to wake up for.

use super::observation::{Local, ManualTask};
use super::request::{self, Kind, Reply, Request};
use super::run::Agent;
use super::LocalEngine;
use crate::probe::{EngineFacts as _, ServerProbe};
use std::sync::Arc;
use tokio::sync::oneshot;
use warden_consensus::Cluster;

impl<D: LocalEngine> Agent<D> {
    /// The earliest scheduled switchover (if we lead) or restart, to wake up for.
    pub(super) fn next_scheduled(
        &self,
        cluster: Option<&Cluster>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let restart = self.shared.snapshot().scheduled_restart.map(|r| r.at);
        let switchover = cluster
            .filter(|c| c.leader_name() == Some(self.cfg.name.as_str()))
            .and_then(|c| c.failover.as_ref())
            .and_then(|f| f.value.scheduled_at.as_deref())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        [restart, switchover].into_iter().flatten().min()
    }

    /// Picks up at most one operator request (or a due scheduled restart) and turns it
    /// into a task for the decision, answering refusals at once. A reload is carried out
    /// here and does not count as a task.
    pub(super) async fn take_request(
        &mut self,
        cluster: Option<&Cluster>,
        local: &Local<D::Facts>,
    ) -> (
        Option<ManualTask>,
        Option<(oneshot::Sender<Reply>, ManualTask)>,
    ) {
        if let Some(rx) = self.requests.as_mut() {
            while let Ok(r) = rx.try_recv() {
                self.incoming.push(r);
            }
        }
        if let Some(pos) = self.incoming.iter().position(|r| r.kind == Kind::Reload) {
            self.incoming.remove(pos);
            self.reload_config();
        }
        let mut req = if self.incoming.is_empty() {
            None
        } else {
            Some(self.incoming.remove(0))
        };
        if req.is_none() {
            let due = self
                .shared
                .snapshot()
                .scheduled_restart
                .filter(|r| r.at <= chrono::Utc::now());
            if let Some(r) = due {
                self.shared.update(|s| s.scheduled_restart = None);
                tracing::info!(at = %r.at, "running the scheduled restart");
                req = Some(Request {
                    kind: Kind::Restart(r.spec),
                    reply: None,
                });
            }
        }
        let Some(Request { kind, reply }) = req else {
            return (None, None);
        };
        let refuse = |reply: Option<oneshot::Sender<Reply>>, status: u16, msg: String| {
            tracing::info!(reason = %msg, "operator request refused");
            if let Some(tx) = reply {
                let _ = tx.send(Err((status, msg)));
            }
        };
        let task = match kind {
            Kind::Reload => {
                self.reload_config();
                return (None, None);
            }
            Kind::Restart(spec) => {
                let probe = local.engine.probe();
                let is_primary = probe.as_ref().is_some_and(ServerProbe::is_primary);
                let facts = request::LocalFacts {
                    is_primary,
                    is_standby_leader: !is_primary && self.holds_leader && self.standby_cluster,
                    server_version: probe.as_ref().and_then(ServerProbe::server_version),
                    pending_restart: probe.as_ref().is_some_and(ServerProbe::pending_restart),
                };
                if let Some(why) = request::restart_refusal(&spec, facts) {
                    tracing::info!(reason = %why, "restart filters not met");
                    refuse(reply, 503, "restart conditions are not satisfied".into());
                    return (None, None);
                }
                ManualTask::Restart {
                    timeout: spec.timeout,
                }
            }
            Kind::Reinitialize { from_leader } => {
                let Some(c) = cluster else {
                    refuse(
                        reply,
                        503,
                        "DCS is not accessible, can not reinitialize".into(),
                    );
                    return (None, None);
                };
                match request::reinit_source(&self.cfg.name, c, from_leader) {
                    Ok(from) => ManualTask::Reinitialize { from },
                    Err(why) => {
                        refuse(reply, 503, why);
                        return (None, None);
                    }
                }
            }
        };
        let reply = reply.map(|tx| (tx, task.clone()));
        (Some(task), reply)
    }

    /// Re-reads the config file and applies what can change on a running agent: local
    /// PostgreSQL parameters and pg_hba (written and reloaded by the next turn), tags,
    /// callbacks and REST API credentials. Identity settings need a restart.
    pub(super) fn reload_config(&mut self) {
        let Some(path) = self.config_path.clone() else {
            tracing::info!("reload requested, but the agent has no config file to re-read");
            return;
        };
        let new = match warden_config::load(&path) {
            Ok(l) => l.config,
            Err(e) => {
                tracing::error!(error = %e, "reload: the config file is invalid; keeping the running configuration");
                return;
            }
        };
        let old = &self.cfg;
        let fixed = [
            ("name", old.name != new.name),
            ("scope", old.scope != new.scope),
            ("namespace", old.namespace != new.namespace),
            // PostgreSQL's or Redis's: where the server keeps its data and listens
            // (and which of the two it is).
            (
                "postgresql or redis",
                engine_fixed(&old.engine) != engine_fixed(&new.engine),
            ),
            ("restapi.listen", old.restapi.listen != new.restapi.listen),
            ("etcd3.hosts", old.etcd3.hosts != new.etcd3.hosts),
        ];
        for (key, changed) in fixed {
            if changed {
                tracing::warn!(key, "reload: this setting changes only when the agent restarts; keeping the running value");
            }
        }
        if fixed.iter().any(|(_, c)| *c) {
            return;
        }
        self.db.apply_local(&new);
        self.callbacks = super::callbacks::Callbacks::from_config(&new);
        let tags = new.tags.to_member_json();
        let auth = new.restapi.authentication.clone();
        self.shared.update(|s| {
            s.tags = tags;
            s.auth = auth;
        });
        if let Some(hook) = &self.on_reload {
            hook(&new);
        }
        self.cfg = Arc::new(new);
        if let Some(service) = &self.backups {
            service.set_config(self.cfg.clone());
        }
        // The backup supervisor sees the new config in the next turn's report and
        // reschedules its jobs.
        tracing::info!(path = %path.display(), "configuration reloaded");
    }
}

/// The engine settings a reload cannot change: the data directory and where the server
/// listens.
fn engine_fixed(e: &warden_config::EngineConfig) -> String {
    match e {
        warden_config::EngineConfig::Postgresql(p) => {
            format!(
                "postgresql {} {:?} {}",
                p.data_dir.display(),
                p.listen_hosts,
                p.port
            )
        }
        warden_config::EngineConfig::Redis(r) => {
            format!(
                "redis {} {} {}",
                r.data_dir.display(),
                r.listen_host,
                r.port
            )
        }
    }
}
