//! Patroni behaviours a deployment relies on, against one real two-node cluster:
//!
//! - a member configured through `PATRONI_*` variables (its YAML lacks its name, its
//!   REST and etcd addresses and its passwords) joins, and no child inherits them;
//! - tags are published with the type they were written with;
//! - `bootstrap.dcs` with `wal_keep_segments` starts PostgreSQL 15 (`wal_keep_size`);
//! - a second agent under a running member's name refuses to start;
//! - `GET /config` is the stored key, `GET /failsafe` the failsafe key (502 without);
//! - `PATCH {"ttl": 20}` with `retry_timeout: 10` is accepted and adjusted, not refused;
//! - health answers 503 as soon as the postmaster dies, and 200 again once the agent
//!   has restarted it;
//! - REST texts are Patroni's, byte for byte.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_tests::config::{REPLICATION_PASSWORD, REWIND_PASSWORD, SUPERUSER_PASSWORD};
use warden_tests::{bins, http, sql, wait_until, Cluster, ClusterSpec, Node, NodeConfig};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const HTTP: Duration = Duration::from_secs(10);

/// Node 1's YAML keeps only what a container image would bake in; the rest comes
/// from the environment, as a Kubernetes manifest would give it.
fn env_configured(i: usize, c: NodeConfig) -> NodeConfig {
    let c = c
        .set_yaml(
            "bootstrap.dcs.postgresql.parameters",
            "{wal_level: replica, hot_standby: 'on', max_wal_senders: 10, \
             max_replication_slots: 10, wal_log_hints: 'on', wal_keep_segments: 8}",
        )
        .expect("parameters");
    if i != 1 {
        return c;
    }
    let api = format!("127.0.0.1:{}", c.api_port);
    let name = c.name.clone();
    let hosts = c.etcd_hosts.clone();
    let data_dir = c.data_dir().display().to_string();
    c.remove("name")
        .remove("restapi")
        .remove("etcd3")
        .remove("postgresql.data_dir")
        .remove("postgresql.authentication.superuser.password")
        .remove("postgresql.authentication.replication.password")
        .remove("postgresql.authentication.rewind.password")
        .set_yaml(
            "tags",
            "{nofailover: false, noloadbalance: false, failover_priority: '2', clonefrom: 1, zone: eu}",
        )
        .expect("tags")
        .env("PATRONI_NAME", name)
        .env("PATRONI_RESTAPI_LISTEN", api.clone())
        .env("PATRONI_RESTAPI_CONNECT_ADDRESS", api)
        .env("PATRONI_ETCD3_HOSTS", hosts)
        .env("PATRONI_POSTGRESQL_DATA_DIR", data_dir)
        .env("PATRONI_SUPERUSER_PASSWORD", SUPERUSER_PASSWORD)
        .env("PATRONI_REPLICATION_PASSWORD", REPLICATION_PASSWORD)
        .env("PATRONI_REWIND_PASSWORD", REWIND_PASSWORD)
}

fn send(method: &str, url: &str, body: Option<&Value>) -> http::HttpResponse {
    let body = body.map(Value::to_string);
    http::send(method, url, body.as_deref().map(str::as_bytes), None, HTTP)
        .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
}

fn patch_config(cluster: &Cluster, patch: &Value) -> Value {
    let r = send(
        "PATCH",
        &format!("{}/config", cluster.node(0).api_url()),
        Some(patch),
    );
    assert_eq!(r.status, 200, "PATCH /config {patch}: {}", r.body);
    r.json().expect("PATCH /config answers JSON")
}

#[test]
fn patroni_deployments_work_unchanged() {
    let cluster = Cluster::start(
        ClusterSpec::new(2)
            .without_haproxy()
            .customize(env_configured),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);

    env_only_member_joined(&cluster);
    config_from_the_environment_alone(&cluster);
    wal_keep_segments_became_wal_keep_size(&cluster);
    duplicate_name_is_refused(&cluster);
    config_and_failsafe_are_served_as_stored(&cluster);
    texts_are_patronis(&cluster);
    health_follows_the_postmaster(&cluster);
    ttl_is_adjusted_not_refused(&cluster);
    a_bad_config_key_keeps_the_last_valid_one(&cluster);
}

