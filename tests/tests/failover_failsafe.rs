//! Failsafe mode (`failsafe_mode: true`): with etcd unreachable, the primary keeps
//! running exactly as long as every member listed in the `/failsafe` key confirms it
//! over `POST /failsafe`.
//!
//! One 3-node cluster (ttl 10, loop_wait 1, retry_timeout 3), in phases:
//!
//! 1. The leader lists every member in `/failsafe`.
//! 2. Every node is cut off from etcd (their etcd proxies; etcd itself keeps running,
//!    so the test can watch the leader key expire). Both replicas confirm the primary,
//!    so it acknowledges writes without a gap for 3 × ttl, well past its lease, and no
//!    replica answers 200 on `/primary`. Controls: the leader key really expired in
//!    etcd meanwhile, and the primary said (in `/patroni` and its log) that it held on
//!    because every member confirmed it. After the heal the same primary leads, on the
//!    same timeline, without a lost write.
//! 3. One replica is SIGKILLed (agent and PostgreSQL) and etcd itself is killed right
//!    after, while `/failsafe` still lists the dead replica: nobody can confirm the
//!    primary, so it stops acknowledging writes and answering 200 on `/primary` as soon
//!    as the confirmation fails (Patroni's rule), and at the latest by its lease
//!    deadline (before ttl + 3 s). Then etcd and the node come back and the
//!    cluster converges without a lost write.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use warden_tests::failover::{secs, since};
use warden_tests::observe::{KeyWatch, PrimaryWatch, Sample};
use warden_tests::wait::poll_until;
use warden_tests::workload::{self, Ack, Outcome, Writer, WriterOptions};
use warden_tests::{wait_until, Cluster, ClusterSpec, Converged};

const TTL: u32 = 10;
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// The decision note of a primary held up by failsafe confirmations (decide.rs).
const FAILSAFE_NOTE: &str = "every member confirmed us over REST (failsafe mode)";
/// The decision note of a primary some member did not confirm (decide.rs).
const REFUSED_NOTE: &str = "a member did not confirm us over REST (failsafe mode): demoting";
/// Longest pause between two acknowledged writes that still counts as "continuous"
/// (writes go back to back; a fence or a restart takes far longer).
const MAX_ACK_GAP: Duration = Duration::from_secs(2);
/// After the lease deadline, how long the fence may take to stop writes and `/primary`.
const FENCE_SLACK: Duration = Duration::from_secs(3);

#[test]
fn failsafe_mode_keeps_a_confirmed_primary_and_fences_an_unconfirmed_one() {
    let mut cluster = Cluster::start(
        ClusterSpec::new(3)
            .ttl(TTL)
            .loop_wait(1)
            .retry_timeout(3)
            .with_proxies()
            .without_haproxy()
            .customize(|_, cfg| cfg.set("bootstrap.dcs.failsafe_mode", true)),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    let before = cluster.assert_converged(CONVERGE_TIMEOUT);
    let p = before.primary;
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name().into()).collect();
    let replicas: Vec<usize> = (0..names.len()).filter(|&i| i != p).collect();

    // ---- Phase 1: failsafe mode is in force and /failsafe lists every member.
    let failsafe_key = failsafe_lists_every_member(&cluster, p, &names);

    // ---- Phase 2: full etcd outage; both replicas confirm the primary.
    let all_acks = confirmed_primary_survives_an_outage(&cluster, &before, &names, &replicas);

    // ---- Phase 3: a replica is dead, so nobody can confirm the primary.
    unconfirmed_primary_is_fenced(&mut cluster, &failsafe_key, p, &names, &replicas, all_acks);
}

/// Returns the `/failsafe` key.
fn failsafe_lists_every_member(cluster: &Cluster, p: usize, names: &[String]) -> String {
    let config = wait_until(Duration::from_secs(10), "GET /config", || {
        cluster.node(p).get("/config").ok()?.json().ok()
    });
    assert_eq!(
        config["failsafe_mode"], true,
        "the dynamic config does not have failsafe_mode on: {config}"
    );
    let failsafe_key = format!("{}failsafe", cluster.key_prefix());
    let listed = wait_until(
        Duration::from_secs(20),
        "/failsafe lists every member",
        || {
            let m = failsafe_members(cluster, &failsafe_key)?;
            m.keys().eq(names.iter()).then_some(m)
        },
    );
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            listed[name],
            format!("http://{}/patroni", cluster.proxies(i).api.endpoint()),
            "/failsafe: {name}'s REST API"
        );
    }
    println!("phase 1: /failsafe lists {listed:?}");
    failsafe_key
}

