//! `wardenctl dr-report`: the disaster-recovery plan of one cluster, generated from
//! what is live — the members in the DCS and the catalog in the repository — rather
//! than written by hand: the service and its objectives (`backup.objectives`), the
//! backup schedule, the measured facts with their timestamps, a verdict per objective
//! (the pure `warden_backup::objectives::judge` the daemon's gauges use too), and the
//! recovery procedures with this cluster's exact commands.
//!
//! Exit status: 0 when no objective is violated (unknown does not fail), 3 when one
//! is ([`Violated`]), 1 when the report cannot be made (DCS or repository
//! unreachable), 2 bad usage. It is meant for cron and CI.

mod gather;
mod render;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::Ctl;

pub use gather::{Fact, Procedure, Report, ScheduleRow, Service};

/// The exit status of a report with a violated objective.
pub const EXIT_VIOLATED: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    #[default]
    Markdown,
    Json,
    Html,
}

#[derive(Debug, Args)]
pub struct DrReportArgs {
    /// The cluster (default: the config's scope).
    pub cluster_name: Option<String>,
    /// markdown (default), json or html.
    #[arg(long = "format", short = 'f', value_enum, default_value_t = Format::Markdown)]
    pub format: Format,
}

/// A report was printed and at least one objective is violated.
#[derive(Debug, thiserror::Error)]
#[error("{} objective(s) violated: {}", .0.len(), .0.join("; "))]
pub struct Violated(pub Vec<String>);

impl Ctl<'_> {
    /// `dr-report`: gathers, prints, and fails with [`Violated`] when an objective is.
    pub async fn dr_report(&mut self, a: DrReportArgs) -> Result<()> {
        let report = self.gather_report(a.cluster_name.as_deref()).await?;
        let text = match a.format {
            Format::Markdown => render::markdown(&report),
            Format::Html => render::html(&report),
            Format::Json => serde_json::to_string_pretty(&report)?,
        };
        self.io.println(text.trim_end())?;
        let violated: Vec<String> = report
            .verdicts
            .iter()
            .filter(|v| v.status == warden_backup::objectives::Status::Violated)
            .map(|v| format!("{}: {}", v.objective.as_str(), v.reason))
            .collect();
        if violated.is_empty() {
            Ok(())
        } else {
            Err(Violated(violated).into())
        }
    }
}

#[cfg(test)]
mod tests;
