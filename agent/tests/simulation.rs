//! Seeded, deterministic simulation of a three-member Warden cluster (DESIGN.md §7).
//!
//! Three agents run the real [`decide`] against a simulated world:
//!
//! - an etcd model ([`Store`]): revisions, leases with a TTL, create-only and
//!   value-guarded transactions, keys that vanish when their lease expires, and a watch
//!   that wakes the agents when the leader, initialize or config key changes. Agents read
//!   it the way the real loop does, through [`Cluster::from_snapshot`] over Patroni's
//!   key layout and JSON values;
//! - one PostgreSQL per node ([`Pg`]): data directory, control file, running or not,
//!   primary or replica, timeline history and WAL position; primaries grow their WAL
//!   under a workload, replicas stream from their upstream while the two can talk and
//!   their histories allow it; pg_rewind and pg_basebackup;
//! - the agent's loop ([`Agent`], [`Turn`]) cut into the same phases as `run.rs`
//!   (`turn()`): keepalive, DCS read, local probe, peer probes (answered by the real
//!   `views::patroni` and read by the real `parse_status`), failsafe round, decide, one
//!   action at a time (mirroring `execute.rs`), publish, feed the guard. Each phase takes
//!   simulated time, and an agent can be frozen between any two of them;
//! - the fencing timer (`fence.rs`: read-only at the local deadline, part of the agent
//!   process), the guard process (`warden guard`: kills the postmaster at
//!   deadline + margin/2, outlives the agent, exits once its deadline passed) and, on
//!   some seeds, a watchdog device (resets the machine when the leader's agent stops
//!   feeding it); local deadlines are the real [`LeaseDeadline`] on per-node clocks that
//!   drift by up to ±0.5 %;
//! - on some seeds, failsafe mode (`/failsafe` key, `POST /failsafe` confirmations);
//!   per seed also `primary_start_timeout` and `check_timeline`;
//! - faults chosen by the seeded RNG: machine crash (now and then with a new, empty
//!   disk), SIGKILL of the agent alone, SIGSTOP of the agent (also aimed at the moments
//!   right after taking the key or promoting), partition from etcd alone or from etcd
//!   and the peers, PostgreSQL crash. Every run's fault phase starts by crashing the
//!   leader, so every run fails over at least once.
//!
//! Time is a `u64` count of simulated milliseconds; nothing sleeps and nothing reads a
//! clock, so a seed replays exactly. After every event the safety invariants are checked
//! ([`World::check_safety`]); at the end, all faults healed for a minute, liveness
//! ([`World::check_liveness`]): one writable primary holding the leader key, and every
//! other node a replica streaming from it (so no node is left on a diverged timeline).
//!
//! Environment:
//! - `WARDEN_SIM_SEED=1234`: run only that seed and print its whole trace, e.g.
//!   `WARDEN_SIM_SEED=1234 cargo test -p warden-agent --test simulation -- --nocapture`;
//! - `WARDEN_SIM_SEEDS=1000`: run seeds 0..1000 instead of the default set;
//! - `WARDEN_SIM_FIXES=guard-respawn,guard-each-action,...` or `all` (the default, which
//!   is what the agent implements): the agent behaviours in [`Fixes`] the model applies.
//!   Naming a subset (or `none`) models the agent without the others, which shows the
//!   failures each one prevents.
//!
//! Simplifications (each errs on the side of finding problems, or does not bear on the
//! invariants): a DCS request takes effect at the instant it is sent, so the server sees
//! a renewal no later than the agent's clock started it; actions are atomic and take
//! effect when they start (a promotion is writable at once, a stop stops writes at once);
//! replication slots, callbacks, synchronous replication, switchover and maintenance
//! mode are not modelled; an agent's watch is woken by other members' writes and by
//! lease expiry, not by its own writes (see `World::wake_watchers` for why).

use serde_json::json;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};
use warden_agent::api::views;
use warden_agent::ha::observation::{Local, Peer, Tags};
use warden_agent::ha::peers::parse_status;
use warden_agent::ha::{decide, Action, Observation, StartAs};
use warden_agent::pg::sql::Probe;
use warden_agent::pg::DataDir;
use warden_agent::state::NodeStatus;
use warden_consensus::types::{HistoryEntry, Role, Status};
use warden_consensus::{Cluster, DynamicConfig, KeyValue, Keys, Snapshot};
use warden_fencing::{safety_margin, LeaseDeadline};

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

const NODES: usize = 3;
const NAMES: [&str; NODES] = ["n1", "n2", "n3"];
const SYSID: &str = "7301234567890123456";

/// Warden's own defaults (DESIGN.md §3): ttl 10, loop_wait 1, retry_timeout 3.
const TTL: Duration = Duration::from_secs(10);
const LOOP_WAIT_MS: u64 = 1_000;
/// The agent's per-request etcd timeout: retry_timeout / 2 (`cli.rs`).
const DCS_TIMEOUT_MS: u64 = 1_500;
/// `peers::PEER_TIMEOUT`.
const PEER_TIMEOUT_MS: u64 = 2_000;
/// `watchdog.safety_margin` default: the device fires `ttl - 5s` after the last feed.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(5);
/// pg_controldata plus the probe queries.
const LOCAL_PROBE_MS: u64 = 5;

/// Workload, replication and etcd's lease revocation run at this period (etcd's lessor
/// checks for expired leases every 500 ms; requests also expire leases on access).
const TICK_MS: u64 = 200;
/// Bytes of WAL a primary writes per tick, at most (about 80 kB/s on average).
const WRITE_PER_TICK: u64 = 32_000;
/// Bytes a connected replica can catch up per tick, at most.
const STREAM_PER_TICK: u64 = 600_000;

/// The cluster forms without faults, then faults run, then everything heals and the
/// cluster gets time to settle before liveness is judged.
const FAULTS_FROM_MS: u64 = 30_000;
const FAULTS_UNTIL_MS: u64 = 150_000;
const END_MS: u64 = 210_000;

const DEFAULT_SEEDS: u64 = 200;
const TRACE_SHOWN: usize = 50;

/// What-if switches: each models a proposed change to the agent, so a run can show
/// whether it closes the gaps the faithful model finds. All off unless
/// `WARDEN_SIM_FIXES` names them.
#[derive(Debug, Clone, Copy, Default)]
struct Fixes {
    /// The agent respawns its guard process when a feed finds it gone (today the guard
    /// exits after its deadline passes once and the agent runs unguarded from then on).
    guard_respawn: bool,
    /// The agent feeds the guard after every action, not only at the end of the turn
    /// (today a turn that takes the key and promotes, or restarts the primary, leaves the
    /// guard disarmed until its last step).
    guard_each_action: bool,
    /// `race_refusal` also refuses when failsafe mode is on and the `/failsafe` key lists
    /// members but not us (Patroni's rule; today such a member races while the old
    /// leader may still hold on through failsafe confirmations).
    failsafe_membership: bool,
    /// In failsafe mode the peer probe before a race also asks the members `/failsafe`
    /// lists (Patroni's rule), not only those with a member key: a leader holding on
    /// through failsafe confirmations has lost its member key with its lease.
    failsafe_peers: bool,
    /// The failsafe round asks the members of the freshest `/failsafe` value this agent
    /// knows, read or written (Patroni's `dcs.failsafe`), not of the snapshot read
    /// before its own latest write.
    failsafe_last_written: bool,
    /// A replica defers only to peers that could win the race themselves: no tie-break
    /// by name (both race; the create-only transaction decides, as in Patroni), and a
    /// peer on a timeline `check_timeline` rules out, or (with `failsafe-membership`)
    /// one `/failsafe` does not list, does not count.
    race_eligible_peers: bool,
    /// `primary_down` restarts the primary in place only in a turn whose lease keepalive
    /// succeeded, as `as_leader` acts only then (today a stale renewal yields a deadline
    /// already past, the fence timer clears it, and PostgreSQL starts writable with
    /// neither deadline nor guard).
    primary_down_needs_renewal: bool,
    /// The executor refuses leader-only actions (`Promote`, `StartPostgres(Primary)`,
    /// `WriteStatus`) once our local deadline has passed: today a turn frozen mid-way
    /// resumes and finishes them with a stale observation (promoting, or overwriting the
    /// real leader's `/status` and `/failsafe`) after the key has moved on.
    leader_actions_need_lease: bool,
}

impl Fixes {
    fn from_env() -> Self {
        // The agent implements every one of these; a subset models it without the
        // others, to show that each is needed.
        let v = std::env::var("WARDEN_SIM_FIXES").unwrap_or_else(|_| "all".to_string());
        let mut f = Self::default();
        for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "guard-respawn" => f.guard_respawn = true,
                "guard-each-action" => f.guard_each_action = true,
                "failsafe-membership" => f.failsafe_membership = true,
                "failsafe-peers" => f.failsafe_peers = true,
                "failsafe-last-written" => f.failsafe_last_written = true,
                "race-eligible-peers" => f.race_eligible_peers = true,
                "primary-down-needs-renewal" => f.primary_down_needs_renewal = true,
                "leader-actions-need-lease" => f.leader_actions_need_lease = true,
                "all" => {
                    f = Self {
                        guard_respawn: true,
                        guard_each_action: true,
                        failsafe_membership: true,
                        failsafe_peers: true,
                        failsafe_last_written: true,
                        race_eligible_peers: true,
                        primary_down_needs_renewal: true,
                        leader_actions_need_lease: true,
                    };
                }
                "none" => f = Self::default(),
                other => panic!("WARDEN_SIM_FIXES: unknown fix {other:?}"),
            }
        }
        f
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic randomness and clocks
// ---------------------------------------------------------------------------------------

/// splitmix64: tiny, fast, and its sequence never changes with a dependency upgrade.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Each node's monotonic clock runs at its own rate (parts per million of real time):
/// the safety margin exists to cover exactly that.
fn local_ms(ppm: u64, global: u64) -> u64 {
    (u128::from(global) * u128::from(ppm) / 1_000_000) as u64
}

/// The first global instant at which the node's clock reads `local` or more.
fn global_ms(ppm: u64, local: u64) -> u64 {
    (u128::from(local) * 1_000_000).div_ceil(u128::from(ppm)) as u64
}

// ---------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DcsError {
    LeaseNotFound,
}

/// The etcd semantics the agent relies on, as in `consensus/src/memory.rs` but on the
/// simulated clock.
#[derive(Debug)]
struct Store {
    keys: Keys,
    revision: i64,
    next_lease: i64,
    /// Lease id → expiry (simulated ms, server clock = global clock).
    leases: BTreeMap<i64, u64>,
    kvs: BTreeMap<String, KeyValue>,
    /// Keys whose changes wake the agents (`run.rs`: `wait_for_wakeup`).
    watched: Vec<String>,
    /// A watched key changed since the world last looked.
    watched_changed: bool,
    leader_key: String,
    /// Parsing is the costliest part of a read: each key's parse is kept until the key
    /// changes (`mod_revision`), and whole views per store revision.
    parsed: BTreeMap<String, (i64, Cluster)>,
    cache: Option<(i64, Cluster)>,
    reads: u64,
}

impl Store {
    fn new() -> Self {
        let keys = Keys::new("/service/", "sim");
        let watched = vec![
            keys.leader(),
            keys.failover(),
            keys.config(),
            keys.initialize(),
            keys.sync(),
        ];
        Self {
            leader_key: keys.leader(),
            keys,
            revision: 1,
            next_lease: 0,
            leases: BTreeMap::new(),
            kvs: BTreeMap::new(),
            watched,
            watched_changed: false,
            parsed: BTreeMap::new(),
            cache: None,
            reads: 0,
        }
    }

