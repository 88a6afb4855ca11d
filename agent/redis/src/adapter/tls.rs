//! TLS for the Redis engine, on the workspace's one TLS stack (rustls with the ring
//! provider, chosen explicitly so no process-wide default is needed): the settings of
//! `redis-server`'s own `tls-port` ([`RedisTls`]), the client side the agent uses for
//! its own server, for other members and for RDB fetches ([`client_config`],
//! [`connect`]), and the server side of the Sentinel port ([`server_config`]).
//!
//! Nothing falls back to plain text: when TLS is configured a file that cannot be read
//! or parsed is an error naming the setting, and a handshake that fails is an error
//! naming rustls's reason (e.g. `invalid peer certificate: UnknownIssuer`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// Which clients `redis-server` asks for a certificate (`tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    /// Every client (and replica) must present a certificate from the CA.
    Yes,
    /// A certificate is checked when presented; not required.
    Optional,
    /// No client certificate is asked for (the ACL password alone).
    No,
}

impl AuthClients {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthClients::Yes => "yes",
            AuthClients::Optional => "optional",
            AuthClients::No => "no",
        }
    }
}

/// TLS of the local `redis-server`: when set, its port speaks only TLS (`port 0`,
/// `tls-port <port>`), replicas reach their primary over TLS (`tls-replication yes`),
/// and the agent's own connections verify the server against `ca_file`.
#[derive(Debug, Clone)]
pub struct RedisTls {
    /// `tls-cert-file`: the server's certificate (PEM); also what the server presents
    /// as a replica to its primary, and what the agent presents as a client unless
    /// `client_cert_file` is given.
    pub cert_file: PathBuf,
    /// `tls-key-file` (PEM, unencrypted).
    pub key_file: PathBuf,
    /// `tls-ca-cert-file`: the authority servers and clients are verified against.
    pub ca_file: PathBuf,
    /// The agent's client certificate and key, when it should not use the server's.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// `tls-auth-clients`.
    pub auth_clients: AuthClients,
}

impl RedisTls {
    /// The agent's client configuration: verifies servers against `ca_file`, presents
    /// the client (or server) certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let (cert, key, names) = match (&self.client_cert_file, &self.client_key_file) {
            (Some(c), Some(k)) => (c, k, ("tls.client_cert_file", "tls.client_key_file")),
            (None, None) => (
                &self.cert_file,
                &self.key_file,
                ("tls.cert_file", "tls.key_file"),
            ),
            _ => {
                return Err(TlsError {
                    setting: "tls.client_cert_file".into(),
                    why: "tls.client_cert_file and tls.client_key_file go together".into(),
                })
            }
        };
        client_config(
            ("tls.ca_file", &self.ca_file),
            Some(((names.0, cert.as_path()), (names.1, key.as_path()))),
        )
    }

    /// Checks every file parses (the server would otherwise refuse to start with a
    /// message only in its log).
    pub fn validate(&self) -> Result<(), TlsError> {
        self.client_config()?;
        server_config(
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
            None,
        )?;
        Ok(())
    }
}

/// A TLS setting that cannot be honoured, or a handshake that failed.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {why}")]
pub struct TlsError {
    /// The setting (or, for a handshake, the address) the problem is about.
    pub setting: String,
    pub why: String,
}

fn fail(setting: &str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError {
        setting: setting.into(),
        why: format!("{}: {e}", path.display()),
    }
}

/// The one crypto provider: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| fail(setting, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(setting, path, e))?;
    if certs.is_empty() {
        return Err(fail(setting, path, "no certificate in the file"));
    }
    Ok(certs)
}

fn key(setting: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| fail(setting, path, e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| fail(setting, path, e))
}

fn roots(setting: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(setting, path)? {
        roots.add(c).map_err(|e| fail(setting, path, e))?;
    }
    Ok(roots)
}

/// A file and the setting that names it (for errors): `("tls.ca_file", path)`.
pub type SettingFile<'a> = (&'a str, &'a Path);

/// A client configuration verifying servers against the CA in `ca` (setting name,
/// path), presenting `identity` ((cert setting, path), (key setting, path)) if given.
pub fn client_config(
    ca: SettingFile<'_>,
    identity: Option<(SettingFile<'_>, SettingFile<'_>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(ca.0, ca.1, e))?
        .with_root_certificates(roots(ca.0, ca.1)?);
    let config = match identity {
        Some(((cs, cp), (ks, kp))) => builder
            .with_client_auth_cert(certs(cs, cp)?, key(ks, kp)?)
            .map_err(|e| fail(ks, kp, e))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A server configuration with `cert`/`key`; with `client_ca` ((setting, path),
/// required), client certificates are verified against it (required or optional).
pub fn server_config(
    cert: SettingFile<'_>,
    key_file: SettingFile<'_>,
    client_ca: Option<(SettingFile<'_>, bool)>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(cert.0, cert.1, e))?;
    let builder = match client_ca {
        Some(((setting, path), required)) => {
            let mut v = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(setting, path)?),
                provider(),
            );
            if !required {
                v = v.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(v.build().map_err(|e| fail(setting, path, e))?)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs(cert.0, cert.1)?, key(key_file.0, key_file.1)?)
        .map_err(|e| fail(key_file.0, key_file.1, e))?;
    Ok(Arc::new(config))
}

/// A TCP connection to `host:port` and a TLS handshake over it, verifying the server's
/// certificate for `host` (a name or an IP address), both within `timeout`.
pub async fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let run = async {
        let tcp = TcpStream::connect((host, port)).await?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake: {e}")))
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("TLS connection to {host}:{port}: no handshake within {timeout:?}"),
        )
    })?
}
