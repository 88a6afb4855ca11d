//! The agent's per-process state (the parts of `run.rs`'s `Agent` that matter here).

use super::*;

impl Agent {
    pub(crate) fn new(name: &str, guard: usize) -> Self {
        Self {
            lease: None,
            renewed_at: None,
            holds_leader: false,
            deadline: LeaseDeadline::new(),
            rewound: false,
            bootstrapped_here: false,
            primary_down_since: None,
            not_streaming_since: None,
            failsafe_round: None,
            last_cluster: None,
            watchdog_open: false,
            failsafe_held: false,
            failsafe_known: None,
            state: "starting",
            system_identifier: None,
            last_member: None,
            last_note: String::new(),
            shown: NodeStatus::new("sim".into(), name.into(), serde_json::Map::new()),
            turn: None,
            turns: 0,
            wake_gen: 0,
            dirty: false,
            held: false,
            watching: false,
            keep_lease: None,
            guard: Some(guard),
        }
    }
}
