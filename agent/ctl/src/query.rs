//! `dsn` and `query`: choose a member as patronictl does (the leader by default, any
//! member with `--role`, or `--member`), then print its address, or connect to its
//! PostgreSQL, run SQL and print the rows as patronictl prints them.

use super::args::{DsnArgs, Format, QueryArgs, RoleFilter};
use super::commands::{timestamp_secs, watch_interval};
use super::members::{conn_params, ConnParams};
use super::output::{yaml_block, Align, TextTable};
use super::pyfmt::{self, Py};
use super::Ctl;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use warden_consensus::types::{Member, Role};
use warden_consensus::Cluster;

/// Bound of connecting to PostgreSQL, TCP and authentication together (patronictl's
/// `connect_timeout=5`); also of a cancel request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `application_name` unless PGAPPNAME is set (patronictl: `Patroni ctl`).
pub const APPLICATION_NAME: &str = "wardenctl";

pub const EXCLUSIVE_ROLE_MEMBER: &str = "--role and --member are mutually exclusive options";

/// patronictl's member choice (`get_any_member`): `--member` is any member of that
/// name; a role is the first member (by name) with it; neither is the leader.
/// `leader` is the holder of the leader key, `primary` the same unless it publishes
/// the `standby_leader` role, `standby-leader` unless it publishes `primary`;
/// `replica` and `standby` are any other member.
pub fn pick_member<'c>(
    cluster: &'c Cluster,
    role: Option<RoleFilter>,
    member: Option<&str>,
) -> Result<Option<(&'c str, &'c Member)>> {
    let role = match (role, member) {
        (Some(_), Some(_)) => bail!(EXCLUSIVE_ROLE_MEMBER),
        (None, Some(_)) => RoleFilter::Any,
        (role, None) => role.unwrap_or(RoleFilter::Leader),
    };
    let leader = cluster.leader_name().filter(|l| !l.is_empty());
    let named = |n: &str| member.is_none_or(|m| m == n);
    let mut all = cluster.members.iter().map(|(n, v)| (n.as_str(), &v.value));
    Ok(match role {
        RoleFilter::Leader | RoleFilter::Primary | RoleFilter::StandbyLeader => leader
            .and_then(|l| cluster.members.get_key_value(l))
            .map(|(n, v)| (n.as_str(), &v.value))
            .filter(|(_, m)| match role {
                RoleFilter::Primary => m.role != Role::StandbyLeader,
                RoleFilter::StandbyLeader => m.role != Role::Primary,
                _ => true,
            }),
        RoleFilter::Replica | RoleFilter::Standby => {
            all.find(|(n, _)| Some(*n) != leader && named(n))
        }
        RoleFilter::Any => all.find(|(n, _)| named(n)),
    })
}

/// What one run of the SQL gave: column names and rows, or (no columns) a single row
/// of a timestamp and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub columns: Option<Vec<String>>,
    pub rows: Vec<Vec<Py>>,
}

impl QueryOutput {
    /// `<YYYY-MM-DD HH:MM:SS>`, then `message`.
    fn message(message: impl Into<String>) -> Self {
        Self {
            columns: None,
            rows: vec![vec![Py::Str(timestamp_secs()), Py::Str(message.into())]],
        }
    }

    /// A failed connection or statement: its SQLSTATE, or the reason when there is
    /// none, on one line.
    fn error(detail: &str) -> Self {
        Self::message(format!("ERROR, SQLSTATE: {}", detail.replace('\n', " ")))
    }

