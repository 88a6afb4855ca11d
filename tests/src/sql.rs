//! SQL helpers: connect to a node (or through HAProxy) as the superuser over
//! TCP with a password, as an application would — `pg_hba` only trusts the
//! unix socket, so this also exercises the scram-sha-256 setup.
//!
//! Connects and statements are bounded (connect timeout, `statement_timeout`)
//! so a frozen or fenced server fails a poll instead of hanging a test.

use std::time::Duration;

use anyhow::{Context, Result};
use postgres::{Client, NoTls};

use crate::config::{SUPERUSER, SUPERUSER_PASSWORD};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Server-side bound for every statement of a kit connection.
pub const STATEMENT_TIMEOUT_MS: u32 = 5000;

/// Connect to 127.0.0.1:`port`, database `postgres`, as the superuser.
pub fn connect(port: u16) -> Result<Client> {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .application_name("warden-tests")
        .connect_timeout(CONNECT_TIMEOUT)
        .options(&format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"))
        .connect(NoTls)
        .with_context(|| format!("connecting to PostgreSQL on 127.0.0.1:{port}"))
}

/// Run `sql` (one or more statements, no results) on a fresh connection.
pub fn execute(port: u16, sql: &str) -> Result<()> {
    connect(port)?
        .batch_execute(sql)
        .with_context(|| format!("executing on port {port}: {sql}"))
}

/// First column of the first row of `sql`, rendered as text (the query should
/// cast, e.g. `SELECT count(*)::text`). `None` when there is no row.
pub fn query_text(port: u16, sql: &str) -> Result<Option<String>> {
    let rows = connect(port)?
        .simple_query(sql)
        .with_context(|| format!("querying on port {port}: {sql}"))?;
    Ok(rows.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    }))
}

/// `SELECT pg_is_in_recovery()` — true on a replica.
pub fn is_in_recovery(port: u16) -> Result<bool> {
    let mut c = connect(port)?;
    let row = c
        .query_one("SELECT pg_is_in_recovery()", &[])
        .with_context(|| format!("pg_is_in_recovery() on port {port}"))?;
    row.try_get(0).context("reading pg_is_in_recovery()")
}
