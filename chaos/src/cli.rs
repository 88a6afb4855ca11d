//! The command line. Every bad flag is a usage error (exit code 2) that says
//! what is wrong; nothing starts before the whole command line is valid.

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::fault::{FaultKind, ALL_KINDS, SAFE_KINDS};
use crate::schedule::Order;

/// The fixed seed of `--smoke`: it holds the primary kill (15.6 s) and the
/// partition (16.5 s) past the lease ttl, so both end in a failover.
pub const SMOKE_SEED: u64 = 14;
/// The faults of `--smoke`: a primary kill, a partition, an etcd leader loss
/// and a switchover, once each.
pub const SMOKE_FAULTS: &[FaultKind] = &[
    FaultKind::KillPrimary,
    FaultKind::PartitionPrimary,
    FaultKind::KillEtcdLeader,
    FaultKind::Switchover,
];
/// Random runs without `--duration`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);

#[derive(Debug, Parser)]
#[command(
    name = "warden-chaos",
    about = "Attack a local Warden cluster (3 etcd members, 3 PostgreSQL or Redis nodes with \
             agents, HAProxy) with faults under a write workload, and check that no acknowledged write \
             is lost, no two nodes accept writes at once, and the cluster converges.",
    after_help = fault_help(),
    version
)]
struct Args {
    /// Seed of the fault schedule (kinds, targets by role, timings); the same
    /// seed replays the same schedule. Default: a fresh one, printed.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Start no new fault after SECS seconds of workload. Default: 300 for a
    /// random schedule; with --faults, each named fault runs once.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: Option<u64>,
    /// Comma-separated faults to inject in this order (repeated until
    /// --duration, if given) instead of a random schedule.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_kind)]
    faults: Option<Vec<FaultKind>>,
    /// The short fixed run CI uses: a primary kill, a partition, an etcd leader
    /// kill and a switchover, with a fixed seed.
    #[arg(long, conflicts_with_all = ["seed", "faults", "duration"])]
    smoke: bool,
    /// `synchronous_mode: on` in every node's bootstrap.dcs; lost acknowledged
    /// writes then fail the run.
    #[arg(long)]
    sync: bool,
    /// Also `synchronous_mode_strict: true` (implies --sync).
    #[arg(long)]
    sync_strict: bool,
    /// `synchronous_mode: quorum` instead of `on` (implies --sync): any
    /// `synchronous_node_count` standbys acknowledge each commit.
    #[arg(long)]
    sync_quorum: bool,
    /// `failsafe_mode: true` in bootstrap.dcs (matters for etcd-outage).
    #[arg(long)]
    failsafe: bool,
    /// Fail the run on lost acknowledged writes in asynchronous mode too.
    #[arg(long)]
    require_no_loss: bool,
    /// Redis members instead of PostgreSQL: the same faults and checks, with
    /// `SET` through HAProxy and on every node's redis port (with --sync, a
    /// write counts only once `WAIT 1` confirms it).
    #[arg(long)]
    redis: bool,
    /// Directory for the report. Default: /tmp/warden-chaos-<UTC time>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Bound on convergence after each fault and at the end.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(10..=3600))]
    converge_timeout: u64,
    /// Print the schedule and exit without starting anything.
    #[arg(long, conflicts_with = "recheck")]
    dry_run: bool,
    /// Check an earlier run's events.json again and write its report into
    /// --out, without starting anything.
    #[arg(long, value_name = "EVENTS_JSON", conflicts_with_all = [
        "seed", "duration", "faults", "smoke", "sync", "sync_strict", "sync_quorum", "failsafe",
        "require_no_loss", "unsafe_test_rogue_primary", "redis",
    ])]
    recheck: Option<PathBuf>,
    /// TEST-ONLY, UNSAFE: allow the `rogue-promote` fault, which promotes a
    /// replica behind the agents' back so that two nodes accept writes. It
    /// exists to prove that the checker fails; a run with it must FAIL.
    #[arg(long)]
    unsafe_test_rogue_primary: bool,
}

fn parse_kind(s: &str) -> Result<FaultKind, String> {
    s.trim()
        .parse()
        .map_err(|e: crate::fault::UnknownFault| e.to_string())
}