    /// The text patronictl prints for `format`; `delimiter` separates tsv columns.
    pub fn render(&self, format: Format, delimiter: &str) -> String {
        let columns = self.columns.as_deref().unwrap_or_default();
        match format {
            Format::Tsv => self
                .columns
                .iter()
                .map(|c| c.join(delimiter))
                .chain(
                    self.rows
                        .iter()
                        .map(|r| r.iter().map(Py::to_str).collect::<Vec<_>>().join(delimiter)),
                )
                .collect::<Vec<_>>()
                .join("\n"),
            Format::Json => format!(
                "[{}]",
                self.rows
                    .iter()
                    .map(|r| pyfmt::json_object(columns.iter().map(String::as_str).zip(r.iter())))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Format::Yaml | Format::Yml => yaml_block(&Value::Array(
                self.rows
                    .iter()
                    .map(|r| {
                        Value::Object(
                            columns
                                .iter()
                                .zip(r)
                                .map(|(c, v)| (c.clone(), v.to_value()))
                                .collect(),
                        )
                    })
                    .collect(),
            )),
            Format::Pretty => {
                let width = self.rows.first().map_or(0, Vec::len);
                let columns = match &self.columns {
                    Some(c) => c.clone(),
                    None => (1..=width).map(|i| format!("Field {i}")).collect(),
                };
                TextTable {
                    title: String::new(),
                    align: vec![Align::Left; columns.len()],
                    columns,
                    rows: self
                        .rows
                        .iter()
                        .map(|r| r.iter().map(Py::to_str).collect())
                        .collect(),
                }
                .render()
            }
        }
    }
}

/// The libpq environment variables `query` honours, as patronictl (through libpq)
/// does.
#[derive(Debug, Clone, Default)]
pub struct PgEnv {
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub appname: Option<String>,
    pub passfile: Option<PathBuf>,
    pub home: Option<PathBuf>,
    /// The effective user's name, libpq's default user.
    pub os_user: Option<String>,
}

impl PgEnv {
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let os_user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| var("USER"));
        Self {
            user: var("PGUSER"),
            password: var("PGPASSWORD"),
            database: var("PGDATABASE"),
            appname: var("PGAPPNAME"),
            passfile: var("PGPASSFILE").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            os_user,
        }
    }

    fn passfile_path(&self) -> Option<PathBuf> {
        self.passfile
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".pgpass")))
    }
}

/// The password for `host:port:db:user` in a `.pgpass` file's text: the first line
/// whose fields match (`*` matches anything; `\:` and `\\` are escapes).
pub fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .find_map(|line| {
            let mut fields = Vec::new();
            let mut cur = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => cur.extend(chars.next()),
                    ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            fields.push(cur);
            if fields.len() != 5 {
                return None;
            }
            let matches = [host, port.as_str(), db, user]
                .iter()
                .zip(&fields)
                .all(|(want, f)| f == "*" || f == want);
            matches.then(|| fields[4].clone())
        })
}

/// Turns the terminal's echo off until dropped.
struct EchoOff(nix::sys::termios::Termios);

impl EchoOff {
    fn new() -> Option<Self> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).ok()?;
        Some(Self(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}

/// Whether `sql` holds no statement at all (only blanks, `;` and comments), which
/// psycopg reports as `can't execute an empty query`.
fn is_empty_sql(sql: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            match r.split_once("*/") {
                Some((_, after)) => rest = after,
                None => return false,
            }
        } else {
            return rest.is_empty();
        }
    }
}

/// An error with its causes: `invalid configuration: password missing`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The reason a connection failed, in libpq's words where they differ.
fn connect_failure(p: &ConnParams, e: &tokio_postgres::Error) -> String {
    let chain = error_chain(e);
    let why = match e.as_db_error() {
        Some(db) => format!("{}:  {}", db.severity(), db.message()),
        None if chain.contains("password missing") => {
            "fe_sendauth: no password supplied".to_string()
        }
        None if chain.starts_with("timeout waiting for server") => "timeout expired".to_string(),
        // `error connecting to server: Connection refused (os error 111)`.
        None => {
            let why = chain
                .strip_prefix("error connecting to server: ")
                .unwrap_or(&chain);
            match why.rsplit_once(" (os error ") {
                Some((text, code)) if code.ends_with(')') => text.to_string(),
                _ => why.to_string(),
            }
        }
    };
    format!(
        "connection to server at \"{}\", port {} failed: {why}",
        p.host, p.port
    )
}

/// A failed statement: its SQLSTATE, else the error's text.
fn statement_failure(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| error_chain(e), |db| db.code().code().to_string())
}

