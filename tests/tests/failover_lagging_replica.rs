//! A replica lagging past `maximum_lag_on_failover` (1 MB in the kit's
//! bootstrap config) is not promoted while a better one exists.
//!
//! The lag is made real: the lagging replica's walreceiver is SIGSTOPped and
//! a few MB are written on the primary, until the primary's `/status` optime
//! is more than 2 MB ahead of what that replica received. Before the primary
//! is killed, the good replica's REST proxy is cut, so the lagging one cannot
//! learn from a peer probe that someone is further ahead: only the
//! `maximum_lag_on_failover` rule (against `/status`) keeps it out of the
//! race, and a broken rule would let it take the key.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use warden_tests::failover::secs;
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
const LAG: u64 = 2 * 1024 * 1024;

/// SIGCONTs a stopped process when dropped, even if the test panics.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

fn status_optime(cluster: &Cluster) -> Option<u64> {
    let kv = cluster
        .etcd()
        .get(&format!("{}status", cluster.key_prefix()))
        .ok()??;
    serde_json::from_str::<Value>(&kv.value).ok()?["optime"].as_u64()
}

fn received(cluster: &Cluster, i: usize) -> Option<u64> {
    cluster.node(i).patroni()?.xlog?.received_location()
}

#[test]
fn replica_lagging_past_maximum_lag_is_not_promoted() {
    let mut cluster = Cluster::start(ClusterSpec::new(3).with_proxies().without_haproxy())
        .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let (p, replicas) = before.primary_and_replicas(&cluster);
    let (lagging, good) = (replicas[0], replicas[1]);
    let lag_name = cluster.node(lagging).name().to_string();

    let walreceiver = cluster
        .node(lagging)
        .postgres_child_pid("walreceiver")
        .expect("the replica's walreceiver");
    kill(Pid::from_raw(walreceiver), Signal::SIGSTOP).expect("SIGSTOP the walreceiver");
    let stopped = Stopped(walreceiver);
    sql::execute(
        cluster.node(p).pg_port(),
        "CREATE TABLE lag_filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 40000) g",
    )
    .expect("write on the primary");
    let (optime, lag) = wait_until(
        Duration::from_secs(30),
        "/status optime > 2 MB ahead of the lagging replica, the good one caught up",
        || {
            let optime = status_optime(&cluster)?;
            let lag = optime.checked_sub(received(&cluster, lagging)?)?;
            (lag > LAG && received(&cluster, good)? >= optime).then_some((optime, lag))
        },
    );
    println!(
        "{lag_name} lags {:.1} MB behind /status optime {optime}",
        lag as f64 / 1_048_576.0
    );

    cluster.proxies(good).api.cut();
    let primaries = cluster.watch_primaries();
    let leader = cluster.watch_leader_key();
    let t_kill = Instant::now();
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the primary");
    let (new, promoted) = wait_until(3 * cluster.ttl(), "a new primary", || {
        primaries.first_other_200(p, t_kill)
    });
    println!(
        "{} promoted {} after the kill",
        cluster.node(new).name(),
        secs(promoted.seen - t_kill)
    );
    let logs = cluster.dump_logs();
    assert_eq!(new, good, "the lagging replica was promoted\n{logs}");
    assert!(
        !primaries.any_200(lagging, t_kill),
        "{lag_name} answered 200 on /primary\n{logs}"
    );
    assert!(
        leader
            .holders_since(t_kill)
            .iter()
            .all(|(h, _)| *h != lag_name),
        "{lag_name} held the leader key\n{logs}"
    );
    primaries.stop();
    leader.stop();

    drop(stopped);
    cluster.proxies(good).api.heal();
    cluster
        .node_mut(p)
        .start()
        .expect("restart the old primary");
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    assert_eq!(after.primary, good);
    assert_eq!(after.timeline, before.timeline + 1);
}
