//! Publishing what we are: the `members/<name>` key (under our lease) and the cached
//! status the REST API serves.

use super::observation::Local;
use super::run::Agent;
use super::LocalEngine;
use crate::probe::EngineFacts;
use serde_json::{json, Value};
use warden_api::PATRONI_COMPAT_VERSION;
use warden_consensus::types::Role;
use warden_consensus::Cluster;
use warden_ha::DataState;
use warden_ha::Engine as _;

impl<D: LocalEngine> Agent<D> {
    fn role_of(&self, local: &Local<D::Facts>) -> Role {
        match (local.db(), local.data) {
            (Some(d), _) if d.writable => Role::Primary,
            (Some(_), _) if self.holds_leader && self.standby_cluster => Role::StandbyLeader,
            (Some(_), _) => Role::Replica,
            (None, DataState::Initialized) => {
                if local.was_primary {
                    Role::Demoted
                } else {
                    Role::Replica
                }
            }
            (None, _) => Role::Uninitialized,
        }
    }

    pub(super) fn member_json(&self, local: &Local<D::Facts>) -> Value {
        let mut m = json!({
            "conn_url": self.cfg.conn_url(),
            "api_url": self.cfg.restapi.api_url(),
            "state": self.state,
            "role": self.role_of(local).as_str(),
            "version": PATRONI_COMPAT_VERSION,
            "warden_version": env!("CARGO_PKG_VERSION"),
        });
        if crate::backups::may_archive(&self.cfg) {
            m[crate::backups::MEMBER_FIELD] = json!(true);
        }
        if let Some(addr) = crate::redis_mode::sentinel_address(&self.cfg) {
            m[crate::redis_mode::SENTINEL_FIELD] = json!(addr);
        }
        let tags = self.cfg.tags.to_member_json();
        if !tags.is_empty() {
            m["tags"] = Value::Object(tags);
        }
        for (k, v) in local.engine.member_fields() {
            m[k] = v;
        }
        let s = self.shared.snapshot();
        if let Some(r) = &s.scheduled_restart {
            m["scheduled_restart"] = r.to_member_json();
        }
        if s.paused() {
            m["pause"] = json!(true);
        }
        m
    }

    /// Writes our member key when it changed (it lives as long as our lease), and
    /// refreshes the cached status.
    pub(super) async fn publish(
        &mut self,
        cluster: Option<&Cluster>,
        local: &Local<D::Facts>,
        note: &str,
    ) {
        let is_leader = self.holds_leader;
        // Without a DCS view this turn, keep the token we last published while we lead.
        let previous = self.shared.snapshot().fencing_token;
        let token = match cluster {
            Some(c) => c
                .leader
                .as_ref()
                .filter(|l| is_leader && l.name == self.cfg.name)
                .map(|l| l.create_revision),
            None => previous.filter(|_| is_leader),
        };
        let dynamic = self.dynamic(cluster);
        let ttl = dynamic.ttl_duration();
        if cluster.is_some() {
            self.standby_cluster =
                dynamic.is_standby_cluster() && local.engine.supports_standby_cluster();
        }
        let role = self.role_of(local);
        let state = self.state.clone();
        let server_pid = self.db.server_pid();
        self.shared.update(|s| {
            s.state = state;
            s.role = role;
            s.running = local.running;
            s.server_pid = server_pid;
            s.probe = local.engine.probe();
            s.system_identifier.clone_from(&local.system_identifier);
            s.is_leader = is_leader;
            s.fencing_token = token;
            s.ttl = ttl;
            s.note = note.to_string();
            s.last_turn = Some(std::time::Instant::now());
            if let Some(c) = cluster {
                let mut c = c.clone();
                // No `config` key: the API answers from the configuration we run with
                // (Patroni's global config falls back to the local one), so a standby
                // leader stays `/standby-leader` while the key is missing.
                c.config.get_or_insert_with(|| warden_consensus::Versioned {
                    value: dynamic.clone(),
                    mod_revision: 0,
                });
                s.cluster = Some(std::sync::Arc::new(c));
                s.dcs_last_seen = Some(chrono::Utc::now().timestamp());
            }
        });
        // After the cached status: the member JSON reads the pause flag from it.
        self.write_member(local).await;
    }

    /// Publishes a state change (e.g. "creating replica") before a long job starts.
    pub(super) async fn publish_state(&mut self) {
        let local = Local {
            data: self.db.data_state(),
            system_identifier: self.system_identifier.clone(),
            was_primary: false,
            running: false,
            engine: D::Facts::busy(self.rewound),
        };
        self.write_member(&local).await;
        let state = self.state.clone();
        self.shared.update(|s| s.state = state);
    }

    async fn write_member(&mut self, local: &Local<D::Facts>) {
        let Some((lease, _)) = self.lease else { return };
        let body = self.member_json(local).to_string();
        if self
            .last_member
            .as_ref()
            .is_some_and(|(l, b)| *l == lease.0 && *b == body)
        {
            return;
        }
        match self
            .dcs
            .put(
                &self.keys.member(&self.cfg.name),
                body.clone().into_bytes(),
                Some(lease),
            )
            .await
        {
            Ok(()) => self.last_member = Some((lease.0, body)),
            Err(e) => tracing::warn!(error = %e, "cannot update our member key"),
        }
    }
}
