//! The `redis` section: a member running `redis-server` instead of PostgreSQL.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::fixtures::*;
use crate::redis::{AuthClientsConfig, RedisConfig};
use crate::HostPort;

/// The smallest valid Redis member; tests append keys to the `redis` section (the last
/// one), indented by two spaces.
const BASE: &str = r#"
scope: demo
name: node1
restapi:
  listen: 127.0.0.1:8008
etcd3:
  host: 127.0.0.1:2379
redis:
  listen: 127.0.0.1:6379
  data_dir: /nonexistent/warden/node1/redis
"#;

/// `BASE` with `lines` added to the `redis` section.
fn with(lines: &str) -> String {
    let mut yaml = BASE.to_owned();
    for line in lines.lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// `BASE` with its `redis.listen` line replaced.
fn listen(addr: &str) -> String {
    BASE.replace("  listen: 127.0.0.1:6379", &format!("  listen: \"{addr}\""))
}

fn redis(yaml: &str) -> RedisConfig {
    let loaded = ok(yaml);
    assert!(loaded.config.postgresql().is_none());
    loaded.config.redis().expect("a redis member").clone()
}

/// A directory holding an executable `redis-server`.
fn fake_redis_bin() -> TempDir {
    let dir = TempDir::new().unwrap();
    let exe = dir.path().join("redis-server");
    fs::write(&exe, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Readable files standing in for certificates and keys: their content is not read
/// when the config is loaded, only that they can be opened.
struct Files(TempDir);

impl Files {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        for name in ["cert.pem", "key.pem", "ca.pem", "client.pem", "client.key"] {
            fs::write(dir.path().join(name), "placeholder").unwrap();
        }
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn tls_lines(f: &Files) -> String {
    format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n",
        f.p("cert.pem"),
        f.p("key.pem"),
        f.p("ca.pem")
    )
}

#[test]
fn a_full_section_is_read_into_its_values() {
    let bin = fake_redis_bin();
    let f = Files::new();
    let yaml = with(&format!(
        r#"connect_address: 10.0.0.1:6380
bin_dir: {bin}
authentication: {{username: warden, password: s3cret}}
parameters: {{maxmemory: 1gb, appendonly: 'yes', maxmemory-samples: 5, lazyfree-lazy-eviction: true, protected-mode: false}}
tls:
  cert_file: {cert}
  key_file: {key}
  ca_file: {ca}
  client_cert_file: {ccert}
  client_key_file: {ckey}
  auth_clients: optional
sentinel:
  listen: 0.0.0.0:26379
  master_name: mymaster
  password: sentinel-secret
  tls: {{cert_file: {cert}, key_file: {key}, client_ca_file: {ca}, require_client_cert: true}}
"#,
        bin = bin.path().display(),
        cert = f.p("cert.pem"),
        key = f.p("key.pem"),
        ca = f.p("ca.pem"),
        ccert = f.p("client.pem"),
        ckey = f.p("client.key"),
    ));
    let c = redis(&yaml);
    assert_eq!(c.listen_host, "127.0.0.1");
    assert_eq!(c.port, 6379);
    assert_eq!(
        c.connect_address,
        HostPort {
            host: "10.0.0.1".into(),
            port: 6380
        }
    );
    assert_eq!(c.data_dir, Path::new("/nonexistent/warden/node1/redis"));
    assert_eq!(c.bin_dir.as_deref(), Some(bin.path()));
    assert_eq!(c.username.as_deref(), Some("warden"));
    assert_eq!(c.password.as_deref(), Some("s3cret"));
    let params: Vec<(&str, &str)> = c
        .parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        vec![
            ("appendonly", "yes"),
            // redis.conf spells booleans yes/no.
            ("lazyfree-lazy-eviction", "yes"),
            ("maxmemory", "1gb"),
            ("maxmemory-samples", "5"),
            ("protected-mode", "no"),
        ]
    );
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.cert_file, f.path("cert.pem"));
    assert_eq!(tls.key_file, f.path("key.pem"));
    assert_eq!(tls.ca_file, f.path("ca.pem"));
    assert_eq!(tls.client_cert_file, Some(f.path("client.pem")));
    assert_eq!(tls.client_key_file, Some(f.path("client.key")));
    assert_eq!(tls.auth_clients, AuthClientsConfig::Optional);
    let engine = tls.to_engine();
    assert_eq!(engine.cert_file, f.path("cert.pem"));
    assert_eq!(engine.client_key_file, Some(f.path("client.key")));
    let s = c.sentinel.as_ref().unwrap();
    assert_eq!(s.listen, "0.0.0.0:26379".parse().unwrap());
    assert_eq!(s.master_name, "mymaster");
    assert_eq!(s.password.as_deref(), Some("sentinel-secret"));
    let stls = s.tls.as_ref().unwrap();
    assert_eq!(stls.cert_file, f.path("cert.pem"));
    assert_eq!(stls.key_file, f.path("key.pem"));
    assert_eq!(stls.client_ca_file, Some(f.path("ca.pem")));
    assert!(stls.require_client_cert);
    assert!(stls.to_engine().require_client_cert);
}

#[test]
fn defaults() {
    let c = redis(BASE);
    assert_eq!(
        c.connect_address,
        HostPort {
            host: "127.0.0.1".into(),
            port: 6379
        }
    );
    assert_eq!(c.bin_dir, None);
    assert_eq!((c.username, c.password), (None, None));
    assert!(c.parameters.is_empty());
    assert_eq!(c.tls, None);
    assert!(c.sentinel.is_none());

    // connect_address comes from a concrete listen address, IPv6 included.
    let c = redis(&listen("[::1]:7000"));
    assert_eq!(
        c.connect_address,
        HostPort {
            host: "::1".into(),
            port: 7000
        }
    );

    // The Sentinel port's master name is the scope; auth_clients is yes, as in Redis.
    let f = Files::new();
    let c = redis(&with(&format!(
        "{}sentinel: {{listen: 127.0.0.1:26379}}",
        tls_lines(&f)
    )));
    assert_eq!(c.tls.unwrap().auth_clients, AuthClientsConfig::Yes);
    let s = c.sentinel.unwrap();
    assert_eq!(s.master_name, "demo");
    assert_eq!(s.password, None);
    assert_eq!(s.tls, None);

    // `default` is Redis's default user: only requirepass, no ACL user.
    let c = redis(&with("authentication: {username: default, password: pw}"));
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some("pw"));
    let c = redis(&with("authentication: {password: 1234}"));
    assert_eq!(c.password.as_deref(), Some("1234"));
}

