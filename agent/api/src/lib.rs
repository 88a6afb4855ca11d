//! What Warden's members, `wardenctl` and the tests say to each other over HTTP: the
//! bounded HTTP client every caller uses, and the JSON documents they exchange, one
//! serde type each.
//!
//! The types are the wire format, shared by the server that writes a body and every
//! reader. Readers tolerate what Patroni (or a newer Warden) adds: unknown fields are
//! ignored, missing ones take their defaults, so a Patroni peer's answer parses too.
//! Writers omit a field exactly when the pre-typed server did, and every struct
//! declares its fields in alphabetical order, the order `serde_json`'s map wrote them
//! in: the bytes on the wire did not change when the types replaced `json!`.

pub mod client;
pub mod cluster;
pub mod patroni;
pub mod requests;
mod serde_util;
pub mod tls;

pub use cluster::{ClusterMember, ClusterStatus, ScheduledSwitchover, WalValue};
pub use patroni::{
    ArchiveStatus, PatroniInfo, PatroniStatus, PendingChange, ReplicationRow, ScheduledRestart,
    WardenStatus, Xlog,
};
pub use requests::{
    FailsafeRequest, ReinitializeRequest, RestartRequest, SwitchoverRequest, Timeout,
};

/// Reported as the member `version`: Patroni tooling takes its modern code paths for
/// any version at or above 2.1.0, and Warden implements the 4.x contract.
pub const PATRONI_COMPAT_VERSION: &str = "4.0.0";
