//! TLS and authentication policy of the agent's PostgreSQL connections, per role
//! (`postgresql.authentication.{superuser,replication,rewind}`), with libpq's meanings.
//!
//! libpq children (the walreceiver's `primary_conninfo`, `pg_basebackup`, `pg_rewind`,
//! `pg_receivewal`, `pg_dump`) get the settings as connection parameters or `PG*`
//! variables; the agent's own `tokio-postgres` connections get them through [`connect`],
//! a rustls connector implementing libpq's `sslmode` levels. Whatever cannot be honoured
//! exactly is refused when the config is read, never weakened.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const NAMES: &'static str = "disable, allow, prefer, require, verify-ca or verify-full";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// libpq's `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    Disable,
    Prefer,
    Require,
}

impl ChannelBinding {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
        }
    }
}

/// One role's connection security settings. `None` fields are libpq's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
    pub sslcrl: Option<PathBuf>,
    pub sslcrldir: Option<PathBuf>,
    /// `disable`, `allow` or `prefer` (the agent's own connections never use GSSAPI).
    pub gssencmode: Option<String>,
    pub channel_binding: Option<ChannelBinding>,
    /// Warden's `allow_cleartext_password`: the agent's own connections answer a
    /// server's request for a cleartext password (refused by default).
    pub allow_cleartext_password: bool,
}

/// A conninfo parameter that is Warden's, not libpq's: only in strings for [`connect`].
const ALLOW_CLEARTEXT: &str = "warden_allow_cleartext";

impl ClientTls {
    /// The effective mode (libpq's default is `prefer`).
    pub fn mode(&self) -> SslMode {
        self.sslmode.unwrap_or(SslMode::Prefer)
    }

    /// libpq connection parameters, each ` key='value'` (empty when all default).
    pub fn conninfo(&self) -> String {
        let mut s = String::new();
        for (key, value) in self.params() {
            s.push_str(&format!(
                " {key}='{}'",
                crate::settings::libpq_escape(&value)
            ));
        }
        s
    }

    /// [`Self::conninfo`] plus Warden's own parameters, for [`connect`] only.
    pub fn sql_conninfo(&self) -> String {
        let mut s = self.conninfo();
        if self.allow_cleartext_password {
            s.push_str(&format!(" {ALLOW_CLEARTEXT}=1"));
        }
        s
    }

