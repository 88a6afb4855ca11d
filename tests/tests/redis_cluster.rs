//! Redis mode against real processes: three `warden` agents, each starting its own
//! `redis-server` and serving a Sentinel-compatible port, coordinated through etcd.
//!
//! One cluster, in order: it forms (one primary, two replicas streaming, every
//! Sentinel port naming the leader, HAProxy's `/primary` check routing to it); a
//! Sentinel-aware writer (the client guide's discovery) writes through the ports; a
//! `wardenctl switchover` hands the primary over with writes held, not stopped, and
//! loses no acknowledged write; the primary's node is killed outright and a replica
//! takes over within the ttl, the ports name it, the writer resumes on it; the old node
//! comes back as a replica of the new primary.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::redis::{self as kit_redis, SentinelWriter};
use warden_tests::wait::wait_until;
use warden_tests::{Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);

fn sentinel_ports(cluster: &Cluster) -> Vec<u16> {
    cluster
        .nodes()
        .iter()
        .filter_map(warden_tests::node::Node::sentinel_port)
        .collect()
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME mymaster` on the port, as the redis port.
fn master_port(sentinel: u16) -> Option<u16> {
    kit_redis::discover_primary(&[sentinel])
}

/// `INFO replication` of a member's redis-server.
fn replication(port: u16) -> Option<std::collections::HashMap<String, String>> {
    let mut c = kit_redis::connect_as(port, Some(REDIS_PASSWORD), Duration::from_secs(1)).ok()?;
    let text: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// Every Sentinel port names `port` as the primary.
fn ports_agree_on(cluster: &Cluster, port: u16) -> bool {
    sentinel_ports(cluster)
        .into_iter()
        .all(|s| master_port(s) == Some(port))
}

#[test]
fn redis_cluster_forms_fails_over_and_rejoins() {
    let mut cluster = Cluster::start(ClusterSpec::new(3).redis()).expect("start a Redis cluster");
    let formed = cluster.wait_formed(FORM_TIMEOUT);
    println!("formed in {:.1} s", formed.as_secs_f64());
    let (leader, token) = cluster.wait_leader(T);
    let p = cluster.index_of(&leader).unwrap();
    let primary_port = cluster.node(p).redis_port();

    // Both replicas stream from the leader's redis-server.
    wait_until(T, "two replicas online on the primary", || {
        let info = replication(primary_port)?;
        (info.get("role")? == "master" && info.get("connected_slaves")? == "2").then_some(())
    });
    wait_until(T, "every Sentinel port names the leader", || {
        ports_agree_on(&cluster, primary_port).then_some(())
    });
    // The member key says it is Redis: conn_url and the replication id.
    let member = cluster
        .member_key(&leader)
        .expect("the leader's member key");
    assert_eq!(
        member["conn_url"],
        format!("redis://127.0.0.1:{primary_port}"),
        "{member}"
    );
    assert!(
        member["replid"].as_str().is_some_and(|id| id.len() == 40),
        "{member}"
    );
    assert_eq!(cluster.node(p).fencing_token(), Some(token));
    wardenctl_lists_offsets(&cluster, &leader);

    // HAProxy routes writes with the same httpchk /primary pattern as PostgreSQL.
    let mut via_haproxy = kit_redis::connect_as(
        cluster.write_port(),
        Some(REDIS_PASSWORD),
        Duration::from_secs(2),
    )
    .expect("connect through HAProxy");
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut via_haproxy).expect("ROLE");
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec())),
        "HAProxy's write port reaches the primary"
    );

    let writer = SentinelWriter::start_as(sentinel_ports(&cluster), Some(REDIS_PASSWORD.into()));
    wait_until(T, "writes acknowledged through Sentinel discovery", || {
        (writer.ack_count() >= 200).then_some(())
    });

    // Planned: wardenctl, then Patroni's own patronictl, switch over to another member
    // while the writer runs.
    let (leader, _) = switch_over(&cluster, &writer, &leader, Tool::Wardenctl);
    let (leader, token) = switch_over(&cluster, &writer, &leader, Tool::Patronictl);
    let p = cluster.index_of(&leader).unwrap();
    let primary_port = cluster.node(p).redis_port();

    // Unplanned: the primary's node dies; the lease expires; a replica takes over.
    let t_kill = Instant::now();
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the primary's node");
    let first = wait_until(T, "a write acknowledged by another server", || {
        writer.first_ack_elsewhere(t_kill, primary_port)
    });
    let gap = first.at - t_kill;
    println!(
        "kill -9 of the primary: writes resumed after {:.2} s",
        gap.as_secs_f64()
    );
    let (new_leader, new_token) = cluster.wait_leader(T);
    assert_ne!(new_leader, leader, "a new leader");
    assert!(new_token > token, "a new fencing token");
    let n = cluster.index_of(&new_leader).unwrap();
    let new_port = cluster.node(n).redis_port();
    assert_eq!(first.port, new_port, "the writer resumed on the new leader");
    wait_until(T, "every live Sentinel port names the new primary", || {
        sentinel_ports(&cluster)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != p)
            .all(|(_, s)| master_port(s) == Some(new_port))
            .then_some(())
    });

    // The old node comes back and follows the new primary.
    cluster
        .node_mut(p)
        .start()
        .expect("restart the old primary's agent");
    wait_until(T, "the old primary streams from the new one", || {
        let info = replication(primary_port)?;
        (info.get("role")? == "slave"
            && info.get("master_port")? == &new_port.to_string()
            && info.get("master_link_status")? == "up")
            .then_some(())
    });
    wait_until(T, "every Sentinel port names the new primary", || {
        ports_agree_on(&cluster, new_port).then_some(())
    });
    let acks = writer.stop();
    let lost = kit_redis::lost_writes_as(new_port, Some(REDIS_PASSWORD), &acks).expect("check");
    // Asynchronous replication: a kill -9 may lose what the primary acknowledged in its
    // last moments (the synchronous-mode test asserts 0); report it.
    println!("{} writes acknowledged, {} lost", acks.len(), lost.len());
}

#[derive(Debug, Clone, Copy)]
enum Tool {
    Wardenctl,
    Patronictl,
}

/// `switchover --force` from `old` to the next member with `tool`; asserts the
/// hand-over lost nothing and prints the write gap. Returns the new leader and its
/// token.
fn switch_over(cluster: &Cluster, writer: &SentinelWriter, old: &str, tool: Tool) -> (String, i64) {
    let o = cluster.index_of(old).unwrap();
    let old_port = cluster.node(o).redis_port();
    let candidate = cluster.node((o + 1) % 3).name().to_string();
    let new_port = cluster.node((o + 1) % 3).redis_port();
    let args = [
        "switchover",
        cluster.scope(),
        "--leader",
        old,
        "--candidate",
        candidate.as_str(),
        "--force",
    ];
    let mut cmd = match tool {
        Tool::Wardenctl => {
            let mut cmd = warden_tests::bins::wardenctl_command().expect("wardenctl");
            cmd.arg("-c").arg(cluster.node(o).config_path());
            cmd
        }
        Tool::Patronictl => {
            // Patroni's CLI needs only the scope and etcd: it reads the member keys
            // and posts to the leader's REST API, whatever engine runs behind it.
            let cfg = cluster.dir().join("patronictl.yaml");
            std::fs::write(
                &cfg,
                format!(
                    "scope: {}\netcd3:\n  hosts: {}\n",
                    cluster.scope(),
                    cluster.etcd().member(0).endpoint()
                ),
            )
            .expect("write patronictl.yaml");
            let mut cmd = std::process::Command::new(
                warden_tests::bins::patronictl().unwrap_or_else(|e| panic!("{e:#}")),
            );
            cmd.arg("-c").arg(cfg);
            cmd
        }
    };
    cmd.args(args);
    let asked = Instant::now();
    let out = warden_tests::process::run_bounded(&mut cmd, Duration::from_secs(60)).unwrap();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{tool:?} switchover: {}",
        out.describe()
    );
    let first_new = wait_until(T, "a write acknowledged by the candidate", || {
        writer.first_ack_elsewhere(asked, old_port)
    });
    assert_eq!(first_new.port, new_port, "writes moved to the candidate");
    let last_old = writer
        .last_ack_on(old_port)
        .expect("writes on the old primary");
    println!(
        "{tool:?} switchover {old} -> {candidate}: write gap {:.0} ms (last ack on the old primary to \
         the first on the new)",
        (first_new.at.saturating_duration_since(last_old.at)).as_secs_f64() * 1000.0
    );
    let (leader, token) = cluster.wait_leader(T);
    assert_eq!(leader, candidate);
    // The old primary follows the new one, and nothing acknowledged is missing there.
    wait_until(T, "the old primary streams from the candidate", || {
        let info = replication(old_port)?;
        (info.get("role")? == "slave"
            && info.get("master_port")? == &new_port.to_string()
            && info.get("master_link_status")? == "up")
            .then_some(())
    });
    let acks: Vec<_> = {
        let n = writer.ack_count();
        wait_until(T, "more writes on the new primary", || {
            (writer.ack_count() > n + 100).then_some(())
        });
        writer.acks_so_far()
    };
    let lost = kit_redis::lost_writes_as(new_port, Some(REDIS_PASSWORD), &acks).expect("check");
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost in the switchover: {:?}",
        lost.len(),
        acks.len(),
        &lost[..lost.len().min(20)]
    );
    wait_until(T, "every Sentinel port names the candidate", || {
        ports_agree_on(cluster, new_port).then_some(())
    });
    (leader, token)
}

/// `wardenctl list -f json` shows Redis members with their replication offsets and
/// lag in bytes (no timelines or LSNs).
fn wardenctl_lists_offsets(cluster: &Cluster, leader: &str) {
    let mut last = String::new();
    let rows = warden_tests::wait::poll_until(T, || {
        let mut cmd = warden_tests::bins::wardenctl_command().ok()?;
        cmd.arg("-c")
            .arg(cluster.node(0).config_path())
            .args(["list", "-f", "json"]);
        let out = warden_tests::process::run_bounded(&mut cmd, Duration::from_secs(30)).ok()?;
        last = out.describe();
        let rows: Vec<serde_json::Value> = serde_json::from_str(out.stdout.trim()).ok()?;
        let replicas_with_offsets = rows
            .iter()
            .filter(|r| r["Member"] != leader && r["Offset"].as_u64().is_some_and(|o| o > 0))
            .filter(|r| r["Lag (bytes)"].as_u64().is_some())
            .count();
        (rows.len() == 3 && replicas_with_offsets == 2).then_some(rows)
    })
    .unwrap_or_else(|| panic!("wardenctl list with offsets: {last}"));
    assert!(rows.iter().all(|r| r.get("TL").is_none()), "{rows:?}");
}
