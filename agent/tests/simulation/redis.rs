//! The Redis model: a server's dataset as a replication id and offset (with the id it
//! continued and where), what `REPLICAOF NO ONE`, `REPLICAOF host port`, `CLIENT PAUSE
//! WRITE`, a restart and the fencing timer do to them, and replication as Redis 7.0
//! decides it: a partial resync (`PSYNC`) when our id and offset are a prefix of the
//! upstream's history still in its backlog, else a full resync that replaces our data.
//!
//! Ids are unique per history (Redis draws them at random; here a counter), so the id
//! rules alone decide what a replica can continue, as they do in Redis.

use super::*;
use warden_redis::policy::{Lineage, Replication, ServerRole};

/// `repl-backlog-size`: 1 MB, Redis's default.
const BACKLOG: u64 = 1_048_576;

/// A full resync (the upstream's snapshot sent and loaded) takes this long, in ms.
const FULL_SYNC_MS: (u64, u64) = (400, 3_000);

/// A dataset's place in the replication history: `master_replid`, `master_replid2`
/// with `second_repl_offset`, `master_repl_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lin {
    pub(crate) id: u64,
    /// The id this one continued, and the first offset that is not the old id's.
    pub(crate) id2: Option<(u64, u64)>,
    pub(crate) offset: u64,
}

impl Lin {
    pub(crate) fn replid(id: u64) -> String {
        format!("{id:040x}")
    }

    pub(crate) fn lineage(&self) -> Lineage {
        Lineage {
            replid: Self::replid(self.id),
            replid2: self.id2.map(|(id, _)| Self::replid(id)),
            second_offset: self.id2.map(|(_, o)| o),
            offset: self.offset,
        }
    }
}

/// What a server does with its dataset across restarts (per seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persist {
    /// `appendonly yes` with `appendfsync always`: a restart has every write.
    Always,
    /// `save ""`, no AOF: only a `SHUTDOWN SAVE` (the end of a copy) leaves a dataset.
    Never,
}

/// Warden's marker file (`warden-redis.json`, `adapter/marker.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) cluster: Option<String>,
    pub(crate) last_role_master: bool,
    pub(crate) last: Option<Lineage>,
    pub(crate) shutdown_offset: Option<u64>,
}

/// One node's Redis: its data directory and, while it runs, the server.
#[derive(Debug)]
pub(crate) struct Rs {
    /// The data directory exists.
    pub(crate) dir: bool,
    pub(crate) marker: Option<Marker>,
    /// `redis.conf` as last written.
    pub(crate) conf: Option<Conf>,
    /// The dataset on disk with its replication info: what a start loads.
    pub(crate) disk: Option<Lin>,
    pub(crate) running: bool,
    /// Changes with every start: the pid (with its start time).
    pub(crate) incarnation: u64,
    /// Answers commands (done loading) from this instant on.
    pub(crate) ready_at: u64,
    pub(crate) master: bool,
    /// A replica's `REPLICAOF` target; `None`: 127.0.0.1 0 (no one).
    pub(crate) upstream: Option<usize>,
    pub(crate) link_up: bool,
    /// The upstream's `conn_gen` when the link came up.
    pub(crate) linked_gen: u64,
    /// Bumped whenever the server drops its replicas' links (promotion, a new
    /// upstream, a full resync, a restart).
    pub(crate) conn_gen: u64,
    /// A full resync in progress, loaded at this instant.
    pub(crate) full_sync_until: Option<u64>,
    pub(crate) lin: Lin,
    /// The first offset its backlog holds.
    pub(crate) backlog_from: u64,
    /// `CLIENT PAUSE WRITE` in force until this instant (global ms).
    pub(crate) paused_until: Option<u64>,
}

impl Rs {
    pub(crate) fn empty() -> Self {
        Self {
            dir: false,
            marker: None,
            conf: None,
            disk: None,
            running: false,
            incarnation: 0,
            ready_at: 0,
            master: false,
            upstream: None,
            link_up: false,
            linked_gen: 0,
            conn_gen: 0,
            full_sync_until: None,
            lin: Lin {
                id: 0,
                id2: None,
                offset: 0,
            },
            backlog_from: 1,
            paused_until: None,
        }
    }