fn env_only_member_joined(cluster: &Cluster) {
    let node = cluster.node(1);
    let key = cluster
        .member_key(node.name())
        .expect("the env-configured member published its key");
    assert_eq!(
        key["api_url"],
        json!(format!("{}/patroni", node.api_url())),
        "{key}"
    );
    // Tags as written, with their types; a false flag kept only beside a priority.
    assert_eq!(
        key["tags"],
        json!({"nofailover": false, "failover_priority": "2", "clonefrom": 1, "zone": "eu"}),
        "{key}"
    );
    // The passwords given in the environment never reach PostgreSQL's environment.
    let pid = node.postmaster_pid().expect("postmaster");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let text = String::from_utf8_lossy(&environ);
    assert!(!text.contains("PATRONI_"), "postmaster inherited: {text}");
    println!("a member configured through PATRONI_* variables joined; its children see none");
}

fn wal_keep_segments_became_wal_keep_size(cluster: &Cluster) {
    for n in cluster.nodes() {
        assert_eq!(
            n.show("wal_keep_size").as_deref(),
            Some("128MB"),
            "{}: wal_keep_segments 8 → wal_keep_size 128MB",
            n.name()
        );
    }
}

fn duplicate_name_is_refused(cluster: &Cluster) {
    let taken = cluster.node(1).name().to_string();
    let ports = warden_tests::ports::free_ports(2).expect("ports");
    let config = NodeConfig::new(
        &taken,
        &cluster.dir().join("duplicate"),
        ports[0],
        ports[1],
        &cluster.node(0).config().etcd_hosts,
    );
    let mut dup = Node::create(config, &bins::warden_bin().expect("warden")).expect("node");
    dup.start().expect("start the duplicate");
    let status = dup
        .wait_exit(T)
        .expect("an agent under a running member's name exits");
    assert_eq!(status.code(), Some(1), "exit status {status:?}");
    let log = std::fs::read_to_string(dup.log_path()).unwrap_or_default();
    let want = format!("Can't start; there is already a node named '{taken}' running");
    assert!(log.contains(&want), "log of the duplicate:\n{log}");
    assert!(
        !dup.data_dir().join("PG_VERSION").exists(),
        "the duplicate created a database"
    );
    let key = cluster.member_key(&taken).expect("member key");
    assert_eq!(
        key["api_url"],
        json!(format!("{}/patroni", cluster.node(1).api_url()))
    );
    println!("a second agent named {taken:?} refused to start");
}

fn config_and_failsafe_are_served_as_stored(cluster: &Cluster) {
    let url = |i: usize, path: &str| format!("{}{path}", cluster.node(i).api_url());
    let r = send("GET", &url(1, "/failsafe"), None);
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("<p>Error code: 502</p>"), "{}", r.body);

    patch_config(
        cluster,
        &json!({"master_start_timeout": 120, "my_tool": {"owner": "ops"}, "failsafe_mode": true}),
    );
    // The other member serves the key as stored: the client's own names and values.
    let stored = wait_until(T, "the other member serves the new config", || {
        let r = send("GET", &url(1, "/config"), None);
        if r.status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&r.body).ok()?;
        (v.get("my_tool").is_some()).then_some((r, v))
    });
    let (r, v) = stored;
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(v["master_start_timeout"], json!(120));
    assert_eq!(v["my_tool"], json!({"owner": "ops"}));
    assert!(v.get("primary_start_timeout").is_none() || v["primary_start_timeout"] == 300);
    assert!(r.body.contains("\": "), "Python's separators: {}", r.body);

    let (leader, _) = cluster.wait_leader(T);
    let failsafe = wait_until(T, "GET /failsafe lists both members", || {
        let r = send("GET", &url(1, "/failsafe"), None);
        let v: Value = serde_json::from_str(&r.body).ok()?;
        (r.status == 200 && v.as_object()?.len() == 2).then_some(v)
    });
    for n in cluster.nodes() {
        assert_eq!(
            failsafe[n.name()],
            json!(format!("{}/patroni", n.api_url())),
            "{failsafe} (leader {leader})"
        );
    }
    patch_config(
        cluster,
        &json!({"master_start_timeout": null, "my_tool": null, "failsafe_mode": null}),
    );
}

