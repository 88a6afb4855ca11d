//! Child processes: spawning with a log file, signalling, and killing whole
//! process trees so nothing outlives a test.
//!
//! Killing is done by pid lists read from `/proc`, not by process group: in
//! tests the children share the test runner's group (so Ctrl-C on `cargo test`
//! reaches them too), and a process tree can span groups anyway (an agent may
//! start PostgreSQL in its own session).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often process state is polled while waiting.
const POLL: Duration = Duration::from_millis(50);
/// Bound for killed orphans to be reaped by init (seconds in some containers).
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

static DETACH: AtomicBool = AtomicBool::new(false);

/// Start every later child in its own process group.
///
/// The demo calls this: Ctrl-C in a terminal signals the whole foreground
/// process group, and etcd must outlive the agents' shutdown (they release
/// the leader key through it), so only the demo itself may receive SIGINT and
/// then stop the children in order.
pub fn detach_process_groups() {
    DETACH.store(true, Ordering::SeqCst);
}

fn to_pid(raw: u32) -> Pid {
    // Linux pids are at most 2^22, so they always fit in an i32.
    Pid::from_raw(i32::try_from(raw).unwrap_or(i32::MAX))
}

/// Open `path` for appending (creating it), for a child's stdout and stderr.
pub fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))
}

/// State letter from `/proc/<pid>/stat`, `None` if there is no such process.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ppid ...`; comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// True if `pid` exists and is not a zombie. A zombie counts as gone: it has
/// released its ports and files, and whoever adopted it will reap it.
pub fn is_alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Parent-to-children map of every process, read from `/proc`.
fn children_map() -> HashMap<i32, Vec<i32>> {
    let mut map: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            map.entry(ppid).or_default().push(pid);
        }
    }
    map
}

/// Direct children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    children_map().remove(&pid).unwrap_or_default()
}

