//! Between turns, a leader in synchronous mode watches its synchronous standbys.
//!
//! When a standby listed in `synchronous_standby_names` dies, commits may block (every
//! `FIRST n` standby, or too few left for `ANY n`) until the leader names another one —
//! and the leader notices only at its next turn, up to `loop_wait` later. So while the
//! loop sleeps it asks PostgreSQL every [`PERIOD`] which standbys stream; once one it
//! watches is gone, the loop wakes at once and replaces it (in the usual safe order of
//! `/sync` and `synchronous_standby_names`).

use std::time::Duration;
use warden_pg::sql::Sql;

/// How often `pg_stat_replication` is read while the loop sleeps: one small query, and
/// at most this long (plus a turn) of commits blocked by a dead standby.
pub const PERIOD: Duration = Duration::from_millis(500);
/// A primary that cannot answer this quickly is the loop's business, not the watch's.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Resolves with the name of the first of `watched` (standbys listed and streaming at
/// the last turn) that no longer streams. Never resolves when there is nothing to watch;
/// a failing query is retried at the next period (the loop's own turn deals with a
/// PostgreSQL that does not answer).
pub async fn lost_standby(sql: &mut Sql, watched: &[String]) -> String {
    if watched.is_empty() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(PERIOD).await;
        match sql.streaming_standbys(QUERY_TIMEOUT).await {
            Ok(streaming) => {
                if let Some(gone) = watched.iter().find(|w| !streaming.contains(w)) {
                    return gone.clone();
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read pg_stat_replication"),
        }
    }
}

/// The standbys to watch: those listed in `names` (`synchronous_standby_names`) that
/// were streaming at this turn. Only they can go missing; a listed standby that is not
/// streaming now is the next turn's business, and watching it would wake the loop
/// every period.
pub fn watch_list(names: &str, rows: &[warden_pg::sql::ReplicationRow]) -> Vec<String> {
    let Some(listed) = warden_pg::quorum::Names::parse(names) else {
        return Vec::new();
    };
    rows.iter()
        .filter(|r| r.state.as_deref() == Some("streaming"))
        .filter_map(|r| r.application_name.clone())
        .filter(|n| listed.standbys.contains(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_pg::sql::ReplicationRow;

    fn row(name: &str, state: &str) -> ReplicationRow {
        ReplicationRow {
            usename: None,
            application_name: Some(name.into()),
            client_addr: None,
            state: Some(state.into()),
            sync_state: None,
            sync_priority: None,
            flush_lsn: None,
        }
    }

    #[test]
    fn watches_listed_streaming_standbys_only() {
        let rows = [
            row("a", "streaming"),
            row("b", "catchup"),
            row("c", "streaming"),
        ];
        assert_eq!(watch_list("ANY 1 (\"a\", \"b\")", &rows), vec!["a"]);
        assert_eq!(watch_list("FIRST 1 (\"c\")", &rows), vec!["c"]);
        assert!(watch_list("", &rows).is_empty());
        assert!(watch_list("*", &rows).is_empty());
    }
}
