//! The run's trace: the world's own lines (faults, promotions, fencing) and the agents'
//! log lines (the loop's `tracing` events at INFO and above, each under its node's
//! span), stamped with simulated time. Only the last lines are kept unless the whole
//! trace is wanted (a single seed).

use super::TRACE_SHOWN;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer as _;

#[derive(Debug, Default)]
struct Buf {
    lines: VecDeque<String>,
    full: bool,
    /// After the first violated invariant, nothing more is recorded.
    frozen: bool,
    origin: Option<tokio::time::Instant>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Trace(Arc<Mutex<Buf>>);

impl Trace {
    pub(crate) fn new(full: bool) -> Self {
        Self(Arc::new(Mutex::new(Buf {
            full,
            ..Buf::default()
        })))
    }

    fn buf(&self) -> std::sync::MutexGuard<'_, Buf> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn start(&self, origin: tokio::time::Instant) {
        self.buf().origin = Some(origin);
    }

    pub(crate) fn push(&self, who: &str, mut msg: String) {
        let mut b = self.buf();
        if b.frozen {
            return;
        }
        let at = b.origin.map_or(0.0, |o| {
            tokio::time::Instant::now().duration_since(o).as_secs_f64()
        });
        msg.insert_str(0, &format!("{at:>9.3}s {who}: "));
        b.lines.push_back(msg);
        if !b.full && b.lines.len() > TRACE_SHOWN {
            b.lines.pop_front();
        }
    }

    pub(crate) fn freeze(&self) {
        self.buf().frozen = true;
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.buf().lines.iter().cloned().collect()
    }
}

/// Collects an event's message and fields as `message k=v ...`.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// Writes the agents' log events into the trace, under the name of their node's span.
struct Layer(Trace);

impl<S> tracing_subscriber::Layer<S> for Layer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let who = ctx
            .event_scope(event)
            .and_then(|scope| scope.from_root().next().map(|s| s.name()))
            .unwrap_or("--");
        if who == QUIET {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let level = event.metadata().level();
        let msg = if *level == tracing::Level::INFO {
            line.0
        } else {
            format!("{level}: {}", line.0)
        };
        self.0.push(who, msg);
    }
}

/// Routes this thread's `tracing` events (INFO and above) into `trace` until the guard
/// is dropped.
pub(crate) fn install(trace: &Trace) -> tracing::subscriber::DefaultGuard {
    let layer = Layer(trace.clone()).with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    tracing::subscriber::set_default(tracing_subscriber::registry().with(layer))
}

/// The span of node `n`'s agent process: its log lines carry the node's name.
pub(crate) fn span(n: usize) -> tracing::Span {
    match n {
        0 => tracing::info_span!("n1"),
        1 => tracing::info_span!("n2"),
        _ => tracing::info_span!("n3"),
    }
}

const QUIET: &str = "quiet";

/// Runs `f` with its log lines left out of the trace.
pub(crate) fn quiet<T>(f: impl FnOnce() -> T) -> T {
    tracing::info_span!("quiet").in_scope(f)
}
