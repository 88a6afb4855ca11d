//! `backup.jobs`: named backups of the rest of the stack; every bad definition is
//! refused at load, naming its key.

use std::time::Duration;

use super::fixtures::*;
use crate::*;

fn with_jobs(jobs: &str) -> String {
    format!("{MINIMAL}backup:\n  repository: {{type: filesystem, path: /repo}}\n  jobs:\n{jobs}")
}

#[test]
fn a_command_job_parses_with_its_drill() {
    let loaded = ok(&with_jobs(
        r#"    - name: etcd
      kind: command
      backup_command: [sh, -c, "echo hi"]
      restore_command: [/bin/sh, -c, "cat > $WARDEN_RESTORE_DIR/x"]
      schedule: "*/30 * * * *"
      retention: {keep_last: 3}
      timeout: 10m
      drill:
        schedule: "0 4 * * 0"
        timeout: 90s
        start_command: [sleep, "60"]
        checks: [{name: x, command: [cat, /etc/hostname], expect: "h"}, {command: ["true"]}]
"#,
    ));
    let jobs = loaded.config.backup.unwrap().jobs;
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!(j.name, "etcd");
    assert_eq!(j.kind.name(), "command");
    let StackJobKind::Command(c) = &j.kind else {
        panic!("{:?}", j.kind)
    };
    assert_eq!(c.backup_command, ["sh", "-c", "echo hi"]);
    assert_eq!(c.restore_command.as_ref().unwrap()[0], "/bin/sh");
    assert_eq!(j.schedule.as_ref().unwrap().0, "*/30 * * * *");
    assert_eq!(j.retention.keep_last, Some(3));
    assert_eq!(j.timeout, Duration::from_secs(600));
    assert_eq!(j.drill.timeout, Duration::from_secs(90));
    assert_eq!(j.drill.start_command.as_ref().unwrap()[0], "sleep");
    assert_eq!(j.drill.checks.len(), 2);
    assert_eq!(j.drill.checks[0].expect.as_deref(), Some("h"));
    assert_eq!(j.drill.checks[1].name, "check 2");
    assert_eq!(j.drill.checks[1].expect, None);
}

#[test]
fn defaults_on_demand_keep_everything() {
    let loaded = ok(&with_jobs(
        "    - {name: a, kind: command, backup_command: [\"true\"]}\n",
    ));
    let j = &loaded.config.backup.unwrap().jobs[0];
    assert_eq!(j.schedule, None);
    assert!(j.retention.keeps_everything());
    assert_eq!(j.timeout, stack_jobs::DEFAULT_JOB_TIMEOUT);
    assert!(j.drill.checks.is_empty());
}

#[test]
fn unknown_kind_is_refused_naming_the_key() {
    let p = problems(&with_jobs(
        "    - {name: a, kind: mongo, backup_command: [\"true\"]}\n",
    ));
    assert_has_prefix(&p, "backup.jobs[0].kind: unknown job kind \"mongo\"");
}

#[test]
fn a_missing_program_is_refused_naming_the_key() {
    let p = problems(&with_jobs(
        "    - {name: a, kind: command, backup_command: [no-such-dump-tool-x, --out]}\n    \
         - {name: b, kind: command, backup_command: [/nonexistent/bin/dump]}\n    \
         - {name: c, kind: command, backup_command: [\"true\"], drill: {checks: [{command: [nope-check-x]}]}}\n",
    ));
    assert_has_prefix(
        &p,
        "backup.jobs[0].backup_command[0]: program \"no-such-dump-tool-x\" not found",
    );
    assert_has_prefix(
        &p,
        "backup.jobs[1].backup_command[0]: program \"/nonexistent/bin/dump\" not found",
    );
    assert_has_prefix(
        &p,
        "backup.jobs[2].drill.checks[0].command[0]: program \"nope-check-x\"",
    );
}

#[test]
fn an_unreadable_password_file_is_refused_naming_the_key() {
    let p = problems(&with_jobs(
        "    - {name: files, kind: restic, repository: /srv/restic, password_file: /nonexistent/restic.pass, paths: [/etc]}\n    \
         - {name: db, kind: mariadb, connection: {user: backup, password_file: /nonexistent/m.pass}}\n",
    ));
    assert_has_prefix(
        &p,
        "backup.jobs[0].password_file: cannot read /nonexistent/restic.pass",
    );
    assert_has_prefix(
        &p,
        "backup.jobs[1].connection.password_file: cannot read /nonexistent/m.pass",
    );
}

