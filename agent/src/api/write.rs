//! The mutating endpoints: switchover and failover (through the DCS `failover` key),
//! restart, reinitialize and reload (queued to the HA loop), and config edits. Every one
//! requires `restapi.authentication` when it is configured, and answers with Patroni's
//! status codes and plain-text messages.

use super::{json, text, Reply};
use crate::ha::observation::Tags;
use crate::ha::request::{self, Kind, Request, RequestTx, RestartSpec, ScheduledRestart};
use crate::state::Shared;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request as HttpRequest};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warden_api::{PatroniStatus, ReinitializeRequest, RestartRequest, SwitchoverRequest};
use warden_consensus::types::Failover;
use warden_consensus::{Cluster, Dcs, Keys};

/// Bodies of write requests are small JSON documents.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// How often the switchover result is polled from the DCS.
const RESULT_POLL: Duration = Duration::from_millis(100);
/// Waiting for the loop to accept a reinitialize request.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// A refusal: status code and plain-text message (kept small; turned into a [`Reply`]
/// at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fail(u16, String);

impl Fail {
    fn reply(&self) -> Reply {
        text(self.0, &self.1)
    }
}

fn fail(status: u16, msg: &str) -> Fail {
    Fail(status, msg.to_string())
}

/// What the write endpoints need besides the cached status.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    pub dcs: Arc<dyn Dcs>,
    pub keys: Keys,
    pub requests: RequestTx,
    /// Base backups (`POST /backup`); `None` without a backup section.
    pub backups: Option<Arc<warden_backup::base::Service>>,
    /// TLS, allowlist and extra headers (swapped on reload).
    pub security: Arc<super::security::Security>,
}

/// Handles a mutating request, or returns `None` when the method/path is not one.
pub async fn handle(
    req: HttpRequest<Incoming>,
    ctx: &Context,
) -> Result<Reply, HttpRequest<Incoming>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    let known = matches!(
        (&method, path.as_str()),
        (
            &Method::POST,
            "/switchover" | "/failover" | "/restart" | "/reinitialize" | "/reload"
        ) | (&Method::DELETE, "/switchover" | "/restart")
            | (&Method::PATCH | &Method::PUT, "/config")
    );
    if !known {
        return Err(req);
    }
    if let Some(r) = unauthorized(&req, &ctx.shared) {
        return Ok(r);
    }
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(f) => return Ok(f.reply()),
    };
    tracing::info!(%method, path, "operator request");
    Ok(match (method, path.as_str()) {
        (Method::POST, "/switchover") => switchover(ctx, &body, false).await,
        (Method::POST, "/failover") => switchover(ctx, &body, true).await,
        (Method::DELETE, "/switchover") => cancel_switchover(ctx).await,
        (Method::POST, "/restart") => restart(ctx, &body).await,
        (Method::DELETE, "/restart") => cancel_restart(ctx),
        (Method::POST, "/reinitialize") => reinitialize(ctx, &body).await,
        (Method::POST, "/reload") => reload(ctx),
        (Method::PATCH, "/config") => {
            config_reply(super::config_edit::patch(ctx.dcs.as_ref(), &ctx.keys, &body).await)
        }
        (Method::PUT, "/config") => {
            config_reply(super::config_edit::put(ctx.dcs.as_ref(), &ctx.keys, &body).await)
        }
        _ => text(404, "no such endpoint"),
    })
}

/// Checks `restapi.authentication` on a mutating request: `Some` is the 401 answer (with
/// the `WWW-Authenticate` challenge) to send instead of acting.
pub(crate) fn unauthorized<B>(req: &HttpRequest<B>, shared: &Shared) -> Option<Reply> {
    let creds = shared.snapshot().auth;
    let e = super::auth::check(
        creds.as_ref(),
        req.headers().get(hyper::header::AUTHORIZATION),
    )
    .err()?;
    let (method, path) = (req.method(), req.uri().path());
    if let Some(suppressed) = AUTH_LOG.allow() {
        tracing::warn!(%method, path, reason = %e, suppressed, "rejected an unauthenticated request");
    }
    // Patroni's two texts; the precise reason is in the log line above.
    let msg = match e {
        super::auth::AuthError::Missing => "no auth header received",
        _ => "not authenticated",
    };
    let mut r = text(401, msg);
    if let Ok(v) = super::auth::WWW_AUTHENTICATE.parse() {
        r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, v);
    }
    Some(r)
}

/// At most one log line per second about refused credentials, with how many were not
/// logged since: a flood of bad requests must not flood the log.
static AUTH_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(1));

