//! Standby clusters (Patroni's `standby_cluster`), two sites with their own etcd:
//! site A (primary cluster, 2 members) and site B (a standby cluster of A, 2 members).
//!
//! 1. B bootstraps by copying A (no initdb), its leader is a *standby leader*
//!    (`/standby-leader` 200, `/primary` 503, member role `standby_leader`), and rows
//!    written on A reach both B members (the replica cascades from the standby leader).
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
        "INSERT INTO rows_a SELECT generate_series(201, 300)",
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
