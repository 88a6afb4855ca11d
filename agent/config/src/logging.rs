//! `tracing` set-up following Patroni's `log` section.
//!
//! Lines are formatted with Patroni's (Python logging) format string or as JSON lines
//! with `log.type: json`, and written to standard error or, with `log.dir`, to a
//! rotating `<dir>/patroni.log` (Patroni's file name, so log shippers keep working).
//! The agent formats a line in the thread that logs it and hands it to a bounded queue
//! (`log.max_queue_size` lines); one writer thread empties it, so a slow disk never
//! stalls the HA loop. A full queue drops lines and the writer reports how many, as
//! Patroni does. Colour is used only when standard error is a terminal (and `NO_COLOR`
//! is unset); files and pipes get plain text.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal as _, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use tracing::field::{Field as TracingField, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::LogConfig;

/// The file Patroni writes in `log.dir` (its logging module's name).
pub const LOG_FILE_NAME: &str = "patroni.log";

/// How long the agent waits at exit for queued lines to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Short-lived commands (`warden wal-push`, `wal-fetch`): Patroni's default line format
/// (or JSON) on standard error, written synchronously.
pub fn init(level: &str, json: bool) {
    let config = LogConfig {
        level: level.to_owned(),
        json,
        ..LogConfig::default()
    };
    let mut notes = Vec::new();
    let formatter = Formatter::new(&config, json, stderr_colour(json), &mut notes);
    let layer = PatroniLayer {
        formatter: Arc::new(formatter),
        output: Output::Direct(Mutex::new(Sink::stderr())),
    };
    install(build_filter(&config), layer);
}

/// The agent: everything `log` configures. `json` is the effective `log.type` (the
/// command line may override it). Keep the guard until exit: dropping it writes out
/// the lines still queued (waiting at most a few seconds for a stuck disk).
pub fn start(config: &LogConfig, json: bool) -> LogGuard {
    let (sink, colour) = match &config.dir {
        None => (Sink::stderr(), stderr_colour(json)),
        Some(dir) => match open_log_file(dir, config) {
            Ok(file) => (Sink::file(file), false),
            Err(e) => {
                let path = dir.join(LOG_FILE_NAME);
                note_on_stderr(&format!(
                    "cannot open the log file {}: {e}; logging to standard error",
                    path.display()
                ));
                (Sink::stderr(), stderr_colour(json))
            }
        },
    };
    let mut notes = Vec::new();
    let formatter = Arc::new(Formatter::new(config, json, colour, &mut notes));
    let queue = Arc::new(Queue::new(config.max_queue_size.max(1)));
    let spawned = {
        let (queue, formatter) = (queue.clone(), formatter.clone());
        std::thread::Builder::new()
            .name("warden-log".to_owned())
            .spawn(move || write_queued(&queue, sink, &formatter))
    };
    let output = match spawned {
        Ok(_) => Output::Queued(queue.clone()),
        Err(e) => {
            note_on_stderr(&format!(
                "cannot start the log writer thread: {e}; logging to standard error"
            ));
            Output::Direct(Mutex::new(Sink::stderr()))
        }
    };
    let queued = matches!(output, Output::Queued(_));
    install(build_filter(config), PatroniLayer { formatter, output });
    for note in notes {
        tracing::warn!("{note}");
    }
    LogGuard {
        queue: queued.then_some(queue),
    }
}

/// Returned by [`start`]; dropping it flushes the queued log lines.
#[must_use = "dropping the guard ends queued logging: hold it until exit"]
pub struct LogGuard {
    queue: Option<Arc<Queue>>,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("queued", &self.queue.is_some())
            .finish()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(queue) = &self.queue {
            queue.close(FLUSH_TIMEOUT);
        }
    }
}

fn install(filter: EnvFilter, layer: PatroniLayer) {
    // Fails only when a subscriber is already installed (tests); keep that one.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}

fn stderr_colour(json: bool) -> bool {
    !json && io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A message about logging itself, when logging cannot carry it.
fn note_on_stderr(message: &str) {
    let _ = writeln!(io::stderr(), "warden: {message}");
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------
// Levels and `log.loggers`
// ---------------------------------------------------------------------------------

/// Patroni's level names (plus Python's `WARN` and `FATAL` spellings), normalised.
pub(crate) fn level_name(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => Some("DEBUG"),
        "INFO" => Some("INFO"),
        "WARNING" | "WARN" => Some("WARNING"),
        "ERROR" => Some("ERROR"),
        "CRITICAL" | "FATAL" => Some("CRITICAL"),
        _ => None,
    }
}

/// A Python numeric level as the name whose messages it lets through.
pub(crate) fn level_of_number(n: i64) -> Option<&'static str> {
    match n {
        i64::MIN..=0 => None,
        1..=10 => Some("DEBUG"),
        11..=20 => Some("INFO"),
        21..=30 => Some("WARNING"),
        31..=40 => Some("ERROR"),
        _ => Some("CRITICAL"),
    }
}

fn directive_level(level: &str) -> &'static str {
    match level_name(level) {
        Some("DEBUG") => "debug",
        Some("WARNING") => "warn",
        // tracing has no CRITICAL: Warden's most severe messages are errors.
        Some("ERROR" | "CRITICAL") => "error",
        _ => "info",
    }
}

/// Warden's code for each of Patroni's loggers. A name below one of these (say
/// `patroni.postgresql.rewind`) maps like its ancestor; `patroni` itself is all of
/// Warden.
const PATRONI_LOGGERS: &[(&str, &[&str])] = &[
    (
        "patroni",
        &[
            "warden",
            "warden_agent",
            "warden_ha",
            "warden_pg",
            "warden_consensus",
            "warden_api",
            "warden_config",
            "warden_backup",
            "warden_fencing",
        ],
    ),
    ("patroni.ha", &["warden_agent::ha", "warden_ha"]),
    ("patroni.api", &["warden_agent::api"]),
    (
        "patroni.request",
        &["warden_api::client", "warden_agent::ha::peers"],
    ),
    ("patroni.dcs", &["warden_consensus"]),
    ("patroni.postgresql", &["warden_pg"]),
    // Starting and stopping PostgreSQL (`patroni.postmaster` in Patroni's docs).
    ("patroni.postgresql.postmaster", &["warden_pg::process"]),
    ("patroni.postmaster", &["warden_pg::process"]),
    ("patroni.watchdog", &["warden_fencing"]),
    ("patroni.config", &["warden_config"]),
    ("patroni.global_config", &["warden_config"]),
    ("patroni.log", &["warden_config::logging"]),
    // Patroni's HTTP client (etcd and the other members' REST APIs).
    (
        "urllib3",
        &["hyper", "hyper_util", "h2", "tower", "tonic", "etcd_client"],
    ),
];

