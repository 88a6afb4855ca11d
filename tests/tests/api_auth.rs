//! `restapi.authentication` on every node (the same credentials everywhere, as Patroni
//! users configure it): every mutating endpoint of the leader refuses a request without
//! credentials, with a wrong user or password, or with a malformed `Authorization`
//! header (401 with `WWW-Authenticate`), and refuses malformed bodies even with the
//! right credentials (400, or 413 over 64 KiB). None of that changes anything: same
//! leader key (holder and `create_revision`), same `config` key, no switchover request,
//! no PostgreSQL restarted. Then the positive controls: with the right credentials a
//! scheduled switchover and a scheduled restart survive an unauthenticated DELETE and go
//! with an authenticated one, `PATCH /config` changes the `config` key, `POST /reload`
//! is accepted; and the health endpoints stay open without credentials. `POST /failsafe`
//! (how a leader cut off from the DCS holds off a failover) is guarded the same way and
//! refused (502) while `failsafe_mode` is off.

use std::time::Duration;

use serde_json::{json, Value};
use warden_tests::http::{self, HttpResponse};
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const USER: &str = "warden-admin";
const PASSWORD: &str = "c0rrect:horse battery";
/// Over the agents' 64 KiB limit for request bodies.
const OVERSIZE: usize = 70 * 1024;

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    /// No `Authorization` header.
    Missing,
    /// `Basic base64(user:password)`.
    Basic(&'a str, &'a str),
    /// This exact `Authorization` header value.
    Raw(&'a str),
}

