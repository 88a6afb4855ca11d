//! The REST API over https with client certificates required (`restapi.certfile`,
//! `keyfile`, `cafile`, `verify_client: required`; `ctl.cacert/certfile/keyfile`), on
//! one shared two-node cluster:
//!
//! - the cluster forms (members probe each other over https), `api_url` is https;
//! - HAProxy routes writes to the primary with `check-ssl verify required`;
//! - `wardenctl switchover` over https, and HAProxy follows the new primary;
//! - Patroni's `patronictl` lists the cluster and restarts a member over https;
//! - refused: plain http, no client certificate, a certificate of another CA,
//!   wardenctl trusting another CA (an error naming it) unless `-k`;
//! - `allowlist` (set by reload): a POST from 127.0.0.1 gets 403, GET still answers;
//! - certificate reload: a newly signed certificate is served after `POST /reload`
//!   while an open keep-alive connection goes on; a broken one is refused and the
//!   running certificate kept.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use warden_tests::process::{run_bounded, run_bounded_input, RunOutput};
use warden_tests::wait::{poll_until, wait_until};
use warden_tests::{bins, http, sql, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(60);

fn ok(out: &RunOutput) -> bool {
    out.status.is_some_and(|s| s.success())
}

fn wardenctl(cluster: &Cluster, env: &[(&str, &str)], args: &[&str]) -> RunOutput {
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    cmd.arg("-c").arg(cluster.node(0).config_path()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_bounded_input(&mut cmd, None, RUN).expect("run wardenctl");
    println!("wardenctl {}: {}", args.join(" "), out.describe());
    out
}

/// The write port's backend is the node with this PostgreSQL port, and writable.
fn haproxy_routes_to(cluster: &Cluster, pg_port: u16) -> bool {
    let port = sql::query_text(cluster.write_port(), "SELECT current_setting('port')")
        .ok()
        .flatten();
    port == Some(pg_port.to_string())
        && sql::is_in_recovery(cluster.write_port()).ok() == Some(false)
}

#[test]
fn rest_api_over_tls() {
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let mut cluster = Cluster::start(ClusterSpec::new(2).with_rest_tls()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let scope = cluster.scope().to_string();

    // Members publish https and found each other over it.
    let status = cluster.cluster_status().expect("GET /cluster over https");
    for m in &status.members {
        assert!(m.api_url.starts_with("https://"), "{m:?}");
    }

    // HAProxy (check-ssl, client certificate) routes writes to the primary.
    let (leader, _) = cluster.wait_leader(T);
    let idx = |name: &str| {
        cluster
            .nodes()
            .iter()
            .position(|n| n.name() == name)
            .unwrap()
    };
    let leader_port = cluster.node(idx(&leader)).pg_port();
    wait_until(T, "HAProxy routes writes to the primary", || {
        haproxy_routes_to(&cluster, leader_port).then_some(())
    });

    // wardenctl switchover over https; HAProxy follows.
    let candidate = cluster
        .nodes()
        .iter()
        .map(|n| n.name().to_string())
        .find(|n| *n != leader)
        .unwrap();
    let out = wardenctl(
        &cluster,
        &[],
        &["switchover", &scope, "--candidate", &candidate, "--force"],
    );
    assert!(ok(&out), "switchover: {}", out.describe());
    wait_until(T, "the candidate leads", || {
        (cluster.wait_leader(T).0 == candidate).then_some(())
    });
    let new_port = cluster.node(idx(&candidate)).pg_port();
    wait_until(T, "HAProxy routes writes to the new primary", || {
        haproxy_routes_to(&cluster, new_port).then_some(())
    });
    cluster.wait_replicas_streaming(T);

    patronictl_over_tls(&cluster, &scope, &leader);
    refusals(&cluster, &scope);
    let old_leader = idx(&leader);
    allowlist_by_reload(&mut cluster, old_leader);
    certificate_reload(&cluster);
}

/// Patroni's patronictl, configured with `ctl.cacert/certfile/keyfile`, lists the
/// cluster and restarts a member (a POST that needs the client certificate).
fn patronictl_over_tls(cluster: &Cluster, scope: &str, member: &str) {
    let Ok(ctl) = bins::patronictl() else {
        panic!("patronictl not found: set WARDEN_PATRONICTL");
    };
    let cfg = cluster.dir().join("patronictl-tls.yaml");
    cluster.write_ctl_config(&cfg).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&ctl);
        cmd.env("PATRONICTL_CONFIG_FILE", &cfg).args(args);
        let out = run_bounded(&mut cmd, RUN).expect("run patronictl");
        println!("patronictl {}: {}", args.join(" "), out.describe());
        out
    };
    let out = run(&["list", scope]);
    assert!(ok(&out), "{}", out.describe());
    for n in cluster.nodes() {
        assert!(out.stdout.contains(n.name()), "{}", out.stdout);
    }
    let before = cluster
        .node(
            cluster
                .nodes()
                .iter()
                .position(|n| n.name() == member)
                .unwrap(),
        )
        .postmaster_pid();
    let out = run(&["restart", scope, member, "--force"]);
    assert!(ok(&out), "{}", out.describe());
    assert!(
        out.stdout.contains("Success: restart on member"),
        "{}",
        out.stdout
    );
    let node = cluster.nodes().iter().find(|n| n.name() == member).unwrap();
    wait_until(T, "the member restarted PostgreSQL", || {
        let now = node.postmaster_pid();
        (now.is_some() && now != before).then_some(())
    });
    cluster.wait_replicas_streaming(T);
}

/// Plain http, no client certificate, a foreign certificate, and wardenctl trusting
/// the wrong CA are refused; `-k` skips verification (and only it).
fn refusals(cluster: &Cluster, scope: &str) {
    let tls = cluster.tls().unwrap();
    let port = cluster.node(0).api_port();
    let https = format!("https://127.0.0.1:{port}/health");
    assert!(
        http::get(&format!("http://127.0.0.1:{port}/health")).is_err(),
        "plain http answered on the https port"
    );
    let no_cert = http::agent_with(
        http::TIMEOUT,
        Some(http::tls_config(&tls.ca.cert, None).unwrap()),
    );
    assert!(
        http::get_via(&no_cert, &https).is_err(),
        "a client without a certificate was served"
    );
    let intruder = tls.foreign.client("intruder").unwrap();
    let foreign = http::agent_with(
        http::TIMEOUT,
        Some(http::tls_config(&tls.ca.cert, Some(&intruder)).unwrap()),
    );
    assert!(
        http::get_via(&foreign, &https).is_err(),
        "a foreign client certificate was served"
    );
    // The kit's own identity works (the control for the three above).
    assert_eq!(http::get(&https).unwrap().status, 200);

    let wrong_ca = tls.foreign.cert.display().to_string();
    let env = [("PATRONI_CTL_CACERT", wrong_ca.as_str())];
    let out = wardenctl(cluster, &env, &["reload", scope, "--force"]);
    assert!(!ok(&out), "wardenctl trusted a server its CA did not sign");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("ctl.cacert") && text.contains(&wrong_ca),
        "{text}"
    );
    assert!(text.to_ascii_lowercase().contains("certificate"), "{text}");
    let out = wardenctl(cluster, &env, &["-k", "reload", scope, "--force"]);
    assert!(ok(&out), "wardenctl -k: {}", out.describe());
}

