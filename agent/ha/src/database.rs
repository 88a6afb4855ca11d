//! The I/O half of an engine: the [`Database`] adapter the daemon's loop drives.
//!
//! [`crate::Engine`] is the pure half (facts and rules the decision core asks about);
//! [`Database`] is what carries a [`crate::Decision`]'s database actions out on the
//! local node: observe the data and the server, create, copy, start, stop, promote and
//! repair it. The loop (`warden-agent`) is generic over it; PostgreSQL's adapter is
//! `warden_pg::Postgres` (`agent/pg/src/database.rs`).
//!
//! The methods are engine-neutral: they name what the loop needs done, not how. Members
//! are addressed by the `host:port` of their `conn_url`; positions are bytes of the
//! replication stream, as in [`crate::Db`]. Asynchronous methods return `Send` futures
//! so the loop can run on any executor; this crate itself stays free of I/O and clocks.

use crate::engine::{DataState, Engine};
use crate::observation::Local;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use warden_consensus::{Cluster, DynamicConfig};

/// The role [`Database::configure`] writes the server's configuration for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleConfig {
    /// Writable, with the synchronous setting last given by
    /// [`Database::set_synchronous`].
    Primary,
    /// Read-only, streaming from `source`, or from nobody (`None`: waiting for a leader,
    /// or no DCS to say who leads).
    Replica { source: Option<Source> },
}

/// The member a replica streams from, addressed by its `conn_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Empty for the remote primary of a standby cluster ([`Source::remote`]): no
    /// member of this cluster.
    pub member: String,
    /// Empty (with port 0) for a standby cluster that only replays the remote's archive.
    pub host: String,
    pub port: u16,
}

impl Source {
    /// The remote primary a standby cluster's leader follows, from `standby_cluster`
    /// (`None`: no address, the archive only). Member names are never empty, so an
    /// empty one marks it.
    pub fn remote(address: Option<(String, u16)>) -> Self {
        let (host, port) = address.unwrap_or_default();
        Self {
            member: String::new(),
            host,
            port,
        }
    }

    /// The remote primary of a standby cluster (the engine then applies the rest of
    /// `standby_cluster`: its slot, restore command, apply delay).
    pub fn is_remote(&self) -> bool {
        self.member.is_empty()
    }

    /// Whether there is a server to stream from (a remote without an address replays
    /// the archive only).
    pub fn streams(&self) -> bool {
        !self.host.is_empty()
    }
}

/// What the primary's configuration says about synchronous replication
/// ([`Database::set_synchronous`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSetting {
    /// The configured setting (synchronous mode off).
    Configured,
    /// Synchronous with no standby yet: a fresh leader before its first commit (strict
    /// mode then blocks commits, as Patroni does).
    Nobody { strict: bool },
    /// A setting a [`SyncPlan`] chose, in the engine's own syntax.
    Planned(String),
}

/// One step of the leader's synchronous replication, carried out in order by the loop
/// (it stops at the first that fails): the order is what keeps `/sync` naming only
/// standbys that hold every acknowledged commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// Write `/sync`: us as leader, `quorum` (0: every voter has every commit) and
    /// `voters`, by compare-and-swap on the revision the plan read.
    Key { quorum: u32, voters: Vec<String> },
    /// Put this setting in the primary's configuration and reload it.
    Setting(String),
}

/// The leader's synchronous replication for one turn ([`Database::plan_synchronous`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    pub steps: Vec<SyncStep>,
    /// Not at its target yet (a standby to confirm): the loop turns again within a
    /// second instead of a `loop_wait`.
    pub pending: bool,
}

/// What the primary retains for other members ([`Database::retained`]), published in
/// `/status` so a promoted replica can retain the same (PostgreSQL: physical slots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retained {
    /// Where each retained position stands, by the engine's name for it.
    pub positions: BTreeMap<String, u64>,
    /// Every name retained for a member seen lately (Patroni's `retain_slots`).
    pub names: Vec<String>,
}

/// How the database server is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// End every session and stop cleanly (PostgreSQL: fast shutdown, SIGINT).
    Fast,
    /// Stop at once; the next start recovers (PostgreSQL: immediate shutdown, SIGQUIT).
    Immediate,
}

/// How [`Database::repair`] ended.
#[derive(Debug)]
pub enum RepairOutcome<E> {
    /// The data may now follow the source.
    Repaired,
    /// The data cannot be repaired in place (why): copy it afresh.
    Unrepairable(E),
}

