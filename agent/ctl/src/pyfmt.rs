//! Query results printed the way patronictl prints them: psycopg2 turns PostgreSQL's
//! text into Python objects (int, float, Decimal, bool, datetime, timedelta, list,
//! dict), and patronictl prints `str(value)` in tsv and pretty tables, or
//! `json.dumps(rows)`.
//!
//! [`Py`] is such a value, built from a column's text and type
//! ([`from_pg_text`]); its methods print it as Python would.

use serde_json::{json, Map, Value};
use tokio_postgres::types::{Kind, Type};

/// A Python value as psycopg2 returns it for one cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Py {
    None,
    Bool(bool),
    /// An integer, as its decimal digits (Python's integers are unbounded).
    Int(String),
    Float(f64),
    Str(String),
    /// A value whose `str()` is `text` and whose `repr()` (inside a list or a dict) is
    /// `repr`: Decimal, datetime, date, time, timedelta.
    Other {
        text: String,
        repr: String,
    },
    List(Vec<Py>),
    /// Keys in their order in the JSON text, as Python's dict keeps them.
    Dict(Vec<(String, Py)>),
}

impl Py {
    /// `str(value)`.
    pub fn to_str(&self) -> String {
        match self {
            Py::None => "None".to_string(),
            Py::Bool(true) => "True".to_string(),
            Py::Bool(false) => "False".to_string(),
            Py::Int(digits) => digits.clone(),
            Py::Float(f) => float_repr(*f),
            Py::Str(s) => s.clone(),
            Py::Other { text, .. } => text.clone(),
            Py::List(_) | Py::Dict(_) => self.repr(),
        }
    }

