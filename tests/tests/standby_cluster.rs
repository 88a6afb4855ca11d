//! Standby clusters (Patroni's `standby_cluster`), two sites with their own etcd:
//! site A (primary cluster, 2 members) and site B (a standby cluster of A, 2 members).
//!
//! 1. B bootstraps by copying A (no initdb), its leader is a *standby leader*
//!    (`/standby-leader` 200, `/primary` 503, member role `standby_leader`), and rows
//!    written on A reach both B members (the replica cascades from the standby leader).
//!    B's `config` key deleted: its standby leader stays one for more than `ttl` (the
//!    agents fall back to their own `bootstrap.dcs`, as Patroni does).
//!    `wardenctl restart --role standby-leader` restarts B's standby leader in place;
//!    `wardenctl switchover` hands B's key to the other member, which follows A (no
//!    promotion) while the old standby leader cascades from it; refused while paused.
//! 2. Failover inside B: the standby leader's node is killed; the other member takes
//!    the key and follows A in turn, without a promotion (same timeline as A).
//! 3. `wardenctl promote-cluster` on B is refused while A is up (two writable sites);
//!    then A is killed entirely under a write load, B is promoted: the rows B lacks are
//!    only a suffix of what A acknowledged (RPO printed), RTO is kill → first write
//!    acknowledged on B.
//! 4. A restarted is a diverged primary cluster: `demote-cluster` refuses without
//!    `--force` (its WAL past B's fork would be rewound away), then with it A's leader
//!    is rewound and follows B as standby leader, and B's new rows reach A.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_tests::bins::wardenctl_command;
use warden_tests::process::{run_bounded_input, RunOutput};
use warden_tests::sql;
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{wait_until, Cluster, ClusterSpec};

const TTL: u32 = 10;
const FORM: Duration = Duration::from_secs(90);
const CTL_TIMEOUT: Duration = Duration::from_secs(150);

fn ctl(config: &Path, args: &[&str], input: Option<&str>) -> RunOutput {
    let mut cmd = wardenctl_command().expect("wardenctl");
    // demote-cluster asks the new remote's PostgreSQL where it stands, as libpq would.
    cmd.env("PGUSER", warden_tests::config::SUPERUSER)
        .env("PGPASSWORD", warden_tests::config::SUPERUSER_PASSWORD)
        .arg("-c")
        .arg(config)
        .args(args);
    let out = run_bounded_input(&mut cmd, input, CTL_TIMEOUT).expect("run wardenctl");
    println!(
        "$ wardenctl {}\n  exit {:?}\n{}{}",
        args.join(" "),
        out.code(),
        out.stdout,
        out.stderr
    );
    out
}

/// The leader's name and member key, when its key names it.
fn leader_member(c: &Cluster) -> Option<(String, serde_json::Value)> {
    let kv = c.leader_key().ok()??;
    let name = kv.value;
    let m = c.member_key(&name)?;
    Some((name, m))
}

/// Waits until the cluster's leader publishes `role` and runs; its index.
fn wait_leader_role(c: &Cluster, role: &str, timeout: Duration) -> usize {
    wait_until(
        timeout,
        &format!("{} leader with role {role}", c.scope()),
        || {
            let (name, m) = leader_member(c)?;
            let i = c.index_of(&name)?;
            // The REST API answers from the agent's cached view, which may trail the
            // member key by a turn; a dead leader's keys outlive it until its lease.
            let path = if role == "primary" {
                "/primary"
            } else {
                "/standby-leader"
            };
            (m["role"] == role && m["state"] == "running" && c.node(i).status(path) == Some(200))
                .then_some(i)
        },
    )
}

fn count(port: u16, table: &str) -> Option<i64> {
    sql::query_text(port, &format!("SELECT count(*)::text FROM {table}"))
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
}

fn wait_rows(port: u16, table: &str, n: i64, what: &str) {
    wait_until(Duration::from_secs(60), what, || {
        (count(port, table) == Some(n)).then_some(())
    });
}

