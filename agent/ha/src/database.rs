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
use std::future::Future;
use std::time::Duration;
use warden_consensus::DynamicConfig;

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
    /// follow it without another repair). PostgreSQL: `pg_controldata` when stopped (or
    /// to learn the system identifier once), then a status query when running.
    fn observe(&mut self, repaired: bool) -> impl Future<Output = Local<Self::Facts>> + Send;

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
