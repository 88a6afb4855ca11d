//! The policy on `INFO` answers captured from Redis 7.0.15 (`fixtures/`): a primary with
//! a streaming replica; that replica promoted with `REPLICAOF NO ONE` (its old id kept
//! as `replid2`); the old primary re-pointed at it (a partial resync: it took both ids);
//! and that replica after its primary went away.

use super::*;
use warden_consensus::types::Member;
use warden_consensus::{LeaderKey, Versioned};

const PRIMARY: &str = include_str!("fixtures/primary_with_replica.info");
const REPLICA: &str = include_str!("fixtures/replica_streaming.info");
const PROMOTED: &str = include_str!("fixtures/promoted.info");
const FOLLOWING: &str = include_str!("fixtures/former_primary_following.info");
const LINK_DOWN: &str = include_str!("fixtures/replica_link_down.info");

const OLD_ID: &str = "39d29b9e17074f8c17b69651954ee89822f6b180";
const NEW_ID: &str = "7ad191883fb56422512a87579253984947e69a97";

fn local(info: &str) -> RedisLocal {
    RedisLocal {
        replication: Some(parse_info(info).unwrap()),
        ..RedisLocal::default()
    }
}

fn member(fields: serde_json::Map<String, serde_json::Value>) -> Versioned<Member> {
    let mut m = serde_json::json!({
        "conn_url": "redis://127.0.0.1:6379", "api_url": "http://127.0.0.1:8008/patroni",
        "state": "running", "role": "replica", "version": "4.0.0",
    });
    for (k, v) in fields {
        m[k] = v;
    }
    Versioned {
        value: serde_json::from_value(m).unwrap(),
        mod_revision: 1,
    }
}

/// A cluster whose members published what `locals` say.
fn cluster(leader: Option<&str>, locals: &[(&str, &RedisLocal)]) -> Cluster {
    let mut c = Cluster {
        initialize: Some("cluster-1".into()),
        ..Cluster::default()
    };
    c.leader = leader.map(|l| LeaderKey {
        name: l.into(),
        create_revision: 7,
        mod_revision: 7,
        lease: 1,
    });
    for (name, l) in locals {
        c.members.insert((*name).into(), member(l.member_fields()));
    }
    c
}

#[test]
fn a_primary_with_a_replica_is_read_from_info() {
    let r = parse_info(PRIMARY).unwrap();
    assert_eq!(r.role, ServerRole::Master);
    assert_eq!(r.replid, OLD_ID);
    assert_eq!(r.replid2, None, "the all-zero id is none");
    assert_eq!(r.second_repl_offset, None, "-1 is none");
    assert_eq!(r.master_repl_offset, 116);
    assert_eq!(r.run_id.as_deref().map(str::len), Some(40));
    assert_eq!(
        r.replicas,
        vec![ConnectedReplica {
            ip: "127.0.0.1".into(),
            port: 27102,
            state: "online".into(),
            offset: 116,
            lag: Some(0),
        }]
    );
    assert_eq!(
        local(PRIMARY).db(),
        Some(Db {
            writable: true,
            position: Some(116),
            streaming: false
        })
    );
}

#[test]
fn a_streaming_replica_reports_its_offset_and_link() {
    let r = parse_info(REPLICA).unwrap();
    assert_eq!(r.role, ServerRole::Replica);
    assert_eq!(r.replid, OLD_ID, "a replica takes its primary's id");
    assert_eq!(r.master, Some(("127.0.0.1".into(), 27101)));
    assert!(r.replicas.is_empty());
    assert_eq!(
        local(REPLICA).db(),
        Some(Db {
            writable: false,
            position: Some(116),
            streaming: true
        })
    );
    let down = local(LINK_DOWN);
    assert!(!down.db().unwrap().streaming);
    assert_eq!(
        down.member_fields()["replication_state"],
        serde_json::json!("disconnected")
    );
}

#[test]
fn a_promoted_replica_keeps_the_old_id_as_replid2() {
    let r = parse_info(PROMOTED).unwrap();
    assert_eq!(r.role, ServerRole::Master);
    assert_eq!(r.replid, NEW_ID);
    assert_eq!(r.replid2.as_deref(), Some(OLD_ID));
    assert_eq!(
        r.second_repl_offset,
        Some(117),
        "the old id holds up to 116"
    );
    let f = local(PROMOTED).member_fields();
    assert_eq!(f["replid"], serde_json::json!(NEW_ID));
    assert_eq!(f["replid2"], serde_json::json!(OLD_ID));
    assert_eq!(f["second_offset"], serde_json::json!(117));
    assert_eq!(f["offset"], serde_json::json!(168));
    assert_eq!(f["xlog_location"], serde_json::json!(168));
    assert!(!f.contains_key("replication_state"), "not a replica");
    // A partial resync from the promoted node carries both ids over.
    let following = parse_info(FOLLOWING).unwrap();
    assert_eq!(following.replid, NEW_ID);
    assert_eq!(following.replid2.as_deref(), Some(OLD_ID));
}

