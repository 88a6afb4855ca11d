//! Certificates for tests that run etcd, the REST API and PostgreSQL over TLS.
//!
//! One throw-away certificate authority per test signs a server certificate
//! valid for `127.0.0.1` and `localhost` (shared by every loopback process: etcd,
//! the agents' REST API, PostgreSQL) and client certificates whose common name
//! is the user they authenticate as (etcd maps a client certificate's CN to an
//! etcd user; PostgreSQL's `cert` method maps it to a role). A second, unrelated
//! authority lets a test prove that a certificate from elsewhere is refused.
//!
//! Files are PEM, keys PKCS#8, all mode 0600 and owned by `postgres` when the
//! test runs as root (PostgreSQL refuses a key file others can read, and the
//! agents run as `postgres`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::workdir::chown_to_postgres;

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test certificate authority: its certificate on disk and the means to sign more.
pub struct TestCa {
    dir: PathBuf,
    name: String,
    /// The CA certificate (PEM), the file every verifying side trusts.
    pub cert: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new authority named `name`, its files under `dir` (created).
    pub fn new(dir: &Path, name: &str) -> Result<TestCa> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = params.self_signed(&key).context("self-signing the CA")?;
        let cert_path = dir.join(format!("{name}-ca.crt"));
        write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
        Ok(TestCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            cert: cert_path,
            issuer: Issuer::new(params, key),
        })
    }

    /// A server certificate for loopback (`127.0.0.1`, `::1`, `localhost`) that
    /// also serves as a client certificate with common name `cn`.
    pub fn server(&self, cn: &str) -> Result<CertFiles> {
        self.leaf(
            cn,
            &["127.0.0.1", "::1", "localhost"],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client-only certificate with common name `cn`.
    pub fn client(&self, cn: &str) -> Result<CertFiles> {
        self.leaf(cn, &[], &[ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn leaf(
        &self,
        cn: &str,
        sans: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Result<CertFiles> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages.to_vec();
        let key = KeyPair::generate().context("generating a leaf key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing the certificate for {cn}"))?;
        let stem = format!("{}-{}", self.name, sanitize(cn));
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
        };
        write_file(&files.cert, cert.pem().as_bytes(), 0o644)?;
        write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        Ok(files)
    }
}

/// What a cluster running over TLS uses: one authority, one loopback server
/// certificate every process serves (etcd, REST, PostgreSQL), the kit's own
/// client certificate (CN `root`: etcd's root user, so the kit's reads pass
/// RBAC), and a foreign authority for negative tests.
#[derive(Debug)]
pub struct TlsMaterial {
    pub ca: TestCa,
    pub server: CertFiles,
    pub root_client: CertFiles,
    pub foreign: TestCa,
}

impl TlsMaterial {
    pub fn create(dir: &Path) -> Result<TlsMaterial> {
        let ca = TestCa::new(dir, "cluster")?;
        let server = ca.server("loopback")?;
        let root_client = ca.client("root")?;
        let foreign = TestCa::new(dir, "foreign")?;
        Ok(TlsMaterial {
            ca,
            server,
            root_client,
            foreign,
        })
    }
}

fn sanitize(cn: &str) -> String {
    cn.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    chown_to_postgres(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_signs_server_and_client_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "site").unwrap();
        let server = ca.server("node-1").unwrap();
        let client = ca.client("root").unwrap();
        for f in [&ca.cert, &server.cert, &client.cert] {
            let pem = std::fs::read_to_string(f).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        }
        let key = std::fs::read_to_string(&server.key).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let mode = std::fs::metadata(&client.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // openssl, independent of rcgen, agrees the chain verifies.
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&ca.cert)
            .arg(&server.cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let other = TestCa::new(dir.path(), "elsewhere").unwrap();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&other.cert)
            .arg(&server.cert)
            .output()
            .unwrap();
        assert!(!out.status.success(), "a foreign CA must not verify");
    }
}
