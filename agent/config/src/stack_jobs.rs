//! `backup.jobs`: backups of the rest of the stack (other datastores, files) in the
//! same repository, with the same sealing, listing, verify, retention and drills.
//!
//! ```yaml
//! backup:
//!   jobs:
//!     - name: etcd
//!       kind: command
//!       # stdout is the backup; $WARDEN_SCRATCH is a private temporary directory
//!       backup_command: [sh, -c, "etcdctl snapshot save $WARDEN_SCRATCH/s.db >&2 && cat $WARDEN_SCRATCH/s.db"]
//!       # stdin is the backup; $WARDEN_RESTORE_DIR is where it goes
//!       restore_command: [sh, -c, "cat > $WARDEN_SCRATCH/s.db && etcdctl snapshot restore $WARDEN_SCRATCH/s.db --data-dir $WARDEN_RESTORE_DIR"]
//!       schedule: "*/30 * * * *"
//!       retention: {keep_last: 48}
//!       timeout: 1h
//!       drill:
//!         schedule: "0 4 * * 0"
//!         timeout: 10m
//!         start_command: [etcd, --data-dir, $WARDEN_RESTORE_DIR, ...]
//!         checks: [{name: key, command: [etcdctl, get, k, --print-value-only], expect: v}]
//! ```
//!
//! Every program a job names is looked up when the config is loaded (a job that
//! cannot run is refused then, not at 3 a.m.), and so is every password file's
//! readability; only the path is kept, never the password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::backup::duration;
use super::backup_jobs::{retention_at, schedule};
use super::reader::{Reader, Section};
use super::schema::{Key, Kind as KeyKind};
use super::types::{CronSchedule, Retention};

/// Bound on one run of a job's backup (and, separately, its restore) unless `timeout`.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Bound on a job's drill unless `drill.timeout`.
pub const DEFAULT_JOB_DRILL_TIMEOUT: Duration = Duration::from_secs(3600);
const NAME_MAX: usize = 64;
const KINDS: &str = "command, restic, mariadb, mysql";

const fn key(name: &'static str) -> Key {
    Key {
        name,
        kind: KeyKind::Warden,
    }
}

const COMMON: &[&str] = &["name", "kind", "schedule", "retention", "timeout", "drill"];
const COMMAND_KEYS: &[&str] = &["backup_command", "restore_command"];
const RESTIC_KEYS: &[&str] = &["repository", "password_file", "paths", "exclude", "tags"];
const MARIADB_KEYS: &[&str] = &["connection", "databases", "method", "datadir"];
const JOB_DRILL: &[Key] = &[
    key("schedule"),
    key("timeout"),
    key("start_command"),
    key("checks"),
];
const COMMAND_CHECK: &[Key] = &[key("name"), key("command"), key("expect")];
const SQL_CHECK: &[Key] = &[key("name"), key("sql"), key("expect")];
const FILE_CHECK: &[Key] = &[key("name"), key("path"), key("size"), key("sha256")];
const CONNECTION: &[Key] = &[key("host"), key("port"), key("user"), key("password_file")];

/// One `backup.jobs[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackJob {
    /// `[A-Za-z0-9_.-]`, unique: names its directory in the repository and `--job`.
    pub name: String,
    pub kind: StackJobKind,
    /// `None`: on demand only (`wardenctl backup create --job NAME`).
    pub schedule: Option<CronSchedule>,
    /// `backup.retention`'s rules for this job's sets; all `None`: keep everything.
    pub retention: Retention,
    /// Bound on one backup (and one restore) run.
    pub timeout: Duration,
    pub drill: StackDrill,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackJobKind {
    Command(CommandJob),
    Restic(ResticJob),
    /// `mariadb` and `mysql` (`flavor` says which tools to run).
    Mariadb(MariadbJob),
}

impl StackJobKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Command(_) => "command",
            Self::Restic(_) => "restic",
            Self::Mariadb(m) if m.mysql => "mysql",
            Self::Mariadb(_) => "mariadb",
        }
    }
}

/// `kind: command`: stdout of `backup_command` is the backup; `restore_command` reads
/// it on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandJob {
    pub backup_command: Vec<String>,
    pub restore_command: Option<Vec<String>>,
}

/// `kind: restic`: restic's own repository, driven by Warden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResticJob {
    pub repository: String,
    pub password_file: PathBuf,
    pub paths: Vec<PathBuf>,
    pub exclude: Vec<String>,
    pub tags: Vec<String>,
}

