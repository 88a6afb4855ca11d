//! The agent's SQL connection to its own PostgreSQL: status probes and the few
//! statements the HA loop needs (promote, slots, roles, reload). Every call is bounded.

use super::lsn::Lsn;
use serde::Serialize;
use std::time::Duration;
use tokio_postgres::{Client, Row};

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    #[error("query failed: {0}")]
    Query(String),
}

/// One row of `pg_stat_replication`, in the shape `/patroni` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicationRow {
    pub usename: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sync_priority: Option<i32>,
    /// How far the standby has written, flushed and replayed WAL.
    pub write_lsn: Option<u64>,
    pub flush_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
}

impl ReplicationRow {
    /// The position a commit waits for on this standby under the primary's
    /// `synchronous_commit` (Patroni's choice): `replay_lsn` under `remote_apply`,
    /// `write_lsn` under `remote_write`, `flush_lsn` otherwise. A standby whose replay
    /// is paused therefore lags under `remote_apply`, where it holds up every commit.
    pub fn acknowledged(&self, synchronous_commit: Option<&str>) -> Option<u64> {
        match synchronous_commit {
            Some("remote_apply") => self.replay_lsn,
            Some("remote_write") => self.write_lsn,
            _ => self.flush_lsn,
        }
    }
}

/// What one probe of a running PostgreSQL found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub in_recovery: bool,
    pub timeline: Option<u32>,
    /// The newest timeline this node knows of: [`Probe::timeline`] or the newest
    /// timeline history file in `pg_wal` (a replica fetches it from its upstream when
    /// it follows a promotion). PostgreSQL promotes onto the next ID after this one,
    /// so it decides whether a promotion would reuse a timeline ID.
    pub newest_timeline: Option<u32>,
    /// Primary: current WAL insert position. Replica: the larger of received and replayed.
    pub wal_position: Option<u64>,
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    pub replay_timestamp: Option<String>,
    pub replay_paused: bool,
    pub postmaster_start_time: String,
    pub server_version: u32,
    pub system_identifier: String,
    /// The WAL receiver is streaming from an upstream.
    pub streaming: bool,
    pub upstream: Option<(String, u16)>,
    /// Replica: the upstream's WAL end as it last reported it to our WAL receiver
    /// (`pg_stat_wal_receiver.latest_end_lsn`); the adapter keeps the last value seen
    /// while the receiver is down, so a standby leader cut off from its remote still
    /// says how far behind the last contact it is.
    pub upstream_end_lsn: Option<u64>,
    /// Replica: seconds since the newest replayed transaction committed on the primary
    /// (`now() - pg_last_xact_replay_timestamp()`, the server's clock); `None` before
    /// any replay.
    pub replay_age_seconds: Option<f64>,
    pub replication: Vec<ReplicationRow>,
    /// Primary: its `synchronous_commit` setting (what a commit waits for).
    pub synchronous_commit: Option<String>,
    pub pending_restart: bool,
    /// Parameters waiting for a restart: name → (value in force, value in the config
    /// files). Patroni publishes this as `pending_restart_reason`.
    pub pending_restart_reason: std::collections::BTreeMap<String, (String, String)>,
    /// Physical slots with their restart positions (`None`: not reserving WAL yet).
    pub physical_slots: std::collections::BTreeMap<String, Option<u64>>,
    /// Every (non-temporary) slot, physical and logical.
    pub slots: Vec<crate::slots::ExistingSlot>,
}

impl Probe {
    /// Patroni's `pending_restart_reason`: `{"param": {"old_value", "new_value"}}`, or
    /// `None` when nothing waits for a restart.
    pub fn pending_restart_reason_json(&self) -> Option<serde_json::Value> {
        let reason: serde_json::Map<String, serde_json::Value> = self
            .pending_restart_reason
            .iter()
            .map(|(k, (old, new))| {
                (
                    k.clone(),
                    serde_json::json!({"old_value": old, "new_value": new}),
                )
            })
            .collect();
        (!reason.is_empty()).then_some(serde_json::Value::Object(reason))
    }
}

/// A lazily (re)connected client.
#[derive(Debug)]
pub struct Sql {
    conn_string: String,
    timeout: Duration,
    client: Option<Client>,
}

impl Sql {
    pub fn new(conn_string: String, timeout: Duration) -> Self {
        Self {
            conn_string,
            timeout,
            client: None,
        }
    }

    /// Drops the connection (after PostgreSQL restarts, say).
    pub fn reset(&mut self) {
        self.client = None;
    }