/// A PostgreSQL server's place in the WAL, as `demote-cluster` compares it with this
/// cluster's (see `cluster_role.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalPlace {
    pub in_recovery: bool,
    /// Current (primary) or received/replayed (standby) WAL position.
    pub lsn: u64,
    pub timeline: u32,
    /// The timeline's history file (`parent<TAB>switchpoint<TAB>reason` lines), when
    /// it has one and it could be read.
    pub history: Option<String>,
}

impl Ctl<'_> {
    /// Asks the server at `host:port` where it stands in the WAL, connecting as
    /// `wardenctl query` does (PGUSER, PGPASSWORD or `.pgpass`); bounded by the connect
    /// timeout and the API timeout.
    pub(crate) async fn wal_place(&mut self, host: &str, port: u16) -> Result<WalPlace> {
        let env = PgEnv::from_process();
        let user = env
            .user
            .clone()
            .or_else(|| env.os_user.clone())
            .unwrap_or_else(|| "postgres".to_string());
        let p = ConnParams {
            host: host.to_string(),
            port,
            dbname: None,
        };
        let password = match env.password.clone() {
            Some(pw) => Some(pw),
            None => self.pgpass(&env, &p, env.database.as_deref().unwrap_or(&user), &user)?,
        };
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(host)
            .port(port)
            .user(&user)
            .dbname(env.database.as_deref().unwrap_or("postgres"))
            .application_name(APPLICATION_NAME)
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(pw) = &password {
            cfg.password(pw);
        }
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, cfg.connect(NoTls))
            .await
            .map_err(|_| anyhow!("connecting to {host}:{port}: timeout expired"))?
            .map_err(|e| anyhow!(connect_failure(&p, &e)))?;
        tokio::spawn(connection);
        let sql = "SELECT pg_is_in_recovery(), \
                   (CASE WHEN pg_is_in_recovery() \
                     THEN greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) \
                     ELSE pg_current_wal_lsn() END)::text, \
                   (CASE WHEN pg_is_in_recovery() \
                     THEN (SELECT timeline_id FROM pg_control_checkpoint()) \
                     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int \
                   END)";
        let work = async {
            let row = client.query_one(sql, &[]).await?;
            let in_recovery: bool = row.try_get(0)?;
            let lsn: Option<String> = row.try_get(1)?;
            let timeline: i32 = row.try_get(2)?;
            let file = format!("pg_wal/{timeline:08X}.history");
            let history = if timeline > 1 {
                client
                    .query_one("SELECT pg_read_file($1)", &[&file])
                    .await
                    .ok()
                    .and_then(|r| r.try_get::<_, String>(0).ok())
            } else {
                None
            };
            Ok::<_, tokio_postgres::Error>((in_recovery, lsn, timeline, history))
        };
        let (in_recovery, lsn, timeline, history) =
            tokio::time::timeout(self.timing.api_timeout, work)
                .await
                .map_err(|_| anyhow!("{host}:{port} did not answer in time"))?
                .map_err(|e| anyhow!(statement_failure(&e)))?;
        let lsn = lsn
            .as_deref()
            .and_then(parse_lsn)
            .ok_or_else(|| anyhow!("{host}:{port} reports no WAL position"))?;
        Ok(WalPlace {
            in_recovery,
            lsn,
            timeline: u32::try_from(timeline).unwrap_or(0),
            history,
        })
    }
}

/// `X/Y` hexadecimal LSN text.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

