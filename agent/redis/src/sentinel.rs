//! The Sentinel-compatible port: clients written for Redis Sentinel (redis-py, Jedis,
//! go-redis, ioredis, Lettuce, redis-rs) discover the primary from any agent.
//!
//! Every agent serves RESP2 and RESP3 (`HELLO 3`) with Sentinel 7.0's replies, byte for
//! byte in shape (all record values are bulk strings): `PING`, `AUTH`, `HELLO`,
//! `CLIENT SETNAME|GETNAME|ID`, `ROLE`, `INFO`, `SENTINEL get-master-addr-by-name |
//! masters | master | replicas | slaves | sentinels | myid | ckquorum`, `PUBLISH`'s
//! refusal, and `SUBSCRIBE`/`PSUBSCRIBE` with Sentinel's events. Commands Sentinel has
//! but that would act behind the DCS's back (`SENTINEL FAILOVER|SET|MONITOR|...`, `ACL`,
//! `SHUTDOWN`) get an error saying so; commands Sentinel does not have get its
//! `unknown command` error. `CLIENT SETINFO` gets 7.0's `unknown subcommand` error (7.0
//! has none; clients ignore it).
//!
//! - [`view`]: [`SentinelView`], the daemon's DCS view the answers come from, and the
//!   events between two views.
//! - [`resp`]: the bounded request parser and the reply encoder.
//! - [`commands`]: the command table and handlers (pure).
//! - [`records`]: the master/replica/sentinel records and `INFO`.
//! - [`pubsub`]: the [`EventHub`] and `PSUBSCRIBE` globs.
//! - [`server`]: the listener ([`serve`]).
//!
//! **No stale primary.** The answers come only from the newest view. When it is not fresh
//! (the agent lost the DCS) or names no leader, no lookup names a primary: `SENTINEL
//! GET-MASTER-ADDR-BY-NAME` and `SENTINEL MASTER` answer `-IDONTKNOW I have not enough
//! information to reply. Please ask another Sentinel.` (the reply Sentinel itself gave,
//! up to 2.8, before it had information about a master; every client library treats an
//! error from one Sentinel as "ask the next"); `SENTINEL MASTERS` leaves the master out
//! (redis-py and redis-rs read that list and then ask the next Sentinel); replicas and
//! sentinels answer `-IDONTKNOW` while the view is stale; `CKQUORUM` answers `NOQUORUM`;
//! `INFO` shows `status=sdown,address=?`. Sentinel 7.0 itself keeps answering the last
//! address it knew, which after a partition can be the old primary: that is the
//! behaviour this port exists to avoid.

pub mod commands;
pub mod pubsub;
pub mod records;
pub mod resp;
pub mod server;
pub mod view;

pub use pubsub::EventHub;
pub use server::{serve, SentinelConfig, SentinelError, SentinelTls};
pub use view::{run_id_for, Event, EventTracker, Instance, Replica, SentinelView};
