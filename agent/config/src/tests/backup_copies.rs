//! `backup.copies`: further repositories, their names, keys, retention and lag bound.

use std::path::PathBuf;
use std::time::Duration;

use super::fixtures::*;
use crate::*;

const MAIN_REPO: &str = "  repository: {type: filesystem, path: /repo/main}\n";

fn with_copies(rest: &str) -> String {
    format!("{MINIMAL}backup:\n{MAIN_REPO}{rest}")
}

#[test]
fn copies_parse_with_defaults_and_own_settings() {
    let loaded = ok(&with_copies(
        r#"  encryption_key_file: /etc/warden/main.key
  retention: {keep_last: 2}
  copies:
    - name: fs-copy
      repository: {type: filesystem, path: /repo/copy}
    - name: s3-copy
      repository: {type: s3, bucket: dr, endpoint: 'http://127.0.0.1:9000', allow_http: true, access_key_id: a, secret_access_key: b}
      encryption_key_file: /etc/warden/dr.key
      retention: {keep_last: 5}
      max_lag: 90s
"#,
    ));
    let b = loaded.config.backup.unwrap();
    assert_eq!(b.copies.len(), 2);
    let fs = &b.copies[0];
    assert_eq!(fs.name, "fs-copy");
    assert_eq!(
        fs.repository.kind,
        RepositoryKind::Filesystem {
            path: PathBuf::from("/repo/copy")
        }
    );
    assert_eq!(fs.encryption_key_file, None);
    assert_eq!(
        fs.retention.keep_last,
        Some(2),
        "defaults to the main retention"
    );
    assert_eq!(fs.max_lag, Duration::from_secs(300));
    let s3 = &b.copies[1];
    assert_eq!(s3.retention.keep_last, Some(5));
    assert_eq!(s3.max_lag, Duration::from_secs(90));

    // Seen from a copy: its repository, key and retention; no copies of its own.
    let view = b.for_repository(Some("s3-copy")).unwrap();
    assert_eq!(view.repository, s3.repository);
    assert_eq!(
        view.encryption_key_file.as_deref(),
        Some(std::path::Path::new("/etc/warden/dr.key"))
    );
    assert_eq!(view.retention.keep_last, Some(5));
    assert!(view.copies.is_empty());
    let view = b.for_repository(Some("fs-copy")).unwrap();
    assert_eq!(
        view.encryption_key_file.as_deref(),
        Some(std::path::Path::new("/etc/warden/main.key")),
        "no key of its own: the main key"
    );
    for main in [None, Some("main")] {
        let view = b.for_repository(main).unwrap();
        assert_eq!(view.repository, b.repository);
        assert!(view.copies.is_empty());
    }
    let err = b.for_repository(Some("tape")).unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown repository \"tape\": the config names \"main\" (backup.repository), \"fs-copy\", \"s3-copy\""
    );
}

#[test]
fn copy_repository_errors_name_the_copy_key() {
    let list = problems(&with_copies(
        r#"  copies:
    - name: a
      repository: {type: filesystem, path: /repo/a}
    - name: b
      repository: {type: s3, bucket: 'x/y', endpoint: 'http://h:1', path: /p, timeout: soon}
"#,
    ));
    assert_has_prefix(
        &list,
        "backup.copies[1].repository.bucket: must be a bucket name",
    );
    assert_has_prefix(&list, "backup.copies[1].repository.endpoint: is plain http://; set backup.copies[1].repository.allow_http: true");
    assert_has(
        &list,
        "backup.copies[1].repository.path: not a setting of a repository of type \"s3\"",
    );
    assert_has_prefix(
        &list,
        "backup.copies[1].repository.timeout: expected a duration",
    );
    // The main repository's messages still name backup.repository.
    let list = problems(&format!(
        "{MINIMAL}backup:\n  repository: {{type: filesystem, path: rel}}\n"
    ));
    assert_has_prefix(&list, "backup.repository.path: must be an absolute path");
}

#[test]
fn copy_names_places_and_values_are_checked() {
    let list = problems(&with_copies(
        r#"  copies:
    - name: dr
      repository: {type: filesystem, path: /repo/a}
    - name: dr
      repository: {type: filesystem, path: /repo/b}
    - name: "bad name"
      repository: {type: filesystem, path: /repo/c}
    - name: main
      repository: {type: filesystem, path: /repo/d}
    - name: same
      repository: {type: filesystem, path: /repo/main/}
    - name: twin
      repository: {type: filesystem, path: /repo/a}
    - name: k
      repository: {type: filesystem, path: /repo/k}
      encryption_key_file: k.key
      max_lag: 0s
      colour: blue
    - repository: {type: filesystem, path: /repo/n}
"#,
    ));
    assert_has(
        &list,
        "backup.copies[1].name: \"dr\" is already the name of backup.copies[0]",
    );
    assert_has_prefix(&list, "backup.copies[2].name: must be 1 to 64 characters");
    assert_has_prefix(
        &list,
        "backup.copies[3].name: \"main\" names the main repository",
    );
    assert_has_prefix(&list, "backup.copies[4].repository: is the main repository");
    assert_has(
        &list,
        "backup.copies[5].repository: is the same repository as backup.copies[0]",
    );
    assert_has_prefix(
        &list,
        "backup.copies[6].encryption_key_file: must be an absolute path",
    );
    assert_has(&list, "backup.copies[6].max_lag: must be greater than zero");
    assert_has_prefix(&list, "backup.copies[6].colour: unknown key");
    assert_has(&list, "backup.copies[7].name: missing required key");

    let list = problems(&with_copies("  copies: {name: x}\n"));
    assert_has_prefix(&list, "backup.copies: expected a list");
}

#[test]
fn copy_retention_keeps_at_least_the_main_one() {
    let list = problems(&with_copies(
        r#"  retention: {keep_last: 3, keep_daily: 7}
  copies:
    - name: short
      repository: {type: filesystem, path: /repo/a}
      retention: {keep_last: 2, keep_daily: 7}
    - name: none
      repository: {type: filesystem, path: /repo/b}
      retention: {keep_last: 0}
"#,
    ));
    assert_has_prefix(
        &list,
        "backup.copies[0].retention.keep_last: must keep at least what backup.retention keeps (keep_last: 3)",
    );
    assert_has_prefix(&list, "backup.copies[1].retention: keeps no backup at all");
    // Main keeps everything: a copy must too.
    let list = problems(&with_copies(
        r#"  copies:
    - name: a
      repository: {type: filesystem, path: /repo/a}
      retention: {keep_last: 9}
"#,
    ));
    assert_has_prefix(
        &list,
        "backup.copies[0].retention: backup.retention keeps everything",
    );
    // Longer is fine; keeping everything is fine.
    let b = ok(&with_copies(
        r#"  retention: {keep_last: 1}
  copies:
    - name: long
      repository: {type: filesystem, path: /repo/a}
      retention: {keep_last: 4, keep_weekly: 2}
    - name: all
      repository: {type: filesystem, path: /repo/b}
      retention: {}
"#,
    ))
    .config
    .backup
    .unwrap();
    assert_eq!(b.copies[0].retention.keep_last, Some(4));
    assert!(b.copies[1].retention.keeps_everything());
}
