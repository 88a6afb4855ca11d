//! System V shared memory a killed postmaster leaves behind.
//!
//! PostgreSQL keeps a small System V segment beside its mmap'd memory. A postmaster
//! that exits cleanly removes it; one the kit kills at the end of a test does not, and
//! its data directory is deleted with the test, so no later start removes it either.
//! The kernel allows 4096 segments (`kernel.shmmni`): after a few thousand killed
//! clusters on one machine every `initdb` fails. The kit sweeps orphans when a cluster
//! is dropped.

use std::path::Path;

/// One row of `/proc/sysvipc/shm` the sweep cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    shmid: i64,
    creator: i32,
    attached: u64,
    uid: u32,
}

/// The segments of `table` (the text of `/proc/sysvipc/shm`) owned by `uid` that no
/// process is attached to and whose creator is gone (`alive` says whether a pid runs).
/// A live postmaster stays attached to its segment, so none of these is in use.
fn orphans(table: &str, uid: u32, alive: impl Fn(i32) -> bool) -> Vec<i64> {
    table
        .lines()
        .skip(1)
        .filter_map(parse)
        .filter(|s| s.uid == uid && s.attached == 0 && !alive(s.creator))
        .map(|s| s.shmid)
        .collect()
}

fn parse(line: &str) -> Option<Segment> {
    // key shmid perms size cpid lpid nattch uid ...
    let f: Vec<&str> = line.split_whitespace().collect();
    Some(Segment {
        shmid: f.get(1)?.parse().ok()?,
        creator: f.get(4)?.parse().ok()?,
        attached: f.get(6)?.parse().ok()?,
        uid: f.get(7)?.parse().ok()?,
    })
}

/// Removes the orphaned segments of PostgreSQL's user (best effort: a failure only
/// leaves the segment, as before).
pub fn sweep_postgres_orphans() {
    let Ok(Some((uid, _))) = crate::workdir::postgres_owner() else {
        return;
    };
    let Ok(table) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return;
    };
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    for id in orphans(&table, uid.as_raw(), alive) {
        let _ = std::process::Command::new("ipcrm")
            .args(["-m", &id.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "       key      shmid perms size  cpid  lpid nattch   uid   gid
  10846211     688128   600   56   900   924      0   101   104
  10846210     688129   600   56  1058  1069      1   101   104
  10387593     851970   600   56 13511 13563      0   101   104
  10387484     753667   600   56 14032 14039      0     0     0
";

    #[test]
    fn only_unattached_segments_of_dead_creators_owned_by_the_user() {
        let alive = |pid: i32| pid == 13511;
        assert_eq!(orphans(TABLE, 101, alive), vec![688128]);
        assert_eq!(orphans(TABLE, 101, |_| false), vec![688128, 851970]);
        assert_eq!(orphans(TABLE, 0, |_| false), vec![753667]);
    }

    #[test]
    fn malformed_rows_are_skipped() {
        assert!(orphans("header\nnot a row\n", 101, |_| false).is_empty());
    }
}
