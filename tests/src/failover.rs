//! Measurements shared by the failover tests: did the old primary stop
//! acknowledging writes before another node was promoted?
//!
//! The evidence is conservative on both sides. For the old primary, the
//! writer's last acknowledgement and first error are instants at which the
//! client *knew* (an acknowledgement received, an error received), so the
//! old primary stopped writing no later than those. For the new primary, a
//! [`Transition`]'s `not_before` is when the previous `/primary` poll (which
//! still saw no 200) was sent, so it cannot have been promoted before that.
//! "Writes stopped before promotion" is then `first_failure.at <
//! promoted.not_before` and `last_ack.acked < promoted.not_before`.

use std::time::{Duration, Instant};

use crate::observe::{PrimaryWatch, Transition};
use crate::wait;
use crate::workload::{Ack, Failure, Outcome, Writer};

/// `1.23 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Seconds from `t0` to `t`, negative if `t` came first.
pub fn since(t0: Instant, t: Instant) -> String {
    if t >= t0 {
        secs(t - t0)
    } else {
        format!("-{}", secs(t0 - t))
    }
}

/// Order of events after a fault injected on the primary at `t0`.
#[derive(Debug, Clone)]
pub struct FenceOrder {
    pub t0: Instant,
    /// Index of the old primary.
    pub old: usize,
    /// Index of the node that answered 200 on `/primary` first after `t0`.
    pub new: usize,
    pub promoted: Transition,
    /// The last write the old primary acknowledged.
    pub last_ack: Ack,
    /// The first write that failed at or after `t0`.
    pub first_failure: Failure,
    /// Writes acknowledged at or after `t0`.
    pub acked_after_fault: usize,
}

impl FenceOrder {
    /// Wait (at most `timeout`) until a node other than `old` answers 200 on
    /// `/primary` after `t0`, then collect the writer's evidence. Panics with
    /// the logs if no node is promoted or no write failed.
    pub fn measure(
        writer: &Writer,
        primaries: &PrimaryWatch,
        old: usize,
        t0: Instant,
        timeout: Duration,
    ) -> FenceOrder {
        let (new, promoted) = wait::wait_until(
            timeout,
            "another node answers 200 on /primary after the fault",
            || primaries.first_other_200(old, t0),
        );
        let first_failure = writer.first_failure_since(t0).unwrap_or_else(|| {
            panic!(
                "{} was promoted but no write to the old primary has failed\n{}",
                primaries.names()[new],
                wait::dump_registered_logs()
            )
        });
        let acks = writer.acks();
        let last_ack = *acks.last().unwrap_or_else(|| {
            panic!("no write was ever acknowledged");
        });
        FenceOrder {
            t0,
            old,
            new,
            promoted,
            last_ack,
            acked_after_fault: acks.iter().filter(|a| a.acked >= t0).count(),
            first_failure,
        }
    }

    /// One line for the test output.
    pub fn report(&self, names: &[String]) -> String {
        format!(
            "fault at 0 s on {}: its last write acknowledged at {}, first write failed at {} ({}); \
             {} answered 200 on /primary at {} (not before {}); {} writes acknowledged after the fault",
            names[self.old],
            since(self.t0, self.last_ack.acked),
            since(self.t0, self.first_failure.at),
            self.first_failure.error.lines().next().unwrap_or(""),
            names[self.new],
            since(self.t0, self.promoted.seen),
            since(self.t0, self.promoted.not_before),
            self.acked_after_fault,
        )
    }

    /// Margin between the old primary's last acknowledged write (or first
    /// failure, whichever is later) and the earliest possible promotion.
    pub fn margin(&self) -> Option<Duration> {
        let stopped = self.last_ack.acked.max(self.first_failure.at);
        self.promoted.not_before.checked_duration_since(stopped)
    }

