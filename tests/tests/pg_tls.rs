//! PostgreSQL connections over TLS (`postgresql.authentication.*.sslmode: verify-full`).
//!
//! One three-node cluster whose pg_hba rejects plain replication: replicas clone and
//! stream over TLS (checked on the primary in `pg_stat_ssl`); pgpass names only the
//! hosts the agent connects to; a member given another CA for its replication role
//! cannot clone and says why, while the cluster keeps its state; a killed primary
//! rejoins through pg_rewind (whose source connection also runs `verify-full`).
//! Bad TLS settings are config errors naming the key.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::process::run_bounded;
use warden_tests::workdir::{create_node_dir, WorkDir};
use warden_tests::{bins, ports, wait_until, Cluster, ClusterSpec, NodeConfig};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Every replica's walsender on the primary runs over TLS, and there are `n` of them.
fn replicas_stream_over_tls(cluster: &Cluster, n: usize) {
    wait_until(CONVERGE_TIMEOUT, "every replica streams over TLS", || {
        let primary = cluster.primary()?;
        let mut sql = primary.sql().ok()?;
        let rows = sql
            .query(
                "SELECT application_name, ssl FROM pg_stat_replication \
                     JOIN pg_stat_ssl USING (pid) WHERE state = 'streaming'",
                &[],
            )
            .ok()?;
        let tls: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        (tls.len() == n && tls.iter().all(|(_, ssl)| *ssl)).then_some(())
    });
}

fn pgpass_lines(cluster: &Cluster, i: usize) -> Vec<String> {
    let path = cluster.node(i).node_dir().join("pgpass");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn log_of(cluster: &Cluster, i: usize) -> String {
    std::fs::read_to_string(cluster.node(i).log_path()).unwrap_or_default()
}

#[test]
fn replication_clone_and_rewind_run_over_verified_tls() {
    let mut cluster =
        Cluster::start(ClusterSpec::new(3).with_pg_tls().without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(CONVERGE_TIMEOUT);
    replicas_stream_over_tls(&cluster, 2);

    // pgpass: host-specific lines only, the local server and the upstream.
    let p = cluster.primary_index().expect("a primary");
    let primary_port = cluster.node(p).pg_port();
    let r = (0..3).find(|&i| i != p).unwrap();
    let lines = pgpass_lines(&cluster, r);
    assert!(
        lines.iter().all(|l| !l.starts_with('*')),
        "pgpass has a wildcard host: {lines:#?}"
    );
    let own = cluster.node(r).pg_port();
    for want in [
        format!("127.0.0.1:{own}:*:replicator:"),
        format!("127.0.0.1:{primary_port}:*:replicator:"),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&want)),
            "pgpass has no line {want}...: {lines:#?}"
        );
    }

    // A member checking the server against another CA cannot clone, and says why.
    let bad = (0..3).rfind(|&i| i != p).unwrap();
    let bad_name = cluster.node(bad).name().to_string();
    let foreign = cluster
        .tls()
        .expect("tls")
        .foreign
        .cert
        .display()
        .to_string();
    let good_ca = cluster.tls().unwrap().ca.cert.display().to_string();
    cluster
        .node_mut(bad)
        .sigterm_and_wait(Duration::from_secs(60))
        .expect("stop the member");
    let data = cluster.node(bad).data_dir();
    std::fs::remove_dir_all(&data).expect("remove its data directory");
    let log_before = log_of(&cluster, bad).len();
    {
        let node = cluster.node_mut(bad);
        *node.config_mut() = node.config().clone().set(
            "postgresql.authentication.replication.sslrootcert",
            foreign.as_str(),
        );
        node.write_config().unwrap();
        node.start().unwrap();
    }
    wait_until(
        Duration::from_secs(60),
        "the member reports the failed certificate check",
        || {
            log_of(&cluster, bad)[log_before..]
                .contains("certificate verify failed")
                .then_some(())
        },
    );
    assert!(
        !data.join("PG_VERSION").exists(),
        "{bad_name} cloned although the server's certificate is not from its CA"
    );
    assert_eq!(
        cluster.primary_index(),
        Some(p),
        "the leader changed while a member failed to clone"
    );
    replicas_stream_over_tls(&cluster, 1);

    // With the cluster CA again it clones and streams over TLS.
    {
        let node = cluster.node_mut(bad);
        node.sigterm_and_wait(Duration::from_secs(60)).unwrap();
        *node.config_mut() = node.config().clone().set(
            "postgresql.authentication.replication.sslrootcert",
            good_ca.as_str(),
        );
        node.write_config().unwrap();
        node.start().unwrap();
    }
    cluster.wait_replicas_streaming(CONVERGE_TIMEOUT);
    replicas_stream_over_tls(&cluster, 2);

    // Failover: the primary's node dies; a replica takes over; the old primary comes
    // back through pg_rewind (its source connection: verify-full) and streams.
    let old = p;
    cluster
        .node_mut(old)
        .kill(Signal::SIGKILL)
        .expect("kill the node");
    wait_until(CONVERGE_TIMEOUT, "a new primary", || {
        cluster.primary_index().filter(|&i| i != old)
    });
    let log_before = log_of(&cluster, old).len();
    cluster
        .node_mut(old)
        .start()
        .expect("restart the old primary");
    cluster.wait_replicas_streaming(CONVERGE_TIMEOUT);
    replicas_stream_over_tls(&cluster, 2);
    let log = log_of(&cluster, old);
    assert!(
        log[log_before..].contains("pg_rewind finished"),
        "the old primary did not rejoin through pg_rewind:\n{}",
        &log[log_before..]
    );
}

/// `--validate-config` on a valid config changed by `f` fails naming `key`.
fn rejected(f: impl FnOnce(NodeConfig) -> NodeConfig, key: &str, why: &str) {
    let dir = WorkDir::temp().unwrap();
    let [pg, api, etcd] = ports::free_ports(3).unwrap()[..] else {
        unreachable!()
    };
    let node_dir = dir.path().join("node1");
    create_node_dir(&node_dir).unwrap();
    let cfg = f(NodeConfig::new(
        "node1",
        &node_dir,
        pg,
        api,
        &format!("127.0.0.1:{etcd}"),
    ));
    let path = cfg.config_path();
    std::fs::write(&path, cfg.render().unwrap()).unwrap();
    let bin = bins::warden_bin().unwrap();
    let out = run_bounded(
        Command::new(bin).arg("--validate-config").arg(&path),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_ne!(out.code(), Some(0), "accepted:\n{}", out.describe());
    assert!(
        out.stderr.contains(key) && out.stderr.contains(why),
        "stderr does not name `{key}` ({why}):\n{}",
        out.describe()
    );
}

#[test]
fn bad_tls_settings_are_config_errors_naming_the_key() {
    rejected(
        |c| {
            c.set(
                "postgresql.authentication.replication.sslmode",
                "verify-full",
            )
            .set(
                "postgresql.authentication.replication.sslrootcert",
                "/nonexistent/ca.crt",
            )
        },
        "postgresql.authentication.replication.sslrootcert",
        "no such file",
    );
    rejected(
        |c| {
            c.set(
                "postgresql.authentication.superuser.sslmode",
                "verify-everything",
            )
        },
        "postgresql.authentication.superuser.sslmode",
        "verify-everything",
    );
    rejected(
        |c| c.set("postgresql.authentication.rewind.sslmode", "verify-ca"),
        "postgresql.authentication.rewind.sslrootcert",
        "required with sslmode verify-ca",
    );
}
