//! Polling with a deadline — the only way tests synchronise with processes.
//!
//! Sleeping for "long enough" makes tests slow on a fast machine and flaky on
//! a slow one; polling a condition until a deadline does neither. When a wait
//! times out, the panic message carries the tail of every log file registered
//! on the current thread (each test runs on its own thread and the kit
//! registers the logs of the processes it starts there), so a CI failure can
//! be diagnosed from the test output alone.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Interval between two evaluations of a polled condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Lines of each log shown when a wait fails.
const TAIL_LINES: usize = 60;

thread_local! {
    static LOGS: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

/// Include `path` in the log dump of failed waits on this thread.
pub fn register_log(path: &Path) {
    LOGS.with(|l| {
        let mut l = l.borrow_mut();
        if !l.iter().any(|p| p == path) {
            l.push(path.to_path_buf());
        }
    });
}

/// Stop including `path` in log dumps (its process and directory are gone).
pub fn unregister_log(path: &Path) {
    LOGS.with(|l| l.borrow_mut().retain(|p| p != path));
}

/// Logs registered on this thread.
pub fn registered_logs() -> Vec<PathBuf> {
    LOGS.with(|l| l.borrow().clone())
}

/// The last `lines` lines of a file (or a note that it could not be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

/// The tail of each of `paths`, with headers.
pub fn dump_logs(paths: &[PathBuf]) -> String {
    let mut out = String::new();
    for p in paths {
        let _ = writeln!(
            out,
            "----- last {TAIL_LINES} lines of {} -----\n{}",
            p.display(),
            tail(p, TAIL_LINES)
        );
    }
    out
}

/// The tail of every log registered on this thread.
pub fn dump_registered_logs() -> String {
    dump_logs(&registered_logs())
}

/// Poll `f` every [`POLL_INTERVAL`] until it returns `Some`, at most for
/// `timeout`. `None` on timeout. `f` is evaluated at least once, and once more
/// after the deadline passed, so a slow `f` never loses its last chance.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Like [`poll_until`], but panics on timeout with `what`, the elapsed time
/// and the tail of the registered logs.
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    match poll_until(timeout, f) {
        Some(v) => v,
        None => panic!(
            "timed out after {:.1?} waiting for: {what}\n{}",
            start.elapsed(),
            dump_registered_logs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut n = 0;
        let v = wait_until(Duration::from_secs(5), "counter", || {
            n += 1;
            (n >= 3).then_some(n * 10)
        });
        assert_eq!(v, 30);
    }

    #[test]
    fn times_out_with_what_and_logs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, "first\nlast line of the log\n").unwrap();
        register_log(&log);
        let err = std::panic::catch_unwind(|| {
            wait_until(Duration::from_millis(200), "never true", || None::<()>)
        })
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("never true"), "{msg}");
        assert!(msg.contains("last line of the log"), "{msg}");
        unregister_log(&log);
        assert!(registered_logs().is_empty());
    }

    #[test]
    fn tail_keeps_only_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "1\n2\n3\n4\n").unwrap();
        assert_eq!(tail(&p, 2), "3\n4");
        assert_eq!(tail(&p, 10), "1\n2\n3\n4");
    }
}
