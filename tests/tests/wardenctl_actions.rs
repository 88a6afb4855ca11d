//! `wardenctl` driving a real cluster under a write stream through HAProxy:
//! `switchover` and `failover` end with the requested leader and every replica
//! following it, `edit-config -p max_connections` makes every member flag a pending
//! restart that `restart --pending` clears, `pause --wait` / `resume --wait` toggle
//! maintenance mode, and no acknowledged write is lost on the way.

use std::time::{Duration, Instant};

use warden_tests::process::{run_bounded_input, RunOutput};
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{bins, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(120);
const TABLE: &str = "wardenctl_writes";

fn wardenctl(cluster: &Cluster, args: &[&str]) -> RunOutput {
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    // The agent's own config file works as wardenctl's.
    cmd.arg("-c").arg(cluster.node(0).config_path()).args(args);
    let out = run_bounded_input(&mut cmd, None, RUN).expect("run wardenctl");
    println!("wardenctl {}: {}", args.join(" "), out.describe());
    out
}

fn ok(out: &RunOutput) -> bool {
    out.status.is_some_and(|s| s.success())
}

#[test]
fn wardenctl_switchover_failover_pending_restart_and_pause() {
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start(ClusterSpec::new(3)).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let scope = cluster.scope().to_string();
    let writer = Writer::start(cluster.write_port(), TABLE, WriterOptions::default())
        .expect("start writing through HAProxy");
    wait_until(Duration::from_secs(20), "writes acknowledged", || {
        (writer.acks().len() >= 20).then_some(())
    });

    // switchover to a named candidate.
    let (old, _) = cluster.wait_leader(T);
    let p = cluster.index_of(&old).unwrap();
    let candidate = cluster.node((p + 1) % 3).name().to_string();
    let t0 = Instant::now();
    let out = wardenctl(
        &cluster,
        &["switchover", &scope, "--candidate", &candidate, "--force"],
    );
    assert!(ok(&out), "switchover failed: {}", out.describe());
    let converged = cluster.assert_converged(T);
    assert_eq!(cluster.node(converged.primary).name(), candidate);
    println!(
        "switchover confirmed after {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    // failover to the third member.
    let third = cluster.node((p + 2) % 3).name().to_string();
    let out = wardenctl(
        &cluster,
        &["failover", &scope, "--candidate", &third, "--force"],
    );
    assert!(ok(&out), "failover failed: {}", out.describe());
    let converged = cluster.assert_converged(T);
    assert_eq!(cluster.node(converged.primary).name(), third);

    // A refused switchover exits non-zero with the reason and changes nothing.
    let out = wardenctl(
        &cluster,
        &["switchover", &scope, "--candidate", "nobody", "--force"],
    );
    assert!(
        !ok(&out),
        "switchover to a non-member succeeded: {}",
        out.describe()
    );
    assert!(
        out.stdout.contains("nobody") || out.stderr.contains("nobody"),
        "{}",
        out.describe()
    );
    assert_eq!(cluster.wait_leader(T).0, third);

    pending_restart_is_cleared(&cluster, &scope);

    // A scheduled switchover shows in `list` and `flush ... switchover` cancels it.
    let (leader, _) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).unwrap();
    let other = cluster.node((li + 1) % 3).name().to_string();
    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(900)).to_rfc3339();
    let out = wardenctl(
        &cluster,
        &[
            "switchover",
            &scope,
            "--candidate",
            &other,
            "--scheduled",
            &at,
            "--force",
        ],
    );
    assert!(ok(&out), "scheduled switchover: {}", out.describe());
    let out = wardenctl(&cluster, &["list", &scope]);
    assert!(
        out.stdout.contains("Switchover scheduled"),
        "{}",
        out.describe()
    );
    let out = wardenctl(&cluster, &["flush", &scope, "switchover", "--force"]);
    assert!(ok(&out), "flush switchover: {}", out.describe());
    let key = format!("{}failover", cluster.key_prefix());
    let pending = cluster.etcd().get(&key).unwrap().map(|kv| kv.value);
    assert!(
        pending.as_deref().is_none_or(|v| v == "{}"),
        "the scheduled switchover was not cancelled: {pending:?}"
    );

    // reinit --wait re-clones a replica; reload is accepted by every member.
    let replica = cluster.node((li + 2) % 3);
    let marker = replica.data_dir().join("warden-reinit-marker");
    std::fs::write(&marker, "gone after a reinit").unwrap();
    let name = replica.name().to_string();
    let out = wardenctl(&cluster, &["reinit", &scope, &name, "--force", "--wait"]);
    assert!(ok(&out), "reinit: {}", out.describe());
    assert!(!marker.exists(), "the data directory was not re-created");
    let out = wardenctl(&cluster, &["reload", &scope, "--force"]);
    assert!(ok(&out), "reload: {}", out.describe());
    cluster.assert_converged(T);

    pause_and_resume(&cluster, &scope);

    let outcomes = writer.stop();
    let acks = workload::acks_of(&outcomes);
    let primary = cluster.assert_converged(T).primary;
    let present = workload::ids_in(cluster.node(primary).pg_port(), TABLE).unwrap();
    let lost = workload::lost(&acks, &present);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    println!("{} acknowledged writes, none lost", acks.len());
}

/// edit-config -p max_connections -> pending_restart everywhere; restart --pending.
fn pending_restart_is_cleared(cluster: &Cluster, scope: &str) {
    let before: u32 = cluster
        .node(0)
        .show("max_connections")
        .unwrap()
        .parse()
        .unwrap();
    let wanted = (before + 11).to_string();
    let out = wardenctl(
        cluster,
        &[
            "edit-config",
            scope,
            "-p",
            &format!("max_connections={wanted}"),
            "--force",
        ],
    );
    assert!(ok(&out), "edit-config -p: {}", out.describe());
    cluster.wait_every_member(T, "every member flags pending_restart", |m| {
        m["pending_restart"] == true
    });
    let out = wardenctl(cluster, &["restart", scope, "--pending", "--force"]);
    assert!(ok(&out), "restart --pending: {}", out.describe());
    cluster.wait_every_member(T, "no member flags pending_restart", |m| {
        m.get("pending_restart").is_none()
    });
    for i in 0..3 {
        assert_eq!(
            cluster.node(i).show("max_connections").as_deref(),
            Some(wanted.as_str())
        );
    }
}

/// pause --wait / resume --wait.
fn pause_and_resume(cluster: &Cluster, scope: &str) {
    let out = wardenctl(cluster, &["pause", scope, "--wait"]);
    assert!(ok(&out), "pause: {}", out.describe());
    assert!(cluster.every_member(|m| m["pause"] == true));
    let out = wardenctl(cluster, &["list", scope]);
    assert!(
        out.stdout.contains("Maintenance mode: on"),
        "{}",
        out.describe()
    );
    let out = wardenctl(cluster, &["pause", scope]);
    assert!(
        !ok(&out),
        "pausing a paused cluster succeeded: {}",
        out.describe()
    );
    let out = wardenctl(cluster, &["resume", scope, "--wait"]);
    assert!(ok(&out), "resume: {}", out.describe());
    assert!(cluster.every_member(|m| m.get("pause").is_none()));
}