#[test]
fn standby_cluster_follows_fails_over_promotes_and_demotes() {
    let t0 = Instant::now();
    // Site A: a normal two-member cluster.
    let mut a = Cluster::start(
        ClusterSpec::new(2)
            .scope("site-a")
            .ttl(TTL)
            .without_haproxy(),
    )
    .expect("start site A");
    a.wait_formed(FORM);
    let pa = a.assert_converged(FORM).primary;
    let a_port = a.node(pa).pg_port();
    sql::execute(
        a_port,
        "CREATE TABLE rows_a (id int PRIMARY KEY); \
         INSERT INTO rows_a SELECT generate_series(1, 100)",
    )
    .expect("rows on A");

    // Site B: a standby cluster of A's primary, with its own etcd.
    let mut b = Cluster::start(
        ClusterSpec::new(2)
            .scope("site-b")
            .ttl(TTL)
            .without_haproxy()
            .standby_of("127.0.0.1", a_port),
    )
    .expect("start site B");
    let bl = wait_leader_role(&b, "standby_leader", FORM);
    println!(
        "site B formed as a standby cluster after {:.1?}: standby leader {}",
        t0.elapsed(),
        b.node(bl).name()
    );
    check_b_follows_a(&b, bl, a_port);
    config_key_deleted(&b, bl);
    let bl = operate_inside_b(&a, &b, pa, bl);
    let bl2 = failover_inside_b(&a, &mut b, pa, bl);
    let b_port = region_failover(&mut a, &b, bl2, a_port);
    failback(&mut a, b_port);
    println!("whole scenario: {:.1?}", t0.elapsed());
}

/// B's standby leader `bl` answers as one, and A's rows reach both B members.
fn check_b_follows_a(b: &Cluster, bl: usize, a_port: u16) {
    let br = 1 - bl;
    let leader = b.node(bl);
    assert_eq!(leader.status("/standby-leader"), Some(200));
    assert_eq!(leader.status("/standby_leader"), Some(200));
    assert_eq!(leader.status("/leader"), Some(200));
    assert_eq!(leader.status("/primary"), Some(503));
    assert_eq!(leader.status("/replica"), Some(503));
    assert_eq!(b.node(br).status("/standby-leader"), Some(503));
    let p = leader.patroni_json().expect("/patroni of B's leader");
    assert_eq!(p["role"], "standby_leader", "{p}");
    assert!(
        sql::is_in_recovery(leader.pg_port()).expect("recovery on B's leader"),
        "the standby leader must not be promoted"
    );
    // Both B members hold A's rows, and new ones arrive (the replica cascades).
    for i in [bl, br] {
        wait_until(FORM, "B member streaming", || {
            (count(b.node(i).pg_port(), "rows_a") == Some(100)).then_some(())
        });
    }
    sql::execute(
        a_port,
        "INSERT INTO rows_a SELECT generate_series(101, 200)",
    )
    .unwrap();
    for i in [bl, br] {
        wait_rows(b.node(i).pg_port(), "rows_a", 200, "A's new rows on B");
    }
    let upstream = sql::query_text(
        b.node(br).pg_port(),
        "SELECT sender_port::text FROM pg_stat_wal_receiver",
    )
    .unwrap();
    assert_eq!(
        upstream.as_deref(),
        Some(b.node(bl).pg_port().to_string().as_str()),
        "B's replica cascades from B's standby leader"
    );
    wait_until(Duration::from_secs(15), "standby lag in /patroni", || {
        let p = b.node(bl).patroni_json()?;
        let sc = &p["standby_cluster"];
        (sc["streaming"] == true && sc["lag_bytes"].is_u64()).then_some(())
    });
    // A bad value through PATCH /config is refused, naming the key.
    let r = warden_tests::http::send(
        "PATCH",
        &format!("{}/config", b.node(bl).api_url()),
        Some(br#"{"standby_cluster": {"host": "127.0.0.1", "port": "x"}}"#),
        None,
        Duration::from_secs(5),
    )
    .expect("PATCH /config");
    assert_ne!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("standby_cluster.port"), "{}", r.body);
    let metrics = b.node(bl).get("/metrics").expect("metrics").body;
    assert!(
        metrics.contains("warden_standby_cluster_lag_bytes{")
            && metrics.contains("patroni_standby_leader{scope=\"site-b\",name=\""),
        "{metrics}"
    );
}