    /// The same settings as libpq environment variables, for a child whose
    /// connection is given by options rather than a connection string.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.params()
            .into_iter()
            .map(|(key, value)| {
                let var = match key {
                    "sslmode" => "PGSSLMODE",
                    "sslrootcert" => "PGSSLROOTCERT",
                    "sslcert" => "PGSSLCERT",
                    "sslkey" => "PGSSLKEY",
                    "sslcrl" => "PGSSLCRL",
                    "sslcrldir" => "PGSSLCRLDIR",
                    "gssencmode" => "PGGSSENCMODE",
                    _ => "PGCHANNELBINDING",
                };
                (var, value)
            })
            .collect()
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            ("sslmode", self.sslmode.map(|m| m.as_str().to_owned())),
            ("sslrootcert", path(&self.sslrootcert)),
            ("sslcert", path(&self.sslcert)),
            ("sslkey", path(&self.sslkey)),
            ("sslcrl", path(&self.sslcrl)),
            ("sslcrldir", path(&self.sslcrldir)),
            ("gssencmode", self.gssencmode.clone()),
            (
                "channel_binding",
                self.channel_binding.map(|c| c.as_str().to_owned()),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// Why a TLS setting could not be loaded or a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("{what} {}: {e}", path.display())))
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{what} {}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn crls(tls: &ClientTls) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut files = Vec::new();
    if let Some(f) = &tls.sslcrl {
        files.push(f.clone());
    }
    if let Some(dir) = &tls.sslcrldir {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| TlsError(format!("sslcrldir {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            if entry.path().is_file() {
                files.push(entry.path());
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        let pem = read(&f, "sslcrl")?;
        for crl in CertificateRevocationListDer::pem_slice_iter(&pem) {
            out.push(crl.map_err(|e| TlsError(format!("sslcrl {}: {e}", f.display())))?);
        }
    }
    Ok(out)
}

/// The rustls client configuration for `tls`'s mode: no verification for
/// `allow`/`prefer`/`require` without `sslrootcert`; the chain against `sslrootcert`
/// for `verify-ca`, and (as libpq does) for the weaker modes when a root is given;
/// chain and host name for `verify-full`.
pub fn client_config(tls: &ClientTls) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match (&tls.sslrootcert, tls.mode()) {
        (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(TlsError(format!(
                "sslmode {} needs sslrootcert",
                tls.mode().as_str()
            )))
        }
        (None, _) => Arc::new(Unverified(provider.clone())),
        (Some(root), mode) => {
            let mut roots = RootCertStore::empty();
            for c in certs(root, "sslrootcert")? {
                roots
                    .add(c)
                    .map_err(|e| TlsError(format!("sslrootcert {}: {e}", root.display())))?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .with_crls(crls(tls)?)
                    .build()
                    .map_err(|e| TlsError(format!("sslrootcert {}: {e}", root.display())))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&tls.sslcert, &tls.sslkey) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "sslcert")?;
            let pem = read(key, "sslkey")?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| TlsError(format!("sslkey {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError(format!("sslcert/sslkey: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TlsError("sslcert and sslkey go together".into())),
    }
}

/// `allow`/`prefer`/`require` without a root certificate: encryption without knowing
/// who is at the other end (libpq's meaning). Handshake signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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

/// `verify-ca`: the chain (and CRLs) as for `verify-full`, but any host name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name last, after the chain and revocation: a name
        // mismatch therefore means everything else passed.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Splits a libpq key/value connection string (`key=value`, `key = 'quoted \' value'`).
pub fn parse_conninfo(text: &str) -> Result<Vec<(String, String)>, TlsError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(TlsError(format!(
                "connection string: missing \"=\" after {key:?}"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(TlsError("connection string: unterminated quote".into())),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// The settings [`connect`] takes out of a connection string, and what is left for
/// tokio-postgres.
fn split_conninfo(text: &str) -> Result<(ClientTls, String), TlsError> {
    let mut tls = ClientTls::default();
    let mut rest = String::new();
    let bad = |k: &str, v: &str| TlsError(format!("connection string: invalid {k} {v:?}"));
    for (key, value) in parse_conninfo(text)? {
        let path = || Some(PathBuf::from(&value));
        match key.as_str() {
            "sslmode" => {
                tls.sslmode = Some(SslMode::parse(&value).ok_or_else(|| bad(&key, &value))?)
            }
            "sslrootcert" => tls.sslrootcert = path(),
            "sslcert" => tls.sslcert = path(),
            "sslkey" => tls.sslkey = path(),
            "sslcrl" => tls.sslcrl = path(),
            "sslcrldir" => tls.sslcrldir = path(),
            "gssencmode" if value == "require" => {
                return Err(TlsError(
                    "gssencmode require: the agent's own connections cannot use GSSAPI encryption"
                        .into(),
                ))
            }
            "gssencmode" => tls.gssencmode = Some(value),
            "channel_binding" => {
                tls.channel_binding =
                    Some(ChannelBinding::parse(&value).ok_or_else(|| bad(&key, &value))?);
            }
            ALLOW_CLEARTEXT => tls.allow_cleartext_password = value == "1",
            _ => rest.push_str(&format!(
                " {key}='{}'",
                crate::settings::libpq_escape(&value)
            )),
        }
    }
    Ok((tls, rest))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The socket under a connection: TCP, or a Unix socket (never TLS, as in libpq).
pub struct Socket(Box<dyn Io>);

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Socket")
    }
}

/// What [`Guarded`] still waits to see of the server's bytes.
#[derive(Debug, Clone, Copy)]
enum Watch {
    /// The one-byte answer to SSLRequest: `S` (TLS follows; the TLS layer's own guard
    /// watches) or `N` (plain text follows).
    SslReply,
    /// The first message after the startup packet: type, length, auth code.
    Header([u8; 9], usize),
    Done,
}

/// A stream that fails the connection when the server's first message asks for a
/// cleartext password (AuthenticationCleartextPassword) and that is not allowed.
/// tokio-postgres answers only the first authentication request a server makes, so
/// looking at the first message is enough.
pub struct Guarded<T> {
    inner: T,
    watch: Watch,
    allow_cleartext: bool,
}

impl<T> std::fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

impl<T> Guarded<T> {
    fn new(inner: T, ssl_reply_first: bool, allow_cleartext: bool) -> Self {
        let watch = if allow_cleartext {
            Watch::Done
        } else if ssl_reply_first {
            Watch::SslReply
        } else {
            Watch::Header([0; 9], 0)
        };
        Self {
            inner,
            watch,
            allow_cleartext,
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while let Some((&first, rest)) = bytes.split_first() {
            match &mut self.watch {
                Watch::Done => return Ok(()),
                Watch::SslReply => {
                    self.watch = if first == b'N' {
                        Watch::Header([0; 9], 0)
                    } else {
                        Watch::Done
                    };
                    bytes = rest;
                }
                Watch::Header(buf, have) => {
                    let take = (9 - *have).min(bytes.len());
                    buf[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if buf[0] != b'R' {
                        self.watch = Watch::Done;
                    } else if *have == 9 {
                        let code = i32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
                        self.watch = Watch::Done;
                        if code == 3 && !self.allow_cleartext {
                            return Err(io::Error::new(
                                io::ErrorKind::PermissionDenied,
                                "the server asked for a cleartext password; refused \
                                 (set allow_cleartext_password for this role to allow it)",
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let me = &mut *self;
        me.observe(&buf.filled()[before..])?;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type RustlsStream = tokio_rustls::client::TlsStream<Guarded<Socket>>;

impl tokio_postgres::tls::TlsStream for Guarded<RustlsStream> {
    /// `tls-server-end-point`: the hash of the server's certificate (SHA-256, right for
    /// certificates signed with SHA-256 or SHA-1; a mismatch fails SCRAM, never passes).
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        use sha2::Digest;
        let (_, conn) = self.inner.get_ref();
        match conn.peer_certificates().and_then(<[_]>::first) {
            Some(cert) => tokio_postgres::tls::ChannelBinding::tls_server_end_point(
                sha2::Sha256::digest(cert.as_ref()).to_vec(),
            ),
            None => tokio_postgres::tls::ChannelBinding::none(),
        }
    }
}

/// tokio-postgres's TLS hook for one connection: rustls with the role's verifier.
#[derive(Debug)]
pub struct Connector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    allow_cleartext: bool,
}

impl tokio_postgres::tls::TlsConnect<Guarded<Socket>> for Connector {
    type Stream = Guarded<RustlsStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Stream>> + Send>>;

    fn connect(self, stream: Guarded<Socket>) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(Guarded::new(tls, false, self.allow_cleartext))
        })
    }
}

/// A live connection's driver, to be spawned.
pub type Connection = tokio_postgres::Connection<Guarded<Socket>, Guarded<RustlsStream>>;

/// Connects as libpq would with `conninfo` (which may carry the TLS parameters of
/// [`ClientTls::sql_conninfo`]). The caller bounds the time.
pub async fn connect(conninfo: &str) -> Result<(tokio_postgres::Client, Connection), TlsError> {
    let (tls, rest) = split_conninfo(conninfo)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| TlsError(format!("connection string: {e}")))?;
    let (host, port) = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(h), p) => (h.clone(), p.copied().unwrap_or(5432)),
        (None, p) => (
            tokio_postgres::config::Host::Unix("/var/run/postgresql".into()),
            p.copied().unwrap_or(5432),
        ),
    };
    let (socket, domain, unix) = match &host {
        tokio_postgres::config::Host::Tcp(h) => {
            let s = tokio::net::TcpStream::connect((h.as_str(), port))
                .await
                .map_err(|e| TlsError(format!("cannot connect to {h}:{port}: {e}")))?;
            let _ = s.set_nodelay(true);
            (Socket(Box::new(s)), h.clone(), false)
        }
        tokio_postgres::config::Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            let s = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|e| TlsError(format!("cannot connect to {}: {e}", path.display())))?;
            (Socket(Box::new(s)), "localhost".into(), true)
        }
    };
    // libpq never uses TLS on a Unix socket, whatever the mode.
    let mode = if unix { SslMode::Disable } else { tls.mode() };
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        // tokio-postgres has no `allow` (plain first): trying TLS first is stronger.
        SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    config.channel_binding(match tls.channel_binding {
        Some(ChannelBinding::Disable) => tokio_postgres::config::ChannelBinding::Disable,
        Some(ChannelBinding::Require) => tokio_postgres::config::ChannelBinding::Require,
        _ => tokio_postgres::config::ChannelBinding::Prefer,
    });
    let client_config = if mode == SslMode::Disable {
        // Never used, but the connector needs one.
        client_config(&ClientTls::default())?
    } else {
        client_config(&tls)?
    };
    // A name that is not a valid DNS name or IP address can only be used where the
    // name is not checked.
    let name = match ServerName::try_from(domain.clone()) {
        Ok(n) => n,
        Err(_) if mode != SslMode::VerifyFull => ServerName::try_from("localhost")
            .map_err(|e| TlsError(e.to_string()))?
            .to_owned(),
        Err(e) => return Err(TlsError(format!("host {domain:?}: {e}"))),
    };
    let connector = Connector {
        config: Arc::new(client_config),
        name,
        allow_cleartext: tls.allow_cleartext_password,
    };
    let stream = Guarded::new(
        socket,
        mode != SslMode::Disable,
        tls.allow_cleartext_password,
    );
    config
        .connect_raw(stream, connector)
        .await
        .map_err(|e| TlsError(e.to_string()))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