/// `allowlist: [127.0.0.2]` set by `POST /reload`: a POST from 127.0.0.1 is refused
/// with 403 while GET still answers; SIGHUP (a POST cannot) takes it back.
fn allowlist_by_reload(cluster: &mut Cluster, i: usize) {
    let url = cluster.node(i).api_url();
    let node = cluster.node_mut(i);
    let cfg = node.config().clone().set(
        "restapi.allowlist",
        serde_yaml::Value::Sequence(vec!["127.0.0.2".into()]),
    );
    *node.config_mut() = cfg;
    node.write_config().unwrap();
    let r = http::post_json(&format!("{url}/reload"), &serde_json::json!({})).unwrap();
    assert_eq!(r.status, 202, "{r:?}");
    let denied = wait_until(T, "the allowlist applies", || {
        let r = http::post_json(&format!("{url}/reload"), &serde_json::json!({})).ok()?;
        (r.status == 403).then_some(r)
    });
    assert_eq!(denied.body, "Access is denied");
    assert_eq!(http::get(&format!("{url}/health")).unwrap().status, 200);

    let node = cluster.node_mut(i);
    let cfg = node.config().clone().remove("restapi.allowlist");
    *node.config_mut() = cfg;
    node.write_config().unwrap();
    node.signal(nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_until(T, "the allowlist is gone", || {
        let r = http::post_json(&format!("{url}/reload"), &serde_json::json!({})).ok()?;
        (r.status == 202).then_some(())
    });
}

/// The serial of the certificate a fresh connection to `port` is served.
fn served_serial(
    ca: &std::path::Path,
    client: &warden_tests::tls::CertFiles,
    port: u16,
) -> Option<String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "openssl s_client -connect 127.0.0.1:{port} -CAfile {} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        ca.display(),
        client.cert.display(),
        client.key.display()
    ));
    let out = run_bounded(&mut cmd, Duration::from_secs(10)).ok()?;
    let s = out.stdout.trim().to_string();
    s.starts_with("serial=").then_some(s)
}

