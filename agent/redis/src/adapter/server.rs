//! The adapter's I/O building blocks: the child process, signals, private files, and
//! bounded commands over the `redis` crate's async connection.

use super::conf::RedisSettings;
use super::RedisError;
use crate::policy::{parse_info, Replication};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One command to the server at `host:port` on a fresh connection, as the agent's user;
/// connecting and the answer are both bounded by `timeout`.
pub async fn command<T: redis::FromRedisValue>(
    settings: &RedisSettings,
    host: &str,
    port: u16,
    cmd: &redis::Cmd,
    what: &str,
    timeout: Duration,
) -> Result<T, RedisError> {
    use redis::IntoConnectionInfo;
    let err = |source| RedisError::Command {
        what: format!("{what} on {host}:{port}"),
        source,
    };
    let mut auth = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(pw) = &settings.password {
        auth = auth.set_password(pw);
        if let Some(user) = &settings.username {
            auth = auth.set_username(user);
        }
    }
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let run = async {
        let mut con = match &settings.tls {
            None => {
                let info = redis::ConnectionAddr::Tcp(host.to_string(), port)
                    .into_connection_info()
                    .map_err(err)?
                    .set_redis_settings(auth);
                redis::Client::open(info)
                    .map_err(err)?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(err)?
            }
            Some(tls) => {
                // Our own rustls stream (ring, verified against the CA), handed to the
                // `redis` crate, which then logs in (`AUTH`/`HELLO`) over it as usual.
                let client_config = tls.client_config().map_err(|e| RedisError::BadParameter {
                    key: e.setting,
                    why: e.why,
                })?;
                let stream = super::tls::connect(client_config, host, port, timeout)
                    .await
                    .map_err(|source| RedisError::Tls {
                        what: format!("{what} on {host}:{port}"),
                        source,
                    })?;
                let (con, driver) =
                    redis::aio::MultiplexedConnection::new_with_config(&auth, stream, config)
                        .await
                        .map_err(err)?;
                // The driver ends when the connection (dropped after the command) closes.
                tokio::spawn(driver);
                con
            }
        };
        cmd.query_async::<T>(&mut con).await.map_err(err)
    };
    // Belt and braces: the whole exchange, not only each step, is bounded.
    tokio::time::timeout(timeout + Duration::from_millis(100), run)
        .await
        .map_err(|_| RedisError::Timeout(format!("{what} on {host}:{port}"), timeout))?
}

/// `INFO server replication` of the server at `host:port`, read.
pub async fn info(
    settings: &RedisSettings,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Replication, RedisError> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("server").arg("replication");
    let text: String = command(settings, host, port, &cmd, "INFO", timeout).await?;
    parse_info(&text).map_err(|e| RedisError::State(format!("{host}:{port}: {e}")))
}

/// Spawns `redis-server redis.conf`: its own process group (a terminal's signals
/// reach the agent only), a scrubbed environment (`PATH`, `HOME`: nothing secret
/// reaches it; the password is in the 0600 config file, never in argv), output
/// appended to `redis.log`.
pub fn spawn(settings: &RedisSettings) -> Result<tokio::process::Child, RedisError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(settings.log_path())
        .map_err(|e| {
            RedisError::Files(format!(
                "cannot open {}: {e}",
                settings.log_path().display()
            ))
        })?;
    let log2 = log
        .try_clone()
        .map_err(|e| RedisError::Files(format!("cannot open the log twice: {e}")))?;
    let mut cmd = tokio::process::Command::new(settings.server_program());
    cmd.arg(settings.conf_path())
        .current_dir(&settings.data_dir)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", &settings.data_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    let child = cmd.spawn().map_err(|e| {
        RedisError::Process(format!(
            "cannot start {}: {e}",
            settings.server_program().display()
        ))
    })?;
    tracing::info!(
        pid = child.id(),
        port = settings.port,
        "redis-server started"
    );
    Ok(child)
}

/// Sends `sig` to `pid` (gone already: nothing to do).
pub fn signal(pid: Option<i32>, sig: nix::sys::signal::Signal) {
    if let Some(pid) = pid {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// The pid in `redis.pid` when that process is alive and is a `redis-server` (an
/// earlier agent's child, or ours): a stale file names a dead or unrelated pid.
pub fn pidfile_server(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // A zombie (`Z`) has exited: only its parent has not collected it yet.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    (comm.trim() == "redis-server" && !state.is_some_and(|s| s.starts_with('Z'))).then_some(pid)
}

/// Writes `text` to `path` atomically and 0600 unless it already says exactly that;
/// returns whether it changed.
pub fn write_private(path: &Path, text: &str) -> Result<bool, RedisError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    let fail =
        |e: std::io::Error| RedisError::Files(format!("cannot write {}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(true)
}

/// A new cluster identity: a random 64-bit number in decimal, as PostgreSQL's system
/// identifier is written (the daemon reads identities as numbers for backups).
pub fn new_identity() -> Result<String, RedisError> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| RedisError::Files(format!("cannot read /dev/urandom: {e}")))?;
    Ok(u64::from_le_bytes(bytes).max(1).to_string())
}

/// `<dir>.failed-<unix seconds>` beside `dir`.
pub fn aside_path(dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".failed-{secs}"));
    dir.with_file_name(name)
}
