//! What Warden's members, `wardenctl` and the tests say to each other over HTTP: the
//! bounded HTTP client every caller uses.

pub mod client;

/// Reported as the member `version`: Patroni tooling takes its modern code paths for
/// any version at or above 2.1.0, and Warden implements the 4.x contract.
pub const PATRONI_COMPAT_VERSION: &str = "4.0.0";
