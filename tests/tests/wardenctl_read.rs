//! `wardenctl` against a real 3-node cluster: it reads the DCS as patronictl does
//! (`list` with patronictl 4.1's receive/replay columns, `list -e`, `show-config`,
//! `history`, `dsn`), runs SQL on the member a role or a name picks (`query`, with
//! `--password` read from standard input), edits the config by compare-and-swap
//! (`edit-config`), refuses bad values, asks before `remove`, and reaches each
//! member's REST API (`version`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_tests::config::{SUPERUSER, SUPERUSER_PASSWORD};
use warden_tests::process::{run_bounded_input, RunOutput};
use warden_tests::wait::poll_until;
use warden_tests::{bins, Cluster, ClusterSpec, Node};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(30);

/// `wardenctl ARGS` with nothing from the caller's environment choosing a config or
/// (for `query`) a database user, password or database.
fn wardenctl(args: &[&str], input: Option<&str>) -> RunOutput {
    let mut cmd = bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}"));
    for var in [
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGDATABASE",
        "PGAPPNAME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", "/nonexistent");
    cmd.args(args);
    run_bounded_input(&mut cmd, input, RUN).expect("run wardenctl")
}

fn rows_of(out: &RunOutput) -> Option<Vec<Value>> {
    serde_json::from_str(out.stdout.trim()).ok()
}

/// An LSN as PostgreSQL writes it: `0/4000060`.
fn is_lsn(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.split_once('/'))
        .is_some_and(|(hi, lo)| {
            [hi, lo]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_hexdigit()))
        })
}

/// One Leader and two streaming Replicas with receive and replay positions, all on
/// one timeline; the leader's row has no positions.
fn healthy(rows: &[Value]) -> bool {
    let role = |r: &str| rows.iter().filter(|m| m["Role"] == r).count();
    let positions = ["Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag"];
    rows.len() == 3
        && role("Leader") == 1
        && role("Replica") == 2
        && rows.iter().filter(|m| m["Role"] == "Replica").all(|m| {
            m["State"] == "streaming"
                && is_lsn(&m["Receive LSN"])
                && is_lsn(&m["Replay LSN"])
                && m["Receive Lag"].is_u64()
                && m["Replay Lag"].is_u64()
        })
        && rows
            .iter()
            .filter(|m| m["Role"] == "Leader")
            .all(|m| positions.iter().all(|k| m.get(k).is_none()))
        && rows
            .iter()
            .all(|m| m["TL"].is_u64() && m["TL"] == rows[0]["TL"])
}

fn config_key(cluster: &Cluster) -> (Value, i64) {
    let kv = cluster
        .etcd()
        .get(&format!("{}config", cluster.key_prefix()))
        .expect("read config key")
        .expect("config key exists");
    (
        serde_json::from_str(&kv.value).expect("config key is JSON"),
        kv.mod_revision,
    )
}

fn config_path(cluster: &Cluster) -> String {
    let p: &Path = &cluster.node(0).config_path();
    p.display().to_string()
}