fn fault_help() -> String {
    let mut s = String::from("Faults (--faults):\n");
    for k in ALL_KINDS {
        s.push_str(&format!("  {:<20} {}\n", k.name(), k.describe()));
    }
    s.push_str(
        "\nExit status: 0 PASS, 1 FAIL (or the harness could not run), 2 bad usage.\n\
         Outputs in --out: report.json, summary.md, timeline.svg, events.json, logs/.",
    );
    s
}

/// A valid command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub seed: u64,
    pub order: Order,
    /// `None`: run each listed fault once.
    pub duration: Option<Duration>,
    pub sync: bool,
    pub sync_strict: bool,
    pub sync_quorum: bool,
    pub failsafe: bool,
    pub require_no_loss: bool,
    /// Redis members instead of PostgreSQL.
    pub redis: bool,
    pub out: PathBuf,
    pub converge_timeout: Duration,
    pub unsafe_test: bool,
    pub smoke: bool,
    /// Re-check this events.json instead of running.
    pub recheck: Option<PathBuf>,
    /// Only print the schedule.
    pub dry_run: bool,
}

impl Options {
    /// Parse and validate; the error prints itself (usage, exit code 2; or
    /// the help text, exit code 0) with [`clap::Error::exit`].
    pub fn parse_from<I, T>(args: I) -> Result<Options, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let a = Args::try_parse_from(args)?;
        let usage = |msg: String| Args::command().error(ErrorKind::ArgumentConflict, msg);
        if let Some(f) = &a.faults {
            if f.is_empty() {
                return Err(usage("--faults needs at least one fault".into()));
            }
            if f.iter().any(|k| k.is_unsafe()) && !a.unsafe_test_rogue_primary {
                return Err(usage(
                    "the rogue-promote fault deliberately breaks the cluster; it needs \
                     --unsafe-test-rogue-primary (test-only)"
                        .into(),
                ));
            }
        }
        if a.unsafe_test_rogue_primary
            && !a
                .faults
                .as_ref()
                .is_some_and(|f| f.contains(&FaultKind::RoguePromote))
        {
            return Err(usage(
                "--unsafe-test-rogue-primary only makes sense with --faults including rogue-promote"
                    .into(),
            ));
        }
        let (seed, order, duration) = if a.smoke {
            (SMOKE_SEED, Order::Listed(SMOKE_FAULTS.to_vec()), None)
        } else {
            let seed = a.seed.unwrap_or_else(fresh_seed);
            let duration = a.duration.map(Duration::from_secs);
            match a.faults {
                Some(f) => (seed, Order::Listed(f), duration),
                None => (
                    seed,
                    Order::Random(SAFE_KINDS.to_vec()),
                    Some(duration.unwrap_or(DEFAULT_DURATION)),
                ),
            }
        };
        Ok(Options {
            seed,
            order,
            duration,
            sync: a.sync || a.sync_strict || a.sync_quorum,
            sync_strict: a.sync_strict,
            sync_quorum: a.sync_quorum,
            failsafe: a.failsafe,
            require_no_loss: a.require_no_loss,
            redis: a.redis,
            out: a.out.unwrap_or_else(default_out),
            converge_timeout: Duration::from_secs(a.converge_timeout),
            unsafe_test: a.unsafe_test_rogue_primary,
            smoke: a.smoke,
            recheck: a.recheck,
            dry_run: a.dry_run,
        })
    }
}

/// A seed from the clock and the pid, for runs without `--seed`.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Small numbers are easier to type back in.
    (nanos ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000_000
}

