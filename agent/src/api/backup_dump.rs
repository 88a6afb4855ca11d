//! `POST /backup {"kind": "dump"}`: a logical dump now, on the archiver (where the
//! scheduled dumps run too, so the two never overlap).

use super::write::Context;
use super::{json, text, Reply};

pub(super) async fn start(ctx: &Context) -> Reply {
    let Some(service) = &ctx.backups else {
        return text(
            503,
            "this member has no backup section in its configuration",
        );
    };
    let s = ctx.shared.snapshot();
    if !s.archiver {
        let holder = super::backup::archiver_now(ctx)
            .await
            .or_else(|| s.cluster.as_ref().and_then(|c| c.archiver.clone()));
        return match holder {
            Some(h) if h != s.name => text(
                409,
                &format!(
                    "{} is not the archiver; dumps run on the archiver, {h}: send the request there",
                    s.name
                ),
            ),
            _ => text(503, &format!("{} is not the archiver yet; try again shortly", s.name)),
        };
    }
    let job = match service.dump_job() {
        Ok(j) => j,
        Err(e) => return text(503, &format!("cannot start a dump: {e}")),
    };
    // On demand: no retention prune afterwards (only scheduled jobs prune).
    match warden_backup::dump::run::start(job, "api", |_| async {}) {
        Ok((id, _)) => json(
            202,
            &serde_json::json!({"id": id, "member": s.name, "kind": "dump", "status": "started"}),
            true,
        ),
        Err(running) => text(
            409,
            &format!("dump {running} is already running on {}", s.name),
        ),
    }
}
