//! The drill's validation queries against the restored server.

use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::backup::catalog::CheckResult;
use warden_config::DrillCheck;

/// Bound for connecting and for each query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The first column of the first row as text (`None`: no row, or NULL).
pub async fn first_value(conn: &str, sql: &str) -> Result<Option<String>> {
    let connect = tokio_postgres::connect(conn, NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| anyhow!("connecting timed out"))??;
    let task = tokio::spawn(connection);
    let result = tokio::time::timeout(QUERY_TIMEOUT, client.simple_query(sql)).await;
    drop(client);
    task.abort();
    let messages = result.map_err(|_| anyhow!("timed out after {QUERY_TIMEOUT:?}"))??;
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0).map(str::to_owned));
        }
    }
    Ok(None)
}

/// Runs every check; each result says what the query returned, or its error.
pub async fn run(checks: &[DrillCheck], conn: impl Fn(&str) -> String) -> Vec<CheckResult> {
    let mut out = Vec::with_capacity(checks.len());
    for c in checks {
        let (ok, got) = match first_value(&conn(&c.database), &c.sql).await {
            Ok(Some(v)) => (v == c.expect, v),
            Ok(None) => (false, "(no row or NULL)".to_owned()),
            Err(e) => (false, format!("error: {e:#}")),
        };
        out.push(CheckResult {
            name: c.name.clone(),
            ok,
            got,
        });
    }
    out
}
