//! How the etcd client proves who it is and checks whom it talks to: TLS (a CA, a
//! client certificate) and etcd's own users (RBAC). Everything here fails closed: a
//! file that cannot be read or holds no PEM item is an error naming it, and an https
//! endpoint is never tried over http.

use crate::dcs::DcsError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// TLS to etcd. Without `cacert` the server certificate is checked against the system
/// trust store; it is always checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA(s) that sign etcd's server certificates.
    pub cacert: Option<PathBuf>,
    /// PEM file of the client certificate (etcd's `--client-cert-auth`).
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key; `None` means it is in `cert`.
    pub key: Option<PathBuf>,
}

/// An etcd user (etcd's RBAC). The password never reaches `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdUser {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything about reaching etcd beyond the endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdSecurity {
    /// `Some` means every endpoint is https.
    pub tls: Option<EtcdTls>,
    pub user: Option<EtcdUser>,
}

/// The endpoints as URLs: a bare `host:port` gets the scheme the security settings
/// imply; an explicit scheme must agree with them (no http beside TLS settings).
pub(super) fn endpoint_urls(
    endpoints: &[String],
    security: &EtcdSecurity,
) -> Result<Vec<String>, DcsError> {
    endpoints
        .iter()
        .map(|e| {
            let e = e.trim();
            match (e.split_once("://"), &security.tls) {
                (None, Some(_)) => Ok(format!("https://{e}")),
                (None, None) => Ok(format!("http://{e}")),
                (Some(("https", _)), _) => Ok(e.to_owned()),
                (Some(("http", _)), None) => Ok(e.to_owned()),
                (Some(("http", _)), Some(_)) => Err(DcsError::Other(format!(
                    "etcd endpoint {e} is plain http but TLS is configured; \
                     Warden never mixes plain text into a TLS connection"
                ))),
                (Some((scheme, _)), _) => Err(DcsError::Other(format!(
                    "etcd endpoint {e}: unknown scheme {scheme:?} (expected http or https)"
                ))),
            }
        })
        .collect()
}

/// The PEM files of [`EtcdTls`], read and checked: `etcd.rs` hands them to the client.
#[derive(Default)]
pub(super) struct TlsPem {
    /// `None`: the system trust store.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Says what is there, never the bytes: the identity holds a private key.
impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, DcsError> {
    std::fs::read(path).map_err(|e| DcsError::Other(format!("etcd {what} {}: {e}", path.display())))
}

pub(super) fn load(tls: &EtcdTls) -> Result<TlsPem, DcsError> {
    let mut out = TlsPem::default();
    match &tls.cacert {
        Some(path) => {
            let pem = read(path, "CA certificate (etcd3.cacert)")?;
            let count = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    DcsError::Other(format!(
                        "etcd CA certificate (etcd3.cacert) {}: not PEM certificates: {e}",
                        path.display()
                    ))
                })?
                .len();
            if count == 0 {
                return Err(DcsError::Other(format!(
                    "etcd CA certificate (etcd3.cacert) {}: no certificate in the file",
                    path.display()
                )));
            }
            out.ca = Some(pem);
        }
        None => out.ca = None,
    }
    if let Some(cert_path) = &tls.cert {
        let cert = read(cert_path, "client certificate (etcd3.cert)")?;
        let has_cert = CertificateDer::pem_slice_iter(&cert).any(|c| c.is_ok());
        if !has_cert {
            return Err(DcsError::Other(format!(
                "etcd client certificate (etcd3.cert) {}: no certificate in the file",
                cert_path.display()
            )));
        }
        // Patroni: the key may live in the certificate file when etcd3.key is not set.
        let (key, key_path) = match &tls.key {
            Some(p) => (read(p, "client key (etcd3.key)")?, p),
            None => (cert.clone(), cert_path),
        };
        if let Err(e) = PrivateKeyDer::from_pem_slice(&key) {
            return Err(DcsError::Other(format!(
                "etcd client key {}: no usable unencrypted private key ({e}); set etcd3.key",
                key_path.display()
            )));
        }
        out.identity = Some((cert, key));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn bare_hosts_take_the_scheme_of_the_settings() {
        let plain = EtcdSecurity::default();
        assert_eq!(
            endpoint_urls(&s(&["a:1", "http://b:2"]), &plain).unwrap(),
            s(&["http://a:1", "http://b:2"])
        );
        let tls = EtcdSecurity {
            tls: Some(EtcdTls::default()),
            user: None,
        };
        assert_eq!(
            endpoint_urls(&s(&["a:1", "https://b:2"]), &tls).unwrap(),
            s(&["https://a:1", "https://b:2"])
        );
        let e = endpoint_urls(&s(&["http://a:1"]), &tls).unwrap_err();
        assert!(e.to_string().contains("never mixes plain text"), "{e}");
        assert!(endpoint_urls(&s(&["ftp://a:1"]), &plain).is_err());
    }

    #[test]
    fn password_is_not_in_debug_output() {
        let u = EtcdUser {
            username: "warden".into(),
            password: "s3cret".into(),
        };
        let text = format!(
            "{:?}",
            EtcdSecurity {
                tls: None,
                user: Some(u)
            }
        );
        assert!(
            text.contains("warden") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn unreadable_or_empty_pem_files_are_named() {
        let dir = std::env::temp_dir().join(format!("warden-etcd-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load(&EtcdTls {
            cacert: Some(empty.clone()),
            ..EtcdTls::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("etcd3.cacert") && e.contains("empty.pem"), "{e}");
        let e = load(&EtcdTls {
            cacert: Some(dir.join("missing.pem")),
            ..EtcdTls::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let e = load(&EtcdTls {
            cacert: None,
            cert: Some(empty),
            key: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("etcd3.cert"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
