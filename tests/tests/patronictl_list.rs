//! Interoperability: Patroni's own `patronictl` (from PyPI) reads the etcd
//! keys Warden writes and shows the cluster correctly, and `wardenctl` prints
//! what patronictl prints for the same cluster: `list` (pretty, `-e`, tsv,
//! json), `topology`, `history`, `show-config`, `dsn`, and `query` (tsv and
//! json, by role and by member, errors).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use warden_tests::config::{SUPERUSER, SUPERUSER_PASSWORD};
use warden_tests::process::{run_bounded, RunOutput};
use warden_tests::wait::poll_until;
use warden_tests::{bins, Cluster, ClusterSpec, Node};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(30);

/// The two CLIs, run the same way: `-d DCS ARGS`, no user config, and for `query`
/// the superuser's password from a `.pgpass` file (PGPASSFILE, read by libpq for
/// patronictl and by wardenctl alike), nothing else from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Patronictl,
    Wardenctl,
}

fn run(tool: Tool, cluster: &Cluster, dcs: &str, args: &[&str]) -> RunOutput {
    let mut cmd = match tool {
        Tool::Patronictl => {
            let ctl = bins::patronictl().unwrap_or_else(|e| panic!("{e:#}"));
            // An empty config of our own, so no user patronictl.yaml applies.
            let cfg = cluster.dir().join("patronictl.yaml");
            std::fs::write(&cfg, "{}\n").expect("write patronictl.yaml");
            let mut cmd = Command::new(ctl);
            cmd.env("PATRONICTL_CONFIG_FILE", &cfg);
            cmd
        }
        Tool::Wardenctl => bins::wardenctl_command().unwrap_or_else(|e| panic!("{e:#}")),
    };
    for var in [
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGAPPNAME",
        "PGSERVICE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGPASSFILE", pgpass(cluster));
    cmd.args(["-d", dcs]).args(args);
    run_bounded(&mut cmd, RUN).unwrap_or_else(|e| panic!("run {tool:?}: {e:#}"))
}

/// A `.pgpass` file (mode 0600, as libpq insists) with the superuser's password.
fn pgpass(cluster: &Cluster) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = cluster.dir().join("pgpass");
    if !path.exists() {
        std::fs::write(
            &path,
            format!("127.0.0.1:*:*:{SUPERUSER}:{SUPERUSER_PASSWORD}\n"),
        )
        .expect("write pgpass");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod pgpass");
    }
    path
}

fn patronictl(cluster: &Cluster, dcs: &str, args: &[&str]) -> RunOutput {
    run(Tool::Patronictl, cluster, dcs, args)
}

/// The rows if they show one Leader and two streaming Replicas, all on the
/// same timeline, replicas with zero receive and replay lag.
fn healthy(rows: &[Value]) -> bool {
    let role = |r: &str| rows.iter().filter(|m| m["Role"] == r).count();
    let tl = rows[0]["TL"].as_u64();
    rows.len() == 3
        && role("Leader") == 1
        && role("Replica") == 2
        && tl.is_some()
        && rows.iter().all(|m| m["TL"].as_u64() == tl)
        && rows.iter().filter(|m| m["Role"] == "Replica").all(|m| {
            m["State"] == "streaming"
                && m["Receive Lag"].as_u64() == Some(0)
                && m["Replay Lag"].as_u64() == Some(0)
        })
}

/// Runs `args` with both tools until they print the same (WAL positions may move
/// between the two runs) and exit alike; the common output.
fn agree(cluster: &Cluster, dcs: &str, args: &[&str]) -> RunOutput {
    let mut last = String::new();
    poll_until(T, || {
        let p = run(Tool::Patronictl, cluster, dcs, args);
        let w = run(Tool::Wardenctl, cluster, dcs, args);
        last = format!("patronictl: {}\nwardenctl: {}", p.describe(), w.describe());
        (p.status.is_some() && p.code() == w.code() && p.stdout == w.stdout && p.stderr == w.stderr)
            .then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "patronictl and wardenctl never printed the same for {args:?}\n{last}\n{}",
            cluster.dump_logs()
        )
    })
}

/// `query` rows of a timestamp and a message: the messages (the timestamps may be a
/// second apart between the two runs).
fn messages(out: &RunOutput) -> Vec<String> {
    out.stdout
        .lines()
        .map(|l| {
            let (ts, msg) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("not a timestamped row: {}", out.describe()));
            assert!(
                chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S").is_ok(),
                "{}",
                out.describe()
            );
            msg.to_string()
        })
        .collect()
}

