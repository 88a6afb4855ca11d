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
async fn demote_cluster_needs_a_remote_and_missing_scope() {
    let f = Fixture::new(always(200, ""), &[]).await;
    // patronictl's rule: a remote address or a restore command is required.
    let o = f.run(&["demote-cluster", "demo"], "").await;
    assert!(
        o.error()
            .contains("At least --host, --port or --restore-command"),
        "{}",
        o.error()
    );
    let keys = Keys::new("/service/", "demo");
    assert_eq!(keys.prefix(), P);
}

#[tokio::test]
async fn dsn_prints_the_chosen_members_address() {
    let f = Fixture::new(always(200, "{}"), &[]).await;
    for (args, want) in [
        (&["dsn"][..], "host=127.0.0.1 port=5432"),
        (&["dsn", "demo", "-r", "leader"], "host=127.0.0.1 port=5432"),
        (&["dsn", "-r", "primary"], "host=127.0.0.1 port=5432"),
        (&["dsn", "-r", "any"], "host=127.0.0.1 port=5432"),
        // The first member by name that is not the leader.
        (&["dsn", "-r", "replica"], "host=127.0.0.1 port=5433"),
        (&["dsn", "-r", "standby"], "host=127.0.0.1 port=5433"),
        (&["dsn", "-m", "node3"], "host=127.0.0.1 port=5434"),
    ] {
        let o = f.run(args, "").await;
        o.ok();
        assert_eq!(o.out, format!("{want}\n"), "{args:?}");
    }
    for (args, want) in [
        // The leader publishes `primary`, so it is no standby leader.
        (
            &["dsn", "-r", "standby-leader"][..],
            "Can not find a suitable member",
        ),
        (&["dsn", "-m", "nosuch"], "Can not find a suitable member"),
        (&["dsn", "nosuch"], "Can not find a suitable member"),
        (
            &["dsn", "-r", "replica", "-m", "node2"],
            "--role and --member are mutually exclusive options",
        ),
    ] {
        let o = f.run(args, "").await;
        assert_eq!(o.error(), want, "{args:?}");
        assert!(o.out.is_empty(), "{args:?}: {}", o.out);
    }
    assert!(f.requests().is_empty(), "dsn must not call the REST API");
}

#[tokio::test]
async fn query_refusals_and_members_without_a_connection() {
    let f = Fixture::new(always(200, "{}"), &[]).await;
    for (args, want) in [
        (
            &["query"][..],
            "You need to specify either --command or --file",
        ),
        (
            &["query", "-c", "select 1", "-f", "/nonexistent.sql"],
            "--file and --command are mutually exclusive options",
        ),
        (
            &["query", "-c", "select 1", "-r", "replica", "-m", "node2"],
            "--role and --member are mutually exclusive options",
        ),
    ] {
        let o = f.run(args, "").await;
        assert_eq!(o.error(), want, "{args:?}");
    }
    // No member to connect to: one row of a timestamp and patronictl's message, exit 0.
    for (args, want) in [
        (
            &["query", "-m", "nosuch", "-c", "select 1"][..],
            "No connection to member nosuch is available",
        ),
        (
            &["query", "-r", "standby-leader", "-c", "select 1"],
            "No connection to role 'standby-leader' is available",
        ),
        (
            &["query", "nosuch", "-c", "select 1"],
            "No connection is available",
        ),
    ] {
        let o = f.run(args, "").await;
        o.ok();
        let line = o.out.strip_suffix('\n').unwrap_or(&o.out);
        let (ts, msg) = line.split_once('\t').unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(msg, want, "{args:?}");
        assert!(
            chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{ts:?}"
        );
        let o = f.run(&[args, &["--format", "json"]].concat(), "").await;
        assert_eq!(o.out, "[{}]\n", "{args:?}");
    }
}

#[tokio::test]
async fn query_reports_a_failed_connection_as_an_error_row() {
    let f = Fixture::new(always(200, "{}"), &[]).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let m = format!(
        r#"{{"conn_url":"postgres://127.0.0.1:{dead}/postgres","api_url":"http://127.0.0.1:1/patroni","state":"running","role":"replica","version":"4.0.4"}}"#
    );
    put(&f.dcs, "members/node9", &m).await;
    // The password is asked for first; it is never printed.
    let o = f
        .run(
            &[
                "query",
                "-m",
                "node9",
                "-U",
                "u",
                "--password",
                "--delimiter",
                "|",
                "-c",
                "select 1",
            ],
            "s3cret-pw\n",
        )
        .await;
    o.ok();
    assert_eq!(o.err, "Password: \n");
    let (_, msg) = o.out.trim_end().split_once('|').unwrap();
    assert_eq!(
        msg,
        format!(
            "ERROR, SQLSTATE: connection to server at \"127.0.0.1\", port {dead} failed: \
             Connection refused"
        )
    );
    assert!(!o.out.contains("s3cret") && !o.err.contains("s3cret"));
    // No password on standard input: an error, nothing run.
    let o = f
        .run(
            &["query", "-m", "node9", "--password", "-c", "select 1"],
            "",
        )
        .await;
    assert!(
        o.error().contains("standard input is closed"),
        "{}",
        o.error()
    );
    assert!(o.out.is_empty());
}