#[test]
fn wardenctl_reads_and_edits_a_real_cluster() {
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let scope = cluster.scope().to_string();
    let cfg = config_path(&cluster);
    let dcs = format!("etcd3://{}", cluster.etcd().member(0).endpoint());

    // list from the agent's own (full) config file.
    let mut last = String::new();
    let rows = poll_until(T, || {
        let out = wardenctl(&["-c", &cfg, "list", "-f", "json"], None);
        last = out.describe();
        rows_of(&out).filter(|r| healthy(r))
    })
    .unwrap_or_else(|| {
        panic!(
            "wardenctl list never showed a leader and two streaming replicas\nlast: {last}\n{}",
            cluster.dump_logs()
        )
    });
    let primary = cluster.primary().expect("primary");
    let leader = rows.iter().find(|m| m["Role"] == "Leader").unwrap();
    assert_eq!(leader["Member"], primary.name(), "{last}");
    assert_eq!(
        leader["Host"],
        format!("127.0.0.1:{}", primary.pg_port()),
        "{last}"
    );
    assert!(
        rows.iter().all(|m| m["Cluster"] == scope.as_str()),
        "{last}"
    );

    // -d etcd3://... with CLUSTER_NAME, no config file; the table as a user sees it.
    let out = wardenctl(&["-d", &dcs, "list", &scope], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout.starts_with(&format!("+ Cluster: {scope} (")),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("| Leader ").count(), 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("| TL | Receive LSN | Lag | Replay LSN | Lag |\n"),
        "{}",
        out.stdout
    );
    let out = wardenctl(&["-d", &dcs, "topology", &scope], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout.matches("| + node").count(), 2, "{}", out.stdout);
    list_extended_shows_every_column(&dcs, &scope);

    // show-config: the dynamic config as YAML.
    let out = wardenctl(&["-c", &cfg, "show-config"], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.lines().any(|l| l == "ttl: 10"), "{}", out.stdout);

    dsn_names_the_chosen_member(&cluster, &cfg);
    query_runs_sql_on_the_chosen_member(&cluster, &cfg);

    edit_config_writes_by_compare_and_swap(&cluster, &cfg);

    // Bad usage is exit code 2.
    let out = wardenctl(&["-c", &cfg, "list", "--format", "xml"], None);
    assert_eq!(out.code(), Some(2), "{}", out.describe());

    // history: a freshly bootstrapped cluster has no promotions yet; the table and
    // the JSON list still come out.
    let out = wardenctl(&["-c", &cfg, "history"], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout
            .contains("| TL | LSN | Reason | Timestamp | New Leader |"),
        "{}",
        out.stdout
    );
    let out = wardenctl(&["-c", &cfg, "history", "-f", "json"], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(rows_of(&out).is_some(), "{}", out.describe());

    // version reaches every member's REST API.
    let out = wardenctl(&["-c", &cfg, "version", &scope], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    for n in cluster.nodes() {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{}: Patroni ", n.name()))
                    && l.contains("PostgreSQL 15.")),
            "{}",
            out.stdout
        );
    }

    remove_asks_and_deletes_only_its_cluster(&cluster, &cfg, &dcs, &scope);

    // An unreachable etcd is named, and the wait for it is bounded.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let out = wardenctl(
        &["-d", &format!("etcd3://127.0.0.1:{dead}"), "list", &scope],
        None,
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{dead}")) && out.stderr.contains("unreachable"),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// `list -e`: the pending/scheduled restart and tags columns even when empty; in JSON
/// empty values are left out, so the rows are the same as without `-e`.
fn list_extended_shows_every_column(dcs: &str, scope: &str) {
    let out = wardenctl(&["-d", dcs, "list", scope, "-e", "-f", "tsv"], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(
        out.stdout.lines().next(),
        Some(
            "Cluster\tMember\tHost\tRole\tState\tTL\tReceive LSN\tReceive Lag\tReplay LSN\t\
             Replay Lag\tPending restart\tPending restart reason\tScheduled restart\tTags"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .skip(1)
            .all(|l| l.split('\t').count() == 14),
        "{}",
        out.stdout
    );
    let out = wardenctl(&["-d", dcs, "list", scope, "--extended"], None);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains(
            "| Lag | Pending restart | Pending restart reason | Scheduled restart | Tags |\n"
        ),
        "{}",
        out.stdout
    );
    let out = wardenctl(&["-d", dcs, "list", scope, "-e", "-f", "json"], None);
    let rows = rows_of(&out).unwrap_or_else(|| panic!("{}", out.describe()));
    assert!(healthy(&rows), "{}", out.stdout);
    for r in &rows {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|k| ![
                "Pending restart",
                "Pending restart reason",
                "Scheduled restart",
                "Tags"
            ]
            .contains(&k.as_str())),
            "{}",
            out.stdout
        );
    }
}

/// The primary, and the replicas sorted by name.
fn roles(cluster: &Cluster) -> (&Node, Vec<&Node>) {
    let primary = cluster.primary().expect("primary");
    let mut replicas = cluster.replicas();
    replicas.sort_by(|a, b| a.name().cmp(b.name()));
    (primary, replicas)
}

