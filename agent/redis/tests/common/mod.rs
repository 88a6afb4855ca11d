//! A Redis member for the adapter's tests: the adapter on a free loopback port in a
//! temporary directory; its server is killed when the fixture drops.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use warden_ha::Database;
use warden_redis::adapter::{Redis, RedisSettings};

pub struct Node {
    pub redis: Redis,
    pub port: u16,
    pub password: Option<String>,
    pub username: Option<String>,
    // Last: the directory outlives the server it holds.
    pub dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(pid) = self.redis.server_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn settings(dir: &std::path::Path, port: u16) -> RedisSettings {
    RedisSettings {
        listen_host: "127.0.0.1".into(),
        port,
        connect_host: "127.0.0.1".into(),
        connect_port: port,
        data_dir: dir.join("data"),
        bin_dir: None,
        username: None,
        password: None,
        parameters: BTreeMap::new(),
        tls: None,
    }
}

pub fn node(username: Option<&str>, password: Option<&str>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut s = settings(dir.path(), port);
    s.username = username.map(Into::into);
    s.password = password.map(Into::into);
    // Fast tests: no waiting for a lagging replica at SHUTDOWN beyond a second.
    s.parameters.insert("shutdown-timeout".into(), "1".into());
    Node {
        redis: Redis::new(s).unwrap(),
        port,
        password: password.map(Into::into),
        username: username.map(Into::into),
        dir,
    }
}

impl Node {
    /// A client connection as the configured user (or none), bounded.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        self.client_as(self.username.as_deref(), self.password.as_deref())
            .await
            .unwrap()
    }

    pub async fn client_as(
        &self,
        user: Option<&str>,
        password: Option<&str>,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        use redis::IntoConnectionInfo;
        let mut auth = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(pw) = password {
            auth = auth.set_password(pw);
        }
        if let Some(u) = user {
            auth = auth.set_username(u);
        }
        let info = redis::ConnectionAddr::Tcp("127.0.0.1".into(), self.port)
            .into_connection_info()?
            .set_redis_settings(auth);
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }

    /// A field of `INFO <section>`.
    pub async fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.client().await)
            .await
            .unwrap();
        text.lines()
            .filter_map(|l| l.trim_end().split_once(':'))
            .find(|(k, _)| *k == field)
            .map(|(_, v)| v.to_string())
    }

    pub fn source(&self, member: &str) -> warden_ha::Source {
        warden_ha::Source {
            member: member.into(),
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }
}

/// A bound on a polling loop: `tick` sleeps 50 ms, or panics naming what did not
/// happen once the deadline passed.
pub struct Deadline {
    at: Instant,
    what: &'static str,
}

impl Deadline {
    pub fn new(timeout: Duration, what: &'static str) -> Self {
        Self {
            at: Instant::now() + timeout,
            what,
        }
    }

    pub async fn tick(&self) {
        assert!(
            Instant::now() < self.at,
            "did not happen in time: {}",
            self.what
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn dynamic() -> warden_consensus::DynamicConfig {
    warden_consensus::DynamicConfig::default()
}

/// Starts `node`'s server on the configuration written for it and waits.
pub async fn start(node: &mut Node) {
    node.redis.start().unwrap();
    node.redis
        .wait_ready(Duration::from_secs(20))
        .await
        .unwrap();
}