/// A database engine's adapter: the local server and its data, as the loop drives them.
///
/// Errors are reported as text by the loop (`Self::Error: Display`); no method retries
/// on its own beyond what it documents, the next turn decides again.
pub trait Database: Send {
    /// The engine's own facts of one observation, with the engine's policy.
    type Facts: Engine + Send;
    /// What went wrong in an operation.
    type Error: std::fmt::Display + Send + Sync + 'static;

    /// What is on disk where the engine keeps its data (PostgreSQL: the data directory
    /// with a control file, an empty or partial directory, or none).
    fn data_state(&self) -> DataState;

    /// A server process runs on our data (PostgreSQL: our postmaster child, or the pid
    /// in `postmaster.pid` alive).
    fn is_running(&mut self) -> bool;

    /// The server's process id, which the fencing guard kills when our lease deadline
    /// passes (PostgreSQL: the postmaster's).
    fn server_pid(&mut self) -> Option<i32>;

    /// This turn's look at the local database: data state, identity, whether it last
    /// ran writable, whether it runs, and the engine's facts. `repaired`: since it last
    /// ran writable, the data was repaired from or copied off the leader (so it may
    /// follow it without another repair). `dynamic`: the dynamic config in force, for
    /// the engine's settings in it that its policy reads (PostgreSQL: `use_pg_rewind`,
    /// unless the local file sets it). PostgreSQL: `pg_controldata` when stopped (or to
    /// learn the system identifier once), then a status query when running.
    fn observe(
        &mut self,
        repaired: bool,
        dynamic: &DynamicConfig,
    ) -> impl Future<Output = Local<Self::Facts>> + Send;

