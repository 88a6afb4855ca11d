//! `backup.objectives`: absent means nothing is judged; values; one problem per bad key.

use std::time::Duration;

use super::fixtures::{assert_has_prefix, ok, problems, MINIMAL};
use crate::*;

fn with_backup(extra: &str) -> String {
    format!("{MINIMAL}backup:\n  repository: {{type: filesystem, path: /r}}\n{extra}")
}

#[test]
fn no_objectives_by_default() {
    let b = ok(&with_backup("")).config.backup.unwrap();
    assert!(b.objectives.is_empty(), "{:?}", b.objectives);
}

#[test]
fn objective_values() {
    let b = ok(&with_backup(
        "  objectives: {rpo: 1m, rto: 15m, max_backup_age: 25h, max_drill_age: 8d, min_copies: 2}\n",
    ))
    .config
    .backup
    .unwrap();
    assert_eq!(
        b.objectives,
        Objectives {
            rpo: Some(Duration::from_secs(60)),
            rto: Some(Duration::from_secs(900)),
            max_backup_age: Some(Duration::from_secs(25 * 3600)),
            max_drill_age: Some(Duration::from_secs(8 * 86400)),
            min_copies: Some(2),
        }
    );
    // A bare number is seconds, like the rest of the section; keys are optional.
    let b = ok(&with_backup("  objectives: {rpo: 30}\n"))
        .config
        .backup
        .unwrap();
    assert_eq!(b.objectives.rpo, Some(Duration::from_secs(30)));
    assert_eq!(b.objectives.min_copies, None);
}

#[test]
fn bad_objectives_name_their_keys() {
    let p = problems(&with_backup(
        "  objectives: {rpo: soon, rto: 0, max_backup_age: -1h, max_drill_age: [1], min_copies: 0, rtt: 1s}\n",
    ));
    for prefix in [
        "backup.objectives.rpo: expected a duration",
        "backup.objectives.rto: must be greater than zero",
        "backup.objectives.max_backup_age: expected a duration",
        "backup.objectives.max_drill_age",
        "backup.objectives.min_copies: must be at least 1",
        "backup.objectives.rtt",
    ] {
        assert_has_prefix(&p, prefix);
    }
    let p = problems(&with_backup("  objectives: {min_copies: two}\n"));
    assert_has_prefix(&p, "backup.objectives.min_copies: expected an integer");
    let p = problems(&with_backup("  objectives: 5m\n"));
    assert_has_prefix(&p, "backup.objectives");
}
