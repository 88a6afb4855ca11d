//! The cluster, observation and peers every scenario starts from.

use crate::policy::PgLocal;
use crate::sql::Probe;
use warden_consensus::types::{Member, Role};
use warden_consensus::{Cluster, DynamicConfig, LeaderKey, Versioned};
use warden_ha::{DataState, Local, Observation, Peer, PeerStatus, Tags};

pub(super) fn member(role: Role, state: &str) -> Versioned<Member> {
    let m: Member = serde_json::from_value(serde_json::json!({
        "conn_url": "postgres://127.0.0.1:5432/postgres",
        "api_url": "http://127.0.0.1:8008/patroni",
        "state": state, "role": role.as_str(), "version": "4.0.0",
    }))
    .unwrap();
    Versioned {
        value: m,
        mod_revision: 1,
    }
}

pub(super) fn cluster(initialize: Option<&str>, leader: Option<&str>) -> Cluster {
    let mut c = Cluster {
        initialize: initialize.map(str::to_string),
        ..Cluster::default()
    };
    c.leader = leader.map(|l| LeaderKey {
        name: l.into(),
        create_revision: 7,
        mod_revision: 7,
        lease: 1,
    });
    for n in ["n1", "n2", "n3"] {
        let role = if Some(n) == leader {
            Role::Primary
        } else {
            Role::Replica
        };
        c.members.insert(n.into(), member(role, "running"));
    }
    c
}

pub(super) fn probe(in_recovery: bool, wal: u64) -> Probe {
    Probe {
        in_recovery,
        wal_position: Some(wal),
        timeline: Some(1),
        streaming: in_recovery,
        ..Probe::default()
    }
}

pub(super) fn obs(
    cluster: Option<Cluster>,
    data: DataState,
    probe: Option<Probe>,
) -> Observation<PgLocal> {
    Observation {
        now: chrono::DateTime::UNIX_EPOCH,
        manual: None,
        me: "n2".into(),
        tags: Tags::default(),
        cluster,
        lease_renewed: true,
        lease_valid: true,
        local: Local {
            data,
            system_identifier: (data == DataState::Initialized).then(|| "42".to_string()),
            was_primary: false,
            running: probe.is_some(),
            engine: PgLocal {
                probe,
                rewound: false,
                stopped_timeline: None,
                use_pg_rewind: true,
            },
        },
        peers: vec![],
        bootstrapped_here: false,
        primary_down_for: None,
        failsafe_confirmed: None,
        failsafe_leader_active: false,
        watchdog_missing: None,
        not_streaming_for: None,
        local_standby_cluster: false,
    }
}

pub(super) fn peer(name: &str, wal: u64, is_primary: bool) -> Peer {
    Peer {
        name: name.into(),
        status: Some(PeerStatus {
            is_primary,
            position: wal,
            generation: Some(1),
            may_become_leader: true,
            priority: 1,
        }),
    }
}

pub(super) fn with_failover(
    mut c: Cluster,
    leader: Option<&str>,
    member: Option<&str>,
    at: Option<&str>,
) -> Cluster {
    c.failover = Some(Versioned {
        value: warden_consensus::types::Failover {
            leader: leader.map(str::to_string),
            member: member.map(str::to_string),
            scheduled_at: at.map(str::to_string),
            extra: serde_json::Map::new(),
        },
        mod_revision: 9,
    });
    c
}

/// n2 leads with a running primary at WAL 1000.
pub(super) fn leader_obs(c: Cluster) -> Observation<PgLocal> {
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(false, 1000)));
    o.local.was_primary = true;
    o
}

pub(super) fn with_sync(mut c: Cluster, leader: &str, standbys: Option<&str>) -> Cluster {
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(&serde_json::json!({"synchronous_mode": true})).unwrap(),
        mod_revision: 1,
    });
    c.sync = Some(Versioned {
        value: warden_consensus::types::SyncState {
            leader: Some(leader.into()),
            quorum: Some(0),
            sync_standby: standbys.map(str::to_string),
            extra: serde_json::Map::new(),
        },
        mod_revision: 3,
    });
    c
}