#[test]
fn patronictl_list_shows_leader_and_two_streaming_replicas() {
    // Fail (not skip) early with a clear message if patronictl is missing.
    bins::patronictl().unwrap_or_else(|e| panic!("{e:#}"));
    bins::wardenctl_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let dcs = format!("etcd3://{}", cluster.etcd().member(0).endpoint());
    let scope = cluster.scope();

    let mut last = String::new();
    let rows = poll_until(T, || {
        let out = patronictl(&cluster, &dcs, &["list", scope, "-f", "json"]);
        last = out.describe();
        let rows: Vec<Value> = serde_json::from_str(&out.stdout).ok()?;
        healthy(&rows).then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "patronictl list -f json never showed 1 Leader + 2 streaming Replicas on one timeline with lag 0\n\
             last output: {last}\n{}",
            cluster.dump_logs()
        )
    });
    let leader = rows.iter().find(|m| m["Role"] == "Leader").unwrap();
    let primary = cluster.primary().expect("primary");
    assert_eq!(leader["Member"], primary.name(), "{last}");
    assert_eq!(
        leader["Host"],
        format!("127.0.0.1:{}", primary.pg_port()),
        "{last}"
    );
    assert_eq!(leader["State"], "running", "{last}");
    for m in &rows {
        assert_eq!(m["Cluster"], cluster.scope(), "{last}");
    }

    // The default table too, as a user sees it.
    let out = patronictl(&cluster, &dcs, &["list", scope]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("| Leader "), 1, "{}", out.stdout);
    assert_eq!(count("| Replica "), 2, "{}", out.stdout);
    assert_eq!(count("| streaming "), 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("Cluster: {}", cluster.scope())),
        "{}",
        out.stdout
    );

    wardenctl_prints_what_patronictl_prints(&cluster, &dcs);
    dsn_and_query_agree(&cluster, &dcs);
}

/// `list` in every format, `-e`, `topology`, `history` and `show-config`: the same
/// bytes from both tools.
fn wardenctl_prints_what_patronictl_prints(cluster: &Cluster, dcs: &str) {
    let scope = cluster.scope();
    let out = agree(cluster, dcs, &["list", scope, "-f", "json"]);
    let rows: Vec<Value> = serde_json::from_str(&out.stdout).expect("list -f json");
    assert!(healthy(&rows), "{}", out.stdout);
    for replica in rows.iter().filter(|m| m["Role"] == "Replica") {
        let keys: Vec<&str> = replica
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for k in ["Receive LSN", "Receive Lag", "Replay LSN", "Replay Lag"] {
            assert!(keys.contains(&k), "{k}: {}", out.stdout);
        }
    }
    for args in [
        &["list", scope][..],
        &["list", scope, "-e"],
        &["list", scope, "-e", "-f", "tsv"],
        &["list", scope, "-e", "-f", "json"],
        &["list", scope, "-f", "yaml"],
        &["topology", scope],
        &["history", scope],
        &["history", scope, "-f", "json"],
        &["show-config", scope],
    ] {
        let out = agree(cluster, dcs, args);
        assert_eq!(out.code(), Some(0), "{args:?}: {}", out.describe());
    }
    let out = agree(cluster, dcs, &["list", scope, "-e"]);
    assert!(
        out.stdout.contains(
            "| TL | Receive LSN | Lag | Replay LSN | Lag | Pending restart | Pending restart \
             reason | Scheduled restart | Tags |"
        ),
        "{}",
        out.stdout
    );
    let out = agree(cluster, dcs, &["topology", scope]);
    assert_eq!(out.stdout.matches("| + ").count(), 2, "{}", out.stdout);
}

/// The primary, and the replicas sorted by name.
fn roles(cluster: &Cluster) -> (&Node, Vec<&Node>) {
    let primary = cluster.primary().expect("primary");
    let mut replicas = cluster.replicas();
    replicas.sort_by(|a, b| a.name().cmp(b.name()));
    (primary, replicas)
}

/// `dsn`, then `query`: the same member chosen, the same rows, the same messages.
fn dsn_and_query_agree(cluster: &Cluster, dcs: &str) {
    let scope = cluster.scope();
    let (primary, replicas) = roles(cluster);
    for (args, code) in [
        (vec!["dsn", scope], 0),
        (vec!["dsn", scope, "-r", "replica"], 0),
        (vec!["dsn", scope, "-r", "primary"], 0),
        (vec!["dsn", scope, "-m", replicas[1].name()], 0),
        (vec!["dsn", scope, "-r", "standby-leader"], 1),
        (vec!["dsn", scope, "-r", "any", "-m", primary.name()], 1),
    ] {
        let out = agree(cluster, dcs, &args);
        assert_eq!(out.code(), Some(code), "{args:?}: {}", out.describe());
    }
    let out = agree(cluster, dcs, &["dsn", scope, "-r", "replica"]);
    assert_eq!(
        out.stdout,
        format!("host=127.0.0.1 port={}\n", replicas[0].pg_port())
    );
    query_agrees(cluster, dcs);
}