    pub(crate) fn data_state(&self) -> DataState {
        match (self.dir, &self.marker) {
            (false, _) => DataState::Missing,
            (true, Some(_)) => DataState::Initialized,
            (true, None) => DataState::NoCluster,
        }
    }

    pub(crate) fn ready(&self, now: u64) -> bool {
        self.running && now >= self.ready_at
    }

    pub(crate) fn paused(&self, now: u64) -> bool {
        self.paused_until.is_some_and(|t| t > now)
    }

    /// Acknowledges writes: a master that answers and whose writes are not paused.
    pub(crate) fn writable(&self, now: u64) -> bool {
        self.ready(now) && self.master && !self.paused(now)
    }

    /// `INFO replication` as the adapter's parser returns it.
    pub(crate) fn info(&self, host_of: impl Fn(usize) -> String) -> Replication {
        let l = self.lin.lineage();
        let replica = !self.master;
        Replication {
            role: if self.master {
                ServerRole::Master
            } else {
                ServerRole::Replica
            },
            replid: l.replid,
            replid2: l.replid2,
            master_repl_offset: self.lin.offset,
            second_repl_offset: l.second_offset,
            slave_repl_offset: replica.then_some(self.lin.offset),
            slave_read_repl_offset: replica.then_some(self.lin.offset),
            link_up: replica && self.link_up,
            sync_in_progress: replica && self.full_sync_until.is_some(),
            master: replica.then(|| match self.upstream {
                Some(u) => (host_of(u), 6379),
                None => ("127.0.0.1".to_string(), 0),
            }),
            replicas: Vec::new(),
            run_id: Some(format!("{:040x}", self.incarnation)),
        }
    }

    /// `redis-server redis.conf`: the role from the file; the dataset from disk with
    /// Redis 7.0's rules for its replication info (a replica resumes the saved id and
    /// offset; a master starts a new id that continues the saved one, which it keeps
    /// as `replid2`; nothing saved: a new id at offset 0).
    pub(crate) fn start(&mut self, now: u64, startup_ms: u64, new_id: u64) {
        self.running = true;
        self.incarnation += 1;
        self.ready_at = now + startup_ms;
        self.paused_until = None;
        self.link_up = false;
        self.full_sync_until = None;
        self.conn_gen += 1;
        (self.master, self.upstream) = match self.conf {
            Some(Conf::Replica(up)) => (false, up),
            _ => (true, None),
        };
        self.lin = match (self.disk, self.master) {
            (None, _) => Lin {
                id: new_id,
                id2: None,
                offset: 0,
            },
            (Some(d), false) => Lin {
                id: d.id,
                id2: None,
                offset: d.offset,
            },
            (Some(d), true) => Lin {
                id: new_id,
                id2: Some((d.id, d.offset + 1)),
                offset: d.offset,
            },
        };
        self.backlog_from = self.lin.offset + 1;
    }

    /// The process ends (SHUTDOWN, SIGKILL, a crash): with `Persist::Always` the disk
    /// has every write.
    pub(crate) fn stop(&mut self, persist: Persist) {
        if self.running && persist == Persist::Always {
            self.disk = Some(self.lin);
        }
        self.running = false;
        self.link_up = false;
        self.full_sync_until = None;
        self.paused_until = None;
    }

    /// `REPLICAOF NO ONE`: a replica becomes a master under a new id that continues the
    /// old one (a master stays as it is).
    pub(crate) fn promote(&mut self, new_id: u64) -> bool {
        if self.master {
            return false;
        }
        self.lin = Lin {
            id: new_id,
            id2: Some((self.lin.id, self.lin.offset + 1)),
            offset: self.lin.offset,
        };
        self.master = true;
        self.upstream = None;
        self.link_up = false;
        self.full_sync_until = None;
        self.conn_gen += 1;
        true
    }

    /// `REPLICAOF host port` (`None`: 127.0.0.1 0): the data and id stay; a master
    /// becomes a read-only replica at once. Already following it: nothing changes.
    pub(crate) fn follow(&mut self, upstream: Option<usize>) {
        if !self.master && self.upstream == upstream {
            return;
        }
        self.master = false;
        self.upstream = upstream;
        self.link_up = false;
        self.full_sync_until = None;
        self.conn_gen += 1;
    }

