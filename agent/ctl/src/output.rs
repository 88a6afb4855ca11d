//! Rendering of tables the way patronictl prints them: a framed text table whose top
//! border carries a title (`+ Cluster: demo (7312...) ---+`), tab-separated values, or
//! a JSON/YAML list of objects for scripts.

use super::args::Format;
use super::pyfmt::json_str;
use serde_json::Value;

/// Column alignment in the framed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A framed table. Cells may span several lines; then every row gets a rule below it so
/// rows stay distinguishable, as prettytable does.
#[derive(Debug, Clone, Default)]
pub struct TextTable {
    pub title: String,
    pub columns: Vec<String>,
    pub align: Vec<Align>,
    pub rows: Vec<Vec<String>>,
}

impl TextTable {
    pub fn render(&self) -> String {
        let n = self.columns.len();
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| width(c)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                for line in cell.split('\n') {
                    widths[i] = widths[i].max(width(line));
                }
            }
        }
        let rule: String = std::iter::once("+".to_string())
            .chain(widths.iter().map(|w| format!("{}+", "-".repeat(w + 2))))
            .collect();
        let align = |i: usize| self.align.get(i).copied().unwrap_or(Align::Left);
        let line = |cells: &[&str]| -> String {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).copied().unwrap_or("");
                let pad = " ".repeat(w - width(c));
                match align(i) {
                    Align::Left => s.push_str(&format!(" {c}{pad} |")),
                    Align::Right => s.push_str(&format!(" {pad}{c} |")),
                }
            }
            s
        };
        let multiline = self.rows.iter().flatten().any(|c| c.contains('\n'));
        let mut out = Vec::new();
        out.push(with_title(&rule, &self.title));
        let header: Vec<&str> = self.columns.iter().map(String::as_str).collect();
        out.push(line(&header));
        out.push(rule.clone());
        for (r, row) in self.rows.iter().enumerate() {
            let split: Vec<Vec<&str>> = row.iter().map(|c| c.split('\n').collect()).collect();
            let height = split.iter().map(Vec::len).max().unwrap_or(1);
            for k in 0..height {
                let cells: Vec<&str> = split
                    .iter()
                    .map(|lines| lines.get(k).copied().unwrap_or(""))
                    .collect();
                out.push(line(&cells));
            }
            if multiline && r + 1 < self.rows.len() {
                out.push(rule.clone());
            }
        }
        out.push(rule);
        out.join("\n")
    }
}

/// The title replaces the start of the top border, cut to fit inside its corners.
fn with_title(rule: &str, title: &str) -> String {
    if title.is_empty() {
        return rule.to_string();
    }
    let chars: Vec<char> = rule.chars().collect();
    let room = chars.len().saturating_sub(2);
    let title: Vec<char> = title.chars().take(room).collect();
    let mut s: String = chars[..1].iter().collect();
    s.extend(title.iter());
    s.extend(chars[1 + title.len()..].iter());
    s
}

/// Text of a cell value: strings as they are, numbers in decimal, nothing for null.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Number(n) => n.to_string(),
        other => yaml_flow(other),
    }
}

/// Rows of typed values printed in one of the formats. `title` is the framed table's
/// title; `skip_empty` leaves empty values out of JSON/YAML objects (what patronictl
/// does for the member list, so a leader has no `Lag in MB`).
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub right: Vec<&'static str>,
    pub skip_empty: bool,
}

impl Rows {
    pub fn render(&self, format: Format, title: &str) -> String {
        match format {
            Format::Json => format!(
                "[{}]",
                self.objects()
                    .iter()
                    .map(|o| py_json_object(o))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Format::Yaml | Format::Yml => yaml_block(&Value::Array(
                self.objects()
                    .into_iter()
                    .map(|o| Value::Object(o.into_iter().collect()))
                    .collect(),
            )),
            Format::Tsv => {
                let mut lines = vec![self.columns.join("\t")];
                for r in &self.rows {
                    lines.push(r.iter().map(cell_text).collect::<Vec<_>>().join("\t"));
                }
                lines.join("\n")
            }
            Format::Pretty => TextTable {
                title: title.to_string(),
                columns: self.columns.clone(),
                align: self
                    .columns
                    .iter()
                    .map(|c| {
                        if self.right.contains(&c.as_str()) {
                            Align::Right
                        } else {
                            Align::Left
                        }
                    })
                    .collect(),
                rows: self
                    .rows
                    .iter()
                    .map(|r| r.iter().map(cell_text).collect())
                    .collect(),
            }
            .render(),
        }
    }

    /// Each row as (column, value) pairs in column order.
    fn objects(&self) -> Vec<Vec<(String, Value)>> {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .zip(r)
                    .filter(|(_, v)| !(self.skip_empty && (v.is_null() || v.as_str() == Some(""))))
                    .map(|(c, v)| (c.clone(), v.clone()))
                    .collect()
            })
            .collect()
    }
}

