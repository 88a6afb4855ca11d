//! `timeline.svg`: the run on one time axis, written by hand (no plotting
//! dependency). One lane per node shows when it answered 200 on `/primary`
//! (green), 503 (pale) or nothing in time (grey), and under it the runs of
//! direct writes it accepted (blue). A writes lane shows the gaps between
//! acknowledged writes through HAProxy (red, longer than [`GAP_SHOWN_US`]).
//! Faults are orange bands from injection to heal with a numbered marker;
//! violations are red bands across the lanes of the nodes involved.

use std::fmt::Write as _;

use crate::checker::Checks;
use crate::events::{EventLog, Us};

/// Gaps between acknowledged writes shorter than this are not drawn.
pub const GAP_SHOWN_US: Us = 300_000;
/// Narrowest timeline; longer runs get [`PX_PER_SECOND`], up to [`MAX_WIDTH`].
const MIN_WIDTH: f64 = 1200.0;
const MAX_WIDTH: f64 = 16_000.0;
/// So that a 30-minute run's faults stay apart (the viewer scrolls).
const PX_PER_SECOND: f64 = 4.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;
const LANE: f64 = 44.0;
const LANE_GAP: f64 = 10.0;

/// Escape text for an SVG text node or attribute.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Scale {
    end: Us,
    width: f64,
}

impl Scale {
    fn new(end: Us) -> Scale {
        let width = (LEFT + RIGHT + PX_PER_SECOND * end as f64 / 1e6).clamp(MIN_WIDTH, MAX_WIDTH);
        Scale { end, width }
    }

    /// Width of the plotting area.
    fn plot(&self) -> f64 {
        self.width - LEFT - RIGHT
    }

    fn x(&self, t: Us) -> f64 {
        let w = self.plot();
        LEFT + w * (t.min(self.end) as f64 / self.end.max(1) as f64)
    }

    fn w(&self, from: Us, to: Us) -> f64 {
        (self.x(to) - self.x(from)).max(1.0)
    }
}

/// A tick step giving at most about `max_ticks` ticks.
fn tick_step(end: Us, max_ticks: u64) -> Us {
    let secs = end / 1_000_000;
    [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]
        .into_iter()
        .find(|s| secs / s <= max_ticks)
        .unwrap_or(7200)
        * 1_000_000
}

/// The timeline of `log`.
pub fn timeline(log: &EventLog, checks: &Checks) -> String {
    let end = log
        .ended
        .max(log.writes.last().map_or(0, |w| w.acked))
        .max(1_000_000);
    let sc = Scale::new(end);
    let width = sc.width;
    let n = log.nodes.len();
    let writes_y = TOP + n as f64 * (LANE + LANE_GAP);
    let axis_y = writes_y + 30.0 + LANE_GAP;
    let height = axis_y + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height}" viewBox="0 0 {width:.0} {height}" font-family="sans-serif" font-size="11" shape-rendering="crispEdges">"#
    );
    let title = match &log.info {
        Some(i) => format!("Warden chaos run, seed {}", i.seed),
        None => "Warden chaos run".into(),
    };
    let _ = writeln!(s, r#"<title>{}</title>"#, esc(&title));
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width:.0}" height="{height}" fill="white"/>"#
    );
    legend(&mut s);
    for (i, node) in log.nodes.iter().enumerate() {
        let y = TOP + i as f64 * (LANE + LANE_GAP);
        node_lane(&mut s, log, checks, &sc, i, &node.name, y);
    }
    writes_lane(&mut s, log, &sc, writes_y);
    faults(&mut s, log, &sc, TOP - 6.0, axis_y);
    violations(&mut s, log, checks, &sc);
    axis(&mut s, &sc, axis_y);
    s.push_str("</svg>\n");
    s
}

fn legend(s: &mut String) {
    let items = [
        ("#2e9e44", "/primary 200"),
        ("#e8e8e8", "/primary 503"),
        ("#9a9a9a", "no answer"),
        ("#2a6fdb", "direct writes accepted"),
        ("#d62728", "write gap (HAProxy) / violation"),
        ("#ff9f1c", "fault (injected to healed)"),
    ];
    let mut x = LEFT;
    for (color, label) in items {
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="12" width="12" height="12" fill="{color}"/><text x="{:.1}" y="22">{}</text>"#,
            x + 16.0,
            esc(label)
        );
        x += 24.0 + 7.0 * label.len() as f64;
    }
}

