//! Redis mode over TLS end to end: every `redis-server` the agents start speaks only TLS
//! and requires a client certificate from the cluster CA (replication included), and
//! every Sentinel-compatible port speaks only TLS and requires one too
//! (`ClusterSpec::with_redis_tls`).
//!
//! The kit's Redis client has no TLS, so the checks go through `redis-cli --tls` with the
//! cluster CA and the kit's client certificate: an independent implementation (OpenSSL)
//! on the other end of the agents' rustls and redis-server's own TLS.
//!
//! One cluster, in order: it forms with both replicas streaming over TLS; the member key
//! says `rediss://`; plain-text connections to the redis and Sentinel ports get nothing,
//! nor does a TLS client without a certificate on the Sentinel port; the Sentinel ports
//! over TLS name the primary; HAProxy passes TLS through to it; a write reaches the
//! replicas; the primary's node is killed, a replica takes over and has the write; the
//! old node comes back as a replica over TLS.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::redis as kit_redis;
use warden_tests::wait::wait_until;
use warden_tests::{Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);

/// The files `redis-cli` needs: the cluster CA and the kit's client certificate.
#[derive(Debug, Clone)]
struct CliTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// How a `redis-cli` run presents itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// TLS, the cluster CA, the kit's client certificate.
    Certified,
    /// TLS, the cluster CA, no client certificate.
    NoCert,
}

/// `redis-cli --tls ... -p port args` (logging in with the data password when
/// `password`), as `Ok(stdout)` when it exited 0 and printed no error reply.
fn cli(
    tls: &CliTls,
    client: Client,
    port: u16,
    password: bool,
    args: &[&str],
) -> Result<String, String> {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["--tls", "--cacert"]).arg(&tls.ca);
    if client == Client::Certified {
        cmd.arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
    }
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .env_remove("REDISCLI_AUTH");
    if password {
        // Not in argv, where any local user could read it.
        cmd.env("REDISCLI_AUTH", REDIS_PASSWORD);
    }
    let out = warden_tests::process::run_bounded(&mut cmd, Duration::from_secs(10))
        .map_err(|e| format!("{e:#}"))?;
    let ok = out.status.is_some_and(|s| s.success())
        && !out.stdout.starts_with("ERR")
        && !out.stdout.contains("(error)")
        && !out.stderr.contains("Could not connect");
    if ok {
        Ok(out.stdout)
    } else {
        Err(out.describe())
    }
}