/// dsn: the leader by default, the first replica by name for `-r replica`, the named
/// member for `-m`; patronictl's errors otherwise.
fn dsn_names_the_chosen_member(cluster: &Cluster, cfg: &str) {
    let (primary, replicas) = roles(cluster);
    let dsn = |port: u16| format!("host=127.0.0.1 port={port}\n");
    for (args, want) in [
        (vec!["dsn"], dsn(primary.pg_port())),
        (vec!["dsn", "-r", "primary"], dsn(primary.pg_port())),
        (vec!["dsn", "--role", "replica"], dsn(replicas[0].pg_port())),
        (
            vec!["dsn", "-m", replicas[1].name()],
            dsn(replicas[1].pg_port()),
        ),
    ] {
        let out = wardenctl(&[&["-c", cfg][..], &args].concat(), None);
        assert_eq!(out.code(), Some(0), "{args:?}: {}", out.describe());
        assert_eq!(out.stdout, want, "{args:?}");
    }
    for (args, want) in [
        (
            vec!["dsn", "-r", "standby-leader"],
            "Error: Can not find a suitable member\n",
        ),
        (
            vec!["dsn", "-m", "nosuch"],
            "Error: Can not find a suitable member\n",
        ),
        (
            vec!["dsn", "-r", "replica", "-m", primary.name()],
            "Error: --role and --member are mutually exclusive options\n",
        ),
    ] {
        let out = wardenctl(&[&["-c", cfg][..], &args].concat(), None);
        assert_eq!(out.code(), Some(1), "{args:?}: {}", out.describe());
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("", want),
            "{args:?}"
        );
    }
}

/// A tsv row `<YYYY-MM-DD HH:MM:SS>\t<message>`: the message.
fn message_row(out: &RunOutput) -> String {
    let line = out.stdout.strip_suffix('\n').unwrap_or(&out.stdout);
    let (ts, msg) = line
        .split_once('\t')
        .unwrap_or_else(|| panic!("not a timestamped row: {}", out.describe()));
    assert!(
        chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{}",
        out.describe()
    );
    assert!(!msg.contains('\n'), "{}", out.describe());
    msg.to_string()
}

/// query: the password is read from standard input (`--password`), the member is the
/// one a role or a name picks (checked with pg_is_in_recovery() for a role), rows come
/// out as patronictl prints them, SQL errors as a row with the SQLSTATE.
fn query_runs_sql_on_the_chosen_member(cluster: &Cluster, cfg: &str) {
    let (primary, replicas) = roles(cluster);
    let pw = format!("{SUPERUSER_PASSWORD}\n");
    let query = |extra: &[&str], input: &str| {
        let args = [
            &["-c", cfg, "query", "-U", SUPERUSER, "--password"][..],
            extra,
        ]
        .concat();
        let out = wardenctl(&args, Some(input));
        assert_eq!(out.code(), Some(0), "{extra:?}: {}", out.describe());
        assert_eq!(out.stderr, "Password: \n", "{extra:?}: {}", out.describe());
        out
    };
    let sql = "select pg_is_in_recovery() as rec, inet_server_port() as port, \
               current_setting('application_name') as app, null::int as nothing";
    let out = query(&["-r", "replica", "-c", sql], &pw);
    assert_eq!(
        out.stdout,
        format!(
            "rec\tport\tapp\tnothing\nTrue\t{}\twardenctl\tNone\n",
            replicas[0].pg_port()
        )
    );
    let out = query(&["-m", primary.name(), "-c", sql, "--delimiter", ";"], &pw);
    assert_eq!(
        out.stdout,
        format!(
            "rec;port;app;nothing\nFalse;{};wardenctl;None\n",
            primary.pg_port()
        )
    );
    // The default member is the leader; JSON keeps column order and types.
    let out = query(
        &[
            "--format",
            "json",
            "-c",
            "select 1 as one, 1.5::float8 as f, 2.50::numeric as n, 'x' as t, \
             '{\"k\": [1, null]}'::jsonb as j, array[1, 2] as a, null as z, \
             inet_server_port() as port",
        ],
        &pw,
    );
    let rows: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(
        rows,
        json!([{"one": 1, "f": 1.5, "n": "2.50", "t": "x", "j": {"k": [1, null]},
                "a": [1, 2], "z": null, "port": primary.pg_port()}])
    );
    assert!(
        out.stdout.starts_with("[{\"one\": 1, \"f\": 1.5, "),
        "{}",
        out.stdout
    );
    // `-d` picks the database; `-f` reads the SQL from a file.
    let out = query(
        &[
            "-r",
            "primary",
            "-d",
            "template1",
            "-c",
            "select current_database()",
        ],
        &pw,
    );
    assert_eq!(out.stdout, "current_database\ntemplate1\n");
    let file = cluster.dir().join("query.sql");
    std::fs::write(&file, "select 41 + 1 as answer;\n").expect("write query.sql");
    let out = query(
        &["-m", replicas[1].name(), "-f", &file.display().to_string()],
        &pw,
    );
    assert_eq!(out.stdout, "answer\n42\n");
    // Errors are rows, the exit code stays 0.
    let out = query(&["-c", "select * from no_such_table"], &pw);
    assert_eq!(message_row(&out), "ERROR, SQLSTATE: 42P01");
    let out = query(
        &["-m", replicas[0].name(), "-c", "create table t16(x int)"],
        &pw,
    );
    assert_eq!(message_row(&out), "ERROR, SQLSTATE: 25006");
    let out = query(&["-r", "standby-leader", "-c", "select 1"], &pw);
    assert_eq!(
        message_row(&out),
        "No connection to role 'standby-leader' is available"
    );
    let out = query(&["-m", "nosuch", "-c", "select 1"], &pw);
    assert_eq!(
        message_row(&out),
        "No connection to member nosuch is available"
    );
    let out = query(
        &["-m", primary.name(), "-c", "select 1"],
        "not-the-password\n",
    );
    assert_eq!(
        message_row(&out),
        format!(
            "ERROR, SQLSTATE: connection to server at \"127.0.0.1\", port {} failed: FATAL:  \
             password authentication failed for user \"{SUPERUSER}\"",
            primary.pg_port()
        )
    );
    assert!(!out.stdout.contains("not-the-password"), "{}", out.stdout);
    // Without --password (and no PGPASSWORD or .pgpass) the server's refusal is shown.
    let out = wardenctl(
        &["-c", cfg, "query", "-U", SUPERUSER, "-c", "select 1"],
        None,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        message_row(&out).ends_with("failed: fe_sendauth: no password supplied"),
        "{}",
        out.describe()
    );
    let out = wardenctl(&["-c", cfg, "query", "-c", "select 1", "-f", "x.sql"], None);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stderr,
        "Error: --file and --command are mutually exclusive options\n"
    );
}

