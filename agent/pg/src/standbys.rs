//! The leader's look at its synchronous standbys: what `synchronous_standby_names` is in
//! force, and which standbys stream right now. Kept apart from `sql.rs`'s probe because
//! both run outside it: the first only in quorum mode, the second between loop turns.

use super::lsn::Lsn;
use super::sql::{Sql, SqlError};
use std::time::Duration;

impl Sql {
    /// `synchronous_standby_names` as this session applies it (a reload shows here once
    /// PostgreSQL processed it), and the WAL flush position read in the same statement:
    /// every commit acknowledged before those names took effect lies at or before it.
    pub async fn sync_names_in_force(&mut self) -> Result<(String, u64), SqlError> {
        let rows = self
            .query(
                "SELECT current_setting('synchronous_standby_names'), \
                 pg_current_wal_flush_lsn()::text",
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| SqlError::Query("query returned no row".into()))?;
        let flush = row
            .get::<_, Option<String>>(1)
            .and_then(|t| Lsn::parse(&t))
            .ok_or_else(|| SqlError::Query("no WAL flush position".into()))?;
        Ok((row.get(0), flush.0))
    }

    /// The `application_name`s of the standbys streaming from us (`pg_stat_replication`
    /// state `streaming`).
    pub async fn streaming_standbys(&mut self, timeout: Duration) -> Result<Vec<String>, SqlError> {
        let rows = self
            .query_with_timeout(
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
                timeout,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect())
    }
}
