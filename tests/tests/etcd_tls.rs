//! etcd over TLS with client certificates and RBAC (`etcd3.protocol: https`,
//! `cacert`, `cert`, `key`, `username`, `password`): a cluster forms and fails over
//! through it, `wardenctl` and Patroni's `patronictl` list it with the same settings,
//! and each way of getting the security wrong is a clear error, never a plain-text
//! fallback: a CA that did not sign etcd's certificate, a user whose role lacks the
//! cluster's prefix, a `cacert` that does not exist.
//!
//! One cluster serves every scenario (starting one costs more than the checks). Its
//! etcd lets auth tokens expire after 2 idle seconds and the agents wait 3 s between
//! turns, so everything here also proves that expired tokens are renewed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use warden_tests::etcd::{
    agent_tls_config, AGENT_PASSWORD, AGENT_USER, STRANGER_PASSWORD, STRANGER_USER,
};
use warden_tests::process::{run_bounded, RunOutput};
use warden_tests::tls::CertFiles;
use warden_tests::wait::{poll_until, wait_until};
use warden_tests::{bins, ports, Cluster, ClusterSpec, Node, NodeConfig};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(30);
const TTL: u32 = 10;

#[test]
fn cluster_over_tls_etcd_with_rbac() {
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let mut cluster = Cluster::start(
        ClusterSpec::new(2)
            .ttl(TTL)
            // Longer than the kit's etcd token TTL (2 s): every turn starts with an
            // expired token, so the whole test runs on re-authentication.
            .loop_wait(3)
            .with_etcd_tls()
            .without_haproxy(),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);

    // etcd really is https-only with client certificates: plain http is refused.
    let member = cluster.etcd().member(0);
    let plain = format!("http://{}/health", member.endpoint());
    assert!(
        warden_tests::http::get(&plain).map_or(true, |r| r.status != 200),
        "etcd answered plain http"
    );

    // The agents' tokens really expire: one unused for longer than etcd's token TTL
    // (2 s) is refused, so the cluster above formed on renewed tokens.
    let key = format!("{}leader", cluster.key_prefix());
    let token = cluster
        .etcd()
        .authenticate(AGENT_USER, AGENT_PASSWORD)
        .expect("log in as the agents' user");
    let (status, body) = cluster.etcd().range_with_token(&key, &token).unwrap();
    assert_eq!(status, 200, "{body}");
    // Idle time is what is under test here (every use renews a token), not a wait
    // for something to happen: leave the token unused for twice its TTL.
    std::thread::sleep(Duration::from_secs(4));
    let (_, body) = cluster.etcd().range_with_token(&key, &token).unwrap();
    assert!(
        body.contains("invalid auth token"),
        "an idle etcd token did not expire: {body}"
    );

    let cfg = cluster.node(0).config_path();
    lists_two_members(&cluster, &cfg);
    patronictl_lists(&cluster);

    foreign_ca_is_refused(&cluster);
    role_without_the_prefix_is_refused(&cluster);
    missing_cacert_is_a_config_error(&cluster);

    // Fail over: kill the primary; the replica takes the leader key through TLS+RBAC.
    let p = cluster.primary_index().expect("a primary");
    let old = cluster.node(p).name().to_string();
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the primary's agent");
    cluster.node(p).kill_postmaster();
    let survivor = cluster.node(1 - p).name().to_string();
    wait_until(
        Duration::from_secs(u64::from(TTL) * 3 + 30),
        "the replica takes over",
        || {
            let holder = cluster.leader_key().ok().flatten()?.value;
            (holder == survivor && cluster.node(1 - p).is_primary()).then_some(())
        },
    );
    println!("failed over from {old} to {survivor}");
    // wardenctl still reads the cluster with the survivor's config.
    let out = wardenctl(&[
        "-c",
        &cluster.node(1 - p).config_path().display().to_string(),
        "list",
        "-f",
        "json",
    ]);
    let rows = rows_of(&out).unwrap_or_else(|| panic!("{}", out.describe()));
    assert!(
        rows.iter()
            .any(|r| r["Member"] == survivor.as_str() && r["Role"] == "Leader"),
        "{}",
        out.describe()
    );
}

