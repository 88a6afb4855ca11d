//! `postgresql.authentication.*`: the TLS keys of each role.

use std::path::PathBuf;

use tempfile::TempDir;
use warden_pg::tls::{ChannelBinding, SslMode};

use super::fixtures::*;

/// A CA certificate file.
fn ca(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("ca.crt");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&path, cert.cert.pem()).unwrap();
    path
}

fn with_replication(extra: &str) -> String {
    MINIMAL.replace(
        "replication: {username: replicator}",
        &format!("replication: {{username: replicator, {extra}}}"),
    )
}

#[test]
fn verify_full_with_a_root_certificate_is_read_per_role() {
    let dir = TempDir::new().unwrap();
    let root = ca(&dir);
    let yaml = with_replication(&format!(
        "sslmode: verify-full, sslrootcert: {}, channel_binding: require, gssencmode: disable",
        root.display()
    ));
    let c = ok(&yaml).config;
    let tls = &c.postgresql().unwrap().authentication.tls;
    assert_eq!(tls.replication.sslmode, Some(SslMode::VerifyFull));
    assert_eq!(tls.replication.sslrootcert.as_deref(), Some(root.as_path()));
    assert_eq!(
        tls.replication.channel_binding,
        Some(ChannelBinding::Require)
    );
    assert_eq!(tls.replication.gssencmode.as_deref(), Some("disable"));
    assert!(!tls.replication.allow_cleartext_password);
    assert_eq!(tls.superuser, Default::default());
    assert_eq!(tls.rewind, None);
}

#[test]
fn bad_values_name_the_key() {
    let p = problems(&with_replication("sslmode: verify-all"));
    assert_has_prefix(
        &p,
        "postgresql.authentication.replication.sslmode: expected disable",
    );
    let p = problems(&with_replication("sslmode: verify-full"));
    assert_has_prefix(
        &p,
        "postgresql.authentication.replication.sslrootcert: required with sslmode verify-full",
    );
    let p = problems(&with_replication(
        "sslmode: verify-ca, sslrootcert: /nonexistent/ca.crt",
    ));
    assert_has(
        &p,
        "postgresql.authentication.replication.sslrootcert: no such file \"/nonexistent/ca.crt\"",
    );
    let p = problems(&with_replication("sslrootcert: ca.crt"));
    assert_has_prefix(
        &p,
        "postgresql.authentication.replication.sslrootcert: must be an absolute path",
    );
    let p = problems(&with_replication("channel_binding: always"));
    assert_has_prefix(
        &p,
        "postgresql.authentication.replication.channel_binding: expected",
    );
    let p = problems(&with_replication("gssencmode: require"));
    assert_has_prefix(
        &p,
        "postgresql.authentication.replication.gssencmode: cannot be honoured",
    );
    let p = problems(&with_replication("sslnegotiation: direct"));
    assert_has_prefix(
        &p,
        "postgresql.authentication.replication.sslnegotiation: cannot be honoured",
    );
    let p = problems(&with_replication("sslpassword: secret"));
    assert_has_prefix(
        &p,
        "postgresql.authentication.replication.sslpassword: cannot be honoured",
    );
    let dir = TempDir::new().unwrap();
    let root = ca(&dir);
    let p = problems(&with_replication(&format!("sslcert: {}", root.display())));
    assert_has(
        &p,
        "postgresql.authentication.replication.sslkey: required with sslcert",
    );
    // A file that is not a certificate is caught when the config is read.
    let junk = dir.path().join("junk.crt");
    std::fs::write(&junk, "not a certificate").unwrap();
    let p = problems(&with_replication(&format!(
        "sslmode: verify-full, sslrootcert: {}",
        junk.display()
    )));
    assert_has_prefix(&p, "postgresql.authentication.replication: sslrootcert");
}

#[test]
fn weak_modes_and_the_cleartext_switch_are_accepted() {
    for mode in ["disable", "allow", "prefer", "require"] {
        let c = ok(&with_replication(&format!("sslmode: {mode}"))).config;
        assert_eq!(
            c.postgresql()
                .unwrap()
                .authentication
                .tls
                .replication
                .sslmode,
            SslMode::parse(mode)
        );
    }
    let c = ok(&with_replication("allow_cleartext_password: true")).config;
    assert!(
        c.postgresql()
            .unwrap()
            .authentication
            .tls
            .replication
            .allow_cleartext_password
    );
}
