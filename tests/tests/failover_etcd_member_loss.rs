//! One member of a 3-member etcd cluster dies — the raft leader, which also
//! forces an election — while every agent lists all three endpoints (as a
//! YAML list in `etcd3.hosts`). Nothing may fail over: for 3 × ttl the
//! leader key keeps its holder and its `create_revision` (the fencing
//! token), the leader's `/patroni` keeps showing that token, no other node
//! answers 200 on `/primary`, the primary never stops answering 200,
//! replicas keep streaming and HAProxy still routes writes.

use std::time::{Duration, Instant};

use warden_tests::failover::secs;
use warden_tests::{sql, wait, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn losing_one_etcd_member_causes_no_failover() {
    let mut cluster = Cluster::start(ClusterSpec::new(3).etcd_members(3).customize(|_, c| {
        let hosts: Vec<serde_yaml::Value> = c
            .etcd_hosts
            .split(',')
            .map(serde_yaml::Value::from)
            .collect();
        c.set("etcd3.hosts", serde_yaml::Value::Sequence(hosts))
    }))
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let p = before.primary;
    let (holder, rev) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(cluster.node(p).fencing_token(), Some(rev));

    let k = cluster.etcd().leader_index().expect("etcd raft leader");
    let primaries = cluster.watch_primaries();
    let leader = cluster.watch_leader_key();
    let t_kill = Instant::now();
    cluster.etcd_mut().member_mut(k).kill();
    let member = cluster.etcd().member(k).name().to_string();

    // Bounded observation window; fails as soon as anything moves. The
    // leader's `/patroni` is sampled too: its fencing token must stay put.
    let window = 3 * cluster.ttl();
    let mut tokens = Vec::new();
    let violation = wait::poll_until(window, || {
        tokens.push(cluster.node(p).fencing_token());
        if let Some(h) = leader
            .holders_since(t_kill)
            .into_iter()
            .find(|h| *h != (holder.clone(), rev))
        {
            return Some(format!("the leader key changed to {h:?}"));
        }
        if leader.absent_since(t_kill) {
            return Some("the leader key disappeared".into());
        }
        if let Some(t) = primaries.first_not_200(p, t_kill) {
            return Some(format!(
                "the primary stopped answering 200 at {}",
                secs(t.seen - t_kill)
            ));
        }
        (0..cluster.nodes().len())
            .filter(|&i| i != p)
            .find(|&i| primaries.any_200(i, t_kill))
            .map(|i| format!("{} answered 200 on /primary", cluster.node(i).name()))
    });
    let polls = leader.answered_since(t_kill);
    primaries.stop();
    leader.stop();
    println!(
        "killed {member} (raft leader); observed {} ({polls} leader-key polls answered): {}",
        secs(t_kill.elapsed()),
        violation.as_deref().unwrap_or("no failover, no flap")
    );
    let off: Vec<Option<i64>> = tokens.iter().copied().filter(|t| *t != Some(rev)).collect();
    println!(
        "{} of {} samples of the leader's /patroni showed another fencing token than {rev}: {:?}",
        off.len(),
        tokens.len(),
        off.iter().take(5).collect::<Vec<_>>()
    );
    let logs = cluster.dump_logs();
    assert_eq!(violation, None, "{logs}");
    assert!(polls > 0, "etcd never answered during the window\n{logs}");
    assert!(
        off.is_empty(),
        "the leader's /patroni fencing token was not {rev} in {} of {} samples ({:?}...) \
         although it held the leader key throughout\n{logs}",
        off.len(),
        tokens.len(),
        off.first()
    );
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)), (holder, rev));

    // Writes still go through HAProxy to the same primary.
    let port = cluster.write_port();
    let server = wait_until(Duration::from_secs(30), "a write through HAProxy", || {
        let mut c = sql::connect(port).ok()?;
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS via_haproxy (id int); INSERT INTO via_haproxy VALUES (1)",
        )
        .ok()?;
        let row = c.query_one("SELECT inet_server_port()", &[]).ok()?;
        row.try_get::<_, i32>(0).ok()
    });
    assert_eq!(
        u16::try_from(server).ok(),
        Some(cluster.node(p).pg_port()),
        "HAProxy routed the write elsewhere"
    );
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    assert_eq!(after.primary, p);
    assert_eq!(after.timeline, before.timeline);
}
