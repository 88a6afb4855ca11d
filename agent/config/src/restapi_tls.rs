//! The REST API's TLS and access settings (`restapi.certfile` ... `allowlist`, the
//! extra headers) and the `ctl` section's client side, as Patroni reads them.
//!
//! Files are checked to be readable here, so a typo is a config error naming the key;
//! their contents (PEM, key decryption) are checked when the agent builds its TLS
//! configuration, which fails the start (or keeps the old one on reload) with the key.

use serde_yaml::Value;
use std::path::PathBuf;

use super::reader::{describe_yaml, key_text, Reader, Section};
use super::schema;
use super::types::{KeyedPath, RestClientTls, RestTls, Secret, VerifyClient};

/// Everything in `restapi` beyond listen/connect_address/authentication, plus `ctl`.
#[derive(Debug, Default)]
pub(super) struct Extra {
    pub tls: Option<RestTls>,
    pub allowlist: Vec<String>,
    pub allowlist_include_members: bool,
    pub http_extra_headers: Vec<(String, String)>,
    pub https_extra_headers: Vec<(String, String)>,
    pub client: RestClientTls,
}

/// Reads the keys from `s` (the restapi section) and the root's `ctl`.
pub(super) fn read(r: &mut Reader, s: &Section<'_>, root: &Section<'_>) -> Extra {
    let certfile = file(r, s, "certfile");
    let keyfile = file(r, s, "keyfile");
    let keyfile_password = text(r, s, "keyfile_password").map(Secret);
    let cafile = file(r, s, "cafile");
    let verify_client = match text(r, s, "verify_client").as_deref() {
        None | Some("none") => VerifyClient::None,
        Some("optional") => VerifyClient::Optional,
        Some("required") => VerifyClient::Required,
        Some(other) => {
            r.error(
                s.path_of("verify_client"),
                format!("expected none, optional or required, got {other:?}"),
            );
            VerifyClient::None
        }
    };
    let tls = match &certfile {
        Some(cert) => {
            if verify_client != VerifyClient::None && cafile.is_none() {
                r.error(
                    s.path_of("verify_client"),
                    "needs restapi.cafile: the CA certificates client certificates are checked \
                     against",
                );
            }
            Some(RestTls {
                certfile: cert.clone(),
                keyfile: keyfile.clone(),
                keyfile_password: keyfile_password.clone(),
                cafile: cafile.clone(),
                verify_client,
            })
        }
        None => {
            // Without certfile the API serves plain http: a key or a client check
            // that silently did nothing would be a lie.
            for (key, set) in [
                ("keyfile", keyfile.is_some()),
                ("keyfile_password", keyfile_password.is_some()),
                ("verify_client", verify_client != VerifyClient::None),
            ] {
                if set {
                    r.error(
                        s.path_of(key),
                        "set without restapi.certfile: the REST API serves TLS only with a \
                         certificate",
                    );
                }
            }
            None
        }
    };
    let allowlist = match s.get("allowlist") {
        Some(v) => allowlist(r, &s.path_of("allowlist"), v),
        None => Vec::new(),
    };
    let mut allowlist_include_members = false;
    r.bool_key(
        s,
        "allowlist_include_members",
        &mut allowlist_include_members,
    );
    let http_extra_headers = headers(r, s, "http_extra_headers");
    let https_extra_headers = headers(r, s, "https_extra_headers");
    let client = client(r, root, &certfile, &keyfile, &keyfile_password, &cafile);
    Extra {
        tls,
        allowlist,
        allowlist_include_members,
        http_extra_headers,
        https_extra_headers,
        client,
    }
}

fn text(r: &mut Reader, s: &Section<'_>, key: &str) -> Option<String> {
    let v = s.get(key)?;
    r.string(&s.path_of(key), v)
}

/// A file the agent must be able to read.
fn file(r: &mut Reader, s: &Section<'_>, key: &str) -> Option<PathBuf> {
    let path = PathBuf::from(text(r, s, key)?);
    if let Err(e) = std::fs::File::open(&path) {
        r.error(
            s.path_of(key),
            format!("cannot read {}: {e}", path.display()),
        );
    }
    Some(path)
}