/// All descendants of `root` (not including `root`).
pub fn descendants(root: i32) -> Vec<i32> {
    let map = children_map();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in map.get(&p).into_iter().flatten() {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// SIGKILL `root` and all its descendants.
///
/// The tree is frozen with SIGSTOP first, repeating until no new descendant
/// appears: a stopped process cannot fork, so a process that is forking (an
/// agent starting pg_basebackup, a postmaster starting a backend) cannot leave
/// an orphan behind. Returns the pids that were signalled.
pub fn kill_tree(root: i32) -> Vec<i32> {
    let mut seen: HashSet<i32> = HashSet::new();
    let mut order = vec![root];
    let _ = kill(Pid::from_raw(root), Signal::SIGSTOP);
    seen.insert(root);
    // Bounded: a tree deeper than this is not something a test starts.
    for _ in 0..20 {
        let mut new = false;
        // Every process is stopped, not killed, so parent links stay intact
        // and `descendants` keeps seeing the whole tree.
        for p in descendants(root) {
            if seen.insert(p) {
                let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
                order.push(p);
                new = true;
            }
        }
        if !new {
            break;
        }
    }
    for &p in &order {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    order
}

/// Poll until none of `pids` is alive; false if `timeout` passed first.
pub fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| !is_alive(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Poll until none of `pids` exists at all, zombies included; false if
/// `timeout` passed first.
///
/// A killed postmaster that was not our child is reaped by init, which may
/// take a while (seconds, in some containers). Until then its pid answers
/// `kill(pid, 0)`, and a new postmaster on the same data dir refuses to start
/// ("lock file postmaster.pid already exists"). So after killing one we wait
/// for the pid to vanish, not just to die.
pub fn wait_reaped(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids
            .iter()
            .all(|&p| !Path::new(&format!("/proc/{p}")).exists())
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// The pid in the first line of `<data_dir>/postmaster.pid`, if that process
/// still exists (possibly as a zombie) and really is a PostgreSQL server —
/// pids get reused, and a stale file must not make us kill a stranger.
/// The database server of `data_dir` from its pid file: PostgreSQL's
/// `postmaster.pid`, or the `redis.pid` Warden's Redis engine has redis-server write.
fn pid_file_pid(data_dir: &Path) -> Option<i32> {
    let servers: [(&str, &[&str]); 2] = [
        ("postmaster.pid", &["postgres", "postmaster"]),
        ("redis.pid", &["redis-server"]),
    ];
    servers.iter().find_map(|(file, names)| {
        let text = std::fs::read_to_string(data_dir.join(file)).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        names.contains(&comm.trim()).then_some(pid)
    })
}

/// The running postmaster's pid from `<data_dir>/postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    pid_file_pid(data_dir).filter(|&p| is_alive(p))
}

/// Kill the PostgreSQL server of `data_dir` (and its backends) if one runs,
/// and wait until it is reaped, so a new server can start on the same data
/// dir at once. Returns false if that took longer than `timeout`.
pub fn kill_postmaster(data_dir: &Path, timeout: Duration) -> bool {
    match pid_file_pid(data_dir) {
        Some(pid) => wait_reaped(&kill_tree(pid), timeout),
        None => true,
    }
}

/// What a bounded command run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// `None` if the command was killed because it ran past its timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Exit code, `None` if it timed out or died by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// A readable account for assertion messages.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed after timeout".to_string(),
        };
        format!(
            "{status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Run `cmd` to completion with captured output, killing it (and its tree)
/// if it runs longer than `timeout`. Pipes are drained by threads so a
/// chatty command cannot block on a full pipe.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<RunOutput> {
    run_bounded_input(cmd, None, timeout)
}

/// [`run_bounded`] with `input` written to the command's standard input (then
/// closed), for commands that ask questions. `None`: stdin is /dev/null.
pub fn run_bounded_input(
    cmd: &mut Command,
    input: Option<&str>,
    timeout: Duration,
) -> Result<RunOutput> {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A thread, so a command that stops reading cannot block us; dropping the
        // handle closes the pipe (EOF for any further question).
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
    }
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().context("waiting for command")? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            kill_tree(to_pid(child.id()).as_raw());
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(POLL);
    };
    Ok(RunOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// A child process we started, with its output going to a log file.
/// Dropping it kills it and everything it started.
#[derive(Debug)]
pub struct Managed {
    name: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Managed {
    /// Spawn `cmd` with stdin from /dev/null and stdout/stderr appended to
    /// `log`. `name` is used in messages.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Managed> {
        let mut out = open_log(log)?;
        let _ = writeln!(out, "=== warden-tests: starting {name}: {cmd:?}");
        let err = out.try_clone().context("duplicating log file handle")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        if DETACH.load(Ordering::SeqCst) {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Managed {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exit: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> i32 {
        to_pid(self.child.id()).as_raw()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Send `sig` to the process itself (not its children).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        if self.exit.is_some() {
            anyhow::bail!("{} already exited", self.name);
        }
        kill(to_pid(self.child.id()), sig)
            .with_context(|| format!("sending {sig} to {}", self.name))
    }

    /// The exit status if the process has exited (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Poll until the process exits; `None` if `timeout` passed first.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL the process and all its descendants, reap it, and wait
    /// (bounded) until the descendants are reaped by whoever adopted them, so
    /// none of their pids or locks is still around when this returns.
    pub fn kill_tree(&mut self) {
        let mut killed = Vec::new();
        if self.try_exit().is_none() {
            killed = kill_tree(self.pid());
        }
        // After SIGKILL the wait returns at once; it reaps the zombie.
        if self.exit.is_none() {
            self.exit = self.child.wait().ok();
        }
        let own = self.pid();
        killed.retain(|&p| p != own);
        wait_reaped(&killed, REAP_TIMEOUT);
    }

    /// Send `sig`, wait up to `timeout` for exit, then kill the tree if it is
    /// still running. Returns the exit status if it exited by itself.
    pub fn stop(&mut self, sig: Signal, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.try_exit() {
            return Some(st);
        }
        let _ = self.signal(sig);
        let status = self.wait_exit(timeout);
        if status.is_none() {
            self.kill_tree();
        }
        status
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.kill_tree();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_tree_kills_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        let mut m = Managed::spawn("sh", Command::new("sh").args(["-c", &script]), &log).unwrap();
        let grandchild: i32 = crate::wait::wait_until(Duration::from_secs(5), "pid file", || {
            std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
        });
        assert!(is_alive(grandchild));
        assert!(descendants(m.pid()).contains(&grandchild));
        m.kill_tree();
        assert!(wait_gone(&[grandchild], Duration::from_secs(5)));
        assert!(!m.is_running());
    }

    #[test]
    fn stop_reports_exit_status_of_a_cooperative_child() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        let mut m = Managed::spawn(
            "sh",
            Command::new("sh").args([
                "-c",
                "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done",
            ]),
            &log,
        )
        .unwrap();
        crate::wait::wait_until(Duration::from_secs(5), "trap installed", || {
            // The header line quotes the script, so match the whole line.
            std::fs::read_to_string(&log)
                .ok()?
                .lines()
                .any(|l| l == "started")
                .then_some(())
        });
        let st = m.stop(Signal::SIGTERM, Duration::from_secs(5));
        assert_eq!(st.and_then(|s| s.code()), Some(0));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("=== warden-tests: starting sh"), "{text}");
    }

    #[test]
    fn run_bounded_captures_output_and_enforces_the_timeout() {
        let out = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            (out.code(), out.stdout.as_str(), out.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        let start = Instant::now();
        let out = run_bounded(Command::new("sleep").arg("30"), Duration::from_millis(300)).unwrap();
        assert!(out.status.is_none(), "{}", out.describe());
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn postmaster_pid_ignores_stale_or_foreign_pids() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        // Our own pid is alive but not a postgres process.
        std::fs::write(
            dir.path().join("postmaster.pid"),
            format!("{}\n/data\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        assert!(kill_postmaster(dir.path(), Duration::from_secs(1)));
    }
}