/// A per-call-site log limit.
pub(crate) struct LogLimiter {
    every: Duration,
    state: std::sync::Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            every,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(n)`: log now, `n` calls went unlogged since the last line; `None`: skip.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if st
            .0
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            st.1 += 1;
            return None;
        }
        let suppressed = st.1;
        *st = (Some(now), 0);
        Some(suppressed)
    }
}

fn config_reply(r: Result<Value, super::config_edit::Rejection>) -> Reply {
    match r {
        Ok(v) => json(200, &v, true),
        Err(e) if e.bare => {
            tracing::info!(status = e.status, reason = %e.message, "config edit refused");
            super::error_page(e.status)
        }
        Err(e) => text(e.status, &e.message),
    }
}

async fn read_body(req: HttpRequest<Incoming>) -> Result<Bytes, Fail> {
    match http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(fail(
            413,
            &format!("request body is larger than {MAX_REQUEST_BODY} bytes"),
        )),
        Err(e) => Err(fail(400, &format!("cannot read the request body: {e}"))),
    }
}

/// Parses a JSON object body; an empty body is `{}` when `optional`.
fn object(body: &[u8], optional: bool) -> Result<Map<String, Value>, Fail> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if optional {
            Ok(Map::new())
        } else {
            Err(fail(
                400,
                "request body: expected a JSON object, got nothing",
            ))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(fail(
            400,
            &format!("request body: expected a JSON object, got {other}"),
        )),
        Err(e) => Err(fail(400, &format!("request body: invalid JSON: {e}"))),
    }
}

/// Reads a request body's object as its wire type; a refusal is a 400 with the type's
/// message.
fn request_body<T: TryFrom<Map<String, Value>, Error = String>>(
    body: &[u8],
    optional: bool,
) -> Result<T, Fail> {
    T::try_from(object(body, optional)?).map_err(|e| Fail(400, e))
}

async fn read_cluster(ctx: &Context) -> Result<Cluster, Fail> {
    match ctx.dcs.get_prefix(ctx.keys.prefix()).await {
        Ok(snap) => Ok(Cluster::from_snapshot(&ctx.keys, &snap)),
        Err(e) => Err(fail(503, &format!("DCS is not accessible: {e}"))),
    }
}

/// `POST /switchover` and `POST /failover`, with Patroni's checks and texts.
async fn switchover(ctx: &Context, body: &[u8], failover: bool) -> Reply {
    switchover_inner(ctx, body, failover)
        .await
        .unwrap_or_else(|f| f.reply())
}

async fn switchover_inner(ctx: &Context, body: &[u8], failover: bool) -> Result<Reply, Fail> {
    let SwitchoverRequest {
        candidate,
        leader,
        scheduled_at: scheduled,
    } = request_body(body, false)?;
    let cluster = read_cluster(ctx).await?;
    let paused = cluster.is_paused();
    let mut action = if failover { "failover" } else { "switchover" };
    if failover && candidate.is_none() {
        return Err(fail(
            400,
            "Failover could be performed only to a specific candidate",
        ));
    }
    if !failover && leader.is_none() {
        return Err(fail(
            400,
            "Switchover could be performed only from a specific leader",
        ));
    }
    let mut scheduled_at = None;
    if let Some(s) = &scheduled {
        if failover {
            return Err(fail(400, "Failover can't be scheduled"));
        }
        if paused {
            return Err(fail(400, "Can't schedule switchover in the paused state"));
        }
        scheduled_at = Some(
            request::parse_schedule(s, action, chrono::Utc::now())
                .map_err(|(c, msg)| Fail(c, msg))?,
        );
    }
    // Patroni's paused standby leader does not act on the failover key: say so rather
    // than store a request nobody carries out.
    if paused && cluster.leader.is_some() && cluster.dynamic_config().is_standby_cluster() {
        return Err(fail(
            412,
            &format!("{action} is not possible: the standby leader does not hand over while the standby cluster is paused"),
        ));
    }
    if paused && candidate.is_none() {
        return Err(fail(
            400,
            "Switchover is possible only to a specific candidate in a paused state",
        ));
    }
    if failover && leader.is_some() {
        action = "switchover";
    }
    if leader.is_some() && leader == candidate {
        return Err(fail(400, "Switchover target and source are the same"));
    }
    if scheduled_at.is_none() {
        if let Some(why) =
            failover_impossible(&cluster, leader.as_deref(), candidate.as_deref(), action).await
        {
            return Err(fail(412, &why));
        }
    }
    let value = Failover {
        leader: leader.clone(),
        member: candidate.clone(),
        scheduled_at: scheduled_at.map(|t| t.to_rfc3339()),
        extra: Map::new(),
    };
    let bytes = serde_json::to_vec(&value)
        .map_err(|e| fail(500, &format!("cannot encode the request: {e}")))?;
    let written = match &cluster.failover {
        Some(f) => {
            ctx.dcs
                .compare_and_swap(&ctx.keys.failover(), bytes, f.mod_revision, None)
                .await
        }
        None => ctx.dcs.create(&ctx.keys.failover(), bytes, None).await,
    };
    match written {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("{action}: the failover key changed concurrently");
            return Err(fail(503, "failed to write failover key into DCS"));
        }
        Err(e) => {
            tracing::warn!(error = %e, "{action}: could not write the failover key");
            return Err(fail(503, "failed to write failover key into DCS"));
        }
    }
    tracing::warn!(
        action,
        ?leader,
        ?candidate,
        ?scheduled,
        "switchover requested"
    );
    if scheduled.is_some() {
        let title = if action == "failover" {
            "Failover"
        } else {
            "Switchover"
        };
        return Ok(text(202, &format!("{title} scheduled")));
    }
    let old = cluster.leader_name().map(str::to_string);
    Ok(poll_result(ctx, old.as_deref(), candidate.as_deref(), action, &cluster).await)
}

/// Patroni's `is_failover_possible`: the leader named must be the leader, the candidate
/// must be a member, and at least one candidate must answer as a healthy replica.
async fn failover_impossible(
    cluster: &Cluster,
    leader: Option<&str>,
    candidate: Option<&str>,
    action: &str,
) -> Option<String> {
    if let Some(l) = leader {
        if cluster.leader_name() != Some(l) {
            tracing::info!(named = l, leader = ?cluster.leader_name(), "{action} refused: not the leader");
            return Some("leader name does not match".into());
        }
    }
    // Synchronous mode: only a standby listed in /sync has every acknowledged commit.
    let sync_ok = |n: &str| crate::ha::race::sync_allows(cluster, n);
    if let Some(c) = candidate {
        if !sync_ok(c) && cluster.members.contains_key(c) {
            tracing::info!(candidate = c, "{action} refused: not listed in /sync");
            return Some("candidate name does not match with sync_standby".into());
        }
    }
    let names: Vec<&String> = cluster.members.keys().collect();
    let targets: Vec<(&String, String)> = match candidate {
        Some(c) => match cluster.members.get_key_value(c) {
            Some((n, m)) => vec![(n, m.value.api_url.clone())],
            None => {
                tracing::info!(candidate = c, members = ?names, "{action} refused: no such member");
                // Patroni's text, spelling included: scripts match it.
                return Some("candidate does not exists".into());
            }
        },
        None => cluster
            .members
            .iter()
            .filter(|(n, _)| Some(n.as_str()) != cluster.leader_name() && sync_ok(n))
            .map(|(n, m)| (n, m.value.api_url.clone()))
            .collect(),
    };
    if targets.is_empty() && cluster.dynamic_config().synchronous_mode.is_enabled() {
        return Some(format!(
            "{action} is not possible: can not find sync_standby"
        ));
    }
    if targets.is_empty() {
        return Some(format!(
            "{action} is not possible: cluster does not have members except leader"
        ));
    }
    let checks = targets.into_iter().map(|(name, url)| {
        let tags = member_tags(cluster, name);
        async move {
            let body = warden_api::client::get_json(&url, crate::ha::peers::PEER_TIMEOUT)
                .await
                .ok()?;
            let status = PatroniStatus::from_json(&body).ok()?;
            let s = crate::ha::peers::peer_status(&status, &tags)?;
            (status.is_running() && s.may_become_leader && !s.is_primary).then_some(())
        }
    });
    let good = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .any(|r| r.is_some());
    if good {
        match candidate {
            Some(c) if cluster.leader.is_none() => quorum_unreachable(cluster, c)
                .await
                .map(|why| format!("{action} is not possible: {why}")),
            _ => None,
        }
    } else {
        if let Some(c) = candidate {
            tracing::info!(
                candidate = c,
                "{action} refused: the candidate is not a healthy replica that may be promoted \
                 (not running, not answering, or tagged nofailover)"
            );
        }
        Some(format!(
            "{action} is not possible: no good candidates have been found"
        ))
    }
}

fn member_tags(cluster: &Cluster, name: &str) -> Tags {
    Tags {
        nofailover: cluster
            .member(name)
            .is_some_and(|m| m.tag_bool("nofailover")),
        failover_priority: cluster
            .member(name)
            .and_then(|m| m.tag_priority("failover_priority")),
        clonefrom: false,
        nostream: false,
    }
}

/// Quorum commit, with no leader to hand over: the candidate of a failover is promoted
/// only once enough `/sync` members vouch that it has every acknowledged commit (the
/// race rule, `decide::quorum_refusal`). Asked now, so a request nobody may carry out is
/// refused instead of stored.
async fn quorum_unreachable(cluster: &Cluster, candidate: &str) -> Option<String> {
    if crate::ha::race::quorum_in_force(cluster) == 0 {
        return None;
    }
    let sync = &cluster.sync.as_ref()?.value;
    let mut names: Vec<&str> = sync.standbys();
    names.extend(sync.leader.as_deref());
    names.push(candidate);
    names.sort_unstable();
    names.dedup();
    let asks = names.into_iter().filter_map(|name| {
        let url = cluster.member(name)?.api_url.clone();
        let tags = member_tags(cluster, name);
        Some(async move {
            let status = warden_api::client::get_json(&url, crate::ha::peers::PEER_TIMEOUT)
                .await
                .ok()
                .and_then(|body| PatroniStatus::from_json(&body).ok())
                .and_then(|body| crate::ha::peers::peer_status(&body, &tags));
            crate::ha::observation::Peer {
                name: name.to_string(),
                status,
            }
        })
    });
    let peers = futures_util::future::join_all(asks).await;
    let mine = peers
        .iter()
        .find(|p| p.name == candidate)
        .and_then(|p| p.status.as_ref())
        .map(|s| s.position)?;
    crate::ha::race::quorum_refusal(cluster, candidate, mine, &peers)
}

/// Waits for the outcome as Patroni does: a new leader (200), the request cleared with
/// the old leader still in place (503 failed), or no answer in time (503 unknown).
async fn poll_result(
    ctx: &Context,
    old: Option<&str>,
    candidate: Option<&str>,
    action: &str,
    cluster: &Cluster,
) -> Reply {
    let loop_wait = u64::from(cluster.dynamic_config().loop_wait);
    let limit = Duration::from_secs(2 * loop_wait.max(10));
    let deadline = Instant::now() + limit;
    let verb = &action[..action.len() - 4]; // "switch" / "fail"
    let title = if action == "failover" {
        "Failover"
    } else {
        "Switchover"
    };
    while Instant::now() < deadline {
        tokio::time::sleep(RESULT_POLL).await;
        let Ok(c) = read_cluster(ctx).await else {
            continue;
        };
        if let Some(new) = c.leader_name().filter(|n| Some(*n) != old) {
            return match candidate {
                Some(want) if want != new => text(
                    200,
                    &format!(
                        "{}ed over to \"{new}\" instead of \"{want}\"",
                        capitalize(verb)
                    ),
                ),
                _ => text(200, &format!("Successfully {verb}ed over to \"{new}\"")),
            };
        }
        let pending = c.failover.as_ref().is_some_and(|f| !f.value.is_empty());
        if !pending && c.leader_name() == old {
            return text(503, &format!("{title} failed"));
        }
    }
    tracing::warn!(
        seconds = limit.as_secs(),
        "{action}: no outcome in time; it may still be in progress"
    );
    text(503, &format!("{title} status unknown"))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

async fn cancel_switchover(ctx: &Context) -> Reply {
    let cluster = match read_cluster(ctx).await {
        Ok(c) => c,
        Err(f) => return f.reply(),
    };
    match cluster
        .failover
        .as_ref()
        .filter(|f| f.value.scheduled_at.is_some())
    {
        Some(f) => match ctx
            .dcs
            .compare_and_swap(&ctx.keys.failover(), b"{}".to_vec(), f.mod_revision, None)
            .await
        {
            Ok(true) => text(200, "scheduled switchover deleted"),
            // Patroni's bare 409 page.
            Ok(false) => super::error_page(409),
            Err(e) => text(503, &format!("DCS write failed: {e}")),
        },
        None => text(404, "no switchover is scheduled"),
    }
}

/// The loop's restart conditions from a `POST /restart` body, and its schedule.
fn restart_spec(r: RestartRequest) -> (RestartSpec, Option<String>) {
    let spec = RestartSpec {
        postgres_version: r.postgres_version_num(),
        timeout: r.timeout_duration(),
        role: r.role,
        restart_pending: r.restart_pending,
    };
    (spec, r.schedule)
}

async fn restart(ctx: &Context, body: &[u8]) -> Reply {
    let (spec, schedule) = match request_body(body, true) {
        Ok(r) => restart_spec(r),
        Err(f) => return f.reply(),
    };
    if let Some(s) = schedule {
        if ctx.shared.snapshot().paused() {
            return text(500, "Can't schedule restart in the paused state");
        }
        let at = match request::parse_schedule(&s, "restart", chrono::Utc::now()) {
            Ok(at) => at,
            Err((code, msg)) => return text(code, &msg),
        };
        let mut scheduled = false;
        ctx.shared.update(|st| {
            if st.scheduled_restart.is_none() {
                st.scheduled_restart = Some(ScheduledRestart { at, spec });
                scheduled = true;
            }
        });
        return if scheduled {
            tracing::info!(%at, "restart scheduled");
            text(202, "Restart scheduled")
        } else {
            text(409, "Another restart is already scheduled")
        };
    }
    let wait = spec
        .timeout
        .unwrap_or(Duration::from_secs(120))
        .saturating_add(Duration::from_secs(90));
    match ask_loop(ctx, Kind::Restart(spec), wait).await {
        Ok(msg) => text(200, &msg),
        Err((code, msg)) => text(code, &msg),
    }
}

fn cancel_restart(ctx: &Context) -> Reply {
    let mut had = false;
    ctx.shared
        .update(|st| had = st.scheduled_restart.take().is_some());
    if had {
        text(200, "scheduled restart deleted")
    } else {
        text(404, "no restarts are scheduled")
    }
}

async fn reinitialize(ctx: &Context, body: &[u8]) -> Reply {
    let ReinitializeRequest { from_leader, .. } = match request_body(body, true) {
        Ok(r) => r,
        Err(f) => return f.reply(),
    };
    match ask_loop(ctx, Kind::Reinitialize { from_leader }, ACCEPT_TIMEOUT).await {
        Ok(msg) => text(200, &msg),
        Err((code, msg)) => text(code, &msg),
    }
}

fn reload(ctx: &Context) -> Reply {
    match ctx.requests.try_send(Request {
        kind: Kind::Reload,
        reply: None,
    }) {
        Ok(()) => text(202, "reload scheduled"),
        Err(_) => text(503, "the agent is busy with other requests; retry"),
    }
}

/// Queues a request for the HA loop and waits for its answer.
async fn ask_loop(ctx: &Context, kind: Kind, wait: Duration) -> request::Reply {
    let what = match &kind {
        Kind::Restart(_) => "restart",
        Kind::Reinitialize { .. } => "reinitialize",
        Kind::Reload => "reload",
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if ctx
        .requests
        .try_send(Request {
            kind,
            reply: Some(tx),
        })
        .is_err()
    {
        tracing::info!("{what} refused: another request is in progress or queued");
        return Err((503, format!("{what} already in progress")));
    }
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err((503, format!("{what}: the agent is shutting down"))),
        Err(_) => Err((
            503,
            format!(
                "{what} status unknown after {} seconds; it may still be in progress",
                wait.as_secs()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_log_is_limited_and_counts_what_it_skipped() {
        let l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        for _ in 0..5 {
            assert_eq!(l.allow(), None);
        }
        let l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), Some(0));
    }
    use serde_json::json;

    #[test]
    fn restart_bodies() {
        let parse = |v: Value| {
            request_body::<RestartRequest>(v.to_string().as_bytes(), true)
                .map(restart_spec)
                .map_err(|f| f.0)
        };
        let (spec, sched) = parse(json!({"role": "replica", "postgres_version": "16", "timeout": "30s", "restart_pending": true})).unwrap();
        assert_eq!(spec.role.as_deref(), Some("replica"));
        assert_eq!(spec.postgres_version, Some(160000));
        assert_eq!(spec.timeout, Some(Duration::from_secs(30)));
        assert!(spec.restart_pending);
        assert!(sched.is_none());
        assert_eq!(parse(json!({"role": "leader"})).unwrap_err(), 400);
        assert_eq!(parse(json!({"timeout": 0})).unwrap_err(), 400);
        assert_eq!(parse(json!({"timeout": "soon"})).unwrap_err(), 400);
        assert_eq!(parse(json!({"postgres_version": "x"})).unwrap_err(), 400);
        assert_eq!(parse(json!({"bogus": 1})).unwrap_err(), 400);
        assert_eq!(parse(json!({"restart_pending": "maybe"})).unwrap_err(), 400);
        assert!(parse(json!({"role": "any"})).unwrap().0.role.is_none());
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(object(b"", true).unwrap().is_empty());
        assert_eq!(object(b"", false).unwrap_err().0, 400);
        assert_eq!(object(b"[1]", true).unwrap_err().0, 400);
        assert_eq!(object(b"{nope", true).unwrap_err().0, 400);
        assert_eq!(object(br#"{"a":1}"#, false).unwrap().len(), 1);
    }

    #[test]
    fn verbs() {
        assert_eq!(capitalize("switch"), "Switch");
    }
}
