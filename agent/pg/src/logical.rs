//! Permanent logical slots that survive a failover, as Patroni keeps them on
//! PostgreSQL 11 to 16 (which cannot create logical slots on a standby):
//!
//! - the primary creates each missing slot in its database, with its plugin;
//! - a replica copies a slot the leader reports in `/status` (so it has a position)
//!   by reading the slot's state file on the leader (`pg_read_binary_file`), and with
//!   its PostgreSQL stopped writing it into `pg_replslot` (fsynced, then renamed into
//!   place); PostgreSQL loads it at start;
//! - from then on the replica moves the slot forward with
//!   `pg_replication_slot_advance` to the leader's reported position, never past what
//!   it replayed, so after a promotion a consumer resumes where it had confirmed;
//! - replicas run with `hot_standby_feedback`, so the primary keeps the catalog rows
//!   the copied slot still needs.
//!
//! The limits are PostgreSQL's: a copy is as old as the last advance (a consumer that
//! confirmed more just before the failover gets those changes again), and a consumer
//! must reconnect to the new primary itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::slots::{logical_matches, PermanentSlot, SlotKind};
use crate::sql::{Probe, Sql};
use crate::{literal, PgError, Postgres, StopMode};

/// Bound for one query about a logical slot (an advance decodes WAL).
const SLOT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for stopping and starting the replica around a copy.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

impl Postgres {
    /// Where the leader's PostgreSQL listens, for copying logical slots from it
    /// (`None`: no leader known).
    pub fn set_leader_source(&mut self, leader: Option<(String, u16)>) {
        self.leader_source = leader;
    }

    pub(crate) async fn logical_slots(
        &mut self,
        wanted: &[&PermanentSlot],
        probe: &Probe,
        reported: Option<&BTreeMap<String, u64>>,
    ) -> Result<(), PgError> {
        if !probe.in_recovery {
            return self.create_logical_slots(wanted, probe).await;
        }
        let Some(reported) = reported else {
            return Ok(());
        };
        let mut to_copy = Vec::new();
        for w in wanted {
            let Some(&target) = reported.get(&w.name) else {
                // The leader has not reported a position for it yet: nothing to copy.
                continue;
            };
            match probe.slots.iter().find(|s| s.name == w.name) {
                Some(s) if logical_matches(s, w) => {
                    let target = target.min(probe.replay_lsn.unwrap_or(0));
                    if s.confirmed_flush.is_some_and(|c| c < target) {
                        self.advance_logical(w, target).await?;
                    }
                }
                Some(_) => {
                    tracing::warn!(slot = %w.name, "a slot with this name is not the permanent logical slot; replacing it");
                    self.drop_slot(&w.name).await?;
                    to_copy.push(w.name.clone());
                }
                None => to_copy.push(w.name.clone()),
            }
        }
        if !to_copy.is_empty() {
            self.copy_logical_slots(&to_copy).await?;
        }
        Ok(())
    }

    async fn create_logical_slots(
        &mut self,
        wanted: &[&PermanentSlot],
        probe: &Probe,
    ) -> Result<(), PgError> {
        for w in wanted {
            let SlotKind::Logical { database, plugin } = &w.kind else {
                continue;
            };
            match probe.slots.iter().find(|s| s.name == w.name) {
                Some(s) if logical_matches(s, w) => continue,
                Some(_) => {
                    tracing::warn!(slot = %w.name, "a slot with this name is not the permanent logical slot; replacing it");
                    self.drop_slot(&w.name).await?;
                }
                None => {}
            }
            let mut sql = Sql::new(
                self.settings.local_conn_string_to(database, true),
                SLOT_QUERY_TIMEOUT,
            );
            match sql
                .execute(&format!(
                    "SELECT pg_create_logical_replication_slot({}, {})",
                    literal(&w.name),
                    literal(plugin)
                ))
                .await
            {
                Ok(()) => {
                    tracing::info!(slot = %w.name, database, plugin, "created the permanent logical slot")
                }
                Err(e) => {
                    tracing::error!(slot = %w.name, database, plugin, error = %e, "cannot create the permanent logical slot")
                }
            }
        }
        Ok(())
    }

    async fn advance_logical(&mut self, w: &PermanentSlot, target: u64) -> Result<(), PgError> {
        let SlotKind::Logical { database, .. } = &w.kind else {
            return Ok(());
        };
        let mut sql = Sql::new(
            self.settings.local_conn_string_to(database, true),
            SLOT_QUERY_TIMEOUT,
        );
        sql.execute(&format!(
            "SELECT pg_replication_slot_advance({}, {}::pg_lsn)",
            literal(&w.name),
            literal(&crate::lsn::Lsn(target).to_string())
        ))
        .await?;
        Ok(())
    }

    /// Copies the named slots' state files from the leader, with our PostgreSQL
    /// stopped (it reads `pg_replslot` only at start).
    async fn copy_logical_slots(&mut self, names: &[String]) -> Result<(), PgError> {
        let Some((host, port)) = self.leader_source.clone() else {
            return Ok(());
        };
        let mut leader = Sql::new(
            self.settings.remote_conn_string(&host, port),
            SLOT_QUERY_TIMEOUT,
        );
        let mut states: Vec<(String, Vec<u8>)> = Vec::new();
        for name in names {
            let rows = leader
                .query(&format!(
                    "SELECT pg_read_binary_file('pg_replslot/' || slot_name || '/state') \
                     FROM pg_replication_slots WHERE slot_name = {} AND slot_type = 'logical' \
                     AND NOT pg_is_in_recovery()",
                    literal(name)
                ))
                .await?;
            match rows.first() {
                Some(r) => states.push((name.clone(), r.get(0))),
                None => tracing::info!(slot = %name, "the leader has no such logical slot yet"),
            }
        }
        if states.is_empty() {
            return Ok(());
        }
        tracing::info!(slots = ?names, "copying logical slots from the leader; restarting PostgreSQL to load them");
        self.stop(StopMode::Fast, RESTART_TIMEOUT).await?;
        let dir = self.settings.data_dir.join("pg_replslot");
        let written = states
            .iter()
            .try_for_each(|(name, state)| write_slot(&dir, name, state, self.programs.run_as));
        // Start again whatever happened: a replica must not stay down for a slot.
        self.start()?;
        self.wait_ready(RESTART_TIMEOUT).await?;
        written.map_err(|e| PgError::Files(format!("writing a copied slot: {e}")))
    }
}

/// `pg_replslot/<name>/state`, written as PostgreSQL writes it: into `<name>.tmp`,
/// fsynced, renamed into place, the directory fsynced.
fn write_slot(
    dir: &Path,
    name: &str,
    state: &[u8],
    run_as: Option<crate::runas::RunAs>,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&tmp)?;
    let file = tmp.join("state");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)?;
    f.write_all(state)?;
    f.sync_all()?;
    // On the open file and without following links: the directory is the database
    // owner's, who must not be able to point root's chown elsewhere.
    if let Some(r) = run_as {
        std::os::unix::fs::fchown(&f, Some(r.uid), Some(r.gid))?;
        std::os::unix::fs::lchown(&tmp, Some(r.uid), Some(r.gid))?;
    }
    if target.exists() {
        std::fs::remove_dir_all(&target)?;
    }
    std::fs::rename(&tmp, &target)?;
    std::fs::File::open(&target)?.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_slot_lands_whole_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        write_slot(dir.path(), "cdc", b"v1", None).unwrap();
        write_slot(dir.path(), "cdc", b"v2-longer", None).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("cdc/state")).unwrap(),
            b"v2-longer"
        );
        assert!(!dir.path().join("cdc.tmp").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
