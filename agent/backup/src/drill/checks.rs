//! The drill's validation queries against the restored server.

use std::time::Duration;

use anyhow::Result;

use crate::catalog::CheckResult;
use warden_config::DrillCheck;

/// Bound for connecting and for each query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The first column of the first row as text (`None`: no row, or NULL).
pub async fn first_value(conn: &str, sql: &str) -> Result<Option<String>> {
    Ok(warden_pg::sql::first_value(conn, sql, QUERY_TIMEOUT).await?)
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