    /// Creates a new database and leaves it running writable, its first configuration
    /// from `initial` (the `bootstrap.dcs` section). PostgreSQL: initdb, write the
    /// configuration, start, wait until it accepts connections, create the agent's roles.
    fn bootstrap(
        &mut self,
        initial: &DynamicConfig,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Copies the data of the running member at `host:port` into our (stopped, empty or
    /// unusable) data location; an unusable leftover is kept aside, never deleted.
    /// PostgreSQL: write `.pgpass`, then `pg_basebackup` as the replication role.
    fn clone_from(
        &mut self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Writes the server's configuration for `role`, from the dynamic config in force and
    /// the cluster's view (its `/sync` key, on a primary); returns whether anything
    /// changed (the loop then [`Database::reload`]s a running server). PostgreSQL:
    /// `.pgpass`, `postgresql.conf` with `primary_conninfo` and
    /// `synchronous_standby_names`, `pg_hba.conf`, `standby.signal`.
    fn configure(
        &mut self,
        role: &RoleConfig,
        cluster: Option<&Cluster>,
        dynamic: &DynamicConfig,
    ) -> Result<bool, Self::Error>;

    /// Starts the server on the configuration last written for its role; does not wait
    /// for it to accept connections. PostgreSQL: spawn the postmaster.
    fn start(&mut self) -> Result<(), Self::Error>;

    /// Waits (bounded) until the started server accepts connections.
    fn wait_ready(
        &mut self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stops the server (nothing to do when it does not run) and waits for it to exit.
    fn stop(
        &mut self,
        mode: StopMode,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Makes the running replica writable and waits (bounded) until it is.
    /// PostgreSQL: `pg_promote(true, timeout)`, which starts a new timeline.
    fn promote(
        &mut self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Makes the running server re-read the configuration written for it.
    /// PostgreSQL: `pg_reload_conf()`.
    fn reload(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Makes the stopped local data a valid replica of the primary at `host:port`
    /// ([`crate::Action::Repair`]). `Err`: not attempted now (e.g. the source is not
    /// ready), the next turn decides again; [`RepairOutcome::Unrepairable`]: the data
    /// cannot be repaired in place, the loop copies it afresh ([`Database::clone_from`]).
    /// PostgreSQL: check that the primary checkpointed since its promotion (else `Err`),
    /// remove the recovery signal files, then `pg_rewind` (its failure: unrepairable).
    fn repair(
        &mut self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> impl Future<Output = Result<RepairOutcome<Self::Error>, Self::Error>> + Send;

    /// Deletes the data: only on an operator's explicit reinitialize request.
    fn remove_data(&mut self) -> Result<(), Self::Error>;

    /// Makes the running primary's next clean shutdown fast by writing its pending data
    /// out now (before a switchover; after a promotion, so a repair from it sees the
    /// promotion). PostgreSQL: `CHECKPOINT`. Engines without the notion do nothing.
    fn checkpoint(
        &mut self,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = timeout;
        async { Ok(()) }
    }

    /// Sets what the primary's next [`Database::configure`] writes for synchronous
    /// replication; returns whether it changed. Engines without synchronous replication
    /// ignore it.
    fn set_synchronous(&mut self, setting: SyncSetting) -> bool {
        let _ = setting;
        false
    }

    /// The leader's synchronous replication plan for this turn, with `synchronous_mode`
    /// `on` or `quorum` (the loop handles `off`), from the cluster's view and this turn's
    /// facts. May ask the server what it enforces now. Also chooses the standbys
    /// [`Database::lost_standby`] watches. PostgreSQL: Patroni's rules, through
    /// `warden_pg::sync` and `warden_pg::quorum`. Default: nothing to do.
    fn plan_synchronous(
        &mut self,
        cluster: &Cluster,
        me: &str,
        dynamic: &DynamicConfig,
        facts: &Self::Facts,
    ) -> impl Future<Output = Result<SyncPlan, Self::Error>> + Send {
        let _ = (cluster, me, dynamic, facts);
        async { Ok(SyncPlan::default()) }
    }

    /// We do not lead (any more): forget what only a leader keeps (PostgreSQL: the
    /// synchronous standbys' confirmation mark and the watch list); a later leadership
    /// starts afresh.
    fn not_leading(&mut self) {}

    /// Between turns, resolves with the name of a synchronous standby chosen by the last
    /// plan that stopped streaming (and stops watching it), so the loop acts at once
    /// instead of up to `loop_wait` later. Never resolves when there is nothing to
    /// watch. PostgreSQL: polls `pg_stat_replication`.
    fn lost_standby(&mut self) -> impl Future<Output = String> + Send {
        std::future::pending()
    }

    /// Keeps the stream's history for `members` so they can follow us later
    /// ([`crate::Action::Retain`], and on a replica for the members other than the
    /// leader). `leader_positions`: on a replica, where the leader's `/status` says each
    /// is (never retained past our own position); `None` on the primary. Retention of
    /// members gone longer than the engine's limit is dropped. PostgreSQL: physical
    /// replication slots with Patroni's `member_slots_ttl`; nothing when `use_slots` is
    /// off. Default: nothing to retain.
    fn retain(
        &mut self,
        members: &[String],
        leader_positions: Option<&BTreeMap<String, u64>>,
        dynamic: &DynamicConfig,
        facts: &Self::Facts,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = (members, leader_positions, dynamic, facts);
        async { Ok(()) }
    }

    /// What the primary retains for members, for `/status`.
    fn retained(&self, facts: &Self::Facts) -> Retained {
        let _ = facts;
        Retained::default()
    }

    /// Moves the data of a failed bootstrap aside (never deletes it), so the next
    /// attempt starts clean; returns where it went.
    fn set_aside(&mut self) -> Result<Option<String>, Self::Error>;

    /// A planned hand-over without stopping the server: writes are held from now until
    /// [`Database::resume_writes`] (or `bound`, after which the engine lifts the hold by
    /// itself), and the answer is the position a candidate must have received *past*
    /// to hold every acknowledged write. `Ok(None)`: the engine hands over by stopping
    /// its server instead ([`Database::shutdown_position`]; PostgreSQL's shutdown
    /// checkpoint). Redis: `CLIENT PAUSE WRITE`, then its replication offset.
    fn pause_for_handover(
        &mut self,
        bound: Duration,
    ) -> impl Future<Output = Result<Option<u64>, Self::Error>> + Send {
        let _ = bound;
        async { Ok(None) }
    }

    /// Ends a hold set by [`Database::pause_for_handover`]: held writes go on (a server
    /// that follows another by then refuses them itself); with `disconnect`, clients
    /// are disconnected so they ask again where the primary is.
    fn resume_writes(
        &mut self,
        disconnect: bool,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = disconnect;
        async { Ok(()) }
    }

    /// The stopped primary's last position, written by a clean shutdown: a replica that
    /// received past it holds everything (a switchover waits for the candidate to).
    /// `Err` if the server did not shut down cleanly. PostgreSQL: the shutdown
    /// checkpoint's location from `pg_controldata`.
    fn shutdown_position(&self) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// How far the replica at `host:port` has received the stream, asked directly of
    /// its server; `Err` if it cannot be asked or runs writable (the loop then asks the
    /// member's REST API). PostgreSQL: a SQL query as the superuser.
    fn received_by(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;
}