fn default_out() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    PathBuf::from(format!("/tmp/warden-chaos-{stamp}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::parse_from(std::iter::once("warden-chaos").chain(args.iter().copied()))
    }

    fn usage_error(args: &[&str]) -> String {
        let e = parse(args).expect_err("expected a usage error");
        assert_eq!(e.exit_code(), 2, "{e}");
        e.to_string()
    }

    #[test]
    fn defaults_are_a_random_five_minute_run() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.order, Order::Random(SAFE_KINDS.to_vec()));
        assert_eq!(o.duration, Some(DEFAULT_DURATION));
        assert_eq!(o.converge_timeout, Duration::from_secs(120));
        assert!(!o.sync && !o.failsafe && !o.unsafe_test && !o.smoke && !o.redis);
        assert!(o.out.starts_with("/tmp"), "{:?}", o.out);
    }

    #[test]
    fn flags_set_what_they_say() {
        let o = parse(&[
            "--seed",
            "7",
            "--faults",
            "kill-primary,switchover",
            "--duration",
            "60",
            "--sync-strict",
            "--failsafe",
            "--require-no-loss",
            "--out",
            "/tmp/x",
            "--converge-timeout",
            "30",
        ])
        .unwrap();
        assert_eq!(o.seed, 7);
        assert_eq!(
            o.order,
            Order::Listed(vec![FaultKind::KillPrimary, FaultKind::Switchover])
        );
        assert_eq!(o.duration, Some(Duration::from_secs(60)));
        assert!(o.sync && o.sync_strict && o.failsafe && o.require_no_loss);
        assert!(!o.sync_quorum);
        let q = parse(&["--sync-quorum", "--out", "/tmp/x"]).unwrap();
        assert!(q.sync && q.sync_quorum && !q.sync_strict);
        assert_eq!(o.out, PathBuf::from("/tmp/x"));
        assert_eq!(o.converge_timeout, Duration::from_secs(30));
        let o = parse(&["--faults", "switchover"]).unwrap();
        assert_eq!(o.duration, None, "named faults run once");
        let r = parse(&["--redis", "--sync", "--seed", "42", "--duration", "300"]).unwrap();
        assert!(r.redis && r.sync && !r.sync_strict);
        assert_eq!(r.duration, Some(Duration::from_secs(300)));
        let s = parse(&["--redis", "--smoke"]).unwrap();
        assert!(s.redis && s.smoke);
    }

    #[test]
    fn smoke_is_fixed() {
        let o = parse(&["--smoke", "--out", "/tmp/s"]).unwrap();
        assert_eq!(o.seed, SMOKE_SEED);
        assert_eq!(o.order, Order::Listed(SMOKE_FAULTS.to_vec()));
        assert_eq!(o.duration, None);
        assert!(o.smoke);
    }

    #[test]
    fn bad_flags_are_usage_errors_that_say_why() {
        assert!(usage_error(&["--seed", "abc"]).contains("--seed"));
        let e = usage_error(&["--faults", "kill-primary,kill-everything"]);
        assert!(
            e.contains("kill-everything") && e.contains("known faults"),
            "{e}"
        );
        assert!(usage_error(&["--duration", "0"]).contains("--duration"));
        assert!(usage_error(&["--converge-timeout", "1"]).contains("--converge-timeout"));
        assert!(usage_error(&["--smoke", "--seed", "1"]).contains("--seed"));
        assert!(usage_error(&["--frobnicate"]).contains("--frobnicate"));
        let e = usage_error(&["--faults", "rogue-promote"]);
        assert!(e.contains("--unsafe-test-rogue-primary"), "{e}");
        let e = usage_error(&["--unsafe-test-rogue-primary"]);
        assert!(e.contains("rogue-promote"), "{e}");
        assert!(usage_error(&["--faults", ""]).contains("fault"));
        assert!(usage_error(&["--recheck", "e.json", "--sync"]).contains("--sync"));
        assert!(usage_error(&["--recheck", "e.json", "--redis"]).contains("--redis"));
    }

    #[test]
    fn the_unsafe_fault_is_allowed_only_with_its_flag() {
        let o = parse(&[
            "--faults",
            "partition-primary,rogue-promote",
            "--unsafe-test-rogue-primary",
        ])
        .unwrap();
        assert!(o.unsafe_test);
    }

    #[test]
    fn help_lists_every_fault() {
        let e = parse(&["--help"]).unwrap_err();
        assert_eq!(e.exit_code(), 0);
        let text = e.to_string();
        for k in ALL_KINDS {
            assert!(text.contains(k.name()), "{k} missing from --help");
        }
    }
}
