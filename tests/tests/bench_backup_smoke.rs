//! The backup throughput benchmark (`warden-bench-backup`) at a small scale, as CI's
//! smoke test: it runs plain pg_basebackup, a Warden backup and a pgBackRest backup
//! of the same replica, restores both, and prints every figure. Nothing is asserted
//! on speed (a debug build on a shared 2-core machine measures nothing useful); what
//! is asserted is that each tool ran to the end and its figure was printed, so the
//! benchmark the docs quote keeps working.

use std::process::Command;
use std::time::Instant;

#[test]
fn backup_benchmark_runs_every_tool_at_small_scale() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_warden-bench-backup"))
        .args(["--scale", "2", "--rounds", "1", "--compression-level", "1"])
        .output()
        .expect("running warden-bench-backup");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "warden-bench-backup failed ({}): {stderr}",
        out.status
    );
    for figure in [
        "round 1: pg_basebackup -D - -Ft -X none > counter:",
        "round 1: Warden backup (sealed into the repository):",
        "round 1: pgBackRest backup --backup-standby:",
        "round 1: restore: Warden",
        "round 1: restore: pgBackRest",
        "| Warden (end to end) |",
        "| pgBackRest --backup-standby |",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(figure))
            .unwrap_or_else(|| panic!("no {figure:?} line in the benchmark's output"));
        assert!(
            line.contains("MiB/s") || line.starts_with('|'),
            "{figure:?} line has no rate: {line}"
        );
        // A figure is a number: "NaN" or "inf" would mean a zero-length run.
        assert!(
            !line.contains("NaN") && !line.contains("inf"),
            "{figure:?} line has no real figure: {line}"
        );
    }
    println!(
        "benchmark smoke run took {:.0}s",
        started.elapsed().as_secs_f64()
    );
}