#[test]
fn missing_and_bad_addresses_and_directories_name_the_key() {
    // (An empty `redis:` is a null value, read as no section at all.)
    let yaml = BASE
        .replace("  listen: 127.0.0.1:6379\n", "  parameters: {}\n")
        .replace("  data_dir: /nonexistent/warden/node1/redis\n", "");
    let p = problems(&yaml);
    assert_has(&p, "redis.listen: missing required key");
    assert_has(&p, "redis.data_dir: missing required key");

    assert_has(
        &problems(&BASE.replace("/nonexistent/warden/node1/redis", "data")),
        "redis.data_dir: must be an absolute path, got \"data\"",
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_file = file.path().join("redis");
    let p = problems(&BASE.replace(
        "/nonexistent/warden/node1/redis",
        under_file.to_str().unwrap(),
    ));
    assert_has_prefix(
        &p,
        &format!(
            "redis.data_dir: \"{}\" is not a directory",
            file.path().display()
        ),
    );

    let empty = TempDir::new().unwrap();
    let p = problems(&with(&format!("bin_dir: {}", empty.path().display())));
    assert_has(
        &p,
        &format!(
            "redis.bin_dir: no executable \"redis-server\" in \"{}\"",
            empty.path().display()
        ),
    );
    // Present but not executable.
    fs::write(empty.path().join("redis-server"), "").unwrap();
    let p = problems(&with(&format!("bin_dir: {}", empty.path().display())));
    assert_has_prefix(&p, "redis.bin_dir: no executable \"redis-server\"");
    assert_has_prefix(
        &problems(&with("bin_dir: usr/bin")),
        "redis.bin_dir: must be an absolute path",
    );

    // A wildcard listen address needs a connect_address; with one it is fine.
    for wildcard in ["0.0.0.0:6379", "[::]:6379", "*:6379", ":6379"] {
        let p = problems(&listen(wildcard));
        assert_has_prefix(&p, "redis.connect_address: missing required key");
        let mut yaml = listen(wildcard);
        yaml.push_str("  connect_address: 10.0.0.1:6379\n");
        let c = redis(&yaml);
        assert_eq!(c.connect_address.host, "10.0.0.1", "{wildcard}");
        assert_eq!(c.port, 6379);
    }
    assert_has_prefix(
        &problems(&listen("127.0.0.1")),
        "redis.listen: expected host:port",
    );
    assert_has_prefix(
        &problems(&listen("127.0.0.1:99999")),
        "redis.listen: invalid port",
    );
    assert_has_prefix(
        &problems(&with("connect_address: 10.0.0.1")),
        "redis.connect_address: expected host:port",
    );
    assert_has_prefix(
        &problems(&BASE.replace("listen: 127.0.0.1:6379", "listen: [127.0.0.1:6379]")),
        "redis.listen: expected a string",
    );
}

#[test]
fn parameters_warden_owns_are_refused_by_name() {
    let owned = [
        "port",
        "bind",
        "dir",
        "replicaof",
        "slaveof",
        "masterauth",
        "masteruser",
        "requirepass",
        "user",
        "include",
        "rename-command",
        "daemonize",
        "pidfile",
        "logfile",
        "replica-announce-ip",
        "tls-port",
        "tls-cert-file",
        "tls-auth-clients",
        "tls-replication",
    ];
    let lines: String = owned.iter().map(|k| format!("  {k}: x\n")).collect();
    let p = problems(&with(&format!("parameters:\n{lines}")));
    for key in owned {
        assert_has_prefix(&p, &format!("redis.parameters.{key}: set by Warden"));
    }
    assert_eq!(p.len(), owned.len(), "{p:#?}");
    // Any spelling of the name.
    let p = problems(&with(
        "parameters: {Port: 1, ' requirepass': x, REPLICAOF: x}",
    ));
    assert_has_prefix(&p, "redis.parameters.Port: set by Warden");
    assert_has_prefix(&p, "redis.parameters. requirepass: set by Warden");
    assert_has_prefix(&p, "redis.parameters.REPLICAOF: set by Warden");
}

#[test]
fn bad_parameter_names_and_values_are_refused() {
    let p = problems(&with(
        "parameters: {'max memory': 1, 'save;x': 1, '': 1, maxmemory_policy: x, [a]: 1}",
    ));
    assert_has(
        &p,
        "redis.parameters.max memory: not a redis.conf setting name",
    );
    assert_has(&p, "redis.parameters.save;x: not a redis.conf setting name");
    assert_has(&p, "redis.parameters.: not a redis.conf setting name");
    assert_has(
        &p,
        "redis.parameters.maxmemory_policy: not a redis.conf setting name",
    );
    assert_has(&p, "redis.parameters: parameter names must be strings");

    let p = problems(&with(
        "parameters: {maxmemory: \"1gb\\nreplicaof 10.0.0.9 6379\", save: [900, 1], notify-keyspace-events: null}",
    ));
    assert_has(
        &p,
        "redis.parameters.maxmemory: contains the control character '\\n'",
    );
    assert_has(
        &p,
        "redis.parameters.save: expected a string, number or boolean, got [900,1]",
    );
    assert_has_prefix(
        &p,
        "redis.parameters.notify-keyspace-events: expected a string, number or boolean",
    );
    assert_has_prefix(
        &problems(&with("parameters: maxmemory")),
        "redis.parameters: expected a mapping",
    );

    // The same setting twice in different spellings would leave which one applies to
    // redis.conf's order.
    let p = problems(&with("parameters: {maxmemory: 1gb, MaxMemory: 2gb}"));
    assert_has_prefix(&p, "redis.parameters.MaxMemory: given twice");
}

#[test]
fn bad_authentication_names_the_key() {
    assert_has(
        &problems(&with("authentication: {password: ''}")),
        "redis.authentication.password: must not be empty",
    );
    assert_has(
        &problems(&with("authentication: {username: '', password: x}")),
        "redis.authentication.username: must not be empty",
    );
    assert_has(
        &problems(&with("authentication: {username: warden}")),
        "redis.authentication.password: missing required key (an ACL user needs a password)",
    );
    assert_has_prefix(
        &problems(&with("authentication: {username: 'war den', password: x}")),
        "redis.authentication.username: must not contain whitespace",
    );
    assert_has_prefix(
        &problems(&with("authentication: {password: \"a\\nb\"}")),
        "redis.authentication.password: contains the control character '\\n'",
    );
    assert_has_prefix(
        &problems(&with("authentication: {password: [x]}")),
        "redis.authentication.password: expected a string",
    );
    assert_has_prefix(
        &problems(&with("authentication: secret")),
        "redis.authentication: expected a mapping",
    );
}

#[test]
fn unknown_keys_at_every_level_have_a_hint() {
    let f = Files::new();
    let yaml = with(&format!(
        r#"lisen: x
authentication: {{username: u, pasword: x}}
tls:
  cert_file: {cert}
  key_file: {key}
  ca_file: {ca}
  auth_client: yes
sentinel:
  listen: 127.0.0.1:26379
  mastername: m
  tls: {{cert_file: {cert}, key_fle: {key}}}
"#,
        cert = f.p("cert.pem"),
        key = f.p("key.pem"),
        ca = f.p("ca.pem"),
    ));
    let p = problems(&yaml);
    let unknown = "unknown key (not a Patroni or Warden setting); did you mean";
    assert_has(&p, &format!("redis.lisen: {unknown} \"listen\"?"));
    assert_has(
        &p,
        &format!("redis.authentication.pasword: {unknown} \"password\"?"),
    );
    assert_has(
        &p,
        &format!("redis.tls.auth_client: {unknown} \"auth_clients\"?"),
    );
    assert_has(
        &p,
        &format!("redis.sentinel.mastername: {unknown} \"master_name\"?"),
    );
    assert_has(
        &p,
        &format!("redis.sentinel.tls.key_fle: {unknown} \"key_file\"?"),
    );
}

#[test]
fn tls_files_must_be_readable_files() {
    let f = Files::new();
    let missing = f.path("missing.pem");
    let p = problems(&with(
        &tls_lines(&f).replace(&f.p("cert.pem"), missing.to_str().unwrap()),
    ));
    assert_has_prefix(
        &p,
        &format!("redis.tls.cert_file: cannot read \"{}\"", missing.display()),
    );
    // A directory opens, but is no certificate file.
    let p = problems(&with(
        &tls_lines(&f).replace(&f.p("key.pem"), f.0.path().to_str().unwrap()),
    ));
    assert_has_prefix(&p, "redis.tls.key_file: cannot read");
    assert_has_prefix(
        &problems(&with(&tls_lines(&f).replace(&f.p("ca.pem"), "ca.pem"))),
        "redis.tls.ca_file: must be an absolute path",
    );
    let p = problems(&with("tls: {}"));
    for key in ["cert_file", "key_file", "ca_file"] {
        assert_has(&p, &format!("redis.tls.{key}: missing required key"));
    }

    let p = problems(&with(&format!(
        "{}  client_cert_file: {}",
        tls_lines(&f),
        f.p("client.pem")
    )));
    assert_has_prefix(
        &p,
        "redis.tls.client_key_file: required with client_cert_file",
    );
    let p = problems(&with(&format!(
        "{}  client_key_file: {}",
        tls_lines(&f),
        f.p("client.key")
    )));
    assert_has_prefix(
        &p,
        "redis.tls.client_cert_file: required with client_key_file",
    );
    let p = problems(&with(&format!(
        "{}  client_cert_file: {}\n  client_key_file: /nonexistent/client.key",
        tls_lines(&f),
        f.p("client.pem")
    )));
    assert_has_prefix(&p, "redis.tls.client_key_file: cannot read");
}

#[test]
fn auth_clients_takes_yes_optional_or_no() {
    let f = Files::new();
    for (text, expected) in [
        ("yes", AuthClientsConfig::Yes),
        ("'yes'", AuthClientsConfig::Yes),
        ("true", AuthClientsConfig::Yes),
        ("optional", AuthClientsConfig::Optional),
        ("no", AuthClientsConfig::No),
        ("false", AuthClientsConfig::No),
    ] {
        let c = redis(&with(&format!("{}  auth_clients: {text}", tls_lines(&f))));
        assert_eq!(c.tls.unwrap().auth_clients, expected, "{text}");
    }
    for bad in ["maybe", "required", "1"] {
        let p = problems(&with(&format!("{}  auth_clients: {bad}", tls_lines(&f))));
        assert_has_prefix(&p, "redis.tls.auth_clients: expected yes, optional or no");
    }
}

#[test]
fn bad_sentinel_values_name_the_key() {
    assert_has(
        &problems(&with("sentinel: {master_name: m}")),
        "redis.sentinel.listen: missing required key",
    );
    assert_has_prefix(
        &problems(&with("sentinel: {listen: localhost}")),
        "redis.sentinel.listen: expected host:port",
    );
    assert_has_prefix(
        &problems(&with("sentinel: {listen: '127.0.0.1:0'}")),
        "redis.sentinel.listen: invalid port",
    );
    // The Sentinel port cannot be redis-server's own, on the same or every address.
    for same in ["127.0.0.1:6379", "0.0.0.0:6379"] {
        assert_has(
            &problems(&with(&format!("sentinel: {{listen: '{same}'}}"))),
            "redis.sentinel.listen: port 6379 is redis-server's own (redis.listen)",
        );
    }
    let mut yaml = listen("0.0.0.0:6379");
    yaml.push_str("  connect_address: 10.0.0.1:16379\n  sentinel: {listen: '127.0.0.1:6379'}\n");
    assert_has(
        &problems(&yaml),
        "redis.sentinel.listen: port 6379 is redis-server's own (redis.listen)",
    );

    for bad in ["''", "'my master'", "\"a\\tb\""] {
        assert_has(
            &problems(&with(&format!(
                "sentinel: {{listen: 127.0.0.1:26379, master_name: {bad}}}"
            ))),
            "redis.sentinel.master_name: must be a non-empty name without whitespace",
        );
    }
    assert_has_prefix(
        &problems(&with("sentinel: {listen: 127.0.0.1:26379, password: ''}")),
        "redis.sentinel.password: must not be empty",
    );
    assert_has_prefix(
        &problems(&with(
            "sentinel: {listen: 127.0.0.1:26379, password: \"a\\rb\"}",
        )),
        "redis.sentinel.password: contains the control character '\\r'",
    );

    let f = Files::new();
    let sentinel_tls = |extra: &str| {
        with(&format!(
            "sentinel:\n  listen: 127.0.0.1:26379\n  tls: {{cert_file: {}, key_file: {}{extra}}}",
            f.p("cert.pem"),
            f.p("key.pem")
        ))
    };
    assert_has(
        &problems(&sentinel_tls(", require_client_cert: true")),
        "redis.sentinel.tls.require_client_cert: needs redis.sentinel.tls.client_ca_file",
    );
    assert_has_prefix(
        &problems(&sentinel_tls(", require_client_cert: sometimes")),
        "redis.sentinel.tls.require_client_cert: expected a boolean",
    );
    assert_has_prefix(
        &problems(&sentinel_tls(", client_ca_file: /nonexistent/ca.pem")),
        "redis.sentinel.tls.client_ca_file: cannot read \"/nonexistent/ca.pem\"",
    );
    let c = redis(&sentinel_tls(""));
    let t = c.sentinel.unwrap().tls.unwrap();
    assert_eq!(t.client_ca_file, None);
    assert!(!t.require_client_cert);
    assert_has(
        &problems(&with("sentinel:\n  listen: 127.0.0.1:26379\n  tls: {}")),
        "redis.sentinel.tls.cert_file: missing required key",
    );
}

/// One run reports every problem of the section, not only the first one met.
#[test]
fn every_problem_is_reported_at_once() {
    let yaml = with(
        "connect_address: nowhere\nbin_dir: relative\nauthentication: {password: ''}\n\
         parameters: {port: 1}\ntls: {}\nsentinel: {listen: 127.0.0.1:26379, password: '', \
         master_name: 'a b', tls: {}}",
    );
    let p = problems(&yaml);
    for prefix in [
        "redis.connect_address:",
        "redis.bin_dir:",
        "redis.authentication.password:",
        "redis.parameters.port:",
        "redis.tls.cert_file:",
        "redis.sentinel.password:",
        "redis.sentinel.master_name:",
        "redis.sentinel.tls.cert_file:",
    ] {
        assert_has_prefix(&p, prefix);
    }
}

#[test]
fn a_member_runs_exactly_one_engine() {
    let both = format!(
        "{MINIMAL}redis:\n  listen: 127.0.0.1:6379\n  data_dir: /nonexistent/warden/redis\n"
    );
    assert_has_prefix(&problems(&both), "redis: a member runs PostgreSQL or Redis");
    let neither = BASE.split("redis:").next().unwrap().to_owned();
    assert_has(&problems(&neither), "postgresql: missing required key");
    assert_has_prefix(
        &problems(&format!("{neither}redis: 1\n")),
        "redis: expected a mapping",
    );
    // A PostgreSQL member has no redis section.
    assert!(ok(MINIMAL).config.redis().is_none());
}

#[test]
fn passwords_never_appear_in_debug_output() {
    let yaml = with(
        "authentication: {username: warden, password: hunter2-server}\n\
         sentinel: {listen: 127.0.0.1:26379, password: hunter2-sentinel}",
    );
    let loaded = ok(&yaml);
    for text in [
        format!("{:?}", loaded.config),
        format!("{:#?}", loaded),
        format!("{:?}", loaded.config.redis().unwrap()),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}

#[test]
fn a_standby_cluster_is_refused_for_redis() {
    let yaml = BASE.replace(
        "redis:\n",
        "bootstrap:\n  dcs:\n    standby_cluster: {host: 10.0.0.1, port: 6379}\nredis:\n",
    );
    assert_has_prefix(
        &problems(&yaml),
        "bootstrap.dcs.standby_cluster: standby clusters are PostgreSQL only",
    );
}