    /// Fold in every outcome of the writer (call after [`Writer::stop`], so
    /// acknowledgements that arrived after [`FenceOrder::measure`] count
    /// too): the last acknowledgement from `old_port`.
    pub fn with_final_outcomes(mut self, outcomes: &[Outcome], old_port: u16) -> FenceOrder {
        if let Some(a) = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Ack(a) if a.server_port == old_port => Some(*a),
                _ => None,
            })
            .max_by_key(|a| a.acked)
        {
            self.last_ack = a;
        }
        self.acked_after_fault = outcomes
            .iter()
            .filter(
                |o| matches!(o, Outcome::Ack(a) if a.acked >= self.t0 && a.server_port == old_port),
            )
            .count();
        self
    }

    /// Panics (with `logs`) unless the old primary kept acknowledging writes
    /// after the fault (so the failures are its fence, not the fault itself)
    /// and stopped before the new one can have been promoted.
    pub fn assert_writes_stopped_before_promotion(&self, names: &[String], logs: &str) {
        assert!(
            self.acked_after_fault > 0,
            "no write was acknowledged after the fault: the test did not exercise the fence\n{logs}"
        );
        assert!(
            self.first_failure.at < self.promoted.not_before,
            "{}: writes to the old primary first failed after another node may have been promoted\n{logs}",
            self.report(names)
        );
        assert!(
            self.last_ack.acked < self.promoted.not_before,
            "{}: the old primary acknowledged a write after another node may have been promoted\n{logs}",
            self.report(names)
        );
    }

    /// Panics (with `logs`) unless the old primary's instance was really fenced: the
    /// transaction running through the fault must not have committed, and no process
    /// of the old PostgreSQL may have survived until the promotion. `t0` is the fault.
    pub fn assert_old_instance_fenced(
        &self,
        t0: Instant,
        held: &HeldTransaction,
        held_outcome: Option<&HeldOutcome>,
        backend_outlived_fence: bool,
        surviving: &[(i32, String)],
        logs: &str,
    ) {
        match held_outcome {
            Some((Err(e), at)) => println!(
                "the transaction running during the fault failed at {}: {}",
                since(t0, *at),
                e.lines().next().unwrap_or("")
            ),
            Some((Ok(()), at)) => panic!(
                "the old primary acknowledged the COMMIT of a transaction that was running during the \
                 fault, at {} (another node promoted not later than {}); its backend {} was {} when \
                 released\n{logs}",
                since(t0, *at),
                since(t0, self.promoted.not_before),
                held.backend_pid(),
                if backend_outlived_fence { "still alive" } else { "gone" },
            ),
            None => panic!("the long transaction neither committed nor failed within 30 s\n{logs}"),
        }
        assert!(
            surviving.is_empty(),
            "processes of the old primary's PostgreSQL were still running when another node was \
             promoted (not later than {}): {surviving:?}\n{logs}",
            since(t0, self.promoted.not_before)
        );
    }
}

/// Name of the file whose appearance in the data directory lets a
/// [`HeldTransaction`] commit.
pub const RELEASE_FILE: &str = "warden_test_release";

/// How a [`HeldTransaction`] ended: its COMMIT acknowledged (`Ok`) or an
/// error, and when the client learnt it.
pub type HeldOutcome = (Result<(), String>, Instant);

/// A transaction that is *executing* (a busy loop in PL/pgSQL, not a wait)
/// when a fault hits, and tries to commit only when the test releases it.
///
/// It checks what a stream of short writes cannot: that fencing also stops a
/// backend that is in the middle of a statement. A backend waiting for its
/// client exits as soon as the postmaster dies, but a running statement
/// does not look; if it survives the fence, its COMMIT is acknowledged
/// whenever it gets there. The loop checks for [`RELEASE_FILE`] in the data
/// directory (`pg_ls_dir`), so the test decides when the commit is attempted
/// (e.g. after another node was promoted); it gives up after 60 s.
#[derive(Debug)]
pub struct HeldTransaction {
    data_dir: std::path::PathBuf,
    backend_pid: i32,
    handle: Option<std::thread::JoinHandle<()>>,
    result: std::sync::Arc<std::sync::Mutex<Option<HeldOutcome>>>,
}

