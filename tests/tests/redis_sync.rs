//! Synchronous mode for Redis against real processes. Redis replicas acknowledge a
//! write only when a client asks with `WAIT k`, and any connected replica counts, so the
//! leader lists every other member in `/sync` with quorum `members - k`: a candidate
//! must hear from that many of them (none ahead of it) before it may be promoted.
//!
//! A writer that counts a write only when `WAIT 1` confirmed it writes through the
//! Sentinel ports; the primary's node is killed outright; the replica promoted holds
//! every such write. Then one replica is stopped as well and the primary killed again:
//! the last replica cannot hear from a peer, so it is not promoted (it cannot know it
//! has every confirmed write) and says why.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::redis::{self as kit_redis, SentinelWriter};
use warden_tests::wait::{poll_until, wait_until};
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

/// `/sync` names `leader` with every other member as a voter and quorum 1.
fn wait_quorum_key(cluster: &Cluster, leader: &str) {
    let li = cluster.index_of(leader).unwrap();
    let mut others: Vec<String> = (0..3)
        .filter(|&i| i != li)
        .map(|i| cluster.node(i).name().to_string())
        .collect();
    others.sort();
    let voters = others.join(",");
    wait_until(
        T,
        "/sync: the leader, both replicas as voters, quorum 1",
        || {
            let key = cluster.sync_key()?;
            (key["leader"] == leader
                && key["quorum"] == 1
                && key["sync_standby"] == voters.as_str())
            .then_some(())
        },
    );
}

#[test]
fn redis_synchronous_mode_keeps_every_wait_acknowledged_write() {
    let mut cluster = Cluster::start(
        ClusterSpec::new(3)
            .redis()
            .without_haproxy()
            .customize(|_, c| c.set("bootstrap.dcs.synchronous_mode", true)),
    )
    .expect("start a Redis cluster in synchronous mode");
    cluster.wait_formed(FORM_TIMEOUT);
    let (leader, _) = cluster.wait_leader(T);
    wait_quorum_key(&cluster, &leader);
    let p = cluster.index_of(&leader).unwrap();
    let old_port = cluster.node(p).redis_port();

    let writer = SentinelWriter::start_waiting(
        sentinel_ports(&cluster),
        Some(REDIS_PASSWORD.into()),
        Some((1, 1000)),
    );
    wait_until(T, "WAIT-confirmed writes", || {
        (writer.ack_count() >= 500).then_some(())
    });
    let t_kill = Instant::now();
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the primary's node");
    let first = wait_until(T, "a confirmed write on a new primary", || {
        writer.first_ack_elsewhere(t_kill, old_port)
    });
    println!(
        "kill -9 in synchronous mode: confirmed writes resumed after {:.2} s",
        (first.at - t_kill).as_secs_f64()
    );
    let (new_leader, _) = cluster.wait_leader(T);
    let n = cluster.index_of(&new_leader).unwrap();
    let acks = writer.stop();
    let lost = kit_redis::lost_writes_as(cluster.node(n).redis_port(), Some(REDIS_PASSWORD), &acks)
        .expect("check");
    println!("{} WAIT-confirmed writes, {} lost", acks.len(), lost.len());
    assert!(
        lost.is_empty(),
        "WAIT-confirmed writes lost: {:?}",
        &lost[..lost.len().min(20)]
    );

    // The old node rejoins; the new leader lists both others again.
    cluster
        .node_mut(p)
        .start()
        .expect("restart the old primary's agent");
    wait_quorum_key(&cluster, &new_leader);

    // With one replica gone too, the last one cannot tell it has every confirmed write.
    let other = (0..3).find(|&i| i != p && i != n).unwrap();
    cluster
        .node_mut(other)
        .kill(Signal::SIGKILL)
        .expect("kill a replica");
    cluster
        .node_mut(n)
        .kill(Signal::SIGKILL)
        .expect("kill the primary");
    let survivor = cluster.node(p).name().to_string();
    let why = wait_until(T, "the survivor's reason for not taking over", || {
        let st = cluster.node(p).patroni()?;
        st.warden
            .map(|w| w.note)
            .filter(|note| note.contains("quorum"))
    });
    println!("{survivor} stays a replica: {why}");
    // It never takes the key, for longer than a ttl after the leader's expired.
    let held = poll_until(Duration::from_secs(15), || {
        cluster
            .leader_key()
            .ok()
            .flatten()
            .filter(|kv| kv.value == survivor)
    });
    assert!(
        held.is_none(),
        "{survivor} took the leader key without a quorum"
    );
}