fn wardenctl(args: &[&str]) -> RunOutput {
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    for var in [
        "PATRONI_ETCD3_PASSWORD",
        "PATRONI_ETCD3_USERNAME",
        "DCS_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", "/nonexistent").args(args);
    run_bounded(&mut cmd, RUN).expect("run wardenctl")
}

fn rows_of(out: &RunOutput) -> Option<Vec<Value>> {
    serde_json::from_str(out.stdout.trim()).ok()
}

/// wardenctl with the member's own config (https, CA, client certificate, user).
fn lists_two_members(cluster: &Cluster, cfg: &Path) {
    let cfg = cfg.display().to_string();
    let mut last = String::new();
    poll_until(T, || {
        let out = wardenctl(&["-c", &cfg, "list", "-f", "json"]);
        last = out.describe();
        let rows = rows_of(&out)?;
        let leaders = rows.iter().filter(|r| r["Role"] == "Leader").count();
        (rows.len() == 2 && leaders == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("wardenctl list over TLS etcd: {last}"));
    // Without the client certificate etcd refuses the handshake: a clear error.
    let scope = cluster.scope().to_string();
    let dir = cluster.dir().join("ctl-nocert.yml");
    let tls = cluster.tls().expect("tls material");
    std::fs::write(
        &dir,
        format!(
            "scope: {scope}\netcd3:\n  hosts: {}\n  protocol: https\n  cacert: {}\n",
            cluster.etcd().member(0).endpoint(),
            tls.ca.cert.display()
        ),
    )
    .unwrap();
    let out = wardenctl(&["-c", &dir.display().to_string(), "list"]);
    println!(
        "wardenctl without a client certificate: {}",
        out.stderr.trim()
    );
    assert!(
        // With TLS 1.3 etcd refuses a missing certificate after the client's side of
        // the handshake is done: the client sees either the alert (BadCertificate)
        // or the connection closing, so only "it fails, naming etcd" is certain.
        out.status.is_some_and(|s| !s.success()) && out.stderr.contains("etcd at "),
        "{}",
        out.describe()
    );
}

/// Patroni's own patronictl reads the same etcd3 keys (protocol, cacert, cert, key,
/// username, password) from a config file and lists the cluster.
fn patronictl_lists(cluster: &Cluster) {
    let ctl = bins::patronictl().unwrap_or_else(|e| panic!("{e:#}"));
    // patronictl goes through etcd's JSON gateway, which refuses a client
    // certificate with a CN once RBAC is on: the kit's config presents a CN-less one
    // and logs in with the agents' user.
    let file = cluster.dir().join("patronictl-tls.yaml");
    cluster.write_ctl_config(&file).unwrap();
    let mut last = String::new();
    poll_until(T, || {
        let mut cmd = Command::new(&ctl);
        cmd.env("PATRONICTL_CONFIG_FILE", &file)
            .args(["list", "-f", "json"]);
        let out = run_bounded(&mut cmd, RUN).expect("run patronictl");
        last = out.describe();
        let rows = rows_of(&out)?;
        (rows.len() == 2 && rows.iter().any(|r| r["Role"] == "Leader")).then_some(())
    })
    .unwrap_or_else(|| panic!("patronictl list over TLS etcd: {last}"));
}

/// An extra agent of the cluster's scope on fresh ports, its etcd3 section made by
/// `etcd3`, started; the caller reads its log.
fn extra_agent(
    cluster: &Cluster,
    name: &str,
    etcd3: impl FnOnce(NodeConfig) -> NodeConfig,
) -> Node {
    let [pg, api] = ports::free_ports(2).unwrap()[..] else {
        unreachable!()
    };
    let cfg = NodeConfig::new(
        name,
        &cluster.dir().join(name),
        pg,
        api,
        &cluster.etcd().hosts(),
    )
    .scope(cluster.scope())
    .ttl(TTL);
    let mut node = Node::create(etcd3(cfg), &bins::warden_bin().unwrap()).expect("create node");
    node.start().expect("start agent");
    node
}

fn log_of(node: &Node) -> String {
    std::fs::read_to_string(node.log_path()).unwrap_or_default()
}

/// A CA that did not sign etcd's certificate: the agent never reaches etcd, says it
/// is the certificate, and never registers.
fn foreign_ca_is_refused(cluster: &Cluster) {
    let tls = cluster.tls().expect("tls material");
    let client = tls.ca.client(AGENT_USER).unwrap();
    let mut node = extra_agent(cluster, "foreignca", |c| {
        agent_tls_config(c, &tls.foreign.cert, &client)
    });
    let line = wait_until(T, "the agent reports the certificate problem", || {
        log_of(&node)
            .lines()
            .find(|l| l.contains("certificate") && l.contains("etcd"))
            .map(str::to_string)
    });
    println!("wrong CA: {line}");
    assert!(line.contains("etcd3.cacert"), "{line}");
    assert!(
        cluster
            .etcd()
            .get(&format!("{}members/foreignca", cluster.key_prefix()))
            .unwrap()
            .is_none(),
        "an agent with the wrong CA registered"
    );
    // Nothing was tried over plain http.
    for m in cluster.etcd().members() {
        let plain = format!("http://{}", m.endpoint());
        assert!(!log_of(&node).contains(&plain), "{}", log_of(&node));
    }
    node.kill_hard();
}

/// A user whose role covers another prefix: authentication works, every read and
/// write of the cluster's keys is denied, and the error names the permission.
fn role_without_the_prefix_is_refused(cluster: &Cluster) {
    let tls = cluster.tls().expect("tls material");
    let client: CertFiles = tls.ca.client(STRANGER_USER).unwrap();
    let mut node = extra_agent(cluster, "stranger", |c| {
        agent_tls_config(c, &tls.ca.cert, &client)
            .set("etcd3.username", STRANGER_USER)
            .set("etcd3.password", STRANGER_PASSWORD)
    });
    let line = wait_until(T, "the agent reports the missing permission", || {
        log_of(&node)
            .lines()
            .find(|l| l.contains("permission denied"))
            .map(str::to_string)
    });
    println!("role without the prefix: {line}");
    assert!(line.contains("readwrite"), "{line}");
    let text = log_of(&node);
    assert!(!text.contains(STRANGER_PASSWORD), "the password was logged");
    node.kill_hard();
    assert!(cluster
        .etcd()
        .get(&format!("{}members/stranger", cluster.key_prefix()))
        .unwrap()
        .is_none());
}

/// `protocol: https` with a `cacert` that does not exist: refused at load, naming it.
fn missing_cacert_is_a_config_error(cluster: &Cluster) {
    let tls = cluster.tls().expect("tls material");
    let node_dir = cluster.dir().join("badca");
    let [pg, api] = ports::free_ports(2).unwrap()[..] else {
        unreachable!()
    };
    let cfg = agent_tls_config(
        NodeConfig::new("badca", &node_dir, pg, api, &cluster.etcd().hosts()),
        &cluster.dir().join("no-such-ca.pem"),
        &tls.server,
    );
    warden_tests::workdir::create_node_dir(&node_dir).unwrap();
    let path = cfg.config_path();
    std::fs::write(&path, cfg.render().unwrap()).unwrap();
    let bin = bins::warden_bin().unwrap();
    for args in [
        vec!["--validate-config".as_ref(), path.as_os_str()],
        vec![path.as_os_str()],
    ] {
        let out = run_bounded(Command::new(&bin).args(&args), RUN).expect("run warden");
        assert!(
            out.status.is_some_and(|s| !s.success()) && out.stderr.contains("etcd3.cacert"),
            "{}",
            out.describe()
        );
    }
}
