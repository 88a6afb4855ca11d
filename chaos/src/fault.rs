//! The kinds of fault the harness injects, their command-line names and the
//! range each one's hold time is drawn from.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One kind of fault. Targets are chosen by role when the fault is injected
/// (the primary, the n-th replica, the etcd raft leader...), never by name,
/// so a schedule means the same thing whichever node happens to lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the primary's agent and PostgreSQL; restart the agent after the hold.
    KillPrimary,
    /// SIGKILL the primary's postmaster only; its agent is left to react.
    KillPostgres,
    /// SIGSTOP the primary's agent for the hold, then SIGCONT.
    FreezeAgent,
    /// SIGSTOP the primary's postmaster and its children for the hold, then SIGCONT.
    FreezePostgres,
    /// Cut all of the primary's proxies (etcd, replication, REST peers) for the hold.
    PartitionPrimary,
    /// SIGKILL one etcd member that is not the raft leader; restart after the hold.
    KillEtcdMember,
    /// SIGKILL the etcd raft leader; restart after the hold.
    KillEtcdLeader,
    /// SIGKILL every etcd member; restart them all after the hold.
    EtcdOutage,
    /// SIGKILL a replica (agent and PostgreSQL); restart after the hold.
    KillReplica,
    /// Kill the primary, and as soon as a new primary acknowledges a write kill
    /// that one too, 2-3 times in a row; each victim restarts once its successor
    /// is up.
    RepeatedFailovers,
    /// `POST /switchover` to the leader, naming a replica, while writes go on.
    Switchover,
    /// Test-only, deliberately unsafe: promote a replica with `pg_promote()` behind
    /// the agents' back (its agent frozen meanwhile), so two nodes accept writes.
    /// Exists to prove the checker can fail; needs `--unsafe-test-rogue-primary`.
    RoguePromote,
}

/// Every kind a random schedule may draw (the unsafe one only on request).
pub const SAFE_KINDS: &[FaultKind] = &[
    FaultKind::KillPrimary,
    FaultKind::KillPostgres,
    FaultKind::FreezeAgent,
    FaultKind::FreezePostgres,
    FaultKind::PartitionPrimary,
    FaultKind::KillEtcdMember,
    FaultKind::KillEtcdLeader,
    FaultKind::EtcdOutage,
    FaultKind::KillReplica,
    FaultKind::RepeatedFailovers,
    FaultKind::Switchover,
];

/// Every kind, in command-line order.
pub const ALL_KINDS: &[FaultKind] = &[
    FaultKind::KillPrimary,
    FaultKind::KillPostgres,
    FaultKind::FreezeAgent,
    FaultKind::FreezePostgres,
    FaultKind::PartitionPrimary,
    FaultKind::KillEtcdMember,
    FaultKind::KillEtcdLeader,
    FaultKind::EtcdOutage,
    FaultKind::KillReplica,
    FaultKind::RepeatedFailovers,
    FaultKind::Switchover,
    FaultKind::RoguePromote,
];

impl FaultKind {
    /// The command-line name, e.g. `kill-primary`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillPrimary => "kill-primary",
            FaultKind::KillPostgres => "kill-postgres",
            FaultKind::FreezeAgent => "freeze-agent",
            FaultKind::FreezePostgres => "freeze-postgres",
            FaultKind::PartitionPrimary => "partition-primary",
            FaultKind::KillEtcdMember => "kill-etcd-member",
            FaultKind::KillEtcdLeader => "kill-etcd-leader",
            FaultKind::EtcdOutage => "etcd-outage",
            FaultKind::KillReplica => "kill-replica",
            FaultKind::RepeatedFailovers => "repeated-failovers",
            FaultKind::Switchover => "switchover",
            FaultKind::RoguePromote => "rogue-promote",
        }
    }

    /// What it does, for `--help` and the schedule printout.
    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::KillPrimary => "SIGKILL the primary's agent and PostgreSQL, restart later",
            FaultKind::KillPostgres => "SIGKILL the primary's PostgreSQL only",
            FaultKind::FreezeAgent => "SIGSTOP the primary's agent, then SIGCONT",
            FaultKind::FreezePostgres => "SIGSTOP the primary's PostgreSQL, then SIGCONT",
            FaultKind::PartitionPrimary => {
                "cut the primary off from etcd and from its peers, then heal"
            }
            FaultKind::KillEtcdMember => "SIGKILL an etcd member that is not the leader, restart",
            FaultKind::KillEtcdLeader => "SIGKILL the etcd raft leader, restart",
            FaultKind::EtcdOutage => "SIGKILL all etcd members, restart them",
            FaultKind::KillReplica => "SIGKILL a replica's agent and PostgreSQL, restart later",
            FaultKind::RepeatedFailovers => "kill each new primary as soon as it takes writes",
            FaultKind::Switchover => "POST /switchover to a replica under load",
            FaultKind::RoguePromote => {
                "UNSAFE, test-only: promote a replica behind the agents' back"
            }
        }
    }

    /// Range of the hold time (how long the fault lasts before it is healed),
    /// `None` for faults that are not held (the cluster heals them itself).
    pub fn hold_range(self) -> Option<(Duration, Duration)> {
        let s = Duration::from_secs;
        match self {
            // Below the lease ttl the agent restarts in time to keep its key; above,
            // a replica has taken over: both paths matter.
            FaultKind::KillPrimary => Some((s(1), s(20))),
            FaultKind::FreezeAgent => Some((s(2), s(20))),
            FaultKind::FreezePostgres => Some((s(2), s(12))),
            FaultKind::PartitionPrimary => Some((s(5), s(25))),
            FaultKind::KillEtcdMember | FaultKind::KillEtcdLeader => Some((s(2), s(10))),
            FaultKind::EtcdOutage => Some((s(5), s(20))),
            FaultKind::KillReplica => Some((s(2), s(10))),
            // How long both nodes stay writable once the evidence is in.
            FaultKind::RoguePromote => Some((s(1), s(2))),
            FaultKind::KillPostgres | FaultKind::RepeatedFailovers | FaultKind::Switchover => None,
        }
    }

    /// True if the fault targets the primary, so a change of primary (a
    /// failover or switchover) is an expected outcome worth timing.
    pub fn targets_primary(self) -> bool {
        !matches!(
            self,
            FaultKind::KillEtcdMember | FaultKind::KillEtcdLeader | FaultKind::KillReplica
        )
    }

    /// True for the deliberately unsafe, test-only kinds.
    pub fn is_unsafe(self) -> bool {
        self == FaultKind::RoguePromote
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown fault name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {name:?}; known faults: {}", known())]
pub struct UnknownFault {
    pub name: String,
}

fn known() -> String {
    ALL_KINDS
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for FaultKind {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_KINDS
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownFault {
                name: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for &k in ALL_KINDS {
            assert_eq!(k.name().parse::<FaultKind>(), Ok(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.name())
            );
            assert!(!k.describe().is_empty());
        }
        let e = "kill-everything".parse::<FaultKind>().unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("kill-everything") && msg.contains("partition-primary"),
            "{msg}"
        );
    }

    #[test]
    fn the_unsafe_kind_is_not_drawn_at_random() {
        assert!(SAFE_KINDS.iter().all(|k| !k.is_unsafe()));
        assert_eq!(SAFE_KINDS.len() + 1, ALL_KINDS.len());
        assert!(FaultKind::RoguePromote.is_unsafe());
    }

    #[test]
    fn hold_ranges_are_ordered() {
        for &k in ALL_KINDS {
            if let Some((lo, hi)) = k.hold_range() {
                assert!(lo <= hi, "{k}");
            }
        }
    }
}
