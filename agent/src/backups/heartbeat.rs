//! Starts and stops the heartbeat writer (`warden_backup::heartbeat`) after each turn
//! report: it runs only while we hold the leader key and our PostgreSQL is a writable
//! primary.

use super::{Supervisor, TurnReport};
use warden_backup::heartbeat::{self, Heartbeat};

impl Supervisor {
    pub(super) fn heartbeat_turn(&mut self, r: &TurnReport) {
        let every = self.cfg().backup.as_ref().and_then(|b| b.heartbeat);
        let writable = r
            .probe
            .as_ref()
            .is_some_and(crate::probe::ServerProbe::is_primary);
        match every {
            Some(every) if r.holds_leader && writable => {
                if self.heartbeat.is_none() {
                    let conn =
                        heartbeat::conn_string(&self.parts.settings.local_conn_string(), every);
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
