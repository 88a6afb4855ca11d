//! Synchronous mode: only a synchronous standby may be promoted.

use super::fixtures::*;
use warden_ha::{decide, Action, DataState};

#[test]
fn synchronous_mode_promotes_only_a_listed_standby() {
    // n1 (the leader) is gone; n3 is the synchronous standby.
    let c = with_sync(cluster(Some("42"), None), "n1", Some("n3"));
    // n2 is further ahead but not in /sync: it must not race ...
    let mut o = obs(
        Some(c.clone()),
        DataState::Initialized,
        Some(probe(true, 5000)),
    );
    o.peers = vec![peer("n3", 4000, false)];
    let d = decide(&o);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.note.contains("synchronous"), "{}", d.note);
    // ... while n3 races, without deferring to n2's larger position.
    let mut o = obs(Some(c), DataState::Initialized, Some(probe(true, 4000)));
    o.me = "n3".into();
    o.peers = vec![peer("n2", 5000, false)];
    assert!(decide(&o).actions.contains(&Action::AcquireLeader));
}

#[test]
fn synchronous_mode_without_a_sync_standby_promotes_nobody() {
    let c = with_sync(cluster(Some("42"), None), "n1", None);
    for me in ["n2", "n3"] {
        let mut o = obs(
            Some(c.clone()),
            DataState::Initialized,
            Some(probe(true, 100)),
        );
        o.me = me.into();
        assert!(decide(&o).actions.is_empty());
    }
    // Off again: the normal race.
    let mut c = c;
    c.config = None;
    let o = obs(Some(c), DataState::Initialized, Some(probe(true, 100)));
    assert!(decide(&o).actions.contains(&Action::AcquireLeader));
}

#[test]
fn synchronous_mode_switchover_only_to_a_sync_standby() {
    let c = with_failover(
        with_sync(cluster(Some("42"), Some("n2")), "n2", Some("n1")),
        Some("n2"),
        Some("n3"),
        None,
    );
    let mut o = leader_obs(c);
    o.peers = vec![peer("n1", 1000, false), peer("n3", 1000, false)];
    let d = decide(&o);
    assert!(d.actions.contains(&Action::ClearFailover), "{d:?}");
    assert!(d.note.contains("not a synchronous standby"), "{}", d.note);
}
