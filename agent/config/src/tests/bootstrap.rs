//! The `bootstrap` section: initdb options and the initial dynamic configuration.

use warden_consensus::dynamic_config::SynchronousMode;

use super::fixtures::*;
use crate::*;

#[test]
fn initdb_forms() {
    let with = |items: &str| format!("{MINIMAL}bootstrap:\n  initdb: {items}\n");
    let c = ok(&with(
        "[data-checksums, {encoding: UTF8}, {locale: C, wal-segsize: 64}]",
    ))
    .config;
    let args: Vec<String> = c
        .bootstrap
        .initdb
        .iter()
        .map(InitdbOption::to_arg)
        .collect();
    assert_eq!(
        args,
        vec![
            "--data-checksums",
            "--encoding=UTF8",
            "--locale=C",
            "--wal-segsize=64"
        ]
    );

    let p = problems(&with(
        "[--data-checksums, pgdata: /x, {auth: [a]}, 5, 'a b']",
    ));
    assert_eq!(
        p,
        vec![
            "bootstrap.initdb[0]: write the option without leading dashes (\"data-checksums\")",
            "bootstrap.initdb[1].pgdata: \"pgdata\" is set by Warden and cannot be given",
            "bootstrap.initdb[2].auth: expected a string or number, got [\"a\"]",
            "bootstrap.initdb[3]: expected an option name or a one-key mapping, got 5",
            "bootstrap.initdb[4]: invalid initdb option name \"a b\"",
        ]
    );
    let p = problems(&with("data-checksums"));
    assert_has_prefix(&p, "bootstrap.initdb: expected a list");
}

#[test]
fn dcs_problems_are_prefixed() {
    let yaml = format!(
        "{MINIMAL}bootstrap:\n  dcs:\n    ttl: 20\n    loop_wait: 5\n    synchronous_mode: quorum\n    postgresql: {{use_slot: true, pg_hba: [1]}}\n"
    );
    let p = problems(&yaml);
    assert_eq!(
        p,
        vec![
            "bootstrap.dcs.postgresql.use_slot: unknown key (not a Patroni or Warden setting); did you mean \"use_slots\"?",
            "bootstrap.dcs.postgresql.pg_hba[0]: expected a string, got 1",
        ]
    );
    // Timings that break the rule are adjusted as Patroni adjusts them, with a warning.
    let loaded = ok(&format!(
        "{MINIMAL}bootstrap:\n  dcs:\n    ttl: 20\n    loop_wait: 5\n"
    ));
    let dcs = &loaded.config.bootstrap.dcs;
    assert_eq!((dcs.ttl, dcs.loop_wait, dcs.retry_timeout), (20, 1, 9));
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.starts_with("bootstrap.dcs: violated the rule")),
        "{:?}",
        loaded.warnings
    );
    let yaml =
        format!("{MINIMAL}bootstrap:\n  dcs:\n    synchronous_mode: quorum\n    pause: true\n");
    let dcs = ok(&yaml).config.bootstrap.dcs;
    assert_eq!(dcs.synchronous_mode, SynchronousMode::Quorum);
    assert!(dcs.pause);
    assert_eq!(
        problems(&format!("{MINIMAL}bootstrap:\n  dcs: [ttl]\n")),
        vec!["bootstrap.dcs: expected a mapping, got [\"ttl\"]"]
    );
}
