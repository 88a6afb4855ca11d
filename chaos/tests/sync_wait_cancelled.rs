//! A commit whose wait for a synchronous standby is cancelled returns
//! success with the warning "canceling wait for synchronous replication":
//! committed locally, possibly on no standby. Neither the writer nor the
//! direct-write probes may count it as acknowledged — in synchronous mode the
//! lost-writes check would otherwise blame the cluster for writes that were
//! never durable.
//!
//! One node; PostgreSQL waits for a standby that does not exist
//! (`synchronous_standby_names = 'nobody'`, set with ALTER SYSTEM), and a
//! canceller cancels every backend waiting on `SyncRep`. Then the rows are
//! there, yet nothing was acknowledged. Control: with the setting reset,
//! both acknowledge writes again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use warden_chaos::events::{EventLog, ProbeError};
use warden_chaos::workload::{Clock, Engine, Probes, PROBE_TABLE};
use warden_tests::wait::{poll_until, wait_until};
use warden_tests::workload::{Outcome, Writer, WriterOptions, SYNC_WAIT_CANCELLED};
use warden_tests::{sql, Cluster, ClusterSpec};

const T: Duration = Duration::from_secs(30);

fn set_standby_names(port: u16, value: Option<&str>) {
    let stmt = match value {
        Some(v) => format!("ALTER SYSTEM SET synchronous_standby_names = '{v}'"),
        None => "ALTER SYSTEM RESET synchronous_standby_names".into(),
    };
    sql::execute(port, &stmt).unwrap();
    sql::execute(port, "SELECT pg_reload_conf()").unwrap();
    let want = value.unwrap_or("");
    wait_until(T, "synchronous_standby_names in effect", || {
        (sql::query_text(port, "SHOW synchronous_standby_names")
            .ok()??
            .as_str()
            == want)
            .then_some(())
    });
}

#[test]
fn a_cancelled_synchronous_commit_is_not_an_acknowledgement() {
    let cluster = Cluster::start(ClusterSpec::new(1).without_haproxy()).expect("start");
    cluster.wait_formed(Duration::from_secs(90));
    let port = cluster.node(0).pg_port();
    sql::execute(
        port,
        "CREATE TABLE w (id bigint PRIMARY KEY, at timestamptz DEFAULT now())",
    )
    .unwrap();
    sql::execute(
        port,
        &format!("CREATE TABLE {PROBE_TABLE} (id bigint PRIMARY KEY, node int NOT NULL)"),
    )
    .unwrap();
    set_standby_names(port, Some("nobody"));

    // Cancel whatever waits for the standby that never comes.
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let canceller = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let _ = sql::execute(
                port,
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let writer = Writer::start(
        port,
        "w",
        WriterOptions {
            pause_after_error: Duration::from_millis(50),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let clock = Clock::start();
    let probes = Probes::start(&[(0, port)], clock, Engine::Postgres).unwrap();
    let cancelled_writes = || {
        writer
            .outcomes()
            .iter()
            .filter(|o| matches!(o, Outcome::Fail(f) if f.error.starts_with(SYNC_WAIT_CANCELLED)))
            .count()
    };
    wait_until(T, "three cancelled commits of the writer", || {
        (cancelled_writes() >= 3).then_some(())
    });
    let committed = sql::query_text(port, "SELECT count(*)::text FROM w").unwrap();
    assert!(
        writer.acks().is_empty(),
        "a write was counted as acknowledged while no standby confirmed it: {:?}",
        writer.acks()
    );
    assert_ne!(
        committed.as_deref(),
        Some("0"),
        "the cancelled commits are there locally"
    );
    let mut log = EventLog::default();
    // The probes' evidence so far, without stopping them: a second look below.
    let probe_cancelled = poll_until(T, || {
        let acks = probes.acks();
        assert!(
            acks.is_empty(),
            "a probe counted a cancelled commit: {acks:?}"
        );
        let n = sql::query_text(port, &format!("SELECT count(*)::text FROM {PROBE_TABLE}"))
            .ok()??
            .parse::<u32>()
            .ok()?;
        (n >= 3).then_some(n)
    });
    assert!(
        probe_cancelled.is_some(),
        "the probes' commits never happened locally"
    );

    // Control: without the phantom standby, both acknowledge writes again.
    stop.store(true, Ordering::SeqCst);
    canceller.join().unwrap();
    set_standby_names(port, None);
    wait_until(T, "writes acknowledged again", || {
        (writer.acks().len() >= 3 && probes.acks().len() >= 3).then_some(())
    });
    let outcomes = writer.stop();
    probes.stop(&mut log);
    let cancelled: u32 = log
        .probe_failures
        .iter()
        .filter(|f| f.error == ProbeError::SyncWaitCancelled)
        .map(|f| f.count)
        .sum();
    println!(
        "writer: {} outcomes, {} cancelled; probes: {} acknowledged after the reset, {cancelled} cancelled",
        outcomes.len(),
        outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Fail(f) if f.error.starts_with(SYNC_WAIT_CANCELLED)))
            .count(),
        log.probes.len()
    );
    assert!(cancelled >= 3, "probe failures: {:?}", log.probe_failures);
}
