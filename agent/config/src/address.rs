//! `host:port` parsing in Patroni's forms: `10.0.0.1:8008`, `[::1]:8008`, `::1:8008`
//! (the port is after the last colon), `:8008` (all addresses), and PostgreSQL's
//! comma-separated `listen` (`127.0.0.1,::1:5432`). Errors are plain reasons; the
//! caller adds the key path.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use super::types::HostPort;

/// Hosts that mean "every local address": fine to listen on, useless to connect to.
pub(super) fn is_wildcard(host: &str) -> bool {
    matches!(host, "" | "*" | "0.0.0.0" | "::" | "0:0:0:0:0:0:0:0")
}

/// Splits at the last colon and removes IPv6 brackets from the host.
fn split(text: &str) -> Result<(&str, &str), String> {
    let text = text.trim();
    if text.contains("://") {
        return Err(format!(
            "expected host:port without a scheme, got \"{text}\""
        ));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("expected host:port, got \"{text}\" (no port)"));
    };
    Ok((strip_brackets(host), port))
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

pub(super) fn parse_port(text: &str) -> Result<u16, String> {
    // Digits only: `u16::from_str` would also take a leading `+`.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_port(text));
    }
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(invalid_port(text)),
    }
}

fn invalid_port(text: &str) -> String {
    format!("invalid port \"{text}\" (expected 1-65535)")
}

/// Rejects what cannot be a host name or address (spaces, slashes, stray brackets).
fn check_host(host: &str) -> Result<(), String> {
    let bad = host
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '/' | '[' | ']' | ',' | '@' | '?' | '#'));
    if bad {
        Err(format!("invalid host \"{host}\""))
    } else {
        Ok(())
    }
}

/// An address other members connect to. Wildcards are refused: a member key with
/// `0.0.0.0` in it would send every peer to its own machine.
pub(super) fn parse_connect_address(text: &str) -> Result<HostPort, String> {
    let (host, port) = split(text)?;
    let port = parse_port(port)?;
    if is_wildcard(host) {
        let shown = if host.is_empty() { "(empty)" } else { host };
        return Err(format!(
            "host {shown} is a wildcard; give an address other members can connect to"
        ));
    }
    check_host(host)?;
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

/// A REST API listen address. Returns the socket address and the host as written
/// (used as the default connect address when it is a concrete host).
pub(super) fn parse_listen(text: &str) -> Result<(SocketAddr, String), String> {
    let (host, port) = split(text)?;
    let port = parse_port(port)?;
    check_host(host)?;
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => resolve(host, port)?,
        },
    };
    Ok((SocketAddr::new(ip, port), host.to_owned()))
}

/// Binding to a host name needs an address now; like Patroni (which binds the name),
/// take the first one the system resolver gives.
fn resolve(host: &str, port: u16) -> Result<IpAddr, String> {
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("host \"{host}\" resolves to no address")),
        Err(e) => Err(format!("cannot resolve host \"{host}\": {e}")),
    }
}

/// `postgresql.listen`: one or more comma-separated hosts, then `:port`.
pub(super) fn parse_pg_listen(text: &str) -> Result<(Vec<String>, u16), String> {
    let (hosts, port) = split(text)?;
    let port = parse_port(port)?;
    let mut out = Vec::new();
    for host in hosts.split(',') {
        let host = strip_brackets(host.trim());
        if host.is_empty() {
            return Err(format!("empty host in \"{}\"", text.trim()));
        }
        check_host(host)?;
        out.push(host.to_owned());
    }
    Ok((out, port))
}

