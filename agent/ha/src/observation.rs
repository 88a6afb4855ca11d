//! What one turn of the HA loop knows: the input of [`crate::decide`].

use crate::engine::{DataState, Db, Engine};
use warden_consensus::Cluster;

/// The member's failover-related tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    pub nofailover: bool,
    pub failover_priority: Option<u32>,
    pub clonefrom: bool,
    /// Never streams (replays the archive only): not streaming is not a fault.
    pub nostream: bool,
}

impl Tags {
    /// Patroni's rule: `nofailover` or a priority of 0 keep a member out of races.
    pub fn may_become_leader(&self) -> bool {
        !self.nofailover && self.failover_priority != Some(0)
    }

    pub fn priority(&self) -> u32 {
        if self.may_become_leader() {
            self.failover_priority.unwrap_or(1)
        } else {
            0
        }
    }
}

/// The local database as seen this turn: what every engine reports, plus the engine's
/// own facts (`E`), which only the engine's policy reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Local<E> {
    pub data: DataState,
    /// The database's identity (PostgreSQL: the system identifier from the control
    /// file), once it has data.
    pub system_identifier: Option<String>,
    /// The data last ran as a primary (PostgreSQL: the control file says so).
    pub was_primary: bool,
    /// A server process is running on the data.
    pub running: bool,
    /// The engine's facts and policy.
    pub engine: E,
}

impl<E: Engine> Local<E> {
    /// The database's state, when it answered this turn.
    pub fn db(&self) -> Option<Db> {
        self.engine.db()
    }
}

/// Another member's `/patroni`, asked during a leader race.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// `None`: did not answer in time.
    pub status: Option<PeerStatus>,
}

/// What a peer's `/patroni` says, as far as the race needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub is_primary: bool,
    /// Its position in the replication stream, in bytes (PostgreSQL: its WAL position).
    pub position: u64,
    /// Its promotion counter (PostgreSQL: its timeline), when it reports one.
    pub generation: Option<u32>,
    pub may_become_leader: bool,
    pub priority: u32,
}

/// An operator request the loop has accepted and wants carried out this turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualTask {
    Restart {
        timeout: Option<std::time::Duration>,
    },
    Reinitialize {
        from: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observation<E> {
    /// Wall-clock time of this turn: scheduled switchovers are wall-clock times.
    pub now: chrono::DateTime<chrono::Utc>,
    /// An accepted operator request (restart, reinitialize) to carry out now.
    pub manual: Option<ManualTask>,
    pub me: String,
    pub tags: Tags,
    /// `None`: the DCS could not be read this turn.
    pub cluster: Option<Cluster>,
    /// Whether our lease was renewed this turn (a leader may only act as one if so).
    pub lease_renewed: bool,
    /// Our local lease deadline has not passed.
    pub lease_valid: bool,
    pub local: Local<E>,
    /// Filled while the leader key is vacant and we might race for it, and on the leader
    /// while a switchover is due (to check the candidate).
    pub peers: Vec<Peer>,
    /// This agent ran initdb for the current bootstrap race and it succeeded.
    pub bootstrapped_here: bool,
    /// How long our PostgreSQL has been down or unanswering while we hold the leader key.
    pub primary_down_for: Option<std::time::Duration>,
    /// Failsafe mode, while the DCS is unreachable: `Some(true)` when every member listed
    /// in `/failsafe` confirmed over REST this turn that we may stay primary.
    pub failsafe_confirmed: Option<bool>,
    /// A leader confirmed itself to us in failsafe mode within the last `ttl`: it is
    /// alive and primary, so we must not race for the leader key.
    pub failsafe_leader_active: bool,
    /// `watchdog.mode: required` but the device cannot be used: why. Such a node must
    /// not lead.
    pub watchdog_missing: Option<String>,
    /// How long our replica has been running without streaming from an upstream.
    pub not_streaming_for: Option<std::time::Duration>,
    /// The member's own dynamic configuration (`bootstrap.dcs`) makes the cluster a
    /// standby cluster. Patroni's global config falls back to the local one when the DCS
    /// has no `config` key, so a deleted key must not promote a standby leader.
    pub local_standby_cluster: bool,
}
