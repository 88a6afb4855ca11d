//! High availability: the pure decision core and the loop that feeds and executes it.

pub mod action;
pub mod archiver;
pub mod callbacks;
pub mod decide;
pub mod execute;
pub mod fence;
mod heartbeat;
mod intake;
pub mod observation;
pub mod operate;
pub mod peers;
pub mod publish;
pub mod race;
pub mod replication;
pub mod request;
mod restore_bootstrap;
mod restore_replica;
pub mod run;
pub mod standby_watch;
pub mod switchover;

pub use action::{Action, StartAs};
pub use decide::{decide, Decision};
pub use observation::Observation;
