//! The core deciding for an engine that is not PostgreSQL: a toy store whose nodes
//! count promotions in an `epoch` and can always resynchronise from the leader. It shows
//! what an engine supplies (its state and four rules) and that nothing in the core
//! assumes PostgreSQL.

use crate::engine::{DataState, Db, Engine};
use crate::observation::{Local, Observation, Peer, PeerStatus, Tags};
use crate::{decide, Action, StartAs};
use warden_consensus::types::{Member, Role};
use warden_consensus::{Cluster, LeaderKey, Versioned};

/// The toy's own facts: its state, the promotion epoch it has seen, and whether its data
/// may hold writes the leader never saw.
#[derive(Debug, Clone, PartialEq)]
struct Toy {
    db: Option<Db>,
    epoch: u32,
    diverged: bool,
}

/// The cluster's epoch, as the toy records it: the leader's member key `timeline` field
/// (any promotion counter would do).
fn cluster_epoch(c: &Cluster) -> Option<u32> {
    c.leader_name()
        .and_then(|l| c.member(l))
        .and_then(|m| m.timeline)
}

impl Engine for Toy {
    fn db(&self) -> Option<Db> {
        self.db
    }

    fn promotion_refusal(&self, c: &Cluster, _: &str) -> Option<String> {
        cluster_epoch(c)
            .is_some_and(|e| e > self.epoch)
            .then(|| format!("epoch {} is behind the cluster's", self.epoch))
    }

    fn primary_refusal(&self, c: &Cluster) -> Option<String> {
        self.promotion_refusal(c, "")
    }

    fn peer_refusal(&self, _: &Cluster, _: &str, peer: &PeerStatus) -> Option<String> {
        peer.generation
            .is_some_and(|g| g < self.epoch)
            .then(|| "peer is on an older epoch".into())
    }

    fn repair_before_following(
        &self,
        was_primary: bool,
        _: &Cluster,
        leader: &str,
    ) -> Option<String> {
        (was_primary && self.diverged).then(|| format!("toy: full resync from {leader}"))
    }

    fn supports_standby_cluster(&self) -> bool {
        true
    }

    fn repair_stuck_replica(&self, _: &Cluster, leader: &str, stuck: bool) -> Option<String> {
        stuck.then(|| format!("toy: replica stuck, resync from {leader}"))
    }
}

fn member(role: Role) -> Versioned<Member> {
    let m: Member = serde_json::from_value(serde_json::json!({
        "conn_url": "toy://127.0.0.1:7000",
        "api_url": "http://127.0.0.1:8008/patroni",
        "state": "running", "role": role.as_str(), "version": "4.0.0",
    }))
    .unwrap();
    Versioned {
        value: m,
        mod_revision: 1,
    }
}

fn cluster(leader: Option<&str>) -> Cluster {
    let mut c = Cluster {
        initialize: Some("toy-1".into()),
        ..Cluster::default()
    };
    c.leader = leader.map(|l| LeaderKey {
        name: l.into(),
        create_revision: 7,
        mod_revision: 7,
        lease: 1,
    });
    for n in ["a", "b", "c"] {
        let role = if Some(n) == leader {
            Role::Primary
        } else {
            Role::Replica
        };
        c.members.insert(n.into(), member(role));
    }
    c
}

fn replica(position: u64) -> Toy {
    Toy {
        db: Some(Db {
            writable: false,
            position: Some(position),
            streaming: false,
        }),
        epoch: 1,
        diverged: false,
    }
}

