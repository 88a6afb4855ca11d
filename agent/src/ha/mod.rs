//! High availability: the loop that feeds the pure decision core (`warden-ha`) and
//! executes its decisions through an engine's [`warden_ha::Database`] adapter
//! (PostgreSQL's: [`warden_pg::Postgres`]).
//!
//! The loop, `run::Agent<D>`, is generic over the adapter, and every database operation
//! goes through the trait's methods. The code that needs nothing else (observing,
//! leases and the leader key, the DCS writes, the fencing guard, shutdown) asks only
//! `D: Database`; the action handlers that also touch a part still written for
//! PostgreSQL (the config files, `.pgpass` and the upstream; synchronous replication and
//! `/sync`; replication slots; the SQL probe published to the API and the backups;
//! restores from the backup repository) ask `D: Pg` and reach PostgreSQL through
//! [`Pg::pg`]. docs/engines.md lists them under "Not yet".

pub mod callbacks;
pub mod env;
pub mod execute;
pub mod fence;
mod intake;
mod keys;
pub mod operate;
pub mod peers;
pub mod publish;
pub mod replication;
pub mod request;
mod restore_bootstrap;
mod restore_replica;
pub mod run;
pub mod standby_watch;
mod turn;

// The pure core lives in `warden-ha`; the loop here runs it for PostgreSQL.
pub use warden_ha::{action, decide, race, switchover};
pub use warden_ha::{Action, Decision, StartAs};

/// What the loop observes and decides on, for the PostgreSQL engine.
pub mod observation {
    pub use warden_ha::{ManualTask, Peer, PeerStatus, Tags};
    /// This turn's observation with PostgreSQL's own facts.
    pub type Observation = warden_ha::Observation<warden_pg::policy::PgLocal>;
    /// The local PostgreSQL as the loop saw it this turn.
    pub type Local = warden_ha::Local<warden_pg::policy::PgLocal>;
}
pub use observation::Observation;

/// The PostgreSQL-specific accessor: an adapter whose facts are PostgreSQL's and which
/// hands out the [`warden_pg::Postgres`] behind it, for the parts of the loop not yet
/// written against the neutral [`warden_ha::Database`] (see the module docs).
pub trait Pg:
    warden_ha::Database<Facts = warden_pg::policy::PgLocal, Error = warden_pg::PgError> + Sync
{
    fn pg(&mut self) -> &mut warden_pg::Postgres;
    fn pg_ref(&self) -> &warden_pg::Postgres;
}

impl Pg for warden_pg::Postgres {
    fn pg(&mut self) -> &mut warden_pg::Postgres {
        self
    }

    fn pg_ref(&self) -> &warden_pg::Postgres {
        self
    }
}
