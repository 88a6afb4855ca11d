//! Patroni's `log` section on a real agent. With `log.dir`, `file_size`, `file_num`,
//! `format` and `dateformat`, the agent writes `<dir>/patroni.log` (Patroni's name)
//! with every line in the configured format, rotates it below `file_size` into
//! `patroni.log.1` and `.2` and never keeps a third backup. No log it writes holds a
//! colour escape although the kit no longer sets `NO_COLOR`: neither the file nor,
//! after a restart without `log.dir`, standard error redirected to a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDateTime;
use warden_tests::{wait_until, Cluster, ClusterSpec};

const T: Duration = Duration::from_secs(90);
const FILE_SIZE: u64 = 4000;
const FORMAT: &str = "%(asctime)s [%(levelname)-8s] %(name)s: %(message)s";
const DATEFORMAT: &str = "%Y-%m-%dT%H:%M:%S";
const ESC: u8 = 0x1b;

/// Why `line` is not `FORMAT` with `DATEFORMAT` (`None`: it is).
fn format_problem(line: &str) -> Option<String> {
    let (Some(date), Some(rest)) = (line.get(..19), line.get(19..)) else {
        return Some("too short".into());
    };
    if NaiveDateTime::parse_from_str(date, DATEFORMAT).is_err() {
        return Some(format!("{date:?} is not {DATEFORMAT}"));
    }
    let Some(level) = rest.strip_prefix(" [").and_then(|r| r.get(..8)) else {
        return Some("no \" [\" and level after the date".into());
    };
    if !["DEBUG   ", "INFO    ", "WARNING ", "ERROR   "].contains(&level) {
        return Some(format!(
            "level {level:?} is not an 8-wide Patroni level name"
        ));
    }
    let Some((name, _message)) = rest[10..]
        .strip_prefix("] ")
        .and_then(|r| r.split_once(": "))
    else {
        return Some("no \"] name: message\" after the level".into());
    };
    if name.is_empty() || name.contains(' ') {
        return Some(format!("logger name {name:?}"));
    }
    None
}

/// Every line of `text` is in the configured format; returns how many lines.
fn assert_formatted(path: &Path, text: &str) -> usize {
    let Some(body) = text.strip_suffix('\n') else {
        panic!("{}: empty or ends without a newline", path.display());
    };
    for line in body.split('\n') {
        if let Some(why) = format_problem(line) {
            panic!("{}: {why}: {line:?}", path.display());
        }
    }
    body.split('\n').count()
}

fn read(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        !bytes.contains(&ESC),
        "{}: holds an ESC byte",
        path.display()
    );
    String::from_utf8(bytes).unwrap()
}

fn first_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next().map(str::to_owned)
}

#[test]
fn log_dir_rotates_patroni_log_in_the_configured_format() {
    // The line check itself: Patroni's default layout is not the configured one.
    assert!(format_problem("2026-01-02 03:04:05,678 INFO: x").is_some());
    assert!(format_problem("2026-01-02T03:04:05 [INFO    ] warden_pg: x").is_none());
    let mut cluster = Cluster::start(ClusterSpec::new(1).without_haproxy().customize(|_, c| {
        let dir = c.node_dir.join("logs");
        c.set("log.level", "DEBUG")
            .set("log.dir", dir.display().to_string())
            .set("log.file_size", FILE_SIZE)
            .set("log.file_num", 2)
            .set("log.format", FORMAT)
            .set("log.dateformat", DATEFORMAT)
    }))
    .unwrap();
    let dir = cluster.node(0).node_dir().join("logs");
    let log = dir.join("patroni.log");
    let backup = |n: u32| dir.join(format!("patroni.log.{n}"));

    // DEBUG lines fill 4000 bytes within a few loops; wait for two rotations, then
    // for one more (a newer first line in .1), which must not leave a third backup.
    wait_until(T, "patroni.log.2", || backup(2).exists().then_some(()));
    let before = wait_until(T, "patroni.log.1", || first_line(&backup(1)));
    wait_until(T, "one more rotation of patroni.log", || {
        first_line(&backup(1)).filter(|l| *l != before)
    });
    // Stopped, the agent no longer rotates the files under the checks.
    let node = cluster.node_mut(0);
    node.sigterm_and_wait(T).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["patroni.log", "patroni.log.1", "patroni.log.2"]);
    let mut all = String::new();
    for path in [backup(2), backup(1), log] {
        let text = read(&path);
        let lines = assert_formatted(&path, &text);
        let size = text.len() as u64;
        assert!(
            size < FILE_SIZE || lines == 1,
            "{}: {size} bytes in {lines} lines, file_size is {FILE_SIZE}",
            path.display()
        );
        all.push_str(&text);
    }
    assert!(
        all.contains("DEBUG   ] "),
        "log.level DEBUG lets DEBUG lines through"
    );

    // Standard error: the agent again, without log.dir, its stderr a file and no
    // NO_COLOR in its environment.
    let stderr_log: PathBuf = node.log_path();
    let offset = std::fs::read(&stderr_log).unwrap().len();
    let config = node.config_mut();
    *config = config.clone().remove("log.dir");
    node.write_config().unwrap();
    node.start().unwrap();
    wait_until(T, "formatted lines on the agent's standard error", || {
        let text = read(&stderr_log);
        let fresh = text.get(offset..)?;
        fresh
            .lines()
            .any(|l| format_problem(l).is_none() && l.contains("DEBUG   ] "))
            .then_some(())
    });
}