/// Returns the writes acknowledged from the start of the outage to the end of the heal.
fn confirmed_primary_survives_an_outage(
    cluster: &Cluster,
    before: &Converged,
    names: &[String],
    replicas: &[usize],
) -> Vec<Ack> {
    let p = before.primary;
    let primary_port = cluster.node(p).pg_port();
    let (holder, rev) = cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(holder, names[p]);
    let writer = Writer::start(primary_port, "failsafe_writes", WriterOptions::default())
        .expect("start writing to the primary");
    wait_until(Duration::from_secs(10), "writes acknowledged", || {
        (writer.acks().len() >= 20).then_some(())
    });
    let primaries = cluster.watch_primaries();
    let leader = cluster.watch_leader_key();
    let t_out = hold_through_outage(cluster, p, names, replicas, &writer, &primaries, &leader);

    let t_heal = Instant::now();
    for i in 0..names.len() {
        cluster.proxies(i).heal_etcd();
    }
    // The leader key expired during the outage: until the primary takes it again, it
    // may still answer /primary from its failsafe hold, so converging starts after that.
    let (holder2, rev2) = cluster.wait_leader(CONVERGE_TIMEOUT);
    let retaken = t_heal.elapsed();
    assert_eq!(
        holder2, names[p],
        "another node took the leader key after the outage"
    );
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    println!(
        "phase 2: leader key retaken {} after the heal (revision {rev} -> {rev2}); converged after {}: \
         {} leads on timeline {}",
        secs(retaken),
        secs(t_heal.elapsed()),
        names[after.primary],
        after.timeline
    );
    assert_eq!(after.primary, p, "another node leads after the outage");
    assert_eq!(
        after.timeline, before.timeline,
        "a promotion happened during the outage"
    );
    assert_no_replica_was_primary(&primaries, replicas, names, t_out, cluster);
    primaries.stop();
    leader.stop();
    let outcomes = writer.stop();
    let failed_in_heal = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Fail(f) if f.at >= t_heal))
        .count();
    println!("phase 2: {failed_in_heal} writes failed after the heal");
    let all_acks = acked(&outcomes);
    assert_no_lost_writes(cluster, p, &all_acks);
    all_acks
}

/// Cuts every node off from etcd for 3 × ttl and checks that the primary held on,
/// and why. Returns when the cut began.
fn hold_through_outage(
    cluster: &Cluster,
    p: usize,
    names: &[String],
    replicas: &[usize],
    writer: &Writer,
    primaries: &PrimaryWatch,
    leader: &KeyWatch,
) -> Instant {
    let ttl = cluster.ttl();
    let primary_port = cluster.node(p).pg_port();
    let log_from = log_len(&cluster.node(p).log_path());

    let t_out = Instant::now();
    for i in 0..names.len() {
        cluster.proxies(i).cut_etcd();
    }
    let window = 3 * ttl;
    let mut note_seen = None;
    // Patroni's flag, on the primary (confirmed by all) and on a replica (it confirmed).
    let mut active_seen = [false, false];
    let failure = poll_until(window, || {
        if note_seen.is_none() {
            let note = cluster.node(p).patroni();
            if note.is_some_and(|v| v.note().contains(FAILSAFE_NOTE)) {
                note_seen = Some(Instant::now());
            }
        }
        for (seen, i) in active_seen.iter_mut().zip([p, replicas[0]]) {
            if !*seen {
                *seen = cluster
                    .node(i)
                    .patroni()
                    .is_some_and(|v| v.failsafe_mode_is_active);
            }
        }
        writer.first_failure_since(t_out)
    });
    let t_end = Instant::now();
    let logs = cluster.dump_logs();
    assert!(
        failure.is_none(),
        "a write to the primary failed at {} during the outage, although both replicas could \
         confirm it: {failure:?}\n{logs}",
        since(t_out, failure.as_ref().map_or(t_out, |f| f.at))
    );
    let acks = writer.acks_since(t_out);
    let gap = longest_gap(t_out, &acks, t_end);
    println!(
        "phase 2: etcd cut at 0 s; {} writes acknowledged until {}, longest pause {}; \
         failsafe note in /patroni at {}",
        acks.len(),
        since(t_out, t_end),
        secs(gap),
        note_seen.map_or("(never)".into(), |t| since(t_out, t))
    );
    assert!(
        gap <= MAX_ACK_GAP,
        "the primary did not acknowledge writes continuously during the outage: a pause of {}\n{logs}",
        secs(gap)
    );
    assert!(
        acks.iter().all(|a| a.server_port == primary_port),
        "a write was acknowledged by another server"
    );
    // Control: the writes outlived the leader key. etcd (still up behind the cut
    // proxies) expired it, so only failsafe confirmation can have kept the primary up.
    let expired = leader
        .samples()
        .into_iter()
        .find(|s| s.sent >= t_out && s.got <= t_end && matches!(s.value, Ok(None)))
        .unwrap_or_else(|| {
            panic!("the leader key never expired during the outage: etcd was not cut off\n{logs}")
        });
    let acked_after_expiry = acks.iter().filter(|a| a.sent > expired.got).count();
    println!(
        "phase 2: leader key seen expired at {}; {acked_after_expiry} writes acknowledged after that",
        since(t_out, expired.got)
    );
    assert!(
        acked_after_expiry > 0,
        "no write was acknowledged after the leader key expired\n{logs}"
    );
    assert_eq!(
        active_seen,
        [true, true],
        "failsafe_mode_is_active in /patroni of [the primary, a replica] during the outage"
    );
    // Control: the primary said why it held on.
    assert!(
        note_seen.is_some(),
        "the primary's /patroni never showed the failsafe note {FAILSAFE_NOTE:?}\n{logs}"
    );
    let log = log_since(&cluster.node(p).log_path(), log_from);
    assert!(
        log.contains(FAILSAFE_NOTE),
        "the primary's log has no decision {FAILSAFE_NOTE:?} since the cut\n{logs}"
    );
    // /primary: the primary kept answering 200, the replicas never did.
    let during = |i: usize| -> Vec<Sample<Option<u16>>> {
        primaries
            .samples(i)
            .into_iter()
            .filter(|s| s.sent >= t_out && s.got <= t_end)
            .collect()
    };
    let not_200: Vec<_> = during(p)
        .into_iter()
        .filter(|s| s.value != Some(200))
        .map(|s| (since(t_out, s.sent), s.value))
        .collect();
    assert!(
        not_200.is_empty() && !during(p).is_empty(),
        "the primary's /primary did not answer 200 throughout the outage: {not_200:?}\n{logs}"
    );
    for &r in replicas {
        let answered = during(r).iter().filter(|s| s.value.is_some()).count();
        assert!(
            answered > 0,
            "{}'s /primary was never answered during the outage",
            names[r]
        );
    }
    t_out
}

