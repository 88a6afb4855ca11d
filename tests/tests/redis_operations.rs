//! `wardenctl` operating a real Redis cluster: `failover` to a named replica, `restart`
//! of a member (its redis-server gets a new run id and comes back in its role),
//! `reinit` of a replica (its data removed and copied again from the primary), a
//! replica pointed elsewhere behind its agent's back is pointed back, and
//! `pause`/`resume` (while paused, a dead primary is not replaced).

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::config::REDIS_PASSWORD;
use warden_tests::process::{run_bounded_input, RunOutput};
use warden_tests::redis as kit_redis;
use warden_tests::wait::{poll_until, wait_until};
use warden_tests::{bins, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(120);

fn wardenctl(cluster: &Cluster, args: &[&str]) -> RunOutput {
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    cmd.arg("-c").arg(cluster.node(0).config_path()).args(args);
    let out = run_bounded_input(&mut cmd, None, RUN).expect("run wardenctl");
    println!("wardenctl {}: {}", args.join(" "), out.describe());
    out
}

fn ok(out: &RunOutput) -> bool {
    out.status.is_some_and(|s| s.success())
}

/// `INFO server replication` of a member's redis-server.
fn info(port: u16) -> Option<HashMap<String, String>> {
    let mut c = kit_redis::connect_as(port, Some(REDIS_PASSWORD), Duration::from_secs(1)).ok()?;
    let text: String = redis::cmd("INFO").arg("everything").query(&mut c).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

fn follows(port: u16, primary_port: u16) -> bool {
    info(port).is_some_and(|i| {
        i.get("role").map(String::as_str) == Some("slave")
            && i.get("master_port") == Some(&primary_port.to_string())
            && i.get("master_link_status").map(String::as_str) == Some("up")
    })
}

fn set(port: u16, key: &str, value: &str) {
    let mut c = kit_redis::connect_as(port, Some(REDIS_PASSWORD), Duration::from_secs(2))
        .expect("connect to the primary");
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(&mut c)
        .expect("SET");
}

fn get(port: u16, key: &str) -> Option<String> {
    let mut c = kit_redis::connect_as(port, Some(REDIS_PASSWORD), Duration::from_secs(2)).ok()?;
    redis::cmd("GET").arg(key).query(&mut c).ok()?
}

#[test]
fn wardenctl_failover_restart_reinit_and_pause_on_redis() {
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let mut cluster = Cluster::start(ClusterSpec::new(3).redis().without_haproxy())
        .expect("start a Redis cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let scope = cluster.scope().to_string();
    let (leader, _) = cluster.wait_leader(T);
    let l = cluster.index_of(&leader).unwrap();

    // failover to a named replica (no leader needed for a failover, but one is there).
    let target = cluster.node((l + 2) % 3).name().to_string();
    let out = wardenctl(
        &cluster,
        &["failover", &scope, "--candidate", &target, "--force"],
    );
    assert!(ok(&out), "failover: {}", out.describe());
    let (now, _) = cluster.wait_leader(T);
    assert_eq!(now, target, "failover to the named member");
    let p = cluster.index_of(&target).unwrap();
    let primary_port = cluster.node(p).redis_port();
    for i in (0..3).filter(|&i| i != p) {
        let port = cluster.node(i).redis_port();
        wait_until(T, "every replica follows the new primary", || {
            follows(port, primary_port).then_some(())
        });
    }
    set(primary_port, "after-failover", "1");

    // restart of a replica: a new redis-server, back as a replica of the same primary.
    let r = (p + 1) % 3;
    let r_name = cluster.node(r).name().to_string();
    let r_port = cluster.node(r).redis_port();
    let run_id = info(r_port).and_then(|i| i.get("run_id").cloned()).unwrap();
    let out = wardenctl(&cluster, &["restart", &scope, &r_name, "--force"]);
    assert!(ok(&out), "restart: {}", out.describe());
    wait_until(
        T,
        "the restarted replica follows again with a new run id",
        || {
            let i = info(r_port)?;
            (i.get("run_id")? != &run_id && follows(r_port, primary_port)).then_some(())
        },
    );
    assert_eq!(get(r_port, "after-failover").as_deref(), Some("1"));

    // reinit of a replica: its data directory goes, a fresh copy comes from the primary.
    let out = wardenctl(&cluster, &["reinit", &scope, &r_name, "--force", "--wait"]);
    assert!(ok(&out), "reinit: {}", out.describe());
    wait_until(T, "the reinitialized replica follows with the data", || {
        (follows(r_port, primary_port) && get(r_port, "after-failover").as_deref() == Some("1"))
            .then_some(())
    });

    // A replica pointed at no one behind its agent's back (what the deadline fence does
    // to a member that then stays a replica) is pointed at the primary again.
    let mut c = kit_redis::connect_as(r_port, Some(REDIS_PASSWORD), Duration::from_secs(2))
        .expect("connect to the replica");
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(0)
        .query::<()>(&mut c)
        .expect("REPLICAOF no one");
    wait_until(
        T,
        "the agent points its replica at the primary again",
        || follows(r_port, primary_port).then_some(()),
    );

    // pause: the primary's node dies and nobody takes over; resume: a replica does.
    let out = wardenctl(&cluster, &["pause", &scope, "--wait"]);
    assert!(ok(&out), "pause: {}", out.describe());
    cluster
        .node_mut(p)
        .kill(Signal::SIGKILL)
        .expect("kill the primary");
    let taken = poll_until(Duration::from_secs(15), || {
        cluster
            .leader_key()
            .ok()
            .flatten()
            .filter(|kv| kv.value != target)
    });
    assert!(
        taken.is_none(),
        "a replica took over while paused: {taken:?}"
    );
    let out = wardenctl(&cluster, &["resume", &scope, "--wait"]);
    assert!(ok(&out), "resume: {}", out.describe());
    let (after, _) = cluster.wait_leader(T);
    assert_ne!(after, target, "a replica took over after resume");
}
