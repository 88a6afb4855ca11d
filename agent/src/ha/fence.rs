//! Self-fencing, in two layers that do not depend on the HA loop running on time:
//!
//! 1. A timer task in the agent: the moment the leader's local lease deadline passes
//!    without renewal, the server is made read-only ([`Fence`]: PostgreSQL gets
//!    standby.signal and a fast shutdown, the loop restarts it as a replica; Redis
//!    pauses writes and becomes a replica of no one, see `warden_redis::adapter::fence`).
//!    `/primary` already answers 503 from that instant because it checks the deadline
//!    per request.
//! 2. The guard process (`warden guard`), fed a deadline every turn: if the agent itself
//!    is frozen or dead, it kills the server's process group (the postmaster's, or
//!    redis-server's) a little later, still before etcd can expire the lease.

use crate::state::Shared;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use warden_consensus::types::MemberState;
use warden_pg::process::Programs;

/// How often the timer re-reads a deadline that may have moved.
const TIMER_GRANULARITY: Duration = Duration::from_millis(100);
/// How long each of Redis's fencing commands may take.
const REDIS_FENCE_TIMEOUT: Duration = Duration::from_millis(500);

/// Makes the local server stop acknowledging writes, now.
#[async_trait::async_trait]
pub trait Fence: Send + Sync {
    async fn fence(&self) -> Result<(), String>;
}

/// PostgreSQL: standby.signal and a fast shutdown.
#[derive(Debug)]
pub struct PgFence(pub Programs);

#[async_trait::async_trait]
impl Fence for PgFence {
    async fn fence(&self) -> Result<(), String> {
        let programs = self.0.clone();
        // pg_ctl runs for a while: off the runtime's worker threads.
        tokio::task::spawn_blocking(move || warden_pg::fence(&programs))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Redis: writes paused, a replica of no one, clients disconnected.
#[derive(Debug)]
pub struct RedisFence(pub warden_redis::adapter::RedisSettings);

#[async_trait::async_trait]
impl Fence for RedisFence {
    async fn fence(&self) -> Result<(), String> {
        warden_redis::adapter::fence(&self.0, REDIS_FENCE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Watches the lease deadline and fences the server when it passes.
pub fn spawn_timer(shared: Arc<Shared>, fence: Arc<dyn Fence>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = Instant::now();
            match shared.deadline.deadline() {
                Some(d) if now >= d => {
                    tracing::error!(
                        "lease deadline passed without renewal: fencing the server (read-only)"
                    );
                    shared.deadline.clear();
                    if let Err(e) = fence.fence().await {
                        tracing::error!(error = %e, "fencing failed");
                    }
                    // Tell peers at once (via /patroni) that we no longer run a primary,
                    // rather than after our next, possibly slow, turn.
                    shared.update(|s| {
                        s.is_leader = false;
                        s.probe = None;
                        s.state = MemberState::Stopping;
                    });
                }
                Some(d) => {
                    tokio::time::sleep(d.saturating_duration_since(now).min(TIMER_GRANULARITY))
                        .await
                }
                None => tokio::time::sleep(TIMER_GRANULARITY).await,
            }
        }
    })
}

/// The agent's end of the guard process.
#[derive(Debug)]
pub struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
    last: String,
    /// Our instants as `CLOCK_MONOTONIC` readings, which the guard shares.
    clock: warden_fencing::guard::MonotonicMap,
}

impl Guard {
    pub fn spawn() -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("guard")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // If the agent exits normally the guard goes with it; if the agent is killed
            // the guard outlives it and still fires at the last deadline.
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            last: String::new(),
            clock: warden_fencing::guard::MonotonicMap::new(),
        })
    }

    /// Arms the guard to fire at `at` at the postmaster `pid`, or disarms it. A guard
    /// that is gone (killed, or an older one that exited) is replaced at once and given
    /// the same line: a leader never runs unguarded past one feed.
    async fn send(&mut self, target: Option<(Instant, i32)>) {
        let line = match target {
            Some((at, pid)) => format!("arm-at {} {pid}\n", self.clock.to_ns(at)),
            None => "disarm\n".to_string(),
        };
        if line == "disarm\n" && self.last == line {
            return;
        }
        if self.write(&line).await {
            return;
        }
        match Self::spawn() {
            Ok(fresh) => {
                tracing::warn!("the fencing guard was gone; started a new one");
                let _ = std::mem::replace(self, fresh);
                if !self.write(&line).await {
                    tracing::error!("the new fencing guard did not take its input");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the fencing guard is gone and cannot be restarted")
            }
        }
    }

    /// Writes one line; false when the guard is gone or did not read it in time.
    async fn write(&mut self, line: &str) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            self.stdin = None;
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        // The guard reads constantly, so the pipe never fills; bound the write anyway.
        match tokio::time::timeout(Duration::from_millis(500), stdin.write_all(line.as_bytes()))
            .await
        {
            Ok(Ok(())) => {
                self.last = line.to_string();
                true
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the fencing guard is gone");
                self.stdin = None;
                false
            }
            Err(_) => {
                tracing::error!("the fencing guard did not read its input in time");
                false
            }
        }
    }

    /// Disarms and stops the guard (clean shutdown).
    async fn shut(mut self) {
        self.send(None).await;
        self.stdin = None;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let _ = self.child.start_kill();
    }
}

#[async_trait::async_trait]
impl super::env::GuardLink for Guard {
    async fn feed(&mut self, target: Option<(Instant, i32)>) {
        self.send(target).await;
    }

    async fn stop(self: Box<Self>) {
        (*self).shut().await;
    }
}
