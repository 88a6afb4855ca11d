//! TLS end to end with real `redis-server`s: a TLS-only primary and replica (the
//! replica replicates over TLS, the agent observes, fetches an RDB and promotes over
//! TLS with its ACL user), refusals of plain text and of a foreign authority, and the
//! Sentinel port over TLS. Certificates come from throw-away authorities made here.

mod common;

use common::{dynamic, free_port, start, Deadline, Node};
use redis::AsyncCommands;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_ha::{Database, RoleConfig, StopMode};
use warden_redis::adapter::{tls, AuthClients, Redis, RedisTls};
use warden_redis::rdb::{fetch_rdb, verify_rdb, FetchError, FetchOptions};
use warden_redis::sentinel::{EventHub, Instance, SentinelConfig, SentinelTls, SentinelView};

const WAIT: Duration = Duration::from_secs(20);
const USER: &str = "warden";
const PASSWORD: &str = "tls pw";

/// An authority and a loopback certificate it signed (server and client use).
struct Authority {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn authority(dir: &Path, name: &str) -> Authority {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);

    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, USER);
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let a = Authority {
        ca: dir.join(format!("{name}-ca.crt")),
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&a.ca, ca_cert.pem()).unwrap();
    std::fs::write(&a.cert, cert.pem()).unwrap();
    std::fs::write(&a.key, key.serialize_pem()).unwrap();
    a
}

fn redis_tls(a: &Authority) -> RedisTls {
    RedisTls {
        cert_file: a.cert.clone(),
        key_file: a.key.clone(),
        ca_file: a.ca.clone(),
        client_cert_file: None,
        client_key_file: None,
        auth_clients: AuthClients::Yes,
    }
}

/// A member whose server speaks only TLS, with the ACL user.
fn tls_node(a: &Authority) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut s = common::settings(dir.path(), port);
    s.username = Some(USER.into());
    s.password = Some(PASSWORD.into());
    s.parameters.insert("shutdown-timeout".into(), "1".into());
    // A backup from the replica should not wait for replicas arriving together.
    s.parameters
        .insert("repl-diskless-sync-delay".into(), "0".into());
    s.tls = Some(redis_tls(a));
    Node {
        redis: Redis::new(s).unwrap(),
        port,
        password: Some(PASSWORD.into()),
        username: Some(USER.into()),
        dir,
    }
}

/// A client connection over TLS as the ACL user.
async fn tls_client(
    config: Arc<rustls::ClientConfig>,
    port: u16,
) -> redis::aio::MultiplexedConnection {
    let stream = tls::connect(config, "127.0.0.1", port, Duration::from_secs(5))
        .await
        .unwrap();
    let auth = redis::RedisConnectionInfo::default()
        .set_skip_set_lib_name()
        .set_username(USER)
        .set_password(PASSWORD);
    let cfg =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
    let (con, driver) = redis::aio::MultiplexedConnection::new_with_config(&auth, stream, cfg)
        .await
        .unwrap();
    tokio::spawn(driver);
    con
}

/// What a plain-text client gets from a TLS-only port after `PING`: the bytes read
/// until the server closes (it never answers RESP).
async fn plain_ping(port: u16) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let _ = s.write_all(b"*1\r\n$4\r\nPING\r\n").await;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("a plain client was neither answered nor closed: {got:?}"),
        }
    }
}