/// What a `log.loggers` name means in Warden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoggerTargets {
    /// tracing targets (crate or module paths) the level applies to.
    Targets(Vec<String>),
    /// A Python logger with nothing like it in Warden; the reason, for a warning.
    NoCounterpart(&'static str),
}

/// Maps a Patroni logger name (`patroni.ha`, `urllib3`) onto tracing targets; any
/// other name without a dot is taken as a Rust target (`tokio_postgres`,
/// `warden_pg::process`). `Err` for names tracing cannot filter on.
pub(crate) fn logger_targets(name: &str) -> Result<LoggerTargets, String> {
    let mapped = PATRONI_LOGGERS
        .iter()
        .filter(|(patroni, _)| {
            name == *patroni || (*patroni != "patroni" && is_below(name, patroni))
        })
        .max_by_key(|(patroni, _)| patroni.len());
    if let Some((_, targets)) = mapped {
        return Ok(LoggerTargets::Targets(
            targets.iter().map(|t| (*t).to_owned()).collect(),
        ));
    }
    if is_below(name, "patroni") {
        return Ok(LoggerTargets::NoCounterpart(
            "a Patroni module Warden has no counterpart of",
        ));
    }
    if name.contains('.') {
        return Ok(LoggerTargets::NoCounterpart(
            "a Python logger; Warden has no counterpart of it",
        ));
    }
    let valid = !name.is_empty()
        && name.split("::").all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
    if valid {
        Ok(LoggerTargets::Targets(vec![name.to_owned()]))
    } else {
        Err(format!(
            "\"{name}\" is neither a Patroni logger name nor a Rust module path"
        ))
    }
}

fn is_below(name: &str, parent: &str) -> bool {
    name.strip_prefix(parent)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// `RUST_LOG`, when set and valid, replaces the configured levels (to debug one module).
fn build_filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| configured_filter(config))
}

/// `log.level` and `log.loggers` as tracing directives.
fn configured_filter(config: &LogConfig) -> EnvFilter {
    let base = directive_level(&config.level);
    let mut targets: BTreeMap<String, &str> = BTreeMap::new();
    // Chatty libraries stay at WARNING unless log.loggers says otherwise.
    if matches!(base, "debug" | "info") {
        for t in ["h2", "tower", "hyper"] {
            targets.insert(t.to_owned(), "warn");
        }
    }
    // Where two names reach one target the more specific wins: a parent (`patroni`)
    // before its children (`patroni.ha`), Rust targets (`h2`) after Patroni's names
    // (`urllib3`).
    let mut loggers: Vec<(&String, &String)> = config.loggers.iter().collect();
    loggers.sort_by_key(|(name, _)| {
        let patroni = ["patroni", "urllib3"]
            .iter()
            .any(|p| name.as_str() == *p || is_below(name, p));
        if patroni {
            name.matches('.').count()
        } else {
            usize::MAX
        }
    });
    for (name, level) in loggers {
        if let Ok(LoggerTargets::Targets(list)) = logger_targets(name) {
            for t in list {
                targets.insert(t, directive_level(level));
            }
        }
    }
    let mut filter = EnvFilter::default().add_directive(
        match base {
            "debug" => LevelFilter::DEBUG,
            "warn" => LevelFilter::WARN,
            "error" => LevelFilter::ERROR,
            _ => LevelFilter::INFO,
        }
        .into(),
    );
    for (target, level) in targets {
        match format!("{target}={level}").parse() {
            Ok(directive) => filter = filter.add_directive(directive),
            Err(e) => note_on_stderr(&format!("log.loggers: ignoring {target}: {e}")),
        }
    }
    filter
}

// ---------------------------------------------------------------------------------
// Python logging format strings
// ---------------------------------------------------------------------------------

/// The `LogRecord` attributes Warden fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Asctime,
    Created,
    Filename,
    FuncName,
    Levelname,
    Levelno,
    Lineno,
    Message,
    Module,
    Msecs,
    Name,
    Pathname,
    Process,
    ProcessName,
    RelativeCreated,
    Thread,
    ThreadName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Float,
}

const FIELDS: &[(&str, Field, Kind)] = &[
    ("asctime", Field::Asctime, Kind::Text),
    ("created", Field::Created, Kind::Float),
    ("filename", Field::Filename, Kind::Text),
    ("funcName", Field::FuncName, Kind::Text),
    ("levelname", Field::Levelname, Kind::Text),
    ("levelno", Field::Levelno, Kind::Int),
    ("lineno", Field::Lineno, Kind::Int),
    ("message", Field::Message, Kind::Text),
    ("module", Field::Module, Kind::Text),
    ("msecs", Field::Msecs, Kind::Float),
    ("name", Field::Name, Kind::Text),
    ("pathname", Field::Pathname, Kind::Text),
    ("process", Field::Process, Kind::Int),
    ("processName", Field::ProcessName, Kind::Text),
    ("relativeCreated", Field::RelativeCreated, Kind::Float),
    ("thread", Field::Thread, Kind::Int),
    ("threadName", Field::ThreadName, Kind::Text),
];

fn field_named(name: &str) -> Option<(Field, Kind)> {
    FIELDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, f, k)| (*f, *k))
}

/// One `%(name)...` conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    field: Field,
    kind: Kind,
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alternate: bool,
    width: usize,
    precision: Option<usize>,
    conversion: char,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Spec),
}

/// A parsed Python `%`-style logging format.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    parts: Vec<Part>,
}

impl Template {
    fn parse(format: &str) -> Result<Template, String> {
        let chars: Vec<char> = format.chars().collect();
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            if c != '%' {
                text.push(c);
                continue;
            }
            match chars.get(i) {
                Some('%') => {
                    text.push('%');
                    i += 1;
                }
                Some('(') => {
                    let (spec, next) = parse_spec(&chars, i + 1)?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field(spec));
                    i = next;
                }
                Some(other) => {
                    return Err(format!(
                        "\"%{other}\" names no field; write %(name)s (%% for a percent sign)"
                    ))
                }
                None => return Err("ends with a lone %; write %% for a percent sign".to_owned()),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err("has no %(field)s in it (e.g. %(message)s)".to_owned());
        }
        Ok(Template { parts })
    }

    fn render(&self, out: &mut String, record: &Record<'_>, ctx: &RenderContext<'_>) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(spec) => {
                    let value = ctx.value(spec.field, record);
                    let colour = (ctx.colour && spec.field == Field::Levelname)
                        .then(|| level_colour(record.level));
                    if let Some(c) = colour {
                        out.push_str(c);
                    }
                    convert(out, spec, &value);
                    if colour.is_some() {
                        out.push_str("\u{1b}[0m");
                    }
                }
            }
        }
    }
}

