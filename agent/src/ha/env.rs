//! The loop's surroundings besides the DCS and the database: its clock, the other
//! members' REST APIs, the guard process and the watchdog device.
//!
//! The daemon uses the real ones ([`Env::system`]); the simulation (`agent/tests/
//! simulation`) supplies its own, so it runs this loop, not a copy of it: per-node
//! clocks that drift, peers answered from the simulated members' state, a guard and a
//! watchdog that act on the simulated machine. Sleeps and timeouts stay tokio's, which a
//! paused runtime controls.

use super::observation::Peer;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warden_config::Credentials;
use warden_consensus::Cluster;

/// This node's monotonic clock, for everything the loop measures: when a lease renewal
/// started (the local deadline counts from it) and how long a condition has lasted.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

/// tokio's clock (the system's, or a paused runtime's).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The other members, as the loop asks them.
#[async_trait]
pub trait Peers: Send + Sync + std::fmt::Debug {
    /// Every other member's status (from its `/patroni`), in parallel and bounded; a
    /// member that does not answer has `status: None`.
    async fn probe(&self, me: &str, cluster: &Cluster) -> Vec<Peer>;

    /// Failsafe mode: whether every member in `members` (name → api_url) but us confirms
    /// that we may stay primary (`POST /failsafe`, as `auth`).
    async fn confirm_failsafe(
        &self,
        me: &str,
        my_api_url: &str,
        members: &BTreeMap<String, String>,
        auth: Option<&Credentials>,
    ) -> bool;
}

/// The members' REST APIs over HTTP ([`super::peers`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct HttpPeers;

#[async_trait]
impl Peers for HttpPeers {
    async fn probe(&self, me: &str, cluster: &Cluster) -> Vec<Peer> {
        super::peers::probe_peers(me, cluster).await
    }

    async fn confirm_failsafe(
        &self,
        me: &str,
        my_api_url: &str,
        members: &BTreeMap<String, String>,
        auth: Option<&Credentials>,
    ) -> bool {
        super::peers::confirm_failsafe(me, my_api_url, members, auth).await
    }
}

/// The agent's end of the fencing guard: a process that outlives a frozen or killed
/// agent and kills the database server a little after the lease deadline.
#[async_trait]
pub trait GuardLink: Send + std::fmt::Debug {
    /// Arms the guard to fire at `at` (an instant of this node's clock, not a delay: a
    /// delay computed before the agent is stopped and delivered after would fire late)
    /// at the server process `pid`, or disarms it (`None`).
    async fn feed(&mut self, target: Option<(std::time::Instant, i32)>);

    /// Disarms and stops the guard (clean shutdown).
    async fn stop(self: Box<Self>);
}

/// A watchdog device: it resets the machine unless fed in time.
pub trait WatchdogDevice: Send + Sync + std::fmt::Debug {
    /// Whether the device can be used at all (why not).
    fn available(&self) -> Result<(), String>;

    /// Opens and arms the device with `timeout`.
    fn open(&self, timeout: Duration) -> std::io::Result<Box<dyn WatchdogFeed>>;
}

/// An armed watchdog; dropping it disarms it (the "magic close").
pub trait WatchdogFeed: Send + std::fmt::Debug {
    /// Resets the timer.
    fn keepalive(&mut self) -> std::io::Result<()>;
}

/// The Linux watchdog device at `watchdog.device`.
#[derive(Debug, Clone)]
pub struct DeviceWatchdog(pub PathBuf);

impl WatchdogDevice for DeviceWatchdog {
    fn available(&self) -> Result<(), String> {
        warden_fencing::watchdog::available(&self.0)
    }

    fn open(&self, timeout: Duration) -> std::io::Result<Box<dyn WatchdogFeed>> {
        let dog = warden_fencing::watchdog::Watchdog::open(&self.0, timeout)?;
        Ok(Box::new(dog))
    }
}

impl WatchdogFeed for warden_fencing::watchdog::Watchdog {
    fn keepalive(&mut self) -> std::io::Result<()> {
        warden_fencing::watchdog::Watchdog::keepalive(self)
    }
}

/// Everything around the loop but the DCS and the database.
#[derive(Debug, Clone)]
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub peers: Arc<dyn Peers>,
    pub watchdog: Arc<dyn WatchdogDevice>,
}

impl Env {
    /// The real surroundings: tokio's clock, HTTP to the peers, the watchdog `device`.
    pub fn system(device: PathBuf) -> Self {
        Self {
            clock: Arc::new(SystemClock),
            peers: Arc::new(HttpPeers),
            watchdog: Arc::new(DeviceWatchdog(device)),
        }
    }
}