/// Deletes B's `config` key: the standby leader `bl` must stay one (read-only, role
/// `standby_leader`) over turns spanning more than `ttl`; then the key is put back.
fn config_key_deleted(b: &Cluster, bl: usize) {
    let key = format!("{}config", b.key_prefix());
    let saved = b.etcd().get(&key).unwrap().expect("B's config key").value;
    b.etcd().delete(&key).unwrap();
    let port = b.node(bl).pg_port();
    let name = b.node(bl).name().to_string();
    let t = Instant::now();
    let mut renewals = std::collections::BTreeSet::new();
    // Each turn re-asserts the leader key (a new revision): the check spans many turns.
    while t.elapsed() < b.ttl() + Duration::from_secs(3) || renewals.len() < 3 {
        assert!(
            t.elapsed() < b.ttl() * 4,
            "the standby leader stopped renewing its key"
        );
        let kv = b.leader_key().unwrap().expect("B's leader key");
        assert_eq!(kv.value, name, "the leader key moved");
        renewals.insert(kv.mod_revision);
        assert_eq!(
            sql::is_in_recovery(port).ok(),
            Some(true),
            "B's standby leader was promoted after its config key was deleted"
        );
        assert_eq!(b.node(bl).status("/standby-leader"), Some(200));
        assert_eq!(b.node(bl).status("/primary"), Some(503));
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, m) = leader_member(b).expect("B's leader member");
    assert_eq!(m["role"], "standby_leader", "{m}");
    println!(
        "config key deleted: {name} stayed the standby leader for {:.1?} ({} lease renewals)",
        t.elapsed(),
        renewals.len()
    );
    b.etcd().put(&key, &saved).unwrap();
}

/// Operator actions inside B: restart of the standby leader by role, a switchover to
/// the other member (refused while paused). Returns the new standby leader's index.
fn operate_inside_b(a: &Cluster, b: &Cluster, pa: usize, bl: usize) -> usize {
    let b_ctl = b.dir().join("ctl.yaml");
    b.write_ctl_config(&b_ctl).unwrap();
    let started = |i: usize| {
        sql::query_text(
            b.node(i).pg_port(),
            "SELECT pg_postmaster_start_time()::text",
        )
        .ok()
        .flatten()
    };
    let before = started(bl).expect("standby leader start time");
    let out = ctl(
        &b_ctl,
        &["restart", "site-b", "--role", "standby-leader", "--force"],
        None,
    );
    assert_eq!(out.code(), Some(0), "restart --role standby-leader");
    assert!(out.stdout.contains(b.node(bl).name()), "{}", out.stdout);
    wait_until(
        Duration::from_secs(60),
        "the standby leader restarted",
        || started(bl).filter(|s| *s != before).map(drop),
    );
    assert_eq!(wait_leader_role(b, "standby_leader", FORM), bl);
    assert_eq!(sql::is_in_recovery(b.node(bl).pg_port()).ok(), Some(true));

    let br = 1 - bl;
    let (old, new) = (b.node(bl).name(), b.node(br).name());
    wait_until(FORM, "B's replica streaming", || {
        let p = b.node(br).patroni_json()?;
        (p["replication_state"] == "streaming").then_some(())
    });
    // Paused, the standby leader would not act on it: refused, not stored.
    assert_eq!(
        ctl(&b_ctl, &["pause", "site-b", "--wait"], None).code(),
        Some(0)
    );
    let switch = [
        "switchover",
        "site-b",
        "--leader",
        old,
        "--candidate",
        new,
        "--force",
    ];
    let out = ctl(&b_ctl, &switch, None);
    assert_ne!(out.code(), Some(0));
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("paused"),
        "{out:?}"
    );
    assert_eq!(
        ctl(&b_ctl, &["resume", "site-b", "--wait"], None).code(),
        Some(0)
    );
    let t = Instant::now();
    let out = ctl(&b_ctl, &switch, None);
    assert_eq!(out.code(), Some(0), "switchover inside the standby cluster");
    let now = wait_leader_role(b, "standby_leader", Duration::from_secs(60));
    assert_eq!(now, br);
    println!(
        "switchover inside B: {new} is the standby leader {:.1?} after the request",
        t.elapsed()
    );
    let a_port = a.node(pa).pg_port();
    sql::execute(
        a_port,
        "INSERT INTO rows_a SELECT generate_series(201, 210)",
    )
    .unwrap();
    for i in [br, bl] {
        wait_rows(
            b.node(i).pg_port(),
            "rows_a",
            210,
            "A's rows after the switchover",
        );
        assert_eq!(sql::is_in_recovery(b.node(i).pg_port()).ok(), Some(true));
    }
    assert_eq!(
        b.node(br).timeline(),
        a.node(pa).timeline(),
        "no promotion inside the standby cluster"
    );
    wait_until(
        FORM,
        "the old standby leader cascades from the new one",
        || {
            let up = sql::query_text(
                b.node(bl).pg_port(),
                "SELECT sender_port::text FROM pg_stat_wal_receiver",
            )
            .ok()??;
            (up == b.node(br).pg_port().to_string()).then_some(())
        },
    );
    let failover = format!("{}failover", b.key_prefix());
    wait_until(Duration::from_secs(30), "the failover key cleared", || {
        let f = b.etcd().get(&failover).ok()?;
        f.is_none_or(|f| f.value == "{}" || f.value.is_empty())
            .then_some(())
    });
    br
}

