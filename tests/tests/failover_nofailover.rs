//! A replica tagged `nofailover` is never promoted: with a healthy
//! alternative the other replica wins; as the only replica, the cluster
//! stays without a leader rather than promote it.
//!
//! The tag is applied to a replica after the cluster formed (config edited,
//! agent restarted), so which node bootstrapped does not matter.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::failover::secs;
use warden_tests::{wait, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Restart replica `r` with `tags.nofailover: true` and wait until it
/// publishes the tag and streams again.
fn tag_nofailover(cluster: &mut Cluster, r: usize) {
    let cfg = cluster.node(r).config().clone().tag("nofailover", true);
    *cluster.node_mut(r).config_mut() = cfg;
    cluster.node(r).write_config().expect("write config");
    cluster
        .node_mut(r)
        .restart(STOP_TIMEOUT)
        .expect("restart the replica");
    wait_until(
        Duration::from_secs(60),
        "the replica publishes nofailover",
        || {
            let v = cluster.node(r).patroni()?;
            (v.tag("nofailover") == Some(&serde_json::Value::Bool(true))).then_some(())
        },
    );
    cluster.assert_converged(CONVERGE_TIMEOUT);
}

#[test]
fn nofailover_replica_loses_to_the_other_replica() {
    let mut cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let (p, replicas) = cluster
        .assert_converged(CONVERGE_TIMEOUT)
        .primary_and_replicas(&cluster);
    let (tagged, other) = (replicas[0], replicas[1]);
    tag_nofailover(&mut cluster, tagged);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    assert_eq!(before.primary, p);

    let primaries = cluster.watch_primaries();
    let leader = cluster.watch_leader_key();
    let t_kill = Instant::now();
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the primary");
    let ttl = cluster.ttl();
    let (new, promoted) = wait_until(3 * ttl, "a new primary", || {
        primaries.first_other_200(p, t_kill)
    });
    println!(
        "{} promoted {} after the kill; {} (nofailover) was not",
        cluster.node(new).name(),
        secs(promoted.seen - t_kill),
        cluster.node(tagged).name()
    );
    let logs = cluster.dump_logs();
    assert_eq!(new, other, "the nofailover replica was promoted\n{logs}");
    assert!(
        !primaries.any_200(tagged, t_kill),
        "the nofailover replica answered 200 on /primary\n{logs}"
    );
    let holders: Vec<String> = leader
        .holders_since(t_kill)
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    assert!(
        !holders.iter().any(|h| h == cluster.node(tagged).name()),
        "the nofailover replica held the leader key: {holders:?}\n{logs}"
    );
    primaries.stop();
    leader.stop();

    cluster
        .node_mut(p)
        .start()
        .expect("restart the old primary");
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    assert_eq!(after.primary, other);
    assert_eq!(after.timeline, before.timeline + 1);
}

#[test]
fn only_replica_tagged_nofailover_is_never_promoted() {
    let mut cluster = Cluster::start(ClusterSpec::new(2).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let (p, replicas) = cluster
        .assert_converged(CONVERGE_TIMEOUT)
        .primary_and_replicas(&cluster);
    let r = replicas[0];
    tag_nofailover(&mut cluster, r);
    let (holder, rev) = cluster.wait_leader(Duration::from_secs(10));

    let primaries = cluster.watch_primaries();
    let leader = cluster.watch_leader_key();
    let t_kill = Instant::now();
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the primary");
    // Bounded observation window: the lease expires at most ttl after the
    // kill (plus etcd's expiry check, every 0.5 s); a few seconds more give
    // the replica every chance to race. Fails as soon as it does.
    let window = cluster.ttl() + Duration::from_secs(5);
    let r_name = cluster.node(r).name().to_string();
    let violation = wait::poll_until(window, || {
        if primaries.any_200(r, t_kill) {
            return Some(format!("{r_name} answered 200 on /primary"));
        }
        leader
            .holders_since(t_kill)
            .into_iter()
            .find(|(h, _)| *h == r_name)
            .map(|(h, rev)| format!("{h} took the leader key (revision {rev})"))
    });
    let expired = leader.first_change_from(t_kill, &(holder, rev));
    println!(
        "observed {} after the kill: the old leader key went away at {}, no promotion",
        secs(t_kill.elapsed()),
        expired.map_or("(never)".into(), |t| secs(t.seen - t_kill))
    );
    let logs = cluster.dump_logs();
    assert_eq!(
        violation, None,
        "the nofailover replica was promoted\n{logs}"
    );
    // Not vacuous: the key did expire, so the replica could have raced.
    assert!(
        leader.absent_since(t_kill),
        "the leader key never expired during the window\n{logs}"
    );
    assert!(
        cluster.node(r).is_replica(),
        "{r_name} is not a replica\n{logs}"
    );
    primaries.stop();
    leader.stop();

    cluster
        .node_mut(p)
        .start()
        .expect("restart the old primary");
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    assert_eq!(after.primary, p, "the old primary did not take over again");
}

/// `nofailover` also keeps a node from bootstrapping a new cluster, as in
/// Patroni (`Ha.bootstrap` races for `initialize` only when
/// `not self.patroni.nofailover`): a node that may never become leader must
/// not become the first one either. Alone, it waits for a leader.
#[test]
fn nofailover_node_does_not_bootstrap() {
    let mut cluster = Cluster::start(
        ClusterSpec::new(1)
            .without_haproxy()
            .customize(|_, c| c.tag("nofailover", true)),
    )
    .expect("start cluster");
    let prefix = cluster.key_prefix();
    let t0 = Instant::now();
    // Bounded observation window: racing for `initialize` is an agent's
    // first action, a few hundred milliseconds after it starts.
    let window = Duration::from_secs(10);
    let violation = wait::poll_until(window, || {
        if cluster.node(0).is_primary() {
            return Some("it answers 200 on /primary".to_string());
        }
        for key in ["initialize", "leader"] {
            if let Ok(Some(kv)) = cluster.etcd().get(&format!("{prefix}{key}")) {
                return Some(format!("it wrote the {key} key ({:?})", kv.value));
            }
        }
        None
    });
    println!(
        "observed {}: {}",
        secs(t0.elapsed()),
        violation.as_deref().unwrap_or("no bootstrap")
    );
    assert_eq!(
        violation,
        None,
        "a node tagged nofailover bootstrapped the cluster\n{}",
        cluster.dump_logs()
    );

    // Without the tag it bootstraps.
    let cfg = cluster.node(0).config().clone().tag("nofailover", false);
    *cluster.node_mut(0).config_mut() = cfg;
    cluster.node(0).write_config().expect("write config");
    cluster.node_mut(0).restart(STOP_TIMEOUT).expect("restart");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.assert_converged(CONVERGE_TIMEOUT);
}
