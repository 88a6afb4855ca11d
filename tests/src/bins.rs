//! Locating the binaries under test and the external tools.
//!
//! `WARDEN_BIN_DIR` wins (deploy/test.sh builds once and exports it). Without
//! it, the kit runs `cargo build -p warden-agent -p warden-ctl --bins` once per process and
//! takes the `warden` path from cargo's own JSON messages, which is correct
//! whatever target directory is configured (CARGO_TARGET_DIR, .cargo/config).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};

pub const BIN_DIR_ENV: &str = "WARDEN_BIN_DIR";
pub const PATRONICTL_ENV: &str = "WARDEN_PATRONICTL";

/// The workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Directory holding the `warden` binaries.
pub fn bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| locate_bin_dir().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Path of the `warden` agent binary.
pub fn warden_bin() -> Result<PathBuf> {
    let p = bin_dir()?.join("warden");
    if !p.is_file() {
        bail!(
            "{} does not exist (is the warden-agent package built?)",
            p.display()
        );
    }
    Ok(p)
}

/// Path of the `wardenctl` binary (package `warden-ctl`, built beside the agent).
pub fn wardenctl_bin() -> Result<PathBuf> {
    let p = bin_dir()?.join("wardenctl");
    if !p.is_file() {
        bail!(
            "{} does not exist (is the warden-ctl package built?)",
            p.display()
        );
    }
    Ok(p)
}

/// A `wardenctl` command that nothing from the caller's environment configures: no
/// config file or DCS from env vars, no user's `patronictl.yaml`.
pub fn wardenctl_command() -> Result<std::process::Command> {
    let mut cmd = std::process::Command::new(wardenctl_bin()?);
    for var in [
        "WARDENCTL_CONFIG_FILE",
        "PATRONICTL_CONFIG_FILE",
        "DCS_URL",
        "PATRONI_SCOPE",
        "PATRONI_NAMESPACE",
        "PATRONI_ETCD3_HOSTS",
        "PATRONI_ETCD3_HOST",
        "PATRONI_RESTAPI_USERNAME",
        "PATRONI_RESTAPI_PASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("XDG_CONFIG_HOME", "/nonexistent");
    Ok(cmd)
}

fn locate_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    build_agent()
}

/// `cargo build -p warden-agent -p warden-ctl --bins` (`warden` and `wardenctl`),
/// returning the directory of `warden`.
fn build_agent() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    eprintln!("warden-tests: building warden-agent and warden-ctl (set {BIN_DIR_ENV} to skip)");
    let out = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "-p",
            "warden-agent",
            "-p",
            "warden-ctl",
            "--bins",
            "--message-format=json-render-diagnostics",
        ])
        .output()
        .with_context(|| format!("running {cargo:?} build in {}", root.display()))?;
    if !out.status.success() {
        bail!(
            "cargo build -p warden-agent -p warden-ctl failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    executable_dir(&stdout, "warden")
        .context("cargo build succeeded but reported no `warden` executable")
}

/// From cargo's JSON messages, the directory of the executable named `name`.
fn executable_dir(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .find_map(|exe| exe.parent().map(Path::to_path_buf))
}

/// Default location of the patronictl venv made by deploy/dev-setup.sh.
pub fn default_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("WARDEN_VENV") {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/warden-venv")
}

/// `patronictl`: `WARDEN_PATRONICTL`, else the default venv. An error (never
/// a silent skip) when neither exists.
pub fn patronictl() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(PATRONICTL_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "{PATRONICTL_ENV}={} does not exist; run deploy/dev-setup.sh",
            p.display()
        );
    }
    let p = default_venv().join("bin/patronictl");
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "patronictl not found ({PATRONICTL_ENV} unset, {} missing); run deploy/dev-setup.sh to create the venv",
        p.display()
    )
}

/// An external tool on PATH (etcd, haproxy), with a hint when it is missing.
pub fn tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` not found on PATH; run deploy/dev-setup.sh"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let msgs = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"warden_consensus"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"wardenctl"},"executable":"/t/debug/wardenctl"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"warden"},"executable":"/t/debug/warden"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            executable_dir(msgs, "warden"),
            Some(PathBuf::from("/t/debug"))
        );
        assert_eq!(executable_dir(msgs, "nope"), None);
    }

    #[test]
    fn workspace_root_is_the_parent_of_this_package() {
        assert!(workspace_root().join("tests/Cargo.toml").is_file());
    }

    #[test]
    fn tools_are_found_or_named() {
        assert!(tool("sh").is_ok());
        let e = tool("no-such-tool-xyz").unwrap_err().to_string();
        assert!(
            e.contains("no-such-tool-xyz") && e.contains("dev-setup.sh"),
            "{e}"
        );
    }
}