    /// `repr(value)`, as a value is printed inside a list or a dict.
    pub fn repr(&self) -> String {
        match self {
            Py::Str(s) => str_repr(s),
            Py::Other { repr, .. } => repr.clone(),
            Py::List(items) => format!(
                "[{}]",
                items.iter().map(Py::repr).collect::<Vec<_>>().join(", ")
            ),
            Py::Dict(items) => format!(
                "{{{}}}",
                items
                    .iter()
                    .map(|(k, v)| format!("{}: {}", str_repr(k), v.repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.to_str(),
        }
    }

    /// `json.dumps(value)` (separators `, ` and `: `, non-ASCII escaped). Where Python
    /// would fail (Decimal, datetime) or write invalid JSON (NaN, Infinity), the value's
    /// `str()` is written as a JSON string.
    pub fn to_json(&self) -> String {
        match self {
            Py::None => "null".to_string(),
            Py::Bool(b) => b.to_string(),
            Py::Int(digits) => digits.clone(),
            Py::Float(f) if f.is_finite() => float_repr(*f),
            Py::Float(f) => json_str(&non_finite(*f)),
            Py::Str(s) => json_str(s),
            Py::Other { text, .. } => json_str(text),
            Py::List(items) => format!(
                "[{}]",
                items.iter().map(Py::to_json).collect::<Vec<_>>().join(", ")
            ),
            Py::Dict(items) => json_object(items.iter().map(|(k, v)| (k.as_str(), v))),
        }
    }

    /// The value as JSON data (for YAML output). Integers too large for 64 bits and
    /// non-finite floats become strings.
    pub fn to_value(&self) -> Value {
        match self {
            Py::None => Value::Null,
            Py::Bool(b) => json!(b),
            Py::Int(digits) => digits
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| digits.parse::<u64>().map(Value::from))
                .unwrap_or_else(|_| json!(digits)),
            Py::Float(f) => serde_json::Number::from_f64(*f)
                .map_or_else(|| json!(non_finite(*f)), Value::Number),
            Py::Str(s) | Py::Other { text: s, .. } => json!(s),
            Py::List(items) => Value::Array(items.iter().map(Py::to_value).collect()),
            Py::Dict(items) => Value::Object(
                items
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

fn non_finite(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f > 0.0 {
        "Infinity".to_string()
    } else {
        "-Infinity".to_string()
    }
}

/// A JSON object from ordered pairs; a repeated key keeps its first place and its last
/// value, as a Python dict built from the pairs does.
pub fn json_object<'a>(pairs: impl Iterator<Item = (&'a str, &'a Py)>) -> String {
    let mut merged: Vec<(&str, &Py)> = Vec::new();
    for (k, v) in pairs {
        match merged.iter_mut().find(|(mk, _)| *mk == k) {
            Some(slot) => slot.1 = v,
            None => merged.push((k, v)),
        }
    }
    format!(
        "{{{}}}",
        merged
            .iter()
            .map(|(k, v)| format!("{}: {}", json_str(k), v.to_json()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`).
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Python's `repr()` of a str: single quotes unless the text has a single quote and
/// no double quote; control characters escaped.
pub fn str_repr(s: &str) -> String {
    warden_config::logging::python_repr(s)
}

/// Python's `repr()` of a float: the shortest text that reads back the same, in
/// positional notation for exponents from -4 to 15, else `1e+20`, `1.5e-07`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    // Rust's `{:e}` is the shortest round-trip form too: `1.5e-7`, `-2e20`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else {
            let point = point as usize;
            if digits.len() <= point {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        };
        format!("{sign}{body}")
    } else {
        let frac = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!(
            "{sign}{}{frac}e{esign}{:02}",
            &digits[..1],
            exp.unsigned_abs()
        )
    }
}

/// `str(Decimal(text))` for PostgreSQL's numeric text: the same text, except that
/// values below 1e-6 are written with an exponent (`1E-7`), as Python does.
pub fn decimal_str(text: &str) -> String {
    let (sign, body) = match text.strip_prefix('-') {
        Some(b) => ("-", b),
        None => ("", text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return text.to_string(); // NaN, Infinity
    }
    let all = format!("{int}{frac}");
    let coeff = all.trim_start_matches('0');
    let coeff = if coeff.is_empty() { "0" } else { coeff };
    let exp = -(frac.len() as i64);
    let adjusted = exp + coeff.len() as i64 - 1;
    if adjusted >= -6 {
        return text.to_string();
    }
    let rest = if coeff.len() > 1 {
        format!(".{}", &coeff[1..])
    } else {
        String::new()
    };
    format!("{sign}{}{rest}E{adjusted}", &coeff[..1])
}

/// A PostgreSQL value (its text, or NULL) as psycopg2 returns it for `ty`.
pub fn from_pg_text(text: Option<&str>, ty: &Type) -> Py {
    let Some(text) = text else {
        return Py::None;
    };
    if let Kind::Array(elem) = ty.kind() {
        return parse_array(text, elem).unwrap_or_else(|| Py::Str(text.to_string()));
    }
    let other = |t: String| Py::Other {
        repr: str_repr(&t),
        text: t,
    };
    match *ty {
        Type::BOOL => match text {
            "t" => Py::Bool(true),
            "f" => Py::Bool(false),
            _ => Py::Str(text.to_string()),
        },
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Py::Int(text.to_string()),
        Type::FLOAT4 | Type::FLOAT8 => match text {
            "NaN" => Py::Float(f64::NAN),
            "Infinity" => Py::Float(f64::INFINITY),
            "-Infinity" => Py::Float(f64::NEG_INFINITY),
            t => t.parse().map_or_else(|_| Py::Str(t.to_string()), Py::Float),
        },
        Type::NUMERIC => {
            let s = decimal_str(text);
            Py::Other {
                repr: format!("Decimal('{s}')"),
                text: s,
            }
        }
        Type::JSON | Type::JSONB => parse_json(text).unwrap_or_else(|| Py::Str(text.to_string())),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match text.split_once(' ') {
            Some((date, time)) if is_date(date) => time_str(time)
                .map_or_else(|| other(text.to_string()), |t| other(format!("{date} {t}"))),
            _ => other(text.to_string()),
        },
        Type::DATE => other(text.to_string()),
        Type::TIME | Type::TIMETZ => other(time_str(text).unwrap_or_else(|| text.to_string())),
        Type::INTERVAL => other(interval_str(text).unwrap_or_else(|| text.to_string())),
        _ => Py::Str(text.to_string()),
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// `HH:MM:SS[.f][±HH[:MM[:SS]]]` as Python's time prints: six fraction digits when
/// there is a fraction, the offset as `±HH:MM`.
fn time_str(t: &str) -> Option<String> {
    let split = t
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '+' || c == '-')
        .map(|(i, _)| i);
    let (clock, zone) = match split {
        Some(i) => (&t[..i], Some(&t[i..])),
        None => (t, None),
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let ok = hms.len() == 8
        && hms.bytes().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                c == b':'
            } else {
                c.is_ascii_digit()
            }
        })
        && frac.len() <= 6
        && frac.bytes().all(|c| c.is_ascii_digit());
    if !ok {
        return None;
    }
    let mut out = hms.to_string();
    if frac.bytes().any(|c| c != b'0') {
        out.push_str(&format!(".{frac:0<6}"));
    }
    if let Some(z) = zone {
        let (sign, rest) = z.split_at(1);
        let mut parts: Vec<&str> = rest.split(':').collect();
        if parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|c| c.is_ascii_digit()))
        {
            return None;
        }
        if parts.len() == 1 {
            parts.push("00");
        }
        if parts.len() == 3 && parts[2] == "00" {
            parts.pop();
        }
        out.push_str(sign);
        out.push_str(&parts.join(":"));
    }
    Some(out)
}

/// PostgreSQL's interval text (IntervalStyle `postgres`) as Python's timedelta prints
/// it: psycopg2 counts a year as 365 days and a month as 30.
fn interval_str(text: &str) -> Option<String> {
    const DAY_US: i128 = 86_400_000_000;
    let mut total: i128 = 0;
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w.contains(':') {
            let (neg, clock) = match w.strip_prefix('-') {
                Some(c) => (true, c),
                None => (false, w.strip_prefix('+').unwrap_or(w)),
            };
            let mut parts = clock.split(':');
            let h: i128 = parts.next()?.parse().ok()?;
            let m: i128 = parts.next()?.parse().ok()?;
            let s = parts.next().unwrap_or("0");
            if parts.next().is_some() {
                return None;
            }
            let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
            let secs: i128 = secs.parse().ok()?;
            if frac.len() > 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let us: i128 = if frac.is_empty() {
                0
            } else {
                format!("{frac:0<6}").parse().ok()?
            };
            let v = ((h * 60 + m) * 60 + secs) * 1_000_000 + us;
            total += if neg { -v } else { v };
        } else {
            let n: i128 = w.parse().ok()?;
            let days = match words.next()? {
                "year" | "years" => n * 365,
                "mon" | "mons" => n * 30,
                "day" | "days" => n,
                _ => return None,
            };
            total += days * DAY_US;
        }
    }
    let days = total.div_euclid(DAY_US);
    let rest = total.rem_euclid(DAY_US);
    let (secs, us) = (rest / 1_000_000, rest % 1_000_000);
    let mut out = String::new();
    if days != 0 {
        let plural = if days.abs() == 1 { "" } else { "s" };
        out.push_str(&format!("{days} day{plural}, "));
    }
    out.push_str(&format!(
        "{}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ));
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
    Some(out)
}

/// An array's text (`{1,2}`, `{{"a b",NULL}}`) as nested lists of `elem` values.
fn parse_array(text: &str, elem: &Type) -> Option<Py> {
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let v = array_level(&chars, &mut pos, elem)?;
    (pos == chars.len()).then_some(v)
}

fn array_level(c: &[char], pos: &mut usize, elem: &Type) -> Option<Py> {
    if c.get(*pos) != Some(&'{') {
        return None;
    }
    *pos += 1;
    let mut items = Vec::new();
    if c.get(*pos) == Some(&'}') {
        *pos += 1;
        return Some(Py::List(items));
    }
    loop {
        match c.get(*pos)? {
            '{' => items.push(array_level(c, pos, elem)?),
            '"' => {
                *pos += 1;
                let mut s = String::new();
                loop {
                    match c.get(*pos)? {
                        '"' => break,
                        '\\' => {
                            *pos += 1;
                            s.push(*c.get(*pos)?);
                        }
                        ch => s.push(*ch),
                    }
                    *pos += 1;
                }
                *pos += 1;
                items.push(from_pg_text(Some(&s), elem));
            }
            _ => {
                let start = *pos;
                while !matches!(c.get(*pos), Some(',') | Some('}') | None) {
                    *pos += 1;
                }
                let s: String = c[start..*pos].iter().collect();
                items.push(if s.eq_ignore_ascii_case("NULL") {
                    Py::None
                } else {
                    from_pg_text(Some(&s), elem)
                });
            }
        }
        match c.get(*pos)? {
            ',' => *pos += 1,
            '}' => {
                *pos += 1;
                return Some(Py::List(items));
            }
            _ => return None,
        }
    }
}

/// JSON text as Python's `json.loads` reads it: objects keep their key order (a
/// repeated key keeps its first place, the last value), integers keep every digit.
pub fn parse_json(text: &str) -> Option<Py> {
    let mut p = JsonParser {
        s: text.as_bytes(),
        pos: 0,
    };
    let v = p.value()?;
    p.ws();
    (p.pos == p.s.len()).then_some(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, word: &str) -> Option<()> {
        self.s[self.pos..]
            .starts_with(word.as_bytes())
            .then(|| self.pos += word.len())
    }

    fn value(&mut self) -> Option<Py> {
        self.ws();
        match *self.s.get(self.pos)? {
            b'{' => {
                self.pos += 1;
                let mut items: Vec<(String, Py)> = Vec::new();
                self.ws();
                if self.eat("}").is_some() {
                    return Some(Py::Dict(items));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value()?;
                    match items.iter_mut().find(|(ik, _)| *ik == k) {
                        Some(slot) => slot.1 = v,
                        None => items.push((k, v)),
                    }
                    self.ws();
                    if self.eat(",").is_none() {
                        self.eat("}")?;
                        return Some(Py::Dict(items));
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]").is_some() {
                    return Some(Py::List(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.eat(",").is_none() {
                        self.eat("]")?;
                        return Some(Py::List(items));
                    }
                }
            }
            b'"' => self.string().map(Py::Str),
            b't' => self.eat("true").map(|()| Py::Bool(true)),
            b'f' => self.eat("false").map(|()| Py::Bool(false)),
            b'n' => self.eat("null").map(|()| Py::None),
            _ => self.number(),
        }
    }

    fn number(&mut self) -> Option<Py> {
        let start = self.pos;
        while matches!(
            self.s.get(self.pos),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.pos += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
        if t.contains(['.', 'e', 'E']) {
            t.parse().ok().map(Py::Float)
        } else {
            let neg = t.starts_with('-');
            let digits = t.trim_start_matches('-');
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let digits = digits.trim_start_matches('0');
            Some(Py::Int(match (neg, digits) {
                (_, "") => "0".to_string(),
                (true, d) => format!("-{d}"),
                (false, d) => d.to_string(),
            }))
        }
    }

    fn string(&mut self) -> Option<String> {
        self.eat("\"")?;
        let mut out: Vec<u16> = Vec::new();
        loop {
            let c = *self.s.get(self.pos)?;
            self.pos += 1;
            match c {
                b'"' => return Some(String::from_utf16_lossy(&out)),
                b'\\' => {
                    let e = *self.s.get(self.pos)?;
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex =
                                std::str::from_utf8(self.s.get(self.pos..self.pos + 4)?).ok()?;
                            self.pos += 4;
                            out.push(u16::from_str_radix(hex, 16).ok()?);
                            continue;
                        }
                        _ => return None,
                    };
                    let mut buf = [0u16; 2];
                    out.extend_from_slice(ch.encode_utf16(&mut buf));
                }
                _ => {
                    // A UTF-8 sequence: copy it whole.
                    let len = match c {
                        0x00..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    let bytes = self.s.get(self.pos - 1..self.pos - 1 + len)?;
                    self.pos += len - 1;
                    let s = std::str::from_utf8(bytes).ok()?;
                    out.extend(s.encode_utf16());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(text: &str, ty: &Type) -> Py {
        from_pg_text(Some(text), ty)
    }

    #[test]
    fn floats_print_like_python() {
        for (f, s) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (-2.0, "-2.0"),
            (0.0, "0.0"),
            (1e20, "1e+20"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (-1.25e100, "-1.25e+100"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(float_repr(f), s, "{f}");
        }
    }

    #[test]
    fn decimals_print_like_python() {
        for (t, s) in [
            ("1.50", "1.50"),
            ("100", "100"),
            ("-0.0", "-0.0"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1E-7"),
            ("-0.000000150", "-1.50E-7"),
            ("NaN", "NaN"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
        ] {
            assert_eq!(decimal_str(t), s, "{t}");
        }
        assert_eq!(py("1.5", &Type::NUMERIC).repr(), "Decimal('1.5')");
    }

    #[test]
    fn pg_values_become_python_values() {
        assert_eq!(from_pg_text(None, &Type::INT4).to_str(), "None");
        assert_eq!(py("t", &Type::BOOL).to_str(), "True");
        assert_eq!(py("42", &Type::INT8).to_json(), "42");
        assert_eq!(py("1", &Type::FLOAT8).to_str(), "1.0");
        assert_eq!(py("Infinity", &Type::FLOAT8).to_str(), "inf");
        assert_eq!(py("NaN", &Type::FLOAT8).to_json(), "\"NaN\"");
        assert_eq!(py("x", &Type::TEXT).to_json(), "\"x\"");
        assert_eq!(
            py("2026-12-07 10:01:05.62142+00", &Type::TIMESTAMPTZ).to_str(),
            "2026-12-07 10:01:05.621420+00:00"
        );
        assert_eq!(
            py("2024-01-02 03:04:05", &Type::TIMESTAMP).to_str(),
            "2024-01-02 03:04:05"
        );
        assert_eq!(
            py("2024-01-02 03:04:05+05:30", &Type::TIMESTAMPTZ).to_str(),
            "2024-01-02 03:04:05+05:30"
        );
        assert_eq!(py("03:04:05.5", &Type::TIME).to_str(), "03:04:05.500000");
        assert_eq!(py("03:04:05+02", &Type::TIMETZ).to_str(), "03:04:05+02:00");
        for (t, s) in [
            ("1 day 02:00:00", "1 day, 2:00:00"),
            ("-1 days +02:00:00", "-1 day, 2:00:00"),
            (
                "1 year 2 mons 3 days 04:05:06.5",
                "428 days, 4:05:06.500000",
            ),
            ("-00:00:01", "-1 day, 23:59:59"),
            ("3 days", "3 days, 0:00:00"),
            ("00:00:00", "0:00:00"),
        ] {
            assert_eq!(py(t, &Type::INTERVAL).to_str(), s, "{t}");
        }
        // Not the default IntervalStyle: the text as it is.
        assert_eq!(py("P1D", &Type::INTERVAL).to_str(), "P1D");
    }

    #[test]
    fn arrays_and_json_print_like_python() {
        assert_eq!(py("{1,2}", &Type::INT4_ARRAY).to_str(), "[1, 2]");
        assert_eq!(
            py("{{1,2},{3,4}}", &Type::INT4_ARRAY).to_str(),
            "[[1, 2], [3, 4]]"
        );
        assert_eq!(
            py(r#"{"a b","c\"d",NULL}"#, &Type::TEXT_ARRAY).to_str(),
            r#"['a b', 'c"d', None]"#
        );
        assert_eq!(py("{t,NULL}", &Type::BOOL_ARRAY).to_str(), "[True, None]");
        assert_eq!(
            py("{1.5}", &Type::NUMERIC_ARRAY).to_str(),
            "[Decimal('1.5')]"
        );
        assert_eq!(py("{}", &Type::INT4_ARRAY).to_json(), "[]");
        let j = py(
            r#"{"b":1,"a":["x",null,true,1.5e3],"é":"\u00e9\n"}"#,
            &Type::JSON,
        );
        assert_eq!(
            j.to_str(),
            r#"{'b': 1, 'a': ['x', None, True, 1500.0], 'é': 'é\n'}"#
        );
        assert_eq!(
            j.to_json(),
            r#"{"b": 1, "a": ["x", null, true, 1500.0], "\u00e9": "\u00e9\n"}"#
        );
        assert_eq!(
            py("[10000000000000000000000]", &Type::JSONB).to_str(),
            "[10000000000000000000000]"
        );
        assert_eq!(py("[1, 2", &Type::JSONB).to_str(), "[1, 2");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(json_str("😀"), "\"\\ud83d\\ude00\"");
    }
}
