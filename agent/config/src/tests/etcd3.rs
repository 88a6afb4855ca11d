//! The etcd3 section's transport security and users: `protocol`, `cacert`, `cert`,
//! `key`, `username`, `password`, and hosts written as URLs.

use super::fixtures::*;
use std::path::PathBuf;
use tempfile::TempDir;
use warden_consensus::etcd::{EtcdSecurity, EtcdTls, EtcdUser};

/// MINIMAL with its etcd3 section replaced.
fn with_etcd(section: &str) -> String {
    MINIMAL.replace("etcd3:\n  host: 127.0.0.1:2379", section)
}

/// A directory with readable `ca.pem`, `client.pem`, `client.key` (contents do not
/// matter to the loader: it checks they can be read; the client checks the PEM).
fn files() -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    for f in ["ca.pem", "client.pem", "client.key"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let p = dir.path().to_path_buf();
    (dir, p)
}

#[test]
fn https_with_certificates_and_a_user() {
    let (_d, dir) = files();
    let yaml = with_etcd(&format!(
        "etcd3:\n  hosts: [10.0.0.1:2379, 10.0.0.2]\n  protocol: https\n  cacert: {d}/ca.pem\n  \
         cert: {d}/client.pem\n  key: {d}/client.key\n  username: warden\n  password: pw1",
        d = dir.display()
    ));
    let loaded = ok(&yaml);
    let etcd = loaded.config.etcd3;
    assert_eq!(etcd.hosts, vec!["10.0.0.1:2379", "10.0.0.2:2379"]);
    assert_eq!(
        etcd.security,
        EtcdSecurity {
            tls: Some(EtcdTls {
                cacert: Some(dir.join("ca.pem")),
                cert: Some(dir.join("client.pem")),
                key: Some(dir.join("client.key")),
            }),
            user: Some(EtcdUser {
                username: "warden".into(),
                password: "pw1".into(),
            }),
        }
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn hosts_as_urls_set_the_protocol() {
    let c = ok(&with_etcd(
        "etcd3:\n  hosts: 'https://10.0.0.1:2379,https://[::1]:2380/'",
    ))
    .config
    .etcd3;
    assert_eq!(c.hosts, vec!["10.0.0.1:2379", "[::1]:2380"]);
    assert_eq!(c.security.tls, Some(EtcdTls::default()));
    let c = ok(&with_etcd("etcd3: {host: 'http://e1'}")).config.etcd3;
    assert_eq!(c.hosts, vec!["e1:2379"]);
    assert_eq!(c.security, EtcdSecurity::default());
    // Protocol alone applies to bare hosts.
    let c = ok(&with_etcd("etcd3: {host: e1:1, protocol: https}"))
        .config
        .etcd3;
    assert_eq!(c.security.tls, Some(EtcdTls::default()));
}

#[test]
fn mixed_schemes_are_errors() {
    let p = problems(&with_etcd("etcd3: {hosts: ['https://a:1', 'http://b:2']}"));
    assert_has_prefix(&p, "etcd3.hosts[1]: \"http://b:2\" does not match");
    let p = problems(&with_etcd(
        "etcd3: {hosts: ['http://a:1'], protocol: https}",
    ));
    assert_has_prefix(&p, "etcd3.hosts[0]: \"http://a:1\" does not match");
    let p = problems(&with_etcd("etcd3: {hosts: ['ftp://a:1']}"));
    assert_has_prefix(&p, "etcd3.hosts[0]: unknown scheme \"ftp\"");
    let p = problems(&with_etcd("etcd3: {host: a:1, protocol: spdy}"));
    assert_eq!(
        p,
        vec!["etcd3.protocol: expected http or https, got \"spdy\""]
    );
}

#[test]
fn certificate_files_must_exist_and_need_https() {
    let p = problems(&with_etcd(
        "etcd3: {host: a:1, protocol: https, cacert: /nonexistent/warden/ca.pem}",
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_has_prefix(&p, "etcd3.cacert: cannot read /nonexistent/warden/ca.pem: ");
    let (_d, dir) = files();
    let p = problems(&with_etcd(&format!(
        "etcd3: {{host: a:1, cacert: {}/ca.pem}}",
        dir.display()
    )));
    assert_has_prefix(&p, "etcd3.cacert: set, but etcd is reached over plain http");
    let p = problems(&with_etcd(&format!(
        "etcd3: {{host: a:1, protocol: https, key: {}/client.key}}",
        dir.display()
    )));
    assert_eq!(p, vec!["etcd3.key: set without etcd3.cert"]);
    // The key may be inside the certificate file (Patroni: key can be empty).
    let c = ok(&with_etcd(&format!(
        "etcd3: {{host: a:1, protocol: https, cert: {}/client.pem, key: ''}}",
        dir.display()
    )))
    .config
    .etcd3;
    assert_eq!(c.security.tls.unwrap().key, None);
}

#[test]
fn username_and_password_go_together() {
    let p = problems(&with_etcd(
        "etcd3: {host: a:1, protocol: https, username: u}",
    ));
    assert_eq!(p, vec!["etcd3.password: missing; etcd3.username needs it"]);
    let p = problems(&with_etcd(
        "etcd3: {host: a:1, protocol: https, password: pw}",
    ));
    assert_eq!(p, vec!["etcd3.username: missing; etcd3.password needs it"]);
    // Over plain http it works as in Patroni, with a warning; the password itself is
    // in no message.
    let loaded = ok(&with_etcd(
        "etcd3: {host: a:1, username: u, password: hunter2}",
    ));
    assert_has_prefix(
        &loaded.warnings,
        "etcd3.password: sent to etcd over plain http",
    );
    assert!(loaded.warnings.iter().all(|w| !w.contains("hunter2")));
    assert!(!format!("{:?}", loaded.config.etcd3).contains("hunter2"));
}

#[test]
fn verification_cannot_be_switched_off() {
    let p = problems(&with_etcd(
        "etcd3: {host: a:1, protocol: https, verify: false}",
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_has_prefix(&p, "etcd3.verify: cannot be honoured: ");
    assert!(p[0].contains("always verifies"), "{p:?}");
    let p = problems(&with_etcd(
        "etcd3: {host: a:1, protocol: https, key_password: x}",
    ));
    assert_has_prefix(&p, "etcd3.key_password: cannot be honoured: ");
}
