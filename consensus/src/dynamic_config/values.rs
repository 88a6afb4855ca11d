//! Single JSON values: read leniently where Patroni is lenient, and rendered as text for
//! PostgreSQL and for error messages.

use serde_json::{Map, Value};

use super::SynchronousMode;

/// PostgreSQL's text form of a GUC value given as JSON: booleans become `on`/`off`,
/// numbers their decimal text. `None` for null, arrays and objects, which are not GUCs.
pub fn guc_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("on".to_owned()),
        Value::Bool(false) => Some("off".to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The value of `key`, treating an explicit null like an absent key: Patroni's PATCH
/// semantics make null mean "unset".
pub(super) fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// An integer given as a JSON integer, an integral float (`30.0`) or a numeric string
/// (`"30"`), as Patroni's `parse_int` accepts.
pub(super) fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i.into())
            } else if let Some(u) = n.as_u64() {
                Some(u.into())
            } else {
                n.as_f64().and_then(integral_float)
            }
        }
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i128>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(integral_float))
        }
        _ => None,
    }
}

fn integral_float(f: f64) -> Option<i128> {
    // 2^100 is far beyond every range checked here, and keeps the cast exact.
    let limit = 2f64.powi(100);
    if f.is_finite() && f.fract() == 0.0 && f.abs() < limit {
        // Exact: integral and well inside i128.
        Some(f as i128)
    } else {
        None
    }
}

/// A boolean given as JSON `true`/`false`, the integers 0/1, or the words PostgreSQL and
/// Patroni's `parse_bool` accept (`on`/`off`, `yes`/`no`, `true`/`false`, `1`/`0`).
pub fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => bool_word(s),
        _ => None,
    }
}

/// The boolean meaning of a word, case-insensitive.
pub fn bool_word(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_sync_mode(value: &Value) -> Option<SynchronousMode> {
    if let Some(s) = value.as_str() {
        if s.trim().eq_ignore_ascii_case("quorum") {
            return Some(SynchronousMode::Quorum);
        }
    }
    boolean(value).map(|on| {
        if on {
            SynchronousMode::On
        } else {
            SynchronousMode::Off
        }
    })
}

/// A short JSON rendering of a value for error messages: strings keep their quotes.
pub fn describe(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Why `name` cannot be a PostgreSQL parameter name, if it cannot: a letter or `_`,
/// then letters, digits, `_`, `$` or `.` (a custom parameter's `prefix.name`). Anything
/// else would be written into `postgresql.conf` as it is.
pub fn guc_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.'))
        && name.len() <= 63;
    (!ok).then(|| {
        format!(
            "{name:?} is not a PostgreSQL parameter name (letters, digits, _ and ., at most 63)"
        )
    })
}

/// Why `text` cannot go into a configuration file line, if it cannot: a control
/// character (a newline would start a new setting in `postgresql.conf` or a new rule in
/// `pg_hba.conf`).
pub fn control_char_problem(text: &str) -> Option<String> {
    text.chars()
        .find(|c| c.is_control() && *c != '\t')
        .map(|c| format!("contains the control character {:?}", c))
}