/// `query`: the same member chosen, the same rows and messages.
fn query_agrees(cluster: &Cluster, dcs: &str) {
    let scope = cluster.scope();
    let (primary, replicas) = roles(cluster);
    // tsv, a role: psycopg's Python values printed with str().
    let sql = "select pg_is_in_recovery() as rec, inet_server_port() as port, \
               1.50::numeric as n, 1::float8 as f, 1e20::float8 as big, \
               '{\"b\": 1, \"a\": [true, null]}'::jsonb as j, array['x', null] as arr, \
               '1 day 02:00:00'::interval as iv, '2024-01-02 03:04:05.5'::timestamp as ts, \
               null::text as z";
    let args = ["query", scope, "-U", SUPERUSER, "-r", "replica", "-c", sql];
    let out = agree(cluster, dcs, &args);
    assert_eq!(
        out.stdout,
        format!(
            "rec\tport\tn\tf\tbig\tj\tarr\tiv\tts\tz\n\
             True\t{}\t1.50\t1.0\t1e+20\t{{'a': [True, None], 'b': 1}}\t['x', None]\t\
             1 day, 2:00:00\t2024-01-02 03:04:05.500000\tNone\n",
            replicas[0].pg_port()
        )
    );
    // json, a member.
    let sql = "select inet_server_port() as port, 1 as one, 1.5::float8 as f, 'é' as t, \
               true as b, null::int as z, '{\"k\": [1, null]}'::jsonb as j, array[1, 2] as a";
    for member in [primary, replicas[1]] {
        let args = [
            "query",
            scope,
            "-U",
            SUPERUSER,
            "-m",
            member.name(),
            "--format",
            "json",
            "-c",
            sql,
        ];
        let out = agree(cluster, dcs, &args);
        assert_eq!(
            out.stdout,
            format!(
                "[{{\"port\": {}, \"one\": 1, \"f\": 1.5, \"t\": \"\\u00e9\", \"b\": true, \
                 \"z\": null, \"j\": {{\"k\": [1, null]}}, \"a\": [1, 2]}}]\n",
                member.pg_port()
            )
        );
    }
    // Rows of a timestamp and a message: the same messages (and exit code 0).
    for (args, want) in [
        (
            vec![
                "query",
                scope,
                "-U",
                SUPERUSER,
                "-c",
                "select * from no_such_table",
            ],
            "ERROR, SQLSTATE: 42P01".to_string(),
        ),
        (
            vec![
                "query",
                scope,
                "-U",
                SUPERUSER,
                "-m",
                replicas[0].name(),
                "-c",
                "create table t16(x int)",
            ],
            "ERROR, SQLSTATE: 25006".to_string(),
        ),
        (
            vec![
                "query",
                scope,
                "-U",
                SUPERUSER,
                "-r",
                "standby-leader",
                "-c",
                "select 1",
            ],
            "No connection to role 'standby-leader' is available".to_string(),
        ),
        (
            vec![
                "query", scope, "-U", SUPERUSER, "-m", "nosuch", "-c", "select 1",
            ],
            "No connection to member nosuch is available".to_string(),
        ),
    ] {
        let p = patronictl(cluster, dcs, &args);
        let w = run(Tool::Wardenctl, cluster, dcs, &args);
        assert_eq!(p.code(), Some(0), "{args:?}: {}", p.describe());
        assert_eq!(w.code(), Some(0), "{args:?}: {}", w.describe());
        assert_eq!(
            messages(&p),
            vec![want.clone()],
            "{args:?}: {}",
            p.describe()
        );
        assert_eq!(messages(&w), vec![want], "{args:?}: {}", w.describe());
    }
    // Usage errors: the same text on stderr, exit code 1.
    let out = agree(
        cluster,
        dcs,
        &["query", scope, "-c", "select 1", "-r", "any", "-m", "x"],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let out = agree(cluster, dcs, &["query", scope]);
    assert_eq!(
        out.stderr,
        "Error: You need to specify either --command or --file\n"
    );
}