/// edit-config -s: written to the config key; a bad value is refused with the key's
/// name, and nothing is written.
fn edit_config_writes_by_compare_and_swap(cluster: &Cluster, cfg: &str) {
    let (before, rev0) = config_key(cluster);
    assert_ne!(before["loop_wait"], 3, "{before}");
    let out = wardenctl(
        &["-c", cfg, "edit-config", "-s", "loop_wait=3", "--force"],
        None,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("+loop_wait: 3"), "{}", out.stdout);
    let (after, rev1) = config_key(cluster);
    assert_eq!(after["loop_wait"], 3, "{after}");
    assert_eq!(after["ttl"], before["ttl"], "{after}");
    assert!(rev1 > rev0);

    // A bad value is refused with the key's name, and nothing is written.
    let out = wardenctl(
        &["-c", cfg, "edit-config", "-s", "ttl=abc", "--force"],
        None,
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("ttl: expected an integer"),
        "{}",
        out.stderr
    );
    assert_eq!(
        config_key(cluster).1,
        rev1,
        "a refused edit wrote the config key"
    );
}

fn remove_asks_and_deletes_only_its_cluster(cluster: &Cluster, cfg: &str, dcs: &str, scope: &str) {
    // remove with a mistyped name refuses and deletes nothing.
    let prefix = cluster.key_prefix();
    let keys_before = cluster.etcd().get_prefix(&prefix).unwrap().len();
    let out = wardenctl(&["-c", cfg, "remove", scope], Some("not-the-name\n"));
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("do not match"), "{}", out.stderr);
    assert_eq!(
        cluster.etcd().get_prefix(&prefix).unwrap().len(),
        keys_before
    );
    assert!(cluster.leader_key().unwrap().is_some());

    // remove confirmed three times wipes exactly that cluster's prefix (a ghost one).
    let ghost = "/service/ghost/";
    cluster
        .etcd()
        .put(&format!("{ghost}config"), r#"{"ttl":30}"#)
        .unwrap();
    cluster
        .etcd()
        .put(&format!("{ghost}initialize"), "123")
        .unwrap();
    let out = wardenctl(
        &["-d", dcs, "remove", "ghost"],
        Some("ghost\nYes I am aware\n"),
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(cluster.etcd().get_prefix(ghost).unwrap().is_empty());
    assert_eq!(
        cluster.etcd().get_prefix(&prefix).unwrap().len(),
        keys_before
    );
}
