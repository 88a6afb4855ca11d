//! `backup.jobs` of kind `restic` (issue 15), end to end through `wardenctl` and the
//! real `restic` (Debian package): Warden initialises restic's repository, backs up
//! the job's paths with its excludes and tags, records each run in its own
//! repository (`backup list --job`), applies the job's retention with `restic forget
//! --prune` (Warden's records follow), verifies with `restic check
//! --read-data-subset`, drills with `restic restore` into a scratch directory plus
//! the file checks (size, SHA-256), and restores with `restore --job --to`. Plain
//! `restic snapshots`, run here by hand, lists exactly what Warden made. The
//! password never appears in wardenctl's output.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use warden_tests::backupkit::{key_file, wardenctl_logged};
use warden_tests::workdir::WorkDir;

const PASSWORD: &str = "restic-pw-never-logged";

fn json_of(config: &Path, args: &[&str]) -> Value {
    let out = wardenctl_logged(config, args);
    assert_eq!(
        out.code(),
        Some(0),
        "wardenctl {args:?}: {}",
        out.describe()
    );
    assert!(
        !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
        "the restic password leaked: {}",
        out.describe()
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
// One story, in order: each step reads what the previous one left.
#[allow(clippy::too_many_lines)]
fn restic_job_backs_up_forgets_checks_drills_and_restores() {
    let work = WorkDir::temp().unwrap();
    let dir = work.path();
    let files = dir.join("app");
    std::fs::create_dir_all(files.join("conf")).unwrap();
    let content = b"server { listen 80; }\n".repeat(50);
    std::fs::write(files.join("conf/nginx.conf"), &content).unwrap();
    std::fs::write(files.join("scratch.tmp"), b"excluded").unwrap();
    let sum = hex::encode(Sha256::digest(&content));
    let pw = dir.join("restic.pass");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let restic_repo = dir.join("restic-repo");
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let key = key_file(dir).unwrap();
    let conf = files.join("conf/nginx.conf");
    let yaml = format!(
        r#"scope: stackrestic
name: ctl
backup:
  repository: {{type: filesystem, path: {repo}, timeout: 10s}}
  encryption_key_file: {key}
  jobs:
    - name: configs
      kind: restic
      repository: {restic_repo}
      password_file: {pw}
      paths: [{files}]
      exclude: ["*.tmp"]
      tags: [app]
      schedule: "0 3 * * *"
      retention: {{keep_last: 2}}
      drill:
        checks:
          - {{name: nginx, path: {conf}, size: {size}, sha256: {sum}}}
"#,
        repo = repo.display(),
        key = key.display(),
        restic_repo = restic_repo.display(),
        pw = pw.display(),
        files = files.display(),
        conf = conf.display(),
        size = content.len(),
    );
    let cfg = dir.join("warden.yml");
    std::fs::write(&cfg, yaml).unwrap();

    let mut snaps = Vec::new();
    for _ in 0..3 {
        let v = json_of(&cfg, &["backup", "create", "--job", "configs", "--json"]);
        snaps.push(v["snapshot"].as_str().expect("a snapshot id").to_owned());
    }
    let list = json_of(&cfg, &["backup", "list", "--job", "configs", "--json"]);
    let listed: Vec<&str> = list["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&snaps[1], &snaps[2]], "keep_last 2: {list}");

    // Plain restic lists what Warden made: the two kept snapshots, with the tags.
    let out = Command::new("restic")
        .args(["--repo", restic_repo.to_str().unwrap()])
        .args(["--password-file", pw.to_str().unwrap()])
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_hand: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    // Warden records restic's short snapshot id (what `restic backup` prints).
    let mut ids: Vec<&str> = by_hand
        .iter()
        .map(|s| s["short_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = vec![snaps[1].as_str(), snaps[2].as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "restic snapshots by hand");
    let tags = &by_hand[0]["tags"];
    for t in ["warden", "warden-job=configs", "app"] {
        assert!(tags.as_array().unwrap().iter().any(|x| x == t), "{tags}");
    }

    let out = wardenctl_logged(&cfg, &["backup", "verify", "--job", "configs"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("restic check"), "{}", out.stdout);

    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let drill = json_of(
        &cfg,
        &[
            "drill",
            "--job",
            "configs",
            "--scratch-dir",
            scratch.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["checks"][0]["ok"], true, "{drill}");
    assert!(
        std::fs::read_dir(&scratch).unwrap().next().is_none(),
        "scratch cleaned up"
    );

    let to = dir.join("restored");
    let out = wardenctl_logged(
        &cfg,
        &["restore", "--job", "configs", "--to", to.to_str().unwrap()],
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let restored = to.join(conf.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(&restored).unwrap(), content);
    assert!(
        !to.join(files.join("scratch.tmp").strip_prefix("/").unwrap())
            .exists(),
        "excluded file restored"
    );

    // A check that does not match fails the drill.
    let bad = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&sum, &"0".repeat(64));
    std::fs::write(&cfg, bad).unwrap();
    let out = wardenctl_logged(&cfg, &["drill", "--job", "configs"]);
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("nginx FAILED"), "{}", out.describe());
}
