//! `switchover`, `failover` and `flush switchover`: the leader's API is asked, the
//! DCS followed, and the failover key is the fallback.

use super::fixtures::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use warden_consensus::memory::MemoryDcs;
use warden_consensus::Dcs;

/// A leader API that performs the switchover in the DCS the way an agent would.
fn switching_handler(dcs: MemoryDcs) -> Handler {
    Arc::new(move |req: Req| {
        let dcs = dcs.clone();
        Box::pin(async move {
            if req.method == "POST" && req.path == "/switchover" {
                let to = req.body["candidate"]
                    .as_str()
                    .unwrap_or("node2")
                    .to_string();
                promote(&dcs, &to).await;
                return (200, format!("Successfully switched over to \"{to}\""));
            }
            (404, "not found".to_string())
        })
    })
}

async fn promote(dcs: &MemoryDcs, to: &str) {
    let snap = dcs.get_prefix(&format!("{P}members/")).await.unwrap();
    for kv in snap.kvs {
        let mut m: Value = serde_json::from_slice(&kv.value).unwrap();
        let name = kv.key.rsplit('/').next().unwrap().to_string();
        m["role"] = json!(if name == to { "primary" } else { "replica" });
        dcs.put(&kv.key, m.to_string().into_bytes(), None)
            .await
            .unwrap();
    }
    put(dcs, "leader", to).await;
}

#[tokio::test]
async fn switchover_posts_to_the_leader_and_follows_the_dcs() {
    let dcs = MemoryDcs::new();
    let f = {
        let mut f = Fixture::new(switching_handler(dcs.clone()), &[]).await;
        // The handler must act on the fixture's store.
        let snap = f.dcs.get_prefix("/").await.unwrap();
        for kv in snap.kvs {
            dcs.put(&kv.key, kv.value, None).await.unwrap();
        }
        f.dcs = dcs;
        f
    };
    let o = f
        .run(&["switchover", "--candidate", "node2", "--force"], "")
        .await;
    o.ok();
    let reqs = f.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].member, "node1");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/switchover")
    );
    assert_eq!(
        reqs[0].body,
        json!({"leader": "node1", "candidate": "node2"})
    );
    assert_eq!(reqs[0].auth.as_deref(), Some(basic_admin().as_str()));
    assert!(
        o.out.contains("Successfully switched over to \"node2\""),
        "{}",
        o.out
    );
    assert!(o.out.contains("leader: node2"), "{}", o.out);
    let last_table = o.out.rsplit("+ Cluster:").next().unwrap();
    assert!(
        last_table.contains("| node2  | 127.0.0.1:5433 | Leader "),
        "{}",
        o.out
    );
    assert_eq!(f.get("leader").await.unwrap().0, "node2");

    // Interactive: leader default, candidate, time and confirmation from stdin.
    let o = f.run(&["switchover"], "\nnode3\nnow\ny\n").await;
    o.ok();
    assert!(o.out.contains("Primary [node2]: "), "{}", o.out);
    assert!(
        o.out.contains("Candidate ['node1', 'node3'] []: "),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("Are you sure you want to switchover cluster demo, demoting current leader node2? [y/N]: "),
        "{}",
        o.out
    );
    assert_eq!(f.get("leader").await.unwrap().0, "node3");
    let o = f
        .run(&["switchover", "--candidate", "node1"], "\nnow\nn\n")
        .await;
    assert!(o.error().contains("aborting switchover"), "{}", o.error());
    assert_eq!(f.get("leader").await.unwrap().0, "node3");
}

#[tokio::test]
async fn switchover_refusals_name_the_problem() {
    let f = Fixture::new(always(200, "ok"), &[]).await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["switchover", "--candidate", "node1", "--force"],
            "already the leader",
        ),
        (
            &["switchover", "--candidate", "nodeX", "--force"],
            "candidates: node2, node3",
        ),
        (
            &["switchover", "--leader", "node2", "--force"],
            "node2 is not the leader",
        ),
        (&["failover", "--force"], "specific candidate"),
        (
            &["switchover", "--scheduled", "soon", "--force"],
            "unable to parse scheduled",
        ),
    ];
    for (args, needle) in cases {
        let o = f.run(args, "").await;
        assert!(o.error().contains(needle), "{args:?}: {}", o.error());
    }
    assert!(f.requests().is_empty(), "{:?}", f.requests());
    // An API refusal is shown with its status and text, and exits non-zero.
    let f = Fixture::new(always(412, "candidate does not exists"), &[]).await;
    let o = f
        .run(&["switchover", "--candidate", "node2", "--force"], "")
        .await;
    let e = o.error();
    assert!(
        e.contains("412") && e.contains("candidate does not exists"),
        "{e}"
    );
    // A scheduled switchover is accepted (202) and not followed.
    let f = Fixture::new(always(202, "Switchover scheduled"), &[]).await;
    let o = f
        .run(
            &[
                "switchover",
                "--candidate",
                "node2",
                "--scheduled",
                "2030-01-01T10:00:00+00:00",
                "--force",
            ],
            "",
        )
        .await;
    o.ok();
    assert_eq!(
        f.requests()[0].body,
        json!({"leader":"node1","candidate":"node2","scheduled_at":"2030-01-01T10:00:00+00:00"})
    );
    assert!(o.out.contains("Switchover scheduled"), "{}", o.out);
    // The unauthorised answer says what to check.
    let f = Fixture::new(always(401, "no auth header received"), &[]).await;
    let o = f
        .run(&["switchover", "--candidate", "node2", "--force"], "")
        .await;
    assert!(o.error().contains("authentication failed"), "{}", o.error());
}