fn node_lane(
    s: &mut String,
    log: &EventLog,
    checks: &Checks,
    sc: &Scale,
    i: usize,
    name: &str,
    y: f64,
) {
    let round = log.round_ms * 1000;
    let _ = writeln!(s, r#"<g id="lane-{}">"#, esc(name));
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{y:.1}" width="{:.1}" height="{LANE}" fill="#fafafa" stroke="#cccccc"/>"##,
        sc.plot()
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="{:.1}" font-size="13">{}</text>"#,
        y + LANE / 2.0 + 4.0,
        esc(name)
    );
    let band = LANE - 14.0;
    let mut spans: Vec<_> = log.primary.iter().filter(|sp| sp.node == i).collect();
    spans.sort_by_key(|sp| sp.first_round);
    for (k, sp) in spans.iter().enumerate() {
        let color = match sp.status {
            Some(200) => "#2e9e44",
            Some(_) => "#e8e8e8",
            None => "#9a9a9a",
        };
        let (from, mut to) = (sp.first_round * round, (sp.last_round + 1) * round);
        // Rounds skipped while a poll waited for its timeout: the answer
        // stands until the next sample, if that came within a second.
        if let Some(next) = spans.get(k + 1) {
            let next_from = next.first_round * round;
            if next_from > to && next_from - to <= 1_000_000 {
                to = next_from;
            }
        }
        let _ = writeln!(
            s,
            r#"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="{band:.1}" fill="{color}"><title>{} {}: {} to {}</title></rect>"#,
            sc.x(from),
            y + 2.0,
            sc.w(from, to),
            esc(name),
            sp.status
                .map_or_else(|| "no answer".into(), |c| c.to_string()),
            crate::events::secs(from),
            crate::events::secs(to)
        );
    }
    for r in checks.split_brain.runs.iter().filter(|r| r.node == i) {
        let _ = writeln!(
            s,
            r##"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="8" fill="#2a6fdb"><title>{} accepted {} direct writes</title></rect>"##,
            sc.x(r.first_sent),
            y + LANE - 10.0,
            sc.w(r.first_sent, r.last_acked),
            esc(name),
            r.acks
        );
    }
    s.push_str("</g>\n");
}

fn writes_lane(s: &mut String, log: &EventLog, sc: &Scale, y: f64) {
    let _ = writeln!(s, r#"<g id="lane-writes">"#);
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{y:.1}" width="{:.1}" height="30" fill="#fafafa" stroke="#cccccc"/><text x="10" y="{:.1}" font-size="13">writes</text>"##,
        sc.plot(),
        y + 19.0
    );
    let mut acks: Vec<Us> = log.writes.iter().map(|w| w.acked).collect();
    acks.sort_unstable();
    if let (Some(&first), Some(&last)) = (acks.first(), acks.last()) {
        let _ = writeln!(
            s,
            r##"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="4" fill="#2e9e44"/>"##,
            sc.x(first),
            y + 13.0,
            sc.w(first, last)
        );
    }
    for w in acks.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b - a >= GAP_SHOWN_US {
            let _ = writeln!(
                s,
                r##"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="22" fill="#d62728"><title>no write acknowledged for {} from {}</title></rect>"##,
                sc.x(a),
                y + 4.0,
                sc.w(a, b),
                crate::events::secs(b - a),
                crate::events::secs(a)
            );
        }
    }
    s.push_str("</g>\n");
}

