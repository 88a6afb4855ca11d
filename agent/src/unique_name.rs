//! Refusing to start under a name another running agent already uses (Patroni's
//! `ensure_unique_name`): two agents with one name would write one member key, and
//! each would read the other's facts as its own.
//!
//! A member key with our name is a duplicate only if the agent it names still answers:
//! a key left by a crashed agent (it lives until its lease expires) must not stop that
//! same node from coming back.

use std::time::Duration;

use anyhow::bail;
use warden_consensus::Cluster;

/// Patroni's bound on the liveness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Fails when a member key named `name` exists and the REST API it names answers
/// `GET /liveness` with any HTTP status. `own_api` is this agent's own REST address
/// (`restapi.connect_address`): a key naming it was left by an earlier run of this
/// very node (nobody else can listen there while we do).
pub async fn ensure(cluster: &Cluster, name: &str, own_api: &str) -> anyhow::Result<()> {
    let Some(member) = cluster.member(name) else {
        return Ok(());
    };
    let Some(url) = liveness_url(&member.api_url) else {
        return Ok(());
    };
    // Either scheme: an earlier run may have served http or https.
    let own = |scheme: &str| liveness_url(&format!("{scheme}://{own_api}/patroni"));
    if [own("http"), own("https")].contains(&Some(url.clone())) {
        return Ok(());
    }
    match warden_api::client::get(&url, PROBE_TIMEOUT).await {
        Ok((status, _)) => {
            tracing::error!(%url, status, "another agent answers for this member name");
            bail!("Can't start; there is already a node named '{name}' running")
        }
        Err(e) => {
            tracing::info!(%url, error = %e, "a member key with this name exists but its agent does not answer; taking it over");
            Ok(())
        }
    }
}

/// `<scheme>://<host:port>/liveness` from a member's `api_url` (which ends in
/// `/patroni`, or any other path).
fn liveness_url(api_url: &str) -> Option<String> {
    let (scheme, rest) = api_url.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}/liveness"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_url_keeps_scheme_and_authority() {
        assert_eq!(
            liveness_url("http://127.0.0.1:8008/patroni").as_deref(),
            Some("http://127.0.0.1:8008/liveness")
        );
        assert_eq!(
            liveness_url("https://db-1:8443").as_deref(),
            Some("https://db-1:8443/liveness")
        );
        assert_eq!(liveness_url("not a url"), None);
        assert_eq!(liveness_url("http:///patroni"), None);
    }
}