/// Kills B's standby leader `bl`: the other member leads B, following A without a
/// promotion. Returns its index.
fn failover_inside_b(a: &Cluster, b: &mut Cluster, pa: usize, bl: usize) -> usize {
    let a_port = a.node(pa).pg_port();
    let br = 1 - bl;
    let t_kill_b = Instant::now();
    b.node_mut(bl)
        .kill(Signal::SIGKILL)
        .expect("kill B's leader");
    let bl2 = wait_leader_role(b, "standby_leader", Duration::from_secs(60));
    assert_eq!(bl2, br);
    println!(
        "failover inside B: {} is the standby leader {:.1?} after the kill",
        b.node(bl2).name(),
        t_kill_b.elapsed()
    );
    sql::execute(
        a_port,
        "INSERT INTO rows_a SELECT generate_series(211, 300)",
    )
    .unwrap();
    let b_port = b.node(bl2).pg_port();
    wait_rows(b_port, "rows_a", 300, "A's rows on B's new standby leader");
    assert!(sql::is_in_recovery(b_port).unwrap());
    assert_eq!(
        b.node(bl2).timeline(),
        a.node(pa).timeline(),
        "no promotion inside the standby cluster"
    );
    b.node_mut(bl).start().expect("restart B's old leader");

    bl2
}