/// Parses what follows `%(`; returns the spec and the index after it.
fn parse_spec(chars: &[char], start: usize) -> Result<(Spec, usize), String> {
    let close = chars[start..]
        .iter()
        .position(|c| *c == ')')
        .map(|p| start + p)
        .ok_or("has an unterminated %(")?;
    let name: String = chars[start..close].iter().collect();
    let (field, kind) = field_named(&name).ok_or_else(|| {
        let known: Vec<&str> = FIELDS.iter().map(|(n, _, _)| *n).collect();
        format!(
            "unknown field %({name}); known fields: {}",
            known.join(", ")
        )
    })?;
    let mut spec = Spec {
        field,
        kind,
        left: false,
        zero: false,
        plus: false,
        space: false,
        alternate: false,
        width: 0,
        precision: None,
        conversion: 's',
    };
    let mut i = close + 1;
    while let Some(&c) = chars.get(i) {
        match c {
            '-' => spec.left = true,
            '0' => spec.zero = true,
            '+' => spec.plus = true,
            ' ' => spec.space = true,
            '#' => spec.alternate = true,
            _ => break,
        }
        i += 1;
    }
    let digits = |i: &mut usize| -> Option<usize> {
        let begin = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        let text: String = chars[begin..*i].iter().collect();
        text.parse().ok()
    };
    if chars.get(i) == Some(&'*') {
        return Err(format!("%({name}): a * width is not supported"));
    }
    spec.width = digits(&mut i).unwrap_or(0);
    if chars.get(i) == Some(&'.') {
        i += 1;
        spec.precision = Some(digits(&mut i).unwrap_or(0));
    }
    while matches!(chars.get(i), Some('h' | 'l' | 'L')) {
        i += 1;
    }
    let Some(&conversion) = chars.get(i) else {
        return Err(format!("%({name}) has no conversion (e.g. %({name})s)"));
    };
    spec.conversion = conversion;
    match (conversion, kind) {
        ('s' | 'r' | 'a', _) => {}
        ('d' | 'i' | 'u' | 'x' | 'X' | 'o' | 'f' | 'F', Kind::Int | Kind::Float) => {}
        ('d' | 'i' | 'u' | 'x' | 'X' | 'o' | 'f' | 'F', Kind::Text) => {
            return Err(format!(
                "%({name}){conversion}: {name} is text; use %({name})s"
            ))
        }
        _ => {
            return Err(format!(
                "%({name}){conversion}: conversion '{conversion}' is not supported (use s, d, x, o or f)"
            ))
        }
    }
    Ok((spec, i + 1))
}

/// The `%(name)` names in a format, in order (the fields of a JSON line).
pub(crate) fn format_fields(format: &str) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    let mut rest = format;
    while let Some(start) = rest.find("%(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        let name = &after[..end];
        if !name.is_empty() && !fields.iter().any(|f| f == name) {
            fields.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    fields
}

/// Checks a plain-log format; the message says what is wrong.
pub(crate) fn check_format(format: &str) -> Result<(), String> {
    Template::parse(format).map(|_| ())
}

/// Checks a strftime-style `log.dateformat`.
pub(crate) fn check_dateformat(format: &str) -> Result<(), String> {
    let bad = chrono::format::StrftimeItems::new(format)
        .any(|item| matches!(item, chrono::format::Item::Error));
    if bad {
        Err(format!(
            "\"{format}\" is not a valid strftime format (e.g. %Y-%m-%d %H:%M:%S)"
        ))
    } else {
        Ok(())
    }
}

enum Value<'a> {
    Text(std::borrow::Cow<'a, str>),
    Int(i64),
    Float(f64),
}

/// Python's `%` conversion of one value.
fn convert(out: &mut String, spec: &Spec, value: &Value<'_>) {
    let (sign, body) = match spec.conversion {
        's' | 'r' | 'a' => {
            let mut text = match value {
                Value::Text(t) if spec.conversion == 's' => t.to_string(),
                Value::Text(t) => python_repr(t),
                Value::Int(n) => n.to_string(),
                Value::Float(f) => python_float(*f),
            };
            if let Some(p) = spec.precision {
                text = text.chars().take(p).collect();
            }
            pad(out, spec, "", &text, false);
            return;
        }
        'f' | 'F' => {
            let f = match value {
                Value::Int(n) => *n as f64,
                Value::Float(f) => *f,
                Value::Text(_) => 0.0,
            };
            let body = format!("{:.*}", spec.precision.unwrap_or(6), f.abs());
            (sign_of(spec, f < 0.0), body)
        }
        _ => {
            let n = match value {
                Value::Int(n) => *n,
                Value::Float(f) => f.trunc() as i64,
                Value::Text(_) => 0,
            };
            let magnitude = n.unsigned_abs();
            let mut body = match spec.conversion {
                'x' => format!("{magnitude:x}"),
                'X' => format!("{magnitude:X}"),
                'o' => format!("{magnitude:o}"),
                _ => magnitude.to_string(),
            };
            if let Some(p) = spec.precision {
                while body.len() < p {
                    body.insert(0, '0');
                }
            }
            if spec.alternate {
                let prefix = match spec.conversion {
                    'x' => "0x",
                    'X' => "0X",
                    'o' => "0o",
                    _ => "",
                };
                body.insert_str(0, prefix);
            }
            (sign_of(spec, n < 0), body)
        }
    };
    pad(out, spec, sign, &body, true);
}

fn sign_of(spec: &Spec, negative: bool) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn pad(out: &mut String, spec: &Spec, sign: &str, body: &str, numeric: bool) {
    let len = sign.chars().count() + body.chars().count();
    let fill = spec.width.saturating_sub(len);
    if spec.left {
        out.push_str(sign);
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero && numeric {
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(body);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(sign);
        out.push_str(body);
    }
}

/// Python's `str()` of a float: shortest round-trip, always with a decimal point.
fn python_float(f: f64) -> String {
    let text = f.to_string();
    if f.is_finite() && !text.contains(['.', 'e']) {
        format!("{text}.0")
    } else {
        text
    }
}

/// Python's `repr()` of a string: single quotes unless the text holds one and no
/// double quote, backslash escapes for the quote, `\\`, `\n`, `\r`, `\t`, and `\xNN` for
/// other control characters. Patroni's log records and patronictl's query output print
/// strings this way.
pub fn python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn level_colour(level: Level) -> &'static str {
    match level {
        Level::ERROR => "\u{1b}[31m",
        Level::WARN => "\u{1b}[33m",
        Level::INFO => "\u{1b}[32m",
        Level::DEBUG => "\u{1b}[34m",
        Level::TRACE => "\u{1b}[35m",
    }
}

fn python_level(level: Level) -> (&'static str, i64) {
    match level {
        Level::ERROR => ("ERROR", 40),
        Level::WARN => ("WARNING", 30),
        Level::INFO => ("INFO", 20),
        Level::DEBUG => ("DEBUG", 10),
        Level::TRACE => ("TRACE", 5),
    }
}

// ---------------------------------------------------------------------------------
// Records and their rendering
// ---------------------------------------------------------------------------------

/// A field of an event other than its message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    /// Recorded as a string (`key = "x"`): quoted in plain logs, as tracing does.
    Str(String),
    /// Recorded through `Display` or `Debug` (`key = %x`, `?x`): written as is.
    Shown(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    fn plain(&self, out: &mut String) {
        let _ = match self {
            FieldValue::Str(s) => write!(out, "{s:?}"),
            FieldValue::Shown(s) => write!(out, "{s}"),
            FieldValue::I64(n) => write!(out, "{n}"),
            FieldValue::U64(n) => write!(out, "{n}"),
            FieldValue::F64(f) => write!(out, "{f}"),
            FieldValue::Bool(b) => write!(out, "{b}"),
        };
    }

    fn json(&self) -> serde_json::Value {
        match self {
            FieldValue::Str(s) | FieldValue::Shown(s) => s.clone().into(),
            FieldValue::I64(n) => (*n).into(),
            FieldValue::U64(n) => (*n).into(),
            FieldValue::F64(f) => (*f).into(),
            FieldValue::Bool(b) => (*b).into(),
        }
    }
}

/// One log event, as the formatter sees it.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub time: DateTime<Local>,
    pub level: Level,
    /// The tracing target (a Rust module path); Python's logger `name`.
    pub target: &'a str,
    pub file: Option<&'a str>,
    pub line: Option<u32>,
    /// The innermost span's name, if any: the closest thing to Python's `funcName`.
    pub function: Option<&'a str>,
    pub message: &'a str,
    pub fields: &'a [(String, FieldValue)],
    pub thread_id: u64,
    pub thread_name: Option<&'a str>,
}

