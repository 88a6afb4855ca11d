//! `warden-chaos`: attack a local Warden cluster and print a verdict.
//!
//! Exit status: 0 PASS, 1 FAIL (also when the harness itself could not run),
//! 2 bad usage. See chaos/README.md.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use warden_chaos::cli::Options;
use warden_chaos::events::{secs, EventLog};
use warden_chaos::schedule::{Order, Schedule};
use warden_chaos::{report, run};

/// The command line that replays `o`'s schedule.
fn replay(o: &Options) -> String {
    let redis = if o.redis { " --redis" } else { "" };
    let mut a = Vec::new();
    if o.smoke {
        // The seed and faults are fixed; the mode flags still apply.
        a.push(format!("warden-chaos{redis} --smoke"));
    } else {
        a.push(format!("warden-chaos{redis} --seed {}", o.seed));
        if let Order::Listed(k) = &o.order {
            let names: Vec<&str> = k.iter().map(|k| k.name()).collect();
            a.push(format!("--faults {}", names.join(",")));
        }
        if let Some(d) = o.duration {
            a.push(format!("--duration {}", d.as_secs()));
        }
    }
    for (on, flag) in [
        (o.sync_strict, "--sync-strict"),
        (o.sync_quorum, "--sync-quorum"),
        (o.sync && !o.sync_strict && !o.sync_quorum, "--sync"),
        (o.failsafe, "--failsafe"),
        (o.require_no_loss, "--require-no-loss"),
        (o.unsafe_test, "--unsafe-test-rogue-primary"),
    ] {
        if on {
            a.push(flag.into());
        }
    }
    a.push(format!(
        "--converge-timeout {}",
        o.converge_timeout.as_secs()
    ));
    a.join(" ")
}

fn print_schedule(o: &Options) {
    let (n, note) = match (&o.order, o.duration) {
        (Order::Listed(k), None) => (k.len(), String::new()),
        (_, Some(d)) => (
            usize::try_from(d.as_secs() / 20)
                .unwrap_or(usize::MAX)
                .clamp(1, 50)
                + 2,
            format!(
                " (first steps; the sequence continues until {} s of workload)",
                d.as_secs()
            ),
        ),
        (Order::Random(_), None) => (10, String::new()),
    };
    println!("schedule (seed {}){note}:", o.seed);
    for s in Schedule::first(o.seed, o.order.clone(), n) {
        println!("  {s}");
    }
}

/// `--recheck`: the checker and the report on a stored event log.
fn recheck(events: &Path, opts: &Options) -> ExitCode {
    let log: EventLog = match std::fs::read_to_string(events)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warden-chaos: error: --recheck {}: {e}", events.display());
            return ExitCode::from(2);
        }
    };
    let replay = log.info.as_ref().map_or_else(String::new, |i| {
        let redis = if i.redis { " --redis" } else { "" };
        format!("warden-chaos{redis} --seed {} ...", i.seed)
    });
    finish(&log, &report::build(&log, &replay), opts)
}

/// Print the per-kind timings and notes, write the outputs, print the
/// verdict; the exit status.
fn finish(log: &EventLog, report: &report::Report, opts: &Options) -> ExitCode {
    for k in &report.checks.per_kind {
        println!(
            "  {:<20} x{}: failover median {} max {}; write gap median {} max {}",
            k.kind.name(),
            k.injected,
            k.failover.median.map_or_else(|| "-".into(), secs),
            k.failover.max.map_or_else(|| "-".into(), secs),
            k.write_gap.median.map_or_else(|| "-".into(), secs),
            k.write_gap.max.map_or_else(|| "-".into(), secs),
        );
    }
    for n in &report.verdict.notes {
        println!("note: {n}");
    }
    let written = report::write_all(&opts.out, log, report);
    match &written {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
        }
        Err(e) => eprintln!("warden-chaos: error: writing the report: {e:#}"),
    }
    println!("{}", report.verdict_line);
    if report.verdict.pass && written.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let opts = match Options::parse_from(std::env::args_os()) {
        Ok(o) => o,
        // Usage errors exit with 2, --help and --version with 0.
        Err(e) => e.exit(),
    };
    if opts.dry_run {
        println!("warden-chaos: {}", replay(&opts));
        print_schedule(&opts);
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(&opts.out) {
        eprintln!(
            "warden-chaos: error: cannot create --out {}: {e}",
            opts.out.display()
        );
        return ExitCode::from(2);
    }
    if let Some(events) = &opts.recheck {
        return recheck(events, &opts);
    }
    let start = Instant::now();
    // Our children get their own process groups: Ctrl-C reaches only us, and
    // we end the run in order (heal, converge, check, report, stop).
    warden_tests::process::detach_process_groups();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("warden-chaos: cannot handle signal {sig}: {e}");
        }
    }
    println!("warden-chaos: {}", replay(&opts));
    println!("output: {}", opts.out.display());
    print_schedule(&opts);

    let log = run::run(&opts, &stop, start);
    let report = report::build(&log, &replay(&opts));
    println!("took {:.1} s", start.elapsed().as_secs_f64());
    finish(&log, &report, &opts)
}
