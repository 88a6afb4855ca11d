//! The guard: a small separate process that kills PostgreSQL when the leader's lease
//! deadline passes and nobody (the agent) said otherwise.
//!
//! It exists for the case the agent cannot act itself: the agent process frozen
//! (SIGSTOP, a stuck VM thread) or dead (SIGKILL). The agent feeds it one line per HA
//! turn on stdin:
//!
//! - `arm-at <nanoseconds> <pid>`: kill `pid` (the postmaster) and all its children if
//!   no newer line arrives before `CLOCK_MONOTONIC` reads `<nanoseconds>`. The time is
//!   absolute, so an agent stopped between computing it and writing it cannot make the
//!   guard fire late;
//! - `arm <milliseconds> <pid>`: the same, `<milliseconds>` after the line is read;
//! - `disarm`: we are not the leader; do nothing.
//!
//! The guard keeps its last deadline after stdin closes (a dead agent is exactly when it
//! matters), and it remembers the postmaster's start time so a reused pid is never
//! killed. Once it has fired it stays, disarmed, for the agent's next `arm`: an agent
//! that was frozen resumes, may lead again, and must find its guard there. It uses only
//! the monotonic clock.

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Arm { fire_in: Duration, pid: i32 },
    ArmAt { monotonic_ns: u64, pid: i32 },
    Disarm,
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock the agent and its guard share.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec()).unwrap_or(0)
}

/// Maps `Instant`s of this process to `CLOCK_MONOTONIC` nanoseconds and back, from one
/// reading of both (the mapping involves no later "now", so a stop in between cannot
/// shift it).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicMap {
    instant: Instant,
    ns: u64,
}

impl MonotonicMap {
    pub fn new() -> Self {
        Self {
            instant: Instant::now(),
            ns: monotonic_ns(),
        }
    }

    pub fn to_ns(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.instant) {
            Some(after) => self
                .ns
                .saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX)),
            None => self.ns.saturating_sub(
                u64::try_from(self.instant.duration_since(t).as_nanos()).unwrap_or(u64::MAX),
            ),
        }
    }

    pub fn to_instant(&self, ns: u64) -> Instant {
        if ns >= self.ns {
            self.instant + Duration::from_nanos(ns - self.ns)
        } else {
            self.instant
                .checked_sub(Duration::from_nanos(self.ns - ns))
                .unwrap_or(self.instant)
        }
    }
}

impl Default for MonotonicMap {
    fn default() -> Self {
        Self::new()
    }
}

pub fn parse_line(line: &str) -> Result<Command, String> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("disarm") => Ok(Command::Disarm),
        Some("arm-at") => {
            let monotonic_ns: u64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("arm-at: expected nanoseconds in {line:?}"))?;
            let pid: i32 = words
                .next()
                .and_then(|w| w.parse().ok())
                .filter(|p| *p > 1)
                .ok_or_else(|| format!("arm-at: expected a pid in {line:?}"))?;
            Ok(Command::ArmAt { monotonic_ns, pid })
        }
        Some("arm") => {
            let ms: u64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("arm: expected milliseconds in {line:?}"))?;
            let pid: i32 = words
                .next()
                .and_then(|w| w.parse().ok())
                .filter(|p| *p > 1)
                .ok_or_else(|| format!("arm: expected a pid in {line:?}"))?;
            Ok(Command::Arm {
                fire_in: Duration::from_millis(ms),
                pid,
            })
        }
        _ => Err(format!("unknown guard command {line:?}")),
    }
}

/// The process's start time (field 22 of /proc/<pid>/stat), to tell a reused pid apart.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    // `rest` starts at field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Armed {
    deadline: Instant,
    pid: i32,
    start_time: u64,
}

/// The direct children of `pid`, from /proc (PostgreSQL's backends call `setsid()`, so
/// they are not in the postmaster's process group).
fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(") ")?;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Kills the postmaster and every backend at once, so no backend acknowledges another
/// commit: freeze the postmaster (no new children), SIGKILL its children, then it.
fn kill_tree(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
    for child in children(pid) {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
        eprintln!("warden guard: cannot kill postmaster {pid}: {e}");
    }
}

