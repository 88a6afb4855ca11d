//! The pure HA core: from one turn's [`Observation`] to a [`Decision`] (key actions,
//! then database actions), for any engine that implements [`Engine`].
//!
//! No I/O, no tokio, no clock: time arrives as facts in the observation (`now`,
//! `lease_valid`, `primary_down_for`). The daemon's loop gathers the observation and
//! carries the actions out; the engine (PostgreSQL today) answers the few questions that
//! differ between databases; its adapter ([`Database`]) is the I/O half the loop drives,
//! declared here and implemented outside. A test in `tests/` checks these rules hold.

pub mod action;
pub mod database;
pub mod decide;
pub mod engine;
pub mod observation;
pub mod race;
pub mod switchover;

pub use action::{Action, StartAs};
pub use database::{
    Database, RepairOutcome, Retained, RoleConfig, Source, StopMode, SyncPlan, SyncSetting,
    SyncStep,
};
pub use decide::{decide, Decision};
pub use engine::{DataState, Db, Engine};
pub use observation::{Local, ManualTask, Observation, Peer, PeerStatus, Tags};

#[cfg(test)]
mod toy_engine_tests;
