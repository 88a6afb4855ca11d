//! Rendering of tables the way patronictl prints them: a framed text table whose top
//! border carries a title (`+ Cluster: demo (7312...) ---+`), tab-separated values, or
//! a JSON/YAML list of objects for scripts.

use super::args::Format;
use serde_json::{Map, Value};

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
            Format::Json => {
                serde_json::to_string(&self.objects()).unwrap_or_else(|_| "[]".to_string())
            }
            Format::Yaml | Format::Yml => yaml_block(&Value::Array(self.objects())),
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

    fn objects(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|r| {
                let mut m = Map::new();
                for (c, v) in self.columns.iter().zip(r) {
                    let empty = v.is_null() || v.as_str() == Some("");
                    if !(self.skip_empty && empty) {
                        m.insert(c.clone(), v.clone());
                    }
                }
                Value::Object(m)
            })
            .collect()
    }
}

/// Block-style YAML (what `show-config` and `-f yaml` print), without serde_yaml's
/// leading document marker.
pub fn yaml_block(v: &Value) -> String {
    let text = serde_yaml::to_string(v).unwrap_or_default();
    text.strip_prefix("---\n").unwrap_or(&text).to_string()
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
        assert_eq!(
            rows.render(Format::Json, "t"),
            r#"[{"Member":"n1"},{"Lag in MB":0,"Member":"n2"}]"#
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
