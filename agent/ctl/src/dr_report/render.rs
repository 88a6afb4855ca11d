//! The report as Markdown (the default: readable as text, renders in a wiki or a CI
//! summary) and as a self-contained HTML page. Both are built from one list of
//! sections, so they always say the same things.

use std::fmt::Write as _;

use super::gather::Report;
use warden_backup::objectives::Status;

/// One table: header and rows of cells.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

/// A block of a section.
enum Block {
    Para(String),
    Table(Table),
    Code(Vec<String>),
}

struct Section {
    title: String,
    blocks: Vec<Block>,
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "not set".into())
}

fn service_section(r: &Report) -> Section {
    let s = &r.service;
    let o = &r.objectives;
    Section {
        title: "Service".into(),
        blocks: vec![
            Block::Para(format!(
                "Cluster `{}` (namespace `{}`), {}, system identifier {}{}. Leader: {}. \
                 Archiver: {}. Repository: {}.",
                s.scope,
                s.namespace,
                s.engine,
                s.system_identifier,
                if s.standby_cluster {
                    ", a standby cluster"
                } else {
                    ""
                },
                s.leader.as_deref().unwrap_or("none"),
                s.archiver.as_deref().unwrap_or("none"),
                s.repository
            )),
            Block::Table(Table {
                header: vec!["Member", "Host", "Role", "State", "TL", "Lag (bytes)"],
                rows: s
                    .members
                    .iter()
                    .map(|m| {
                        vec![
                            m.name.clone(),
                            m.host.clone(),
                            m.role.clone(),
                            m.state.clone(),
                            m.timeline.map(|t| t.to_string()).unwrap_or_default(),
                            m.lag_bytes.map(|b| b.to_string()).unwrap_or_default(),
                        ]
                    })
                    .collect(),
            }),
            Block::Table(Table {
                header: vec!["Objective", "Target"],
                rows: vec![
                    vec!["rpo".into(), opt(o.rpo.clone())],
                    vec!["rto".into(), opt(o.rto.clone())],
                    vec!["max_backup_age".into(), opt(o.max_backup_age.clone())],
                    vec!["max_drill_age".into(), opt(o.max_drill_age.clone())],
                    vec![
                        "min_copies".into(),
                        opt(o.min_copies.map(|n| n.to_string())),
                    ],
                ],
            }),
        ],
    }
}

fn sections(r: &Report) -> Vec<Section> {
    let mut out = vec![service_section(r)];
    out.push(Section {
        title: "Backup schedule".into(),
        blocks: vec![Block::Table(Table {
            header: vec!["Component", "Method", "Frequency", "Retention", "Location"],
            rows: r
                .schedule
                .iter()
                .map(|x| {
                    vec![
                        x.component.clone(),
                        x.method.clone(),
                        x.frequency.clone(),
                        x.retention.clone(),
                        x.location.clone(),
                    ]
                })
                .collect(),
        })],
    });
    out.push(Section {
        title: "Measured facts".into(),
        blocks: vec![Block::Table(Table {
            header: vec!["Fact", "Value", "At (UTC)"],
            rows: r
                .facts
                .iter()
                .map(|f| {
                    vec![
                        f.name.clone(),
                        f.value.clone(),
                        f.at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect(),
        })],
    });
    let verdict_blocks = if r.verdicts.is_empty() {
        vec![Block::Para(
            "No objective is configured (backup.objectives); nothing is judged.".into(),
        )]
    } else {
        vec![
            Block::Table(Table {
                header: vec!["Objective", "Target", "Measured", "Verdict", "Why"],
                rows: r
                    .verdicts
                    .iter()
                    .map(|v| {
                        vec![
                            v.objective.as_str().to_owned(),
                            v.target.clone(),
                            v.measured.clone().unwrap_or_else(|| "-".into()),
                            match v.status {
                                Status::Violated => "VIOLATED".to_owned(),
                                other => other.as_str().to_owned(),
                            },
                            v.reason.clone(),
                        ]
                    })
                    .collect(),
            }),
            Block::Para(if r.violated {
                "Some objective is VIOLATED (exit status 3).".into()
            } else {
                "No objective is violated (exit status 0; unknown does not fail).".into()
            }),
        ]
    };
    out.push(Section {
        title: "Verdicts".into(),
        blocks: verdict_blocks,
    });
    let mut blocks = Vec::new();
    for p in &r.procedures {
        blocks.push(Block::Para(format!("**{}.** {}", p.scenario, p.summary)));
        blocks.push(Block::Code(p.commands.clone()));
    }
    out.push(Section {
        title: "Recovery procedures".into(),
        blocks,
    });
    out
}

/// A Markdown table cell: pipes escaped, one line.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(r: &Report) -> String {
    let mut out = format!(
        "# DR report: {}\n\nGenerated {} UTC by wardenctl dr-report from the DCS and the repository.\n",
        r.service.scope,
        r.generated_at.format("%Y-%m-%d %H:%M:%S")
    );
    for s in sections(r) {
        let _ = write!(out, "\n## {}\n", s.title);
        for b in s.blocks {
            out.push('\n');
            match b {
                Block::Para(p) => {
                    let _ = writeln!(out, "{p}");
                }
                Block::Table(t) => {
                    let _ = writeln!(out, "| {} |", t.header.join(" | "));
                    let _ = writeln!(
                        out,
                        "|{}|",
                        t.header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
                    );
                    for row in t.rows {
                        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
                        let _ = writeln!(out, "| {} |", cells.join(" | "));
                    }
                }
                Block::Code(lines) => {
                    let _ = writeln!(out, "```sh\n{}\n```", lines.join("\n"));
                }
            }
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `**bold**` and `` `code` `` in a paragraph, the rest escaped.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let mut code = false;
    let text = esc(s);
    let mut rest = text.as_str();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("**") {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = r;
        } else if let Some(r) = rest.strip_prefix('`') {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = r;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</strong>");
    }
    out
}

pub fn html(r: &Report) -> String {
    let title = format!("DR report: {}", esc(&r.service.scope));
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}}\
         .violated{{background:#fdd}}.met{{background:#dfd}}.unknown{{background:#eee}}\
         pre{{background:#f4f4f4;padding:8px}}</style></head><body>\n<h1>{title}</h1>\n\
         <p>Generated {} UTC by wardenctl dr-report from the DCS and the repository.</p>\n",
        r.generated_at.format("%Y-%m-%d %H:%M:%S")
    );
    for s in sections(r) {
        let _ = writeln!(out, "<h2>{}</h2>", esc(&s.title));
        for b in s.blocks {
            match b {
                Block::Para(p) => {
                    let _ = writeln!(out, "<p>{}</p>", inline(&p));
                }
                Block::Table(t) => {
                    let verdicts = t.header.contains(&"Verdict");
                    out.push_str("<table><tr>");
                    for h in &t.header {
                        let _ = write!(out, "<th>{}</th>", esc(h));
                    }
                    out.push_str("</tr>\n");
                    for row in t.rows {
                        let class = if verdicts {
                            format!(" class=\"{}\"", esc(&row[3].to_lowercase()))
                        } else {
                            String::new()
                        };
                        let _ = write!(out, "<tr{class}>");
                        for c in row {
                            let _ = write!(out, "<td>{}</td>", esc(&c));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</table>\n");
                }
                Block::Code(lines) => {
                    let _ = writeln!(out, "<pre>{}</pre>", esc(&lines.join("\n")));
                }
            }
        }
    }
    out.push_str("</body></html>\n");
    out
}