impl Ctl<'_> {
    pub async fn dsn(&mut self, a: DsnArgs) -> Result<()> {
        if a.role.is_some() && a.member.is_some() {
            bail!(EXCLUSIVE_ROLE_MEMBER);
        }
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        let view = self.read(&scope).await?;
        let (name, m) = pick_member(&view.cluster, a.role, a.member.as_deref())?
            .ok_or_else(|| anyhow!("Can not find a suitable member"))?;
        let p = conn_params(m).ok_or_else(|| {
            anyhow!(
                "member {name} publishes no usable conn_url ({:?})",
                m.conn_url
            )
        })?;
        self.io.println(format!("host={} port={}", p.host, p.port))
    }

    pub async fn query(&mut self, a: QueryArgs) -> Result<()> {
        let sql = match (&a.file, &a.command) {
            (Some(_), Some(_)) => bail!("--file and --command are mutually exclusive options"),
            (Some(f), None) if f == "-" => {
                let mut s = String::new();
                self.io
                    .input
                    .read_to_string(&mut s)
                    .context("reading SQL from standard input")?;
                s
            }
            (Some(f), None) => {
                std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?
            }
            (None, Some(c)) => c.clone(),
            (None, None) => bail!("You need to specify either --command or --file"),
        };
        let password = if a.password {
            Some(self.read_password()?)
        } else {
            None
        };
        if a.role.is_some() && a.member.is_some() {
            bail!(EXCLUSIVE_ROLE_MEMBER);
        }
        let every = watch_interval(&a.watch)?;
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        // As patronictl: the cluster is read once, the member connected to each time.
        let view = self.read(&scope).await?;
        let env = PgEnv::from_process();
        loop {
            let started = tokio::time::Instant::now();
            let out = self
                .query_once(&view.cluster, &a, &sql, password.as_deref(), &env)
                .await?;
            let text = out.render(a.format, &a.delimiter);
            if !text.is_empty() {
                self.io.println(text)?;
            }
            let Some(every) = every else {
                return Ok(());
            };
            tokio::time::sleep_until(started + every).await;
        }
    }

    /// `Password: ` on stderr; the answer from the terminal with echo off, or a line
    /// of standard input. Asked again (three times in all) while empty.
    fn read_password(&mut self) -> Result<String> {
        for _ in 0..3 {
            write!(self.io.err, "Password: ")?;
            self.io.err.flush()?;
            let echo = if self.stdin_is_terminal {
                EchoOff::new()
            } else {
                None
            };
            let mut line = String::new();
            let read = self.io.input.read_line(&mut line);
            drop(echo);
            writeln!(self.io.err)?;
            if read? == 0 {
                bail!("no password: standard input is closed");
            }
            let pw = line.strip_suffix('\n').unwrap_or(&line);
            let pw = pw.strip_suffix('\r').unwrap_or(pw);
            if !pw.is_empty() {
                return Ok(pw.to_string());
            }
        }
        bail!("no password given")
    }

    /// The password from `.pgpass` (PGPASSFILE, else ~/.pgpass); a file others may read
    /// is ignored with a warning, as libpq does.
    fn pgpass(
        &mut self,
        env: &PgEnv,
        p: &ConnParams,
        db: &str,
        user: &str,
    ) -> Result<Option<String>> {
        use std::os::unix::fs::PermissionsExt;
        let Some(path) = env.passfile_path() else {
            return Ok(None);
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            return Ok(None);
        };
        if !meta.is_file() {
            return Ok(None);
        }
        if meta.permissions().mode() & 0o077 != 0 {
            self.io.warn(format!(
                "password file {} has group or world access; permissions should be u=rw \
                 (0600) or less",
                path.display()
            ))?;
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Ok(pgpass_lookup(&text, &p.host, p.port, db, user))
    }

    async fn query_once(
        &mut self,
        cluster: &Cluster,
        a: &QueryArgs,
        sql: &str,
        password: Option<&str>,
        env: &PgEnv,
    ) -> Result<QueryOutput> {
        let Some((name, m)) = pick_member(cluster, a.role, a.member.as_deref())? else {
            return Ok(QueryOutput::message(no_connection(a)));
        };
        let Some(p) = conn_params(m) else {
            return Ok(QueryOutput::error(&format!(
                "member {name} publishes no usable conn_url ({:?})",
                m.conn_url
            )));
        };
        let user = a
            .username
            .clone()
            .or_else(|| env.user.clone())
            .or_else(|| env.os_user.clone())
            .unwrap_or_else(|| "postgres".to_string());
        let dbname = a.dbname.clone().or_else(|| env.database.clone());
        let password = match password
            .map(str::to_string)
            .or_else(|| env.password.clone())
        {
            Some(pw) => Some(pw),
            None => self.pgpass(env, &p, dbname.as_deref().unwrap_or(&user), &user)?,
        };
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&p.host)
            .port(p.port)
            .user(&user)
            .application_name(env.appname.as_deref().unwrap_or(APPLICATION_NAME))
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(pw) = &password {
            cfg.password(pw);
        }
        if let Some(db) = &dbname {
            cfg.dbname(db);
        }
        let client = match tokio::time::timeout(CONNECT_TIMEOUT, cfg.connect(NoTls)).await {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                client
            }
            Ok(Err(e)) => return Ok(QueryOutput::error(&connect_failure(&p, &e))),
            Err(_) => {
                return Ok(QueryOutput::error(&format!(
                    "connection to server at \"{}\", port {} failed: timeout expired",
                    p.host, p.port
                )))
            }
        };
        // Other roles than the leader are double-checked on the server: the DCS may
        // be behind.
        let want = match a.role {
            Some(RoleFilter::Primary) => Some(false),
            Some(RoleFilter::Replica | RoleFilter::Standby | RoleFilter::StandbyLeader) => {
                Some(true)
            }
            _ => None,
        };
        if let Some(want) = want {
            let check = client.query_one("SELECT pg_catalog.pg_is_in_recovery()", &[]);
            match tokio::time::timeout(self.timing.api_timeout, check).await {
                Ok(Ok(row)) => {
                    let in_recovery =
                        row.try_get::<_, Option<bool>>(0).ok().flatten() != Some(false);
                    if in_recovery != want {
                        return Ok(QueryOutput::message(no_connection(a)));
                    }
                }
                Ok(Err(e)) => return Ok(QueryOutput::error(&statement_failure(&e))),
                Err(_) => {
                    return Ok(QueryOutput::error(&format!(
                        "pg_is_in_recovery() did not answer within {}s",
                        self.timing.api_timeout.as_secs()
                    )))
                }
            }
        }
        Ok(self.execute(&client, sql).await)
    }

    /// Runs `sql` (one or more statements, as psycopg does: the last one's rows are
    /// printed) within the query timeout; past it the query is cancelled.
    async fn execute(&self, client: &Client, sql: &str) -> QueryOutput {
        if is_empty_sql(sql) {
            return QueryOutput::error("can't execute an empty query");
        }
        let work = async {
            // Column types, to print values as psycopg converts them; a text with
            // several statements cannot be prepared, its values stay text.
            let types: Option<Vec<Type>> = client
                .prepare(sql)
                .await
                .ok()
                .map(|s| s.columns().iter().map(|c| c.type_().clone()).collect());
            (types, client.simple_query(sql).await)
        };
        let timeout = self.timing.query_timeout;
        let (types, messages) = match tokio::time::timeout(timeout, work).await {
            Ok((types, Ok(messages))) => (types, messages),
            Ok((_, Err(e))) => return QueryOutput::error(&statement_failure(&e)),
            Err(_) => {
                let cancel = client.cancel_token();
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, cancel.cancel_query(NoTls)).await;
                return QueryOutput::error(&format!(
                    "canceled: no result within {}s",
                    timeout.as_secs()
                ));
            }
        };
        // The last statement's result set, if it has one.
        type ResultSet = (Vec<String>, Vec<Vec<Option<String>>>);
        let mut current: Option<ResultSet> = None;
        let mut last: Option<ResultSet> = None;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    current = Some((
                        cols.iter().map(|c| c.name().to_string()).collect(),
                        Vec::new(),
                    ));
                }
                SimpleQueryMessage::Row(r) => {
                    if let Some((_, rows)) = current.as_mut() {
                        rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
                    }
                }
                SimpleQueryMessage::CommandComplete(_) => last = current.take(),
                _ => {}
            }
        }
        let Some((columns, rows)) = last else {
            return QueryOutput::error("no results to fetch");
        };
        let types = types.filter(|t| t.len() == columns.len());
        let rows = rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(i, v)| match &types {
                        Some(t) => pyfmt::from_pg_text(v.as_deref(), &t[i]),
                        None => v.as_deref().map_or(Py::None, |s| Py::Str(s.to_string())),
                    })
                    .collect()
            })
            .collect();
        QueryOutput {
            columns: Some(columns),
            rows,
        }
    }
}

