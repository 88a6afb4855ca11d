//! Patroni's custom methods on PostgreSQL: a user's script that creates the cluster
//! (`bootstrap.method`), a user's script that creates a replica
//! (`create_replica_methods`), and `post_bootstrap`.
//!
//! Each runs as the PostgreSQL OS user with Patroni's arguments, bounded in time, with
//! no password on its command line or in its environment: the connection string names
//! the user, and `PGPASSFILE` points at the agent's pgpass file.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use warden_backup::restore::recovery;
use warden_config::methods::{CustomBootstrap, CustomReplicaMethod};
use warden_consensus::dynamic_config::DynamicConfig;
use warden_pg::Postgres;

/// Bound for a user's bootstrap or replica script (a restore of a large backup).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Bound for `post_bootstrap`.
const POST_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(3600);

/// A user's command line as argv, run as PostgreSQL's OS user from the data
/// directory's parent, with `PGPASSFILE` set.
fn user_command(pg: &Postgres, line: &str, args: &[String]) -> Result<Command, String> {
    let words = shlex::split(line)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| format!("{line:?} is not a command line (empty, or unbalanced quotes)"))?;
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]).args(args);
    if let Some(r) = pg.programs.run_as {
        cmd.uid(r.uid).gid(r.gid);
    }
    if let Some(parent) = pg.settings.data_dir.parent() {
        cmd.current_dir(parent);
    }
    warden_pg::process::scrub_secrets(&mut cmd);
    cmd.env("PGPASSFILE", &pg.settings.pgpass)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Runs `cmd` to completion within `timeout`; its output goes to the agent's log.
async fn run(what: &str, mut cmd: Command, timeout: Duration) -> Result<(), String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| format!("{what}: {e}"))?,
        Err(_) => return Err(format!("{what}: still running after {timeout:?}; killed")),
    };
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .take(200)
    {
        tracing::info!(method = what, "{line}");
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} exited with {}", out.status))
    }
}

