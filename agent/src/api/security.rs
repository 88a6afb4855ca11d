//! The REST API's transport security and access rules, swappable on reload: the TLS
//! server configuration (certificate, key, client CA, `verify_client`), `allowlist`
//! (with `allowlist_include_members`) for the unsafe methods, and the extra response
//! headers. Also installs the members' REST client TLS (`ctl.*`, else `restapi.*`).
//!
//! A reload builds the new set first and swaps it in only if it is complete: a bad new
//! certificate keeps the old one serving (and says why). Connections already open keep
//! the session they negotiated; the listener is never closed.

use hyper::header::{HeaderName, HeaderValue};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::ServerConfig;
use warden_api::tls::{load_certs, load_key, load_roots, provider, TlsError};
use warden_config::{RestApiConfig, RestTls, VerifyClient};

/// Resolving an allowlist host name may take at most this long per request.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// One consistent set of rules; replaced whole on reload.
#[derive(Debug)]
pub struct Rules {
    pub tls: Option<Arc<ServerConfig>>,
    pub verify_client: VerifyClient,
    pub allowlist: Vec<String>,
    pub include_members: bool,
    /// `http_extra_headers`, then (over TLS) `https_extra_headers`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The server's current rules.
#[derive(Debug)]
pub struct Security {
    rules: RwLock<Arc<Rules>>,
    /// Whether the listener serves TLS: fixed for the life of the listener.
    pub tls: bool,
}

impl Security {
    /// Builds the rules from the config (errors name the key) and installs the members'
    /// client TLS. The daemon fails to start on an error.
    pub fn start(cfg: &RestApiConfig) -> Result<Arc<Self>, TlsError> {
        install_client(cfg)?;
        let rules = build(cfg)?;
        Ok(Arc::new(Self {
            tls: rules.tls.is_some(),
            rules: RwLock::new(Arc::new(rules)),
        }))
    }

