//! The Warden chaos harness (`warden-chaos`).
//!
//! A run starts a local cluster with the `warden-tests` kit (3 etcd members,
//! 3 PostgreSQL nodes with agents, HAProxy, fault proxies), runs a workload
//! ([`workload`] plus the kit's writer), injects a seeded schedule of faults
//! ([`schedule`], [`inject`]), waits for convergence after each, and records
//! everything into an [`events::EventLog`]. The [`checker`] is a pure
//! function of that log; [`report`] and [`svg`] render its findings.
//!
//! Like the kit, the harness sees Warden only through binaries, ports and
//! files, never through agent internals.

pub mod checker;
pub mod cli;
pub mod converge;
pub mod events;
pub mod fault;
pub mod inject;
pub mod redis_engine;
pub mod report;
pub mod run;
pub mod schedule;
pub mod svg;
pub mod workload;