/// `INFO replication` over TLS, as field → value.
fn replication(tls: &CliTls, port: u16) -> Option<std::collections::HashMap<String, String>> {
    let text = cli(tls, Client::Certified, port, true, &["INFO", "replication"]).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// The redis port a Sentinel port names, asked over TLS.
fn master_port(tls: &CliTls, sentinel: u16) -> Option<u16> {
    let text = cli(
        tls,
        Client::Certified,
        sentinel,
        false,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
    )
    .ok()?;
    let mut lines = text.lines();
    (lines.next()? == "127.0.0.1").then_some(())?;
    lines.next()?.trim().parse().ok()
}

fn sentinel_port(cluster: &Cluster, i: usize) -> u16 {
    cluster.node(i).sentinel_port().expect("a Sentinel port")
}

#[test]
fn redis_over_tls_forms_serves_sentinel_and_fails_over() {
    let mut cluster =
        Cluster::start(ClusterSpec::new(3).with_redis_tls()).expect("start a Redis TLS cluster");
    let formed = cluster.wait_formed(FORM_TIMEOUT);
    println!("formed in {:.1} s", formed.as_secs_f64());
    let tls = {
        let t = cluster.tls().expect("TLS material");
        CliTls {
            ca: t.ca.cert.clone(),
            cert: t.root_client.cert.clone(),
            key: t.root_client.key.clone(),
        }
    };
    let (leader, token) = cluster.wait_leader(T);
    let p = cluster.index_of(&leader).unwrap();
    let primary_port = cluster.node(p).redis_port();

    // Replication runs over TLS (there is no other port): both replicas online.
    wait_until(T, "two replicas online on the primary, over TLS", || {
        let info = replication(&tls, primary_port)?;
        (info.get("role")? == "master" && info.get("connected_slaves")? == "2").then_some(())
    });
    let member = cluster
        .member_key(&leader)
        .expect("the leader's member key");
    assert_eq!(
        member["conn_url"],
        format!("rediss://127.0.0.1:{primary_port}"),
        "{member}"
    );

    refuses_plain_text_and_anonymous(&tls, primary_port, sentinel_port(&cluster, p));

    // The Sentinel ports over TLS name the primary.
    wait_until(T, "every Sentinel port names the primary over TLS", || {
        (0..3)
            .all(|i| master_port(&tls, sentinel_port(&cluster, i)) == Some(primary_port))
            .then_some(())
    });
    // HAProxy passes TLS through to the primary (its checks are the REST API's).
    let role = wait_until(T, "ROLE through HAProxy's write port", || {
        cli(
            &tls,
            Client::Certified,
            cluster.write_port(),
            true,
            &["ROLE"],
        )
        .ok()
    });
    assert_eq!(role.lines().next(), Some("master"), "{role}");

    // A write reaches both replicas over the TLS replication link.
    let value = format!("written-under-token-{token}");
    let set = cli(
        &tls,
        Client::Certified,
        primary_port,
        true,
        &["SET", "tls-key", &value],
    )
    .expect("SET over TLS");
    assert_eq!(set.trim(), "OK");
    for r in (0..3).filter(|&i| i != p) {
        let port = cluster.node(r).redis_port();
        wait_until(
            T,
            &format!("the write on {}", cluster.node(r).name()),
            || {
                let got = cli(&tls, Client::Certified, port, true, &["GET", "tls-key"]).ok()?;
                (got.trim() == value).then_some(())
            },
        );
    }

    kill_primary(&mut cluster, &tls, p, &leader, token, &value);
}

/// No plain text anywhere, and no anonymous TLS client either.
fn refuses_plain_text_and_anonymous(tls: &CliTls, primary_port: u16, sentinel: u16) {
    // No plain text anywhere: the redis port and the Sentinel port answer nothing to a
    // client that does not speak TLS.
    let plain = kit_redis::connect_as(primary_port, Some(REDIS_PASSWORD), Duration::from_secs(2))
        .and_then(|mut c| Ok(redis::cmd("PING").query::<String>(&mut c)?));
    assert!(
        plain.is_err(),
        "a plain-text client got {plain:?} from the TLS-only redis port"
    );
    let plain = kit_redis::connect(sentinel, Duration::from_secs(2)).and_then(|mut c| {
        Ok(redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("mymaster")
            .query::<Option<(String, String)>>(&mut c)?)
    });
    assert!(
        plain.is_err(),
        "a plain-text client got {plain:?} from the TLS-only Sentinel port"
    );
    // require_client_cert: a TLS client without a certificate is refused too.
    let anonymous = cli(
        tls,
        Client::NoCert,
        sentinel,
        false,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
    );
    assert!(
        anonymous.is_err(),
        "a client without a certificate got {anonymous:?} from the Sentinel port"
    );
    // auth_clients yes: the same on the redis port.
    let anonymous = cli(tls, Client::NoCert, primary_port, true, &["PING"]);
    assert!(
        anonymous.is_err(),
        "a client without a certificate got {anonymous:?} from the redis port"
    );
}

/// kill -9 of the primary's node (`p`, holding the leader key with `token`): a replica
/// takes over, over TLS as before, with the write `value`; the old node rejoins.
fn kill_primary(
    cluster: &mut Cluster,
    tls: &CliTls,
    p: usize,
    leader: &str,
    token: i64,
    value: &str,
) {
    let primary_port = cluster.node(p).redis_port();
    let t_kill = Instant::now();
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the primary's node");
    let (new_leader, new_token) = wait_until(T, "a new leader", || {
        let (l, t) = cluster.wait_leader(T);
        (l != leader).then_some((l, t))
    });
    assert!(new_token > token, "a new fencing token");
    let n = cluster.index_of(&new_leader).unwrap();
    let new_port = cluster.node(n).redis_port();
    wait_until(
        T,
        "the new primary writable with one replica, over TLS",
        || {
            let info = replication(tls, new_port)?;
            (info.get("role")? == "master" && info.get("connected_slaves")? == "1").then_some(())
        },
    );
    println!(
        "kill -9 of the primary: new primary with its replica after {:.2} s",
        t_kill.elapsed().as_secs_f64()
    );
    let got = cli(tls, Client::Certified, new_port, true, &["GET", "tls-key"]).expect("GET");
    assert_eq!(got.trim(), value, "the write survived the failover");
    let set = cli(
        tls,
        Client::Certified,
        new_port,
        true,
        &["SET", "after", "1"],
    )
    .expect("SET");
    assert_eq!(set.trim(), "OK");
    wait_until(T, "the live Sentinel ports name the new primary", || {
        (0..3)
            .filter(|&i| i != p)
            .all(|i| master_port(tls, sentinel_port(cluster, i)) == Some(new_port))
            .then_some(())
    });
    let member = cluster
        .member_key(&new_leader)
        .expect("the new leader's key");
    assert_eq!(
        member["conn_url"],
        format!("rediss://127.0.0.1:{new_port}"),
        "{member}"
    );

    // The old node comes back and follows the new primary over TLS.
    cluster
        .node_mut(p)
        .start()
        .expect("restart the old primary's agent");
    wait_until(
        T,
        "the old primary streams from the new one over TLS",
        || {
            let info = replication(tls, primary_port)?;
            (info.get("role")? == "slave"
                && info.get("master_port")? == &new_port.to_string()
                && info.get("master_link_status")? == "up")
                .then_some(())
        },
    );
    wait_until(T, "every Sentinel port names the new primary", || {
        (0..3)
            .all(|i| master_port(tls, sentinel_port(cluster, i)) == Some(new_port))
            .then_some(())
    });
}
