//! `restapi` TLS, client verification, allowlist and extra headers; `ctl`'s client side.

use super::fixtures::*;
use crate::*;

/// MINIMAL with `extra` lines appended under `restapi:` (indented two spaces).
fn with_restapi(extra: &str) -> String {
    MINIMAL.replace(
        "  listen: 127.0.0.1:8008\n",
        &format!("  listen: 127.0.0.1:8008\n{extra}"),
    )
}

fn files() -> (tempfile::TempDir, String, String, String) {
    let dir = tempfile::TempDir::new().unwrap();
    let p = |n: &str| {
        let path = dir.path().join(n);
        std::fs::write(&path, "pem").unwrap();
        path.display().to_string()
    };
    let (c, k, a) = (p("crt"), p("key"), p("ca"));
    (dir, c, k, a)
}

#[test]
fn tls_settings_are_read_and_api_url_becomes_https() {
    let (_d, crt, key, ca) = files();
    let c = ok(&format!(
        "{}ctl:\n  cacert: {ca}\n  insecure: true\n",
        with_restapi(&format!(
            "  certfile: {crt}\n  keyfile: {key}\n  keyfile_password: s3cret\n  cafile: {ca}\n  \
             verify_client: required\n  allowlist: [127.0.0.1, 10.0.0.0/8, db1.example]\n  \
             allowlist_include_members: true\n  http_extra_headers: {{X-Frame-Options: DENY}}\n  \
             https_extra_headers: {{Strict-Transport-Security: max-age=31536000}}\n"
        ))
    ))
    .config;
    let r = &c.restapi;
    let tls = r.tls.as_ref().unwrap();
    assert_eq!(tls.certfile.display().to_string(), crt);
    assert_eq!(tls.verify_client, VerifyClient::Required);
    assert_eq!(tls.keyfile_password.as_ref().unwrap().0, "s3cret");
    assert_eq!(r.api_url(), "https://127.0.0.1:8008/patroni");
    assert_eq!(r.allowlist, ["127.0.0.1", "10.0.0.0/8", "db1.example"]);
    assert!(r.allowlist_include_members);
    assert_eq!(
        r.http_extra_headers,
        [("X-Frame-Options".to_string(), "DENY".to_string())]
    );
    assert_eq!(r.https_extra_headers.len(), 1);
    // The client: ctl.cacert wins, the certificate falls back to restapi's.
    assert_eq!(r.client.cacert.as_ref().unwrap().key, "ctl.cacert");
    assert_eq!(r.client.certfile.as_ref().unwrap().key, "restapi.certfile");
    assert_eq!(r.client.keyfile.as_ref().unwrap().key, "restapi.keyfile");
    assert!(r.client.insecure);
    // Secrets stay out of Debug output.
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn plain_http_without_certfile() {
    let c = ok(MINIMAL).config;
    assert!(c.restapi.tls.is_none());
    assert_eq!(c.restapi.api_url(), "http://127.0.0.1:8008/patroni");
}

#[test]
fn bad_tls_values_are_errors_naming_the_key() {
    let (_d, crt, key, _ca) = files();
    let p = problems(&with_restapi(&format!(
        "  certfile: {crt}\n  verify_client: sometimes\n"
    )));
    assert_has_prefix(
        &p,
        "restapi.verify_client: expected none, optional or required",
    );
    let p = problems(&with_restapi(&format!(
        "  certfile: {crt}\n  verify_client: required\n"
    )));
    assert_has_prefix(&p, "restapi.verify_client: needs restapi.cafile");
    let p = problems(&with_restapi(&format!("  keyfile: {key}\n")));
    assert_has_prefix(&p, "restapi.keyfile: set without restapi.certfile");
    let p = problems(&with_restapi("  certfile: /nonexistent/crt\n"));
    assert_has_prefix(&p, "restapi.certfile: cannot read /nonexistent/crt");
    let p = problems(&with_restapi("  allowlist: ['10.0.0.0/40', 'a b']\n"));
    assert_has_prefix(&p, "restapi.allowlist[0]:");
    assert_has_prefix(&p, "restapi.allowlist[1]:");
    let p = problems(&with_restapi("  http_extra_headers: {'Bad Name': x}\n"));
    assert_has_prefix(
        &p,
        "restapi.http_extra_headers.Bad Name: not a valid HTTP header name",
    );
    let p = problems(&with_restapi(&format!(
        "  certfile: {crt}\n  ciphers: HIGH\n"
    )));
    assert_has_prefix(&p, "restapi.ciphers");
    let p = problems(&format!(
        "{MINIMAL}ctl:\n  cacert: /nonexistent/ca\n  bogus: 1\n"
    ));
    assert_has_prefix(&p, "ctl.cacert: cannot read /nonexistent/ca");
    assert_has_prefix(&p, "ctl.bogus");
}