    pub fn current(&self) -> Arc<Rules> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Swaps in the rules of a reloaded config; on any error keeps the running ones.
    pub fn reload(&self, cfg: &RestApiConfig) {
        if cfg.tls.is_some() != self.tls {
            tracing::warn!(
                key = "restapi.certfile",
                "reload: turning TLS on or off changes only when the agent restarts; keeping \
                 the running REST API settings"
            );
            return;
        }
        match build(cfg) {
            Ok(rules) => {
                *self
                    .rules
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules);
                tracing::info!(tls = self.tls, "REST API settings reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "reload: the new REST API TLS settings are unusable; keeping the running \
                 certificate and settings"
            ),
        }
        if let Err(e) = install_client(cfg) {
            tracing::error!(error = %e, "reload: the new REST client TLS settings are unusable; keeping the running ones");
        }
    }
}

/// The members' REST client: `ctl.*` else `restapi.*`.
fn install_client(cfg: &RestApiConfig) -> Result<(), TlsError> {
    let c = &cfg.client;
    let files = warden_api::tls::ClientFiles {
        cafile: c.cacert.as_ref().map(|k| k.path.clone()),
        certfile: c.certfile.as_ref().map(|k| k.path.clone()),
        keyfile: c.keyfile.as_ref().map(|k| k.path.clone()),
        keyfile_password: c.keyfile_password.as_ref().map(|s| s.0.clone()),
        insecure: c.insecure,
        source: warden_api::tls::ClientSource {
            cafile: c.cacert.as_ref().map_or("cacert", |k| k.key),
            certfile: c.certfile.as_ref().map_or("certfile", |k| k.key),
            keyfile: c.keyfile.as_ref().map_or("keyfile", |k| k.key),
        },
    };
    warden_api::client::set_tls(warden_api::client::ClientTls::from_files(&files)?);
    Ok(())
}

fn build(cfg: &RestApiConfig) -> Result<Rules, TlsError> {
    let tls = cfg.tls.as_ref().map(server_config).transpose()?;
    let mut headers = Vec::new();
    let extra = cfg
        .http_extra_headers
        .iter()
        .chain(cfg.https_extra_headers.iter().filter(|_| tls.is_some()));
    for (name, value) in extra {
        // The config reader checked both; a failure here is a bug, reported as config.
        let bad = |e: String| TlsError::Config {
            key: "restapi.http_extra_headers".into(),
            reason: format!("{name}: {e}"),
        };
        headers.push((
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?,
            HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?,
        ));
    }
    Ok(Rules {
        tls: tls.map(Arc::new),
        verify_client: cfg
            .tls
            .as_ref()
            .map_or(VerifyClient::None, |t| t.verify_client),
        allowlist: cfg.allowlist.clone(),
        include_members: cfg.allowlist_include_members,
        headers,
    })
}

/// The TLS server: certificate chain and key, and the client verifier `verify_client`
/// asks for (client certificates checked against `cafile`).
pub fn server_config(t: &RestTls) -> Result<ServerConfig, TlsError> {
    let certs = load_certs("restapi.certfile", &t.certfile)?;
    let (key_name, key_path) = match &t.keyfile {
        Some(k) => ("restapi.keyfile", k.as_path()),
        None => ("restapi.certfile", t.certfile.as_path()),
    };
    let key = load_key(
        key_name,
        key_path,
        t.keyfile_password.as_ref().map(|s| s.0.as_str()),
    )?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            key: "restapi.certfile".into(),
            reason: e.to_string(),
        })?;
    let builder = match (t.verify_client, &t.cafile) {
        (VerifyClient::None, _) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let roots = Arc::new(load_roots("restapi.cafile", ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if mode == VerifyClient::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::Config {
                key: "restapi.cafile".into(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        (_, None) => {
            return Err(TlsError::Config {
                key: "restapi.verify_client".into(),
                reason: "needs restapi.cafile".into(),
            })
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config {
            key: key_name.into(),
            reason: format!("the certificate and key do not form a usable pair: {e}"),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What the server knows about a connection, attached to each of its requests.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: IpAddr,
    /// The client presented a certificate that verified.
    pub client_cert: bool,
}

/// Patroni's access check on an unsafe method: `Some(reason)` to answer 403 with.
/// Order as Patroni's: the allowlist first, then the client certificate
/// (`verify_client` optional: required on these methods). Authentication follows.
pub async fn denied(
    rules: &Rules,
    conn: ConnInfo,
    cluster: Option<&warden_consensus::Cluster>,
) -> Option<&'static str> {
    if !rules.allowlist.is_empty() || rules.include_members {
        let mut allowed = Vec::new();
        allowed.extend(rules.allowlist.iter().cloned());
        if rules.include_members {
            for m in cluster.iter().flat_map(|c| c.members.values()) {
                if let Some(host) = url_host(&m.value.api_url) {
                    allowed.push(host);
                }
            }
        }
        if !allows(&allowed, conn.peer).await {
            return Some("Access is denied");
        }
    }
    if rules.tls.is_some() && rules.verify_client != VerifyClient::None && !conn.client_cert {
        return Some("client certificate required");
    }
    None
}

/// The host of `scheme://host:port/...` (IPv6 without brackets).
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Whether `ip` is one of the entries: an address, a network, or a host name resolving
/// to it (looked up now, bounded).
async fn allows(entries: &[String], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    for e in entries {
        if let Some(hit) = literal_match(e, ip) {
            if hit {
                return true;
            }
            continue;
        }
        let lookup = tokio::net::lookup_host((e.as_str(), 0));
        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => {
                if addrs.map(|a| canonical(a.ip())).any(|a| a == ip) {
                    return true;
                }
            }
            Ok(Err(err)) => tracing::warn!(host = %e, error = %err, "allowlist: cannot resolve"),
            Err(_) => tracing::warn!(host = %e, "allowlist: resolving timed out"),
        }
    }
    false
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, a dual-stack listener's view) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `Some(matches)` when the entry is an address or a network; `None`: a host name.
fn literal_match(entry: &str, ip: IpAddr) -> Option<bool> {
    if let Ok(a) = entry.parse::<IpAddr>() {
        return Some(canonical(a) == ip);
    }
    let (net, bits) = entry.split_once('/')?;
    let net: IpAddr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    Some(match (canonical(net), ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - bits.min(32)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - bits.min(128)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_addresses_match() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(literal_match("127.0.0.1", ip("127.0.0.1")), Some(true));
        assert_eq!(literal_match("127.0.0.2", ip("127.0.0.1")), Some(false));
        assert_eq!(literal_match("10.0.0.0/8", ip("10.9.8.7")), Some(true));
        assert_eq!(literal_match("10.0.0.0/8", ip("11.0.0.1")), Some(false));
        assert_eq!(literal_match("0.0.0.0/0", ip("1.2.3.4")), Some(true));
        assert_eq!(literal_match("fd00::/8", ip("fd12::1")), Some(true));
        assert_eq!(literal_match("fd00::/8", ip("fe12::1")), Some(false));
        assert_eq!(literal_match("db1.example", ip("1.2.3.4")), None);
        // A dual-stack listener sees IPv4 clients as mapped addresses.
        assert_eq!(canonical(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
    }

    #[test]
    fn member_hosts_from_api_urls() {
        assert_eq!(
            url_host("https://10.0.0.1:8008/patroni").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            url_host("http://[::1]:8008/patroni").as_deref(),
            Some("::1")
        );
        assert_eq!(url_host("http://db1:8008").as_deref(), Some("db1"));
        assert_eq!(url_host("nonsense"), None);
    }

    #[tokio::test]
    async fn host_names_resolve() {
        assert!(allows(&["localhost".into()], "127.0.0.1".parse().unwrap()).await);
        assert!(!allows(&["127.0.0.2".into()], "127.0.0.1".parse().unwrap()).await);
    }
}