fn assert_not_resp(got: &[u8]) {
    assert!(
        !got.starts_with(b"+") && !got.starts_with(b"-") && !got.starts_with(b"$"),
        "plain text was answered in RESP: {:?}",
        String::from_utf8_lossy(got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn tls_only_primary_and_replica_replicate_fetch_and_promote() {
    let pki = tempfile::tempdir().unwrap();
    let good = authority(pki.path(), "good");
    let other = authority(pki.path(), "other");

    // The agent bootstraps and observes its primary over TLS, as its ACL user.
    let mut a = tls_node(&good);
    let mut b = tls_node(&good);
    a.redis.bootstrap(&dynamic()).await.unwrap();
    let conf = std::fs::read_to_string(a.redis.settings().conf_path()).unwrap();
    assert!(
        conf.contains("port 0\n") && conf.contains("tls-replication yes\n"),
        "{conf}"
    );
    let la = a.redis.observe(false, &dynamic()).await;
    assert!(la.running && la.db().unwrap().writable);

    // The replica copies and follows over TLS (no plain port exists to fall back to).
    b.redis.clone_from("127.0.0.1", a.port, WAIT).await.unwrap();
    b.redis
        .configure(
            &RoleConfig::Replica {
                source: Some(a.source("a")),
            },
            None,
            &dynamic(),
        )
        .unwrap();
    start(&mut b).await;
    let client_config = redis_tls(&good).client_config().unwrap();
    let mut ca = tls_client(client_config.clone(), a.port).await;
    let () = ca.set("over-tls", 7).await.unwrap();
    let mut cb = tls_client(client_config.clone(), b.port).await;
    let deadline = Deadline::new(WAIT, "b streams from a over TLS");
    loop {
        let l = b.redis.observe(false, &dynamic()).await;
        let got: Option<i64> = cb.get("over-tls").await.unwrap();
        if l.db().is_some_and(|d| d.streaming && !d.writable) && got == Some(7) {
            break;
        }
        deadline.tick().await;
    }
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut cb)
        .await
        .unwrap();
    assert!(text.contains("master_link_status:up"), "{text}");

    // Plain TCP to a TLS port gets no RESP answer.
    assert_not_resp(&plain_ping(a.port).await);

    // A client trusting another authority refuses the server, saying why.
    let mut wrong = common::settings(b.dir.path(), b.port);
    wrong.username = Some(USER.into());
    wrong.password = Some(PASSWORD.into());
    wrong.tls = Some(RedisTls {
        ca_file: other.ca.clone(),
        ..redis_tls(&good)
    });
    let e = Redis::new(wrong)
        .unwrap()
        .info(Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // A client whose certificate another authority signed is refused by the server.
    let foreign = redis_tls(&other);
    let foreign = tls::client_config(
        ("ca", &good.ca),
        Some((("cert", &foreign.cert_file), ("key", &foreign.key_file))),
    )
    .unwrap();
    let refused = async {
        let stream = tls::connect(foreign, "127.0.0.1", a.port, Duration::from_secs(5)).await?;
        let auth = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        let cfg =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        let (mut con, driver) =
            redis::aio::MultiplexedConnection::new_with_config(&auth, stream, cfg)
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(driver);
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map_err(std::io::Error::other)
    };
    assert!(
        refused.await.is_err(),
        "a foreign client certificate was accepted"
    );

    // An RDB from the TLS replica, verified; a foreign CA fails naming the problem.
    let mut opts = FetchOptions::new("127.0.0.1", b.port);
    opts.auth = Some(warden_redis::rdb::fetch::Auth {
        username: Some(USER.into()),
        password: PASSWORD.into(),
    });
    opts.deadline = WAIT;
    opts.tls = Some(client_config.clone());
    let mut rdb = Vec::new();
    let fetched = fetch_rdb(&opts, &mut rdb).await.unwrap();
    assert_eq!(fetched.bytes, rdb.len() as u64);
    assert_eq!(verify_rdb(&rdb).unwrap().crc, fetched.crc);
    opts.tls = Some(
        RedisTls {
            ca_file: other.ca.clone(),
            ..redis_tls(&good)
        }
        .client_config()
        .unwrap(),
    );
    let e = fetch_rdb(&opts, &mut Vec::new()).await.unwrap_err();
    assert!(
        matches!(&e, FetchError::Connect { .. }) && e.to_string().contains("UnknownIssuer"),
        "{e}"
    );

    // Promotion over TLS.
    a.redis.stop(StopMode::Fast, WAIT).await.unwrap();
    b.redis.promote(WAIT).await.unwrap();
    let lb = b.redis.observe(false, &dynamic()).await;
    assert!(lb.db().unwrap().writable, "{lb:?}");
    let () = cb.set("after-promote", 1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_port_speaks_only_tls() {
    let pki = tempfile::tempdir().unwrap();
    let good = authority(pki.path(), "good");
    let other = authority(pki.path(), "other");
    let config = SentinelConfig {
        tls: Some(SentinelTls {
            cert_file: good.cert.clone(),
            key_file: good.key.clone(),
            client_ca_file: Some(good.ca.clone()),
            require_client_cert: true,
        }),
        ..SentinelConfig::default()
    };
    let view = SentinelView {
        fresh: true,
        primary: Some(Instance {
            ip: "10.0.0.1".into(),
            port: 6379,
            run_id: "a".repeat(40),
        }),
        primary_since: Some(Instant::now()),
        ..SentinelView::unknown("mymaster", "b".repeat(40))
    };
    let (_tx, rx) = tokio::sync::watch::channel(view);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(warden_redis::sentinel::serve(
        listener,
        config,
        rx,
        EventHub::new(16),
        cancel.clone(),
    ));

    let ask = b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n";
    let client = |ca: &Path, id: &Authority| {
        tls::client_config(("ca", ca), Some((("cert", &id.cert), ("key", &id.key)))).unwrap()
    };
    let mut s = tls::connect(
        client(&good.ca, &good),
        "127.0.0.1",
        port,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    s.write_all(ask).await.unwrap();
    let expect = b"*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n";
    let mut got = vec![0u8; expect.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, expect);

    // Plain RESP gets no answer; a foreign client certificate is refused; a client
    // trusting another authority refuses the port, naming the problem.
    assert_not_resp(&plain_ping(port).await);
    let foreign = async {
        let mut s = tls::connect(
            client(&good.ca, &other),
            "127.0.0.1",
            port,
            Duration::from_secs(5),
        )
        .await?;
        s.write_all(ask).await?;
        let mut b = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => Ok(b[..n].to_vec()),
            Ok(Ok(_)) => Err(std::io::Error::other("closed")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("no answer")),
        }
    };
    assert!(
        foreign.await.is_err(),
        "a foreign client certificate was answered"
    );
    let e = tls::connect(
        client(&other.ca, &good),
        "127.0.0.1",
        port,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");

    cancel.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn unusable_tls_settings_are_errors_naming_them() {
    let pki = tempfile::tempdir().unwrap();
    let good = authority(pki.path(), "good");
    let mut s = common::settings(pki.path(), free_port());
    s.tls = Some(RedisTls {
        ca_file: pki.path().join("missing.crt"),
        ..redis_tls(&good)
    });
    let e = Redis::new(s).unwrap_err().to_string();
    assert!(
        e.contains("tls.ca_file") && e.contains("missing.crt"),
        "{e}"
    );
    let config = SentinelConfig {
        tls: Some(SentinelTls {
            cert_file: good.cert.clone(),
            key_file: good.ca.clone(),
            client_ca_file: None,
            require_client_cert: false,
        }),
        ..SentinelConfig::default()
    };
    let (_tx, rx) = tokio::sync::watch::channel(SentinelView::unknown("m", "b".repeat(40)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = warden_redis::sentinel::serve(
        listener,
        config,
        rx,
        EventHub::new(4),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("sentinel.tls.key_file"), "{e}");
}