fn file_serial(cert: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One open TLS connection (openssl s_client) sending requests on demand.
struct KeepAlive {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl KeepAlive {
    fn open(ca: &std::path::Path, client: &warden_tests::tls::CertFiles, port: u16) -> KeepAlive {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-CAfile")
            .arg(ca)
            .arg("-cert")
            .arg(&client.cert)
            .arg("-key")
            .arg(&client.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        KeepAlive { child, lines }
    }

    /// `GET /liveness` on this connection: true when `200` came back.
    fn liveness(&mut self) -> bool {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"GET /liveness HTTP/1.1\r\nHost: node\r\n\r\n")
            .unwrap();
        stdin.flush().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with("HTTP/1.1 ") => return l.starts_with("HTTP/1.1 200"),
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A newly signed certificate is served after `POST /reload`, an open connection
/// survives; a broken certificate on reload keeps the running one.
fn certificate_reload(cluster: &Cluster) {
    let tls = cluster.tls().unwrap();
    let node = cluster.node(0);
    let port = node.api_port();
    let old = file_serial(&tls.server.cert);
    assert_eq!(
        served_serial(&tls.ca.cert, &tls.root_client, port).as_deref(),
        Some(old.as_str())
    );
    let mut conn = KeepAlive::open(&tls.ca.cert, &tls.root_client, port);
    assert!(conn.liveness(), "the keep-alive connection did not answer");

    // A broken certificate: refused on reload, the running one stays.
    let good_cert = std::fs::read(&tls.server.cert).unwrap();
    std::fs::write(&tls.server.cert, b"not a certificate\n").unwrap();
    let reload = || {
        let r = http::post_json(
            &format!("{}/reload", node.api_url()),
            &serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(r.status, 202, "{r:?}");
    };
    reload();
    wait_until(T, "the reload refused the broken certificate", || {
        let log = std::fs::read_to_string(node.log_path()).ok()?;
        log.contains("keeping the running certificate")
            .then_some(())
    });
    assert_eq!(
        served_serial(&tls.ca.cert, &tls.root_client, port).as_deref(),
        Some(old.as_str())
    );
    std::fs::write(&tls.server.cert, &good_cert).unwrap();

    // A new certificate for the same names, another serial.
    let fresh = tls.ca.server("loopback-renewed").unwrap();
    let new = file_serial(&fresh.cert);
    assert_ne!(new, old);
    std::fs::write(&tls.server.cert, std::fs::read(&fresh.cert).unwrap()).unwrap();
    std::fs::write(&tls.server.key, std::fs::read(&fresh.key).unwrap()).unwrap();
    reload();
    let served = poll_until(T, || {
        served_serial(&tls.ca.cert, &tls.root_client, port).filter(|s| *s == new)
    });
    assert_eq!(
        served.as_deref(),
        Some(new.as_str()),
        "the renewed certificate is not served"
    );
    assert!(
        conn.liveness(),
        "the open connection was dropped by the reload"
    );
}
