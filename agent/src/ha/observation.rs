//! What one turn of the HA loop knows: the input of [`super::decide`].

use warden_consensus::Cluster;
use warden_pg::sql::Probe;
use warden_pg::DataDir;

/// The member's failover-related tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    pub nofailover: bool,
    pub failover_priority: Option<u32>,
    pub clonefrom: bool,
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

/// The local PostgreSQL as seen this turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    pub data: DataDir,
    /// From the control file, when the data directory is initialised.
    pub system_identifier: Option<String>,
    /// The control file says the cluster last ran as a primary (not in recovery).
    pub was_primary: bool,
    /// A postmaster is running on the data directory.
    pub running: bool,
    /// `Some` when PostgreSQL answered the status queries.
    pub probe: Option<Probe>,
    /// Since it last ran as primary, this data directory was rewound (or found not to
    /// need it), so it may follow the new leader.
    pub rewound: bool,
    /// Stopped (not a fresh clone): the newest timeline the control file names (its
    /// last checkpoint's or its minimum recovery point's). Behind the leader's, the
    /// data may hold WAL past the fork point; PostgreSQL then refuses to start on the
    /// leader's timeline until pg_rewind has run.
    pub stopped_timeline: Option<u32>,
}

/// Another member's `/patroni`, asked during a leader race.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// `None`: did not answer in time.
    pub status: Option<PeerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub is_primary: bool,
    pub wal_position: u64,
    pub timeline: Option<u32>,
    pub may_become_leader: bool,
    pub priority: u32,
}

/// An operator request the loop has accepted and wants carried out this turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualTask {
    Restart { timeout: Option<u64> },
    Reinitialize { from: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
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
    pub local: Local,
    /// Filled while the leader key is vacant and we might race for it, and on the leader
    /// while a switchover is due (to check the candidate).
    pub peers: Vec<Peer>,
    /// This agent ran initdb for the current bootstrap race and it succeeded.
    pub bootstrapped_here: bool,
    /// How long our PostgreSQL has been down or unanswering while we hold the leader key.
    pub primary_down_for: Option<std::time::Duration>,
    /// `postgresql.use_pg_rewind` in force.
    pub use_pg_rewind: bool,
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
}
