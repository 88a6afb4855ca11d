//! Starts and stops the heartbeat writer (`backup::heartbeat`) each turn: it runs only
//! while we hold the leader key and our PostgreSQL is a writable primary.

use super::observation::Local;
use super::run::Agent;
use warden_backup::heartbeat::{self, Heartbeat};

impl Agent {
    pub(super) fn heartbeat_turn(&mut self, local: &Local) {
        let every = self.cfg.backup.as_ref().and_then(|b| b.heartbeat);
        let writable = local.engine.probe.as_ref().is_some_and(|p| !p.in_recovery);
        match every {
            Some(every) if self.holds_leader && writable => {
                if self.heartbeat.is_none() {
                    let conn = heartbeat::conn_string(&self.pg.settings.local_conn_string(), every);
                    tracing::info!(every = ?every, "starting the heartbeat writer");
                    self.heartbeat = Some(Heartbeat::start(conn, every));
                }
            }
            _ => {
                if self.heartbeat.take().is_some() {
                    tracing::info!("stopped the heartbeat writer");
                }
            }
        }
    }
}