#[test]
fn a_schedule_that_never_fires_is_refused_naming_the_key() {
    let p = problems(&with_jobs(
        "    - {name: a, kind: command, backup_command: [\"true\"], schedule: \"0 0 30 2 *\"}\n    \
         - {name: b, kind: command, backup_command: [\"true\"], drill: {schedule: \"0 0 31 4 *\"}}\n    \
         - {name: c, kind: command, backup_command: [\"true\"], schedule: \"every hour\"}\n",
    ));
    assert_has_prefix(&p, "backup.jobs[0].schedule: \"0 0 30 2 *\" never fires");
    assert_has_prefix(
        &p,
        "backup.jobs[1].drill.schedule: \"0 0 31 4 *\" never fires",
    );
    assert_has_prefix(&p, "backup.jobs[2].schedule: expected a cron expression");
}

#[test]
fn names_keys_and_duplicates() {
    let p = problems(&with_jobs(
        "    - {name: a, kind: command, backup_command: [\"true\"], paths: [/etc]}\n    \
         - {name: a, kind: command, backup_command: [\"true\"]}\n    \
         - {name: \"../x\", kind: command, backup_command: [\"true\"]}\n    \
         - {kind: command}\n",
    ));
    assert_has_prefix(&p, "backup.jobs[0].paths: unknown key for a command job");
    assert_has_prefix(&p, "backup.jobs[2].name: \"../x\" is not a job name");
    assert_has_prefix(&p, "backup.jobs[3].name: missing required key");
    assert_has_prefix(&p, "backup.jobs[3].backup_command: missing required key");
    let p = problems(&with_jobs(
        "    - {name: a, kind: command, backup_command: [\"true\"]}\n    \
         - {name: a, kind: command, backup_command: [\"true\"]}\n",
    ));
    assert_has_prefix(
        &p,
        "backup.jobs[1].name: \"a\" is already the name of backup.jobs[0]",
    );
}

#[test]
fn physical_method_refusals_name_the_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let conn = format!(
        "connection: {{user: backup, password_file: {}}}",
        pw.display()
    );
    let p = problems(&with_jobs(&format!(
        "    - {{name: a, kind: mysql, method: physical, {conn}}}\n    \
         - {{name: b, kind: mariadb, method: physical, databases: [app], {conn}}}\n    \
         - {{name: c, kind: mariadb, datadir: /var/lib/mysql, {conn}}}\n    \
         - {{name: d, kind: mariadb, method: physical, datadir: /nonexistent/mysql, {conn}}}\n    \
         - {{name: e, kind: mariadb, method: physical, datadir: var/lib/mysql, {conn}}}\n    \
         - {{name: f, kind: mariadb, method: snapshot, {conn}}}\n",
    )));
    assert!(
        p.iter().all(|x| !x.contains("secret")),
        "the password never appears: {p:?}"
    );
    if stack_jobs::find_program("xtrabackup").is_none() {
        assert_has_prefix(
            &p,
            "backup.jobs[0].method: physical for kind mysql needs Percona XtraBackup",
        );
    }
    assert_has_prefix(
        &p,
        "backup.jobs[1].databases: method physical copies the whole server",
    );
    assert_has_prefix(
        &p,
        "backup.jobs[2].datadir: is only used by method: physical",
    );
    assert_has_prefix(&p, "backup.jobs[3].datadir: cannot read /nonexistent/mysql");
    assert_has_prefix(&p, "backup.jobs[4].datadir: must be an absolute path");
    assert_has_prefix(
        &p,
        "backup.jobs[5].method: expected dump or physical, got \"snapshot\"",
    );
}

