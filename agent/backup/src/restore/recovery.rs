//! Turns an extracted backup into a data directory that starts in archive recovery:
//! `recovery.signal`, and a delimited block of settings appended to
//! `postgresql.auto.conf` (read after `postgresql.conf`, so it wins over whatever the
//! source member's managed configuration said).
//!
//! ```text
//! # BEGIN warden restore
//! restore_command = '/usr/bin/warden wal-fetch -c /etc/warden/warden.yml %f %p'
//! recovery_target_time = '2026-12-02 12:30:00.000000+00'
//! recovery_target_timeline = 'latest'
//! recovery_target_action = 'promote'
//! archive_mode = 'off'
//! primary_conninfo = ''
//! primary_slot_name = ''
//! synchronous_standby_names = ''
//! # END warden restore
//! ```
//!
//! `recovery_target_action = 'promote'`: the restored server ends recovery at the
//! target and opens for writes on a new timeline (PostgreSQL's default, `pause`, would
//! leave it read-only waiting for `pg_wal_replay_resume()`). `archive_mode = off`: a
//! restored copy never writes into the production repository. The source was a
//! replica, so its `primary_conninfo`/`primary_slot_name` are blanked and
//! `standby.signal` removed; `synchronous_standby_names` is cleared so the restored
//! server's writes never wait for standbys it does not have.

use std::fs;
use std::path::Path;

use super::target::Target;

pub const BEGIN: &str = "# BEGIN warden restore";
pub const END: &str = "# END warden restore";

/// How a restored server ends recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub target: Target,
    /// PostgreSQL's `restore_command`.
    pub restore_command: String,
    /// `recovery_target_action`: `promote` (default), `pause` or `shutdown`.
    pub action: &'static str,
    /// Keep `archive_mode = off` on the restored copy (the default; only a new cluster
    /// bootstrapped from the repository turns archiving back on through Warden).
    pub archive_off: bool,
    /// A new replica (`create_replica_methods: [warden_restore]`): `standby.signal`,
    /// and only `restore_command` (no target, no promotion; the agent's managed
    /// configuration supplies `primary_conninfo`).
    pub standby: bool,
}

/// `warden wal-fetch -c CONFIG %f %p`, words quoted for the shell PostgreSQL uses.
pub fn restore_command(warden_bin: &Path, config: &Path) -> String {
    restore_command_from(warden_bin, config, None)
}

/// [`restore_command`] reading from repository `repository` (a `backup.copies` name):
/// `warden wal-fetch -c CONFIG --repository NAME %f %p`.
pub fn restore_command_from(warden_bin: &Path, config: &Path, repository: Option<&str>) -> String {
    restore_command_for(warden_bin, config, repository, None)
}

