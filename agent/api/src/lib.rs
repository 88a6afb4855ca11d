//! What Warden's members, `wardenctl` and the tests say to each other over HTTP: the
//! bounded HTTP client every caller uses.

pub mod client;