/// `kind: mariadb` / `mysql`: logical dumps, or physical copies (`mariadb-backup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariadbJob {
    pub mysql: bool,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password_file: Option<PathBuf>,
    pub databases: Vec<String>,
    pub physical: bool,
    /// `physical`: the server's data directory (read by `mariadb-backup`); `None`:
    /// asked from the server (`SELECT @@datadir`) at each run.
    pub datadir: Option<PathBuf>,
}

impl MariadbJob {
    /// The physical method's programs: the backup tool and its stream extractor.
    pub fn physical_tools(&self) -> (&'static str, &'static str) {
        physical_tools(self.mysql)
    }
}

/// `mariadb-backup` and `mbstream` (MariaDB); Percona's `xtrabackup` and `xbstream`
/// for `mysql`, whose servers `mariadb-backup` cannot copy.
pub fn physical_tools(mysql: bool) -> (&'static str, &'static str) {
    if mysql {
        ("xtrabackup", "xbstream")
    } else {
        ("mariadb-backup", "mbstream")
    }
}

/// `backup.jobs[i].drill`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDrill {
    pub schedule: Option<CronSchedule>,
    pub timeout: Duration,
    /// Started after the restore (its own process group, killed after the checks).
    pub start_command: Option<Vec<String>>,
    pub checks: Vec<StackCheck>,
}

/// One drill check: a command whose trimmed stdout must equal `expect` (exit 0 alone
/// when `expect` is absent), or for SQL kinds a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackCheck {
    pub name: String,
    pub command: Vec<String>,
    pub sql: Option<String>,
    pub expect: Option<String>,
    /// restic: a file of the restored tree (the path as backed up) that must exist,
    /// with this size and SHA-256 (hex) when given.
    pub path: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckMode {
    Command,
    Sql,
    File,
}

