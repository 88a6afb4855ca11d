//! Requests to members' APIs: `restart`, `reload`, `reinit` (with `--wait`),
//! `flush restart`, `pause` and `resume`.

use super::fixtures::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use warden_consensus::memory::MemoryDcs;
use warden_consensus::Dcs;

#[tokio::test]
async fn restart_reports_each_member_and_fails_if_any_failed() {
    let handler: Handler = Arc::new(|req: Req| {
        if req.member == "node2" {
            reply(503, "restart conditions are not satisfied")
        } else {
            reply(200, "restarted successfully")
        }
    });
    let f = Fixture::new(handler, &[]).await;
    let o = f
        .run(
            &[
                "restart",
                "demo",
                "--force",
                "--pg-version",
                "15.9",
                "--timeout",
                "30s",
            ],
            "",
        )
        .await;
    let e = o.error();
    assert!(e.contains("1 of 3 members (node2)"), "{e}");
    assert!(
        o.out.contains("Success: restart on member node1"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains(
            "Failed: restart for member node2, status code=503, (restart conditions are not satisfied)"
        ),
        "{}",
        o.out
    );
    let reqs = f.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs
        .iter()
        .all(|r| r.method == "POST" && r.path == "/restart"));
    assert_eq!(
        reqs[0].body,
        json!({"postgres_version": "15.9", "timeout": "30s"})
    );

    // Only replicas, by name, with the role condition and a confirmation.
    let f = Fixture::new(always(200, "restarted successfully"), &[]).await;
    let o = f
        .run(
            &["restart", "demo", "node3", "node1", "--role", "replica"],
            "now\ny\n\n",
        )
        .await;
    o.ok();
    assert!(
        o.out
            .contains("Are you sure you want to restart members node3? [y/N]: "),
        "{}",
        o.out
    );
    let reqs = f.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].member.as_str(), &reqs[0].body),
        ("node3", &json!({"role": "replica"}))
    );
    let o = f.run(&["restart", "demo", "nodeX", "--force"], "").await;
    assert!(
        o.error()
            .contains("unknown member \"nodeX\" (members: node1, node2, node3)"),
        "{}",
        o.error()
    );
    let o = f
        .run(&["restart", "demo", "--pending", "--force"], "")
        .await;
    o.ok();
    assert!(o.out.contains("No member needs a restart"), "{}", o.out);
    let o = f.run(&["restart", "demo", "--any", "--force"], "").await;
    o.ok();
    assert_eq!(f.requests().len(), 2, "--any restarts exactly one member");
}

#[tokio::test]
async fn reload_reinit_and_flush() {
    let handler: Handler = Arc::new(|req: Req| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/reload") => reply(202, "reload scheduled"),
        ("POST", "/reinitialize") if req.body["force"] == json!(false) => {
            reply(503, "reinitialize already in progress")
        }
        ("POST", "/reinitialize") => reply(200, "reinitialize started"),
        ("DELETE", "/restart") => reply(200, "scheduled restart deleted"),
        _ => reply(404, "?"),
    });
    let f = Fixture::new(handler, &[]).await;
    let o = f.run(&["reload", "demo", "node2", "--force"], "").await;
    o.ok();
    assert_eq!(
        o.out.lines().last().unwrap(),
        "Reload request received for member node2 and will be processed within 10 seconds"
    );
    let o = f.run(&["reinit", "demo", "node3"], "y\ny\n").await;
    o.ok();
    let bodies: Vec<Value> = f
        .requests()
        .into_iter()
        .filter(|r| r.path == "/reinitialize")
        .map(|r| r.body)
        .collect();
    assert_eq!(
        bodies,
        vec![
            json!({"force": false, "from_leader": false}),
            json!({"force": true, "from_leader": false})
        ]
    );
    assert!(
        o.out.contains("Success: reinitialize for member node3"),
        "{}",
        o.out
    );
    let o = f.run(&["reinit", "demo", "node1", "--force"], "").await;
    assert!(
        o.error()
            .contains("no replica among the named members node1"),
        "{}",
        o.error()
    );

    // flush restart: only members with a scheduled restart are asked.
    let (text, _) = f.get("members/node2").await.unwrap();
    let mut m: Value = serde_json::from_str(&text).unwrap();
    m["scheduled_restart"] = json!({"schedule": "2030-01-01T00:00:00+00:00"});
    put(&f.dcs, "members/node2", &m.to_string()).await;
    let before = f.requests().len();
    let o = f.run(&["flush", "demo", "restart", "--force"], "").await;
    o.ok();
    assert!(
        o.out.contains("No scheduled restart for member node1"),
        "{}",
        o.out
    );
    assert!(
        o.out
            .contains("Success: flush scheduled restart for member node2"),
        "{}",
        o.out
    );
    let reqs = f.requests();
    assert_eq!(reqs.len(), before + 1);
    assert_eq!(
        (reqs[before].method.as_str(), reqs[before].member.as_str()),
        ("DELETE", "node2")
    );

    let o = f.run(&["flush", "demo", "switchover"], "").await;
    o.ok();
    assert_eq!(o.out.trim(), "No pending scheduled switchover");
}