/// Runs the guard until stdin closes while it is disarmed (or has fired).
pub fn run(input: impl BufRead + Send + 'static) -> i32 {
    let (tx, rx) = mpsc::sync_channel::<Option<Command>>(16);
    std::thread::spawn(move || {
        for line in input.lines() {
            let Ok(line) = line else { break };
            match parse_line(&line) {
                Ok(cmd) => {
                    if tx.send(Some(cmd)).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("warden guard: {e}"),
            }
        }
        let _ = tx.send(None);
    });
    let clock = MonotonicMap::new();
    let mut armed: Option<Armed> = None;
    let mut input_open = true;
    loop {
        let now = Instant::now();
        if let Some(a) = armed {
            if now >= a.deadline {
                if start_time(a.pid) == Some(a.start_time) {
                    eprintln!("warden guard: lease deadline passed without renewal; killing PostgreSQL (pid {})", a.pid);
                    kill_tree(a.pid);
                }
                // Stay, disarmed, for the agent's next arm: an agent that resumes and
                // leads again must find its guard still there.
                armed = None;
                continue;
            }
        } else if !input_open {
            return 0;
        }
        let wait = armed.map_or(Duration::from_secs(3600), |a| {
            a.deadline.saturating_duration_since(now)
        });
        if !input_open {
            std::thread::sleep(wait);
            continue;
        }
        match rx.recv_timeout(wait) {
            Ok(Some(Command::Arm { fire_in, pid })) => {
                armed = start_time(pid).map(|st| Armed {
                    deadline: Instant::now() + fire_in,
                    pid,
                    start_time: st,
                });
            }
            Ok(Some(Command::ArmAt { monotonic_ns, pid })) => {
                armed = start_time(pid).map(|st| Armed {
                    deadline: clock.to_instant(monotonic_ns),
                    pid,
                    start_time: st,
                });
            }
            Ok(Some(Command::Disarm)) => armed = None,
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => input_open = false,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse_line("disarm"), Ok(Command::Disarm));
        assert_eq!(
            parse_line("arm 1500 4242"),
            Ok(Command::Arm {
                fire_in: Duration::from_millis(1500),
                pid: 4242
            })
        );
        assert!(parse_line("arm soon 1").is_err());
        assert!(parse_line("arm 10 1").is_err(), "pid 1 is never ours");
        assert!(parse_line("fire").is_err());
        assert_eq!(
            parse_line("arm-at 123456789 4242"),
            Ok(Command::ArmAt {
                monotonic_ns: 123_456_789,
                pid: 4242
            })
        );
        assert!(parse_line("arm-at soon 4242").is_err());
    }

    #[test]
    fn monotonic_map_round_trips_and_matches_the_clock() {
        let map = MonotonicMap::new();
        let later = Instant::now() + Duration::from_secs(5);
        let ns = map.to_ns(later);
        let direct = monotonic_ns() + 5_000_000_000;
        assert!(ns.abs_diff(direct) < 50_000_000, "{ns} vs {direct}");
        assert!(map.to_instant(ns).duration_since(later) < Duration::from_micros(1));
        assert!(later.duration_since(map.to_instant(ns)) < Duration::from_micros(1));
    }

    #[test]
    fn an_absolute_arm_in_the_past_fires_at_once() {
        // The agent was stopped after computing its deadline and wrote it late: the
        // guard must not count from the moment it read the line.
        let mut victim = spawn_group_leader();
        let pid = i32::try_from(victim.id()).unwrap();
        let past = monotonic_ns() - 1_000_000_000;
        let started = Instant::now();
        assert_eq!(
            run(std::io::Cursor::new(format!("arm-at {past} {pid}\n"))),
            0
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!victim.wait().unwrap().success(), "killed at once");
    }

    #[test]
    fn start_time_identifies_a_live_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(i32::MAX), None);
    }

    fn spawn_group_leader() -> std::process::Child {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap()
    }

    #[test]
    fn kills_children_in_their_own_sessions() {
        // A shell (the "postmaster") with a child that calls setsid, as backends do.
        let mut parent = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 60 & wait"])
            .spawn()
            .unwrap();
        let pid = i32::try_from(parent.id()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let child = loop {
            if let Some(c) = children(pid).first().copied() {
                break c;
            }
            assert!(Instant::now() < deadline, "child never appeared");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(run(std::io::Cursor::new(format!("arm 10 {pid}\n"))), 0);
        parent.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{child}/stat"))
            .is_ok_and(|s| !s.contains(") Z"))
        {
            assert!(
                Instant::now() < deadline,
                "the setsid child survived the guard"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn fires_when_not_renewed_and_spares_when_disarmed() {
        let mut victim = spawn_group_leader();
        let pid = i32::try_from(victim.id()).unwrap();
        let input = std::io::Cursor::new(format!("arm 50 {pid}\n"));
        assert_eq!(run(input), 0);
        let status = victim.wait().unwrap();
        assert!(!status.success(), "the guard must have killed the process");

        let mut spared = spawn_group_leader();
        let pid = i32::try_from(spared.id()).unwrap();
        assert_eq!(
            run(std::io::Cursor::new(format!("arm 50 {pid}\ndisarm\n"))),
            0
        );
        assert!(
            spared.try_wait().unwrap().is_none(),
            "disarmed guard must not kill"
        );
        spared.kill().unwrap();
        spared.wait().unwrap();
    }

    /// Waits (bounded) until `child` has exited.
    fn exited(child: &mut std::process::Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn after_firing_it_serves_the_next_arm() {
        use std::io::Write;
        let (mut agent, guard_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let guard = std::thread::spawn(move || run(std::io::BufReader::new(guard_end)));
        let mut first = spawn_group_leader();
        writeln!(agent, "arm 50 {}", first.id()).unwrap();
        assert!(exited(&mut first), "the first arm must fire");
        // The agent resumes and leads again with a new postmaster.
        let mut second = spawn_group_leader();
        writeln!(agent, "arm 50 {}", second.id()).unwrap();
        assert!(
            exited(&mut second),
            "a guard that has fired must still fire again"
        );
        drop(agent);
        assert_eq!(
            guard.join().unwrap(),
            0,
            "input closed while disarmed: it exits"
        );
    }
}