fn faults(s: &mut String, log: &EventLog, sc: &Scale, top: f64, bottom: f64) {
    let _ = writeln!(s, r#"<g id="faults">"#);
    for f in &log.faults {
        let healed = f.healed.unwrap_or(f.injected).max(f.injected);
        let x = sc.x(f.injected);
        let _ = writeln!(
            s,
            r##"<rect x="{x:.2}" y="{top:.1}" width="{:.2}" height="{:.1}" fill="#ff9f1c" fill-opacity="0.25"/><line x1="{x:.2}" y1="{top:.1}" x2="{x:.2}" y2="{bottom:.1}" stroke="#ff7f0e" stroke-dasharray="4,3"/><text x="{:.2}" y="{:.1}" fill="#b35900">{}<title>step {}: {} on {} at {}</title></text>"##,
            sc.w(f.injected, healed),
            bottom - top,
            x + 2.0,
            top - 2.0,
            f.step,
            f.step,
            f.kind,
            esc(&f.target),
            crate::events::secs(f.injected)
        );
    }
    s.push_str("</g>\n");
}

fn violations(s: &mut String, log: &EventLog, checks: &Checks, sc: &Scale) {
    let lane_y = |n: usize| TOP + n as f64 * (LANE + LANE_GAP);
    let _ = writeln!(s, r#"<g id="violations">"#);
    let round = log.round_ms * 1000;
    let mut mark = |a: usize, b: usize, from: Us, to: Us, what: &str| {
        for n in [a, b] {
            let _ = writeln!(
                s,
                r##"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="{LANE}" fill="#d62728" fill-opacity="0.45" stroke="#d62728"><title>{}</title></rect>"##,
                sc.x(from),
                lane_y(n),
                sc.w(from, to).max(3.0),
                esc(what)
            );
        }
    };
    for o in &checks.split_brain.overlaps {
        mark(
            o.a,
            o.b,
            o.from,
            o.to,
            &format!("split brain: {}", o.evidence),
        );
    }
    for v in &checks.two_primaries.violations {
        mark(
            v.a,
            v.b,
            v.first_round * round,
            (v.last_round + 1) * round,
            "two nodes answered 200 on /primary in the same round",
        );
    }
    s.push_str("</g>\n");
}

fn axis(s: &mut String, sc: &Scale, y: f64) {
    let _ = writeln!(s, r#"<g id="axis">"#);
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="black"/>"#,
        sc.width - RIGHT
    );
    // A label every 80 px at most.
    let step = tick_step(sc.end, (sc.plot() / 80.0) as u64);
    let mut t = 0;
    while t <= sc.end {
        let x = sc.x(t);
        let _ = writeln!(
            s,
            r#"<line x1="{x:.2}" y1="{y:.1}" x2="{x:.2}" y2="{:.1}" stroke="black"/><text x="{x:.2}" y="{:.1}" text-anchor="middle">{} s</text>"#,
            y + 5.0,
            y + 18.0,
            t / 1_000_000
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since the workload started</text>"#,
        LEFT + sc.plot() / 2.0,
        y + 34.0
    );
    s.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{self, Rules};
    use crate::report::tests::sample_log;

    /// Every element opened is closed, in order (what an SVG viewer needs
    /// from us; the attribute syntax is fixed strings).
    fn assert_balanced(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let end = rest.find('>').expect("unterminated tag");
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap_or("").to_string();
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }

    #[test]
    fn the_timeline_is_an_svg_with_a_lane_per_node_and_the_fault() {
        let log = sample_log();
        let checks = checker::check(&log, &Rules::for_log(&log));
        let svg = timeline(&log, &checks);
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_balanced(&svg);
        for lane in ["lane-node1", "lane-node2", "lane-node3", "lane-writes"] {
            assert!(svg.contains(&format!("id=\"{lane}\"")), "{lane} missing");
        }
        // node1 primary 0-2 s, node2 from 3 s; node1 silent 2.0-2.5 s.
        assert!(svg.contains("node1 200: 0.000 s to 2.000 s"), "{svg}");
        assert!(svg.contains("node2 200: 3.000 s to 6.000 s"), "{svg}");
        assert!(svg.contains("node1 no answer: 2.000 s to 2.500 s"), "{svg}");
        // The fault, its escaped target, and the write gap around it.
        assert!(
            svg.contains(
                "step 1: kill-primary on node1 (primary) -&gt; &lt;x&gt; &amp; &quot;y&quot;"
            ),
            "{svg}"
        );
        assert!(
            svg.contains("no write acknowledged for 1.100 s from 1.901 s"),
            "{svg}"
        );
        assert!(!svg.contains("split brain"), "no violation in a clean run");
    }

    #[test]
    fn violations_are_drawn() {
        let mut log = sample_log();
        log.probes.push(crate::events::ProbeAck {
            node: 2,
            id: 99_999,
            sent: 500_000,
            acked: 510_000,
        });
        let checks = checker::check(&log, &Rules::for_log(&log));
        assert!(!checks.split_brain.ok);
        let svg = timeline(&log, &checks);
        assert_balanced(&svg);
        assert!(
            svg.contains("split brain: node3 acknowledged a direct write"),
            "{svg}"
        );
    }

    #[test]
    fn ticks_stay_readable() {
        assert_eq!(tick_step(10_000_000, 13), 1_000_000);
        assert_eq!(tick_step(100_000_000, 13), 10_000_000);
        assert_eq!(tick_step(1_800_000_000, 15), 120_000_000);
        assert_eq!(tick_step(1_800_000_000, 90), 30_000_000);
        assert_eq!(tick_step(3_600_000_000, 15), 300_000_000);
        // 4 px per second; a minute gets the minimum width.
        assert_eq!(Scale::new(1_800_000_000).width, 7340.0);
        assert_eq!(Scale::new(600_000_000).width, 2540.0);
        assert_eq!(Scale::new(60_000_000).width, MIN_WIDTH);
        assert_eq!(esc("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
