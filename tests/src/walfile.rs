//! Looking into WAL independently of Warden: LSN text, where the valid WAL in a segment
//! file ends (by `pg_waldump`), and fetching a segment from a node's repository with
//! `warden wal-fetch` as PostgreSQL would.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bins;
use crate::config::pg_bin_dir;
use crate::process::run_bounded;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses PostgreSQL's `X/Y` LSN notation.
pub fn parse_lsn(text: &str) -> Result<u64> {
    let (hi, lo) = text
        .trim()
        .split_once('/')
        .with_context(|| format!("{text:?} is not an LSN"))?;
    Ok((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?)
}

/// Where the valid WAL in one segment file ends, by `pg_waldump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEnd {
    /// Valid up to here ("... invalid record length at 0/4009B38: wanted 24, got 0").
    At(u64),
    /// Every record valid to the segment's end.
    WholeSegment,
    /// pg_waldump could not read it (the file must be named after its segment).
    Unreadable(String),
}

/// See [`WalEnd`].
pub fn valid_end(file: &Path) -> WalEnd {
    // Run as whoever we are: pg_waldump, unlike the server, does not refuse root, and
    // a file fetched by root is root's.
    let out = match run_bounded(
        Command::new(pg_bin_dir().join("pg_waldump")).arg(file),
        COMMAND_TIMEOUT,
    ) {
        Ok(o) => o,
        Err(e) => return WalEnd::Unreadable(e.to_string()),
    };
    let Some(last) = out.stderr.lines().rev().find(|l| !l.trim().is_empty()) else {
        // Given one segment, pg_waldump stops quietly at its end.
        return if out.code() == Some(0) {
            WalEnd::WholeSegment
        } else {
            WalEnd::Unreadable(out.describe())
        };
    };
    // "error in WAL record at 0/4009B00: invalid record length at 0/4009B38: ...":
    // the last position named is where valid WAL ends.
    let at = last
        .contains("error in WAL record")
        .then(|| last.rsplit(" at ").next())
        .flatten()
        .and_then(|after| after.split([':', ',', ' ']).next())
        .and_then(|lsn| parse_lsn(lsn).ok());
    match at {
        Some(lsn) => WalEnd::At(lsn),
        None => WalEnd::Unreadable(last.to_owned()),
    }
}

/// `warden wal-fetch -c <config> <segment> <dest>` in `data_dir` (where PostgreSQL
/// runs it, so the system identifier is found). `Ok(false)`: not in the repository.
pub fn fetch(config: &Path, data_dir: &Path, segment: &str, dest: &Path) -> Result<bool> {
    let out = run_bounded(
        Command::new(bins::warden_bin()?)
            .current_dir(data_dir)
            .arg("wal-fetch")
            .arg("-c")
            .arg(config)
            .arg(segment)
            .arg(dest),
        COMMAND_TIMEOUT,
    )?;
    match out.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("wal-fetch {segment}: {}", out.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns() {
        assert_eq!(parse_lsn("0/4009B38").unwrap(), 0x4009B38);
        assert_eq!(parse_lsn("1A/0").unwrap(), 0x1A_0000_0000);
        assert!(parse_lsn("4009B38").is_err());
    }
}