fn obs(cluster: Cluster, toy: Toy) -> Observation<Toy> {
    Observation {
        now: chrono::DateTime::UNIX_EPOCH,
        manual: None,
        me: "b".into(),
        tags: Tags::default(),
        cluster: Some(cluster),
        lease_renewed: true,
        lease_valid: true,
        local: Local {
            data: DataState::Initialized,
            system_identifier: Some("toy-1".into()),
            was_primary: false,
            running: toy.db.is_some(),
            engine: toy,
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

fn peer(name: &str, position: u64) -> Peer {
    Peer {
        name: name.into(),
        status: Some(PeerStatus {
            is_primary: false,
            position,
            generation: Some(1),
            may_become_leader: true,
            priority: 1,
        }),
    }
}

/// Actions on the DCS keys, which must all come before any action on the database.
fn is_key_action(a: &Action) -> bool {
    matches!(
        a,
        Action::RaceInitialize
            | Action::SetInitialize { .. }
            | Action::AcquireLeader
            | Action::RenewLeader
            | Action::ReleaseLeader
            | Action::ClearFailover
    )
}

fn assert_keys_first(actions: &[Action]) {
    if let Some(first_db) = actions.iter().position(|a| !is_key_action(a)) {
        assert!(
            actions[first_db..].iter().all(|a| !is_key_action(a)),
            "a key action after a database action: {actions:?}"
        );
    }
}

#[test]
fn the_most_advanced_toy_replica_races_and_promotes_after_taking_the_key() {
    let mut o = obs(cluster(None), replica(500));
    o.peers = vec![peer("a", 400), peer("c", 300)];
    let d = decide(&o);
    assert_eq!(d.actions[0], Action::AcquireLeader, "{d:?}");
    assert!(matches!(d.actions[1], Action::Promote { .. }), "{d:?}");
    assert_keys_first(&d.actions);
}

#[test]
fn a_toy_replica_defers_to_a_peer_further_ahead() {
    let mut o = obs(cluster(None), replica(300));
    o.peers = vec![peer("a", 400)];
    let d = decide(&o);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.note.contains("a has received more"), "{}", d.note);
}

#[test]
fn the_engine_can_refuse_a_promotion() {
    // We hold the key while read-only, but the key records epoch 2 and we saw only 1:
    // the engine refuses the promotion and the core releases the key.
    let mut c = cluster(Some("b"));
    c.members.get_mut("b").unwrap().value.timeline = Some(2);
    let d = decide(&obs(c, replica(900)));
    assert_eq!(d.actions, vec![Action::ReleaseLeader], "{d:?}");
    assert!(d.note.contains("epoch 1"), "{}", d.note);
    // On the same epoch it promotes, after renewing the key.
    let d = decide(&obs(cluster(Some("b")), replica(900)));
    assert_eq!(d.actions[0], Action::RenewLeader, "{d:?}");
    assert!(matches!(d.actions[1], Action::Promote { .. }), "{d:?}");
}

#[test]
fn a_diverged_former_primary_is_repaired_before_it_follows() {
    let toy = Toy {
        db: None,
        epoch: 1,
        diverged: true,
    };
    let mut o = obs(cluster(Some("a")), toy);
    o.local.was_primary = true;
    let d = decide(&o);
    assert_eq!(
        d.actions,
        vec![
            Action::Repair { from: "a".into() },
            Action::Start(StartAs::Replica {
                upstream: Some("a".into())
            }),
        ]
    );
    assert!(d.note.contains("toy: full resync"), "{}", d.note);
}

#[test]
fn a_stuck_toy_replica_is_stopped_repaired_and_restarted() {
    let mut o = obs(cluster(Some("a")), replica(10));
    o.not_streaming_for = Some(std::time::Duration::from_secs(3600));
    let d = decide(&o);
    assert!(matches!(d.actions[0], Action::Demote { .. }), "{d:?}");
    assert_eq!(d.actions[1], Action::Repair { from: "a".into() });
    // Streaming again: nothing to repair, it just follows.
    let mut o = obs(cluster(Some("a")), replica(10));
    o.local.engine.db.as_mut().unwrap().streaming = true;
    o.not_streaming_for = None;
    let d = decide(&o);
    assert_eq!(d.actions, vec![Action::Follow { leader: "a".into() }]);
}

#[test]
fn the_leader_renews_its_key_before_touching_the_database() {
    let mut toy = replica(100);
    toy.db.as_mut().unwrap().writable = true;
    let d = decide(&obs(cluster(Some("b")), toy));
    assert_eq!(d.actions[0], Action::RenewLeader, "{d:?}");
    assert_keys_first(&d.actions);
}

// The I/O half: a toy adapter implementing `Database` in memory, without any runtime
// (its futures are ready at once), driving the core's database actions.

use crate::database::{Database, RepairOutcome, RoleConfig, StopMode};
use std::future::Future;
use std::time::Duration;
use warden_consensus::DynamicConfig;

/// A toy server: its data, whether it runs and is writable, its position and epoch.
#[derive(Debug)]
struct ToyServer {
    data: DataState,
    running: bool,
    writable: bool,
    ran_writable: bool,
    position: u64,
    epoch: u32,
    diverged: bool,
}

impl Database for ToyServer {
    type Facts = Toy;
    type Error = String;

    fn data_state(&self) -> DataState {
        self.data
    }

    fn is_running(&mut self) -> bool {
        self.running
    }

    fn server_pid(&mut self) -> Option<i32> {
        self.running.then_some(7)
    }

    fn observe(
        &mut self,
        repaired: bool,
        _: &DynamicConfig,
    ) -> impl Future<Output = Local<Toy>> + Send {
        let db = self.running.then_some(Db {
            writable: self.writable,
            position: Some(self.position),
            streaming: self.running && !self.writable,
        });
        std::future::ready(Local {
            data: self.data,
            system_identifier: (self.data == DataState::Initialized).then(|| "toy-1".into()),
            was_primary: self.ran_writable,
            running: self.running,
            engine: Toy {
                db,
                epoch: self.epoch,
                diverged: self.diverged && !repaired,
            },
        })
    }

    fn bootstrap(&mut self, _: &DynamicConfig) -> impl Future<Output = Result<(), String>> + Send {
        self.data = DataState::Initialized;
        self.running = true;
        self.writable = true;
        self.ran_writable = true;
        std::future::ready(Ok(()))
    }

    fn clone_from(
        &mut self,
        _: &str,
        _: u16,
        _: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send {
        self.data = DataState::Initialized;
        self.diverged = false;
        self.ran_writable = false;
        std::future::ready(Ok(()))
    }

    /// The toy's configuration is only its role: a server configured as a replica
    /// starts read-only.
    fn configure(
        &mut self,
        role: &RoleConfig,
        _: Option<&Cluster>,
        _: &DynamicConfig,
    ) -> Result<bool, String> {
        let writable = *role == RoleConfig::Primary;
        let changed = writable != self.writable;
        self.writable = writable;
        Ok(changed)
    }

    fn start(&mut self) -> Result<(), String> {
        self.running = true;
        Ok(())
    }

    fn set_aside(&mut self) -> Result<Option<String>, String> {
        self.data = DataState::Missing;
        Ok(Some("toy.aside".into()))
    }

    fn wait_ready(&mut self, _: Duration) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(if self.running {
            Ok(())
        } else {
            Err("not running".into())
        })
    }

    fn stop(
        &mut self,
        _: StopMode,
        _: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send {
        self.running = false;
        std::future::ready(Ok(()))
    }

    fn promote(&mut self, _: Duration) -> impl Future<Output = Result<(), String>> + Send {
        self.writable = true;
        self.ran_writable = true;
        self.epoch += 1;
        std::future::ready(Ok(()))
    }

    fn reload(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }

    fn repair(
        &mut self,
        _: &str,
        _: u16,
        _: Duration,
    ) -> impl Future<Output = Result<RepairOutcome<String>, String>> + Send {
        let outcome = if self.running {
            Err("the toy repairs stopped data only".into())
        } else {
            self.diverged = false;
            self.writable = false;
            self.ran_writable = false;
            Ok(RepairOutcome::Repaired)
        };
        std::future::ready(outcome)
    }

    fn remove_data(&mut self) -> Result<(), String> {
        self.data = DataState::Missing;
        Ok(())
    }

    fn shutdown_position(&self) -> impl Future<Output = Result<u64, String>> + Send {
        std::future::ready(Ok(self.position))
    }

    fn received_by(
        &self,
        _: &str,
        _: u16,
        _: Duration,
    ) -> impl Future<Output = Result<u64, String>> + Send {
        std::future::ready(Err("the toy cannot ask peers".into()))
    }
}

/// Polls a future that is ready at once (the toy adapter's are): no runtime needed.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a toy future was not ready"),
    }
}

/// Carries one database action out through the adapter, as the daemon's loop does.
fn carry_out<D: Database>(db: &mut D, action: &Action) -> Result<(), String> {
    let t = Duration::from_secs(1);
    let e = |e: D::Error| e.to_string();
    match action {
        Action::Bootstrap => ready(db.bootstrap(&DynamicConfig::default())).map_err(e),
        Action::Clone { .. } => ready(db.clone_from("127.0.0.1", 7000, t)).map_err(e),
        Action::Start(StartAs::StandbyLeader) => {
            let role = RoleConfig::Replica {
                source: Some(crate::database::Source::remote(Some((
                    "remote".into(),
                    7000,
                )))),
            };
            db.configure(&role, None, &DynamicConfig::default())
                .map_err(e)?;
            db.start().map_err(e)
        }
        Action::Start(_) => db.start().map_err(e),
        Action::Promote { .. } => {
            ready(db.promote(t)).map_err(e)?;
            ready(db.checkpoint(t)).map_err(e)
        }
        Action::Demote { .. } => ready(db.stop(StopMode::Fast, t)).map_err(e),
        Action::StopPrimary => ready(db.stop(StopMode::Fast, t)).map_err(e),
        Action::FollowRemote => {
            let role = RoleConfig::Replica {
                source: Some(crate::database::Source::remote(Some((
                    "remote".into(),
                    7000,
                )))),
            };
            db.configure(&role, None, &DynamicConfig::default())
                .map(|_| ())
                .map_err(e)
        }
        Action::Repair { .. } => match ready(db.repair("127.0.0.1", 7000, t)).map_err(e)? {
            RepairOutcome::Repaired => Ok(()),
            RepairOutcome::Unrepairable(why) => Err(why.to_string()),
        },
        _ => Ok(()),
    }
}

#[test]
fn a_toy_adapter_carries_out_the_repair_and_the_node_then_follows() {
    let mut server = ToyServer {
        data: DataState::Initialized,
        running: false,
        writable: false,
        ran_writable: true,
        position: 500,
        epoch: 1,
        diverged: true,
    };
    let mut repaired = false;
    let observe = |server: &mut ToyServer, repaired: bool| {
        let mut o = obs(cluster(Some("a")), replica(0));
        o.local = ready(server.observe(repaired, &DynamicConfig::default()));
        o
    };
    let d = decide(&observe(&mut server, repaired));
    assert_eq!(d.actions[0], Action::Repair { from: "a".into() }, "{d:?}");
    for a in &d.actions {
        carry_out(&mut server, a).unwrap();
        repaired |= matches!(a, Action::Repair { .. });
    }
    assert!(server.running && !server.writable, "{server:?}");
    // Running as a replica now: the next turn just follows, no second repair.
    let d = decide(&observe(&mut server, repaired));
    assert_eq!(
        d.actions,
        vec![Action::Follow { leader: "a".into() }],
        "{d:?}"
    );
    assert!(ready(server.received_by("127.0.0.1", 7000, Duration::ZERO)).is_err());
    assert_eq!(ready(server.shutdown_position()), Ok(500));
}

#[test]
fn a_toy_adapter_bootstraps_and_promotes() {
    let mut server = ToyServer {
        data: DataState::Missing,
        running: false,
        writable: false,
        ran_writable: false,
        position: 0,
        epoch: 0,
        diverged: false,
    };
    carry_out(&mut server, &Action::Bootstrap).unwrap();
    let local = ready(server.observe(false, &DynamicConfig::default()));
    assert_eq!(local.data, DataState::Initialized);
    assert!(local.db().is_some_and(|d| d.writable));
    assert_eq!(
        ready(server.stop(StopMode::Immediate, Duration::ZERO)),
        Ok(())
    );
    assert!(!server.is_running() && server.server_pid().is_none());
    server.remove_data().unwrap();
    assert_eq!(server.data_state(), DataState::Missing);
    ready(server.reload()).unwrap();
    ready(server.wait_ready(Duration::ZERO)).unwrap_err();
    carry_out(&mut server, &Action::Clone { from: "a".into() }).unwrap();
    carry_out(&mut server, &Action::Start(StartAs::Primary)).unwrap();
    carry_out(&mut server, &Action::Promote { reason: "t".into() }).unwrap();
    assert!(server.writable && server.epoch == 1, "{server:?}");
}

/// `cluster` made a standby cluster of a remote primary.
fn standby(mut c: Cluster) -> Cluster {
    c.config = Some(Versioned {
        value: DynamicConfig::from_json(
            &serde_json::json!({"standby_cluster": {"host": "remote"}}),
        )
        .unwrap(),
        mod_revision: 1,
    });
    c
}

#[test]
fn a_toy_primary_becomes_the_standby_leader_of_a_remote_without_promoting() {
    let mut server = ToyServer {
        data: DataState::Initialized,
        running: true,
        writable: true,
        ran_writable: true,
        position: 500,
        epoch: 1,
        diverged: false,
    };
    let observe = |server: &mut ToyServer| {
        let mut o = obs(standby(cluster(Some("b"))), replica(0));
        o.local = ready(server.observe(false, &DynamicConfig::default()));
        o
    };
    // Writable under the key of a standby cluster: stop, keeping the key.
    let d = decide(&observe(&mut server));
    assert_eq!(
        d.actions,
        vec![Action::RenewLeader, Action::StopPrimary],
        "{d:?}"
    );
    for a in &d.actions {
        carry_out(&mut server, a).unwrap();
    }
    // Stopped: started read-only, following the remote (the toy never needs a repair).
    let d = decide(&observe(&mut server));
    assert_eq!(
        d.actions,
        vec![Action::RenewLeader, Action::Start(StartAs::StandbyLeader)],
        "{d:?}"
    );
    assert_keys_first(&d.actions);
    for a in &d.actions {
        carry_out(&mut server, a).unwrap();
    }
    assert!(server.running && !server.writable, "{server:?}");
    // From then on it follows the remote each turn and is never promoted.
    let d = decide(&observe(&mut server));
    assert_eq!(
        d.actions[..2],
        [Action::RenewLeader, Action::FollowRemote],
        "{d:?}"
    );
    assert!(!d
        .actions
        .iter()
        .any(|a| matches!(a, Action::Promote { .. })));
    assert_keys_first(&d.actions);
    // The section removed: the same node is promoted, after renewing its key.
    let mut o = observe(&mut server);
    o.cluster = Some(cluster(Some("b")));
    let d = decide(&o);
    assert_eq!(d.actions[0], Action::RenewLeader, "{d:?}");
    assert!(matches!(d.actions[1], Action::Promote { .. }), "{d:?}");
}

#[test]
fn a_toy_standby_cluster_fails_over_without_promoting() {
    let mut o = obs(standby(cluster(None)), replica(500));
    o.peers = vec![peer("a", 400)];
    let d = decide(&o);
    assert_eq!(
        d.actions[..2],
        [Action::AcquireLeader, Action::FollowRemote],
        "{d:?}"
    );
    assert!(!d
        .actions
        .iter()
        .any(|a| matches!(a, Action::Promote { .. })));
    assert_keys_first(&d.actions);
}
