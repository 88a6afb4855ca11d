//! `POST /backup` (start a base backup on this member, which must be the archiver)
//! and `GET /backup` (what is running and how the last one ended). On a Redis member
//! the same requests start and report RDB snapshots (`crate::backups::rdb`), taken by
//! the member holding the same archiver key.

use super::write::{unauthorized, Context, MAX_REQUEST_BODY};
use super::{json, text, Reply};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::Value;
use warden_backup::base::StartError;

pub const PATH: &str = "/backup";

/// Handles `/backup`, or gives the request back.
pub async fn handle(req: Request<Incoming>, ctx: &Context) -> Result<Reply, Request<Incoming>> {
    if req.uri().path().trim_end_matches('/') != PATH {
        return Err(req);
    }
    let method = req.method().clone();
    Ok(match method {
        Method::GET | Method::HEAD => status(ctx, method == Method::GET),
        Method::POST => {
            if let Some(r) = unauthorized(&req, &ctx.shared) {
                return Ok(r);
            }
            match read_body(req).await {
                Ok(Kind::Base) if crate::backups::rdb::service().is_some() => start_rdb(ctx).await,
                Ok(Kind::Dump) if crate::backups::rdb::service().is_some() => text(
                    400,
                    "logical dumps are PostgreSQL's; a Redis member takes RDB snapshots \
                     (POST /backup with no body)",
                ),
                Ok(Kind::Base) => start(ctx).await,
                Ok(Kind::Dump) => super::backup_dump::start(ctx).await,
                Err(r) => r,
            }
        }
        other => text(405, &format!("method {other} is not supported on {PATH}")),
    })
}

/// What `POST /backup` starts.
enum Kind {
    Base,
    Dump,
}

/// `POST /backup` takes an empty body or `{}` (a base backup), or
/// `{"kind": "base"|"dump"}`.
async fn read_body(req: Request<Incoming>) -> Result<Kind, Reply> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|e| text(400, &format!("cannot read the request body: {e}")))?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Kind::Base);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| *k != "kind") {
                return Err(text(
                    400,
                    &format!("body: unknown parameter {k:?} (POST /backup takes only \"kind\")"),
                ));
            }
            match m.get("kind") {
                None => Ok(Kind::Base),
                Some(Value::String(k)) if k == "base" => Ok(Kind::Base),
                Some(Value::String(k)) if k == "dump" => Ok(Kind::Dump),
                Some(other) => Err(text(
                    400,
                    &format!("body: kind must be \"base\" or \"dump\", got {other}"),
                )),
            }
        }
        Ok(_) => Err(text(400, "body: expected nothing or a JSON object")),
        Err(e) => Err(text(400, &format!("body: invalid JSON: {e}"))),
    }
}

fn status(ctx: &Context, with_body: bool) -> Reply {
    let s = ctx.shared.snapshot();
    let holder = s.cluster.as_ref().and_then(|c| c.archiver.clone());
    if let Some(rdb) = crate::backups::rdb::service() {
        let mut v = rdb.progress();
        v["member"] = s.name.clone().into();
        v["is_archiver"] = s.archiver.into();
        v["archiver"] = holder.map_or(Value::Null, Value::from);
        return json(200, &v, with_body);
    }
    let Some(service) = &ctx.backups else {
        return text(
            503,
            "this member has no backup section in its configuration",
        );
    };
    let mut v = serde_json::to_value(service.progress()).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("member".into(), s.name.clone().into());
        m.insert("is_archiver".into(), s.archiver.into());
        m.insert("archiver".into(), holder.map_or(Value::Null, Value::from));
        m.insert(
            "dump".into(),
            serde_json::to_value(warden_backup::dump::run::state()).unwrap_or(Value::Null),
        );
    }
    json(200, &v, with_body)
}

/// How long a refusal waits for the DCS before it names the archiver from the cached
/// view instead: a loaded etcd must not turn a quick 409 into a client timeout.
const ARCHIVER_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The archiver key as the DCS has it now (the cached view may be a turn old); `None`
/// when the DCS does not answer within [`ARCHIVER_LOOKUP_TIMEOUT`].
pub(super) async fn archiver_now(ctx: &Context) -> Option<String> {
    let key = ctx.keys.archiver();
    let snapshot = tokio::time::timeout(ARCHIVER_LOOKUP_TIMEOUT, ctx.dcs.get_prefix(&key))
        .await
        .ok()?
        .ok()?;
    snapshot
        .kvs
        .into_iter()
        .find(|kv| kv.key == key)
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// Refuses a start on a member that is not the archiver: 409 naming the holder, or
/// 503 when none holds it yet. `what`: "base backups", "RDB snapshots".
async fn not_the_archiver(ctx: &Context, what: &str) -> Option<Reply> {
    let s = ctx.shared.snapshot();
    if s.archiver {
        return None;
    }
    let holder = match archiver_now(ctx).await {
        Some(h) => Some(h),
        None => s.cluster.as_ref().and_then(|c| c.archiver.clone()),
    };
    Some(match holder {
        Some(h) if h != s.name => text(
            409,
            &format!(
                "{} is not the archiver; {what} run on the archiver, {h}: send the request there",
                s.name
            ),
        ),
        _ => text(
            503,
            &format!(
                "{} does not hold the archiver key (no member holds it yet, or it is \
                 being handed over); try again shortly",
                s.name
            ),
        ),
    })
}

/// `POST /backup` on a Redis member: an RDB snapshot of this member's server.
async fn start_rdb(ctx: &Context) -> Reply {
    let Some(service) = crate::backups::rdb::service() else {
        return text(
            503,
            "this member has no backup section in its configuration",
        );
    };
    if let Some(refused) = not_the_archiver(ctx, "RDB snapshots").await {
        return refused;
    }
    use warden_backup::rdb::service::StartError as RdbStart;
    match service.start("api") {
        Ok((id, _)) => json(
            202,
            &serde_json::json!({"id": id, "member": service.member(), "kind": "rdb", "status": "started"}),
            true,
        ),
        Err(e @ (RdbStart::Busy(_) | RdbStart::SameSecond(_))) => {
            text(409, &format!("{} on {}", e, service.member()))
        }
        Err(RdbStart::Setup(e)) => text(503, &format!("cannot start an RDB snapshot: {e}")),
    }
}

async fn start(ctx: &Context) -> Reply {
    let Some(service) = &ctx.backups else {
        return text(
            503,
            "this member has no backup section in its configuration",
        );
    };
    let s = ctx.shared.snapshot();
    if !s.archiver {
        let holder = match archiver_now(ctx).await {
            Some(h) => Some(h),
            None => s.cluster.as_ref().and_then(|c| c.archiver.clone()),
        };
        return match holder {
            Some(h) if h != s.name => text(
                409,
                &format!(
                    "{} is not the archiver; base backups run on the archiver, {h}: send the \
                     request there",
                    s.name
                ),
            ),
            _ => text(
                503,
                &format!(
                    "{} is not archiving WAL (no member holds the archiver key yet, or its \
                     archiver is starting); try again shortly",
                    s.name
                ),
            ),
        };
    }
    match service.start("api").await {
        Ok((id, _)) => json(
            202,
            &serde_json::json!({"id": id, "member": s.name, "status": "started"}),
            true,
        ),
        Err(StartError::Busy(id)) => text(
            409,
            &format!("backup {id} is already running on {}", s.name),
        ),
        Err(StartError::Setup(e)) => text(503, &format!("cannot start a backup: {e}")),
    }
}