    async fn client(&mut self) -> Result<&Client, SqlError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            // TLS and the cleartext-password policy come from the connection string.
            let connect = crate::tls::connect(&self.conn_string);
            let (client, conn) = match tokio::time::timeout(self.timeout, connect).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Err(SqlError::Connect(e.to_string())),
                Err(_) => {
                    return Err(SqlError::Connect(format!(
                        "timed out after {:?}",
                        self.timeout
                    )))
                }
            };
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "PostgreSQL connection closed");
                }
            });
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| SqlError::Connect("no client".into()))
    }

    pub async fn query(&mut self, sql: &str) -> Result<Vec<Row>, SqlError> {
        self.query_with_timeout(sql, self.timeout).await
    }

    pub async fn query_with_timeout(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<Row>, SqlError> {
        let client = self.client().await?;
        let result = match tokio::time::timeout(timeout, client.query(sql, &[])).await {
            Ok(r) => r.map_err(|e| SqlError::Query(format_db_error(&e))),
            Err(_) => Err(SqlError::Timeout(timeout)),
        };
        if result.is_err() {
            // The session may be in an unknown state; start clean next time.
            self.reset();
        }
        result
    }

    /// The first row of `sql` (`None`: no row), each column as text, for callers
    /// that must not know the driver: the query casts its columns to `text`.
    pub async fn first_row_text(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Option<Vec<Option<String>>>, SqlError> {
        let rows = self.query_with_timeout(sql, timeout).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        (0..row.len())
            .map(|i| {
                row.try_get::<_, Option<String>>(i)
                    .map_err(|e| SqlError::Query(format!("column {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// What a base backup checks first: version, WAL segment size, recovery, and the
    /// tablespaces other than the built-in two.
    pub async fn backup_facts(&mut self) -> Result<BackupFacts, SqlError> {
        let rows = self
            .query(
                "SELECT current_setting('server_version_num')::int, \
                 (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
                 pg_is_in_recovery(), \
                 ARRAY(SELECT spcname::text FROM pg_tablespace \
                       WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1)",
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| SqlError::Query("no answer to the version query".into()))?;
        let get = |e: tokio_postgres::Error| SqlError::Query(e.to_string());
        let version: i32 = row.try_get(0).map_err(get)?;
        Ok(BackupFacts {
            version: u32::try_from(version).unwrap_or(0),
            wal_segment_size: row.try_get(1).map_err(get)?,
            in_recovery: row.try_get(2).map_err(get)?,
            tablespaces: row.try_get(3).map_err(get)?,
        })
    }

    pub async fn execute(&mut self, sql: &str) -> Result<(), SqlError> {
        self.query(sql).await.map(|_| ())
    }

    pub async fn probe(&mut self) -> Result<Probe, SqlError> {
        let rows = self
            .query(
                "SELECT pg_is_in_recovery(), pg_postmaster_start_time()::text, \
                 current_setting('server_version_num')::int, \
                 (SELECT system_identifier::text FROM pg_control_system()), \
                 EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart), \
                 ARRAY(SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'physical')",
            )
            .await?;
        let row = first(&rows)?;
        let mut p = Probe {
            in_recovery: row.get(0),
            postmaster_start_time: row.get(1),
            server_version: u32::try_from(row.get::<_, i32>(2)).unwrap_or_default(),
            system_identifier: row.get(3),
            pending_restart: row.get(4),
            ..Probe::default()
        };
        let slots = self
            .query(
                "SELECT slot_name::text, slot_type = 'logical', database::text, plugin::text, \
                 restart_lsn::text, confirmed_flush_lsn::text, active \
                 FROM pg_replication_slots WHERE NOT temporary ORDER BY 1",
            )
            .await?;
        p.slots = slots
            .iter()
            .map(|r| crate::slots::ExistingSlot {
                name: r.get(0),
                logical: r.get(1),
                database: r.get(2),
                plugin: r.get(3),
                restart_lsn: lsn(r, 4),
                confirmed_flush: lsn(r, 5),
                active: r.get(6),
            })
            .collect();
        p.physical_slots = p
            .slots
            .iter()
            .filter(|s| !s.logical)
            .map(|s| (s.name.clone(), s.restart_lsn))
            .collect();
        if p.pending_restart {
            // The last file entry for a name wins, as in PostgreSQL's own parsing.
            let rows = self
                .query(
                    "SELECT s.name::text, s.setting || coalesce(s.unit, ''), \
                     coalesce((SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name \
                               ORDER BY f.seqno DESC LIMIT 1), '') \
                     FROM pg_settings s WHERE s.pending_restart ORDER BY 1",
                )
                .await?;
            p.pending_restart_reason = rows
                .iter()
                .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
                .collect();
        }
        if p.in_recovery {
            self.probe_replica(&mut p).await?;
        } else {
            self.probe_primary(&mut p).await?;
        }
        Ok(p)
    }

    async fn probe_primary(&mut self, p: &mut Probe) -> Result<(), SqlError> {
        let rows = self
            .query(
                "SELECT pg_current_wal_lsn()::text, \
                 ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int, \
                 current_setting('synchronous_commit')",
            )
            .await?;
        let row = first(&rows)?;
        p.wal_position = lsn(row, 0);
        p.timeline = u32::try_from(row.get::<_, i32>(1)).ok();
        p.synchronous_commit = row.get(2);
        p.newest_timeline = p.timeline;
        let rows = self
            .query(
                "SELECT usename::text, application_name, host(client_addr), state, sync_state, sync_priority, \
                 write_lsn::text, flush_lsn::text, replay_lsn::text \
                 FROM pg_stat_replication ORDER BY application_name",
            )
            .await?;
        p.replication = rows
            .iter()
            .map(|r| ReplicationRow {
                usename: r.get(0),
                application_name: r.get(1),
                client_addr: r.get(2),
                state: r.get(3),
                sync_state: r.get(4),
                sync_priority: r.get(5),
                write_lsn: lsn(r, 6),
                flush_lsn: lsn(r, 7),
                replay_lsn: lsn(r, 8),
            })
            .collect();
        Ok(())
    }

    async fn probe_replica(&mut self, p: &mut Probe) -> Result<(), SqlError> {
        let rows = self
            .query(
                "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
                 pg_last_xact_replay_timestamp()::text, pg_is_wal_replay_paused(), \
                 (SELECT timeline_id FROM pg_control_checkpoint()), \
                 (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir() \
                  WHERE name ~ '^[0-9A-F]{8}\\.history$'), \
                 extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
            )
            .await?;
        let row = first(&rows)?;
        p.receive_lsn = lsn(row, 0);
        p.replay_lsn = lsn(row, 1);
        p.replay_timestamp = row.get(2);
        p.replay_paused = row.get(3);
        p.timeline = row
            .get::<_, Option<i32>>(4)
            .and_then(|t| u32::try_from(t).ok());
        let newest_history = row
            .get::<_, Option<i32>>(5)
            .and_then(|t| u32::try_from(t).ok());
        p.replay_age_seconds = row.get::<_, Option<f64>>(6).map(|s| s.max(0.0));
        p.wal_position = p.receive_lsn.max(p.replay_lsn);
        let rows = self
            .query(
                "SELECT status, received_tli, sender_host, sender_port, latest_end_lsn::text \
                 FROM pg_stat_wal_receiver",
            )
            .await?;
        if let Some(r) = rows.first() {
            p.streaming = r.get::<_, Option<String>>(0).as_deref() == Some("streaming");
            if let Some(tli) = r
                .get::<_, Option<i32>>(1)
                .and_then(|t| u32::try_from(t).ok())
            {
                // The receiver's timeline is current; the checkpoint's may lag behind it.
                p.timeline = Some(p.timeline.map_or(tli, |t| t.max(tli)));
            }
            if let (Some(h), Some(port)) =
                (r.get::<_, Option<String>>(2), r.get::<_, Option<i32>>(3))
            {
                p.upstream = u16::try_from(port).ok().map(|port| (h, port));
            }
            p.upstream_end_lsn = lsn(r, 4);
        }
        p.newest_timeline = p.timeline.max(newest_history);
        Ok(())
    }
}

fn first(rows: &[Row]) -> Result<&Row, SqlError> {
    rows.first()
        .ok_or_else(|| SqlError::Query("query returned no row".into()))
}

fn lsn(row: &Row, idx: usize) -> Option<u64> {
    row.get::<_, Option<String>>(idx)
        .and_then(|s| Lsn::parse(&s))
        .map(|l| l.0)
}

/// tokio-postgres hides the server's message behind "db error"; show it.
fn format_db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Quotes an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}

/// The server facts a base backup checks before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFacts {
    /// `server_version_num`.
    pub version: u32,
    /// Bytes, as `pg_settings` reports it (checked positive by the caller).
    pub wal_segment_size: i64,
    pub in_recovery: bool,
    pub tablespaces: Vec<String>,
}

/// Bound for connecting in [`first_value`].
const FIRST_VALUE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One query on a fresh connection (simple protocol, so any statement the operator
/// wrote works): the first column of the first row as text (`None`: no row, or NULL).
pub async fn first_value(
    conn: &str,
    sql: &str,
    timeout: Duration,
) -> Result<Option<String>, SqlError> {
    let connect = crate::tls::connect(conn);
    let (client, connection) = tokio::time::timeout(FIRST_VALUE_CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| SqlError::Connect("connecting timed out".into()))?
        .map_err(|e| SqlError::Connect(e.to_string()))?;
    let task = tokio::spawn(connection);
    let result = tokio::time::timeout(timeout, client.simple_query(sql)).await;
    drop(client);
    task.abort();
    let messages = result
        .map_err(|_| SqlError::Timeout(timeout))?
        .map_err(|e| SqlError::Query(format_db_error(&e)))?;
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0).map(str::to_owned));
        }
    }
    Ok(None)
}
