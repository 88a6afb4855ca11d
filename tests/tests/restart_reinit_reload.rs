//! Member-level operator actions over the REST API: an immediate and a scheduled
//! restart (and cancelling one), reinitialising a replica from the leader, and reloading
//! an edited config file.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_tests::http::{self, HttpResponse};
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn call(
    cluster: &Cluster,
    i: usize,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> HttpResponse {
    let url = format!("{}{path}", cluster.node(i).api_url());
    let body = body.map(|b| b.to_string());
    http::send(
        method,
        &url,
        body.as_deref().map(str::as_bytes),
        None,
        REQUEST_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
}

fn postmaster_start(cluster: &Cluster, i: usize) -> Option<String> {
    let mut c = sql::connect(cluster.node(i).pg_port()).ok()?;
    c.query_one("SELECT pg_postmaster_start_time()::text", &[])
        .ok()
        .map(|r| r.get(0))
}

fn member(cluster: &Cluster, i: usize) -> Value {
    cluster
        .member_key(cluster.node(i).name())
        .expect("member key")
}

#[test]
fn restart_scheduled_restart_reinitialize_and_reload() {
    let mut cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let (leader, _) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).unwrap();
    let (r1, r2) = ((li + 1) % 3, (li + 2) % 3);

    // Immediate restart of the primary: it comes back as primary, still the leader.
    let before = postmaster_start(&cluster, li).unwrap();
    // A timeout no clock can hold (it once panicked the daemon): capped, not fatal.
    let r = call(
        &cluster,
        li,
        "POST",
        "/restart",
        Some(json!({"timeout": 10_000_000_000_000_000_000u64})),
    );
    assert_eq!((r.status, r.body.trim()), (200, "restarted successfully"));
    assert_ne!(
        postmaster_start(&cluster, li).unwrap(),
        before,
        "not restarted"
    );
    // A filter that does not match changes nothing.
    let before = postmaster_start(&cluster, r1).unwrap();
    let r = call(
        &cluster,
        r1,
        "POST",
        "/restart",
        Some(json!({"role": "primary"})),
    );
    assert_eq!(
        (r.status, r.body.trim()),
        (503, "restart conditions are not satisfied")
    );
    let r = call(
        &cluster,
        r1,
        "POST",
        "/restart",
        Some(json!({"restart_pending": true})),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(postmaster_start(&cluster, r1).unwrap(), before);

    scheduled_restarts(&cluster, r1, r2, &before);

    // Reinitialize: refused on the leader, a fresh clone on a replica.
    let r = call(&cluster, li, "POST", "/reinitialize", None);
    assert_eq!(
        (r.status, r.body.trim()),
        (503, "I am the leader, can not reinitialize")
    );
    let marker = cluster.node(r2).data_dir().join("warden-reinit-marker");
    std::fs::write(&marker, "this file must be gone after a reinitialize").unwrap();
    let t0 = Instant::now();
    let r = call(
        &cluster,
        r2,
        "POST",
        "/reinitialize",
        Some(json!({"force": true})),
    );
    assert_eq!((r.status, r.body.trim()), (200, "reinitialize started"));
    wait_until(T, "the reinitialized replica streams again", || {
        (!marker.exists() && cluster.node(r2).is_replica()).then_some(())
    });
    println!("reinitialize took {:.1} s", t0.elapsed().as_secs_f64());
    cluster.assert_converged(T);

    // Reload: a tag added to the file appears in the member key without a restart.
    let before = postmaster_start(&cluster, r1).unwrap();
    let node = cluster.node_mut(r1);
    let cfg = node.config().clone().tag("rack", "r42");
    *node.config_mut() = cfg;
    node.write_config().expect("rewrite the config file");
    let r = call(&cluster, r1, "POST", "/reload", None);
    assert_eq!((r.status, r.body.trim()), (202, "reload scheduled"));
    wait_until(T, "the reloaded tag is published", || {
        (member(&cluster, r1)["tags"]["rack"] == "r42").then_some(())
    });
    assert_eq!(postmaster_start(&cluster, r1).unwrap(), before);
}

/// Scheduled restart: published in the member key, carried out at its time;
/// `before` is when `r1`'s PostgreSQL last started.
fn scheduled_restarts(cluster: &Cluster, r1: usize, r2: usize, before: &str) {
    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(5);
    let r = call(
        cluster,
        r1,
        "POST",
        "/restart",
        Some(json!({"schedule": at.to_rfc3339()})),
    );
    assert_eq!((r.status, r.body.trim()), (202, "Restart scheduled"));
    let r = call(
        cluster,
        r1,
        "POST",
        "/restart",
        Some(json!({"schedule": at.to_rfc3339()})),
    );
    assert_eq!(
        (r.status, r.body.trim()),
        (409, "Another restart is already scheduled")
    );
    wait_until(T, "the member key shows the scheduled restart", || {
        member(cluster, r1)
            .get("scheduled_restart")
            .map(|s| s["schedule"].clone())
    });
    let restarted = wait_until(T, "the scheduled restart happens", || {
        postmaster_start(cluster, r1)
            .filter(|s| *s != before)
            .map(|_| chrono::Utc::now())
    });
    assert!(
        restarted >= at,
        "restarted at {restarted}, scheduled for {at}"
    );
    wait_until(T, "the schedule is gone from the member key", || {
        member(cluster, r1)
            .get("scheduled_restart")
            .is_none()
            .then_some(())
    });
    // A scheduled restart can be cancelled.
    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(600);
    let r = call(
        cluster,
        r2,
        "POST",
        "/restart",
        Some(json!({"schedule": at.to_rfc3339()})),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let r = call(cluster, r2, "DELETE", "/restart", None);
    assert_eq!(
        (r.status, r.body.trim()),
        (200, "scheduled restart deleted")
    );
    let r = call(cluster, r2, "DELETE", "/restart", None);
    assert_eq!(
        (r.status, r.body.trim()),
        (404, "no restarts are scheduled")
    );
    // In the past, without a timezone: refused.
    let r = call(
        cluster,
        r2,
        "POST",
        "/restart",
        Some(json!({"schedule": "2020-01-01T00:00:00+00:00"})),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = call(
        cluster,
        r2,
        "POST",
        "/restart",
        Some(json!({"schedule": "2030-01-01T00:00:00"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
}
