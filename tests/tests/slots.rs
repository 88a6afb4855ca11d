//! Replication slots as Patroni manages them, on one real two-node cluster:
//!
//! - a permanent physical slot (`slots` in the dynamic config) exists on every member;
//! - a slot nobody asked for is dropped, one that `ignore_slots` names is left alone;
//! - `/status` carries `slots` (with the leader's own slot name) and `retain_slots`;
//! - a permanent logical slot is created on the leader and copied to the replica,
//!   which moves it along; a `pg_recvlogical` consumer then survives a switchover:
//!   started again against the new primary it continues from its slot, and every
//!   insert reaches it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use warden_tests::config::{pg_bin_dir, SUPERUSER, SUPERUSER_PASSWORD};
use warden_tests::{http, sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);

fn slots_on(port: u16) -> Vec<(String, String, Option<String>)> {
    let Ok(mut c) = sql::connect(port) else {
        return Vec::new();
    };
    c.query(
        "SELECT slot_name::text, slot_type, confirmed_flush_lsn::text FROM pg_replication_slots ORDER BY 1",
        &[],
    )
    .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    .unwrap_or_default()
}

fn has_slot(port: u16, name: &str, kind: &str) -> bool {
    slots_on(port)
        .iter()
        .any(|(n, k, _)| n == name && k == kind)
}

/// `pg_recvlogical` on slot `cdc`, appending decoded changes to `out`.
fn consumer(port: u16, out: &Path) -> Child {
    Command::new(pg_bin_dir().join("pg_recvlogical"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", SUPERUSER])
        .args(["-d", "postgres", "-S", "cdc", "--start", "--no-loop"])
        .args(["-F", "1", "-s", "1", "-f"])
        .arg(out)
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pg_recvlogical")
}

/// The ids of `INSERT`s into `cdc_rows` the consumer has written so far.
fn consumed(out: &Path) -> BTreeSet<i64> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("table public.cdc_rows: INSERT:"))
        .filter_map(|l| {
            l.split("id[integer]:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn insert(port: u16, ids: std::ops::RangeInclusive<i64>) {
    sql::execute(
        port,
        &format!(
            "INSERT INTO cdc_rows SELECT g FROM generate_series({}, {}) g",
            ids.start(),
            ids.end()
        ),
    )
    .expect("insert");
}

#[test]
fn permanent_ignored_and_logical_slots_survive_a_switchover() {
    let cluster = Cluster::start(ClusterSpec::new(2).without_haproxy().customize(|_, c| {
        c.set("bootstrap.dcs.postgresql.parameters.wal_level", "logical")
            .set_yaml(
                "bootstrap.dcs.slots",
                "{perm_phys: {type: physical}, cdc: {type: logical, database: postgres, plugin: test_decoding}}",
            )
            .expect("slots")
            .set_yaml("bootstrap.dcs.ignore_slots", "[{name: ops_keep}]")
            .expect("ignore_slots")
    }))
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let (leader, _) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).unwrap();
    let ri = 1 - li;
    let (lport, rport) = (cluster.node(li).pg_port(), cluster.node(ri).pg_port());
    let replica = cluster.node(ri).name().to_string();

    // Permanent physical slot everywhere; each member keeps a slot for the other.
    wait_until(T, "perm_phys and the member slots on both members", || {
        (has_slot(lport, "perm_phys", "physical")
            && has_slot(rport, "perm_phys", "physical")
            && has_slot(lport, &replica, "physical")
            && has_slot(rport, &leader, "physical"))
        .then_some(())
    });

    // Unwanted slots go, ignored ones stay.
    sql::execute(
        lport,
        "SELECT pg_create_physical_replication_slot('ops_keep')",
    )
    .unwrap();
    sql::execute(lport, "SELECT pg_create_physical_replication_slot('junk')").unwrap();
    wait_until(T, "the unmanaged slot is dropped", || {
        (!has_slot(lport, "junk", "physical")).then_some(())
    });
    assert!(
        has_slot(lport, "ops_keep", "physical"),
        "{:?}",
        slots_on(lport)
    );

    // /status: Patroni's slots and retain_slots.
    let status: Value = wait_until(T, "/status lists the slots", || {
        let kv = cluster
            .etcd()
            .get(&format!("{}status", cluster.key_prefix()))
            .ok()??;
        let v: Value = serde_json::from_str(&kv.value).ok()?;
        (v["slots"].get("cdc").is_some() && v["slots"].get(&leader).is_some()).then_some(v)
    });
    assert!(status["slots"].get("perm_phys").is_some(), "{status}");
    let retain = status["retain_slots"].as_array().expect("retain_slots");
    assert!(retain.contains(&json!(replica)), "{status}");

    logical_slot_survives_a_switchover(&cluster, li, ri);
}

fn logical_slot_survives_a_switchover(cluster: &Cluster, li: usize, ri: usize) {
    let (lport, rport) = (cluster.node(li).pg_port(), cluster.node(ri).pg_port());
    let leader = cluster.node(li).name().to_string();
    let replica = cluster.node(ri).name().to_string();
    sql::execute(lport, "CREATE TABLE cdc_rows (id integer PRIMARY KEY)").unwrap();
    wait_until(T, "the logical slot on the leader", || {
        has_slot(lport, "cdc", "logical").then_some(())
    });
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("changes.txt");
    let mut first = consumer(lport, &out);
    insert(lport, 1..=100);
    wait_until(T, "the consumer saw the first hundred", || {
        (consumed(&out).len() == 100).then_some(())
    });
    // The replica holds a copy of the slot, moved past the first inserts.
    let confirmed = sql::query_text(
        lport,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdc'",
    )
    .unwrap()
    .unwrap();
    wait_until(T, "the replica's copy caught up with the consumer", || {
        sql::query_text(
            rport,
            &format!(
                "SELECT (confirmed_flush_lsn >= '{confirmed}')::text FROM pg_replication_slots \
                 WHERE slot_name = 'cdc' AND slot_type = 'logical'"
            ),
        )
        .ok()
        .flatten()
        .filter(|v| v == "true")
    });
    insert(lport, 101..=150);
    wait_until(T, "the consumer saw 150", || {
        (consumed(&out).len() == 150).then_some(())
    });
    let _ = first.kill();
    let _ = first.wait();

    let r = http::send(
        "POST",
        &format!("{}/switchover", cluster.node(li).api_url()),
        Some(
            json!({"leader": leader, "candidate": replica})
                .to_string()
                .as_bytes(),
        ),
        None,
        Duration::from_secs(90),
    )
    .expect("POST /switchover");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until(T, "the new primary", || {
        cluster.node(ri).is_primary().then_some(())
    });
    let mut second = consumer(rport, &out);
    insert(rport, 151..=200);
    let got = wait_until(
        T,
        "the consumer on the new primary saw every insert",
        || {
            let got = consumed(&out);
            (got.len() == 200).then_some(got)
        },
    );
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(got, (1..=200).collect::<BTreeSet<i64>>());
    println!(
        "a pg_recvlogical consumer kept its position across a switchover (200 of 200 inserts)"
    );
    cluster.assert_converged(T);
}
