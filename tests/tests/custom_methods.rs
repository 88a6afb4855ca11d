//! Patroni's custom methods against real processes.
//!
//! A standalone PostgreSQL server plays the old database the cluster is built from.
//! The cluster's `bootstrap.method` is a user's script that copies it with
//! `pg_basebackup`, with `recovery_conf` asking for an archive recovery that stops at
//! the first consistent point and promotes. `post_bootstrap` then creates a table
//! through the connection string it is given. The second member is created by the
//! custom replica methods in order: the first script fails, the second copies the
//! leader with the connection string it is given.
//!
//! Each script records its arguments, so the test also checks Patroni's argument
//! conventions (`--scope --datadir`, `--role=replica --connstring`, extra keys as
//! `--key=value`, Python's `True`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use warden_tests::config::pg_bin_dir;
use warden_tests::pgserver::PgServer;
use warden_tests::workdir::{chown_to_postgres, WorkDir};
use warden_tests::{sql, wait_until, Cluster, ClusterSpec};

const FORM_TIMEOUT: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(60);

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

fn args_of(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

struct Scripts {
    bootstrap: String,
    post: String,
    broken: String,
    copy: String,
}

/// The user's scripts; each records its arguments in `out`.
fn write_scripts(dir: &Path, bin: &str, out: &Path) -> Scripts {
    let out_s = out.display().to_string();
    let bootstrap = script(
        dir,
        "bootstrap.sh",
        &format!(
            "echo \"$@\" > {out_s}/bootstrap.args\n\
             for a in \"$@\"; do case \"$a\" in --datadir=*) D=\"${{a#--datadir=}}\";; \
             --source_port=*) P=\"${{a#--source_port=}}\";; esac; done\n\
             {bin}/pg_basebackup -h 127.0.0.1 -p \"$P\" -U postgres -X stream --checkpoint=fast -D \"$D\"\n"
        ),
    );
    let post = script(
        dir,
        "post.sh",
        &format!(
            "echo \"$@\" > {out_s}/post.args\n\
             {bin}/psql \"$1\" -v ON_ERROR_STOP=1 -c 'CREATE TABLE made_by_post_bootstrap (x int)'\n"
        ),
    );
    let broken = script(
        dir,
        "broken.sh",
        &format!("echo \"$@\" > {out_s}/broken.args\nexit 3\n"),
    );
    let copy = script(
        dir,
        "copy.sh",
        &format!(
            "echo \"$@\" > {out_s}/copy.args\n\
             for a in \"$@\"; do case \"$a\" in --datadir=*) D=\"${{a#--datadir=}}\";; \
             --connstring=*) C=\"${{a#--connstring=}}\";; esac; done\n\
             {bin}/pg_basebackup -d \"$C\" -X stream --checkpoint=fast -D \"$D\"\n"
        ),
    );
    Scripts {
        bootstrap,
        post,
        broken,
        copy,
    }
}

#[test]
fn custom_bootstrap_post_bootstrap_and_replica_methods() {
    let scratch = WorkDir::temp().expect("scratch dir");
    let dir = scratch.path().to_path_buf();
    let bin = pg_bin_dir().display().to_string();
    let archive = dir.join("archive");
    std::fs::create_dir(&archive).expect("archive dir");
    chown_to_postgres(&archive).expect("chown archive");
    // Where the scripts record their arguments: written by the postgres user.
    let out = dir.join("out");
    std::fs::create_dir(&out).expect("out dir");
    chown_to_postgres(&out).expect("chown out");

    let mut source = PgServer::init(&dir.join("source")).expect("initdb the source");
    source.start().expect("start the source");
    let sport = source.port();
    sql::execute(
        sport,
        "CREATE TABLE seed AS SELECT g AS id FROM generate_series(1, 100) g",
    )
    .expect("seed the source");
    let source_sysid = sql::query_text(
        sport,
        "SELECT system_identifier::text FROM pg_control_system()",
    )
    .unwrap()
    .unwrap();

    let Scripts {
        bootstrap,
        post,
        broken,
        copy,
    } = write_scripts(&dir, &bin, &out);
    let archive_s = archive.display().to_string();
    let cluster = Cluster::start(
        ClusterSpec::new(2)
            .without_haproxy()
            .customize(move |_, c| {
                c.set("bootstrap.method", "from_source")
                    .set_yaml(
                        "bootstrap.from_source",
                        &format!(
                            "{{command: '{bootstrap}', source_port: {sport}, \
                         recovery_conf: {{restore_command: 'cp {archive_s}/%f %p', \
                         recovery_target: immediate, recovery_target_action: promote}}}}"
                        ),
                    )
                    .expect("bootstrap method")
                    .set("bootstrap.post_bootstrap", post.as_str())
                    .set_yaml(
                        "postgresql.create_replica_methods",
                        "[broken, copy, basebackup]",
                    )
                    .expect("methods")
                    .set_yaml(
                        "postgresql.broken",
                        &format!("{{command: '{broken}', keep_data: false}}"),
                    )
                    .expect("broken")
                    .set_yaml(
                        "postgresql.copy",
                        &format!("{{command: '{copy}', threads: 4}}"),
                    )
                    .expect("copy")
            }),
    )
    .expect("start cluster");
    cluster.wait_formed(FORM_TIMEOUT);
    cluster.wait_replicas_streaming(T);
    let (leader, _) = cluster.wait_leader(T);
    let li = cluster.index_of(&leader).unwrap();
    let ri = 1 - li;
    let lnode = cluster.node(li);
    leader_is_the_source(&cluster, li, &out, sport, &source_sysid);
    // The replica: the broken method was tried first, then copy made it.
    let rnode = cluster.node(ri);
    let broken_args = args_of(&out, "broken.args").expect("the first method was tried");
    let copy_args = args_of(&out, "copy.args").expect("the second method ran");
    let expect = format!(
        "--threads=4 --scope={} --role=replica --datadir={} \
         --connstring=dbname=postgres user=replicator host=127.0.0.1 port={}",
        cluster.scope(),
        rnode.data_dir().display(),
        lnode.pg_port()
    );
    assert_eq!(copy_args, expect);
    assert!(
        broken_args.starts_with("--keep_data=False --scope="),
        "{broken_args}"
    );
    wait_until(T, "the post_bootstrap table replicated", || {
        sql::query_text(
            rnode.pg_port(),
            "SELECT count(*)::text FROM made_by_post_bootstrap",
        )
        .ok()
        .flatten()
    });
    assert_eq!(rnode.system_identifier().unwrap(), source_sysid);
    cluster.assert_converged(T);
    println!(
        "custom bootstrap from the source, post_bootstrap, and the custom replica method worked"
    );
}

/// The bootstrapped leader: the source's data under its system identifier, promoted,
/// post_bootstrap run, the superuser's password set and the temporary trust gone.
fn leader_is_the_source(cluster: &Cluster, li: usize, out: &Path, sport: u16, source_sysid: &str) {
    let lnode = cluster.node(li);

    // The cluster is the source's data, under the source's system identifier, promoted.
    assert_eq!(
        sql::query_text(lnode.pg_port(), "SELECT count(*)::text FROM seed")
            .unwrap()
            .as_deref(),
        Some("100")
    );
    assert_eq!(lnode.system_identifier().unwrap(), source_sysid);
    let auto = std::fs::read_to_string(lnode.data_dir().join("postgresql.auto.conf")).unwrap();
    assert!(
        !auto.contains("recovery_target"),
        "recovery settings left behind:\n{auto}"
    );
    assert_eq!(
        args_of(out, "bootstrap.args").as_deref(),
        Some(
            format!(
                "--scope={} --datadir={} --source_port={sport}",
                cluster.scope(),
                lnode.data_dir().display()
            )
            .as_str()
        )
    );
    // post_bootstrap ran once, as the superuser, through the string it was given.
    let post_args = args_of(out, "post.args").expect("post_bootstrap ran");
    assert_eq!(
        post_args,
        format!(
            "dbname=postgres user=postgres host=127.0.0.1 port={}",
            lnode.pg_port()
        )
    );
    // The superuser got the configured password (the source had none), and the
    // temporary trust is gone: a wrong password is refused over TCP.
    let hba = std::fs::read_to_string(lnode.data_dir().join("pg_hba.conf")).unwrap();
    assert!(
        !hba.contains("host all postgres 127.0.0.1/32 trust"),
        "{hba}"
    );
    assert!(sql::connect(lnode.pg_port()).is_ok());
}
