//! Listen and connect addresses, ports, and the forms of etcd hosts.

use super::fixtures::*;

#[test]
fn bad_ports_name_the_key() {
    let p = problems(&MINIMAL.replace("127.0.0.1:8008", "127.0.0.1:99999"));
    assert_eq!(
        p,
        vec!["restapi.listen: invalid port \"99999\" (expected 1-65535)"]
    );
    let p = problems(&MINIMAL.replace("listen: 127.0.0.1:5432", "listen: 127.0.0.1:0"));
    assert_eq!(
        p,
        vec!["postgresql.listen: invalid port \"0\" (expected 1-65535)"]
    );
    let p = problems(&MINIMAL.replace("127.0.0.1:2379", "127.0.0.1:70000"));
    assert_eq!(
        p,
        vec!["etcd3.host: invalid port \"70000\" (expected 1-65535)"]
    );
}

#[test]
fn etcd_host_forms() {
    let hosts = |etcd: &str| {
        let yaml = MINIMAL.replace("etcd3:\n  host: 127.0.0.1:2379", etcd);
        ok(&yaml).config.etcd3.hosts
    };
    let three = vec!["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"];
    assert_eq!(
        hosts("etcd3:\n  hosts: [10.0.0.1:2379, '10.0.0.2:2379', 10.0.0.3]"),
        three
    );
    assert_eq!(
        hosts("etcd3:\n  hosts: 10.0.0.1:2379, 10.0.0.2:2379,10.0.0.3:2379"),
        three
    );
    assert_eq!(
        hosts("etcd3: {host: 'etcd.local'}"),
        vec!["etcd.local:2379"]
    );

    let yaml = MINIMAL.replace(
        "etcd3:\n  host: 127.0.0.1:2379",
        "etcd3: {host: 10.0.0.9:2379, hosts: [10.0.0.1:2379]}",
    );
    let loaded = ok(&yaml);
    assert_eq!(loaded.config.etcd3.hosts, vec!["10.0.0.1:2379"]);
    assert_has(
        &loaded.warnings,
        "etcd3.host: ignored because etcd3.hosts is set",
    );

    let p = problems(&MINIMAL.replace("host: 127.0.0.1:2379", "hosts: []"));
    assert_eq!(p, vec!["etcd3.hosts: must list at least one host"]);
    let p = problems(&MINIMAL.replace("host: 127.0.0.1:2379", "hosts: [ok:1, 'bad:port']"));
    assert_eq!(
        p,
        vec!["etcd3.hosts[1]: invalid port \"port\" (expected 1-65535)"]
    );
    let p = problems(&MINIMAL.replace("etcd3:\n  host: 127.0.0.1:2379", "etcd: {host: x}"));
    assert_has(
        &p,
        "etcd3: missing required key (Warden keeps cluster state in etcd v3 only)",
    );
}

#[test]
fn ipv6_addresses() {
    let yaml = MINIMAL
        .replace("listen: 127.0.0.1:8008", "listen: '[::1]:8008'")
        .replace("listen: 127.0.0.1:5432", "listen: '::1:5432'");
    let c = ok(&yaml).config;
    assert_eq!(c.restapi.listen, "[::1]:8008".parse().unwrap());
    assert_eq!(c.restapi.connect_address.host, "::1");
    assert_eq!(c.restapi.connect_address.to_string(), "[::1]:8008");
    assert_eq!(c.postgresql().unwrap().listen_hosts, vec!["::1"]);
    assert_eq!(
        c.postgresql().unwrap().connect_address.to_string(),
        "[::1]:5432"
    );

    let yaml = MINIMAL.replace(
        "  data_dir:",
        "  connect_address: '[fd00::5]:5433'\n  data_dir:",
    );
    let hp = ok(&yaml)
        .config
        .postgresql()
        .unwrap()
        .connect_address
        .clone();
    assert_eq!((hp.host.as_str(), hp.port), ("fd00::5", 5433));
    assert_eq!(hp.to_string(), "[fd00::5]:5433");
}

#[test]
fn wildcard_listen_needs_a_connect_address() {
    let yaml = MINIMAL
        .replace("listen: 127.0.0.1:8008", "listen: ':8008'")
        .replace("listen: 127.0.0.1:5432", "listen: '*:5432'");
    let p = problems(&yaml);
    assert_has_prefix(&p, "restapi.connect_address: missing required key");
    assert_has_prefix(&p, "postgresql.connect_address: missing required key");

    let yaml = yaml
        .replace(
            "  listen: ':8008'",
            "  listen: ':8008'\n  connect_address: 10.0.0.1:8008",
        )
        .replace(
            "  listen: '*:5432'",
            "  listen: '*:5432'\n  connect_address: 10.0.0.1:5432",
        );
    let c = ok(&yaml).config;
    assert_eq!(c.restapi.listen, "0.0.0.0:8008".parse().unwrap());
    assert_eq!(c.postgresql().unwrap().listen_hosts, vec!["*"]);
    assert_eq!(
        c.postgresql().unwrap().connect_address.to_string(),
        "10.0.0.1:5432"
    );

    let p = problems(&MINIMAL.replace(
        "  data_dir:",
        "  connect_address: 0.0.0.0:5432\n  data_dir:",
    ));
    assert_has_prefix(&p, "postgresql.connect_address: host 0.0.0.0 is a wildcard");
    // Several listen hosts: no single default.
    let p = problems(&MINIMAL.replace("listen: 127.0.0.1:5432", "listen: 127.0.0.1,10.0.0.1:5432"));
    assert_has_prefix(&p, "postgresql.connect_address: missing required key");
}