#[test]
fn physical_names_the_missing_programs() {
    let both = stack_jobs::physical_missing(false, |_| false).unwrap();
    assert!(
        both.contains("\"mariadb-backup\" and \"mbstream\"")
            && both.contains("Debian package mariadb-backup"),
        "{both}"
    );
    let one = stack_jobs::physical_missing(false, |p| p == "mariadb-backup").unwrap();
    assert!(
        one.contains("\"mbstream\"") && !one.contains("\"mariadb-backup\""),
        "{one}"
    );
    let mysql = stack_jobs::physical_missing(true, |_| false).unwrap();
    assert!(
        mysql.contains("\"xtrabackup\"") && mysql.contains("not packaged in Debian"),
        "{mysql}"
    );
    assert_eq!(stack_jobs::physical_missing(false, |_| true), None);
    assert_eq!(stack_jobs::physical_missing(true, |_| true), None);
}

#[test]
fn a_physical_mariadb_job_parses_with_its_datadir() {
    let dir = tempfile::TempDir::new().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let yaml = with_jobs(&format!(
        "    - {{name: db, kind: mariadb, method: physical, datadir: {}, \
         connection: {{host: 127.0.0.1, port: 3307, user: backup, password_file: {}}}}}\n",
        dir.path().display(),
        pw.display()
    ));
    if stack_jobs::physical_missing(false, |p| stack_jobs::find_program(p).is_some()).is_some() {
        assert_has_prefix(&problems(&yaml), "backup.jobs[0].method: physical needs");
        return;
    }
    let loaded = ok(&yaml);
    let j = &loaded.config.backup.unwrap().jobs[0];
    let StackJobKind::Mariadb(m) = &j.kind else {
        panic!("{:?}", j.kind)
    };
    assert!(m.physical);
    assert_eq!(m.datadir.as_deref(), Some(dir.path()));
    assert_eq!(m.port, 3307);
    assert_eq!(m.physical_tools(), ("mariadb-backup", "mbstream"));
    // Without datadir: asked from the server at each run.
    let loaded = ok(&yaml.replace(&format!("datadir: {}, ", dir.path().display()), ""));
    let StackJobKind::Mariadb(m) = &loaded.config.backup.unwrap().jobs[0].kind else {
        panic!()
    };
    assert_eq!(m.datadir, None);
}

#[test]
fn a_restic_job_parses_with_file_checks() {
    let dir = tempfile::TempDir::new().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let sum = "ab".repeat(32);
    let yaml = with_jobs(&format!(
        "    - {{name: configs, kind: restic, repository: /srv/restic, password_file: {}, \
         paths: [/etc/nginx], exclude: [\"*.tmp\"], tags: [web], retention: {{keep_daily: 30}}, \
         drill: {{checks: [{{name: conf, path: /etc/nginx/nginx.conf, size: 10, sha256: {sum}}}]}}}}\n",
        pw.display()
    ));
    if stack_jobs::find_program("restic").is_none() {
        // Without restic installed the job is refused, naming the key.
        assert_has_prefix(
            &problems(&yaml),
            "backup.jobs[0].kind: needs the program \"restic\"",
        );
        return;
    }
    let loaded = ok(&yaml);
    let j = &loaded.config.backup.unwrap().jobs[0];
    let StackJobKind::Restic(r) = &j.kind else {
        panic!("{:?}", j.kind)
    };
    assert_eq!(r.repository, "/srv/restic");
    assert_eq!(r.paths, [std::path::PathBuf::from("/etc/nginx")]);
    assert_eq!(r.exclude, ["*.tmp"]);
    assert_eq!(r.tags, ["web"]);
    assert_eq!(j.retention.keep_daily, Some(30));
    let c = &j.drill.checks[0];
    assert_eq!(c.path.as_deref(), Some("/etc/nginx/nginx.conf"));
    assert_eq!(c.size, Some(10));
    assert_eq!(c.sha256.as_deref(), Some(sum.as_str()));
    // A relative path and a bad digest are refused, naming the key.
    let p = problems(
        &yaml
            .replace("/etc/nginx/nginx.conf", "nginx.conf")
            .replace(&sum, "xyz"),
    );
    assert_has_prefix(
        &p,
        "backup.jobs[0].drill.checks[0].path: must be an absolute path",
    );
    assert_has_prefix(
        &p,
        "backup.jobs[0].drill.checks[0].sha256: expected 64 hex digits",
    );
}
