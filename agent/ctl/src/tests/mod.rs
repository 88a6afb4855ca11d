//! Command flows end to end against the in-memory DCS and fake REST APIs on loopback:
//! what is read, what is asked, what is sent (method, path, auth, body), what is
//! printed, what is written to the DCS, and the exit outcome.

mod dcs_writes;
mod fixtures;
mod list;
mod member_actions;
mod switchover;