/// A libpq keyword/value string as Patroni's `format_dsn` writes it: `dbname`, `user`,
/// `host`, `port`, values with `'`, `\` and spaces backslash-escaped; no password.
pub(super) fn dsn(dbname: &str, user: &str, host: &str, port: u16) -> String {
    let esc = |v: &str| {
        let mut out = String::new();
        for c in v.chars() {
            if matches!(c, '\'' | '\\' | ' ') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    format!(
        "dbname={} user={} host={} port={port}",
        esc(dbname),
        esc(user),
        esc(host)
    )
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// `bootstrap.method: NAME`: the user's script creates the data directory; then the
/// recovery settings are written (`recovery_conf`) or removed (unless
/// `keep_existing_recovery_conf`), PostgreSQL starts, and once it has left recovery the
/// agent's roles are created, as after initdb.
pub(super) async fn bootstrap(
    pg: &mut Postgres,
    spec: &CustomBootstrap,
    dcs_cfg: &DynamicConfig,
) -> Result<(), String> {
    let dir = pg.settings.data_dir.clone();
    if !is_empty_dir(&dir) {
        return Err(format!(
            "custom bootstrap: the data directory {} is not empty",
            dir.display()
        ));
    }
    let args = spec.arguments(&pg.settings.scope, &dir.display().to_string());
    tracing::info!(method = %spec.name, command = %spec.command, "running the custom bootstrap script");
    pg.write_pgpass(None).map_err(|e| e.to_string())?;
    let cmd = user_command(pg, &spec.command, &args)?;
    run(&spec.name, cmd, SCRIPT_TIMEOUT)
        .await
        .map_err(|e| format!("custom bootstrap failed: {e}"))?;
    if !dir.join("PG_VERSION").is_file() {
        return Err(format!(
            "custom bootstrap: {} left no PostgreSQL data directory in {}",
            spec.command,
            dir.display()
        ));
    }
    // What a backup may carry that must not take effect here: a stale lock file and
    // a promotion trigger (Patroni removes these too).
    for stale in ["postmaster.pid", "promote"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let recovering = match &spec.recovery_conf {
        Some(settings) => {
            recovery::configure_settings(&dir, settings)
                .map_err(|e| format!("custom bootstrap: writing recovery_conf: {e}"))?;
            true
        }
        None if spec.keep_existing_recovery_conf => {
            dir.join("recovery.signal").exists() || dir.join("standby.signal").exists()
        }
        None => {
            for signal in ["recovery.signal", "standby.signal"] {
                let _ = std::fs::remove_file(dir.join(signal));
            }
            false
        }
    };
    // Files the agent wrote are the database owner's already; a link the script left
    // is not followed (lchown), so the owner cannot point root at another file.
    if let Some(r) = pg.programs.run_as {
        for f in ["recovery.signal", "postgresql.auto.conf"] {
            let path = dir.join(f);
            if std::fs::symlink_metadata(&path).is_ok() {
                std::os::unix::fs::lchown(&path, Some(r.uid), Some(r.gid))
                    .map_err(|e| format!("custom bootstrap: chown {}: {e}", path.display()))?;
            }
        }
    }
    // The copied cluster's superuser may have no password, or another one: until the
    // agent has set it, its own connections are trusted (Patroni opens the same door
    // during a custom bootstrap). Only the superuser, only from the agent's address.
    let configured_hba = pg.settings.pg_hba.clone();
    let mut hba = trust_for_the_agent(&pg.settings);
    hba.extend(if configured_hba.is_empty() {
        dcs_cfg.postgresql.pg_hba.clone().unwrap_or_default()
    } else {
        configured_hba.clone()
    });
    pg.settings.pg_hba = hba;
    let started = pg
        .start_bootstrapped(dcs_cfg, super::execute::START_TIMEOUT)
        .await
        .map_err(|e| e.to_string());
    pg.settings.pg_hba = configured_hba;
    started?;
    if recovering {
        super::restore_bootstrap::wait_promoted(pg)
            .await
            .map_err(|e| format!("custom bootstrap: recovery: {e}"))?;
        recovery::unconfigure(&dir)
            .map_err(|e| format!("custom bootstrap: removing the recovery settings: {e}"))?;
    }
    pg.ensure_superuser().await.map_err(|e| e.to_string())?;
    pg.create_roles().await.map_err(|e| e.to_string())?;
    // Close the door again: the configured pg_hba.conf only.
    pg.write_config(
        &dcs_cfg.postgresql.parameters,
        dcs_cfg.postgresql.pg_hba.as_deref(),
        None,
        Some(""),
    )
    .map_err(|e| e.to_string())?;
    pg.reload().await.map_err(|e| e.to_string())
}

/// `pg_hba.conf` lines trusting the agent's own superuser connections: the unix
/// socket and the loopback address the agent connects to.
fn trust_for_the_agent(s: &warden_pg::Settings) -> Vec<String> {
    let user = &s.superuser.username;
    let host = warden_pg::local_tcp_host(&s.listen_hosts);
    let mask = if host.contains(':') { "128" } else { "32" };
    vec![
        format!("local all {user} trust"),
        format!("host all {user} {host}/{mask} trust"),
    ]
}

/// `bootstrap.post_bootstrap`: `<command> <connection string>` against the new primary,
/// as its superuser, with Patroni's `PGOPTIONS`.
pub(super) async fn post_bootstrap(pg: &Postgres, line: &str) -> Result<(), String> {
    let s = &pg.settings;
    let host = s.listen_hosts.first().map_or("127.0.0.1", |h| {
        if h == "*" || h == "0.0.0.0" {
            "127.0.0.1"
        } else {
            h
        }
    });
    let connstring = dsn("postgres", &s.superuser.username, host, s.port);
    let mut cmd = user_command(pg, line, &[connstring])?;
    cmd.env(
        "PGOPTIONS",
        "-c synchronous_commit=local -c statement_timeout=0",
    );
    tracing::info!(command = %line, "running post_bootstrap");
    run("post_bootstrap", cmd, POST_BOOTSTRAP_TIMEOUT).await
}

/// A custom replica method: the data directory is set aside unless `keep_data`, then
/// the user's script runs with `--scope --role --datadir --connstring` (the member to
/// copy from); on failure what it left is removed unless `keep_data`.
pub(super) async fn create_replica(
    pg: &mut Postgres,
    method: &CustomReplicaMethod,
    source: (&str, u16),
) -> Result<(), String> {
    let dir = pg.settings.data_dir.clone();
    if !method.keep_data && !is_empty_dir(&dir) {
        // Patroni deletes it; Warden keeps it aside, as everywhere else.
        match warden_ha::Database::set_aside(pg) {
            Ok(Some(to)) => {
                tracing::warn!(to, "set the data directory aside before the replica method")
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot set the data directory aside: {e}")),
        }
    }
    pg.write_pgpass(Some(source)).map_err(|e| e.to_string())?;
    let connstring = dsn(
        "postgres",
        &pg.settings.replication.username,
        source.0,
        source.1,
    );
    let args = method.arguments(&pg.settings.scope, &dir.display().to_string(), &connstring);
    let cmd = user_command(pg, &method.command, &args)?;
    let result = run(&method.name, cmd, SCRIPT_TIMEOUT).await;
    let result = result.and_then(|()| {
        if dir.join("PG_VERSION").is_file() {
            Ok(())
        } else {
            Err(format!(
                "{} left no PostgreSQL data directory in {}",
                method.command,
                dir.display()
            ))
        }
    });
    if result.is_err() && !method.keep_data && dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error = %e, "cannot remove what the failed replica method left");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_is_patronis() {
        assert_eq!(
            dsn("postgres", "replicator", "10.0.0.1", 5432),
            "dbname=postgres user=replicator host=10.0.0.1 port=5432"
        );
        assert_eq!(
            dsn("my db", "o'neil", "h", 1),
            r"dbname=my\ db user=o\'neil host=h port=1"
        );
    }
}