    /// Whether the upstream `up` grants `PSYNC` from our id and offset: ours is its
    /// id, or its previous one up to where it continued, and the offset is in its
    /// backlog.
    pub(crate) fn partial_ok(mine: Lin, up: &Rs) -> bool {
        let want = mine.offset + 1;
        let lo = up
            .backlog_from
            .max((up.lin.offset + 1).saturating_sub(BACKLOG));
        let id_ok = mine.id == up.lin.id
            || up
                .lin
                .id2
                .is_some_and(|(id2, second)| id2 == mine.id && want <= second);
        id_ok && want >= lo && want <= up.lin.offset + 1
    }
}

impl World {
    pub(crate) fn new_replid(&mut self) -> u64 {
        self.next_replid += 1;
        self.next_replid
    }

    /// Redis's replication for replica `r` this tick: keep streaming, `PSYNC`, or a
    /// full resync (which ends with the upstream's data replacing ours).
    pub(crate) fn redis_replicate(&mut self, r: usize, budget: u64) {
        let now = self.now();
        let rs = &self.nodes[r].rs;
        if !rs.ready(now) || rs.master {
            return;
        }
        let Some(u) = rs.upstream.filter(|&u| u != r) else {
            self.nodes[r].rs.link_up = false;
            return;
        };
        let up = &self.nodes[u].rs;
        // A replica serves PSYNC only while its own link is up (NOMASTERLINK).
        let serves = up.ready(now) && (up.master || up.link_up);
        if !self.net_ok(r, u) || !serves {
            let rs = &mut self.nodes[r].rs;
            rs.link_up = false;
            rs.full_sync_until = None;
            return;
        }
        let (up_lin, up_gen) = (up.lin, up.conn_gen);
        let rs = &self.nodes[r].rs;
        let step = if let Some(done) = rs.full_sync_until {
            if now < done {
                return;
            }
            Step::Loaded
        } else if rs.link_up && rs.linked_gen == up_gen && rs.lin.id == up_lin.id {
            Step::Stream
        } else if Rs::partial_ok(rs.lin, up) {
            Step::Partial
        } else {
            Step::Full
        };
        let at = now + self.rng.range(FULL_SYNC_MS.0, FULL_SYNC_MS.1);
        let rs = &mut self.nodes[r].rs;
        match step {
            Step::Full => {
                rs.link_up = false;
                rs.full_sync_until = Some(at);
                self.stats.full_resyncs += 1;
                return;
            }
            Step::Loaded => {
                rs.full_sync_until = None;
                rs.lin = Lin {
                    id: up_lin.id,
                    id2: None,
                    offset: up_lin.offset,
                };
                rs.backlog_from = up_lin.offset + 1;
                rs.conn_gen += 1;
                rs.link_up = true;
                rs.linked_gen = up_gen;
            }
            Step::Partial => {
                if rs.lin.id != up_lin.id {
                    rs.lin.id2 = Some((rs.lin.id, rs.lin.offset + 1));
                    rs.lin.id = up_lin.id;
                    rs.conn_gen += 1;
                }
                rs.link_up = true;
                rs.linked_gen = up_gen;
            }
            Step::Stream => {}
        }
        rs.lin.offset = (rs.lin.offset + budget)
            .min(up_lin.offset)
            .max(rs.lin.offset);
    }

    /// The fencing timer's commands (`warden_redis::adapter::fence`): `CLIENT PAUSE
    /// WRITE` (600 s), `REPLICAOF 127.0.0.1 0`, `CLIENT KILL`, `CLIENT UNPAUSE` once
    /// demoted. A server still loading its data takes the pause (CLIENT runs while
    /// loading) but refuses `REPLICAOF` (`-LOADING`), so it stays paused; a server
    /// that does not run takes nothing.
    pub(crate) fn redis_fence(&mut self, n: usize) -> &'static str {
        let now = self.now();
        let rs = &mut self.nodes[n].rs;
        if !rs.running {
            return "not running: nothing to fence";
        }
        if !rs.ready(now) {
            rs.paused_until = Some(now + 600_000);
            return "still loading: writes paused, REPLICAOF refused";
        }
        rs.follow(None);
        rs.paused_until = None;
        "a replica of no one"
    }
}

enum Step {
    Stream,
    Partial,
    Full,
    Loaded,
}