    /// etcd revokes an expired lease and deletes its keys.
    fn expire(&mut self, now: u64) {
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, exp)| **exp <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.revoke(id);
        }
    }

    fn revoke(&mut self, id: i64) {
        self.leases.remove(&id);
        let keys: Vec<String> = self
            .kvs
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect();
        for k in keys {
            self.remove(&k);
        }
    }

    fn touched(&mut self, key: &str) {
        if self.watched.iter().any(|w| w == key) {
            self.watched_changed = true;
        }
    }

    fn write(&mut self, key: &str, value: Vec<u8>, lease: i64) {
        self.revision += 1;
        let rev = self.revision;
        let create_revision = self.kvs.get(key).map_or(rev, |kv| kv.create_revision);
        self.kvs.insert(
            key.to_string(),
            KeyValue {
                key: key.to_string(),
                value,
                create_revision,
                mod_revision: rev,
                lease,
            },
        );
        self.touched(key);
    }

    fn remove(&mut self, key: &str) -> bool {
        if self.kvs.remove(key).is_none() {
            return false;
        }
        self.revision += 1;
        self.touched(key);
        true
    }

    fn lease_id(&self, lease: Option<i64>) -> Result<i64, DcsError> {
        match lease {
            None => Ok(0),
            Some(id) if self.leases.contains_key(&id) => Ok(id),
            Some(_) => Err(DcsError::LeaseNotFound),
        }
    }

    fn grant(&mut self, now: u64) -> i64 {
        self.next_lease += 1;
        let ttl_ms = TTL.as_millis() as u64;
        self.leases.insert(self.next_lease, now + ttl_ms);
        self.next_lease
    }

    fn keepalive(&mut self, now: u64, id: i64) -> Result<(), DcsError> {
        let ttl_ms = TTL.as_millis() as u64;
        let exp = self.leases.get_mut(&id).ok_or(DcsError::LeaseNotFound)?;
        *exp = now + ttl_ms;
        Ok(())
    }

    fn put(&mut self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), DcsError> {
        let lease = self.lease_id(lease)?;
        self.write(key, value, lease);
        Ok(())
    }

    /// `create_revision == 0` and `mod_revision(guard) == rev` transaction.
    fn create_unless_changed(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
        guard: (&str, i64),
    ) -> Result<bool, DcsError> {
        if self.kvs.get(guard.0).map_or(0, |kv| kv.mod_revision) != guard.1 {
            self.lease_id(lease)?;
            return Ok(false);
        }
        self.create(key, value, lease)
    }

    /// `create_revision == 0` transaction.
    fn create(&mut self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<bool, DcsError> {
        let lease = self.lease_id(lease)?;
        if self.kvs.contains_key(key) {
            return Ok(false);
        }
        self.write(key, value, lease);
        Ok(true)
    }

    fn put_if_value(
        &mut self,
        key: &str,
        expected: &[u8],
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<bool, DcsError> {
        let lease = self.lease_id(lease)?;
        if self.kvs.get(key).is_none_or(|kv| kv.value != expected) {
            return Ok(false);
        }
        self.write(key, value, lease);
        Ok(true)
    }

    fn delete_if_value(&mut self, key: &str, expected: &[u8]) -> bool {
        if self.kvs.get(key).is_none_or(|kv| kv.value != expected) {
            return false;
        }
        self.remove(key)
    }

    /// A prefix read, parsed by the agent's own code (`Cluster::from_snapshot`).
    ///
    /// Each key is parsed on its own and the views are merged, so an unchanged key is
    /// not parsed again; every 16th read also parses the whole snapshot at once and
    /// checks that both agree.
    fn cluster(&mut self) -> Cluster {
        if let Some((rev, c)) = &self.cache {
            if *rev == self.revision {
                return c.clone();
            }
        }
        let mut c = Cluster {
            revision: self.revision,
            ..Cluster::default()
        };
        for kv in self.kvs.values() {
            let stale = self
                .parsed
                .get(&kv.key)
                .is_none_or(|(rev, _)| *rev != kv.mod_revision);
            if stale {
                let one = Snapshot {
                    revision: self.revision,
                    kvs: vec![kv.clone()],
                };
                let part = Cluster::from_snapshot(&self.keys, &one);
                self.parsed.insert(kv.key.clone(), (kv.mod_revision, part));
            }
            merge(&mut c, &self.parsed[&kv.key].1);
        }
        self.parsed.retain(|k, _| self.kvs.contains_key(k));
        assert!(
            c.errors.is_empty(),
            "the model wrote a value the agent cannot read: {:?}",
            c.errors
        );
        self.reads += 1;
        if self.reads.is_multiple_of(16) {
            let snap = Snapshot {
                revision: self.revision,
                kvs: self.kvs.values().cloned().collect(),
            };
            assert_eq!(
                c,
                Cluster::from_snapshot(&self.keys, &snap),
                "per-key parsing diverged"
            );
        }
        self.cache = Some((self.revision, c.clone()));
        c
    }

    /// Who holds the leader key and until when its lease runs, as the server sees it.
    fn leader_at(&self, now: u64) -> Option<(&str, u64)> {
        let kv = self.kvs.get(&self.leader_key)?;
        let exp = *self.leases.get(&kv.lease)?;
        (exp > now).then(|| (std::str::from_utf8(&kv.value).unwrap_or("?"), exp))
    }
}

/// Adds the one key parsed into `part` to the view `into`.
fn merge(into: &mut Cluster, part: &Cluster) {
    if part.initialize.is_some() {
        into.initialize.clone_from(&part.initialize);
    }
    if part.config.is_some() {
        into.config.clone_from(&part.config);
    }
    if part.leader.is_some() {
        into.leader.clone_from(&part.leader);
    }
    for (name, m) in &part.members {
        into.members.insert(name.clone(), m.clone());
    }
    if part.failover.is_some() {
        into.failover.clone_from(&part.failover);
    }
    if part.sync.is_some() {
        into.sync.clone_from(&part.sync);
    }
    if part.history_revision != 0 {
        into.history.clone_from(&part.history);
        into.history_revision = part.history_revision;
    }
    if part.status.is_some() {
        into.status.clone_from(&part.status);
    }
    if part.failsafe.is_some() {
        into.failsafe.clone_from(&part.failsafe);
    }
    into.errors.extend(part.errors.iter().cloned());
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// One timeline as it really happened. Two promotions can both create "timeline 2"
/// (PostgreSQL numbers them locally); the epoch tells them apart.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    timeline: u32,
    parent: Option<usize>,
    /// WAL position where it forked off its parent.
    start: u64,
}

/// A position in the WAL history: which epoch, how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wal {
    epoch: usize,
    lsn: u64,
}

/// Whether a server at `mine` can stream from one at `theirs`, and where `budget` more
/// bytes take it: our timeline must be on their history, and we must not have gone past
/// the point where they forked off it (PostgreSQL refuses that: "new timeline forked off
/// current database system timeline before current recovery point").
fn stream(epochs: &[Epoch], mine: Wal, theirs: Wal, budget: u64) -> Option<Wal> {
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

#[derive(Debug)]
struct Pg {
    data: DataDir,
    wal: Wal,
    /// The control file says it last ran as a primary ("in production", "shut down",
    /// "in crash recovery").
    control_primary: bool,
    /// pg_basebackup or pg_rewind left a backup_label: not a former primary.
    backup_label: bool,
    standby_signal: bool,
    /// Timeline of the last checkpoint (pg_rewind's source must have checkpointed since
    /// its promotion).
    checkpoint_tl: u32,
    running: bool,
    /// Changes with every start: the guard's pid + start time.
    incarnation: u64,
    /// Accepts connections from this instant on.
    ready_at: u64,
    in_recovery: bool,
    /// primary_conninfo: whom a replica streams from.
    upstream: Option<usize>,
    streaming: bool,
}

impl Pg {
    fn empty() -> Self {
        Self {
            data: DataDir::Missing,
            wal: Wal { epoch: 0, lsn: 0 },
            control_primary: false,
            backup_label: false,
            standby_signal: false,
            checkpoint_tl: 1,
            running: false,
            incarnation: 0,
            ready_at: 0,
            in_recovery: false,
            upstream: None,
            streaming: false,
        }
    }

    fn ready(&self, now: u64) -> bool {
        self.running && now >= self.ready_at
    }

    /// Accepts and acknowledges writes.
    fn writable(&self, now: u64) -> bool {
        self.ready(now) && !self.in_recovery
    }

    /// `pg_ctl start` (a no-op when a postmaster already runs): standby.signal decides
    /// the role.
    fn start(&mut self, now: u64, startup_ms: u64, upstream: Option<usize>, timeline: u32) {
        if self.running {
            return;
        }
        self.running = true;
        self.incarnation += 1;
        self.ready_at = now + startup_ms;
        self.in_recovery = self.standby_signal;
        self.upstream = upstream;
        self.streaming = false;
        self.control_primary = !self.in_recovery;
        self.backup_label = false;
        if !self.in_recovery {
            self.checkpoint_tl = timeline;
        }
    }

    fn stop(&mut self) {
        self.running = false;
        self.streaming = false;
    }
}

fn timeline(epochs: &[Epoch], pg: &Pg) -> u32 {
    epochs[pg.wal.epoch].timeline
}

/// What `Sql::probe` returns for this server.
fn probe_of(epochs: &[Epoch], pg: &Pg) -> Probe {
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
/// to do; otherwise the target gets the source's history.
fn pg_rewind(epochs: &[Epoch], target: &mut Pg, source: &Pg) -> &'static str {
    if timeline(epochs, target) == timeline(epochs, source) {
        return "source and target cluster are on the same timeline; no rewind required";
    }
    if stream(epochs, target.wal, source.wal, 0).is_some() {
        return "no rewind required";
    }
    target.wal = source.wal;
    target.backup_label = true;
    target.control_primary = !source.in_recovery;
    "rewound onto the source's timeline"
}

// ---------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Lease,
    Read,
    Observe,
    Failsafe,
    Decide,
    Act,
    Publish,
    FeedGuard,
}

/// One `turn()` in progress. Every phase boundary is a point where SIGSTOP can land.
#[derive(Debug)]
struct Turn {
    id: u64,
    phase: Phase,
    lease_renewed: bool,
    cluster: Option<Cluster>,
    local: Option<Local>,
    peers: Vec<Peer>,
    /// The `timeline` each peer's `/patroni` reported (fix `race-eligible-peers`).
    peer_timelines: BTreeMap<String, u32>,
    failsafe_confirmed: Option<bool>,
    obs: Option<Observation>,
    actions: Vec<Action>,
    next: usize,
    changed_local: bool,
    /// The action the last Act phase completed (to aim SIGSTOPs at the riskiest spots).
    just_did: Option<Action>,
}

/// The agent process's memory (`run.rs`: `Agent`, plus `Shared`). Lost when it dies.
#[derive(Debug)]
struct Agent {
    lease: Option<i64>,
    /// Start of the last successful lease renewal, on the node's clock.
    renewed_at: Option<u64>,
    holds_leader: bool,
    /// The real type, fed instants derived from the node's simulated clock.
    deadline: LeaseDeadline,
    rewound: bool,
    bootstrapped_here: bool,
    primary_down_since: Option<u64>,
    /// `not_streaming_since` (node clock), with the leader it was measured against.
    not_streaming_since: Option<(u64, Option<String>)>,
    /// Start (node clock) of this turn's successful failsafe confirmation round.
    failsafe_round: Option<u64>,
    /// The last cluster read from the DCS (`shared.cluster`): failsafe mode asks the
    /// members of its `/failsafe` key.
    last_cluster: Option<Cluster>,
    /// We opened (armed) the watchdog device.
    watchdog_open: bool,
    /// The deadline was last extended by failsafe confirmations, not by the DCS.
    failsafe_held: bool,
    /// The freshest `/failsafe` value this agent read or wrote (fix
    /// `failsafe-last-written`).
    failsafe_known: Option<BTreeMap<String, String>>,
    state: &'static str,
    system_identifier: Option<String>,
    /// What our member key was last written from (the body is a function of it), and
    /// under which lease: `write_member` skips unchanged bodies.
    last_member: Option<(i64, MemberSig)>,
    last_note: String,
    /// The cached status `/patroni` answers from.
    shown: NodeStatus,
    turn: Option<Turn>,
    turns: u64,
    wake_gen: u64,
    /// A watched key changed while we were busy or frozen: turn again at once.
    dirty: bool,
    /// SIGSTOP caught a turn between two phases.
    held: bool,
    /// The etcd watch is established.
    watching: bool,
    /// `keep_lease_during` runs (initdb, clone): last background keepalive.
    keep_lease: Option<u64>,
    /// Index into `Node::guards` of our guard process, until a write to it fails.
    guard: Option<usize>,
}