#[test]
fn paused_writes_make_a_primary_not_writable() {
    let mut l = local(PRIMARY);
    l.writes_paused = true;
    assert!(!l.db().unwrap().writable);
}

#[test]
fn a_node_on_a_history_another_member_continued_is_not_promoted() {
    // `b` was promoted off `a`'s history; `a` (still a primary on the old id, say cut
    // off) and `c` (a replica of `a` that has not followed `b`) must not be promoted
    // nor take the key back.
    let a = local(PRIMARY);
    let c_replica = local(REPLICA);
    let b = local(PROMOTED);
    let cl = cluster(None, &[("a", &a), ("b", &b), ("c", &c_replica)]);
    let why = c_replica.promotion_refusal(&cl, "c").unwrap();
    assert!(why.contains(OLD_ID) && why.contains(NEW_ID), "{why}");
    assert!(why.contains("member b"), "{why}");
    assert!(a.primary_refusal(&cl).is_some());
    // The promoted node and those that followed it are fine.
    assert_eq!(b.promotion_refusal(&cl, "b"), None);
    assert_eq!(b.primary_refusal(&cl), None);
    let follower = local(FOLLOWING);
    assert_eq!(follower.promotion_refusal(&cl, "a"), None);
}

#[test]
fn the_evidence_survives_the_promoted_node_in_its_followers_keys() {
    // `b` is gone (its key expired); `a` followed it by a partial resync and publishes
    // both ids; `c` is still on the old id.
    let follower = local(FOLLOWING);
    let c_replica = local(REPLICA);
    let cl = cluster(None, &[("a", &follower), ("c", &c_replica)]);
    assert!(c_replica.promotion_refusal(&cl, "c").is_some());
    assert_eq!(follower.promotion_refusal(&cl, "a"), None);
}

#[test]
fn replicas_of_the_same_primary_may_be_promoted() {
    let a = local(PRIMARY);
    let c = local(REPLICA);
    let cl = cluster(Some("a"), &[("a", &a), ("c", &c)]);
    assert_eq!(c.promotion_refusal(&cl, "c"), None);
    assert_eq!(a.primary_refusal(&cl), None);
    // Our own stale key never counts against us.
    let b = local(PROMOTED);
    let cl = cluster(None, &[("c", &b)]);
    assert_eq!(c.promotion_refusal(&cl, "c"), None);
}

#[test]
fn a_silent_server_is_not_refused_and_publishes_its_last_lineage() {
    let stopped = RedisLocal {
        last_known: Some(local(PROMOTED).lineage().unwrap()),
        ..RedisLocal::default()
    };
    assert_eq!(stopped.db(), None);
    let f = stopped.member_fields();
    assert_eq!(f["replid"], serde_json::json!(NEW_ID));
    assert_eq!(f["replid2"], serde_json::json!(OLD_ID));
    assert_eq!(f["offset"], serde_json::json!(168));
    // A stopped promoted node still tells the others the old history moved on.
    let c = local(REPLICA);
    let cl = cluster(None, &[("b", &stopped), ("c", &c)]);
    assert!(c.promotion_refusal(&cl, "c").is_some());
    assert_eq!(stopped.promotion_refusal(&cl, "b"), None);
    assert!(RedisLocal::default().member_fields().is_empty());
}

#[test]
fn redis_resyncs_by_itself_and_keeps_no_numbered_history() {
    let a = local(PRIMARY);
    let cl = cluster(Some("b"), &[("a", &a)]);
    assert_eq!(a.repair_before_following(true, &cl, "b"), None);
    assert_eq!(a.repair_stuck_replica(&cl, "b", true), None);
    assert_eq!(a.recopy_before_following(true, &cl, "a", "b"), None);
    assert_eq!(a.fork_point(), None);
}

#[test]
fn unreadable_info_is_an_error_naming_the_field() {
    assert_eq!(
        parse_info("# Server\r\nrun_id:x\r\n"),
        Err(InfoError::Missing("role"))
    );
    let bad = PRIMARY.replace("master_repl_offset:116", "master_repl_offset:lots");
    assert!(matches!(
        parse_info(&bad),
        Err(InfoError::Bad {
            field: "master_repl_offset",
            ..
        })
    ));
    assert!(matches!(
        parse_info("role:sentinel\r\n"),
        Err(InfoError::Bad { field: "role", .. })
    ));
}