/// An etcd endpoint; the port defaults to etcd's client port 2379 as in Patroni.
pub(super) fn parse_etcd_host(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty host".to_owned());
    }
    let has_port = match text.rsplit_once(':') {
        // A bare IPv6 address has colons but no port: `::1`.
        Some((host, _)) if host.contains(':') && !host.ends_with(']') => {
            text.parse::<IpAddr>().is_err()
        }
        Some(_) => true,
        None => false,
    };
    let hp = if has_port {
        let (host, port) = split(text)?;
        HostPort {
            host: host.to_owned(),
            port: parse_port(port)?,
        }
    } else {
        if text.contains("://") {
            return Err(format!(
                "expected host:port without a scheme, got \"{text}\""
            ));
        }
        HostPort {
            host: strip_brackets(text).to_owned(),
            port: 2379,
        }
    };
    if hp.host.is_empty() {
        return Err(format!("missing host in \"{text}\""));
    }
    check_host(&hp.host)?;
    Ok(hp.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port("5432"), Ok(5432));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["0", "65536", "99999", "", "-1", "+5", "12a", "99999999999"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_port("99999").unwrap_err(),
            "invalid port \"99999\" (expected 1-65535)"
        );
    }

    #[test]
    fn connect_addresses() {
        let hp = parse_connect_address("10.0.0.1:8008").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("10.0.0.1", 8008));
        let hp = parse_connect_address("[::1]:5432").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("::1", 5432));
        let hp = parse_connect_address("fe80::1:5432").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("fe80::1", 5432));
        let hp = parse_connect_address("db1.example.com:5432").unwrap();
        assert_eq!(hp.to_string(), "db1.example.com:5432");
        assert!(parse_connect_address("0.0.0.0:5432")
            .unwrap_err()
            .contains("wildcard"));
        assert!(parse_connect_address(":5432")
            .unwrap_err()
            .contains("wildcard"));
        assert!(parse_connect_address("host")
            .unwrap_err()
            .contains("no port"));
        assert!(parse_connect_address("http://h:1")
            .unwrap_err()
            .contains("scheme"));
        assert!(parse_connect_address("a b:1")
            .unwrap_err()
            .contains("invalid host"));
    }

    #[test]
    fn listen_addresses() {
        let (addr, host) = parse_listen(":8008").unwrap();
        assert_eq!(addr, "0.0.0.0:8008".parse().unwrap());
        assert_eq!(host, "");
        let (addr, _) = parse_listen("127.0.0.1:8008").unwrap();
        assert_eq!(addr, "127.0.0.1:8008".parse().unwrap());
        let (addr, _) = parse_listen("[::]:8008").unwrap();
        assert_eq!(addr, "[::]:8008".parse().unwrap());
        let (addr, _) = parse_listen("::1:8008").unwrap();
        assert_eq!(addr, "[::1]:8008".parse().unwrap());
        let (addr, host) = parse_listen("localhost:8008").unwrap();
        assert_eq!(addr, "127.0.0.1:8008".parse().unwrap());
        assert_eq!(host, "localhost");
        assert!(parse_listen("127.0.0.1:99999").is_err());
    }

    #[test]
    fn pg_listen_forms() {
        assert_eq!(
            parse_pg_listen("127.0.0.1,::1:5432").unwrap(),
            (vec!["127.0.0.1".to_owned(), "::1".to_owned()], 5432)
        );
        assert_eq!(
            parse_pg_listen("*:5433").unwrap(),
            (vec!["*".to_owned()], 5433)
        );
        assert_eq!(
            parse_pg_listen("[::1]:5432").unwrap(),
            (vec!["::1".to_owned()], 5432)
        );
        assert!(parse_pg_listen("127.0.0.1,:5432")
            .unwrap_err()
            .contains("empty host"));
        assert!(parse_pg_listen("127.0.0.1").is_err());
    }

    #[test]
    fn etcd_hosts() {
        assert_eq!(parse_etcd_host("127.0.0.1:2379").unwrap(), "127.0.0.1:2379");
        assert_eq!(parse_etcd_host(" etcd1 ").unwrap(), "etcd1:2379");
        assert_eq!(parse_etcd_host("::1").unwrap(), "[::1]:2379");
        assert_eq!(parse_etcd_host("[::1]:2380").unwrap(), "[::1]:2380");
        assert!(parse_etcd_host("http://127.0.0.1:2379")
            .unwrap_err()
            .contains("scheme"));
        assert!(parse_etcd_host("h:0").is_err());
        assert!(parse_etcd_host(":2379").is_err());
    }
}
