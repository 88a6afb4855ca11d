//! The binary's command line: bad usage exits 2 with a message that names the
//! problem, before anything is started; `--help` lists every fault.

use std::process::Command;
use std::time::Duration;

use warden_tests::process::run_bounded;

fn chaos(args: &[&str]) -> warden_tests::process::RunOutput {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden-chaos"));
    cmd.args(args).arg("--out").arg(out.path().join("o"));
    run_bounded(&mut cmd, Duration::from_secs(30)).unwrap()
}

#[test]
fn bad_usage_exits_2_and_says_why() {
    let cases: &[(&[&str], &str)] = &[
        (&["--seed", "x"], "--seed"),
        (&["--duration", "0"], "--duration"),
        (
            &["--faults", "kill-primary,unplug-everything"],
            "unplug-everything",
        ),
        (
            &["--faults", "rogue-promote"],
            "--unsafe-test-rogue-primary",
        ),
        (&["--unsafe-test-rogue-primary"], "rogue-promote"),
        (&["--smoke", "--faults", "switchover"], "--faults"),
        (&["--converge-timeout", "5"], "--converge-timeout"),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        let r = chaos(args);
        assert_eq!(r.code(), Some(2), "{args:?}: {}", r.describe());
        assert!(
            r.stderr.contains(needle),
            "{args:?}: stderr does not name {needle:?}: {}",
            r.describe()
        );
        assert!(
            !r.stdout.contains("VERDICT"),
            "{args:?} ran: {}",
            r.describe()
        );
    }
}

#[test]
fn an_unusable_out_dir_is_a_usage_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden-chaos"));
    cmd.args(["--smoke", "--out"]).arg(file.path().join("sub"));
    let r = run_bounded(&mut cmd, Duration::from_secs(30)).unwrap();
    assert_eq!(r.code(), Some(2), "{}", r.describe());
    assert!(r.stderr.contains("cannot create --out"), "{}", r.describe());
}

#[test]
fn help_lists_the_faults_and_exits_0() {
    let r = chaos(&["--help"]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    for f in [
        "kill-primary",
        "kill-postgres",
        "freeze-agent",
        "freeze-postgres",
        "partition-primary",
        "kill-etcd-member",
        "kill-etcd-leader",
        "etcd-outage",
        "kill-replica",
        "repeated-failovers",
        "switchover",
        "rogue-promote",
        "--unsafe-test-rogue-primary",
    ] {
        assert!(r.stdout.contains(f), "--help lacks {f}: {}", r.describe());
    }
}

/// The schedule depends only on the seed: two processes print the same one,
/// another seed prints another, and nothing is started.
#[test]
fn dry_run_prints_the_same_schedule_for_the_same_seed() {
    let a = chaos(&["--dry-run", "--seed", "77", "--duration", "600"]);
    let b = chaos(&["--dry-run", "--seed", "77", "--duration", "600"]);
    let c = chaos(&["--dry-run", "--seed", "78", "--duration", "600"]);
    for r in [&a, &b, &c] {
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert!(!r.stdout.contains("starting"), "{}", r.describe());
    }
    assert!(a.stdout.contains("step 1: "), "{}", a.describe());
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(
        a.stdout.replace("77", "78"),
        c.stdout,
        "seeds 77 and 78 gave the same steps"
    );
    let smoke = chaos(&["--smoke", "--dry-run"]);
    assert_eq!(smoke.code(), Some(0), "{}", smoke.describe());
    for kind in [
        "kill-primary",
        "partition-primary",
        "kill-etcd-leader",
        "switchover",
    ] {
        assert!(smoke.stdout.contains(kind), "{}", smoke.describe());
    }
}