fn unconfirmed_primary_is_fenced(
    cluster: &mut Cluster,
    failsafe_key: &str,
    p: usize,
    names: &[String],
    replicas: &[usize],
    all_acks: Vec<Ack>,
) {
    let ttl = cluster.ttl();
    let primary_port = cluster.node(p).pg_port();
    let r = replicas[0];
    let writer = Writer::start(
        primary_port,
        "failsafe_writes",
        WriterOptions {
            first_id: 1_000_000,
            ..WriterOptions::default()
        },
    )
    .expect("start writing to the primary again");
    let t_writing = Instant::now();
    wait_until(Duration::from_secs(10), "writes acknowledged", || {
        (writer.acks_since(t_writing).len() >= 20).then_some(())
    });
    let primaries = cluster.watch_primaries();
    cluster.node_mut(r).kill_hard();
    // The dead replica's member key lives on for up to ttl, and with it its entry in
    // /failsafe: the outage starts while the leader would still ask it.
    let listed = failsafe_members(cluster, failsafe_key).expect("read /failsafe");
    assert!(
        listed.contains_key(&names[r]),
        "/failsafe no longer lists the killed {}: {listed:?}",
        names[r]
    );
    let log_from = log_len(&cluster.node(p).log_path());
    let t_out = Instant::now();
    cluster.etcd_mut().member_mut(0).kill();
    let bound = ttl + FENCE_SLACK;

    let fenced = poll_until(bound + Duration::from_secs(5), || {
        writer.first_failure_since(t_out)
    });
    let fenced = fenced.unwrap_or_else(|| {
        panic!(
            "no write to the unconfirmed primary failed\n{}",
            cluster.dump_logs()
        )
    });
    // Watch on until well past the bound: writes must not come back without etcd.
    let watch_until = t_out + bound + Duration::from_secs(2);
    let resumed = poll_until(
        watch_until.saturating_duration_since(Instant::now()),
        || writer.acks_since(fenced.at).first().copied(),
    );
    let t_end = Instant::now();
    let logs = cluster.dump_logs();
    assert!(
        resumed.is_none(),
        "writes were acknowledged again without etcd: {resumed:?}\n{logs}"
    );
    let acks = writer.acks_since(t_out);
    let last_ack = acks.last().copied();
    println!(
        "phase 3: {} killed, etcd killed at 0 s; {} writes acknowledged after that, the last at {}; \
         first failure at {} ({})",
        names[r],
        acks.len(),
        last_ack.map_or("(none)".into(), |a| since(t_out, a.acked)),
        since(t_out, fenced.at),
        fenced.error.lines().next().unwrap_or("")
    );
    assert!(
        !acks.is_empty(),
        "no write was acknowledged after etcd was killed: the outage itself, not the fence, \
         stopped the writes\n{logs}"
    );
    let last_ack = last_ack.expect("checked above");
    assert!(
        last_ack.acked < t_out + bound,
        "the unconfirmed primary acknowledged a write at {}, later than ttl + {} after the outage\n{logs}",
        since(t_out, last_ack.acked),
        secs(FENCE_SLACK)
    );
    let not_200 = primaries.first_not_200(p, t_out).unwrap_or_else(|| {
        panic!("the unconfirmed primary kept answering 200 on /primary\n{logs}")
    });
    println!(
        "phase 3: the old primary's /primary stopped answering 200 at {}",
        since(t_out, not_200.seen)
    );
    assert!(
        not_200.seen < t_out + bound,
        "the unconfirmed primary answered 200 on /primary until {}\n{logs}",
        since(t_out, not_200.seen)
    );
    let again = primaries
        .samples(p)
        .into_iter()
        .find(|s| s.sent > not_200.seen && s.got <= t_end && s.value == Some(200));
    assert!(
        again.is_none(),
        "the unconfirmed primary answered 200 on /primary again at {} without etcd\n{logs}",
        since(t_out, again.map_or(t_out, |s| s.got))
    );
    for &i in replicas {
        assert!(
            !primaries.any_200(i, t_out),
            "{} answered 200 on /primary without etcd\n{logs}",
            names[i]
        );
    }
    // Control: the primary asked, and the dead replica did not confirm it.
    let log = log_since(&cluster.node(p).log_path(), log_from);
    assert!(
        log.lines()
            .any(|l| l.contains("did not confirm us in failsafe mode") && l.contains(&names[r])),
        "the primary's log does not show {} failing to confirm it\n{logs}",
        names[r]
    );
    assert!(
        !log.contains(FAILSAFE_NOTE),
        "the primary held on by failsafe although {} was dead\n{logs}",
        names[r]
    );
    // Patroni's rule: a member that does not confirm demotes the primary at once, not
    // at its lease deadline.
    assert!(
        log.contains(REFUSED_NOTE),
        "the primary did not step down on the failed confirmation\n{logs}"
    );

    bring_back(cluster, r, names, primaries, writer, all_acks);
}

