//! TLS material for the REST API, read from Patroni's PEM files: certificates, private
//! keys (plain, or encrypted PKCS#8 with `keyfile_password`), and the client side's
//! rustls configuration (members calling members, `wardenctl`). One TLS stack: rustls
//! with the ring provider.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS material could not be used. Each names the file (and the setting the caller
/// passes in `key`), so an operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {error}")]
    Read {
        key: String,
        path: PathBuf,
        error: String,
    },
    #[error("{key}: {path} holds no PEM certificate")]
    NoCertificate { key: String, path: PathBuf },
    #[error("{key}: {path}: {reason}")]
    Key {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
}

/// The only provider Warden uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        key: key.into(),
        path: path.into(),
        error: e.to_string(),
    })
}

/// Every certificate in a PEM file (a chain: the leaf first), at least one.
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Key {
            key: key.into(),
            path: path.into(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key: key.into(),
            path: path.into(),
        });
    }
    Ok(certs)
}

/// A trust store from a PEM file of CA certificates.
pub fn load_roots(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots.add(cert).map_err(|e| TlsError::Key {
            key: key.into(),
            path: path.into(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// The private key in a PEM file (Patroni's `keyfile`, or the certificate file when
/// no keyfile is set). An `ENCRYPTED PRIVATE KEY` (PKCS#8, PBES2) is decrypted with
/// `password`; OpenSSL's legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED`) is refused
/// with how to convert it.
pub fn load_key(
    key: &str,
    path: &Path,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(key, path)?;
    let text = String::from_utf8_lossy(&bytes);
    let fail = |reason: String| TlsError::Key {
        key: key.into(),
        path: path.into(),
        reason,
    };
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(fail(
            "an OpenSSL legacy encrypted key, which Warden cannot decrypt; convert it to \
             encrypted PKCS#8 (openssl pkcs8 -topk8 -v2 aes-256-cbc) or decrypt it"
                .into(),
        ));
    }
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    if let Some(start) = text.find(BEGIN) {
        let Some(password) = password else {
            return Err(fail("the key is encrypted: set keyfile_password".into()));
        };
        let end = text[start..]
            .find(END)
            .map(|e| start + e + END.len())
            .ok_or_else(|| fail("unterminated ENCRYPTED PRIVATE KEY block".into()))?;
        let (_, der) = pkcs8::der::pem::decode_vec(text[start..end].as_bytes())
            .map_err(|e| fail(format!("bad ENCRYPTED PRIVATE KEY block: {e}")))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| fail(format!("bad encrypted PKCS#8 key: {e}")))?;
        let plain = info.decrypt(password.as_bytes()).map_err(|e| {
            fail(format!(
                "cannot decrypt the key with keyfile_password (wrong password, or an \
                 encryption scheme other than PBES2 with PBKDF2/scrypt and AES): {e}"
            ))
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| fail(format!("no usable PEM private key: {e}")))
}

/// What a REST API client presents and trusts: `ctl.*`, else `restapi.*` (Patroni's
/// fallback). `insecure` skips verifying the server (`ctl.insecure`, `-k`) and nothing
/// else does.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// CA file to verify servers with; `None`: the system's trust store.
    pub cafile: Option<PathBuf>,
    /// Client certificate, presented when the server asks for one.
    pub certfile: Option<PathBuf>,
    /// Its key; `None`: the key is in `certfile`.
    pub keyfile: Option<PathBuf>,
    pub keyfile_password: Option<String>,
    pub insecure: bool,
    /// Which settings these came from, for error messages (`ctl`, `restapi`).
    pub source: ClientSource,
}

/// The section each file setting came from, to name it in errors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSource {
    pub cafile: &'static str,
    pub certfile: &'static str,
    pub keyfile: &'static str,
}

impl std::fmt::Debug for ClientFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFiles")
            .field("cafile", &self.cafile)
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field(
                "keyfile_password",
                &self.keyfile_password.as_ref().map(|_| "<redacted>"),
            )
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// The client's rustls configuration: server certificates verified against the CA file
/// (or the system store), the client certificate offered when a server asks for one.
pub fn client_config(files: &ClientFiles) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            key: "tls".into(),
            reason: e.to_string(),
        })?;
    let builder = if files.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let roots = match &files.cafile {
            Some(path) => load_roots(files.source.cafile, path)?,
            None => system_roots(),
        };
        builder.with_root_certificates(roots)
    };
    let config = match &files.certfile {
        Some(cert_path) => {
            let certs = load_certs(files.source.certfile, cert_path)?;
            let (key_name, key_path) = match &files.keyfile {
                Some(k) => (files.source.keyfile, k.as_path()),
                None => (files.source.certfile, cert_path.as_path()),
            };
            let key = load_key(key_name, key_path, files.keyfile_password.as_deref())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Config {
                    key: files.source.certfile.into(),
                    reason: format!("the certificate and key do not form a usable pair: {e}"),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The system's CA certificates (Python's `ssl` default, which Patroni gets when no CA
/// file is configured). Unreadable entries are skipped: an empty store only means that
/// no server verifies.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    roots
}

/// `insecure`: accepts any server certificate (the handshake's signatures are still
/// checked, so the session is with whoever holds the presented key).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