#[tokio::test]
async fn reinit_wait_follows_the_member_until_it_runs_again() {
    // The member's PostgreSQL gets a new start time once the reinitialization ran.
    let started = Arc::new(Mutex::new("2030-01-01 00:00:00"));
    let s = started.clone();
    let handler: Handler = Arc::new(move |req: Req| {
        let s = s.clone();
        Box::pin(async move {
            match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/reinitialize") => {
                    *s.lock().unwrap() = "2030-01-01 00:05:00";
                    (200, "reinitialize started".to_string())
                }
                ("GET", "/patroni") => (
                    200,
                    json!({"state": "running", "postmaster_start_time": *s.lock().unwrap()})
                        .to_string(),
                ),
                _ => (404, String::new()),
            }
        })
    });
    let f = Fixture::new(handler, &[]).await;
    let o = f
        .run(&["reinit", "demo", "node2", "--force", "--wait"], "")
        .await;
    o.ok();
    assert!(
        o.out
            .contains("Waiting for reinitialize to complete on: node2"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("Reinitialize is completed on: node2"),
        "{}",
        o.out
    );

    // A member that ends in a failure state fails the command.
    let f = Fixture::new(always(200, "reinitialize started"), &[]).await;
    let (text, _) = f.get("members/node3").await.unwrap();
    let mut m: Value = serde_json::from_str(&text).unwrap();
    m["state"] = json!("start failed");
    put(&f.dcs, "members/node3", &m.to_string()).await;
    let o = f
        .run(&["reinit", "demo", "node3", "--force", "--wait"], "")
        .await;
    assert!(
        o.error().contains("reinitialize failed on node3"),
        "{}",
        o.error()
    );
    assert!(
        o.out
            .contains("Reinitialize failed on: node3 (state: start failed)"),
        "{}",
        o.out
    );
}

/// An API whose PATCH /config pauses (or resumes) the cluster in the DCS, the way the
/// agents will: config `pause`, then every member publishes `pause` in its key.
fn pausing_handler(dcs: MemoryDcs) -> Handler {
    Arc::new(move |req: Req| {
        let dcs = dcs.clone();
        Box::pin(async move {
            if req.method != "PATCH" || req.path != "/config" {
                return (404, String::new());
            }
            let pause = req.body["pause"] == json!(true);
            let cfg = if pause {
                r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"pause":true}"#
            } else {
                r#"{"ttl":30,"loop_wait":10,"retry_timeout":10}"#
            };
            put(&dcs, "config", cfg).await;
            let snap = dcs.get_prefix(&format!("{P}members/")).await.unwrap();
            for kv in snap.kvs {
                let mut m: Value = serde_json::from_slice(&kv.value).unwrap();
                if pause {
                    m["pause"] = json!(true);
                } else if let Some(o) = m.as_object_mut() {
                    o.remove("pause");
                }
                dcs.put(&kv.key, m.to_string().into_bytes(), None)
                    .await
                    .unwrap();
            }
            (200, cfg.to_string())
        })
    })
}

#[tokio::test]
async fn pause_and_resume_through_the_api() {
    let dcs = MemoryDcs::new();
    let mut f = Fixture::new(pausing_handler(dcs.clone()), &["node1"]).await;
    let snap = f.dcs.get_prefix("/").await.unwrap();
    for kv in snap.kvs {
        dcs.put(&kv.key, kv.value, None).await.unwrap();
    }
    f.dcs = dcs;
    let o = f.run(&["resume"], "").await;
    assert_eq!(o.error(), "Cluster is not paused");
    // The leader's API is down: the next member takes the request.
    let o = f.run(&["pause", "--wait"], "").await;
    o.ok();
    assert!(
        o.err.contains("member node1 is not accessible"),
        "{}",
        o.err
    );
    assert!(
        o.out.ends_with("Success: cluster management is paused\n"),
        "{}",
        o.out
    );
    let r = &f.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.member.as_str()),
        ("PATCH", "/config", "node2")
    );
    assert_eq!(r.body, json!({"pause": true}));
    let o = f.run(&["list"], "").await;
    assert!(o.out.ends_with(" Maintenance mode: on\n"), "{}", o.out);
    let o = f.run(&["pause"], "").await;
    assert_eq!(o.error(), "Cluster is already paused");
    let o = f.run(&["resume"], "").await;
    o.ok();
    assert_eq!(f.requests()[1].body, json!({"pause": null}));
}