fn call(
    cluster: &Cluster,
    node: usize,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    auth: Auth,
) -> HttpResponse {
    let url = format!("{}{path}", cluster.node(node).api_url());
    let value = match auth {
        Auth::Missing => None,
        Auth::Basic(u, p) => Some(http::basic_authorization(u, p)),
        Auth::Raw(v) => Some(v.to_string()),
    };
    let headers: Vec<(&str, &str)> = value
        .iter()
        .map(|v| ("Authorization", v.as_str()))
        .collect();
    http::send_with_headers(method, &url, body, &headers, REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
}

fn authorized(
    cluster: &Cluster,
    node: usize,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> HttpResponse {
    call(
        cluster,
        node,
        method,
        path,
        body,
        Auth::Basic(USER, PASSWORD),
    )
}

/// What must not change while requests are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    leader: (String, i64),
    config: (String, i64),
    /// The `failover` key's value, `None` when absent.
    failover: Option<String>,
    /// Per node: `pg_postmaster_start_time()` and the postmaster's pid.
    postmasters: Vec<(String, i32)>,
}

fn snapshot(cluster: &Cluster) -> Snapshot {
    let prefix = cluster.key_prefix();
    let leader = cluster
        .leader_key()
        .expect("read the leader key")
        .map(|kv| (kv.value, kv.create_revision))
        .expect("the leader key is held");
    let config = cluster
        .etcd()
        .get(&format!("{prefix}config"))
        .expect("read the config key")
        .map(|kv| (kv.value, kv.mod_revision))
        .expect("the config key exists");
    let failover = cluster
        .etcd()
        .get(&format!("{prefix}failover"))
        .expect("read the failover key")
        .map(|kv| kv.value);
    let postmasters = cluster
        .nodes()
        .iter()
        .map(|n| {
            let started = sql::query_text(n.pg_port(), "SELECT pg_postmaster_start_time()::text")
                .unwrap_or_else(|e| panic!("{}: pg_postmaster_start_time(): {e:#}", n.name()))
                .expect("one row");
            let pid = n
                .postmaster_pid()
                .unwrap_or_else(|| panic!("{}: no postmaster", n.name()));
            (started, pid)
        })
        .collect();
    Snapshot {
        leader,
        config,
        failover,
        postmasters,
    }
}

/// The `failover` key holds no request: absent or `{}`.
fn no_switchover_request(failover: Option<&str>) -> bool {
    failover.is_none_or(|v| serde_json::from_str::<Value>(v).is_ok_and(|j| j == json!({})))
}

fn assert_401(r: &HttpResponse, what: &str) {
    assert_eq!(
        r.status, 401,
        "{what}: expected 401, got {} {}",
        r.status, r.body
    );
    let challenge = r.header("WWW-Authenticate").unwrap_or_else(|| {
        panic!(
            "{what}: 401 without WWW-Authenticate (headers {:?})",
            r.headers
        )
    });
    assert!(
        challenge.starts_with("Basic ") && challenge.contains("realm="),
        "{what}: WWW-Authenticate {challenge:?} is not a Basic challenge"
    );
}

#[test]
fn mutating_endpoints_require_credentials_and_valid_bodies() {
    let spec = ClusterSpec::new(3).without_haproxy().customize(|_, c| {
        c.set("restapi.authentication.username", USER)
            .set("restapi.authentication.password", PASSWORD)
    });
    let cluster = Cluster::start(spec).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let before = snapshot(&cluster);
    assert!(
        no_switchover_request(before.failover.as_deref()),
        "a switchover request before the test: {:?}",
        before.failover
    );
    let leader = before.leader.0.clone();
    let li = cluster.index_of(&leader).expect("the leader is a node");
    let replica = (li + 1) % 3;
    let candidate = cluster.node(replica).name().to_string();
    println!(
        "leader {leader} (create_revision {}), candidate {candidate}",
        before.leader.1
    );

    health_answers_while_slow_clients_hold_every_connection(&cluster, li);

    // Health endpoints stay open: HAProxy and monitoring send no credentials.
    assert_eq!(cluster.node(li).status("/primary"), Some(200));
    assert_eq!(cluster.node(li).options("/primary"), Some(200));
    assert_eq!(cluster.node(replica).status("/replica"), Some(200));
    for path in ["/patroni", "/cluster", "/config", "/history", "/metrics"] {
        assert_eq!(cluster.node(li).status(path), Some(200), "GET {path}");
    }

    let endpoints = mutating_requests(&before, &leader, &candidate);
    let wrong_password = format!("{PASSWORD}x");
    let bad_auth = bad_credentials(&wrong_password);
    let oversize = oversize_body();
    let mut refused =
        refuse_unauthenticated(&cluster, li, replica, &endpoints, &bad_auth, &oversize);
    // POST /failsafe: a leader cut off from the DCS asks the other members to let it
    // stay primary, and a member that accepts does not race for the leader key for a
    // ttl. Patroni guards it like the other mutating endpoints (its members send their
    // restapi credentials) and answers 502 unless failsafe_mode is on, which it is not
    // here: an anonymous request must not be able to hold off a failover.
    let failsafe =
        json!({"name": leader, "api_url": format!("{}/patroni", cluster.node(li).api_url())})
            .to_string();
    refused += refuse_unauthenticated_failsafe(&cluster, replica, &failsafe, &bad_auth);
    println!("{refused} unauthenticated requests refused with 401");
    let r = authorized(
        &cluster,
        replica,
        "POST",
        "/failsafe",
        Some(failsafe.as_bytes()),
    );
    assert_eq!(
        r.status, 502,
        "POST /failsafe with failsafe_mode off: expected 502, got {} {}",
        r.status, r.body
    );

    refuse_bad_bodies(&cluster, li, &leader, &candidate, &endpoints, &oversize);
    assert_nothing_changed(&cluster, &before);
    deletes_need_credentials(&cluster, li, &leader, &candidate, &wrong_password);
    authorized_requests_are_carried_out(&cluster, li, &before);

    // Still no leader change and no restart, now long after every refused request.
    let end = snapshot(&cluster);
    assert_eq!(end.leader, before.leader, "the leader key changed");
    assert_eq!(
        end.postmasters, before.postmasters,
        "a PostgreSQL was restarted"
    );
    assert!(no_switchover_request(end.failover.as_deref()));
    let converged = cluster.assert_converged(T);
    assert_eq!(cluster.node(converged.primary).name(), leader);
}

/// Every mutating endpoint with a body that would be acted on if the request got
/// through, so a hole in the check would show up as a change.
fn mutating_requests(
    before: &Snapshot,
    leader: &str,
    candidate: &str,
) -> Vec<(&'static str, &'static str, Value)> {
    let mut new_config: Value = serde_json::from_str(&before.config.0).expect("config is JSON");
    new_config["loop_wait"] = json!(2);
    vec![
        (
            "POST",
            "/switchover",
            json!({"leader": leader, "candidate": candidate}),
        ),
        ("POST", "/failover", json!({"candidate": candidate})),
        ("DELETE", "/switchover", Value::Null),
        ("POST", "/restart", json!({})),
        ("DELETE", "/restart", Value::Null),
        ("POST", "/reinitialize", json!({"force": true})),
        ("POST", "/reload", Value::Null),
        ("PATCH", "/config", json!({"loop_wait": 2})),
        ("PUT", "/config", new_config),
    ]
}

/// Credentials that must not get through: none, wrong, and malformed headers.
fn bad_credentials(wrong_password: &str) -> Vec<(&'static str, Auth<'_>)> {
    vec![
        ("no Authorization header", Auth::Missing),
        ("wrong password", Auth::Basic(USER, wrong_password)),
        ("empty password", Auth::Basic(USER, "")),
        ("wrong user", Auth::Basic("admin", PASSWORD)),
        ("Bearer token", Auth::Raw("Bearer x")),
        ("invalid base64", Auth::Raw("Basic !!!")),
        ("Basic without credentials", Auth::Raw("Basic")),
        (
            "no colon in the credentials",
            Auth::Raw("Basic d2FyZGVuLWFkbWlu"),
        ), // "warden-admin"
        ("the password sent as the user", Auth::Basic(PASSWORD, USER)),
    ]
}

/// A JSON body over the agents' limit.
fn oversize_body() -> Vec<u8> {
    let mut b = br#"{"pad":""#.to_vec();
    b.resize(OVERSIZE, b'x');
    b.extend_from_slice(br#""}"#);
    b
}

/// Every mutating endpoint refuses every bad credential, on the leader and on a
/// replica, even with an oversized body. Returns how many requests were refused.
fn refuse_unauthenticated(
    cluster: &Cluster,
    li: usize,
    replica: usize,
    endpoints: &[(&str, &str, Value)],
    bad_auth: &[(&str, Auth)],
    oversize: &[u8],
) -> usize {
    let mut refused = 0;
    for (method, path, body) in endpoints {
        let body = (!body.is_null()).then(|| body.to_string());
        for (what, auth) in bad_auth {
            let r = call(
                cluster,
                li,
                method,
                path,
                body.as_deref().map(str::as_bytes),
                *auth,
            );
            assert_401(&r, &format!("{method} {path} with {what}"));
            refused += 1;
        }
        // A body over the limit does not get past the credentials check either.
        let r = call(cluster, li, method, path, Some(oversize), Auth::Missing);
        assert_401(&r, &format!("{method} {path}, 70 KiB body, no credentials"));
        // On a replica too, where restart and reinitialize would be carried out.
        let r = call(
            cluster,
            replica,
            method,
            path,
            body.as_deref().map(str::as_bytes),
            Auth::Missing,
        );
        assert_401(
            &r,
            &format!("{method} {path} on a replica without credentials"),
        );
        refused += 2;
    }
    refused
}

fn refuse_unauthenticated_failsafe(
    cluster: &Cluster,
    replica: usize,
    failsafe: &str,
    bad_auth: &[(&str, Auth)],
) -> usize {
    let mut refused = 0;
    for (what, auth) in bad_auth {
        let r = call(
            cluster,
            replica,
            "POST",
            "/failsafe",
            Some(failsafe.as_bytes()),
            *auth,
        );
        assert_401(&r, &format!("POST /failsafe on a replica with {what}"));
        refused += 1;
    }
    refused
}

/// With the right credentials, malformed bodies are refused (400), and so is any body
/// over the limit (413).
fn refuse_bad_bodies(
    cluster: &Cluster,
    li: usize,
    leader: &str,
    candidate: &str,
    endpoints: &[(&str, &str, Value)],
    oversize: &[u8],
) {
    // Right credentials, malformed bodies. DELETE /switchover, DELETE /restart and
    // POST /reload take no body (Patroni ignores it), so only the size limit applies.
    let bad_bodies = malformed_bodies(leader, candidate);
    let mut rejected = 0;
    for (method, path, bodies) in &bad_bodies {
        for body in bodies {
            let r = authorized(cluster, li, method, path, Some(body.as_bytes()));
            assert_eq!(
                r.status, 400,
                "{method} {path} with body {body:?}: expected 400, got {} {}",
                r.status, r.body
            );
            rejected += 1;
        }
    }
    for (method, path, _) in endpoints {
        let r = authorized(cluster, li, method, path, Some(oversize));
        assert_eq!(
            r.status, 413,
            "{method} {path} with a 70 KiB body: expected 413, got {} {}",
            r.status, r.body
        );
        rejected += 1;
    }
    println!("{rejected} authenticated requests with bad bodies refused (400/413)");
}

/// Per endpoint that takes a body, bodies it must refuse.
fn malformed_bodies(
    leader: &str,
    candidate: &str,
) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let not_json = "{not json";
    let array = "[1,2]";
    vec![
        (
            "POST",
            "/switchover",
            vec![
                not_json.into(),
                array.into(),
                String::new(),
                "{}".into(),
                "null".into(),
                json!({"leader": 5}).to_string(),
                json!({"leader": leader, "candidate": 7}).to_string(),
                json!({"leader": [leader], "candidate": candidate}).to_string(),
                json!({"leader": leader, "candidate": leader}).to_string(),
                json!({"leader": leader, "candidate": candidate, "scheduled_at": 12}).to_string(),
            ],
        ),
        (
            "POST",
            "/failover",
            vec![
                not_json.into(),
                array.into(),
                String::new(),
                "{}".into(),
                json!({"candidate": 5}).to_string(),
                json!({"candidate": {"name": candidate}}).to_string(),
                json!({"candidate": candidate, "scheduled_at": "2099-01-01T00:00:00+00:00"})
                    .to_string(),
            ],
        ),
        (
            "POST",
            "/restart",
            vec![
                not_json.into(),
                array.into(),
                "\"restart\"".into(),
                json!({"timeout": -1}).to_string(),
                json!({"timeout": 0}).to_string(),
                json!({"timeout": "soon"}).to_string(),
                json!({"bogus": 1}).to_string(),
                json!({"role": "leader"}).to_string(),
                json!({"role": 1}).to_string(),
                json!({"restart_pending": "maybe"}).to_string(),
                json!({"postgres_version": "x"}).to_string(),
                json!({"schedule": 5}).to_string(),
            ],
        ),
        (
            "POST",
            "/reinitialize",
            vec![
                not_json.into(),
                array.into(),
                json!({"force": "maybe"}).to_string(),
                json!({"from_leader": 3}).to_string(),
                json!({"bogus": 1}).to_string(),
            ],
        ),
        (
            "PATCH",
            "/config",
            vec![
                not_json.into(),
                array.into(),
                String::new(),
                "{}".into(),
                "null".into(),
                json!({"ttl": "soon"}).to_string(),
                json!({"loop_wait": -1}).to_string(),
                // (Timings that break the rule are adjusted, not refused, as in Patroni.)
                json!({"synchronous_node_count": 0}).to_string(),
                json!({"pause": "maybe"}).to_string(),
                json!({"postgresql": 5}).to_string(),
                json!({"postgresql": {"use_slots": "sometimes"}}).to_string(),
            ],
        ),
        (
            "PUT",
            "/config",
            vec![
                not_json.into(),
                array.into(),
                String::new(),
                "{}".into(),
                json!({"ttl": "soon"}).to_string(),
                json!({"synchronous_node_count": 0}).to_string(),
                json!({"postgresql": [1]}).to_string(),
            ],
        ),
    ]
}

/// Nothing changed. Whatever a request that slipped through would have started has
/// had the time of the whole sweep (many loop turns) to show.
fn assert_nothing_changed(cluster: &Cluster, before: &Snapshot) {
    let after = snapshot(cluster);
    assert_eq!(after.leader, before.leader, "the leader key changed");
    assert_eq!(after.config, before.config, "the config key changed");
    assert!(
        no_switchover_request(after.failover.as_deref()),
        "a switchover request was stored: {:?}",
        after.failover
    );
    for (i, (b, a)) in before
        .postmasters
        .iter()
        .zip(&after.postmasters)
        .enumerate()
    {
        assert_eq!(
            a,
            b,
            "{}'s PostgreSQL was restarted",
            cluster.node(i).name()
        );
    }
    assert!(
        members_with(cluster, "scheduled_restart").is_empty(),
        "a restart was scheduled"
    );
}

/// The member keys that hold `field`.
fn members_with(cluster: &Cluster, field: &str) -> Vec<String> {
    cluster
        .etcd()
        .get_prefix(&format!("{}members/", cluster.key_prefix()))
        .expect("read member keys")
        .into_iter()
        .filter(|kv| serde_json::from_str::<Value>(&kv.value).is_ok_and(|v| v.get(field).is_some()))
        .map(|kv| kv.key)
        .collect()
}

/// Positive controls for the DELETEs: what an authorized request scheduled survives
/// an unauthorized DELETE and goes with an authorized one.
fn deletes_need_credentials(
    cluster: &Cluster,
    li: usize,
    leader: &str,
    candidate: &str,
    wrong_password: &str,
) {
    let at = (chrono::Utc::now() + chrono::TimeDelta::seconds(3600)).to_rfc3339();
    let body = json!({"leader": leader, "candidate": candidate, "scheduled_at": at}).to_string();
    let r = authorized(cluster, li, "POST", "/switchover", Some(body.as_bytes()));
    assert_eq!((r.status, r.body.trim()), (202, "Switchover scheduled"));
    let failover_key = format!("{}failover", cluster.key_prefix());
    let scheduled = cluster
        .etcd()
        .get(&failover_key)
        .unwrap()
        .map(|kv| kv.value);
    assert!(
        scheduled.as_deref().is_some_and(|v| v.contains(candidate)),
        "the scheduled switchover is not in the failover key: {scheduled:?}"
    );
    assert_401(
        &call(cluster, li, "DELETE", "/switchover", None, Auth::Missing),
        "DELETE /switchover",
    );
    assert_401(
        &call(
            cluster,
            li,
            "DELETE",
            "/switchover",
            None,
            Auth::Basic(USER, wrong_password),
        ),
        "DELETE /switchover, wrong password",
    );
    assert_eq!(
        cluster
            .etcd()
            .get(&failover_key)
            .unwrap()
            .map(|kv| kv.value),
        scheduled,
        "an unauthorized DELETE /switchover changed the request"
    );
    let r = authorized(cluster, li, "DELETE", "/switchover", None);
    assert_eq!(
        (r.status, r.body.trim()),
        (200, "scheduled switchover deleted")
    );
    let cleared = cluster
        .etcd()
        .get(&failover_key)
        .unwrap()
        .map(|kv| kv.value);
    assert!(
        no_switchover_request(cleared.as_deref()),
        "not cleared: {cleared:?}"
    );

    let body = json!({"schedule": at}).to_string();
    let r = authorized(cluster, li, "POST", "/restart", Some(body.as_bytes()));
    assert_eq!((r.status, r.body.trim()), (202, "Restart scheduled"));
    let leader_member = format!("{}members/{leader}", cluster.key_prefix());
    wait_until(
        T,
        "the leader's member key shows the scheduled restart",
        || {
            members_with(cluster, "scheduled_restart")
                .contains(&leader_member)
                .then_some(())
        },
    );
    assert_401(
        &call(cluster, li, "DELETE", "/restart", None, Auth::Missing),
        "DELETE /restart",
    );
    assert_401(
        &call(
            cluster,
            li,
            "DELETE",
            "/restart",
            None,
            Auth::Raw("Bearer x"),
        ),
        "DELETE /restart, Bearer",
    );
    let r = authorized(cluster, li, "DELETE", "/restart", None);
    assert_eq!(
        (r.status, r.body.trim()),
        (200, "scheduled restart deleted"),
        "the unauthorized DELETEs must not have removed the scheduled restart"
    );
    let r = authorized(cluster, li, "DELETE", "/restart", None);
    assert_eq!(
        (r.status, r.body.trim()),
        (404, "no restarts are scheduled")
    );
    wait_until(T, "no member key shows a scheduled restart", || {
        members_with(cluster, "scheduled_restart")
            .is_empty()
            .then_some(())
    });
}

/// With the right credentials the same requests are carried out.
fn authorized_requests_are_carried_out(cluster: &Cluster, li: usize, before: &Snapshot) {
    let r = authorized(
        cluster,
        li,
        "PATCH",
        "/config",
        Some(br#"{"loop_wait": 2}"#),
    );
    assert_eq!(r.status, 200, "PATCH /config: {}", r.body);
    assert_eq!(
        r.json().expect("PATCH answers with the config")["loop_wait"],
        2
    );
    let stored: Value = cluster
        .etcd()
        .get(&format!("{}config", cluster.key_prefix()))
        .unwrap()
        .map(|kv| serde_json::from_str(&kv.value).expect("config is JSON"))
        .expect("config key");
    let mut want: Value = serde_json::from_str(&before.config.0).unwrap();
    want["loop_wait"] = json!(2);
    assert_eq!(stored, want, "PATCH changed more than loop_wait");
    let r = authorized(cluster, li, "POST", "/reload", None);
    assert_eq!((r.status, r.body.trim()), (202, "reload scheduled"));
}

/// More keep-alive clients than the API serves at once, each holding its connection:
/// a health check (HAProxy's `/primary`) must still get its answer at once, not wait
/// for a slot (it once waited in the accept queue until a client let go).
fn health_answers_while_slow_clients_hold_every_connection(cluster: &Cluster, li: usize) {
    use std::io::{Read, Write};
    let port = cluster.node(li).api_port();
    let mut held = Vec::new();
    for _ in 0..300 {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        // One request each; the connection then stays open (keep-alive).
        let _ = s.write_all(b"GET /liveness HTTP/1.1\r\nhost: x\r\n\r\n");
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        held.push(s);
    }
    let t0 = std::time::Instant::now();
    let r = warden_tests::http::get_with_timeout(
        &format!("{}/primary", cluster.node(li).api_url()),
        Duration::from_secs(3),
    )
    .expect("GET /primary while every slot is held");
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    println!(
        "{} client connections held; GET /primary answered in {:.0} ms",
        held.len(),
        took.as_secs_f64() * 1000.0
    );
    drop(held);
}