fn texts_are_patronis(cluster: &Cluster) {
    let (leader, _) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).unwrap();
    let ri = 1 - li;
    let url = |i: usize, path: &str| format!("{}{path}", cluster.node(i).api_url());
    let exact = |r: http::HttpResponse, status: u16, body: &str| {
        assert_eq!((r.status, r.body.as_str()), (status, body));
        assert_eq!(r.header("content-type"), Some("text/html"));
    };
    exact(
        send("POST", &url(li, "/reinitialize"), Some(&json!({}))),
        503,
        "I am the leader, can not reinitialize",
    );
    exact(
        send(
            "POST",
            &url(li, "/switchover"),
            Some(&json!({"leader": "nobody"})),
        ),
        412,
        "leader name does not match",
    );
    exact(
        send(
            "POST",
            &url(li, "/switchover"),
            Some(&json!({"leader": leader, "candidate": "ghost"})),
        ),
        412,
        "candidate does not exists",
    );
    exact(
        send(
            "POST",
            &url(li, "/failover"),
            Some(&json!({"leader": leader})),
        ),
        400,
        "Failover could be performed only to a specific candidate",
    );
    exact(
        send("DELETE", &url(ri, "/restart"), None),
        404,
        "no restarts are scheduled",
    );
    exact(
        send("DELETE", &url(ri, "/switchover"), None),
        404,
        "no switchover is scheduled",
    );
    exact(
        send("POST", &url(ri, "/reload"), None),
        202,
        "reload scheduled",
    );
    exact(
        send(
            "POST",
            &url(ri, "/restart"),
            Some(&json!({"schedule": "2020-01-01T00:00:00+00:00"})),
        ),
        422,
        "Cannot schedule restart in the past",
    );
}

/// With a 10 s loop the agent notices a dead postmaster up to 10 s late; the health
/// endpoints must not wait for it.
fn health_follows_the_postmaster(cluster: &Cluster) {
    patch_config(
        cluster,
        &json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10}),
    );
    let (leader, _) = cluster.wait_leader(T);
    // The kit's ttl is 10: more than 20 s left means the agents run with the new values.
    wait_until(T, "the leader key on a lease granted with ttl 30", || {
        let kv = cluster.leader_key().ok()??;
        let left = cluster.etcd().lease_ttl(kv.lease).ok()??;
        (left > 20).then_some(())
    });
    let ri = 1 - cluster.index_of(&leader).unwrap();
    let node = cluster.node(ri);
    let url = |path: &str| format!("{}{path}", node.api_url());
    // (`/` is `/primary`, as in Patroni.)
    for path in ["/replica", "/read-only", "/health"] {
        wait_until(T, "the replica is healthy", || {
            (http::status(&url(path)) == Some(200)).then_some(())
        });
    }
    let pid = node.postmaster_pid().expect("postmaster");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the postmaster");
    let killed = Instant::now();
    wait_until(T, "the postmaster is gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        (!matches!(state, Some(s) if s != "Z")).then_some(())
    });
    let gone = killed.elapsed();
    // Once the process is gone, the very next answer of every check is 503.
    for path in ["/replica", "/read-only", "/health"] {
        assert_eq!(http::status(&url(path)), Some(503), "{path} after the kill");
    }
    let answered = killed.elapsed();
    println!(
        "postmaster killed: gone after {:.0} ms, every health check 503 by {:.0} ms",
        gone.as_secs_f64() * 1000.0,
        answered.as_secs_f64() * 1000.0
    );
    // The agent restarts it in place; health is 200 again once it accepts connections.
    let port = node.pg_port();
    wait_until(T, "PostgreSQL accepts connections again", || {
        sql::query_text(port, "SELECT 1").ok().flatten()
    });
    let accepting = Instant::now();
    wait_until(T, "/replica answers 200 again", || {
        (http::status(&url("/replica")) == Some(200)).then_some(())
    });
    let back = accepting.elapsed();
    println!(
        "restarted in place: /replica 200 {:.0} ms after PostgreSQL accepted connections",
        back.as_secs_f64() * 1000.0
    );
    // Not a turn (10 s) later: the agent looks again soon while PostgreSQL starts.
    assert!(
        back < Duration::from_secs(5),
        "/replica 200 only after {back:?}"
    );
}