/// `ctl.*`, each falling back to its `restapi` twin (Patroni's request helper).
fn client(
    r: &mut Reader,
    root: &Section<'_>,
    certfile: &Option<PathBuf>,
    keyfile: &Option<PathBuf>,
    keyfile_password: &Option<Secret>,
    cafile: &Option<PathBuf>,
) -> RestClientTls {
    let ctl = match root.get("ctl") {
        Some(v) => r.section("ctl", v),
        None => None,
    };
    let mut out = RestClientTls {
        cacert: cafile.clone().map(|path| KeyedPath {
            key: "restapi.cafile",
            path,
        }),
        certfile: certfile.clone().map(|path| KeyedPath {
            key: "restapi.certfile",
            path,
        }),
        keyfile: keyfile.clone().map(|path| KeyedPath {
            key: "restapi.keyfile",
            path,
        }),
        keyfile_password: keyfile_password.clone(),
        insecure: false,
    };
    let Some(ctl) = ctl else {
        return out;
    };
    r.check_keys(&ctl, schema::CTL, &[]);
    if let Some(path) = file(r, &ctl, "cacert") {
        out.cacert = Some(KeyedPath {
            key: "ctl.cacert",
            path,
        });
    }
    if let Some(path) = file(r, &ctl, "certfile") {
        // The client certificate and its key come from one section.
        out.certfile = Some(KeyedPath {
            key: "ctl.certfile",
            path,
        });
        out.keyfile = file(r, &ctl, "keyfile").map(|path| KeyedPath {
            key: "ctl.keyfile",
            path,
        });
        out.keyfile_password = text(r, &ctl, "keyfile_password").map(Secret);
    } else if ctl.get("keyfile").is_some() {
        r.error("ctl.keyfile", "set without ctl.certfile");
    }
    r.bool_key(&ctl, "insecure", &mut out.insecure);
    out
}

/// Entries are IP addresses, CIDR networks or host names (resolved by the server).
fn allowlist(r: &mut Reader, path: &str, value: &Value) -> Vec<String> {
    let items = match value {
        // Patroni's environment form is a list; a single string is one entry.
        Value::String(one) => vec![one.clone()],
        _ => r.string_list(path, value).unwrap_or_default(),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let item = item.trim().to_string();
        if let Err(e) = check_allow_entry(&item) {
            r.error(format!("{path}[{i}]"), e);
            continue;
        }
        out.push(item);
    }
    out
}

/// An IP address, `IP/prefix`, or a host name.
pub fn check_allow_entry(item: &str) -> Result<(), String> {
    if item.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some((ip, bits)) = item.split_once('/') {
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("{item:?}: expected IP/prefix"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match bits.parse::<u8>() {
            Ok(b) if b <= max => return Ok(()),
            _ => return Err(format!("{item:?}: prefix must be 0..={max}")),
        }
    }
    if item.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let host_ok = item
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if host_ok {
        Ok(())
    } else {
        Err(format!(
            "{item:?} is not an IP address, a CIDR network or a host name"
        ))
    }
}

/// `{Header-Name: value}`: names and values must be valid in an HTTP header.
fn headers(r: &mut Reader, s: &Section<'_>, key: &str) -> Vec<(String, String)> {
    let Some(value) = s.get(key) else {
        return Vec::new();
    };
    let path = s.path_of(key);
    let Some(map) = r.section(&path, value) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map.entries() {
        let Some(name) = key_text(k) else {
            r.error(
                &path,
                format!("header names must be strings, got {}", describe_yaml(k)),
            );
            continue;
        };
        let field = format!("{path}.{name}");
        let value = match v {
            Value::String(t) => t.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                r.error(
                    field,
                    format!("expected a string, got {}", describe_yaml(other)),
                );
                continue;
            }
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !name_ok {
            r.error(field, "not a valid HTTP header name");
            continue;
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            r.error(field, "a header value must not contain line breaks");
            continue;
        }
        out.push((name, value));
    }
    out
}