impl Agent {
    fn new(name: &str, guard: usize) -> Self {
        Self {
            lease: None,
            renewed_at: None,
            holds_leader: false,
            deadline: LeaseDeadline::new(),
            rewound: false,
            bootstrapped_here: false,
            primary_down_since: None,
            not_streaming_since: None,
            failsafe_round: None,
            last_cluster: None,
            watchdog_open: false,
            failsafe_held: false,
            failsafe_known: None,
            state: "starting",
            system_identifier: None,
            last_member: None,
            last_note: String::new(),
            shown: NodeStatus::new("sim".into(), name.into(), serde_json::Map::new()),
            turn: None,
            turns: 0,
            wake_gen: 0,
            dirty: false,
            held: false,
            watching: false,
            keep_lease: None,
            guard: Some(guard),
        }
    }
}

/// Everything `member_json` depends on.
type MemberSig = (
    &'static str,
    Role,
    Option<(Option<u64>, Option<u32>, bool, bool)>,
);

/// `warden guard`: a separate process fed one line per turn.
#[derive(Debug)]
struct GuardProc {
    alive: bool,
    /// The agent's end of the pipe is open.
    input_open: bool,
    armed: Option<Arm>,
}

#[derive(Debug, Clone, Copy)]
struct Arm {
    id: u64,
    /// Global ms.
    fire_at: u64,
    /// The postmaster it was armed for (pid + start time).
    incarnation: u64,
}

/// The kernel side of `/dev/watchdog`.
#[derive(Debug, Clone, Copy, Default)]
struct Watchdog {
    /// Global ms at which it resets the machine; `None` while disarmed (closed with the
    /// magic character, or never opened).
    fires_at: Option<u64>,
    gen: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partition {
    None,
    /// etcd unreachable; peers and replication fine.
    DcsOnly,
    /// Cut off from etcd and from the other nodes.
    Full,
}

#[derive(Debug)]
struct Node {
    /// Clock rate in parts per million of the global clock.
    ppm: u64,
    machine_up: bool,
    partition: Partition,
    paused: bool,
    pg: Pg,
    agent: Option<Agent>,
    guards: Vec<GuardProc>,
    /// `None`: this machine has no watchdog device (`watchdog.mode: automatic` then
    /// leads without one).
    watchdog: Option<Watchdog>,
    /// Generations that let a later fault supersede an earlier fault's recovery event.
    boot_gen: u64,
    pause_gen: u64,
    heal_gen: u64,
}

// ---------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Tick,
    Fault,
    HealAll,
    Wake { node: usize, gen: u64 },
    Continue { node: usize, turn: u64 },
    FenceTimer { node: usize },
    Guard { node: usize, guard: usize, arm: u64 },
    WatchdogFires { node: usize, gen: u64 },
    Boot { node: usize, gen: u64 },
    Resume { node: usize, gen: u64 },
    Heal { node: usize, gen: u64 },
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.events += o.events;
        self.turns += o.turns;
        self.failovers += o.failovers;
        self.fences += o.fences;
        self.guard_kills += o.guard_kills;
        self.watchdog_resets += o.watchdog_resets;
        self.watchdog_resets_live += o.watchdog_resets_live;
        self.watchdog_resets_failsafe += o.watchdog_resets_failsafe;
        self.failsafe_holds += o.failsafe_holds;
        self.faults += o.faults;
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events, {} turns, {} faults, {} failovers, {} fences by the timer, {} kills by \
             the guard, {} watchdog resets ({} of a running agent, {} of them holding in \
             failsafe mode), {} failsafe holds",
            self.events,
            self.turns,
            self.faults,
            self.failovers,
            self.fences,
            self.guard_kills,
            self.watchdog_resets,
            self.watchdog_resets_live,
            self.watchdog_resets_failsafe,
            self.failsafe_holds,
        )
    }
}

enum Outcome {
    Done(u64),
    Failed(u64, String),
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    events: u64,
    turns: u64,
    /// Promotions of a replica once faults began.
    failovers: u64,
    fences: u64,
    guard_kills: u64,
    watchdog_resets: u64,
    /// ... of a machine whose agent was running (not frozen, not dead).
    watchdog_resets_live: u64,
    /// ... while that agent held on through failsafe confirmations.
    watchdog_resets_failsafe: u64,
    failsafe_holds: u64,
    faults: u64,
}

struct World {
    seed: u64,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    store: Store,
    nodes: Vec<Node>,
    epochs: Vec<Epoch>,
    /// `bootstrap.dcs`, written to the config key by the bootstrap winner.
    bootstrap_cfg: DynamicConfig,
    /// Per-seed options, for the trace.
    options: String,
    fixes: Fixes,
    /// Maps the simulated clocks onto `Instant`s for the real `LeaseDeadline`.
    base: Instant,
    next_turn: u64,
    next_arm: u64,
    faults_started: bool,
    trace: VecDeque<String>,
    keep_full_trace: bool,
    failure: Option<String>,
    stats: Stats,
}

impl World {
    fn new(seed: u64, keep_full_trace: bool, fixes: Fixes) -> Self {
        let mut rng = Rng(seed);
        // Per seed: how long a primary may stay down before it hands the key over, and
        // whether replicas must be on a newer timeline than the history to race.
        let primary_start_timeout = [0, 10, 300][rng.pick(3)];
        let check_timeline = rng.chance(500);
        let failsafe_mode = rng.chance(300);
        let watchdog = rng.chance(400);
        let bootstrap_cfg = DynamicConfig::from_json(&json!({
            "ttl": TTL.as_secs(), "loop_wait": LOOP_WAIT_MS / 1000, "retry_timeout": 3,
            "maximum_lag_on_failover": 1_048_576,
            "primary_start_timeout": primary_start_timeout,
            "check_timeline": check_timeline,
            "failsafe_mode": failsafe_mode,
            "postgresql": {"use_pg_rewind": true},
        }))
        .expect("valid bootstrap.dcs");
        let options = format!(
            "primary_start_timeout {primary_start_timeout}s, check_timeline {check_timeline}, \
             failsafe_mode {failsafe_mode}, watchdog device {watchdog}"
        );
        let nodes = (0..NODES)
            .map(|_| Node {
                ppm: rng.range(995_000, 1_005_000),
                machine_up: true,
                partition: Partition::None,
                paused: false,
                pg: Pg::empty(),
                agent: None,
                guards: Vec::new(),
                watchdog: watchdog.then(Watchdog::default),
                boot_gen: 0,
                pause_gen: 0,
                heal_gen: 0,
            })
            .collect();
        let mut w = Self {
            seed,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            store: Store::new(),
            nodes,
            epochs: vec![Epoch {
                timeline: 1,
                parent: None,
                start: 0,
            }],
            bootstrap_cfg,
            options,
            fixes,
            // Later than the origin of every LeaseDeadline the run creates.
            base: Instant::now() + Duration::from_secs(86_400),
            next_turn: 0,
            next_arm: 0,
            faults_started: false,
            trace: VecDeque::new(),
            keep_full_trace,
            failure: None,
            stats: Stats::default(),
        };
        let msg = format!("seed {seed}: {}", w.options);
        w.log(None, msg);
        for n in 0..NODES {
            w.start_agent(n);
        }
        w.push(0, Ev::Tick);
        w.push(FAULTS_FROM_MS, Ev::Fault);
        w.push(FAULTS_UNTIL_MS, Ev::HealAll);
        w
    }

