//! The leader's heartbeat: `now()` written into `warden.heartbeat` every
//! `backup.heartbeat` (default 1 s), so a restored copy tells how recent the data it
//! reached is (the RPO a drill reports).
//!
//! ```sql
//! CREATE TABLE warden.heartbeat (id int PRIMARY KEY, ts timestamptz NOT NULL);
//! -- one row, id 1, updated in place
//! ```
//!
//! It runs as its own task, started by the HA loop only while this member holds the
//! leader key and its PostgreSQL is a writable primary, and aborted as soon as either
//! stops being true; it never blocks the loop. Each write is bounded (client timeout,
//! `statement_timeout`) and uses `synchronous_commit = local`, so a synchronous
//! standby that is gone cannot make it hang.

use std::time::Duration;

use warden_pg::sql::Sql;

pub const CREATE: [&str; 2] = [
    "CREATE SCHEMA IF NOT EXISTS warden",
    "CREATE TABLE IF NOT EXISTS warden.heartbeat (id int PRIMARY KEY, ts timestamptz NOT NULL)",
];
pub const BEAT: &str = "INSERT INTO warden.heartbeat (id, ts) VALUES (1, now()) \
     ON CONFLICT (id) DO UPDATE SET ts = excluded.ts";
/// The newest heartbeat of a restored server, as text (`NULL`: none yet).
pub const NEWEST: &str = "SELECT to_char(max(ts) AT TIME ZONE 'UTC', \
     'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM warden.heartbeat";

/// A running heartbeat task; aborted on drop.
#[derive(Debug)]
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The session options every heartbeat connection uses.
pub fn conn_string(local: &str, every: Duration) -> String {
    let bound = every.clamp(Duration::from_millis(500), Duration::from_secs(5));
    format!(
        "{local} options='-c synchronous_commit=local -c statement_timeout={}'",
        bound.as_millis()
    )
}

impl Heartbeat {
    /// Starts writing every `every` through `conn` (a libpq connection string).
    pub fn start(conn: String, every: Duration) -> Self {
        let task = tokio::spawn(async move {
            let bound = every.clamp(Duration::from_millis(500), Duration::from_secs(5));
            let mut sql = Sql::new(conn, bound);
            let mut created = false;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let result = async {
                    if !created {
                        for stmt in CREATE {
                            sql.execute(stmt).await?;
                        }
                        created = true;
                    }
                    sql.execute(BEAT).await
                }
                .await;
                match result {
                    Ok(()) if failing => {
                        tracing::info!("heartbeat writes again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "heartbeat write failed");
                        }
                        failing = true;
                        created = false;
                    }
                }
            }
        });
        Self { task }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_bounded_and_never_waits_for_standbys() {
        let c = conn_string("host=127.0.0.1 port=5432", Duration::from_secs(1));
        assert!(c.contains("synchronous_commit=local"), "{c}");
        assert!(c.contains("statement_timeout=1000"), "{c}");
        let c = conn_string("x", Duration::from_secs(60));
        assert!(c.contains("statement_timeout=5000"), "{c}");
    }
}