/// How lines are written: a template (plain) or JSON fields.
#[derive(Debug)]
enum Style {
    Plain(Template),
    Json {
        /// `(field, key written)`.
        fields: Vec<(String, String)>,
        statics: Vec<(String, serde_json::Value)>,
    },
}

#[derive(Debug)]
pub(crate) struct Formatter {
    style: Style,
    dateformat: Option<String>,
    colour: bool,
    started: DateTime<Local>,
}

/// What [`Template::render`] needs besides the record.
struct RenderContext<'a> {
    dateformat: Option<&'a str>,
    colour: bool,
    started: DateTime<Local>,
}

impl RenderContext<'_> {
    fn asctime(&self, time: &DateTime<Local>) -> String {
        let mut out = String::new();
        match self.dateformat {
            // Python's `time.strftime(datefmt)`: no milliseconds unless asked for.
            Some(f) => {
                let _ = write!(out, "{}", time.format(f));
            }
            None => {
                let _ = write!(
                    out,
                    "{},{:03}",
                    time.format("%Y-%m-%d %H:%M:%S"),
                    time.timestamp_subsec_millis().min(999)
                );
            }
        }
        out
    }

    fn value<'r>(&self, field: Field, r: &Record<'r>) -> Value<'r> {
        use std::borrow::Cow::{Borrowed, Owned};
        let file = r.file.unwrap_or("(unknown file)");
        let filename = Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(file);
        let created = r.time.timestamp_micros() as f64 / 1e6;
        match field {
            Field::Asctime => Value::Text(Owned(self.asctime(&r.time))),
            Field::Created => Value::Float(created),
            Field::Filename => Value::Text(Borrowed(filename)),
            Field::FuncName => Value::Text(Borrowed(r.function.unwrap_or("(unknown function)"))),
            Field::Levelname => Value::Text(Borrowed(python_level(r.level).0)),
            Field::Levelno => Value::Int(python_level(r.level).1),
            Field::Lineno => Value::Int(r.line.map_or(0, i64::from)),
            Field::Message => Value::Text(Owned(plain_message(r))),
            Field::Module => Value::Text(Borrowed(
                filename.rsplit_once('.').map_or(filename, |(stem, _)| stem),
            )),
            Field::Msecs => Value::Float(f64::from(r.time.timestamp_subsec_micros()) / 1000.0),
            Field::Name => Value::Text(Borrowed(r.target)),
            Field::Pathname => Value::Text(Borrowed(file)),
            Field::Process => Value::Int(i64::from(std::process::id())),
            Field::ProcessName => Value::Text(Borrowed("MainProcess")),
            Field::RelativeCreated => Value::Float(
                (r.time - self.started).num_microseconds().unwrap_or(0) as f64 / 1000.0,
            ),
            Field::Thread => Value::Int(i64::try_from(r.thread_id).unwrap_or(i64::MAX)),
            Field::ThreadName => Value::Text(Borrowed(r.thread_name.unwrap_or("Thread"))),
        }
    }
}

/// The message of a plain line: the text, then the event's other fields as
/// `key=value` (how Warden attaches details such as `error`).
fn plain_message(r: &Record<'_>) -> String {
    let mut out = r.message.to_owned();
    for (key, value) in r.fields {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        value.plain(&mut out);
    }
    out
}

const LIST_FORMAT_IN_PLAIN: &str =
    "log.format: a list of fields applies to JSON logs; plain logs use the default format";

