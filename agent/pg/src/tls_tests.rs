use super::*;

fn verify_full() -> ClientTls {
    ClientTls {
        sslmode: Some(SslMode::VerifyFull),
        sslrootcert: Some("/etc/pg/ca's.crt".into()),
        channel_binding: Some(ChannelBinding::Require),
        ..ClientTls::default()
    }
}

#[test]
fn conninfo_and_environment_carry_only_what_is_set() {
    assert_eq!(ClientTls::default().conninfo(), "");
    let tls = verify_full();
    assert_eq!(
        tls.conninfo(),
        " sslmode='verify-full' sslrootcert='/etc/pg/ca\\'s.crt' channel_binding='require'"
    );
    assert_eq!(
        tls.env(),
        vec![
            ("PGSSLMODE", "verify-full".to_owned()),
            ("PGSSLROOTCERT", "/etc/pg/ca's.crt".to_owned()),
            ("PGCHANNELBINDING", "require".to_owned()),
        ]
    );
    // Warden's own key only in strings for the agent's connections, only when set.
    assert_eq!(tls.sql_conninfo(), tls.conninfo());
    let allowing = ClientTls {
        allow_cleartext_password: true,
        ..tls
    };
    assert!(allowing
        .sql_conninfo()
        .ends_with(" warden_allow_cleartext=1"));
    assert!(!allowing.conninfo().contains("warden"));
}

#[test]
fn connection_strings_split_into_tls_settings_and_the_rest() {
    let text = format!(
        "host='10.0.0.1' port=5433 user = 'o\\'neil' password='p w'{} warden_allow_cleartext=1",
        verify_full().conninfo()
    );
    let (tls, rest) = split_conninfo(&text).unwrap();
    assert_eq!(
        tls,
        ClientTls {
            allow_cleartext_password: true,
            ..verify_full()
        }
    );
    assert_eq!(
        rest,
        " host='10.0.0.1' port='5433' user='o\\'neil' password='p w'"
    );
    let config: tokio_postgres::Config = rest.parse().unwrap();
    assert_eq!(config.get_user(), Some("o'neil"));
    assert!(split_conninfo("sslmode=verify-all").is_err());
    assert!(split_conninfo("gssencmode=require").is_err());
    assert!(parse_conninfo("host='open").is_err());
    assert!(parse_conninfo("host").is_err());
}

#[test]
fn verify_modes_need_a_root_certificate() {
    for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
        let tls = ClientTls {
            sslmode: Some(mode),
            ..ClientTls::default()
        };
        assert!(client_config(&tls).is_err(), "{mode:?}");
    }
    assert!(client_config(&ClientTls::default()).is_ok());
}

/// An authentication request as the server sends it: `R`, length 8, code.
fn auth(code: i32) -> Vec<u8> {
    let mut m = vec![b'R'];
    m.extend(8i32.to_be_bytes());
    m.extend(code.to_be_bytes());
    m
}

#[test]
fn a_cleartext_password_request_is_refused_unless_allowed() {
    // Plain after SSLRequest was declined, the request split across reads.
    let mut g = Guarded::new((), true, false);
    g.observe(b"N").unwrap();
    let req = auth(3);
    g.observe(&req[..4]).unwrap();
    let e = g.observe(&req[4..]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    // No SSLRequest (sslmode disable): the first message is the request.
    let mut g = Guarded::new((), false, false);
    assert!(g.observe(&auth(3)).is_err());
    // Allowed by the role's setting.
    let mut g = Guarded::new((), false, true);
    g.observe(&auth(3)).unwrap();
    // SCRAM and md5 pass; later bytes are not looked at.
    for code in [10, 5, 0] {
        let mut g = Guarded::new((), false, false);
        g.observe(&auth(code)).unwrap();
        g.observe(&auth(3)).unwrap();
    }
    // TLS accepted: the TLS layer's own guard watches, not the socket's.
    let mut g = Guarded::new((), true, false);
    g.observe(b"S").unwrap();
    g.observe(&auth(3)).unwrap();
    // An error message first is not a password request.
    let mut g = Guarded::new((), false, false);
    g.observe(b"E\0\0\0\x08").unwrap();
    g.observe(&auth(3)[5..]).unwrap();
}
