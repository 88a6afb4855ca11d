//! PostgreSQL's low-level backup API for the `files` method (`files.rs`): one session
//! held open from `pg_backup_start` to `pg_backup_stop` (PostgreSQL aborts the backup
//! when it closes), and what the stop returns: the `backup_label` and the WAL range.

use warden_pg::lsn::Lsn;

use super::files::Range;

/// The low-level backup API, in one session that stays open from start to stop
/// (PostgreSQL aborts the backup if the session ends).
pub struct Session {
    sql: warden_pg::sql::Sql,
    timeout: std::time::Duration,
    in_recovery: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("in_recovery", &self.in_recovery)
            .finish_non_exhaustive()
    }
}

/// What `pg_backup_stop` returned.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub label: String,
    pub range: Range,
}

impl Session {
    /// Connects and runs `pg_backup_start` with an immediate checkpoint (a
    /// restartpoint on a standby), waiting at most `timeout` for it. Returns the
    /// session, the start LSN and whether the cluster has data checksums.
    pub async fn start(
        conn_string: String,
        label: &str,
        in_recovery: bool,
        timeout: std::time::Duration,
    ) -> Result<(Self, Lsn, bool), String> {
        use warden_pg::sql::{literal, Sql};
        let mut sql = Sql::new(conn_string, super::take::SQL_TIMEOUT);
        // The session sits idle while the files are copied: no timeout may end it.
        for set in ["SET statement_timeout = 0", "SET idle_session_timeout = 0"] {
            sql.execute(set).await.map_err(|e| e.to_string())?;
        }
        let row = first_row(
            &mut sql,
            &format!(
                "SELECT pg_backup_start({}, true)::text, current_setting('data_checksums')",
                literal(label)
            ),
            timeout,
        )
        .await
        .map_err(|e| format!("pg_backup_start: {e}"))?;
        let start = column(&row, 0)
            .and_then(Lsn::parse)
            .ok_or("pg_backup_start returned no LSN")?;
        let checksums = column(&row, 1) == Some("on");
        Ok((
            Self {
                sql,
                timeout,
                in_recovery,
            },
            start,
            checksums,
        ))
    }

    /// `pg_backup_stop` (without waiting for the archive: the backup waits for its WAL
    /// itself), and the range from the label's start to the stop point. A timeline
    /// change during the backup is refused (the next backup will be fine).
    pub async fn stop(mut self) -> Result<Stopped, String> {
        let row = first_row(
            &mut self.sql,
            "SELECT lsn::text, labelfile FROM pg_backup_stop(false)",
            self.timeout,
        )
        .await
        .map_err(|e| format!("pg_backup_stop: {e}"))?;
        let end = column(&row, 0)
            .and_then(Lsn::parse)
            .ok_or("pg_backup_stop returned no LSN")?;
        let label = column(&row, 1)
            .ok_or("pg_backup_stop returned no backup_label")?
            .to_owned();
        let field = |name: &str| {
            label
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .map(str::to_owned)
        };
        let start_timeline: u32 = field("START TIMELINE:")
            .and_then(|t| t.parse().ok())
            .ok_or("backup_label has no START TIMELINE")?;
        let start = field("START WAL LOCATION:")
            .and_then(|t| Lsn::parse(t.split_whitespace().next().unwrap_or("")))
            .ok_or("backup_label has no START WAL LOCATION")?;
        let query = if self.in_recovery {
            "SELECT min_recovery_end_timeline::text FROM pg_control_recovery()"
        } else {
            "SELECT timeline_id::text FROM pg_control_checkpoint()"
        };
        let row = first_row(&mut self.sql, query, super::take::SQL_TIMEOUT).await?;
        let stop_timeline: i64 = column(&row, 0)
            .and_then(|t| t.parse().ok())
            .ok_or("no timeline after pg_backup_stop")?;
        if i64::from(start_timeline) != stop_timeline {
            return Err(format!(
                "the timeline changed during the backup (from {start_timeline} to \
                 {stop_timeline}); the next backup will start on the new one"
            ));
        }
        Ok(Stopped {
            label,
            range: Range {
                timeline: start_timeline,
                start,
                end,
            },
        })
    }
}

/// The first row of `sql`, its columns as text; no row is an error.
async fn first_row(
    sql: &mut warden_pg::sql::Sql,
    query: &str,
    timeout: std::time::Duration,
) -> Result<Vec<Option<String>>, String> {
    sql.first_row_text(query, timeout)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no row".to_owned())
}

fn column(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(Option::as_deref)
}
