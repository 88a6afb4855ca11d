//! High availability: the loop that feeds the pure decision core (`warden-ha`) and
//! executes its decisions through the PostgreSQL engine.

pub mod callbacks;
pub mod execute;
pub mod fence;
mod intake;
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