impl Formatter {
    /// `notes` collects problems met here (settings that cannot apply with the
    /// effective `json`); the caller logs them once logging works.
    pub(crate) fn new(
        config: &LogConfig,
        json: bool,
        colour: bool,
        notes: &mut Vec<String>,
    ) -> Formatter {
        let dateformat =
            config.dateformat.clone().filter(|f| !f.is_empty()).filter(
                |f| match check_dateformat(f) {
                    Ok(()) => true,
                    Err(e) => {
                        notes.push(format!("log.dateformat: {e}; using the default"));
                        false
                    }
                },
            );
        let style = if json {
            let mut fields = config.json_fields.clone().unwrap_or_default();
            if fields.is_empty() {
                let format = config
                    .format
                    .as_deref()
                    .unwrap_or(LogConfig::DEFAULT_FORMAT);
                fields = format_fields(format)
                    .into_iter()
                    .map(|f| (f.clone(), f))
                    .collect();
            }
            if fields.is_empty() {
                fields = format_fields(LogConfig::DEFAULT_FORMAT)
                    .into_iter()
                    .map(|f| (f.clone(), f))
                    .collect();
            }
            Style::Json {
                fields,
                statics: config.static_fields.clone(),
            }
        } else {
            let format = match (&config.format, &config.json_fields) {
                (Some(f), _) => f.as_str(),
                (None, Some(_)) => {
                    // With `log.type: plain` the config check has said so already.
                    if config.json {
                        notes.push(LIST_FORMAT_IN_PLAIN.to_owned());
                    }
                    LogConfig::DEFAULT_FORMAT
                }
                (None, None) => LogConfig::DEFAULT_FORMAT,
            };
            let template = Template::parse(format).unwrap_or_else(|e| {
                notes.push(format!("log.format: {e}; using the default format"));
                Template::parse(LogConfig::DEFAULT_FORMAT).unwrap_or(Template { parts: Vec::new() })
            });
            Style::Plain(template)
        };
        Formatter {
            style,
            dateformat,
            colour,
            started: Local::now(),
        }
    }

    /// One line, newline included.
    pub(crate) fn render(&self, record: &Record<'_>) -> String {
        let ctx = RenderContext {
            dateformat: self.dateformat.as_deref(),
            colour: self.colour,
            started: self.started,
        };
        let mut out = String::with_capacity(128);
        match &self.style {
            Style::Plain(template) => template.render(&mut out, record, &ctx),
            Style::Json { fields, statics } => render_json(&mut out, record, &ctx, fields, statics),
        }
        out.push('\n');
        out
    }
}

/// python-json-logger's line: the format's fields (renamed), then the static fields,
/// then the event's own fields; a later key replaces an earlier one in place.
fn render_json(
    out: &mut String,
    r: &Record<'_>,
    ctx: &RenderContext<'_>,
    fields: &[(String, String)],
    statics: &[(String, serde_json::Value)],
) {
    let mut entries: Vec<(String, serde_json::Value)> = Vec::new();
    let mut put =
        |key: &str, value: serde_json::Value| match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key.to_owned(), value)),
        };
    let renamed = |name: &str| -> String {
        fields
            .iter()
            .find(|(f, _)| f == name)
            .map_or_else(|| name.to_owned(), |(_, k)| k.clone())
    };
    for (field, key) in fields {
        let value = match field_named(field) {
            Some((Field::Message, _)) => r.message.into(),
            Some((f, _)) => match ctx.value(f, r) {
                Value::Text(t) => t.into_owned().into(),
                Value::Int(n) => n.into(),
                Value::Float(x) => x.into(),
            },
            None => r
                .fields
                .iter()
                .find(|(k, _)| k == field)
                .map_or(serde_json::Value::Null, |(_, v)| v.json()),
        };
        put(key, value);
    }
    for (key, value) in statics {
        put(key, value.clone());
    }
    for (key, value) in r.fields {
        put(&renamed(key), value.json());
    }
    out.push('{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
        out.push_str(": ");
        out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()));
    }
    out.push('}');
}

// ---------------------------------------------------------------------------------
// The tracing layer
// ---------------------------------------------------------------------------------

struct PatroniLayer {
    formatter: Arc<Formatter>,
    output: Output,
}

#[derive(Default)]
struct Collector {
    message: String,
    fields: Vec<(String, FieldValue)>,
    from_log: bool,
}

impl Collector {
    fn add(&mut self, field: &TracingField, value: FieldValue) {
        let name = field.name();
        // The `log` crate's record details, already in the normalised metadata.
        if self.from_log && name.starts_with("log.") {
            return;
        }
        if name == "message" {
            match value {
                FieldValue::Str(s) | FieldValue::Shown(s) => self.message = s,
                other => other.plain(&mut self.message),
            }
        } else {
            self.fields.push((name.to_owned(), value));
        }
    }
}

