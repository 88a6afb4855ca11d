//! A real S3-compatible server for tests: `moto_server` (PyPI `moto[server]`, in the
//! venv deploy/dev-setup.sh makes), on its own loopback port, in its own directory,
//! killed on drop.
//!
//! moto keeps everything in memory and accepts any credentials, so tests configure
//! fixed dummy ones ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::Managed;
use crate::{bins, http, ports, wait};

pub const MOTO_ENV: &str = "WARDEN_MOTO_SERVER";
pub const ACCESS_KEY_ID: &str = "warden-test";
pub const SECRET_ACCESS_KEY: &str = "warden-test-secret";
pub const REGION: &str = "us-east-1";
/// Bound for moto to start answering (it imports a lot of Python first).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `moto_server`: `WARDEN_MOTO_SERVER`, else the default venv. An error (never a
/// silent skip) when neither exists.
pub fn moto_server_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(MOTO_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "{MOTO_ENV}={} does not exist; run deploy/dev-setup.sh",
            p.display()
        );
    }
    let p = bins::default_venv().join("bin/moto_server");
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "moto_server not found ({MOTO_ENV} unset, {} missing); run deploy/dev-setup.sh",
        p.display()
    )
}

/// A running moto server.
#[derive(Debug)]
pub struct S3Server {
    port: u16,
    proc: Managed,
}

impl S3Server {
    /// Starts moto in `dir` (created) and waits until it answers.
    pub fn start(dir: &Path) -> Result<S3Server> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = ports::free_port()?;
        let log = dir.join("moto.log");
        let mut cmd = Command::new(moto_server_bin()?);
        cmd.current_dir(dir)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut proc = Managed::spawn("moto_server", &mut cmd, &log)?;
        wait::register_log(&log);
        let url = format!("http://127.0.0.1:{port}/");
        let up = wait::poll_until(START_TIMEOUT, || {
            if !proc.is_running() {
                return Some(false);
            }
            http::get_with_timeout(&url, Duration::from_secs(2))
                .ok()
                .map(|_| true)
        });
        if up != Some(true) {
            bail!(
                "moto_server on port {port} did not answer within {START_TIMEOUT:?}:\n{}",
                wait::tail(&log, 30)
            );
        }
        Ok(S3Server { port, proc })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let url = format!("{}/{bucket}", self.endpoint());
        let resp = http::send("PUT", &url, None, None, Duration::from_secs(10))?;
        if !(200..300).contains(&resp.status) {
            bail!(
                "creating bucket {bucket}: HTTP {} {}",
                resp.status,
                resp.body
            );
        }
        Ok(())
    }

    /// Sends `sig` to the server: `SIGSTOP` makes an unreachable S3 (requests time out,
    /// the data stays), `SIGCONT` brings it back.
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> Result<()> {
        self.proc.signal(sig)
    }

    /// The log file, for assertion messages.
    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }
}
