//! The whole deployment over TLS, as docs/security.md's hardened config runs it: etcd
//! over https with client certificates and RBAC (the agents' role limited to the
//! cluster's prefix), the REST API over https with `verify_client: required` (members
//! probe each other with client certificates; HAProxy checks with `check-ssl`), and
//! replication, clones and rewinds over TLS with `sslmode: verify-full`.
//!
//! One cluster, in order: it forms and every replica streams over TLS; wardenctl and
//! Patroni's patronictl list it through the secured etcd and REST API; a wardenctl
//! switchover and a crash failover each hand the primary over while a writer goes
//! through HAProxy, and no acknowledged write is lost; the crashed primary rejoins
//! and streams over TLS again. The cluster runs in synchronous mode: a crash of an
//! asynchronous primary may lose its last acknowledged commits by design (the
//! replicas had not received them), so "loses nothing" is only a promise there. The figures printed are the same measurements as
//! `warden-bench-switchover --tls` and `warden-bench-failover --tls` (one sample each;
//! the benchmarks give medians).

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use warden_tests::process::{run_bounded, run_bounded_input, RunOutput};
use warden_tests::wait::{poll_until, wait_until};
use warden_tests::workload::{self, Writer, WriterOptions};
use warden_tests::{bins, sql, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(40);
const TABLE: &str = "secure_writes";

fn ok(out: &RunOutput) -> bool {
    out.status.is_some_and(|s| s.success())
}

#[test]
fn tls_everywhere_switches_over_fails_over_and_loses_nothing() {
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let mut cluster = Cluster::start(
        ClusterSpec::new(3)
            .with_tls_everywhere()
            .customize(|_, c| c.set("bootstrap.dcs.synchronous_mode", true)),
    )
    .expect("start cluster");
    let formed = cluster.wait_formed(FORM_TIMEOUT);
    println!("formed over TLS in {:.1} s", formed.as_secs_f64());
    cluster.wait_replicas_streaming(T);
    replicas_stream_over_tls(&cluster);

    let ctl_cfg = cluster.dir().join("ctl-tls.yaml");
    cluster
        .write_ctl_config(&ctl_cfg)
        .expect("write the ctl config");
    patronictl_lists(&ctl_cfg);

    let opts = WriterOptions {
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(1),
        pause_after_error: Duration::from_millis(10),
        ..WriterOptions::default()
    };
    let writer = Writer::start(cluster.write_port(), TABLE, opts).expect("start the writer");
    wait_until(T, "writes acknowledged through HAProxy (check-ssl)", || {
        (writer.acks().len() >= 50).then_some(())
    });

    // Planned: wardenctl over https and the secured etcd, to the synchronous standby
    // (the only candidate synchronous mode allows).
    let (old, _) = cluster.wait_leader(T);
    let candidate = cluster.wait_sync_standby(&old, T);
    let new_port = cluster
        .node(cluster.index_of(&candidate).unwrap())
        .pg_port();
    let asked = Instant::now();
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    cmd.arg("-c").arg(&ctl_cfg).args([
        "switchover",
        cluster.scope(),
        "--leader",
        old.as_str(),
        "--candidate",
        candidate.as_str(),
        "--force",
    ]);
    let out = run_bounded_input(&mut cmd, None, RUN).expect("run wardenctl");
    assert!(ok(&out), "wardenctl switchover: {}", out.describe());
    let first_new = wait_until(T, "a write acknowledged by the new primary", || {
        writer
            .acks_since(asked)
            .into_iter()
            .find(|a| a.server_port == new_port)
    });
    println!(
        "switchover {old} -> {candidate}: first write on the new primary {:.2} s after the request",
        (first_new.acked - asked).as_secs_f64()
    );
    cluster.assert_converged(T);
    // The new primary has a confirmed synchronous standby before it is killed, so
    // every write acknowledged from here on is on a member that may be promoted.
    cluster.wait_sync_standby(&candidate, T);

    // Unplanned: the primary's node dies; the lease expires; the synchronous standby
    // takes over.
    let p = cluster.primary_index().expect("a primary");
    let old_port = cluster.node(p).pg_port();
    let t_kill = Instant::now();
    cluster.node_mut(p).kill(Signal::SIGKILL).expect("kill");
    let first = wait_until(T, "the first write acknowledged after the kill", || {
        writer
            .acks_since(t_kill)
            .into_iter()
            .find(|a| a.server_port != old_port)
    });
    println!(
        "failover after killing {}: first write on the new primary {:.2} s after the kill",
        cluster.node(p).name(),
        (first.acked - t_kill).as_secs_f64()
    );
    let outcomes = writer.stop();
    let acks = workload::acks_of(&outcomes);

    // The old primary rejoins (rewound from the new primary where it diverged; the
    // rewind's source connection is verify-full too, see pg_tls.rs).
    cluster
        .node_mut(p)
        .start()
        .expect("restart the old primary");
    let after = cluster.assert_converged(T);
    cluster.wait_replicas_streaming(T);
    replicas_stream_over_tls(&cluster);

    let present = workload::ids_in(cluster.node(after.primary).pg_port(), TABLE).expect("ids");
    let lost = workload::lost(&acks, &present);
    println!("{} writes acknowledged, {} lost", acks.len(), lost.len());
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

/// On the primary, every replica's walsender runs over TLS.
fn replicas_stream_over_tls(cluster: &Cluster) {
    let p = cluster.primary_index().expect("a primary");
    let port = cluster.node(p).pg_port();
    let want = cluster.nodes().len() - 1;
    let mut last = String::new();
    poll_until(T, || {
        let text = sql::query_text(
            port,
            "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) \
             FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
        )
        .ok()
        .flatten()?;
        last.clone_from(&text);
        (text == format!("{want}/{want}")).then_some(())
    })
    .unwrap_or_else(|| panic!("replication over TLS (ssl/all): {last}"));
}

/// patronictl reads etcd through the secured gateway and asks members over https.
fn patronictl_lists(cfg: &std::path::Path) {
    let ctl = bins::patronictl().unwrap_or_else(|e| panic!("{e:#}"));
    let mut last = String::new();
    poll_until(T, || {
        let mut cmd = Command::new(&ctl);
        cmd.env("PATRONICTL_CONFIG_FILE", cfg)
            .args(["list", "-f", "json"]);
        let out = run_bounded(&mut cmd, RUN).expect("run patronictl");
        last = out.describe();
        let rows: Vec<Value> = serde_json::from_str(&out.stdout).ok()?;
        let streaming = rows.iter().filter(|r| r["State"] == "streaming").count();
        (rows.len() == 3 && rows.iter().any(|r| r["Role"] == "Leader") && streaming == 2)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("patronictl list over TLS: {last}"));
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    cmd.arg("-c").arg(cfg).args(["list", "-f", "json"]);
    let out = run_bounded_input(&mut cmd, None, RUN).expect("run wardenctl");
    assert!(ok(&out), "wardenctl list: {}", out.describe());
    let rows: Vec<Value> = serde_json::from_str(&out.stdout).expect("wardenctl json");
    assert_eq!(rows.len(), 3, "{}", out.stdout);
}