    /// Schedules `ev`; an instant already past (a deadline computed from an old
    /// renewal) means "now": simulated time never runs backwards.
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at.max(self.now), self.seq, ev)));
    }

    /// Appends to the trace (only what a reader needs: faults, decisions whose note
    /// changed, failures, fencing, promotions).
    fn log(&mut self, node: Option<usize>, msg: String) {
        let who = node.map_or("--", |n| NAMES[n]);
        let mut line = msg;
        line.insert_str(0, &format!("{:>9.3}s {who}: ", self.now as f64 / 1000.0));
        self.trace.push_back(line);
        if !self.keep_full_trace && self.trace.len() > TRACE_SHOWN {
            self.trace.pop_front();
        }
    }

    fn agent(&mut self, n: usize) -> &mut Agent {
        self.nodes[n].agent.as_mut().expect("the agent is alive")
    }

    fn local_now(&self, n: usize) -> u64 {
        local_ms(self.nodes[n].ppm, self.now)
    }

    fn instant(&self, local: u64) -> Instant {
        self.base + Duration::from_millis(local)
    }

    fn index(name: &str) -> Option<usize> {
        NAMES.iter().position(|n| *n == name)
    }

    fn dcs_reachable(&self, n: usize) -> bool {
        self.nodes[n].machine_up && self.nodes[n].partition == Partition::None
    }

    /// Whether `a` and `b` can talk (REST, replication, pg_rewind, pg_basebackup).
    fn net_ok(&self, a: usize, b: usize) -> bool {
        let up = |n: usize| self.nodes[n].machine_up && self.nodes[n].partition != Partition::Full;
        up(a) && up(b)
    }

    /// The leader key as the server holds it now.
    fn leader_key(&self) -> Option<(String, u64)> {
        self.store
            .leader_at(self.now)
            .map(|(name, exp)| (name.to_string(), exp))
    }

    // -- running ------------------------------------------------------------------------

    fn run(&mut self) -> Result<Stats, String> {
        while let Some(Reverse((at, _, ev))) = self.queue.pop() {
            if at > END_MS {
                break;
            }
            self.now = at;
            self.stats.events += 1;
            self.handle(ev);
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
            self.check_safety()?;
        }
        self.now = END_MS;
        self.check_liveness()?;
        Ok(self.stats)
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick => self.tick(),
            Ev::Fault => self.fault(),
            Ev::HealAll => self.heal_all(),
            Ev::Wake { node, gen } => self.wake(node, gen),
            Ev::Continue { node, turn } => {
                let Some(a) = self.nodes[node].agent.as_mut() else {
                    return;
                };
                if a.turn.as_ref().map(|t| t.id) != Some(turn) {
                    return;
                }
                if self.nodes[node].paused {
                    self.agent(node).held = true;
                } else {
                    self.advance_turn(node);
                }
            }
            Ev::FenceTimer { node } => {
                if self.nodes[node].agent.is_some() && !self.nodes[node].paused {
                    self.fence_timer(node);
                }
            }
            Ev::Guard { node, guard, arm } => self.guard_fires(node, guard, arm),
            Ev::WatchdogFires { node, gen } => {
                let due = self.nodes[node]
                    .watchdog
                    .is_some_and(|w| w.gen == gen && w.fires_at.is_some_and(|t| t <= self.now));
                if due && self.nodes[node].machine_up {
                    self.stats.watchdog_resets += 1;
                    if !self.nodes[node].paused {
                        if let Some(a) = self.nodes[node].agent.as_ref() {
                            self.stats.watchdog_resets_live += 1;
                            if a.failsafe_held {
                                self.stats.watchdog_resets_failsafe += 1;
                            }
                        }
                    }
                    self.log(
                        Some(node),
                        "WATCHDOG: not fed in time; machine reset".into(),
                    );
                    self.crash_machine(node, false);
                    self.nodes[node].boot_gen += 1;
                    let gen = self.nodes[node].boot_gen;
                    let at = self.now + self.rng.range(5_000, 30_000);
                    self.push(at, Ev::Boot { node, gen });
                }
            }
            Ev::Boot { node, gen } => {
                if gen == self.nodes[node].boot_gen {
                    self.boot(node);
                }
            }
            Ev::Resume { node, gen } => {
                if gen == self.nodes[node].pause_gen {
                    self.resume(node);
                }
            }
            Ev::Heal { node, gen } => {
                if gen == self.nodes[node].heal_gen && self.nodes[node].partition != Partition::None
                {
                    self.nodes[node].partition = Partition::None;
                    self.log(Some(node), "partition healed".into());
                }
            }
        }
    }

    /// Workload, replication, etcd's lease revocation, `keep_lease_during`.
    fn tick(&mut self) {
        self.expire_leases();
        let now = self.now;
        for n in 0..NODES {
            if self.nodes[n].pg.writable(now) {
                self.nodes[n].pg.wal.lsn += self.rng.range(0, WRITE_PER_TICK);
            }
        }
        for r in 0..NODES {
            let budget = self.rng.range(STREAM_PER_TICK / 4, STREAM_PER_TICK);
            let pg = &self.nodes[r].pg;
            let upstream = pg
                .upstream
                .filter(|_| pg.ready(now) && pg.in_recovery && pg.data == DataDir::Initialized);
            let next = upstream
                .filter(|&u| u != r && self.net_ok(r, u) && self.nodes[u].pg.ready(now))
                .and_then(|u| stream(&self.epochs, pg.wal, self.nodes[u].pg.wal, budget));
            let pg = &mut self.nodes[r].pg;
            pg.streaming = next.is_some();
            if let Some(wal) = next {
                pg.wal = wal;
            }
        }
        for n in 0..NODES {
            let due = self.nodes[n]
                .agent
                .as_ref()
                .and_then(|a| a.keep_lease)
                .is_some_and(|last| now >= last + LOOP_WAIT_MS);
            if due && !self.nodes[n].paused {
                self.background_keepalive(n);
            }
        }
        self.push(now + TICK_MS, Ev::Tick);
    }

    fn expire_leases(&mut self) {
        let now = self.now;
        if !self.store.leases.values().any(|exp| *exp <= now) {
            return;
        }
        let before = self.leader_key();
        self.store.expire(self.now);
        if std::mem::take(&mut self.store.watched_changed) {
            if let Some((name, _)) = before.filter(|_| self.leader_key().is_none()) {
                self.log(
                    None,
                    format!("etcd: the lease of leader {name} expired; leader key deleted"),
                );
            }
            self.wake_watchers(None);
        }
    }

    /// One etcd request from node `n`: takes effect now if `n` can reach etcd; returns
    /// the result (`None`: unreachable, after the request timeout) and the time it took.
    fn call<T>(&mut self, n: usize, f: impl FnOnce(&mut Store, u64) -> T) -> (Option<T>, u64) {
        if !self.dcs_reachable(n) {
            return (None, DCS_TIMEOUT_MS);
        }
        self.expire_leases();
        let out = f(&mut self.store, self.now);
        if std::mem::take(&mut self.store.watched_changed) {
            self.wake_watchers(Some(n));
        }
        (Some(out), self.rng.range(1, 4))
    }

    /// A watched key changed: every agent with a live watch turns at once.
    ///
    /// Deviation from `run.rs`, on purpose: there the leader's own `RenewLeader` (a Put
    /// on the leader key) also wakes the leader, so a leader would turn again
    /// immediately after every turn, without end. The model wakes only the other agents
    /// on a write, so the leader keeps its `loop_wait` rhythm.
    fn wake_watchers(&mut self, writer: Option<usize>) {
        for n in 0..NODES {
            if Some(n) == writer || !self.dcs_reachable(n) {
                continue;
            }
            let paused = self.nodes[n].paused;
            let Some(a) = self.nodes[n].agent.as_mut() else {
                continue;
            };
            if !a.watching {
                continue;
            }
            if a.turn.is_some() || paused {
                a.dirty = true;
            } else {
                a.wake_gen += 1;
                let gen = a.wake_gen;
                let at = self.now + self.rng.range(1, 3);
                self.push(at, Ev::Wake { node: n, gen });
            }
        }
    }

    fn wake(&mut self, n: usize, gen: u64) {
        let paused = self.nodes[n].paused;
        let Some(a) = self.nodes[n].agent.as_mut() else {
            return;
        };
        if gen != a.wake_gen {
            return;
        }
        if paused || a.turn.is_some() {
            a.dirty = true;
            return;
        }
        self.next_turn += 1;
        a.turns += 1;
        a.dirty = false;
        a.turn = Some(Turn {
            id: self.next_turn,
            phase: Phase::Lease,
            lease_renewed: false,
            cluster: None,
            local: None,
            peers: Vec::new(),
            peer_timelines: BTreeMap::new(),
            failsafe_confirmed: None,
            obs: None,
            actions: Vec::new(),
            next: 0,
            changed_local: false,
            just_did: None,
        });
        self.stats.turns += 1;
        self.advance_turn(n);
    }

    /// Runs the turn's current phase, then schedules the next one after the time this
    /// one took, or ends the turn and sleeps until the next tick or watch event.
    fn advance_turn(&mut self, n: usize) {
        let a = self.agent(n);
        a.keep_lease = None;
        let mut turn = a.turn.take().expect("a turn in progress");
        let next = self.turn_phase(n, &mut turn);
        if self.nodes[n].agent.is_none() {
            return; // Fatal
        }
        let just_did = turn.just_did.take();
        let id = turn.id;
        match next {
            Some(took) => {
                self.agent(n).turn = Some(turn);
                self.push(self.now + took, Ev::Continue { node: n, turn: id });
            }
            None => {
                let watching = self.dcs_reachable(n);
                let a = self.agent(n);
                a.watching = watching;
                a.wake_gen += 1;
                let gen = a.wake_gen;
                let sleep = if a.dirty && watching { 1 } else { LOOP_WAIT_MS };
                self.push(self.now + sleep, Ev::Wake { node: n, gen });
            }
        }
        // SIGSTOP lands anywhere in a turn now and then, and more often right after the
        // steps where being frozen is most dangerous.
        if self.faults_started && self.now < FAULTS_UNTIL_MS {
            let aimed = matches!(
                just_did,
                Some(
                    Action::AcquireLeader
                        | Action::Promote { .. }
                        | Action::StartPostgres(StartAs::Primary)
                )
            );
            if self.rng.chance(if aimed { 40 } else { 3 }) {
                let how_long = self.rng.range(200, 25_000);
                self.pause(n, how_long);
            }
        }
    }

    fn turn_phase(&mut self, n: usize, t: &mut Turn) -> Option<u64> {
        match t.phase {
            Phase::Lease => {
                let (renewed, took) = self.refresh_lease(n);
                t.lease_renewed = renewed;
                t.phase = Phase::Read;
                Some(took)
            }
            Phase::Read => {
                let (cluster, took) = self.call(n, |s, _| s.cluster());
                let now_i = self.instant(self.local_now(n));
                let a = self.agent(n);
                if a.holds_leader && !a.deadline.valid_at(now_i) {
                    // run.rs: we lead again only after a successful renewal.
                    a.holds_leader = false;
                }
                if let Some(c) = &cluster {
                    let a = self.agent(n);
                    a.failsafe_known.clone_from(&c.failsafe);
                    if c.leader_name() != Some(NAMES[n]) && a.holds_leader {
                        a.holds_leader = false;
                        a.deadline.clear();
                        let msg = format!(
                            "the DCS no longer shows us as leader (leader {:?})",
                            c.leader_name()
                        );
                        self.log(Some(n), msg);
                    }
                }
                t.cluster = cluster;
                t.phase = Phase::Observe;
                Some(took)
            }
            Phase::Observe => {
                let local = self.observe_local(n);
                let a = self.agent(n);
                a.shown.running = local.running;
                a.shown.probe.clone_from(&local.probe);
                let race_possible = t
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.leader.is_none() && c.initialize.is_some())
                    && local.probe.as_ref().is_some_and(|p| p.in_recovery);
                let (peers, took) = match (&t.cluster, race_possible) {
                    (Some(c), true) => self.probe_peers(n, c, &mut t.peer_timelines),
                    _ => (Vec::new(), 0),
                };
                t.local = Some(local);
                t.peers = peers;
                t.phase = Phase::Failsafe;
                Some(LOCAL_PROBE_MS + took)
            }
            Phase::Failsafe => {
                let primary = t
                    .local
                    .as_ref()
                    .is_some_and(|l| l.probe.as_ref().is_some_and(|p| !p.in_recovery));
                let (confirmed, took) = self.failsafe_round(n, t.cluster.is_some(), primary);
                t.failsafe_confirmed = confirmed;
                t.phase = Phase::Decide;
                Some(took)
            }
            Phase::Decide => {
                self.decide_phase(n, t);
                Some(0)
            }
            Phase::Act => {
                let Some(action) = t.actions.get(t.next).cloned() else {
                    t.phase = Phase::Publish;
                    return Some(0);
                };
                t.next += 1;
                t.changed_local |= matches!(
                    action,
                    Action::Bootstrap
                        | Action::Clone { .. }
                        | Action::StartPostgres(_)
                        | Action::Promote { .. }
                        | Action::Demote { .. }
                );
                let obs = t.obs.take().expect("decided");
                let outcome = self.execute(n, &action, &obs);
                t.obs = Some(obs);
                // A `Fatal` action stopped the agent.
                self.nodes[n].agent.as_ref()?;
                if self.fixes.guard_each_action {
                    self.feed_guard(n);
                }
                match outcome {
                    Outcome::Done(took) => {
                        t.just_did = Some(action);
                        Some(took)
                    }
                    Outcome::Failed(took, why) => {
                        self.log(
                            Some(n),
                            format!("{action:?} failed: {why}; skipping the rest of this turn"),
                        );
                        t.phase = Phase::Publish;
                        Some(took)
                    }
                }
            }
            Phase::Publish => {
                let obs = t.obs.take().expect("decided");
                let local = if t.changed_local {
                    self.observe_local(n)
                } else {
                    obs.local
                };
                if !self.agent(n).holds_leader {
                    self.close_watchdog(n);
                }
                if let Some(c) = obs.cluster {
                    self.agent(n).last_cluster = Some(c);
                }
                let took = self.write_member(n, &local);
                let a = self.agent(n);
                a.shown.state = a.state.to_string();
                a.shown.role = role_of(&local);
                a.shown.running = local.running;
                a.shown.probe = local.probe;
                a.shown.is_leader = a.holds_leader;
                t.phase = Phase::FeedGuard;
                Some(took)
            }
            Phase::FeedGuard => {
                self.feed_guard(n);
                None
            }
        }
    }

    /// `refresh_lease`: keepalive, or a new lease when ours is gone.
    fn refresh_lease(&mut self, n: usize) -> (bool, u64) {
        let started = self.local_now(n);
        let mut took = 0;
        if let Some(id) = self.agent(n).lease {
            let (r, t) = self.call(n, |s, now| s.keepalive(now, id));
            took += t;
            match r {
                None => return (false, took),
                Some(Ok(())) => {
                    self.agent(n).renewed_at = Some(started);
                    return (true, took);
                }
                Some(Err(DcsError::LeaseNotFound)) => {
                    self.log(
                        Some(n),
                        format!("our lease {id} expired; granting a new one"),
                    );
                }
            }
        }
        let (r, t) = self.call(n, |s, now| s.grant(now));
        took += t;
        match r {
            None => (false, took),
            Some(id) => {
                let a = self.agent(n);
                a.lease = Some(id);
                a.last_member = None;
                a.renewed_at = Some(started);
                (true, took)
            }
        }
    }

    /// `observe_local`, including its caching of the system identifier.
    fn observe_local(&mut self, n: usize) -> Local {
        let now = self.now;
        let epochs = &self.epochs;
        let node = &mut self.nodes[n];
        let pg = &node.pg;
        let a = node.agent.as_mut().expect("the agent is alive");
        let data = pg.data;
        let running = pg.running;
        let mut was_primary = false;
        if data == DataDir::Initialized && (a.system_identifier.is_none() || !running) {
            a.system_identifier = Some(SYSID.to_string());
            was_primary = !pg.backup_label && pg.control_primary;
        } else if data != DataDir::Initialized {
            a.system_identifier = None;
        }
        let probe = pg.ready(now).then(|| probe_of(epochs, pg));
        if !running && a.state == "running" {
            a.state = "stopped";
        }
        if let Some(p) = &probe {
            a.state = "running";
            was_primary = !p.in_recovery;
            if was_primary {
                a.rewound = false;
            }
        }
        Local {
            data,
            system_identifier: a.system_identifier.clone(),
            was_primary,
            running,
            stopped_timeline: (!running && data == DataDir::Initialized && !pg.backup_label)
                .then(|| timeline(epochs, pg)),
            probe,
            rewound: a.rewound,
        }
    }

    /// `peers::probe_peers`: every other member's `/patroni`, in parallel, each bounded
    /// by the peer timeout. Bodies come from the real `views::patroni` and are read by
    /// the real `parse_status`.
    fn probe_peers(
        &mut self,
        n: usize,
        c: &Cluster,
        timelines: &mut BTreeMap<String, u32>,
    ) -> (Vec<Peer>, u64) {
        let mut took = 0;
        let mut peers = Vec::new();
        let mut names: Vec<&String> = c.members.keys().collect();
        if self.fixes.failsafe_peers && c.dynamic_config().failsafe_mode {
            names.extend(c.failsafe.iter().flat_map(|f| f.keys()));
            names.sort();
            names.dedup();
        }
        for name in names.into_iter().filter(|m| m.as_str() != NAMES[n]) {
            let (status, t) = match Self::index(name) {
                Some(p) if !self.net_ok(n, p) => (None, PEER_TIMEOUT_MS),
                Some(p) => match &self.nodes[p].agent {
                    None => (None, 1), // connection refused
                    Some(_) if self.nodes[p].paused => (None, PEER_TIMEOUT_MS),
                    Some(a) => {
                        let valid = a.deadline.valid_at(self.instant(self.local_now(p)));
                        let body = views::patroni(&a.shown, valid);
                        if let Some(tl) = body.get("timeline").and_then(serde_json::Value::as_u64) {
                            timelines.insert(name.clone(), tl as u32);
                        }
                        (parse_status(&body, &Tags::default()), 2)
                    }
                },
                None => (None, PEER_TIMEOUT_MS),
            };
            took = took.max(t);
            peers.push(Peer {
                name: name.clone(),
                status,
            });
        }
        (peers, took)
    }

    /// `failsafe_round`: with failsafe mode on, the DCS unreachable and us leading a
    /// running primary, ask every member of the last known `/failsafe` key to confirm us.
    fn failsafe_round(&mut self, n: usize, dcs_read: bool, primary: bool) -> (Option<bool>, u64) {
        let lnow = self.local_now(n);
        let default_mode = self.bootstrap_cfg.failsafe_mode;
        let last_written = self.fixes.failsafe_last_written;
        let a = self.agent(n);
        a.failsafe_round = None;
        let Some(last) = a.last_cluster.as_ref() else {
            return (None, 0);
        };
        let mode = last
            .config
            .as_ref()
            .map_or(default_mode, |c| c.value.failsafe_mode);
        if dcs_read || !primary || !a.holds_leader || !mode {
            return (None, 0);
        }
        let listed = if last_written {
            a.failsafe_known.as_ref()
        } else {
            last.failsafe.as_ref()
        };
        let members: Vec<String> = listed
            .iter()
            .flat_map(|f| f.keys())
            .filter(|m| m.as_str() != NAMES[n])
            .cloned()
            .collect();
        let mut ok = true;
        let mut took = 0;
        for m in &members {
            let (yes, t) = self.ask_failsafe(n, m);
            ok &= yes;
            took = took.max(t);
        }
        if ok {
            self.agent(n).failsafe_round = Some(lnow);
        }
        self.log(
            Some(n),
            format!("failsafe round: asked {members:?}: all confirmed: {ok}"),
        );
        (Some(ok), took)
    }

    /// `POST /failsafe` to `name`: accepted unless it runs a primary itself; it then
    /// refuses to race for `ttl`.
    fn ask_failsafe(&mut self, from: usize, name: &str) -> (bool, u64) {
        let Some(p) = Self::index(name) else {
            return (false, PEER_TIMEOUT_MS);
        };
        if !self.net_ok(from, p) || self.nodes[p].paused {
            return (false, PEER_TIMEOUT_MS);
        }
        let at = self.instant(self.local_now(p));
        let Some(a) = self.nodes[p].agent.as_mut() else {
            return (false, 1);
        };
        if a.shown.in_recovery() == Some(false) {
            return (false, 2);
        }
        a.shown.failsafe_leader = Some((NAMES[from].to_string(), at));
        (true, 2)
    }

    fn decide_phase(&mut self, n: usize, t: &mut Turn) {
        let local = t.local.take().expect("observed");
        let lnow = self.local_now(n);
        let now_i = self.instant(lnow);
        let leads = t.cluster.as_ref().and_then(Cluster::leader_name) == Some(NAMES[n]);
        let primary_ok = local.probe.as_ref().is_some_and(|p| !p.in_recovery);
        let use_pg_rewind = t
            .cluster
            .as_ref()
            .and_then(|c| c.config.as_ref())
            .map_or(self.bootstrap_cfg.postgresql.use_pg_rewind, |c| {
                c.value.postgresql.use_pg_rewind
            });
        let fixes = self.fixes;
        let a = self.agent(n);
        let failsafe_leader_active = a
            .shown
            .failsafe_leader
            .as_ref()
            .is_some_and(|(_, at)| now_i.saturating_duration_since(*at) < TTL);
        if leads && !primary_ok && local.data == DataDir::Initialized {
            a.primary_down_since.get_or_insert(lnow);
        } else {
            a.primary_down_since = None;
        }
        if local
            .probe
            .as_ref()
            .is_some_and(|p| p.in_recovery && !p.streaming)
        {
            let leader = t
                .cluster
                .as_ref()
                .and_then(|c| c.leader_name().map(str::to_string));
            if a.not_streaming_since
                .as_ref()
                .is_none_or(|(_, l)| *l != leader)
            {
                a.not_streaming_since = Some((lnow, leader));
            }
        } else {
            a.not_streaming_since = None;
        }
        let mut peers = std::mem::take(&mut t.peers);
        if fixes.race_eligible_peers {
            let mine = local
                .probe
                .as_ref()
                .and_then(|p| p.wal_position)
                .unwrap_or(0);
            let cfg = t
                .cluster
                .as_ref()
                .map(Cluster::dynamic_config)
                .unwrap_or_default();
            let superseded = t
                .cluster
                .as_ref()
                .filter(|_| cfg.check_timeline)
                .and_then(Cluster::history_timeline);
            let listed = t
                .cluster
                .as_ref()
                .filter(|_| cfg.failsafe_mode && fixes.failsafe_membership)
                .and_then(|c| c.failsafe.clone())
                .filter(|f| !f.is_empty());
            peers.retain(|p| {
                p.status.as_ref().is_none_or(|s| {
                    let tie = s.wal_position == mine && s.priority == Tags::default().priority();
                    let stale = superseded
                        .is_some_and(|h| t.peer_timelines.get(&p.name).is_some_and(|tl| *tl <= h));
                    let outsider = listed.as_ref().is_some_and(|f| !f.contains_key(&p.name));
                    s.is_primary || !(tie || stale || outsider)
                })
            });
        }
        let obs = Observation {
            // No operator requests in the simulation: the wall clock does not matter.
            now: chrono::DateTime::UNIX_EPOCH,
            manual: None,
            me: NAMES[n].to_string(),
            tags: Tags::default(),
            cluster: t.cluster.take(),
            lease_renewed: t.lease_renewed,
            lease_valid: a.deadline.valid_at(now_i),
            local,
            peers,
            bootstrapped_here: a.bootstrapped_here,
            primary_down_for: a
                .primary_down_since
                .map(|s| Duration::from_millis(lnow - s)),
            use_pg_rewind,
            failsafe_confirmed: t.failsafe_confirmed,
            failsafe_leader_active,
            watchdog_missing: None,
            not_streaming_for: a
                .not_streaming_since
                .as_ref()
                .map(|(s, _)| Duration::from_millis(lnow - s)),
        };
        let mut d = decide(&obs);
        let restart = [Action::RenewLeader, Action::StartPostgres(StartAs::Primary)];
        if self.fixes.primary_down_needs_renewal && !obs.lease_renewed && d.actions == restart {
            d.actions.clear();
            d.note = "lease not renewed this turn; not restarting the primary".into();
        }
        if self.fixes.failsafe_membership && d.actions.first() == Some(&Action::AcquireLeader) {
            if let Some(why) = failsafe_outsider(&obs) {
                d.actions.clear();
                d.note = why;
            }
        }
        let a = self.agent(n);
        if d.note != a.last_note {
            a.last_note.clone_from(&d.note);
            let msg = format!("decide: {} -> {:?}", d.note, d.actions);
            self.log(Some(n), msg);
        }
        t.actions = d.actions;
        t.obs = Some(obs);
        t.phase = Phase::Act;
    }

    // -- the executor (execute.rs) --------------------------------------------------------

    fn execute(&mut self, n: usize, action: &Action, obs: &Observation) -> Outcome {
        let me = NAMES[n];
        let cluster = obs.cluster.as_ref();
        let leader_only = matches!(
            action,
            Action::Promote { .. } | Action::WriteStatus | Action::StartPostgres(StartAs::Primary)
        );
        let now_i = self.instant(self.local_now(n));
        if self.fixes.leader_actions_need_lease
            && leader_only
            && !self.agent(n).deadline.valid_at(now_i)
        {
            return Outcome::Failed(0, "our local lease deadline has passed".into());
        }
        // `Member::conn_host_port` of the named member, as the executor resolves it.
        let member = |name: &str| {
            cluster
                .and_then(|c| c.member(name))
                .and_then(warden_consensus::types::Member::conn_host_port)
                .and_then(|_| Self::index(name))
        };
        match action {
            // Synchronous mode is not modelled: it is off in the simulation, where the
            // executor's step is a no-op.
            Action::SyncReplication => Outcome::Done(0),
            Action::HandOver { .. }
            | Action::ClearFailover
            | Action::Restart { .. }
            | Action::Reinitialize { .. } => {
                // Only operator requests lead to these, and the simulation makes none.
                self.failure = Some(format!(
                    "{me} chose an operator action unprompted: {action:?}"
                ));
                Outcome::Done(0)
            }
            Action::Fatal(msg) => {
                self.failure = Some(format!("{me} stopped with a fatal error: {msg}"));
                self.nodes[n].agent = None;
                Outcome::Done(0)
            }
            Action::RaceInitialize => {
                let key = self.store.keys.initialize();
                match self.call(n, |s, _| s.create(&key, Vec::new(), None)) {
                    (Some(Ok(true)), t) => {
                        self.log(Some(n), "won the bootstrap race".into());
                        Outcome::Done(t)
                    }
                    (Some(_), t) => {
                        Outcome::Failed(t, "another member won the bootstrap race".into())
                    }
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
            Action::Bootstrap => {
                self.agent(n).state = "initializing new cluster";
                self.publish_state(n);
                self.keep_lease_during(n);
                let now = self.now;
                let pg = &mut self.nodes[n].pg;
                pg.data = DataDir::Initialized;
                pg.wal = Wal {
                    epoch: 0,
                    lsn: 0x0100_0000,
                };
                pg.standby_signal = false;
                pg.start(now, 0, None, 1);
                let a = self.agent(n);
                a.bootstrapped_here = true;
                a.state = "running";
                self.log(
                    Some(n),
                    "bootstrapped a new cluster (initdb, started as primary)".into(),
                );
                Outcome::Done(self.rng.range(3_000, 6_000))
            }
            Action::SetInitialize { system_identifier } => {
                let key = self.store.keys.initialize();
                let sysid = system_identifier.as_bytes().to_vec();
                let fresh = cluster.and_then(|c| c.initialize.as_deref()).is_none();
                let (r, t1) = self.call(n, |s, _| {
                    if fresh {
                        s.create(&key, sysid, None)
                    } else {
                        s.put_if_value(&key, b"", sysid, None)
                    }
                });
                if r != Some(Ok(true)) {
                    return Outcome::Failed(t1, "the initialize key changed under us".into());
                }
                let cfg_key = self.store.keys.config();
                let body = serde_json::to_vec(&self.bootstrap_cfg.to_json()).expect("json");
                let (r, t2) = self.call(n, |s, _| s.create(&cfg_key, body, None));
                if r.is_none() {
                    return Outcome::Failed(t1 + t2, "etcd unreachable".into());
                }
                self.agent(n).bootstrapped_here = false;
                Outcome::Done(t1 + t2)
            }
            Action::Clone { from } => {
                let Some(src) = member(from) else {
                    return Outcome::Failed(1, format!("member {from} has no usable conn_url"));
                };
                self.agent(n).state = "creating replica";
                self.publish_state(n);
                self.keep_lease_during(n);
                let took = self.rng.range(2_000, 6_000);
                match self.clone_from(n, src) {
                    Ok(()) => Outcome::Done(took),
                    Err(why) => Outcome::Failed(took, why),
                }
            }
            Action::AcquireLeader => {
                let Some(lease) = self.agent(n).lease else {
                    return Outcome::Failed(0, "no lease".into());
                };
                let key = self.store.keys.leader();
                let history = self.store.keys.history();
                let seen = obs.cluster.as_ref().map_or(0, |c| c.history_revision);
                match self.call(n, |s, _| {
                    s.create_unless_changed(
                        &key,
                        me.as_bytes().to_vec(),
                        Some(lease),
                        (&history, seen),
                    )
                }) {
                    (Some(Ok(true)), t) => {
                        self.leadership_confirmed(n);
                        self.log(Some(n), format!("acquired the leader key (lease {lease})"));
                        Outcome::Done(t)
                    }
                    (Some(Ok(false)), t) => Outcome::Failed(
                        t,
                        "another member took the leader key first, or /history changed since we looked"
                            .into(),
                    ),
                    (Some(Err(e)), t) => Outcome::Failed(t, format!("{e:?}")),
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
            Action::RenewLeader => {
                let Some(lease) = self.agent(n).lease else {
                    return Outcome::Failed(0, "no lease".into());
                };
                let key = self.store.keys.leader();
                let name = me.as_bytes();
                match self.call(n, |s, _| {
                    s.put_if_value(&key, name, name.to_vec(), Some(lease))
                }) {
                    (Some(Ok(true)), t) => {
                        self.leadership_confirmed(n);
                        Outcome::Done(t)
                    }
                    (Some(Ok(false)), t) => {
                        let a = self.agent(n);
                        a.holds_leader = false;
                        a.deadline.clear();
                        Outcome::Failed(t, "the leader key is no longer ours".into())
                    }
                    (Some(Err(e)), t) => Outcome::Failed(t, format!("{e:?}")),
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
            Action::StartPostgres(start_as) => {
                // write_config: standby.signal exactly when starting as a replica.
                let (standby, upstream) = match start_as {
                    StartAs::Primary => (false, None),
                    StartAs::Replica { upstream } => (true, upstream.as_deref().and_then(member)),
                };
                let startup = self.startup_ms();
                let tl = timeline(&self.epochs, &self.nodes[n].pg);
                let now = self.now;
                let pg = &mut self.nodes[n].pg;
                let was_running = pg.running;
                pg.standby_signal = standby;
                pg.start(now, startup, upstream, tl);
                self.agent(n).state = "starting";
                if !was_running {
                    self.log(Some(n), format!("PostgreSQL started ({start_as:?})"));
                }
                Outcome::Done(self.rng.range(5, 20))
            }
            Action::Promote { reason } => self.promote(n, reason, obs),
            Action::Demote { upstream } => {
                let a = self.agent(n);
                a.holds_leader = false;
                a.deadline.clear();
                a.state = "stopped";
                let startup = self.startup_ms();
                let tl = timeline(&self.epochs, &self.nodes[n].pg);
                let now = self.now;
                let pg = &mut self.nodes[n].pg;
                pg.stop();
                if upstream.is_none() {
                    pg.standby_signal = true;
                    pg.start(now, startup, None, tl);
                    self.agent(n).state = "starting";
                }
                self.log(
                    Some(n),
                    format!("demoted: PostgreSQL stopped (upstream {upstream:?})"),
                );
                Outcome::Done(self.rng.range(200, 1_500))
            }
            Action::FailsafeHold => {
                if let Some(started) = self.agent(n).failsafe_round.take() {
                    self.set_deadline(n, started);
                    self.agent(n).failsafe_held = true;
                    self.stats.failsafe_holds += 1;
                }
                Outcome::Done(0)
            }
            Action::ReleaseLeader => {
                let a = self.agent(n);
                a.holds_leader = false;
                a.deadline.clear();
                let key = self.store.keys.leader();
                match self.call(n, |s, _| s.delete_if_value(&key, me.as_bytes())) {
                    (Some(_), t) => {
                        self.log(Some(n), "released the leader key".into());
                        Outcome::Done(t)
                    }
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
            Action::Rewind { from } => {
                let Some(src) = member(from) else {
                    return Outcome::Failed(1, format!("member {from} has no usable conn_url"));
                };
                if !self.net_ok(n, src) || !self.nodes[src].pg.ready(self.now) {
                    return Outcome::Failed(3_000, format!("cannot connect to {from}"));
                }
                let src_tl = timeline(&self.epochs, &self.nodes[src].pg);
                if self.nodes[src].pg.checkpoint_tl != src_tl {
                    return Outcome::Failed(
                        5,
                        "the leader has not checkpointed since its promotion".into(),
                    );
                }
                self.nodes[n].pg.standby_signal = false;
                let took = self.rng.range(300, 3_000);
                // pg_rewind itself sometimes fails (e.g. WAL already recycled): then the
                // executor re-clones.
                let result = if self.nodes[n].pg.running || self.rng.chance(30) {
                    self.log(
                        Some(n),
                        format!("pg_rewind from {from} failed; cloning afresh"),
                    );
                    self.clone_from(n, src)
                } else {
                    let (target, source) = pair(&mut self.nodes, n, src);
                    let what = pg_rewind(&self.epochs, &mut target.pg, &source.pg);
                    self.log(Some(n), format!("pg_rewind from {from}: {what}"));
                    Ok(())
                };
                match result {
                    Ok(()) => {
                        self.agent(n).rewound = true;
                        Outcome::Done(took)
                    }
                    Err(why) => Outcome::Failed(took, why),
                }
            }
            Action::Follow { leader } => {
                let up = member(leader);
                let pg = &mut self.nodes[n].pg;
                pg.standby_signal = true;
                if pg.upstream != up {
                    if !pg.running {
                        return Outcome::Failed(
                            5,
                            "reload failed: PostgreSQL is not running".into(),
                        );
                    }
                    pg.upstream = up;
                }
                Outcome::Done(self.rng.range(2, 6))
            }
            Action::ConfigurePrimary => {
                let pg = &mut self.nodes[n].pg;
                pg.standby_signal = false;
                pg.upstream = None;
                Outcome::Done(2)
            }
            Action::EnsureSlots { .. } => {
                if self.nodes[n].pg.ready(self.now) {
                    Outcome::Done(self.rng.range(2, 6))
                } else {
                    Outcome::Failed(2, "cannot create slots: PostgreSQL does not answer".into())
                }
            }
            Action::WriteStatus => {
                let Some(optime) = obs.local.probe.as_ref().and_then(|p| p.wal_position) else {
                    return Outcome::Done(0);
                };
                let key = self.store.keys.status();
                let body = serde_json::to_vec(&Status {
                    optime: Some(optime),
                    ..Status::default()
                })
                .expect("json");
                match self.call(n, |s, _| s.put(&key, body, None)) {
                    (Some(_), t) => match self.write_failsafe(n, cluster) {
                        Ok(t2) => Outcome::Done(t + t2),
                        Err(t2) => Outcome::Failed(t + t2, "etcd unreachable".into()),
                    },
                    (None, t) => Outcome::Failed(t, "etcd unreachable".into()),
                }
            }
        }
    }

    /// `write_failsafe`: with failsafe mode on, `/failsafe` lists every member's REST API.
    fn write_failsafe(&mut self, n: usize, cluster: Option<&Cluster>) -> Result<u64, u64> {
        let Some(c) = cluster else { return Ok(0) };
        let mode = c
            .config
            .as_ref()
            .map_or(self.bootstrap_cfg.failsafe_mode, |c| c.value.failsafe_mode);
        let key = self.store.keys.failsafe();
        if !mode {
            if c.failsafe.is_none() {
                return Ok(0);
            }
            return match self.call(n, |s, _| s.remove(&key)) {
                (Some(_), t) => Ok(t),
                (None, t) => Err(t),
            };
        }
        let mut wanted: BTreeMap<String, String> = c
            .members
            .iter()
            .map(|(name, m)| (name.clone(), m.value.api_url.clone()))
            .collect();
        wanted.insert(
            NAMES[n].to_string(),
            format!("http://{}:8008/patroni", NAMES[n]),
        );
        if c.failsafe.as_ref() == Some(&wanted) {
            return Ok(0);
        }
        let body = serde_json::to_vec(&wanted).expect("json");
        match self.call(n, |s, _| s.put(&key, body, None)) {
            (Some(_), t) => {
                self.log(
                    Some(n),
                    format!("wrote /failsafe: {:?}", wanted.keys().collect::<Vec<_>>()),
                );
                self.agent(n).failsafe_known = Some(wanted);
                Ok(t)
            }
            (None, t) => Err(t),
        }
    }

    fn startup_ms(&mut self) -> u64 {
        // Mostly quick; sometimes a long crash recovery.
        if self.rng.chance(50) {
            self.rng.range(3_000, 12_000)
        } else {
            self.rng.range(200, 2_000)
        }
    }

    fn promote(&mut self, n: usize, reason: &str, obs: &Observation) -> Outcome {
        let probe = obs.local.probe.as_ref();
        let old_timeline = probe.and_then(|p| p.timeline).unwrap_or(1);
        let lsn = probe
            .and_then(|p| p.replay_lsn.or(p.wal_position))
            .unwrap_or(0);
        let now = self.now;
        let pg = &self.nodes[n].pg;
        if !pg.ready(now) || !pg.in_recovery {
            return Outcome::Failed(5, "pg_promote failed: not a running standby".into());
        }
        let tl = timeline(&self.epochs, pg) + 1;
        self.epochs.push(Epoch {
            timeline: tl,
            parent: Some(pg.wal.epoch),
            start: pg.wal.lsn,
        });
        let epoch = self.epochs.len() - 1;
        let pg = &mut self.nodes[n].pg;
        pg.wal.epoch = epoch;
        pg.in_recovery = false;
        pg.standby_signal = false;
        pg.control_primary = true;
        pg.upstream = None;
        pg.streaming = false;
        // The CHECKPOINT right after promotion.
        pg.checkpoint_tl = tl;
        if self.faults_started {
            self.stats.failovers += 1;
        }
        self.log(
            Some(n),
            format!("PROMOTED to timeline {tl} at {lsn} ({reason})"),
        );
        let mut history = obs
            .cluster
            .as_ref()
            .map(|c| c.history.clone())
            .unwrap_or_default();
        history.push(HistoryEntry {
            timeline: old_timeline,
            lsn,
            reason: reason.to_string(),
            timestamp: Some(format!("{now}ms")),
            new_leader: Some(NAMES[n].to_string()),
        });
        let key = self.store.keys.history();
        let body = serde_json::to_vec(&history).expect("json");
        let (_, t) = self.call(n, |s, _| s.put(&key, body, None));
        Outcome::Done(self.rng.range(50, 400) + self.rng.range(10, 1_500) + t)
    }

    /// pg_basebackup from `src` (also the executor's fallback when pg_rewind fails).
    fn clone_from(&mut self, n: usize, src: usize) -> Result<(), String> {
        let now = self.now;
        if !self.net_ok(n, src) || !self.nodes[src].pg.ready(now) {
            self.nodes[n].pg.data = DataDir::NoCluster;
            self.agent(n).state = "stopped";
            return Err(format!("clone from {} failed: cannot connect", NAMES[src]));
        }
        let tl = timeline(&self.epochs, &self.nodes[src].pg);
        let (target, source) = pair(&mut self.nodes, n, src);
        let pg = &mut target.pg;
        pg.data = DataDir::Initialized;
        pg.wal = source.pg.wal;
        pg.control_primary = !source.pg.in_recovery;
        pg.backup_label = true;
        pg.standby_signal = false;
        pg.checkpoint_tl = tl;
        let a = self.agent(n);
        a.rewound = true;
        a.state = "stopped";
        self.log(Some(n), format!("cloned from {}", NAMES[src]));
        Ok(())
    }

    /// `keep_lease_during`: renew the lease every loop_wait while a long job runs.
    fn keep_lease_during(&mut self, n: usize) {
        self.agent(n).keep_lease = Some(self.now);
        self.background_keepalive(n);
    }

    fn background_keepalive(&mut self, n: usize) {
        let now = self.now;
        let a = self.agent(n);
        a.keep_lease = Some(now);
        if let Some(id) = a.lease {
            let _ = self.call(n, |s, now| s.keepalive(now, id));
        }
    }

    fn leadership_confirmed(&mut self, n: usize) {
        let a = self.agent(n);
        a.holds_leader = true;
        a.failsafe_held = false;
        self.feed_watchdog(n);
        if let Some(started) = self.agent(n).renewed_at {
            self.set_deadline(n, started);
        }
    }

    /// `LeaseDeadline::renewed` from a request that started at `started` (node clock),
    /// and the fencing timer's wake-up for it.
    fn set_deadline(&mut self, n: usize, started: u64) {
        let ppm = self.nodes[n].ppm;
        let a = self.nodes[n].agent.as_mut().expect("the agent is alive");
        a.deadline
            .renewed(self.base + Duration::from_millis(started), TTL);
        let d = a.deadline.deadline().expect("just renewed");
        let local = (d - self.base).as_nanos().div_ceil(1_000_000) as u64;
        self.push(global_ms(ppm, local), Ev::FenceTimer { node: n });
    }

    /// `feed_watchdog`: open (arm) the device the first time we lead, feed it after.
    fn feed_watchdog(&mut self, n: usize) {
        let ppm = self.nodes[n].ppm;
        let lnow = self.local_now(n);
        let timeout = TTL
            .saturating_sub(WATCHDOG_MARGIN)
            .max(Duration::from_secs(1));
        let fires_at = global_ms(ppm, lnow + timeout.as_millis() as u64);
        let node = &mut self.nodes[n];
        let Some(wd) = node.watchdog.as_mut() else {
            return; // automatic mode without a device: lead without one
        };
        wd.fires_at = Some(fires_at);
        wd.gen += 1;
        let gen = wd.gen;
        node.agent
            .as_mut()
            .expect("the agent is alive")
            .watchdog_open = true;
        self.push(fires_at, Ev::WatchdogFires { node: n, gen });
    }

    /// Dropping the `Watchdog`: the magic close disarms it.
    fn close_watchdog(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let a = node.agent.as_mut().expect("the agent is alive");
        if std::mem::take(&mut a.watchdog_open) {
            if let Some(wd) = node.watchdog.as_mut() {
                wd.fires_at = None;
                wd.gen += 1;
            }
        }
    }

    /// `publish_state`: the member key before a long job.
    fn publish_state(&mut self, n: usize) {
        let data = self.nodes[n].pg.data;
        let a = self.agent(n);
        let local = Local {
            data,
            system_identifier: a.system_identifier.clone(),
            was_primary: false,
            running: false,
            probe: None,
            rewound: a.rewound,
            stopped_timeline: None,
        };
        self.write_member(n, &local);
    }

    /// `write_member`: our member key under our lease, when it changed.
    fn write_member(&mut self, n: usize, local: &Local) -> u64 {
        let a = self.agent(n);
        let Some(lease) = a.lease else { return 0 };
        let sig: MemberSig = (
            a.state,
            role_of(local),
            local
                .probe
                .as_ref()
                .map(|p| (p.wal_position, p.timeline, p.in_recovery, p.streaming)),
        );
        if a.last_member
            .as_ref()
            .is_some_and(|(l, s)| *l == lease && *s == sig)
        {
            return 0;
        }
        let body = member_json(n, a.state, local).into_bytes();
        let key = self.store.keys.member(NAMES[n]);
        let (r, took) = self.call(n, |s, _| s.put(&key, body, Some(lease)));
        if r == Some(Ok(())) {
            self.agent(n).last_member = Some((lease, sig));
        }
        took
    }

    // -- fencing ------------------------------------------------------------------------

    /// `fence::spawn_timer`: at the local deadline, PostgreSQL goes read-only
    /// (standby.signal + fast shutdown). Part of the agent process: frozen with it.
    fn fence_timer(&mut self, n: usize) {
        let now_i = self.instant(self.local_now(n));
        let node = &mut self.nodes[n];
        let a = node.agent.as_mut().expect("the agent is alive");
        let Some(d) = a.deadline.deadline() else {
            return;
        };
        if now_i < d {
            return;
        }
        a.deadline.clear();
        // Tell peers at once (via /patroni) that we no longer run a primary.
        a.shown.is_leader = false;
        a.shown.probe = None;
        a.shown.state = "stopping".into();
        node.pg.standby_signal = true;
        let was_running = node.pg.running;
        node.pg.stop();
        self.stats.fences += 1;
        self.log(
            Some(n),
            format!("fencing timer: lease deadline passed; fenced PostgreSQL (was running: {was_running})"),
        );
    }

    /// `feed_guard`: arm the guard at deadline + margin/2 while we lead, else disarm.
    fn feed_guard(&mut self, n: usize) {
        let ppm = self.nodes[n].ppm;
        let lnow = self.local_now(n);
        let now_i = self.instant(lnow);
        let grace = safety_margin(TTL) / 2;
        let node = &mut self.nodes[n];
        let a = node.agent.as_mut().expect("the agent is alive");
        let target = match (a.holds_leader, a.deadline.deadline(), node.pg.running) {
            (true, Some(d), true) => {
                // The guard gets whole milliseconds, as on its command line.
                let fire_in = (d.saturating_duration_since(now_i) + grace).as_millis() as u64;
                Some((global_ms(ppm, lnow + fire_in), node.pg.incarnation))
            }
            _ => None,
        };
        let Some(mut g) = a.guard else { return };
        if !node.guards[g].alive {
            if self.fixes.guard_respawn {
                node.guards.push(GuardProc {
                    alive: true,
                    input_open: true,
                    armed: None,
                });
                g = node.guards.len() - 1;
                a.guard = Some(g);
            } else {
                a.guard = None;
                self.log(
                    Some(n),
                    "the fencing guard is gone (it exited); no more guard for this agent".into(),
                );
                return;
            }
        }
        let guard = &mut node.guards[g];
        let was_armed = guard.armed.is_some();
        if was_armed != target.is_some() {
            let msg = match target {
                Some((at, _)) => format!(
                    "guard armed (fires at {:.3}s unless re-armed)",
                    at as f64 / 1000.0
                ),
                None => "guard disarmed".to_string(),
            };
            self.log(Some(n), msg);
        }
        let guard = &mut self.nodes[n].guards[g];
        match target {
            Some((fire_at, incarnation)) => {
                self.next_arm += 1;
                let id = self.next_arm;
                guard.armed = Some(Arm {
                    id,
                    fire_at,
                    incarnation,
                });
                self.push(
                    fire_at,
                    Ev::Guard {
                        node: n,
                        guard: g,
                        arm: id,
                    },
                );
            }
            None => guard.armed = None,
        }
    }

    /// `guard::run`: when its deadline passes without a newer line, kill the postmaster
    /// it was armed for (if that one still runs), then exit.
    fn guard_fires(&mut self, n: usize, g: usize, arm: u64) {
        let node = &mut self.nodes[n];
        let guard = &mut node.guards[g];
        let Some(a) = guard
            .armed
            .filter(|a| a.id == arm && guard.alive && a.fire_at <= self.now)
        else {
            return;
        };
        guard.alive = false;
        guard.armed = None;
        if node.pg.running && node.pg.incarnation == a.incarnation {
            node.pg.stop();
            self.stats.guard_kills += 1;
            self.log(
                Some(n),
                "guard: lease deadline passed without renewal; killed PostgreSQL; guard exits"
                    .into(),
            );
        } else {
            self.log(
                Some(n),
                "guard: deadline passed, PostgreSQL already gone; guard exits".into(),
            );
        }
    }

    // -- faults -------------------------------------------------------------------------

    fn start_agent(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.guards.push(GuardProc {
            alive: true,
            input_open: true,
            armed: None,
        });
        let mut a = Agent::new(NAMES[n], node.guards.len() - 1);
        a.wake_gen = 1;
        node.agent = Some(a);
        let at = self.now + self.rng.range(1, 500);
        self.push(at, Ev::Wake { node: n, gen: 1 });
    }

    fn boot(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if !node.machine_up {
            node.machine_up = true;
            self.log(Some(n), "machine back up".into());
        }
        if self.nodes[n].agent.is_none() {
            self.log(Some(n), "agent starts".into());
            self.start_agent(n);
        }
    }

    fn pause(&mut self, n: usize, for_ms: u64) {
        let node = &mut self.nodes[n];
        if node.paused || node.agent.is_none() {
            return;
        }
        node.paused = true;
        node.pause_gen += 1;
        let gen = node.pause_gen;
        self.stats.faults += 1;
        let phase = node
            .agent
            .as_ref()
            .and_then(|a| a.turn.as_ref())
            .map(|t| t.phase);
        self.log(
            Some(n),
            format!("FAULT: agent SIGSTOPped for {for_ms}ms (mid-turn: {phase:?})"),
        );
        self.push(self.now + for_ms, Ev::Resume { node: n, gen });
    }

    /// SIGCONT. The fencing timer and the loop resume together; which runs first is up
    /// to the scheduler, so the model picks either order.
    fn resume(&mut self, n: usize) {
        if !self.nodes[n].paused {
            return;
        }
        self.nodes[n].paused = false;
        self.log(Some(n), "agent resumed (SIGCONT)".into());
        let Some(a) = self.nodes[n].agent.as_ref() else {
            return;
        };
        let (held, idle, dirty) = (a.held, a.turn.is_none(), a.dirty);
        let timer_first = self.rng.chance(500);
        if timer_first {
            self.fence_timer(n);
        }
        let a = self.agent(n);
        if held {
            a.held = false;
            let id = a.turn.as_ref().expect("held turn").id;
            self.push(self.now, Ev::Continue { node: n, turn: id });
        } else if idle && dirty {
            a.wake_gen += 1;
            let gen = a.wake_gen;
            self.push(self.now, Ev::Wake { node: n, gen });
        }
        if !timer_first {
            self.push(self.now, Ev::FenceTimer { node: n });
        }
    }

    /// The agent process dies (SIGKILL); PostgreSQL and the guard live on.
    fn kill_agent(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if let Some(g) = node.agent.take().and_then(|a| a.guard) {
            let guard = &mut node.guards[g];
            guard.input_open = false;
            if guard.armed.is_none() {
                guard.alive = false;
            }
        }
        node.paused = false;
    }

    fn crash_machine(&mut self, n: usize, lose_disk: bool) {
        self.kill_agent(n);
        let node = &mut self.nodes[n];
        node.machine_up = false;
        node.pg.stop();
        for g in &mut node.guards {
            g.alive = false;
        }
        if let Some(wd) = node.watchdog.as_mut() {
            wd.fires_at = None;
            wd.gen += 1;
        }
        if lose_disk {
            node.pg = Pg::empty();
        }
    }

    fn fault(&mut self) {
        if self.now >= FAULTS_UNTIL_MS {
            return;
        }
        let next = self.now + self.rng.range(1_000, 8_000);
        self.push(next, Ev::Fault);
        let leader = self.leader_key().and_then(|(name, _)| Self::index(&name));
        if !self.faults_started {
            // Every run starts its fault phase by crashing the leader: at least one
            // failover per run.
            self.faults_started = true;
            if let Some(l) = leader {
                self.stats.faults += 1;
                self.log(Some(l), "FAULT: machine crash (the leader)".into());
                self.crash_machine(l, false);
                self.nodes[l].boot_gen += 1;
                let gen = self.nodes[l].boot_gen;
                let at = self.now + self.rng.range(2_000, 40_000);
                self.push(at, Ev::Boot { node: l, gen });
            }
            return;
        }
        let n = match leader {
            Some(l) if self.rng.chance(500) => l,
            _ => self.rng.pick(NODES),
        };
        if !self.nodes[n].machine_up {
            return;
        }
        let roll = self.rng.range(0, 99);
        let now = self.now;
        match roll {
            0..=14 => {
                // A streaming replica may come back with a new, empty disk.
                let pg = &self.nodes[n].pg;
                let lose_disk =
                    pg.in_recovery && pg.streaming && leader != Some(n) && self.rng.chance(200);
                self.stats.faults += 1;
                self.log(
                    Some(n),
                    format!("FAULT: machine crash (disk lost: {lose_disk})"),
                );
                self.crash_machine(n, lose_disk);
                self.nodes[n].boot_gen += 1;
                let gen = self.nodes[n].boot_gen;
                let at = now + self.rng.range(2_000, 40_000);
                self.push(at, Ev::Boot { node: n, gen });
            }
            15..=26 => {
                if self.nodes[n].agent.is_none() {
                    return;
                }
                self.stats.faults += 1;
                self.log(
                    Some(n),
                    "FAULT: agent SIGKILLed (PostgreSQL and guard live on)".into(),
                );
                self.kill_agent(n);
                self.nodes[n].boot_gen += 1;
                let gen = self.nodes[n].boot_gen;
                let at = now + self.rng.range(1_000, 15_000);
                self.push(at, Ev::Boot { node: n, gen });
            }
            27..=49 => {
                let how_long = self.rng.range(200, 25_000);
                self.pause(n, how_long);
            }
            50..=74 => {
                if self.nodes[n].partition != Partition::None {
                    return;
                }
                let kind = if roll < 62 {
                    Partition::Full
                } else {
                    Partition::DcsOnly
                };
                let node = &mut self.nodes[n];
                node.partition = kind;
                node.heal_gen += 1;
                let gen = node.heal_gen;
                if let Some(a) = node.agent.as_mut() {
                    a.watching = false;
                }
                self.stats.faults += 1;
                let how_long = self.rng.range(1_000, 30_000);
                self.log(
                    Some(n),
                    format!("FAULT: partition {kind:?} for {how_long}ms"),
                );
                self.push(now + how_long, Ev::Heal { node: n, gen });
            }
            75..=89 if self.nodes[n].pg.running => {
                self.stats.faults += 1;
                self.log(Some(n), "FAULT: PostgreSQL killed".into());
                self.nodes[n].pg.stop();
            }
            _ => {}
        }
    }

    fn heal_all(&mut self) {
        self.log(None, "all faults healed; the cluster must settle".into());
        for n in 0..NODES {
            let node = &mut self.nodes[n];
            node.partition = Partition::None;
            node.boot_gen += 1;
            node.pause_gen += 1;
            node.heal_gen += 1;
            self.resume(n);
            self.boot(n);
        }
    }

    // -- invariants ---------------------------------------------------------------------

    /// Checked after every event.
    ///
    /// 1. At most one node believes it is the writable primary: PostgreSQL accepts
    ///    writes and its agent's local lease deadline has not passed.
    /// 2. At most one node accepts writes at all, whatever its agent believes (the
    ///    property the chaos checker measures; it needs the timer and the guard).
    /// 3. An agent whose local deadline has not passed holds the leader key on the
    ///    server, on a live lease (the local deadline precedes the server's expiry) —
    ///    unless failsafe confirmations extended it: then the others promised instead.
    fn check_safety(&self) -> Result<(), String> {
        let now = self.now;
        let writable = |n: usize| self.nodes[n].pg.writable(now);
        let believes = |n: usize| {
            self.nodes[n]
                .agent
                .as_ref()
                .is_some_and(|a| a.deadline.valid_at(self.instant(self.local_now(n))))
        };
        let count = |f: &dyn Fn(usize) -> bool| (0..NODES).filter(|&n| f(n)).count();
        if count(&|n| writable(n) && believes(n)) > 1 {
            let both: Vec<usize> = (0..NODES).filter(|&n| writable(n) && believes(n)).collect();
            return Err(format!(
                "two nodes believe they are the writable primary: {}",
                names(&both)
            ));
        }
        if count(&writable) > 1 {
            let both: Vec<usize> = (0..NODES).filter(|&n| writable(n)).collect();
            return Err(format!("two writable primaries at once: {}", names(&both)));
        }
        let held_by_dcs = |n: usize| {
            self.nodes[n]
                .agent
                .as_ref()
                .is_some_and(|a| !a.failsafe_held)
        };
        for n in (0..NODES).filter(|&n| believes(n) && held_by_dcs(n)) {
            let leader = self.store.leader_at(now);
            if leader.map(|(name, _)| name) != Some(NAMES[n]) {
                return Err(format!(
                    "{}'s local lease deadline has not passed but etcd's leader key is {leader:?}",
                    NAMES[n]
                ));
            }
        }
        Ok(())
    }

    /// With every fault healed long enough: exactly one writable primary, holding the
    /// leader key, every other node streaming from it; and at least one failover
    /// happened in this run.
    fn check_liveness(&mut self) -> Result<(), String> {
        let now = self.now;
        let writable: Vec<usize> = (0..NODES)
            .filter(|&n| self.nodes[n].pg.writable(now))
            .collect();
        let settle = (END_MS - FAULTS_UNTIL_MS) / 1000;
        let [p] = writable[..] else {
            return Err(format!(
                "{settle}s after all faults healed there are {} writable primaries ({})",
                writable.len(),
                names(&writable)
            ));
        };
        let leader = self.leader_key();
        if leader.as_ref().map(|(name, _)| name.as_str()) != Some(NAMES[p]) {
            return Err(format!(
                "the primary is {} but the leader key is {leader:?}",
                NAMES[p]
            ));
        }
        if self.stats.failovers == 0 {
            return Err("no failover happened in this run".into());
        }
        for r in (0..NODES).filter(|&r| r != p) {
            let pg = &self.nodes[r].pg;
            if pg.ready(now) && pg.in_recovery && pg.streaming && pg.upstream == Some(p) {
                continue;
            }
            let why = if !pg.ready(now) {
                "PostgreSQL not running"
            } else if pg.upstream != Some(p) {
                "not configured to follow the primary"
            } else if stream(&self.epochs, pg.wal, self.nodes[p].pg.wal, 0).is_none() {
                "its WAL diverged from the primary's (it cannot stream)"
            } else {
                "not streaming"
            };
            return Err(format!(
                "{settle}s after all faults healed {} is not a replica streaming from {}: {why}",
                NAMES[r], NAMES[p]
            ));
        }
        Ok(())
    }

    fn dump(&self) -> String {
        let mut out = format!(
            "seed {} ({}) at {}ms, etcd leader key (name, lease expiry): {:?}\n",
            self.seed,
            self.options,
            self.now,
            self.leader_key()
        );
        for (n, node) in self.nodes.iter().enumerate() {
            let pg = &node.pg;
            out.push_str(&format!(
                "  {}: machine_up {} partition {:?} paused {} | pg running {} ready {} in_recovery {} tl {} lsn {} upstream {:?} streaming {}",
                NAMES[n],
                node.machine_up,
                node.partition,
                node.paused,
                pg.running,
                pg.ready(self.now),
                pg.in_recovery,
                timeline(&self.epochs, pg),
                pg.wal.lsn,
                pg.upstream.map(|u| NAMES[u]),
                pg.streaming,
            ));
            let guards: Vec<String> = node
                .guards
                .iter()
                .enumerate()
                .filter(|(_, g)| g.alive)
                .map(|(i, g)| {
                    format!(
                        "#{i} armed {:?}",
                        g.armed.map(|a| (a.fire_at, a.incarnation))
                    )
                })
                .collect();
            out.push_str(&format!(
                " pg incarnation {} | live guard processes [{}] | watchdog {:?}",
                pg.incarnation,
                guards.join(", "),
                node.watchdog
            ));
            match &node.agent {
                None => out.push_str(" | agent dead\n"),
                Some(a) => {
                    let deadline = a.deadline.deadline().map(|d| {
                        let local = (d - self.base).as_millis() as u64;
                        global_ms(node.ppm, local)
                    });
                    out.push_str(&format!(
                        " | agent holds_leader {} deadline(global ms) {deadline:?} lease {:?} phase {:?} its guard {:?}\n",
                        a.holds_leader,
                        a.lease,
                        a.turn.as_ref().map(|t| t.phase),
                        a.guard,
                    ));
                }
            }
        }
        out
    }
}

/// The proposed `race_refusal` rule (fix `failsafe-membership`): in failsafe mode, a
/// replica the leader's `/failsafe` key does not list never promised anything to that
/// leader, so it must not race.
fn failsafe_outsider(o: &Observation) -> Option<String> {
    let c = o.cluster.as_ref()?;
    let racing = o.local.probe.as_ref().is_some_and(|p| p.in_recovery) && c.leader.is_none();
    let listed = c.failsafe.as_ref().filter(|f| !f.is_empty())?;
    (racing && c.dynamic_config().failsafe_mode && !listed.contains_key(&o.me))
        .then(|| "not racing: failsafe mode and /failsafe does not list us".to_string())
}

fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|&n| NAMES[n])
        .collect::<Vec<_>>()
        .join(", ")
}

/// Two distinct nodes, one mutable.
fn pair(nodes: &mut [Node], a: usize, b: usize) -> (&mut Node, &Node) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = nodes.split_at_mut(b);
        (&mut lo[a], &hi[0])
    } else {
        let (lo, hi) = nodes.split_at_mut(a);
        (&mut hi[0], &lo[b])
    }
}

/// `publish.rs`: `role_of`.
fn role_of(local: &Local) -> Role {
    match (&local.probe, local.data) {
        (Some(p), _) if !p.in_recovery => Role::Primary,
        (Some(_), _) => Role::Replica,
        (None, DataDir::Initialized) if local.was_primary => Role::Demoted,
        (None, DataDir::Initialized) => Role::Replica,
        (None, _) => Role::Uninitialized,
    }
}

/// `publish.rs`: `member_json`, in Patroni's shape.
///
/// Written out by hand (every string is a plain identifier, nothing needs escaping):
/// building a `serde_json::Value` per turn dominated the run time in debug builds.
fn member_json(n: usize, state: &str, local: &Local) -> String {
    let name = NAMES[n];
    let role = role_of(local).as_str();
    let mut m = format!(
        r#"{{"conn_url":"postgres://{name}:5432/postgres","api_url":"http://{name}:8008/patroni","state":"{state}","role":"{role}","version":"4.0.0""#
    );
    if let Some(p) = &local.probe {
        let num = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        m.push_str(&format!(
            r#","xlog_location":{},"timeline":{}"#,
            num(p.wal_position),
            num(p.timeline.map(u64::from))
        ));
        if p.in_recovery {
            let repl = if p.streaming {
                "streaming"
            } else {
                "in archive recovery"
            };
            m.push_str(&format!(
                r#","replay_lsn":{},"replication_state":"{repl}""#,
                num(p.replay_lsn)
            ));
        }
    }
    m.push('}');
    m
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
    )
}

/// The default set of seeds (or `WARDEN_SIM_SEEDS` of them, or the one
/// `WARDEN_SIM_SEED`): every run must keep the safety invariants after every event and
/// end, faults healed, with one primary after at least one failover.
#[test]
fn seeded_runs_keep_at_most_one_writable_primary() {
    let single = env_u64("WARDEN_SIM_SEED");
    let seeds: Vec<u64> = match single {
        Some(s) => vec![s],
        None => (0..env_u64("WARDEN_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let fixes = Fixes::from_env();
    let started = Instant::now();
    let mut total = Stats::default();
    let mut failures: Vec<(u64, String, String)> = Vec::new();
    for &seed in &seeds {
        let mut w = World::new(seed, single.is_some(), fixes);
        let result = w.run();
        total.add(&w.stats);
        let trace = Vec::from(w.trace.clone()).join("\n");
        match result {
            Ok(_) if single.is_some() => eprintln!("{trace}\n{}", w.dump()),
            Ok(_) => {}
            Err(why) => failures.push((seed, why, format!("{trace}\n{}", w.dump()))),
        }
    }
    eprintln!(
        "simulation: {} seeds in {:.1?} ({fixes:?}): {total}, {} failing seeds",
        seeds.len(),
        started.elapsed(),
        failures.len(),
    );
    if let Some((seed, why, trace)) = failures.first() {
        for (s, w, _) in &failures {
            eprintln!("  seed {s}: {w}");
        }
        eprintln!("\nfirst failing seed {seed}: {why}\nlast events:\n{trace}");
        panic!(
            "{} of {} seeds failed; first: seed {seed}: {why}\nreplay: WARDEN_SIM_SEED={seed} cargo test -p warden-agent --test simulation -- --nocapture",
            failures.len(),
            seeds.len()
        );
    }
    assert!(total.failovers > 0, "no run exercised a failover");
}

#[test]
fn a_seed_replays_exactly() {
    let fingerprint = |seed| {
        let mut w = World::new(seed, true, Fixes::default());
        let result = w.run();
        (
            result.map(|s| (s.events, s.turns, s.failovers)),
            Vec::from(w.trace.clone()),
            w.dump(),
        )
    };
    assert_eq!(fingerprint(7), fingerprint(7));
}