pub(super) fn jobs(r: &mut Reader, value: &Value) -> Option<Vec<StackJob>> {
    const KEY: &str = "backup.jobs";
    let Value::Sequence(items) = value else {
        r.error(KEY, "expected a list of jobs ({name, kind, schedule, ...})");
        return None;
    };
    let mut out: Vec<StackJob> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("{KEY}[{i}]");
        match job(r, &path, item) {
            Some(j) => {
                if let Some(k) = out.iter().position(|o| o.name == j.name) {
                    r.error(
                        format!("{path}.name"),
                        format!("\"{}\" is already the name of {KEY}[{k}]", j.name),
                    );
                    ok = false;
                } else {
                    out.push(j);
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn job(r: &mut Reader, path: &str, value: &Value) -> Option<StackJob> {
    let s = r.section(path, value)?;
    let kind_text = r
        .required(&s, "kind")
        .and_then(|v| r.string(&s.path_of("kind"), v));
    let own: &[&str] = match kind_text.as_deref() {
        Some("command") => COMMAND_KEYS,
        Some("restic") => RESTIC_KEYS,
        Some("mariadb" | "mysql") => MARIADB_KEYS,
        Some(other) => {
            r.error(
                s.path_of("kind"),
                format!("unknown job kind \"{other}\" (known: {KINDS})"),
            );
            return None;
        }
        None => return None,
    };
    for (k, _) in s.entries() {
        let name = super::reader::key_text(k).unwrap_or_default();
        if !COMMON.contains(&name.as_str()) && !own.contains(&name.as_str()) {
            r.error(
                s.path_of(&name),
                format!(
                    "unknown key for a {} job (known: {})",
                    kind_text.as_deref().unwrap_or("?"),
                    [COMMON, own].concat().join(", ")
                ),
            );
        }
    }
    let name = r
        .required(&s, "name")
        .and_then(|v| r.string(&s.path_of("name"), v))
        .and_then(|n| check_name(r, &s.path_of("name"), n));
    let schedule = match s.get("schedule") {
        None => Some(None),
        Some(v) => firing_schedule(r, &s.path_of("schedule"), v).map(Some),
    };
    let retention = match s.get("retention") {
        None => Some(Retention::default()),
        Some(v) => retention_at(r, &s.path_of("retention"), v),
    };
    let timeout = match s.get("timeout") {
        None => Some(DEFAULT_JOB_TIMEOUT),
        Some(v) => duration(r, &s.path_of("timeout"), v),
    };
    let mode = match kind_text.as_deref() {
        Some("mariadb" | "mysql") => CheckMode::Sql,
        Some("restic") => CheckMode::File,
        _ => CheckMode::Command,
    };
    let drill = drill(r, &s, mode);
    let kind = match kind_text.as_deref() {
        Some("command") => command_job(r, &s).map(StackJobKind::Command),
        Some("restic") => restic_job(r, &s).map(StackJobKind::Restic),
        _ => mariadb_job(r, &s, kind_text.as_deref() == Some("mysql")).map(StackJobKind::Mariadb),
    };
    let kind = kind?;
    Some(StackJob {
        name: name?,
        kind,
        schedule: schedule?,
        retention: retention?,
        timeout: timeout?,
        drill: drill?,
    })
}

fn check_name(r: &mut Reader, key: &str, name: String) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.');
    if valid {
        Some(name)
    } else {
        r.error(
            key,
            format!(
                "\"{name}\" is not a job name: 1 to {NAME_MAX} of A-Z a-z 0-9 _ - . \
                 (it names a directory in the repository), not starting with a dot"
            ),
        );
        None
    }
}

/// A cron schedule that fires at least once more.
fn firing_schedule(r: &mut Reader, key: &str, value: &Value) -> Option<CronSchedule> {
    let s = schedule(r, key, value)?;
    let now = chrono::Utc::now();
    if s.cron().find_next_occurrence(&now, false).is_err() {
        r.error(key, format!("\"{}\" never fires (no such date)", s.0));
        return None;
    }
    Some(s)
}

/// An argv list whose program exists: an absolute path to an executable file, or a
/// name found in `PATH`.
fn argv(r: &mut Reader, key: &str, value: &Value) -> Option<Vec<String>> {
    let list = r.string_list(key, value)?;
    let Some(program) = list.first() else {
        r.error(key, "must name a program: [program, arg, ...]");
        return None;
    };
    if find_program(program).is_none() {
        r.error(
            format!("{key}[0]"),
            format!("program \"{program}\" not found (not executable, or not in PATH)"),
        );
        return None;
    }
    Some(list)
}

/// Where `program` is: itself when it holds a `/`, else the first `PATH` entry with
/// an executable file of that name.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// A password file that this process can read (only the path is kept).
fn password_file(r: &mut Reader, key: &str, value: &Value) -> Option<PathBuf> {
    let path = super::backup::absolute_path(r, key, value)?;
    if let Err(e) = std::fs::File::open(&path) {
        r.error(key, format!("cannot read {}: {e}", path.display()));
        return None;
    }
    Some(path)
}

fn command_job(r: &mut Reader, s: &Section<'_>) -> Option<CommandJob> {
    let backup = r
        .required(s, "backup_command")
        .and_then(|v| argv(r, &s.path_of("backup_command"), v));
    let restore = match s.get("restore_command") {
        None => Some(None),
        Some(v) => argv(r, &s.path_of("restore_command"), v).map(Some),
    };
    Some(CommandJob {
        backup_command: backup?,
        restore_command: restore?,
    })
}

fn need_program(r: &mut Reader, key: String, program: &str, why: &str) -> Option<()> {
    if find_program(program).is_none() {
        r.error(
            key,
            format!("needs the program \"{program}\" ({why}), which is not in PATH"),
        );
        return None;
    }
    Some(())
}

fn restic_job(r: &mut Reader, s: &Section<'_>) -> Option<ResticJob> {
    let program = need_program(r, s.path_of("kind"), "restic", "Debian package restic");
    let repository = r
        .required(s, "repository")
        .and_then(|v| r.string(&s.path_of("repository"), v));
    let pw = r
        .required(s, "password_file")
        .and_then(|v| password_file(r, &s.path_of("password_file"), v));
    let paths = r
        .required(s, "paths")
        .and_then(|v| r.string_list(&s.path_of("paths"), v));
    let paths = match paths {
        Some(p) if p.is_empty() => {
            r.error(s.path_of("paths"), "must list at least one path");
            None
        }
        Some(p) if p.iter().any(|x| !x.starts_with('/')) => {
            r.error(s.path_of("paths"), "every path must be absolute");
            None
        }
        other => other,
    };
    let list = |r: &mut Reader, k: &str| match s.get(k) {
        None => Some(Vec::new()),
        Some(v) => r.string_list(&s.path_of(k), v),
    };
    let exclude = list(r, "exclude");
    let tags = list(r, "tags");
    program?;
    Some(ResticJob {
        repository: repository?,
        password_file: pw?,
        paths: paths?.into_iter().map(PathBuf::from).collect(),
        exclude: exclude?,
        tags: tags?,
    })
}

/// Why the physical method cannot run here, or `None` when both its programs are
/// found by `found`.
pub(crate) fn physical_missing(mysql: bool, found: impl Fn(&str) -> bool) -> Option<String> {
    let (backup, stream) = physical_tools(mysql);
    let missing: Vec<&str> = [backup, stream].into_iter().filter(|p| !found(p)).collect();
    if missing.is_empty() {
        return None;
    }
    let which = missing
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(" and ");
    Some(if mysql {
        format!(
            "physical for kind mysql needs Percona XtraBackup ({which} not in PATH; it is \
             not packaged in Debian, and mariadb-backup cannot copy a MySQL server): \
             install it, or use method: dump"
        )
    } else {
        format!(
            "physical needs {which} (Debian package mariadb-backup), not in PATH: install \
             it, or use method: dump"
        )
    })
}

fn mariadb_method(r: &mut Reader, s: &Section<'_>) -> Option<bool> {
    match s.get("method") {
        None => Some(false),
        Some(v) => match r.string(&s.path_of("method"), v).as_deref() {
            Some("dump") => Some(false),
            Some("physical") => Some(true),
            Some(other) => {
                r.error(
                    s.path_of("method"),
                    format!("expected dump or physical, got \"{other}\""),
                );
                None
            }
            None => None,
        },
    }
}

/// `datadir`: only for `physical`, absolute, and a directory this process can list
/// (`mariadb-backup` reads every file in it).
fn mariadb_datadir(
    r: &mut Reader,
    s: &Section<'_>,
    physical: Option<bool>,
) -> Option<Option<PathBuf>> {
    let v = match s.get("datadir") {
        None => return Some(None),
        Some(v) => v,
    };
    let key = s.path_of("datadir");
    if physical == Some(false) {
        r.error(
            key,
            "is only used by method: physical (a dump reads through the connection)",
        );
        return None;
    }
    let path = super::backup::absolute_path(r, &key, v)?;
    if let Err(e) = std::fs::read_dir(&path) {
        r.error(
            key,
            format!(
                "cannot read {}: {e} (mariadb-backup must read the server's files as this \
                 user)",
                path.display()
            ),
        );
        return None;
    }
    Some(Some(path))
}

fn mariadb_job(r: &mut Reader, s: &Section<'_>, mysql: bool) -> Option<MariadbJob> {
    let physical = mariadb_method(r, s);
    let program = match physical {
        Some(true) => match physical_missing(mysql, |p| find_program(p).is_some()) {
            None => Some(()),
            Some(why) => {
                r.error(s.path_of("method"), why);
                None
            }
        },
        Some(false) => {
            let tool = if mysql { "mysqldump" } else { "mariadb-dump" };
            need_program(r, s.path_of("method"), tool, "the job's method")
        }
        None => None,
    };
    let datadir = mariadb_datadir(r, s, physical);
    let conn = r
        .required(s, "connection")
        .and_then(|v| r.section(&s.path_of("connection"), v));
    let (mut host, mut port, mut user, mut pw) = (None, None, None, Some(None));
    if let Some(c) = &conn {
        r.check_keys(c, CONNECTION, &[]);
        host = match c.get("host") {
            None => Some("127.0.0.1".to_owned()),
            Some(v) => r.string(&c.path_of("host"), v),
        };
        port = match c.get("port") {
            None => Some(3306),
            Some(v) => r
                .unsigned(&c.path_of("port"), v)
                .and_then(|p| u16::try_from(p).ok().filter(|p| *p > 0))
                .or_else(|| {
                    r.error(c.path_of("port"), "must be a TCP port (1-65535)");
                    None
                }),
        };
        user = r
            .required(c, "user")
            .and_then(|v| r.string(&c.path_of("user"), v));
        pw = match c.get("password_file") {
            None => Some(None),
            Some(v) => password_file(r, &c.path_of("password_file"), v).map(Some),
        };
    }
    let databases = match s.get("databases") {
        None => Some(Vec::new()),
        Some(v) => r.string_list(&s.path_of("databases"), v),
    };
    let databases = match databases {
        Some(d) if !d.is_empty() && physical == Some(true) => {
            // A partial physical copy cannot be started as a server on its own.
            r.error(
                s.path_of("databases"),
                "method physical copies the whole server: remove databases, or use \
                 method: dump",
            );
            None
        }
        other => other,
    };
    program?;
    conn?;
    Some(MariadbJob {
        mysql,
        host: host?,
        port: port?,
        user: user?,
        password_file: pw?,
        databases: databases?,
        physical: physical?,
        datadir: datadir?,
    })
}

fn drill(r: &mut Reader, job: &Section<'_>, mode: CheckMode) -> Option<StackDrill> {
    let Some(value) = job.get("drill") else {
        return Some(StackDrill {
            schedule: None,
            timeout: DEFAULT_JOB_DRILL_TIMEOUT,
            start_command: None,
            checks: Vec::new(),
        });
    };
    let s = r.section(&job.path_of("drill"), value)?;
    r.check_keys(&s, JOB_DRILL, &[]);
    let schedule = match s.get("schedule") {
        None => Some(None),
        Some(v) => firing_schedule(r, &s.path_of("schedule"), v).map(Some),
    };
    let timeout = match s.get("timeout") {
        None => Some(DEFAULT_JOB_DRILL_TIMEOUT),
        Some(v) => duration(r, &s.path_of("timeout"), v),
    };
    let start_command = match s.get("start_command") {
        None => Some(None),
        Some(v) => argv(r, &s.path_of("start_command"), v).map(Some),
    };
    let checks = match s.get("checks") {
        None => Some(Vec::new()),
        Some(v) => checks(r, &s.path_of("checks"), v, mode),
    };
    Some(StackDrill {
        schedule: schedule?,
        timeout: timeout?,
        start_command: start_command?,
        checks: checks?,
    })
}

fn checks(r: &mut Reader, key: &str, value: &Value, mode: CheckMode) -> Option<Vec<StackCheck>> {
    let sql = mode == CheckMode::Sql;
    let Value::Sequence(items) = value else {
        r.error(key, "expected a list of checks");
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("{key}[{i}]");
        let Some(s) = r.section(&path, item) else {
            ok = false;
            continue;
        };
        let spec = match mode {
            CheckMode::Command => COMMAND_CHECK,
            CheckMode::Sql => SQL_CHECK,
            CheckMode::File => FILE_CHECK,
        };
        r.check_keys(&s, spec, &[]);
        let name = match s.get("name") {
            None => Some(format!("check {}", i + 1)),
            Some(v) => r.string(&s.path_of("name"), v),
        };
        if mode == CheckMode::File {
            match (name, file_check(r, &s)) {
                (Some(name), Some((path, size, sha256))) => out.push(StackCheck {
                    name,
                    command: Vec::new(),
                    sql: None,
                    expect: None,
                    path: Some(path),
                    size,
                    sha256,
                }),
                _ => ok = false,
            }
            continue;
        }
        let expect = match s.get("expect") {
            None if sql => {
                r.error(s.path_of("expect"), "is required");
                None
            }
            None => Some(None),
            Some(v) => r.string(&s.path_of("expect"), v).map(Some),
        };
        let (command, query) = if sql {
            let q = r
                .required(&s, "sql")
                .and_then(|v| r.string(&s.path_of("sql"), v));
            (Some(Vec::new()), q.map(Some))
        } else {
            let c = r
                .required(&s, "command")
                .and_then(|v| argv(r, &s.path_of("command"), v));
            (c, Some(None))
        };
        match (name, expect, command, query) {
            (Some(name), Some(expect), Some(command), Some(sql)) => out.push(StackCheck {
                name,
                command,
                sql,
                expect,
                path: None,
                size: None,
                sha256: None,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// A restic drill check: `path` (absolute, as backed up), `size`, `sha256` (64 hex).
fn file_check(r: &mut Reader, s: &Section<'_>) -> Option<(String, Option<u64>, Option<String>)> {
    let path = r
        .required(s, "path")
        .and_then(|v| r.string(&s.path_of("path"), v));
    let path = match path {
        Some(p) if !p.starts_with('/') => {
            r.error(s.path_of("path"), "must be an absolute path (as backed up)");
            None
        }
        other => other,
    };
    let size = match s.get("size") {
        None => Some(None),
        Some(v) => r
            .unsigned(&s.path_of("size"), v)
            .map(|n| Some(u64::from(n))),
    };
    let sha256 = match s.get("sha256") {
        None => Some(None),
        Some(v) => match r.string(&s.path_of("sha256"), v) {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(Some(h.to_ascii_lowercase()))
            }
            Some(_) => {
                r.error(s.path_of("sha256"), "expected 64 hex digits (a SHA-256)");
                None
            }
            None => None,
        },
    };
    Some((path?, size?, sha256?))
}
