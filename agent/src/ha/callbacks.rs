//! Patroni-style callbacks: `<command> <event> <role> <scope>`, run asynchronously with a
//! timeout, and the `pre_promote` hook whose non-zero exit aborts a promotion.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;

/// A callback still running after this is killed.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many callbacks run at once; further events are logged and skipped
/// rather than queued without bound.
const MAX_IN_FLIGHT: usize = 8;

#[derive(Debug, Clone)]
pub struct Callbacks {
    commands: BTreeMap<String, String>,
    pre_promote: Option<String>,
    scope: String,
    in_flight: Arc<AtomicUsize>,
}

fn command(line: &str, args: &[&str]) -> Option<Command> {
    let mut words = line.split_whitespace();
    let mut cmd = Command::new(words.next()?);
    cmd.args(words)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    warden_pg::process::scrub_secrets(&mut cmd);
    Some(cmd)
}

impl Callbacks {
    /// `postgresql.callbacks` and `pre_promote`; a Redis member has none.
    pub fn from_config(cfg: &warden_config::Config) -> Self {
        match cfg.postgresql() {
            Some(pg) => Self::new(
                pg.callbacks.clone(),
                pg.pre_promote.clone(),
                cfg.scope.clone(),
            ),
            None => Self::new(BTreeMap::new(), None, cfg.scope.clone()),
        }
    }

    pub fn new(
        commands: BTreeMap<String, String>,
        pre_promote: Option<String>,
        scope: String,
    ) -> Self {
        Self {
            commands,
            pre_promote,
            scope,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Starts the callback for `event` (if configured) and returns at once.
    pub fn fire(&self, event: &str, role: &str) {
        let Some(line) = self.commands.get(event) else {
            return;
        };
        let Some(mut cmd) = command(line, &[event, role, &self.scope]) else {
            return;
        };
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(event, "too many callbacks running; skipping this one");
            return;
        }
        let in_flight = self.in_flight.clone();
        let (event, role, line) = (event.to_string(), role.to_string(), line.clone());
        tokio::spawn(async move {
            match cmd.spawn() {
                Ok(child) => {
                    match tokio::time::timeout(CALLBACK_TIMEOUT, child.wait_with_output()).await {
                        Ok(Ok(out)) if out.status.success() => {
                            tracing::info!(event, role, "callback finished")
                        }
                        Ok(Ok(out)) => {
                            tracing::warn!(event, role, status = %out.status, "callback failed")
                        }
                        Ok(Err(e)) => tracing::warn!(event, error = %e, "callback failed"),
                        Err(_) => {
                            tracing::warn!(event, command = %line, "callback timed out and was killed")
                        }
                    }
                }
                Err(e) => tracing::warn!(event, command = %line, error = %e, "cannot run callback"),
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Runs `pre_promote` (if configured) to completion: `Err` means do not promote.
    pub async fn pre_promote(&self) -> Result<(), String> {
        let Some(line) = &self.pre_promote else {
            return Ok(());
        };
        let Some(mut cmd) = command(line, &["pre_promote", "replica", &self.scope]) else {
            return Ok(());
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("pre_promote {line}: {e}"))?;
        match tokio::time::timeout(CALLBACK_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(format!(
                "pre_promote {line} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Ok(Err(e)) => Err(format!("pre_promote {line}: {e}")),
            Err(_) => Err(format!(
                "pre_promote {line} timed out after {CALLBACK_TIMEOUT:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pre_promote_exit_status_decides() {
        let none = Callbacks::new(BTreeMap::new(), None, "demo".into());
        assert!(none.pre_promote().await.is_ok());
        let ok = Callbacks::new(BTreeMap::new(), Some("true".into()), "demo".into());
        assert!(ok.pre_promote().await.is_ok());
        let veto = Callbacks::new(BTreeMap::new(), Some("false".into()), "demo".into());
        let err = veto.pre_promote().await.unwrap_err();
        assert!(err.contains("pre_promote false"), "{err}");
    }

    #[tokio::test]
    async fn callback_gets_event_role_scope() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("args");
        let script = dir.path().join("cb.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$@\" > {}\n", out.display()),
        )
        .unwrap();
        // Run through `sh` rather than exec'ing the fresh file: another test thread forking
        // while the file is still open for writing would make exec fail with ETXTBSY.
        let cbs: BTreeMap<String, String> = [(
            "on_role_change".to_string(),
            format!("/bin/sh {}", script.display()),
        )]
        .into();
        let c = Callbacks::new(cbs, None, "demo".into());
        c.fire("on_start", "primary"); // not configured: nothing runs
        c.fire("on_role_change", "primary");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&out) {
                if text.ends_with('\n') {
                    assert_eq!(text.trim(), "on_role_change primary demo");
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "callback did not run"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