impl Visit for Collector {
    fn record_f64(&mut self, field: &TracingField, value: f64) {
        self.add(field, FieldValue::F64(value));
    }
    fn record_i64(&mut self, field: &TracingField, value: i64) {
        self.add(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &TracingField, value: u64) {
        self.add(field, FieldValue::U64(value));
    }
    fn record_bool(&mut self, field: &TracingField, value: bool) {
        self.add(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &TracingField, value: &str) {
        self.add(field, FieldValue::Str(value.to_owned()));
    }
    fn record_error(&mut self, field: &TracingField, value: &(dyn std::error::Error + 'static)) {
        self.add(field, FieldValue::Shown(value.to_string()));
    }
    fn record_debug(&mut self, field: &TracingField, value: &dyn std::fmt::Debug) {
        self.add(field, FieldValue::Shown(format!("{value:?}")));
    }
}

impl<S> Layer<S> for PatroniLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut collected = Collector {
            from_log: event.is_log(),
            ..Collector::default()
        };
        event.record(&mut collected);
        let span = ctx.event_span(event);
        let thread = std::thread::current();
        let record = Record {
            time: Local::now(),
            level: *meta.level(),
            target: meta.target(),
            file: meta.file(),
            line: meta.line(),
            function: span.as_ref().map(|s| s.name()),
            message: &collected.message,
            fields: &collected.fields,
            thread_id: thread_id(),
            thread_name: thread.name(),
        };
        let line = self.formatter.render(&record);
        self.output.write(line.into_bytes());
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn thread_id() -> u64 {
    thread_local!(static ID: u64 = u64::try_from(nix::unistd::gettid().as_raw()).unwrap_or(0));
    ID.with(|id| *id)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn thread_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    ID.with(|id| *id)
}

// ---------------------------------------------------------------------------------
// Output: the queue, its writer thread, and the rotating file
// ---------------------------------------------------------------------------------

enum Output {
    Queued(Arc<Queue>),
    Direct(Mutex<Sink>),
}

impl Output {
    fn write(&self, line: Vec<u8>) {
        match self {
            Output::Queued(queue) => queue.push(line),
            Output::Direct(sink) => lock(sink).write(&line),
        }
    }
}

/// Lines waiting for the writer thread, at most `capacity` of them.
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when lines arrive or the queue closes.
    wake: Condvar,
    /// Signalled when the writer has finished a batch.
    drained: Condvar,
}

struct QueueState {
    lines: VecDeque<Vec<u8>>,
    capacity: usize,
    /// Lines dropped because the queue was full, not yet reported.
    lost: u64,
    writing: bool,
    closed: bool,
}

impl Queue {
    fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                lines: VecDeque::new(),
                capacity,
                lost: 0,
                writing: false,
                closed: false,
            }),
            wake: Condvar::new(),
            drained: Condvar::new(),
        }
    }

    fn push(&self, line: Vec<u8>) {
        let mut state = lock(&self.state);
        if state.closed {
            // After exit began: nobody writes the queue any more.
            drop(state);
            let _ = io::stderr().write_all(&line);
            return;
        }
        if state.lines.len() >= state.capacity {
            state.lost += 1;
            return;
        }
        state.lines.push_back(line);
        drop(state);
        self.wake.notify_one();
    }

    /// Next batch for the writer: lines and the count of lost ones. `None` once
    /// closed and empty.
    fn take(&self) -> Option<(VecDeque<Vec<u8>>, u64)> {
        let mut state = lock(&self.state);
        while state.lines.is_empty() && state.lost == 0 {
            if state.closed {
                return None;
            }
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.writing = true;
        Some((
            std::mem::take(&mut state.lines),
            std::mem::take(&mut state.lost),
        ))
    }

    fn batch_done(&self) {
        lock(&self.state).writing = false;
        self.drained.notify_all();
    }

    /// Waits (up to `timeout`) for the queue to be written out, then closes it.
    fn close(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        while !state.lines.is_empty() || state.lost > 0 || state.writing {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .drained
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.closed = true;
        drop(state);
        self.wake.notify_all();
    }
}

fn write_queued(queue: &Queue, mut sink: Sink, formatter: &Formatter) {
    while let Some((lines, lost)) = queue.take() {
        for line in &lines {
            sink.write(line);
        }
        if lost > 0 {
            // Patroni's own words, so existing alerts keep matching.
            let message = format!("QueueHandler has lost {lost} log records");
            let thread = std::thread::current();
            let record = Record {
                time: Local::now(),
                level: Level::WARN,
                target: "warden_config::logging",
                file: Some(file!()),
                line: Some(line!()),
                function: None,
                message: &message,
                fields: &[],
                thread_id: thread_id(),
                thread_name: thread.name(),
            };
            sink.write(formatter.render(&record).as_bytes());
        }
        sink.flush();
        queue.batch_done();
    }
}

/// Where lines end up. A file that cannot be written sends lines to standard error
/// (saying so once) until it works again.
pub(crate) struct Sink {
    target: SinkTarget,
    failing: bool,
}

enum SinkTarget {
    Stream(Box<dyn Write + Send>),
    File(RotatingFile),
}

impl Sink {
    fn stderr() -> Sink {
        Sink {
            target: SinkTarget::Stream(Box::new(io::stderr())),
            failing: false,
        }
    }

    fn file(file: RotatingFile) -> Sink {
        Sink {
            target: SinkTarget::File(file),
            failing: false,
        }
    }

    fn write(&mut self, line: &[u8]) {
        match &mut self.target {
            SinkTarget::Stream(w) => {
                let _ = w.write_all(line);
            }
            SinkTarget::File(file) => match file.write_line(line) {
                Ok(()) => {
                    if self.failing {
                        self.failing = false;
                        note_on_stderr(&format!(
                            "writing the log file {} again",
                            file.path.display()
                        ));
                    }
                }
                Err(e) => {
                    if !self.failing {
                        self.failing = true;
                        note_on_stderr(&format!(
                            "cannot write the log file {}: {e}; log lines go to standard error until it works again",
                            file.path.display()
                        ));
                    }
                    let _ = io::stderr().write_all(line);
                }
            },
        }
    }

    fn flush(&mut self) {
        if let SinkTarget::Stream(w) = &mut self.target {
            let _ = w.flush();
        }
    }
}

fn open_log_file(dir: &Path, config: &LogConfig) -> io::Result<RotatingFile> {
    std::fs::create_dir_all(dir)?;
    RotatingFile::open(
        dir.join(LOG_FILE_NAME),
        config.file_size,
        config.file_num,
        config.mode,
    )
}

/// Python's `RotatingFileHandler`: before a line would take the file to `max_bytes`,
/// `patroni.log.N` becomes `.N+1` (the last is overwritten), `patroni.log` becomes
/// `.1`, and a new file starts. With no backups the file is emptied instead, so it
/// stays bounded either way.
pub(crate) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    backups: u32,
    mode: Option<u32>,
    file: Option<File>,
}

impl RotatingFile {
    pub(crate) fn open(
        path: PathBuf,
        max_bytes: u64,
        backups: u32,
        mode: Option<u32>,
    ) -> io::Result<RotatingFile> {
        let mut rotating = RotatingFile {
            path,
            max_bytes,
            backups,
            mode,
            file: None,
        };
        rotating.reopen(false)?;
        Ok(rotating)
    }