#[tokio::test]
async fn failover_falls_back_to_the_failover_key() {
    let f = Fixture::new(always(500, "unused"), &["node1"]).await;
    // Stands in for the agents: whoever sees the failover key promotes its member.
    let dcs = f.dcs.clone();
    let agent = tokio::spawn(async move {
        loop {
            let snap = dcs.get_prefix(&format!("{P}failover")).await.unwrap();
            if let Some(kv) = snap.kvs.first() {
                let v: Value = serde_json::from_slice(&kv.value).unwrap();
                if let Some(to) = v["member"].as_str() {
                    promote(&dcs, to).await;
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let o = f
        .run(&["failover", "--candidate", "node3", "--force"], "")
        .await;
    o.ok();
    assert!(o.out.contains("falling back to DCS"), "{}", o.out);
    assert_eq!(agent.await.unwrap(), json!({"member": "node3"}));
    assert_eq!(f.get("leader").await.unwrap().0, "node3");

    // Nobody acts on it: the wait is bounded and says so.
    let f = Fixture::new(always(500, "unused"), &["node1"]).await;
    let o = f
        .run(&["failover", "--candidate", "node2", "--force"], "")
        .await;
    assert!(
        o.error().contains("did not take over within 1 s"),
        "{}",
        o.error()
    );
    assert_eq!(f.get("failover").await.unwrap().0, r#"{"member":"node2"}"#);
}

#[tokio::test]
async fn failover_to_an_asynchronous_node_asks_first() {
    let f = Fixture::new(always(200, "ok"), &[]).await;
    put(
        &f.dcs,
        "config",
        r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"synchronous_mode":true}"#,
    )
    .await;
    put(
        &f.dcs,
        "sync",
        r#"{"leader":"node1","sync_standby":"node2"}"#,
    )
    .await;
    let question = "Are you sure you want to failover to the asynchronous node node3?";
    let o = f.run(&["failover", "--candidate", "node3"], "n\nn\n").await;
    assert!(o.out.contains(question), "{}", o.out);
    assert!(o.error().contains("aborting failover"), "{}", o.error());
    assert!(f.requests().is_empty(), "{:?}", f.requests());
    // The synchronous standby: no such question (only the usual confirmation).
    let o = f.run(&["failover", "--candidate", "node2"], "n\n").await;
    assert!(!o.out.contains("asynchronous node"), "{}", o.out);
    // The last leader in /sync counts as synchronous, as in patronictl.
    put(
        &f.dcs,
        "sync",
        r#"{"leader":"node3","sync_standby":"node2"}"#,
    )
    .await;
    let o = f.run(&["failover", "--candidate", "node3"], "n\n").await;
    assert!(!o.out.contains("asynchronous node"), "{}", o.out);
}

#[tokio::test]
async fn flush_switchover_clears_the_key_when_no_api_answers() {
    let f = Fixture::new(always(500, ""), &["node1", "node2", "node3"]).await;
    put(
        &f.dcs,
        "failover",
        r#"{"leader":"node1","member":"node2","scheduled_at":"2030-01-01T10:00:00+00:00"}"#,
    )
    .await;
    let o = f.run(&["list"], "").await;
    assert!(
        o.out
            .contains(" Switchover scheduled at: 2030-01-01T10:00:00+00:00"),
        "{}",
        o.out
    );
    let o = f.run(&["flush", "demo", "switchover"], "").await;
    o.ok();
    assert!(
        o.out.contains("Could not find any accessible member"),
        "{}",
        o.out
    );
    assert_eq!(f.get("failover").await.unwrap().0, "{}");
    // With an API that answers, the API does it.
    let f = Fixture::new(always(200, "scheduled switchover deleted"), &[]).await;
    put(
        &f.dcs,
        "failover",
        r#"{"scheduled_at":"2030-01-01T10:00:00+00:00"}"#,
    )
    .await;
    let o = f.run(&["flush", "demo", "switchover"], "").await;
    o.ok();
    assert_eq!(o.out.trim(), "Success: scheduled switchover deleted");
    let r = &f.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.member.as_str()),
        ("DELETE", "/switchover", "node1")
    );
}