impl HeldTransaction {
    /// Open a session on `node`, insert a row into `table` (created if
    /// needed), and start the busy loop; returns once the loop is running.
    pub fn start(node: &crate::Node, table: &str) -> anyhow::Result<HeldTransaction> {
        use anyhow::Context;
        let port = node.pg_port();
        crate::sql::execute(
            port,
            &format!("CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY)"),
        )?;
        let mut client = crate::sql::connect(port)?;
        let backend_pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .context("pg_backend_pid()")?
            .get(0);
        let batch = format!(
            "SET statement_timeout = 0; BEGIN; INSERT INTO {table} VALUES (1); \
             DO $$ DECLARE give_up timestamptz := clock_timestamp() + interval '60 seconds'; \
             BEGIN WHILE clock_timestamp() < give_up AND NOT EXISTS \
             (SELECT 1 FROM pg_ls_dir('.') AS f WHERE f = '{RELEASE_FILE}') LOOP END LOOP; END $$; \
             COMMIT;"
        );
        let result = std::sync::Arc::new(std::sync::Mutex::new(None));
        let r = std::sync::Arc::clone(&result);
        let handle = std::thread::Builder::new()
            .name("held-transaction".into())
            .spawn(move || {
                let out = client
                    .batch_execute(&batch)
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e)));
                *r.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((out, Instant::now()));
            })
            .context("spawning the held transaction")?;
        let held = HeldTransaction {
            data_dir: node.data_dir(),
            backend_pid,
            handle: Some(handle),
            result,
        };
        wait::wait_until(
            Duration::from_secs(10),
            "the held transaction's loop is running",
            || {
                let q = format!(
                    "SELECT count(*)::text FROM pg_stat_activity WHERE pid = {backend_pid} \
                     AND state = 'active' AND query LIKE '%{RELEASE_FILE}%'"
                );
                (crate::sql::query_text(port, &q).ok()??.as_str() == "1").then_some(())
            },
        );
        Ok(held)
    }

    /// The backend's pid.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// True while the backend process exists (an orphan, if its postmaster
    /// was killed).
    pub fn backend_alive(&self) -> bool {
        crate::process::is_alive(self.backend_pid)
            && std::fs::read_to_string(format!("/proc/{}/comm", self.backend_pid))
                .is_ok_and(|c| c.trim() == "postgres")
    }

    /// Let the loop end (the COMMIT follows), and wait at most `timeout` for
    /// the outcome: `Ok` if the COMMIT was acknowledged, with the instant the
    /// client learnt it. `None` if there is no outcome within `timeout`.
    pub fn release_and_wait(&mut self, timeout: Duration) -> Option<(Result<(), String>, Instant)> {
        // Best effort: the directory may be gone or unwritable, and a dead
        // backend needs no release.
        let _ = std::fs::write(self.data_dir.join(RELEASE_FILE), b"");
        let out = crate::wait::poll_until(timeout, || {
            self.result
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        });
        let _ = std::fs::remove_file(self.data_dir.join(RELEASE_FILE));
        out
    }
}

impl Drop for HeldTransaction {
    fn drop(&mut self) {
        // An orphaned backend is nobody's child: never leave it spinning.
        if self.backend_alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.backend_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_file(self.data_dir.join(RELEASE_FILE));
        if let Some(h) = self.handle.take() {
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// The postmaster of `node` and its children (backends, walsenders,
/// auxiliary processes), as `(pid, process title)`.
pub fn postgres_processes(node: &crate::Node) -> Vec<(i32, String)> {
    let Some(pm) = node.postmaster_pid() else {
        return Vec::new();
    };
    std::iter::once(pm)
        .chain(crate::process::children(pm))
        .map(|pid| (pid, title(pid)))
        .collect()
}

/// Those of `procs` that are still running (zombies count as gone).
pub fn survivors(procs: &[(i32, String)]) -> Vec<(i32, String)> {
    procs
        .iter()
        .filter(|(pid, t)| crate::process::is_alive(*pid) && title(*pid) == *t)
        .cloned()
        .collect()
}

fn title(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}