    fn reopen(&mut self, truncate: bool) -> io::Result<&mut File> {
        self.file = None;
        let mut options = OpenOptions::new();
        options.create(true);
        if truncate {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        if let Some(mode) = self.mode {
            options.mode(mode);
        }
        let file = options.open(&self.path)?;
        if let Some(mode) = self.mode {
            // As Patroni: the mode applies to an existing file too, whatever the umask.
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(self.file.insert(file))
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    pub(crate) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.reopen(false)?;
        }
        // The file's real size: somebody may have truncated or replaced it.
        let size = match &self.file {
            Some(file) => file.metadata()?.len(),
            None => 0,
        };
        let full = self.max_bytes > 0 && size > 0 && size + line.len() as u64 >= self.max_bytes;
        let file = match self.file.take() {
            Some(file) if !full => self.file.insert(file),
            Some(_) => self.rotate()?,
            None => self.reopen(false)?,
        };
        file.write_all(line)
    }

    fn rotate(&mut self) -> io::Result<&mut File> {
        self.file = None;
        if self.backups == 0 {
            return self.reopen(true);
        }
        for n in (1..self.backups).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        if let Err(e) = std::fs::rename(&self.path, self.numbered(1)) {
            note_on_stderr(&format!(
                "cannot rotate the log file {}: {e}; emptying it instead",
                self.path.display()
            ));
            return self.reopen(true);
        }
        self.reopen(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn record<'a>(message: &'a str, fields: &'a [(String, FieldValue)]) -> Record<'a> {
        Record {
            time: Local
                .with_ymd_and_hms(2024, 3, 5, 7, 8, 9)
                .single()
                .unwrap()
                + chrono::Duration::milliseconds(42),
            level: Level::WARN,
            target: "warden_agent::ha::run",
            file: Some("agent/src/ha/run.rs"),
            line: Some(77),
            function: None,
            message,
            fields,
            thread_id: 4242,
            thread_name: Some("tokio-runtime-worker"),
        }
    }

    fn formatter(config: &LogConfig, json: bool) -> Formatter {
        let mut notes = Vec::new();
        let f = Formatter::new(config, json, false, &mut notes);
        assert!(notes.is_empty(), "{notes:?}");
        f
    }

    fn plain(format: &str) -> String {
        let config = LogConfig {
            format: Some(format.to_owned()),
            ..LogConfig::default()
        };
        formatter(&config, false).render(&record("hello", &[]))
    }

    #[test]
    fn default_plain_line_is_patronis() {
        let f = formatter(&LogConfig::default(), false);
        let fields = vec![
            ("member".to_owned(), FieldValue::Str("node1".to_owned())),
            (
                "error".to_owned(),
                FieldValue::Shown("timed out".to_owned()),
            ),
            ("n".to_owned(), FieldValue::U64(3)),
        ];
        assert_eq!(
            f.render(&record("lost the lease", &fields)),
            "2024-03-05 07:08:09,042 WARNING: lost the lease member=\"node1\" error=timed out n=3\n"
        );
    }

    #[test]
    fn format_fields_widths_and_conversions() {
        assert_eq!(
            plain("[%(levelname)-8s] %(name)s %(filename)s:%(lineno)d %(funcName)s: %(message)s"),
            "[WARNING ] warden_agent::ha::run run.rs:77 (unknown function): hello\n"
        );
        assert_eq!(plain("%(levelname)8s|%(message).3s|"), " WARNING|hel|\n");
        assert_eq!(
            plain("%(lineno)05d %(lineno)-5d| %(lineno)+d %(lineno)x %(lineno)#o"),
            "00077 77   | +77 4d 0o115\n"
        );
        assert_eq!(
            plain("%(thread)d %(threadName)s %(module)s %(pathname)s"),
            "4242 tokio-runtime-worker run agent/src/ha/run.rs\n"
        );
        assert_eq!(
            plain("%(msecs)03d %(levelno)s %(message)r 100%%"),
            "042 30 'hello' 100%\n"
        );
        assert_eq!(plain("%(msecs).1f"), "42.0\n");
        let pid = std::process::id();
        assert_eq!(plain("%(process)d"), format!("{pid}\n"));
    }

    #[test]
    fn bad_formats_are_explained() {
        for (format, expected) in [
            (
                "%(mesage)s",
                "unknown field %(mesage); known fields: asctime,",
            ),
            (
                "%(message)d",
                "%(message)d: message is text; use %(message)s",
            ),
            ("%(lineno)e", "conversion 'e' is not supported"),
            ("%(message", "has an unterminated %("),
            ("%s", "\"%s\" names no field"),
            ("plain text", "has no %(field)s in it"),
            ("%(message)s 100%", "ends with a lone %"),
            ("%(message)", "%(message) has no conversion"),
        ] {
            let e = check_format(format).unwrap_err();
            assert!(e.contains(expected), "{format}: {e}");
        }
        assert!(check_format(LogConfig::DEFAULT_FORMAT).is_ok());
    }

    #[test]
    fn dateformat_replaces_the_default_timestamp() {
        let config = LogConfig {
            dateformat: Some("%d/%m/%Y %H.%M.%S".to_owned()),
            ..LogConfig::default()
        };
        assert_eq!(
            formatter(&config, false).render(&record("x", &[])),
            "05/03/2024 07.08.09 WARNING: x\n"
        );
        assert!(check_dateformat("%Y-%m-%dT%H:%M:%S%z").is_ok());
        assert!(check_dateformat("%Y-%Q")
            .unwrap_err()
            .contains("not a valid strftime"));
    }

    #[test]
    fn json_lines_follow_python_json_logger() {
        let fields = vec![("member".to_owned(), FieldValue::Str("node1".to_owned()))];
        let f = formatter(
            &LogConfig {
                json: true,
                ..LogConfig::default()
            },
            true,
        );
        assert_eq!(
            f.render(&record("hello", &fields)),
            "{\"asctime\": \"2024-03-05 07:08:09,042\", \"levelname\": \"WARNING\", \"message\": \"hello\", \"member\": \"node1\"}\n"
        );
        let config = LogConfig {
            json: true,
            json_fields: Some(vec![
                ("levelname".to_owned(), "level".to_owned()),
                ("message".to_owned(), "msg".to_owned()),
                ("lineno".to_owned(), "lineno".to_owned()),
                ("member".to_owned(), "who".to_owned()),
                ("absent".to_owned(), "absent".to_owned()),
            ]),
            static_fields: vec![("app".to_owned(), "warden".into())],
            ..LogConfig::default()
        };
        assert_eq!(
            formatter(&config, true).render(&record("hello", &fields)),
            "{\"level\": \"WARNING\", \"msg\": \"hello\", \"lineno\": 77, \"who\": \"node1\", \"absent\": null, \"app\": \"warden\"}\n"
        );
        // A string format names the fields.
        let config = LogConfig {
            format: Some("%(name)s %(message)s".to_owned()),
            ..LogConfig::default()
        };
        assert_eq!(
            formatter(&config, true).render(&record("hi", &[])),
            "{\"name\": \"warden_agent::ha::run\", \"message\": \"hi\"}\n"
        );
    }

    #[test]
    fn colour_only_wraps_the_level_name() {
        let config = LogConfig {
            format: Some("%(levelname)-8s|%(message)s".to_owned()),
            ..LogConfig::default()
        };
        let mut notes = Vec::new();
        let f = Formatter::new(&config, false, true, &mut notes);
        assert_eq!(
            f.render(&record("m", &[])),
            "\u{1b}[33mWARNING \u{1b}[0m|m\n"
        );
        assert!(!formatter(&config, false)
            .render(&record("m", &[]))
            .contains('\u{1b}'));
    }

    #[test]
    fn logger_names_map_onto_targets() {
        let targets = |name: &str| match logger_targets(name).unwrap() {
            LoggerTargets::Targets(t) => t,
            LoggerTargets::NoCounterpart(why) => panic!("{name}: {why}"),
        };
        assert_eq!(targets("patroni.ha"), ["warden_agent::ha", "warden_ha"]);
        assert_eq!(targets("patroni.postgresql.rewind"), ["warden_pg"]);
        assert_eq!(targets("patroni.dcs.etcd3"), ["warden_consensus"]);
        assert!(targets("patroni").contains(&"warden_pg".to_owned()));
        assert!(targets("urllib3.connectionpool").contains(&"h2".to_owned()));
        assert_eq!(targets("tokio_postgres"), ["tokio_postgres"]);
        assert_eq!(targets("warden_pg::process"), ["warden_pg::process"]);
        assert!(matches!(
            logger_targets("patroni.__main__"),
            Ok(LoggerTargets::NoCounterpart(_))
        ));
        assert!(matches!(
            logger_targets("botocore.credentials"),
            Ok(LoggerTargets::NoCounterpart(_))
        ));
        assert!(logger_targets("a=b").is_err());
        assert!(logger_targets("").is_err());
    }

    #[test]
    fn a_parent_logger_yields_to_its_child() {
        let config = LogConfig {
            level: "INFO".to_owned(),
            loggers: [
                ("h2".to_owned(), "ERROR".to_owned()),
                ("patroni".to_owned(), "ERROR".to_owned()),
                ("patroni.ha".to_owned(), "DEBUG".to_owned()),
                ("urllib3".to_owned(), "DEBUG".to_owned()),
            ]
            .into_iter()
            .collect(),
            ..LogConfig::default()
        };
        let text = configured_filter(&config).to_string();
        assert!(text.contains("warden_ha=debug"), "{text}");
        assert!(text.contains("warden_pg=error"), "{text}");
        assert!(text.contains("h2=error"), "{text}");
        assert!(text.contains("tonic=debug"), "{text}");
        assert!(text.contains("hyper=debug"), "{text}");
        let quiet = LogConfig {
            level: "ERROR".to_owned(),
            ..LogConfig::default()
        };
        assert!(
            !configured_filter(&quiet).to_string().contains("h2"),
            "WARNING is louder than ERROR"
        );
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn rotation_keeps_file_num_backups_below_file_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        let mut file = RotatingFile::open(path.clone(), 50, 2, Some(0o640)).unwrap();
        for i in 0..20 {
            file.write_line(format!("line {i:02} .........\n").as_bytes())
                .unwrap();
        }
        // 18-byte lines, files under 50 bytes: two lines each.
        assert_eq!(read(&path), "line 18 .........\nline 19 .........\n");
        assert_eq!(
            read(&file.numbered(1)),
            "line 16 .........\nline 17 .........\n"
        );
        assert_eq!(
            read(&file.numbered(2)),
            "line 14 .........\nline 15 .........\n"
        );
        assert!(!file.numbered(3).exists());
        for p in [path.clone(), file.numbered(1), file.numbered(2)] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o640, "{}", p.display());
        }
        // A line longer than the limit still gets written, alone in its file.
        let long = "x".repeat(80) + "\n";
        file.write_line(long.as_bytes()).unwrap();
        assert_eq!(read(&path), long);
        assert_eq!(
            read(&file.numbered(1)),
            "line 18 .........\nline 19 .........\n"
        );
    }

    #[test]
    fn without_backups_the_file_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        std::fs::write(&path, "old line from before\n").unwrap();
        let mut file = RotatingFile::open(path.clone(), 30, 0, None).unwrap();
        file.write_line(b"new 1 ...\n").unwrap();
        assert_eq!(read(&path), "new 1 ...\n");
        file.write_line(b"new 2 ...\n").unwrap();
        assert_eq!(read(&path), "new 1 ...\nnew 2 ...\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_unwritable_file_falls_back_to_stderr_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        let mut sink = Sink::file(RotatingFile::open(path.clone(), 1000, 1, None).unwrap());
        sink.write(b"first\n");
        assert_eq!(read(&path), "first\n");
        assert!(!sink.failing);
        // The directory goes away: reopening after a rotation fails.
        std::fs::remove_dir_all(dir.path()).unwrap();
        if let SinkTarget::File(f) = &mut sink.target {
            f.file = None;
        }
        sink.write(b"second\n");
        assert!(sink.failing);
        assert!(
            open_log_file(Path::new("/proc/version/not-a-dir"), &LogConfig::default()).is_err()
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let queue = Queue::new(2);
        for line in ["a\n", "b\n", "c\n", "d\n"] {
            queue.push(line.as_bytes().to_vec());
        }
        let (lines, lost) = queue.take().unwrap();
        assert_eq!(lines, [b"a\n".to_vec(), b"b\n".to_vec()]);
        assert_eq!(lost, 2);
        queue.batch_done();
        queue.close(Duration::from_millis(10));
        assert!(queue.take().is_none());
    }

    #[test]
    fn the_writer_thread_writes_queued_lines_and_the_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        let sink = Sink::file(RotatingFile::open(path.clone(), 0, 0, None).unwrap());
        let queue = Arc::new(Queue::new(1));
        queue.push(b"kept\n".to_vec());
        queue.push(b"dropped\n".to_vec());
        let formatter = Arc::new(formatter(&LogConfig::default(), false));
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || write_queued(&queue, sink, &formatter))
        };
        queue.close(Duration::from_secs(10));
        writer.join().unwrap();
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "kept");
        assert!(
            lines[1].ends_with(" WARNING: QueueHandler has lost 1 log records"),
            "{text}"
        );
    }

    #[test]
    fn tracing_events_become_patroni_lines() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        #[derive(Clone)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                lock(&self.0).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let config = LogConfig {
            level: "DEBUG".to_owned(),
            format: Some("%(levelname)s %(name)s %(funcName)s: %(message)s".to_owned()),
            loggers: [("patroni.ha".to_owned(), "WARNING".to_owned())]
                .into_iter()
                .collect(),
            ..LogConfig::default()
        };
        let layer = PatroniLayer {
            formatter: Arc::new(formatter(&config, false)),
            output: Output::Direct(Mutex::new(Sink {
                target: SinkTarget::Stream(Box::new(Shared(buffer.clone()))),
                failing: false,
            })),
        };
        let subscriber = tracing_subscriber::registry()
            .with(configured_filter(&config))
            .with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "warden_pg::process", pid = 7, "started");
            tracing::info!(target: "warden_ha::engine", "hidden by patroni.ha: WARNING");
            tracing::info_span!("turn").in_scope(|| {
                tracing::warn!(target: "warden_ha::engine", error = %"boom", "shown");
            });
        });
        let text = String::from_utf8(lock(&buffer).clone()).unwrap();
        assert_eq!(
            text,
            "DEBUG warden_pg::process (unknown function): started pid=7\n\
             WARNING warden_ha::engine turn: shown error=boom\n"
        );
    }
}
