//! The PostgreSQL model: timelines as epochs of WAL, streaming between servers whose
//! histories allow it, what the probe sees, and pg_rewind as PostgreSQL 15 decides.

use super::*;
use warden_pg::sql::Probe;

/// Whether a server at `mine` can stream from one at `theirs`, and where `budget` more
/// bytes take it: our timeline must be on their history, and we must not have gone past
/// the point where they forked off it (PostgreSQL refuses that: "new timeline forked off
/// current database system timeline before current recovery point").
pub(crate) fn stream(epochs: &[Epoch], mine: Wal, theirs: Wal, budget: u64) -> Option<Wal> {
    let mut path = Vec::new();
    let mut e = theirs.epoch;
    while e != mine.epoch {
        path.push(e);
        e = epochs[e].parent?;
    }
    if let Some(&child) = path.last() {
        if mine.lsn > epochs[child].start {
            return None;
        }
    }
    let lsn = (mine.lsn + budget).min(theirs.lsn).max(mine.lsn);
    let mut wal = Wal {
        epoch: mine.epoch,
        lsn,
    };
    for &c in path.iter().rev() {
        if epochs[c].start <= lsn {
            wal.epoch = c;
        }
    }
    Some(wal)
}

impl Pg {
    pub(crate) fn empty() -> Self {
        Self {
            data: DataState::Missing,
            wal: Wal { epoch: 0, lsn: 0 },
            control_primary: false,
            clean_shutdown: false,
            backup_label: false,
            standby_signal: false,
            conf: None,
            checkpoint_tl: 1,
            running: false,
            incarnation: 0,
            ready_at: 0,
            in_recovery: false,
            upstream: None,
            streaming: false,
        }
    }

    pub(crate) fn ready(&self, now: u64) -> bool {
        self.running && now >= self.ready_at
    }

    /// Accepts and acknowledges writes.
    pub(crate) fn writable(&self, now: u64) -> bool {
        self.ready(now) && !self.in_recovery
    }

    /// The postmaster starts: standby.signal decides the role, the configuration
    /// written last whom a replica streams from.
    pub(crate) fn start(&mut self, now: u64, startup_ms: u64, timeline: u32) {
        self.running = true;
        self.incarnation += 1;
        self.ready_at = now + startup_ms;
        self.in_recovery = self.standby_signal;
        self.upstream = match self.conf {
            Some(Conf::Replica(up)) if self.in_recovery => up,
            _ => None,
        };
        self.streaming = false;
        self.control_primary = !self.in_recovery;
        self.clean_shutdown = false;
        // Recovery renames backup_label away.
        self.backup_label = false;
        if !self.in_recovery {
            self.checkpoint_tl = timeline;
        }
    }

    pub(crate) fn stop(&mut self, clean: bool) {
        if self.running {
            self.clean_shutdown = clean;
        }
        self.running = false;
        self.streaming = false;
    }
}

pub(crate) fn timeline(epochs: &[Epoch], pg: &Pg) -> u32 {
    epochs[pg.wal.epoch].timeline
}

/// What `Sql::probe` returns for this server.
pub(crate) fn probe_of(epochs: &[Epoch], pg: &Pg) -> Probe {
    let lsn = Some(pg.wal.lsn);
    Probe {
        in_recovery: pg.in_recovery,
        timeline: Some(timeline(epochs, pg)),
        wal_position: lsn,
        receive_lsn: pg.in_recovery.then_some(pg.wal.lsn),
        replay_lsn: pg.in_recovery.then_some(pg.wal.lsn),
        streaming: pg.in_recovery && pg.streaming,
        system_identifier: SYSID.into(),
        server_version: 150_000,
        ..Probe::default()
    }
}

/// pg_rewind as PostgreSQL 15 decides: same timeline number → "no rewind required"
/// (even when the two timelines are different histories); target not diverged → nothing
/// to do; otherwise the target gets the source's history (and its configuration files).
pub(crate) fn pg_rewind(epochs: &[Epoch], target: &mut Pg, source: &Pg) -> &'static str {
    if timeline(epochs, target) == timeline(epochs, source) {
        return "source and target cluster are on the same timeline; no rewind required";
    }
    if stream(epochs, target.wal, source.wal, 0).is_some() {
        return "no rewind required";
    }
    target.wal = source.wal;
    target.backup_label = true;
    target.control_primary = !source.in_recovery;
    target.conf = None;
    "rewound onto the source's timeline"
}