/// [`restore_command_from`] reading another cluster's WAL (`scope`, e.g. a standby
/// cluster with a scope of its own fed from the primary cluster's repository):
/// `warden wal-fetch -c CONFIG [--repository NAME] [--scope SCOPE] %f %p`.
pub fn restore_command_for(
    warden_bin: &Path,
    config: &Path,
    repository: Option<&str>,
    scope: Option<&str>,
) -> String {
    let mut from =
        repository.map_or_else(String::new, |r| format!(" --repository {}", shell_word(r)));
    if let Some(s) = scope {
        from.push_str(&format!(" --scope {}", shell_word(s)));
    }
    format!(
        "{} wal-fetch -c {}{from} %f %p",
        shell_word(&warden_bin.to_string_lossy()),
        shell_word(&config.to_string_lossy())
    )
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@,".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A GUC value in postgresql.conf syntax.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The settings block for `recovery`.
pub fn render_block(recovery: &Recovery) -> String {
    let mut lines = vec![BEGIN.to_owned()];
    let mut set = |k: &str, v: &str| lines.push(format!("{k} = {}", quote(v)));
    set("restore_command", &recovery.restore_command);
    if recovery.standby {
        set("recovery_target_timeline", "latest");
        lines.push(END.to_owned());
        return lines.join("\n") + "\n";
    }
    for (k, v) in recovery.target.settings() {
        set(k, &v);
    }
    set("recovery_target_timeline", "latest");
    set("recovery_target_action", recovery.action);
    if recovery.archive_off {
        set("archive_mode", "off");
    }
    set("primary_conninfo", "");
    set("primary_slot_name", "");
    set("synchronous_standby_names", "");
    lines.push(END.to_owned());
    lines.join("\n") + "\n"
}

/// `text` without a Warden restore block.
pub fn strip_block(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        match line.trim() {
            BEGIN => inside = true,
            END if inside => inside = false,
            _ if inside => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Writes `recovery.signal` and the settings block into the data directory `dir`.
pub fn configure(dir: &Path, recovery: &Recovery) -> std::io::Result<()> {
    remove_stale(
        dir,
        &["standby.signal", "recovery.signal", "postmaster.pid"],
    )?;
    replace_block(dir, &render_block(recovery))?;
    let signal = if recovery.standby {
        "standby.signal"
    } else {
        "recovery.signal"
    };
    replace_file(dir, signal, "")?;
    Ok(())
}

/// Writes `recovery.signal` and a block of the given recovery settings (a custom
/// bootstrap's `recovery_conf`), replacing any earlier block; removed again by
/// [`unconfigure`].
pub fn configure_settings(dir: &Path, settings: &[(String, String)]) -> std::io::Result<()> {
    remove_stale(dir, &["standby.signal", "recovery.signal"])?;
    let mut block = format!("{BEGIN}\n");
    for (k, v) in settings {
        block.push_str(&format!("{k} = {}\n", quote(v)));
    }
    block.push_str(END);
    block.push('\n');
    replace_block(dir, &block)?;
    replace_file(dir, "recovery.signal", "")
}

/// Removes the named files of `dir` (a link is removed, not followed); absent is fine.
fn remove_stale(dir: &Path, names: &[&str]) -> std::io::Result<()> {
    for stale in names {
        match fs::remove_file(dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// `postgresql.auto.conf` with `block` in place of any earlier Warden block.
fn replace_block(dir: &Path, block: &str) -> std::io::Result<()> {
    let existing = fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap_or_default();
    let mut text = strip_block(&existing);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(block);
    replace_file(dir, "postgresql.auto.conf", &text)
}

/// Writes `dir/name` as a new file (never through a link the data directory's owner
/// may have left there, at the name or at the temporary name), owned like `dir`, then
/// renamed into place.
fn replace_file(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let tmp = dir.join(format!("{name}.warden-tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let owner = fs::metadata(dir)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))?;
    }
    drop(f);
    fs::rename(&tmp, dir.join(name))
}

/// Removes the block again (a bootstrapped cluster, once recovery ended).
pub fn unconfigure(dir: &Path) -> std::io::Result<()> {
    let auto = dir.join("postgresql.auto.conf");
    let existing = fs::read_to_string(&auto)?;
    let stripped = strip_block(&existing);
    if stripped != existing {
        replace_file(dir, "postgresql.auto.conf", &stripped)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::target::parse_time;

    fn recovery(target: Target) -> Recovery {
        Recovery {
            target,
            restore_command: restore_command(
                Path::new("/usr/bin/warden"),
                Path::new("/etc/warden/it's.yml"),
            ),
            action: "promote",
            archive_off: true,
            standby: false,
        }
    }

    #[test]
    fn restore_command_names_the_copy() {
        let bin = Path::new("/usr/bin/warden");
        let cfg = Path::new("/etc/warden/w.yml");
        assert_eq!(
            restore_command_from(bin, cfg, Some("offsite")),
            "/usr/bin/warden wal-fetch -c /etc/warden/w.yml --repository offsite %f %p"
        );
        assert_eq!(
            restore_command_from(bin, cfg, None),
            restore_command(bin, cfg)
        );
        assert_eq!(
            restore_command_for(bin, cfg, Some("offsite"), Some("site a")),
            "/usr/bin/warden wal-fetch -c /etc/warden/w.yml --repository offsite --scope 'site a' %f %p"
        );
    }

    #[test]
    fn renders_the_recovery_block() {
        let t = Target::Time(parse_time("2026-12-02T12:30:00Z").unwrap());
        let block = render_block(&recovery(t));
        assert!(block.starts_with(BEGIN), "{block}");
        assert!(block.contains(
            "restore_command = '/usr/bin/warden wal-fetch -c ''/etc/warden/it''\\''''s.yml'' %f %p'"
        ), "{block}");
        assert!(block.contains("recovery_target_time = '2026-12-02 12:30:00.000000+00'"));
        assert!(block.contains("recovery_target_timeline = 'latest'"));
        assert!(block.contains("recovery_target_action = 'promote'"));
        assert!(block.contains("archive_mode = 'off'"));
        assert!(block.contains("primary_conninfo = ''"));
        assert!(block.trim_end().ends_with(END));
    }

    #[test]
    fn links_in_the_data_directory_are_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        for name in [
            "postgresql.auto.conf",
            "recovery.signal",
            "postgresql.auto.conf.warden-tmp",
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        configure_settings(dir.path(), &[("restore_command".into(), "cp a %p".into())]).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let auto = dir.path().join("postgresql.auto.conf");
        assert!(fs::symlink_metadata(&auto).unwrap().file_type().is_file());
        assert!(fs::read_to_string(&auto)
            .unwrap()
            .contains("restore_command"));
        unconfigure(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
    }

    #[test]
    fn a_standby_keeps_its_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = recovery(Target::Latest);
        r.standby = true;
        configure(dir.path(), &r).unwrap();
        let text = fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert!(text.contains("restore_command"), "{text}");
        for absent in ["primary_conninfo", "recovery_target_action", "archive_mode"] {
            assert!(!text.contains(absent), "{text}");
        }
        assert!(dir.path().join("standby.signal").exists());
        assert!(!dir.path().join("recovery.signal").exists());
    }

    #[test]
    fn configure_is_idempotent_and_reversible() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("postgresql.auto.conf"), "work_mem = '8MB'").unwrap();
        fs::write(dir.path().join("standby.signal"), "").unwrap();
        configure(dir.path(), &recovery(Target::Immediate)).unwrap();
        configure(dir.path(), &recovery(Target::Latest)).unwrap();
        let text = fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert_eq!(text.matches(BEGIN).count(), 1, "{text}");
        assert!(!text.contains("recovery_target = 'immediate'"), "{text}");
        assert!(text.starts_with("work_mem = '8MB'\n"));
        assert!(dir.path().join("recovery.signal").exists());
        assert!(!dir.path().join("standby.signal").exists());
        unconfigure(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert_eq!(text, "work_mem = '8MB'\n");
    }
}
