//! deploy/ stays consistent with what the demo and the tests run: the
//! HAProxy config is the kit's generated one for the demo ports, and the
//! example configs are the demo's node configs (up to paths and secrets).

use serde_yaml::Value;
use warden_tests::haproxy::{check_config, render_config, Backend};
use warden_tests::{bins, config, demo, NodeConfig};

/// Config lines without comments and blank lines.
fn directives(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn demo_backends() -> Vec<Backend> {
    (0..3)
        .map(|i| Backend {
            name: format!("node{}", i + 1),
            pg_port: demo::PG_PORTS[i],
            api_port: demo::API_PORTS[i],
        })
        .collect()
}

#[test]
fn haproxy_cfg_is_valid_and_matches_the_kit_generator() {
    let path = bins::workspace_root().join("deploy/haproxy.cfg");
    check_config(&path).unwrap();
    let file = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        file,
        demo::HAPROXY_CFG,
        "the demo must embed deploy/haproxy.cfg verbatim"
    );
    let generated = render_config(
        demo::HAPROXY_WRITE_PORT,
        demo::HAPROXY_READ_PORT,
        &demo_backends(),
    );
    assert_eq!(directives(&file), directives(&generated));
}

#[test]
fn haproxy_redis_cfg_is_valid_and_matches_the_kit_generator() {
    let path = bins::workspace_root().join("deploy/haproxy-redis.cfg");
    check_config(&path).unwrap();
    let file = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        file,
        demo::HAPROXY_REDIS_CFG,
        "the Redis demo must embed deploy/haproxy-redis.cfg verbatim"
    );
    let backends: Vec<Backend> = (0..3)
        .map(|i| Backend {
            name: format!("node{}", i + 1),
            pg_port: demo::REDIS_PORTS[i],
            api_port: demo::API_PORTS[i],
        })
        .collect();
    let generated = render_config(demo::HAPROXY_WRITE_PORT, demo::HAPROXY_READ_PORT, &backends);
    assert_eq!(directives(&file), directives(&generated));
}

/// Blank out values that legitimately differ in a deployment example.
fn without_secrets(mut v: Value) -> Value {
    if let Some(auth) = v["postgresql"]
        .get_mut("authentication")
        .and_then(Value::as_mapping_mut)
    {
        for (_, user) in auth.iter_mut() {
            if let Some(u) = user.as_mapping_mut() {
                u.insert("password".into(), "<secret>".into());
            }
        }
    }
    v
}

#[test]
fn example_configs_are_the_demo_node_configs() {
    for i in 0..3 {
        let name = format!("node{}", i + 1);
        let path = bins::workspace_root().join(format!("deploy/examples/{name}.yml"));
        let example: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let expected = NodeConfig::new(
            &name,
            &std::path::Path::new("/var/lib/warden").join(&name),
            demo::PG_PORTS[i],
            demo::API_PORTS[i],
            &format!("127.0.0.1:{}", demo::ETCD_CLIENT_PORT),
        )
        .scope(demo::SCOPE)
        .to_value()
        .unwrap();
        assert_eq!(
            without_secrets(example.clone()),
            without_secrets(expected),
            "{}",
            path.display()
        );
        let dcs = &example["bootstrap"]["dcs"];
        assert_eq!(dcs["ttl"], config::DEFAULT_TTL);
        assert_eq!(dcs["loop_wait"], config::DEFAULT_LOOP_WAIT);
        assert_eq!(dcs["retry_timeout"], config::DEFAULT_RETRY_TIMEOUT);
    }
}

#[test]
fn systemd_unit_runs_warden_as_postgres_and_keeps_postgres_on_stop() {
    let unit =
        std::fs::read_to_string(bins::workspace_root().join("deploy/warden.service")).unwrap();
    let d = directives(&unit);
    for want in [
        "User=postgres",
        "ExecStart=/usr/local/bin/warden /etc/warden/warden.yml",
        "KillMode=process",
        "Restart=on-failure",
    ] {
        assert!(d.iter().any(|l| l == want), "warden.service lacks {want}");
    }
    assert!(
        d.iter().any(|l| l.starts_with("TimeoutStopSec=")),
        "warden.service lacks TimeoutStopSec"
    );
}
