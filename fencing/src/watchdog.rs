//! The Linux watchdog device (`/dev/watchdog`), as Patroni uses it: while this node
//! leads, the agent keeps the timer fed; if the whole machine or the agent hangs, the
//! kernel resets the machine before the lease can expire and a new primary is elected.

// The one ioctl the Linux watchdog API needs (set the timeout) has no safe wrapper.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

// WDIOC_SETTIMEOUT = _IOWR('W', 6, int) from <linux/watchdog.h>.
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, i32);

#[derive(Debug)]
pub struct Watchdog {
    file: Option<File>,
    device: PathBuf,
}

impl Watchdog {
    /// Opens (and thereby arms) the device with `timeout`.
    pub fn open(device: &Path, timeout: Duration) -> std::io::Result<Self> {
        let file = OpenOptions::new().write(true).open(device)?;
        let mut secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        // SAFETY: `file` is an open watchdog device and `secs` a valid, live `int` the
        // kernel reads and overwrites with the timeout it actually set.
        if let Err(e) = unsafe { wdioc_settimeout(file.as_raw_fd(), &mut secs) } {
            let mut wd = Self {
                file: Some(file),
                device: device.to_path_buf(),
            };
            wd.disable();
            return Err(std::io::Error::other(format!(
                "{}: cannot set the timeout: {e}",
                device.display()
            )));
        }
        Ok(Self {
            file: Some(file),
            device: device.to_path_buf(),
        })
    }

    /// Resets the timer.
    pub fn keepalive(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(b"\0").and_then(|()| f.flush()),
            None => Err(std::io::Error::other("watchdog already disabled")),
        }
    }

    /// Disarms the device with the "magic close" so closing it does not reset the machine.
    pub fn disable(&mut self) {
        if let Some(mut f) = self.file.take() {
            if let Err(e) = f.write_all(b"V") {
                eprintln!(
                    "warden: cannot disarm watchdog {}: {e}",
                    self.device.display()
                );
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.disable();
    }
}

/// Whether the device can be opened at all (opened and at once disarmed).
pub fn available(device: &Path) -> Result<(), String> {
    match OpenOptions::new().write(true).open(device) {
        Ok(mut f) => {
            let _ = f.write_all(b"V");
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", device.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_reported_with_its_path() {
        let err = available(Path::new("/nonexistent/watchdog")).unwrap_err();
        assert!(err.contains("/nonexistent/watchdog"), "{err}");
        assert!(
            Watchdog::open(Path::new("/nonexistent/watchdog"), Duration::from_secs(5)).is_err()
        );
    }

    #[test]
    fn a_regular_file_is_not_a_watchdog() {
        let f = tempfile_path();
        std::fs::write(&f, b"").unwrap();
        let err = Watchdog::open(&f, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("cannot set the timeout"), "{err}");
        assert_eq!(
            std::fs::read(&f).unwrap(),
            b"V",
            "a failed open must still disarm"
        );
        std::fs::remove_file(&f).unwrap();
    }

    fn tempfile_path() -> PathBuf {
        std::env::temp_dir().join(format!("warden-wd-test-{}", std::process::id()))
    }
}
