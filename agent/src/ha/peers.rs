//! Asking other members' `/patroni` during a leader race: in parallel, each with a short
//! timeout, so a dead peer costs at most that timeout.

use super::observation::{Peer, PeerStatus, Tags};
use std::time::Duration;
use warden_api::client as http_client;
use warden_api::PatroniStatus;
use warden_consensus::Cluster;

/// Patroni's peers answer within 2 s; ours use the same bound.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn probe_peers(me: &str, cluster: &Cluster) -> Vec<Peer> {
    let futures = targets(me, cluster, true)
        .into_iter()
        .map(|(name, url, tags)| async move {
            let status = match http_client::get_json(&url, PEER_TIMEOUT).await {
                Ok(body) => parse_status(&body, &tags),
                Err(e) => {
                    tracing::info!(peer = %name, error = %e, "peer did not answer");
                    None
                }
            };
            Peer { name, status }
        });
    futures_util::future::join_all(futures).await
}

/// Whom a race asks (name, `/patroni` URL, tags): every member but us, and in failsafe
/// mode (`with_failsafe`) also those `/failsafe` lists without a member key — a leader
/// holding on without the DCS has lost its member key with its lease.
pub fn targets(me: &str, cluster: &Cluster, with_failsafe: bool) -> Vec<(String, String, Tags)> {
    let mut targets: Vec<(String, String, Tags)> = cluster
        .members
        .iter()
        .filter(|(n, _)| n.as_str() != me)
        .map(|(name, m)| {
            let tags = Tags {
                nofailover: m.value.tag_bool("nofailover"),
                failover_priority: m.value.tag_priority("failover_priority"),
                clonefrom: false,
                nostream: false,
            };
            (name.clone(), m.value.api_url.clone(), tags)
        })
        .collect();
    if with_failsafe && cluster.dynamic_config().failsafe_mode {
        for (name, url) in cluster.failsafe.iter().flatten() {
            if name != me && !cluster.members.contains_key(name) {
                targets.push((name.clone(), url.clone(), Tags::default()));
            }
        }
    }
    targets
}

/// Failsafe mode: asks every member in `failsafe` (name → api_url) but us, in parallel,
/// to confirm that we may stay primary. True only if all of them accepted. `auth` is our
/// own `restapi.authentication`, sent as Patroni does: `POST /failsafe` is guarded like
/// the other mutating endpoints, and members share the credentials.
pub async fn confirm_failsafe(
    me: &str,
    my_api_url: &str,
    failsafe: &std::collections::BTreeMap<String, String>,
    auth: Option<&warden_config::Credentials>,
) -> bool {
    let body = serde_json::json!({"name": me, "api_url": my_api_url});
    // `restapi.authentication`; a missing password is the empty one.
    let basic = auth.map(|c| http_client::BasicAuth {
        username: c.username.clone(),
        password: c.password.clone().unwrap_or_default(),
    });
    let asks = failsafe.iter().filter(|(n, _)| n.as_str() != me).map(|(name, api_url)| {
        let url = failsafe_url(api_url);
        let (body, basic) = (&body, basic.as_ref());
        async move {
            match http_client::post_json(&url, body, basic, PEER_TIMEOUT).await {
                Ok(200) => true,
                Ok(code) => {
                    tracing::warn!(peer = %name, code, "peer refused to confirm us in failsafe mode");
                    false
                }
                Err(e) => {
                    tracing::warn!(peer = %name, error = %e, "peer did not confirm us in failsafe mode");
                    false
                }
            }
        }
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .all(|ok| ok)
}

/// `http://h:p/patroni` → `http://h:p/failsafe`.
fn failsafe_url(api_url: &str) -> String {
    let base = api_url
        .strip_suffix("/patroni")
        .unwrap_or(api_url.trim_end_matches('/'));
    format!("{base}/failsafe")
}

/// Reads role and WAL position from a `/patroni` body.
pub fn parse_status(body: &serde_json::Value, tags: &Tags) -> Option<PeerStatus> {
    peer_status(&PatroniStatus::from_json(body).ok()?, tags)
}

/// Role and WAL position of a peer from its `/patroni`; `None` without a role or an
/// `xlog` (PostgreSQL not running).
pub fn peer_status(body: &PatroniStatus, tags: &Tags) -> Option<PeerStatus> {
    let xlog = body.xlog.as_ref().filter(|_| !body.role.is_empty())?;
    let is_primary = body.is_primary() && body.is_running();
    let wal = if is_primary {
        xlog.location().unwrap_or(0)
    } else {
        let r = xlog.received_location().unwrap_or(0);
        r.max(xlog.replayed_location().unwrap_or(0))
    };
    Some(PeerStatus {
        is_primary,
        position: wal,
        generation: body.timeline,
        may_become_leader: tags.may_become_leader(),
        priority: tags.priority(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failsafe_urls() {
        assert_eq!(
            failsafe_url("http://127.0.0.1:8008/patroni"),
            "http://127.0.0.1:8008/failsafe"
        );
        assert_eq!(failsafe_url("http://h:1/"), "http://h:1/failsafe");
    }

    #[test]
    fn parses_primary_and_replica_bodies() {
        let t = Tags::default();
        let p = parse_status(
            &json!({"state":"running","role":"primary","xlog":{"location":500}}),
            &t,
        )
        .unwrap();
        assert!(p.is_primary);
        assert_eq!(p.position, 500);
        let r = parse_status(
            &json!({"state":"running","role":"replica","xlog":{"received_location":300,"replayed_location":200}}),
            &t,
        )
        .unwrap();
        assert!(!r.is_primary);
        assert_eq!(r.position, 300);
        assert!(parse_status(&json!({"role":"replica"}), &t).is_none());
    }
}