/// etcd and the killed node come back: the cluster converges without a lost write.
fn bring_back(
    cluster: &mut Cluster,
    r: usize,
    names: &[String],
    primaries: PrimaryWatch,
    writer: Writer,
    mut all_acks: Vec<Ack>,
) {
    let t_back = Instant::now();
    cluster
        .etcd_mut()
        .member_mut(0)
        .start()
        .expect("restart etcd");
    cluster
        .etcd_mut()
        .wait_healthy(Duration::from_secs(30))
        .expect("etcd healthy again");
    cluster
        .node_mut(r)
        .start()
        .expect("restart the killed node");
    let after = cluster.assert_converged(CONVERGE_TIMEOUT);
    println!(
        "phase 3: converged {} after etcd and {} came back: {} leads on timeline {}",
        secs(t_back.elapsed()),
        names[r],
        names[after.primary],
        after.timeline
    );
    primaries.stop();
    all_acks.extend(acked(&writer.stop()));
    assert_no_lost_writes(cluster, after.primary, &all_acks);
}

/// The `/failsafe` key as `name → api_url`, `None` if absent or unreadable.
fn failsafe_members(cluster: &Cluster, key: &str) -> Option<BTreeMap<String, String>> {
    let kv = cluster.etcd().get(key).ok()??;
    serde_json::from_str(&kv.value).ok()
}

/// The longest stretch in `[from, to]` without an acknowledgement.
fn longest_gap(from: Instant, acks: &[Ack], to: Instant) -> Duration {
    let mut prev = from;
    let mut gap = Duration::ZERO;
    for t in acks.iter().map(|a| a.acked).chain(std::iter::once(to)) {
        gap = gap.max(t.saturating_duration_since(prev));
        prev = prev.max(t);
    }
    gap
}

fn acked(outcomes: &[Outcome]) -> Vec<Ack> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ack(a) => Some(*a),
            Outcome::Fail(_) => None,
        })
        .collect()
}

fn assert_no_lost_writes(cluster: &Cluster, primary: usize, acks: &[Ack]) {
    let present = workload::ids_in(cluster.node(primary).pg_port(), "failsafe_writes")
        .expect("read the written ids");
    let lost = workload::lost(acks, &present);
    println!(
        "{} writes acknowledged in all, {} lost",
        acks.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged writes lost: {lost:?}\n{}",
        cluster.dump_logs()
    );
}

fn assert_no_replica_was_primary(
    primaries: &PrimaryWatch,
    replicas: &[usize],
    names: &[String],
    since: Instant,
    cluster: &Cluster,
) {
    for &i in replicas {
        assert!(
            !primaries.any_200(i, since),
            "{} answered 200 on /primary during or after the outage\n{}",
            names[i],
            cluster.dump_logs()
        );
    }
}

fn log_len(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.len())
}

/// The part of a log written after it was `from` bytes long.
fn log_since(path: &Path, from: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned()
}
