//! Has the cluster converged? The kit's `assert_converged` panics, which
//! would end a chaos run on the first slow recovery; this is the same
//! question answered with a reason, polled with a deadline.
//!
//! Converged means: exactly one node answers 200 on `/primary` and every
//! other one 200 on `/replica`; the leader key names that node; its
//! `/patroni` says primary on some timeline; every other node's `/patroni`
//! says a streaming replica on that timeline; and the primary's
//! `pg_stat_replication` lists each of them as streaming. A former primary
//! therefore counts only once it has rejoined as a streaming replica.
//!
//! Redis members have no timeline: there the primary's `INFO replication`
//! must list every other node online, and each of them must be a replica
//! with its link up on the primary's replication id
//! ([`crate::redis_engine::converged_replication`]).

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use warden_tests::{sql, Cluster};

use crate::redis_engine;

/// Interval between two convergence checks.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converged {
    pub primary: usize,
    /// PostgreSQL's timeline; `None` for Redis members.
    pub timeline: Option<u64>,
}

impl Converged {
    /// ` on timeline N` (nothing for Redis), for messages.
    pub fn on_timeline(&self) -> String {
        self.timeline
            .map_or_else(String::new, |t| format!(" on timeline {t}"))
    }
}

/// One look at the cluster.
pub fn check_now(cluster: &Cluster) -> Result<Converged, String> {
    let nodes = cluster.nodes();
    let states: Vec<(Option<u16>, Option<u16>)> = nodes
        .iter()
        .map(|n| (n.status("/primary"), n.status("/replica")))
        .collect();
    let primaries: Vec<usize> = (0..nodes.len())
        .filter(|&i| states[i].0 == Some(200))
        .collect();
    let describe = || {
        nodes
            .iter()
            .zip(&states)
            .map(|(n, (p, r))| format!("{}: /primary {} /replica {}", n.name(), show(*p), show(*r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let [p] = primaries[..] else {
        return Err(format!(
            "{} nodes answer 200 on /primary ({})",
            primaries.len(),
            describe()
        ));
    };
    if let Some(i) = (0..nodes.len()).find(|&i| i != p && states[i].1 != Some(200)) {
        return Err(format!(
            "{} is not a healthy replica ({})",
            nodes[i].name(),
            describe()
        ));
    }
    let primary = &nodes[p];
    let holder = cluster
        .leader_key()
        .map_err(|e| format!("reading the leader key: {e:#}"))?
        .map(|kv| kv.value);
    if holder.as_deref() != Some(primary.name()) {
        return Err(format!(
            "the leader key names {holder:?}, but {} answers /primary",
            primary.name()
        ));
    }
    if redis_engine::is_redis(cluster) {
        return check_redis(cluster, p);
    }
    let v = primary
        .patroni()
        .ok_or_else(|| format!("{}: no /patroni", primary.name()))?;
    let timeline = match (v.role.as_str(), v.timeline) {
        ("primary", Some(t)) => t,
        (role, t) => {
            return Err(format!(
                "{}: /patroni role {role:?} timeline {t:?}",
                primary.name(),
            ))
        }
    };
    let mut names = Vec::new();
    for (i, n) in nodes.iter().enumerate().filter(|&(i, _)| i != p) {
        let v = n
            .patroni()
            .ok_or_else(|| format!("{}: no /patroni", n.name()))?;
        let streaming = v.role == "replica"
            && v.replication_state.as_deref() == Some("streaming")
            && v.timeline == Some(timeline);
        if !streaming {
            return Err(format!(
                "{} is not streaming on timeline {timeline}: role {:?} state {:?} timeline {:?}",
                nodes[i].name(),
                v.role,
                v.replication_state,
                v.timeline
            ));
        }
        names.push(n.name().to_string());
    }
    let listed = streaming_standbys(primary.pg_port())?;
    if let Some(missing) = names.iter().find(|n| !listed.contains(n)) {
        return Err(format!(
            "{}'s pg_stat_replication does not list {missing} as streaming (lists {listed:?})",
            primary.name()
        ));
    }
    Ok(Converged {
        primary: p,
        timeline: Some(timeline.into()),
    })
}

/// [`check_now`]'s second half for Redis members: `/patroni` roles and
/// replication state, then the servers' own view.
fn check_redis(cluster: &Cluster, p: usize) -> Result<Converged, String> {
    for (i, n) in cluster.nodes().iter().enumerate() {
        let v = n
            .patroni()
            .ok_or_else(|| format!("{}: no /patroni", n.name()))?;
        let ok = if i == p {
            v.role == "primary"
        } else {
            v.role == "replica" && v.replication_state.as_deref() == Some("streaming")
        };
        if !ok {
            return Err(format!(
                "{}: /patroni role {:?} state {:?}",
                n.name(),
                v.role,
                v.replication_state
            ));
        }
    }
    redis_engine::converged_replication(cluster, p)?;
    Ok(Converged {
        primary: p,
        timeline: None,
    })
}

fn show(s: Option<u16>) -> String {
    s.map_or_else(|| "-".into(), |s| s.to_string())
}

fn streaming_standbys(port: u16) -> Result<Vec<String>, String> {
    let mut c = sql::connect(port).map_err(|e| format!("{e:#}"))?;
    let rows = c
        .query(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .map_err(|e| format!("pg_stat_replication on port {port}: {e}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Poll [`check_now`] until it succeeds (returning the result and when), at
/// most for `timeout`, or until `stop` is set; otherwise the last reason.
pub fn wait(
    cluster: &Cluster,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<(Converged, Instant), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check_now(cluster) {
            Ok(c) => return Ok((c, Instant::now())),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!("interrupted; last: {last}"));
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}
