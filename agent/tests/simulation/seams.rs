//! The loop's surroundings (`warden_agent::ha::env`): each node's drifting clock, and
//! the other members' REST APIs, answered from their cached status by the real
//! `views::patroni` and read by the real `parse_status`.

use super::*;
use async_trait::async_trait;
use warden_agent::api::views;
use warden_agent::ha::env::{Clock, Peers};
use warden_agent::ha::observation::Peer;
use warden_agent::ha::peers::{parse_status, PEER_TIMEOUT};
use warden_consensus::Cluster;

/// A node's monotonic clock: it runs at `ppm` parts per million of the global (tokio)
/// clock; the safety margin exists to cover exactly that. Its readings start a day
/// after the global origin, later than any `LeaseDeadline` the run creates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeClock {
    origin: tokio::time::Instant,
    ppm: u64,
}

const DAY: Duration = Duration::from_secs(86_400);

impl NodeClock {
    pub(crate) fn new(origin: tokio::time::Instant, ppm: u64) -> Self {
        Self { origin, ppm }
    }

    /// Nanoseconds on this clock since its start.
    pub(crate) fn local_ns(&self) -> u64 {
        let global = tokio::time::Instant::now().duration_since(self.origin);
        (global.as_nanos() * u128::from(self.ppm) / 1_000_000) as u64
    }

    pub(crate) fn now_std(&self) -> std::time::Instant {
        self.now().into_std()
    }

    /// The instant this clock reads `local_ns`.
    pub(crate) fn at(&self, local_ns: u64) -> tokio::time::Instant {
        self.origin + DAY + Duration::from_nanos(local_ns)
    }

    /// The reading of `t` (an instant of this clock) in ns since its start.
    pub(crate) fn local_of(&self, t: std::time::Instant) -> u64 {
        t.saturating_duration_since(self.at(0).into_std())
            .as_nanos() as u64
    }

    /// The first global ms at which this clock reads `local_ns` or more.
    pub(crate) fn global_ms(&self, local_ns: u64) -> u64 {
        let global_ns = (u128::from(local_ns) * 1_000_000).div_ceil(u128::from(self.ppm));
        global_ns.div_ceil(1_000_000) as u64
    }
}

impl Clock for NodeClock {
    fn now(&self) -> tokio::time::Instant {
        self.at(self.local_ns())
    }
}

/// Node `me`'s view of the other members' REST APIs.
#[derive(Debug)]
pub(crate) struct SimPeers {
    pub(crate) sim: Sim,
    pub(crate) node: usize,
}

/// The member an `api_url` (`http://n2:8008/patroni`) points at.
fn node_of(api_url: &str) -> Option<usize> {
    let host = api_url.strip_prefix("http://")?.split(':').next()?;
    World::index(host)
}

impl SimPeers {
    /// Asks `peer`'s API: no answer while we cannot reach it (after the timeout), a
    /// refused connection when no agent runs there; a stopped agent answers once it
    /// resumes, if that is within the timeout. `answer` runs in the peer's process.
    async fn ask<T>(
        &self,
        peer: Option<usize>,
        answer: impl FnOnce(&mut World, usize) -> T,
    ) -> Option<T> {
        let me = self.node;
        let reach = self.sim.with(|w| match peer {
            Some(p) if w.net_ok(me, p) => Some(w.nodes[p].proc.as_ref().map(|_| p)),
            _ => None,
        });
        let p = match reach {
            None => {
                tokio::time::sleep(PEER_TIMEOUT).await;
                return None;
            }
            Some(None) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                return None;
            }
            Some(Some(p)) => p,
        };
        let served = async {
            self.sim.pass(p).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.sim.with(|w| {
                // The peer may have died meanwhile.
                w.nodes[p].proc.as_ref()?;
                w.net_ok(me, p).then(|| answer(w, p))
            })
        };
        tokio::time::timeout(PEER_TIMEOUT, served)
            .await
            .ok()
            .flatten()
    }
}

#[async_trait]
impl Peers for SimPeers {
    async fn probe(&self, me: &str, cluster: &Cluster) -> Vec<Peer> {
        self.sim.pass(self.node).await;
        let fixes = self.sim.with(|w| w.fixes);
        // The loop's own choice (`peers::targets`), with the what-if switch.
        let targets = warden_agent::ha::peers::targets(me, cluster, fixes.failsafe_peers);
        let asks = targets.into_iter().map(|(name, url, tags)| async move {
            let body = self
                .ask(node_of(&url), |w, p| {
                    let shared = &w.nodes[p].proc.as_ref().expect("alive").shared;
                    let valid = shared.deadline.valid_at(w.node_now(p));
                    // Through JSON, as it crosses the wire.
                    serde_json::to_value(views::patroni(&shared.snapshot(), valid))
                        .unwrap_or_default()
                })
                .await;
            let status = body.and_then(|b| parse_status(&b, &tags));
            Peer { name, status }
        });
        let peers = futures_util::future::join_all(asks).await;
        self.sim.with(|w| w.stats.events += 1);
        self.sim.pass(self.node).await;
        peers
    }

    /// `POST /failsafe` to every member but us, as the API answers it: accepted by a
    /// member in failsafe mode (as it last saw the config) that does not run a primary;
    /// it then refuses to race for `ttl`.
    async fn confirm_failsafe(
        &self,
        me: &str,
        _my_api_url: &str,
        members: &BTreeMap<String, String>,
        _auth: Option<&warden_config::Credentials>,
    ) -> bool {
        // The loop read its clock right before this call: where a deadline from this
        // round would count from.
        let started = self.sim.with(|w| w.nodes[self.node].clock.local_ns());
        self.sim.pass(self.node).await;
        let asks = members
            .iter()
            .filter(|(name, _)| name.as_str() != me)
            .map(|(_, url)| {
                self.ask(node_of(url), |w, p| {
                    let shared = &w.nodes[p].proc.as_ref().expect("alive").shared;
                    let s = shared.snapshot();
                    let mode = s
                        .cluster
                        .as_ref()
                        .is_some_and(|c| c.dynamic_config().failsafe_mode);
                    if !mode || s.in_recovery() == Some(false) {
                        return false;
                    }
                    let at = w.node_now(p);
                    shared.update(|st| st.failsafe_leader = Some((me.to_string(), at)));
                    true
                })
            });
        let answers = futures_util::future::join_all(asks).await;
        let ok = answers.into_iter().all(|a| a == Some(true));
        let n = self.node;
        self.sim.with(|w| {
            w.stats.events += 1;
            if ok {
                w.stats.failsafe_holds += 1;
                let d = started + (TTL - warden_fencing::safety_margin(TTL)).as_nanos() as u64;
                if let Some(p) = w.nodes[n].proc.as_mut() {
                    p.failsafe_deadlines.push(d);
                    let keep = p.failsafe_deadlines.len().saturating_sub(4);
                    p.failsafe_deadlines.drain(..keep);
                }
            }
            w.log(
                Some(n),
                format!(
                    "failsafe round: asked {:?}: all confirmed: {ok}",
                    members.keys()
                ),
            );
            w.check();
        });
        self.sim.pass(n).await;
        ok
    }
}
