//! Interoperability of actions: Patroni's own `patronictl` drives a Warden cluster —
//! `switchover --force` through the leader's REST API, `edit-config` by CAS on the
//! `config` key (`-s` for a dynamic setting, `-p` for a PostgreSQL parameter that needs a
//! restart, which members flag as `pending_restart`), and `restart --pending`, which
//! clears the flag.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use warden_tests::process::{run_bounded, RunOutput};
use warden_tests::{bins, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(90);
const T: Duration = Duration::from_secs(60);

fn patronictl(cluster: &Cluster, args: &[&str]) -> RunOutput {
    let ctl = bins::patronictl().unwrap_or_else(|e| panic!("{e:#}"));
    let cfg = cluster.dir().join("patronictl.yaml");
    std::fs::write(
        &cfg,
        format!(
            "scope: {}\netcd3:\n  hosts: {}\n",
            cluster.scope(),
            cluster.etcd().member(0).endpoint()
        ),
    )
    .expect("write patronictl.yaml");
    let mut cmd = Command::new(ctl);
    cmd.arg("-c").arg(&cfg).args(args);
    let out = run_bounded(&mut cmd, Duration::from_secs(120)).expect("run patronictl");
    println!("patronictl {}: {}", args.join(" "), out.describe());
    out
}

fn config(cluster: &Cluster) -> Value {
    let key = format!("{}config", cluster.key_prefix());
    let kv = cluster.etcd().get(&key).unwrap().expect("config key");
    serde_json::from_str(&kv.value).unwrap()
}

#[test]
fn patronictl_switchover_edit_config_and_restart_pending() {
    bins::patronictl().unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start(ClusterSpec::new(3).without_haproxy()).expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let scope = cluster.scope().to_string();

    // switchover --force to a named candidate.
    let (old, _) = cluster.wait_leader(T);
    let p = cluster.index_of(&old).unwrap();
    let candidate = cluster.node((p + 1) % 3).name().to_string();
    let out = patronictl(
        &cluster,
        &[
            "switchover",
            &scope,
            "--leader",
            &old,
            "--candidate",
            &candidate,
            "--force",
        ],
    );
    assert!(
        out.status.is_some_and(|s| s.success()),
        "switchover failed: {}",
        out.describe()
    );
    let converged = cluster.assert_converged(T);
    assert_eq!(cluster.node(converged.primary).name(), candidate);

    // edit-config -s: a dynamic setting lands in the config key.
    let out = patronictl(
        &cluster,
        &["edit-config", &scope, "-s", "loop_wait=2", "--force"],
    );
    assert!(
        out.status.is_some_and(|s| s.success()),
        "edit-config -s: {}",
        out.describe()
    );
    assert_eq!(config(&cluster)["loop_wait"], 2);

    // edit-config -p max_connections: every member flags a pending restart, naming it.
    let before = cluster
        .node(0)
        .show("max_connections")
        .expect("SHOW max_connections");
    let wanted = (before.parse::<u32>().unwrap() + 17).to_string();
    let out = patronictl(
        &cluster,
        &[
            "edit-config",
            &scope,
            "-p",
            &format!("max_connections={wanted}"),
            "--force",
        ],
    );
    assert!(
        out.status.is_some_and(|s| s.success()),
        "edit-config -p: {}",
        out.describe()
    );
    cluster.wait_every_member(
        T,
        "every member flags pending_restart for max_connections",
        |m| {
            m["pending_restart"] == true
                && m["pending_restart_reason"]["max_connections"]["new_value"] == wanted.as_str()
        },
    );
    let out = patronictl(&cluster, &["list", &scope]);
    assert!(
        out.stdout.contains('*'),
        "patronictl list shows no pending restart: {}",
        out.stdout
    );

    // restart --pending clears it: the new value is in force everywhere.
    let out = patronictl(&cluster, &["restart", &scope, "--pending", "--force"]);
    assert!(
        out.status.is_some_and(|s| s.success()),
        "restart --pending: {}",
        out.describe()
    );
    assert!(
        out.stdout.matches("Success: restart on member").count() == 3,
        "not every member restarted: {}",
        out.describe()
    );
    cluster.wait_every_member(T, "no member flags pending_restart any more", |m| {
        m.get("pending_restart").is_none()
    });
    for i in 0..3 {
        assert_eq!(
            cluster.node(i).show("max_connections").as_deref(),
            Some(wanted.as_str())
        );
    }
    cluster.assert_converged(T);
}
