//! The `backup` section's repository, encryption and compression.

use std::path::PathBuf;

use super::fixtures::*;
use crate::*;

fn with_backup(section: &str) -> String {
    format!("{MINIMAL}backup:\n{section}")
}

#[test]
fn no_backup_section_means_no_backup() {
    assert_eq!(ok(MINIMAL).config.backup, None);
}

#[test]
fn backup_filesystem_defaults() {
    let loaded = ok(&with_backup(
        "  repository: {type: filesystem, path: /var/lib/warden-repo}\n",
    ));
    let b = loaded.config.backup.unwrap();
    assert_eq!(
        b.repository.kind,
        RepositoryKind::Filesystem {
            path: PathBuf::from("/var/lib/warden-repo")
        }
    );
    assert_eq!(b.repository.timeout, std::time::Duration::from_secs(60));
    assert_eq!(b.compression_level, 3);
    assert_eq!(b.base_method, BaseMethod::Files);
    assert_eq!(b.encryption_key_file, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn backup_s3_settings_and_secret_is_not_in_debug_output() {
    let loaded = ok(&with_backup(
        r#"  repository:
    type: s3
    bucket: pg
    endpoint: http://127.0.0.1:9000
    allow_http: true
    region: us-east-1
    prefix: /prod/eu/
    access_key_id: AKID
    secret_access_key: very-secret-value
    timeout: 5s
  encryption_key_file: /etc/warden/backup.key
  compression_level: 9
  base_method: pg_basebackup
"#,
    ));
    let b = loaded.config.backup.clone().unwrap();
    let RepositoryKind::S3(s3) = &b.repository.kind else {
        panic!("{:?}", b.repository)
    };
    assert_eq!(s3.prefix, "prod/eu");
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(b.repository.timeout, std::time::Duration::from_secs(5));
    assert_eq!(b.compression_level, 9);
    assert_eq!(b.base_method, BaseMethod::PgBasebackup);
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains("very-secret-value"), "{debug}");
}

#[test]
fn backup_problems_name_their_keys() {
    let list = problems(&with_backup(
        r#"  repository: {type: s3, bucket: pg, endpoint: 'http://h:1', path: /x, timeout: soon}
  encryption_key_file: relative.key
  compression_level: 40
  base_method: rsync
  retention_days: 3
"#,
    ));
    assert_has_prefix(&list, "backup.repository.endpoint: is plain http://");
    assert_has(
        &list,
        "backup.repository.path: not a setting of a repository of type \"s3\"",
    );
    assert_has_prefix(&list, "backup.repository.timeout: expected a duration");
    assert_has_prefix(
        &list,
        "backup.encryption_key_file: must be an absolute path",
    );
    assert_has(
        &list,
        "backup.compression_level: must be a zstd level from 1 to 19, or a fast level from -7 to -1, got 40",
    );
    assert_has(
        &list,
        "backup.base_method: must be \"files\" or \"pg_basebackup\", got \"rsync\"",
    );
    assert_has_prefix(&list, "backup.retention_days: unknown key");

    let list = problems(&with_backup("  repository: {type: tape}\n"));
    assert_has(
        &list,
        "backup.repository.type: expected \"filesystem\" or \"s3\", got \"tape\"",
    );
    let list = problems(&with_backup("  compression_level: 3\n"));
    assert_has(&list, "backup.repository: missing required key");
    let list = problems(&with_backup("  repository: {type: filesystem}\n"));
    assert_has(&list, "backup.repository.path: missing required key");
    let list = problems(&with_backup(
        "  repository: {type: s3, bucket: b, access_key_id: x}\n",
    ));
    assert_has_prefix(
        &list,
        "backup.repository: set both access_key_id and secret_access_key",
    );
}
