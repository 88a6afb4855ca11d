//! Named scenarios for the decision core: each builds an observation and checks the
//! actions. No processes, no clock.

mod bootstrap;
mod failsafe;
mod fixtures;
mod pause;
mod quorum;
mod race;
mod standby;
mod standby_switchover;
mod start;
mod steady;
mod switchover;
mod sync;