fn ttl_is_adjusted_not_refused(cluster: &Cluster) {
    // retry_timeout is 10: Patroni accepts ttl 20 and runs with loop_wait 1,
    // retry_timeout 9. What is stored is what the client wrote.
    let lease_before = cluster.leader_key().unwrap().unwrap().lease;
    let stored = patch_config(cluster, &json!({"ttl": 20}));
    assert_eq!(
        (
            &stored["ttl"],
            &stored["loop_wait"],
            &stored["retry_timeout"]
        ),
        (&json!(20), &json!(10), &json!(10))
    );
    let (leader, _) = cluster.wait_leader(T);
    wait_until(
        T,
        "the leader key moves to a lease granted with ttl 20",
        || {
            let kv = cluster.leader_key().ok()??;
            let left = cluster.etcd().lease_ttl(kv.lease).ok()??;
            (kv.value == leader && kv.lease != lease_before && left <= 20).then_some(())
        },
    );
    let converged = cluster.assert_converged(T);
    assert_eq!(cluster.node(converged.primary).name(), leader);
}

/// No file at all: the variables alone, or `PATRONI_CONFIGURATION`, are a whole
/// configuration (`--validate-config` reads them as the agent does).
fn config_from_the_environment_alone(cluster: &Cluster) {
    let node = cluster.node(0);
    let validate = |vars: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(bins::warden_bin().expect("warden"));
        cmd.arg("--validate-config").env_remove("NO_COLOR");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        warden_tests::process::run_bounded(&mut cmd, HTTP).expect("warden --validate-config")
    };
    let vars: Vec<(&str, String)> = vec![
        ("PATRONI_SCOPE", cluster.scope().to_string()),
        ("PATRONI_NAME", "from-env".into()),
        ("PATRONI_RESTAPI_LISTEN", "127.0.0.1:1".into()),
        ("PATRONI_ETCD3_HOSTS", node.config().etcd_hosts.clone()),
        ("PATRONI_POSTGRESQL_LISTEN", "127.0.0.1:2".into()),
        (
            "PATRONI_POSTGRESQL_DATA_DIR",
            "/nonexistent/from-env/data".into(),
        ),
        ("PATRONI_SUPERUSER_USERNAME", "postgres".into()),
        ("PATRONI_SUPERUSER_PASSWORD", SUPERUSER_PASSWORD.into()),
        ("PATRONI_REPLICATION_USERNAME", "replicator".into()),
        ("PATRONI_REPLICATION_PASSWORD", REPLICATION_PASSWORD.into()),
    ];
    let out = validate(&vars);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout
            .contains("the environment: configuration is valid"),
        "{}",
        out.describe()
    );
    // One variable short: the missing key is named.
    let out = validate(&vars[..vars.len() - 2]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("postgresql.authentication.replication"),
        "{}",
        out.describe()
    );
    // PATRONI_CONFIGURATION: the whole file in one variable.
    let yaml = std::fs::read_to_string(node.config_path()).expect("node config");
    let out = validate(&[("PATRONI_CONFIGURATION", yaml)]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}

/// A `config` key another tool broke (a value of the wrong type) must not drop a
/// runtime `pause`: the agents keep the last valid configuration and name the bad key.
fn a_bad_config_key_keeps_the_last_valid_one(cluster: &Cluster) {
    let paused = |i: usize| cluster.node(i).patroni_json().map(|v| v["pause"] == true);
    patch_config(cluster, &json!({"pause": true}));
    wait_until(T, "both members paused", || {
        (paused(0) == Some(true) && paused(1) == Some(true)).then_some(())
    });
    let key = format!("{}config", cluster.key_prefix());
    let mut broken: Value =
        serde_json::from_str(&cluster.etcd().get(&key).unwrap().unwrap().value).unwrap();
    broken["maximum_lag_on_failover"] = json!("lots");
    cluster.etcd().put(&key, &broken.to_string()).unwrap();
    for n in cluster.nodes() {
        wait_until(T, "the agent names the bad key", || {
            let log = std::fs::read_to_string(n.log_path()).ok()?;
            log.lines()
                .any(|l| l.contains("invalid DCS value") && l.contains("maximum_lag_on_failover"))
                .then_some(())
        });
    }
    // Several turns later, still paused on both: an observation window (the loop turns
    // every second here), sampled every 200 ms; nothing is waited for.
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(3) {
        assert_eq!(paused(0), Some(true), "pause dropped by a bad config key");
        assert_eq!(paused(1), Some(true), "pause dropped by a bad config key");
        std::thread::sleep(Duration::from_millis(200));
    }
    broken["maximum_lag_on_failover"] = json!(1_048_576);
    broken["pause"] = Value::Null;
    let r = send(
        "PUT",
        &format!("{}/config", cluster.node(0).api_url()),
        Some(&broken),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until(T, "resumed", || {
        (paused(0) == Some(false) && paused(1) == Some(false)).then_some(())
    });
}