/// Refuses promote-cluster on B while A runs, kills A under a write load, promotes B:
/// prints RPO and RTO. Returns the port of B's new primary.
fn region_failover(a: &mut Cluster, b: &Cluster, bl2: usize, a_port: u16) -> u16 {
    let b_port = b.node(bl2).pg_port();
    // Promotion refused while A still runs: two writable sites.
    let b_ctl = b.dir().join("ctl.yaml");
    b.write_ctl_config(&b_ctl).unwrap();
    wait_until(
        Duration::from_secs(15),
        "B's new standby leader streams from A",
        || {
            let p = b.node(bl2).patroni_json()?;
            (p["standby_cluster"]["streaming"] == true).then_some(())
        },
    );
    let out = ctl(&b_ctl, &["promote-cluster", "site-b"], None);
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("two writable sites"), "{}", out.stderr);
    assert!(sql::is_in_recovery(b_port).unwrap());

    // Site A lost under a write load.
    sql::execute(
        a_port,
        "CREATE TABLE w (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
    )
    .unwrap();
    wait_rows(b_port, "w", 0, "the write table on B");
    let writer = Writer::start(a_port, "w", WriterOptions::default()).expect("writer on A");
    wait_until(Duration::from_secs(10), "writes acknowledged on A", || {
        (writer.acks().len() >= 200).then_some(())
    });
    let t_kill = Instant::now();
    for i in 0..2 {
        a.node_mut(i).kill(Signal::SIGKILL).expect("kill A");
    }
    let acks = workload::acks_of(&writer.stop());
    // Probing writes on B from the kill on: the first one acknowledged ends the RTO.
    let prober = std::thread::spawn(move || loop {
        if sql::execute(b_port, "INSERT INTO w (id) VALUES (-1)").is_ok() {
            return Instant::now();
        }
        assert!(
            t_kill.elapsed() < Duration::from_secs(120),
            "B never took a write"
        );
        std::thread::sleep(Duration::from_millis(50));
    });
    let out = ctl(&b_ctl, &["promote-cluster", "site-b"], Some("y\n"));
    assert_eq!(out.code(), Some(0), "promote-cluster after A's loss");
    assert!(out.stdout.contains("bytes behind"), "{}", out.stdout);
    let first_write = prober.join().expect("prober");
    let rto = first_write.duration_since(t_kill);
    assert_eq!(b.node(bl2).status("/primary"), Some(200));
    let present = workload::ids_in(b_port, "w").unwrap();
    let lost = workload::lost(&acks, &present);
    let max_present = present
        .iter()
        .copied()
        .filter(|&i| i > 0)
        .max()
        .unwrap_or(0);
    // What B has of A's acknowledged writes is a prefix: nothing it received is lost,
    // only the tail A acknowledged after B's last received position.
    assert!(
        lost.iter().all(|&id| id > max_present),
        "acknowledged rows missing inside what B received: {lost:?} (B has up to {max_present})"
    );
    let span = match (lost.first(), lost.last()) {
        (Some(f), Some(l)) => {
            let at = |id: i64| acks.iter().find(|a| a.id == id).map(|a| a.sent);
            match (at(*f), at(*l)) {
                (Some(x), Some(y)) => y.duration_since(x),
                _ => Duration::ZERO,
            }
        }
        _ => Duration::ZERO,
    };
    println!(
        "REGION FAILOVER (streaming standby): RPO {} of {} acknowledged rows missing on B \
         (spanning {:.3?} of writes before the kill); RTO kill -> first write acknowledged \
         on B {:.1?}",
        lost.len(),
        acks.len(),
        span,
        rto
    );

    b_port
}

/// A restarted (diverged) is demoted under B: refused without --force, then A's leader
/// is rewound and follows B, and B's rows reach both A members.
fn failback(a: &mut Cluster, b_port: u16) {
    // A comes back as a diverged primary cluster; demote it under B.
    for i in 0..2 {
        a.node_mut(i).start().expect("restart A");
    }
    wait_leader_role(a, "primary", FORM);
    let a_ctl = a.dir().join("ctl.yaml");
    a.write_ctl_config(&a_ctl).unwrap();
    let b_port_s = b_port.to_string();
    let demote = [
        "demote-cluster",
        "site-a",
        "--host",
        "127.0.0.1",
        "--port",
        b_port_s.as_str(),
    ];
    let out = ctl(&a_ctl, &demote, None);
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("would discard"), "{}", out.stderr);
    let t_demote = Instant::now();
    let mut forced = demote.to_vec();
    forced.push("--force");
    let out = ctl(&a_ctl, &forced, None);
    assert_eq!(out.code(), Some(0), "demote-cluster --force");
    let al = wait_leader_role(a, "standby_leader", Duration::from_secs(30));
    println!(
        "site A demoted: {} follows B as standby leader {:.1?} after demote-cluster",
        a.node(al).name(),
        t_demote.elapsed()
    );
    sql::execute(
        b_port,
        "INSERT INTO rows_a SELECT generate_series(301, 400)",
    )
    .unwrap();
    wait_rows(
        a.node(al).pg_port(),
        "rows_a",
        400,
        "B's rows on A's standby leader",
    );
    let ar = 1 - al;
    let t_follow = Instant::now();
    wait_until(Duration::from_secs(90), "A's other member follows", || {
        (count(a.node(ar).pg_port(), "rows_a") == Some(400)).then_some(())
    });
    println!(
        "A's other member {} has B's rows {:.1?} later",
        a.node(ar).name(),
        t_follow.elapsed()
    );
    assert_eq!(a.node(al).status("/primary"), Some(503));
}
