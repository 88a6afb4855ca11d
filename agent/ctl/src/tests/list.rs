//! Commands that only read: `list`, `history`, `show-config`, `version`, and the
//! patronictl commands wardenctl refuses.

use super::fixtures::*;
use serde_json::Value;
use std::sync::Arc;
use warden_consensus::Keys;

#[tokio::test]
async fn list_reads_the_dcs_and_prints_json_rows() {
    let f = Fixture::new(always(200, "{}"), &[]).await;
    let o = f.run(&["list", "-f", "json"], "").await;
    o.ok();
    let rows: Vec<Value> = serde_json::from_str(o.out.trim()).unwrap();
    let roles: Vec<&str> = rows.iter().map(|r| r["Role"].as_str().unwrap()).collect();
    assert_eq!(roles, vec!["Leader", "Replica", "Replica"]);
    assert!(rows[1..].iter().all(|r| r["State"] == "streaming"));
    assert!(f.requests().is_empty(), "list must not call the REST API");
    let o = f.run(&["history", "-f", "json"], "").await;
    o.ok();
    assert_eq!(o.out.trim(), "[]");
    let o = f.run(&["list", "nosuch"], "").await;
    o.ok();
    assert!(
        o.err.contains("no keys under /service/nosuch/"),
        "{}",
        o.err
    );
    let o = f.run(&["show-config", "nosuch"], "").await;
    assert!(
        o.error().contains("cluster \"nosuch\" not found"),
        "{}",
        o.error()
    );
}

#[tokio::test]
async fn version_asks_each_member() {
    let handler: Handler = Arc::new(|req: Req| {
        if req.member == "node3" {
            reply(503, "busy")
        } else {
            reply(
                200,
                r#"{"server_version":150010,"patroni":{"version":"4.0.4","warden_version":"0.1.0"}}"#,
            )
        }
    });
    let f = Fixture::new(handler, &[]).await;
    let o = f.run(&["version"], "").await;
    o.ok();
    assert!(o.out.starts_with("wardenctl version "), "{}", o.out);
    assert!(f.requests().is_empty());
    let o = f.run(&["version", "demo", "node1"], "").await;
    o.ok();
    assert!(
        o.out
            .contains("node1: Patroni 4.0.4 PostgreSQL 15.10 (Warden 0.1.0)"),
        "{}",
        o.out
    );
    let o = f.run(&["version", "demo"], "").await;
    assert!(o.error().contains("node3"), "{}", o.error());
    assert!(
        o.out
            .contains("node3: failed to get version: status code=503"),
        "{}",
        o.out
    );
}

#[tokio::test]
async fn unsupported_commands_and_missing_scope() {
    let f = Fixture::new(always(200, ""), &[]).await;
    let o = f.run(&["query", "-c", "select 1"], "").await;
    assert!(
        o.error().contains("not supported by wardenctl"),
        "{}",
        o.error()
    );
    let keys = Keys::new("/service/", "demo");
    assert_eq!(keys.prefix(), P);
}