/// An object as Python's `json.dumps` writes it (what patronictl prints for
/// `-f json`): keys in the given order, `, ` and `: ` separators, non-ASCII escaped.
fn py_json_object(pairs: &[(String, Value)]) -> String {
    format!(
        "{{{}}}",
        pairs
            .iter()
            .map(|(k, v)| format!("{}: {}", json_str(k), py_json(v)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A value as Python's `json.dumps` writes it.
pub fn py_json(v: &Value) -> String {
    match v {
        Value::String(s) => json_str(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => {
            let pairs: Vec<(String, Value)> =
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            py_json_object(&pairs)
        }
        other => other.to_string(),
    }
}

/// Block-style YAML (what `show-config` and `-f yaml` print), without serde_yaml's
/// leading document marker. Strings a YAML 1.1 reader (PyYAML, patronictl) would take
/// for something else (`on`, `off`, `yes`, `2030-01-01`, `1_000`) are quoted, as
/// PyYAML writes them.
pub fn yaml_block(v: &Value) -> String {
    let text = serde_yaml::to_string(v).unwrap_or_default();
    quote_yaml11(text.strip_prefix("---\n").unwrap_or(&text))
}

/// Quotes the plain scalars of serde_yaml's block output that YAML 1.1 resolves to
/// booleans, nulls, numbers or timestamps (serde_yaml quotes by YAML 1.2 rules). The
/// lines of block scalars (`|-`) are left alone.
fn quote_yaml11(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The indentation of the line that opened a block scalar, while in one.
    let mut block: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches('\n');
        let indent = content.len() - content.trim_start_matches(' ').len();
        if let Some(b) = block {
            if content.trim().is_empty() || indent > b {
                out.push_str(line);
                continue;
            }
            block = None;
        }
        let mut rest = &content[indent..];
        out.push_str(&content[..indent]);
        while let Some(r) = rest.strip_prefix("- ") {
            out.push_str("- ");
            rest = r;
        }
        let value = match split_key(rest) {
            Some((key, value)) => {
                out.push_str(&quote_plain(key));
                out.push(':');
                match value {
                    Some(v) => {
                        out.push(' ');
                        v
                    }
                    None => "",
                }
            }
            None => rest,
        };
        if value.starts_with(['|', '>']) {
            block = Some(indent);
        }
        out.push_str(&quote_plain(value));
        out.push_str(&line[content.len()..]);
    }
    out
}

/// `key: value`, `key:` (the value on the next lines) or a lone value (`None`).
fn split_key(s: &str) -> Option<(&str, Option<&str>)> {
    let key_end = match s.chars().next()? {
        q @ ('\'' | '"') => {
            let mut escaped = false;
            let mut end = None;
            for (i, c) in s.char_indices().skip(1) {
                match c {
                    '\\' if q == '"' && !escaped => escaped = true,
                    c if c == q && !escaped => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let end = end?;
            // A doubled single quote is an escaped one, not the end.
            if q == '\'' && s[end..].starts_with('\'') {
                return split_key_after_quotes(s);
            }
            (s[end..].starts_with(':')).then_some(end)?
        }
        _ => match s.find(": ") {
            Some(i) => i,
            None => s.strip_suffix(':').map(str::len)?,
        },
    };
    let after = &s[key_end + 1..];
    Some((&s[..key_end], after.strip_prefix(' ')))
}

/// `split_key` for a single-quoted key holding `''`.
fn split_key_after_quotes(s: &str) -> Option<(&str, Option<&str>)> {
    let mut i = 1;
    let b = s.as_bytes();
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            let end = i + 1;
            if !s[end..].starts_with(':') {
                return None;
            }
            let after = &s[end + 1..];
            return Some((&s[..end], after.strip_prefix(' ')));
        }
        i += 1;
    }
    None
}

/// `'s'` when `s` is a plain scalar YAML 1.1 would not read as a string. (A plain
/// scalar that YAML 1.2 reads as a bool, number or null is one: serde_yaml quotes
/// such strings itself.)
fn quote_plain(s: &str) -> String {
    let plain = !s.is_empty() && !s.starts_with(['\'', '"', '|', '>', '[', '{', '&', '*', '!']);
    let string_in_1_2 = || matches!(serde_yaml::from_str::<Value>(s), Ok(Value::String(_)));
    if plain && yaml11_implicit(s) && string_in_1_2() {
        format!("'{s}'")
    } else {
        s.to_string()
    }
}

/// Whether PyYAML's resolver reads `s` as a bool, null, int, float or timestamp.
fn yaml11_implicit(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let digits = |t: &str, ok: &dyn Fn(char) -> bool| !t.is_empty() && t.chars().all(ok);
    let dec = |c: char| c.is_ascii_digit() || c == '_';
    // `:[0-5]?[0-9]` groups of a sexagesimal number.
    let sexagesimal = |groups: &str| {
        groups.split(':').skip(1).all(|g| {
            (g.len() == 1 || (g.len() == 2 && g.as_bytes()[0] <= b'5'))
                && g.chars().all(|c| c.is_ascii_digit())
        }) && groups.contains(':')
    };
    let exponent = |t: &str| match t.find(['e', 'E']) {
        Some(i) => {
            let e = &t[i + 1..];
            e.starts_with(['-', '+']) && digits(&e[1..], &|c| c.is_ascii_digit())
        }
        None => true,
    };
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let starts_digit = unsigned.starts_with(|c: char| c.is_ascii_digit());
    // Integers: 0b…, 0x…, octal, decimal, sexagesimal.
    if let Some(b) = unsigned.strip_prefix("0b") {
        if digits(b, &|c| matches!(c, '0' | '1' | '_')) {
            return true;
        }
    }
    if let Some(x) = unsigned.strip_prefix("0x") {
        if digits(x, &|c| c.is_ascii_hexdigit() || c == '_') {
            return true;
        }
    }
    if unsigned == "0" || (starts_digit && digits(unsigned, &dec)) {
        return true;
    }
    if unsigned.starts_with(|c: char| ('1'..='9').contains(&c)) {
        let (head, _) = unsigned.split_once(':').unwrap_or((unsigned, ""));
        if digits(head, &dec) && sexagesimal(unsigned) {
            return true;
        }
    }
    // Floats: 1.5, 1., 1.5e+3, .5 (unsigned only), 1:30.5, .inf, .nan.
    if let Some((int, frac)) = unsigned.split_once('.') {
        let frac_digits = frac.split(['e', 'E']).next().unwrap_or("");
        let frac_ok = frac_digits.chars().all(dec) && exponent(frac);
        if starts_digit && frac_ok {
            let (head, _) = int.split_once(':').unwrap_or((int, ""));
            if digits(head, &dec) && (!int.contains(':') || sexagesimal(int)) {
                return true;
            }
        }
        if int.is_empty() && unsigned.len() == s.len() && digits(frac_digits, &dec) && frac_ok {
            return true;
        }
    }
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    // Timestamps: 2001-12-14, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.
    let b = s.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if b.len() >= 8 && (0..4).all(d) && b[4] == b'-' {
        let date_end = s[5..]
            .split_once(['T', 't', ' ', '\t'])
            .map_or(s.len(), |(date, _)| 5 + date.len());
        let parts: Vec<&str> = s[5..date_end].split('-').collect();
        let date_ok = parts.len() == 2
            && parts
                .iter()
                .all(|p| (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()));
        if date_ok && date_end == s.len() {
            return parts.iter().all(|p| p.len() == 2);
        }
        if date_ok {
            return yaml11_time(s[date_end + 1..].trim_start_matches([' ', '\t']));
        }
    }
    false
}

/// The time of a YAML 1.1 timestamp, to the end of the text:
/// `H[H]:MM:SS[.f][ ][Z|±H[H][:MM]]`.
fn yaml11_time(t: &str) -> bool {
    let b = t.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let mut i = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=2).contains(&i) {
        return false;
    }
    for _ in 0..2 {
        if b.get(i) != Some(&b':') || !d(i + 1) || !d(i + 2) {
            return false;
        }
        i += 3;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while d(i) {
            i += 1;
        }
    }
    let zone = t[i..].trim_start_matches([' ', '\t']);
    if zone.is_empty() || zone == "Z" {
        return true;
    }
    let Some(z) = zone.strip_prefix(['-', '+']) else {
        return false;
    };
    let (hh, mm) = z.split_once(':').unwrap_or((z, "00"));
    (1..=2).contains(&hh.len())
        && hh.chars().all(|c| c.is_ascii_digit())
        && mm.len() == 2
        && mm.chars().all(|c| c.is_ascii_digit())
}

/// One-line YAML flow style (`{nofailover: true, priority: 1}`), for tags in tables.
pub fn yaml_flow(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_scalar(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(yaml_flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", yaml_scalar(k), yaml_flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A string as a YAML flow scalar: plain when it reads back as the same string,
/// single-quoted otherwise.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with(|c: char| c.is_whitespace() || "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !s.ends_with(char::is_whitespace)
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains([',', '[', ']', '{', '}', '\n'])
        // YAML 1.1 readers (PyYAML among them) take these words for booleans.
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "yes" | "no" | "on" | "off" | "y" | "n" | "true" | "false" | "null" | "~"
        )
        && matches!(serde_yaml::from_str::<Value>(s), Ok(Value::String(ref back)) if back == s);
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn framed_table_with_title_and_alignment() {
        let t = TextTable {
            title: " Cluster: demo (123) ".into(),
            columns: vec!["Member".into(), "TL".into()],
            align: vec![Align::Left, Align::Right],
            rows: vec![
                vec!["node1".into(), "1".into()],
                vec!["node22".into(), "12".into()],
            ],
        };
        // The title is cut to fit inside the border's corners.
        assert_eq!(
            t.render(),
            "+ Cluster: dem+\n| Member | TL |\n+--------+----+\n| node1  |  1 |\n| node22 | 12 |\n+--------+----+"
        );
    }

    #[test]
    fn title_fills_the_border_when_it_fits() {
        let t = TextTable {
            title: " Cluster: x ".into(),
            columns: vec!["Member".into(), "Host".into(), "Role".into()],
            align: vec![],
            rows: vec![vec!["a".into(), "b".into(), "c".into()]],
        };
        let out = t.render();
        assert_eq!(out.lines().next().unwrap(), "+ Cluster: x ---+------+");
        assert_eq!(
            out.lines().next().unwrap().len(),
            out.lines().nth(2).unwrap().len()
        );
    }

    #[test]
    fn multiline_cells_get_rules_between_rows() {
        let t = TextTable {
            title: String::new(),
            columns: vec!["A".into(), "Tags".into()],
            align: vec![],
            rows: vec![
                vec!["x".into(), "a: 1\nbb: 2".into()],
                vec!["y".into(), "".into()],
            ],
        };
        assert_eq!(
            t.render(),
            "+---+-------+\n| A | Tags  |\n+---+-------+\n| x | a: 1  |\n|   | bb: 2 |\n+---+-------+\n| y |       |\n+---+-------+"
        );
    }

    #[test]
    fn rows_in_every_format() {
        let rows = Rows {
            columns: vec!["Member".into(), "Lag in MB".into()],
            rows: vec![vec![json!("n1"), json!("")], vec![json!("n2"), json!(0)]],
            right: vec!["Lag in MB"],
            skip_empty: true,
        };
        // As Python's json.dumps: keys in column order, spaces after , and :.
        assert_eq!(
            rows.render(Format::Json, "t"),
            r#"[{"Member": "n1"}, {"Member": "n2", "Lag in MB": 0}]"#
        );
        assert_eq!(
            py_json(&json!({"b": [1, "é"], "a": null})),
            r#"{"a": null, "b": [1, "\u00e9"]}"#
        );
        assert_eq!(
            rows.render(Format::Yaml, "t"),
            "- Member: n1\n- Lag in MB: 0\n  Member: n2\n"
        );
        assert_eq!(
            rows.render(Format::Tsv, "t"),
            "Member\tLag in MB\nn1\t\nn2\t0"
        );
        assert!(rows
            .render(Format::Pretty, "")
            .contains("| n2     |         0 |"));
    }

    #[test]
    fn block_yaml_quotes_what_yaml_1_1_would_misread() {
        // What PyYAML's safe_dump writes for these strings.
        let v = json!({
            "a": "on", "On": "x", "c": "a: b", "d": {}, "m": "x\non\n",
            "b": ["off", "yes", "Y", "n", "NO", "~", "null", "2030-01-01", "1:20", "0o7",
                  "+1", ".5", "1e3", "1_0", "1.2.3", "15.9", "2030-01-01T00:00:00+00:00",
                  "2030-01-01T00:00:00+00:00 if version < 15.9", "1.5e+3", "plain"],
            "n": [true, 1, 1.5, null],
        });
        let out = yaml_block(&v);
        assert_eq!(
            out,
            "'On': x\na: 'on'\nb:\n- 'off'\n- 'yes'\n- Y\n- n\n- 'NO'\n- '~'\n- 'null'\n- \
             '2030-01-01'\n- '1:20'\n- '0o7'\n- '+1'\n- '.5'\n- '1e3'\n- '1_0'\n- 1.2.3\n- \
             '15.9'\n- '2030-01-01T00:00:00+00:00'\n- 2030-01-01T00:00:00+00:00 if version < \
             15.9\n- '1.5e+3'\n- plain\nc: 'a: b'\nd: {}\nm: |\n  x\n  on\nn:\n- true\n- 1\n- 1.5\n- null\n"
        );
        // It reads back the same.
        assert_eq!(serde_yaml::from_str::<Value>(&out).unwrap(), v);
    }

    #[test]
    fn flow_yaml_quotes_only_when_needed() {
        let v =
            json!({"nofailover": true, "clonefrom": "yes", "note": "a: b", "n": 1, "s": "plain"});
        assert_eq!(
            yaml_flow(&v),
            "{clonefrom: 'yes', 'n': 1, nofailover: true, note: 'a: b', s: plain}"
        );
        assert_eq!(yaml_flow(&json!(["x", "1"])), "[x, '1']");
        assert_eq!(cell_text(&json!(null)), "");
    }
}