/// patronictl's message when no member matches.
fn no_connection(a: &QueryArgs) -> String {
    match (&a.member, a.role) {
        (Some(m), _) => format!("No connection to member {m} is available"),
        (None, Some(r)) => format!("No connection to role '{}' is available", r.as_str()),
        (None, None) => "No connection is available".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\n\
                    db1.example:5432:*:alice:secret\\:1\n\
                    *:*:*:postgres:pg\\\\pw\n";
        assert_eq!(
            pgpass_lookup(text, "db1.example", 5432, "app", "alice").as_deref(),
            Some("secret:1")
        );
        assert_eq!(
            pgpass_lookup(text, "db1.example", 5433, "app", "alice"),
            None
        );
        assert_eq!(
            pgpass_lookup(text, "10.0.0.1", 6000, "x", "postgres").as_deref(),
            Some("pg\\pw")
        );
        assert_eq!(pgpass_lookup("bad:line\n", "h", 1, "d", "u"), None);
    }

    #[test]
    fn empty_sql_is_only_blanks_and_comments() {
        for sql in ["", " ; ;", "-- nothing\n", "/* x */ ;", "--x"] {
            assert!(is_empty_sql(sql), "{sql:?}");
        }
        for sql in [
            "select 1",
            "-- c\nselect 1",
            "/* c */ select 1",
            "/* unclosed",
        ] {
            assert!(!is_empty_sql(sql), "{sql:?}");
        }
    }

    #[test]
    fn output_like_patronictl() {
        let out = QueryOutput {
            columns: Some(vec!["a".into(), "b".into(), "a".into()]),
            rows: vec![
                vec![Py::Int("1".into()), Py::None, Py::Bool(true)],
                vec![Py::Int("2".into()), Py::Str("x\ny".into()), Py::Float(1.0)],
            ],
        };
        assert_eq!(
            out.render(Format::Tsv, "\t"),
            "a\tb\ta\n1\tNone\tTrue\n2\tx\ny\t1.0"
        );
        assert_eq!(
            out.render(Format::Tsv, "::"),
            "a::b::a\n1::None::True\n2::x\ny::1.0"
        );
        // A repeated column keeps its first place and its last value (a Python dict).
        assert_eq!(
            out.render(Format::Json, "\t"),
            r#"[{"a": true, "b": null}, {"a": 1.0, "b": "x\ny"}]"#
        );
        assert_eq!(
            out.render(Format::Yaml, "\t"),
            "- a: true\n  b: null\n- a: 1.0\n  b: |-\n    x\n    y\n"
        );
        assert_eq!(
            out.render(Format::Pretty, "\t"),
            "+---+------+------+\n| a | b    | a    |\n+---+------+------+\n| 1 | None | True |\n+---+------+------+\n| 2 | x    | 1.0  |\n|   | y    |      |\n+---+------+------+"
        );
        let err = QueryOutput::error("42P01");
        let tsv = err.render(Format::Tsv, "\t");
        let (ts, msg) = tsv.split_once('\t').unwrap();
        assert_eq!(msg, "ERROR, SQLSTATE: 42P01");
        assert!(
            chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{ts}"
        );
        assert_eq!(err.render(Format::Json, "\t"), "[{}]");
        assert!(err
            .render(Format::Pretty, "\t")
            .contains("| Field 1             | Field 2                |"));
        let empty = QueryOutput {
            columns: Some(vec!["?column?".into()]),
            rows: vec![],
        };
        assert_eq!(empty.render(Format::Tsv, "\t"), "?column?");
        assert_eq!(empty.render(Format::Json, "\t"), "[]");
        assert_eq!(
            empty.render(Format::Pretty, "\t"),
            "+----------+\n| ?column? |\n+----------+\n+----------+"
        );
    }
}
