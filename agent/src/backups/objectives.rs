//! The DR objectives (`backup.objectives`) judged by the daemon: the member holding
//! `warden/archiver` — it streams the WAL, so it knows the archive's RPO first hand —
//! re-judges every [`JUDGE_EVERY`] on a task of its own (never in a turn, never on a
//! scrape) with the same pure `warden_backup::objectives::judge` as `wardenctl
//! dr-report`, keeps the verdicts for `/metrics` (`warden_dr_objective_met`), and
//! notifies the webhook once when an objective turns violated and once when it is met
//! again. Other members publish no verdict.
//!
//! The facts: the newest WAL upload from the streamer's status; the newest base backup
//! from the catalog snapshot behind the backup metrics (`warden_backup::facts`); every
//! drill record, read here every [`DRILLS_EVERY`] (small records, bounded); the copies
//! from this member's copier (`warden_backup::copies::status`).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;
use warden_backup::catalog::Catalog;
use warden_backup::key::EncryptionKey;
use warden_backup::layout::Layout;
use warden_backup::notify;
use warden_backup::objectives::{
    self as dr, Change, CopyFact, DrillFact, Fact, Transitions, Verdict,
};
use warden_backup::repo::Repository;
use warden_config::Config;

use crate::state::{NodeStatus, Shared};

/// How often the archiver re-judges.
pub const JUDGE_EVERY: Duration = Duration::from_secs(5);
/// How often the drill records are re-read from the repository.
pub const DRILLS_EVERY: Duration = Duration::from_secs(15);
/// Bound on one read of the drill records.
const READ_BOUND: Duration = Duration::from_secs(60);

/// The newest verdicts (empty: not the archiver, or no objectives).
static VERDICTS: Mutex<Vec<Verdict>> = Mutex::new(Vec::new());
/// The judge task's configuration feed; set when it starts.
static FEED: OnceLock<watch::Sender<Option<Arc<Config>>>> = OnceLock::new();

fn verdicts() -> std::sync::MutexGuard<'static, Vec<Verdict>> {
    VERDICTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Called by the supervisor with each report's configuration: starts the judge once
/// per process and hands it the configuration in force.
pub(super) fn follow(shared: &Arc<Shared>, cfg: &Arc<Config>) {
    let feed = FEED.get_or_init(|| {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(judge_loop(shared.clone(), rx));
        tx
    });
    feed.send_if_modified(|c| {
        let same = c.as_ref().is_some_and(|c| Arc::ptr_eq(c, cfg));
        if !same {
            *c = Some(cfg.clone());
        }
        !same
    });
}

async fn judge_loop(shared: Arc<Shared>, rx: watch::Receiver<Option<Arc<Config>>>) {
    let mut transitions = Transitions::default();
    let mut cache = Cache::default();
    let mut tick = tokio::time::interval(JUDGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cfg = rx.borrow().clone();
        let status = shared.snapshot();
        let judged = match cfg {
            Some(cfg) if status.archiver => judge_once(&cfg, &status, &mut cache).await,
            _ => Vec::new(),
        };
        if judged.is_empty() {
            transitions.clear();
        }
        for change in transitions.update(&judged, Utc::now()) {
            match change {
                Change::Violated(v) => {
                    tracing::warn!(objective = v.objective.as_str(), reason = %v.reason, "DR objective violated");
                    notify::alert(
                        notify::Kind::Objective,
                        &format!("{} violated: {}", v.objective.as_str(), v.reason),
                    );
                }
                Change::Recovered(v, since) => {
                    tracing::info!(objective = v.objective.as_str(), reason = %v.reason, "DR objective met again");
                    // The time it turned violated makes each recovery's text its own:
                    // the notifier drops a text it sent in the last ten minutes.
                    notify::recovered(
                        notify::Kind::Objective,
                        &format!(
                            "{} met again (violated since {}): {}",
                            v.objective.as_str(),
                            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            v.reason
                        ),
                    );
                }
            }
        }
        *verdicts() = judged;
    }
}

/// The judge's own repository reads, kept between rounds.
#[derive(Default)]
struct Cache {
    /// The catalog for this configuration and system identifier.
    catalog: Option<(Arc<Config>, String, Catalog)>,
    /// The drill records and when they were read.
    drills: Option<(Instant, Fact<Vec<DrillFact>>)>,
}

/// The catalog of this cluster, opened again when the configuration changes.
fn open_catalog(cfg: &Config, sysid: &str) -> Result<Catalog, String> {
    let b = cfg.backup.as_ref().ok_or("no backup section")?;
    let sysid: u64 = sysid
        .trim()
        .parse()
        .map_err(|_| format!("system identifier {sysid:?} is not a number"))?;
    Ok(Catalog {
        repo: Repository::open(&b.repository).map_err(|e| e.to_string())?,
        layout: Layout::new(&cfg.scope, sysid),
        key: EncryptionKey::load(b.encryption_key_file.as_deref()).map_err(|e| e.to_string())?,
    })
}

impl Cache {
    /// Every drill record, re-read every [`DRILLS_EVERY`] (and when the configuration
    /// or the system identifier changed): they are small, and a drill is rare.
    async fn drills(&mut self, cfg: &Arc<Config>, sysid: String) -> Fact<Vec<DrillFact>> {
        let reopen = self
            .catalog
            .as_ref()
            .is_none_or(|(c, s, _)| !Arc::ptr_eq(c, cfg) || *s != sysid);
        if reopen {
            self.drills = None;
            self.catalog = open_catalog(cfg, &sysid)
                .map_err(|e| tracing::warn!(error = %e, "cannot open the repository to judge the DR objectives"))
                .ok()
                .map(|c| (cfg.clone(), sysid, c));
        }
        if let Some((at, drills)) = &self.drills {
            if at.elapsed() < DRILLS_EVERY {
                return drills.clone();
            }
        }
        let read = match self.catalog.as_ref() {
            Some((_, _, catalog)) => match tokio::time::timeout(READ_BOUND, catalog.drills()).await
            {
                Ok(Ok(d)) => Ok(d
                    .iter()
                    .map(|d| DrillFact {
                        id: d.id.clone(),
                        ok: d.ok,
                        finished_at: d.finished_at,
                        rto_seconds: d.rto_seconds,
                        error: d.error.clone(),
                    })
                    .collect()),
                Ok(Err(e)) => Err(format!("cannot read the drill records: {e}")),
                Err(_) => Err("reading the drill records timed out".to_owned()),
            },
            None => Err("cannot open the repository (see the log)".to_owned()),
        };
        self.drills = Some((Instant::now(), read.clone()));
        read
    }
}

/// The newest base backup from the catalog snapshot `warden_backup::facts` keeps for
/// the backup metrics (re-read every minute and after each local backup).
fn last_backup() -> Fact<Option<DateTime<Utc>>> {
    let f = warden_backup::facts::snapshot();
    match (f.refreshed_at, f.refresh_error) {
        (None, _) => Err("the catalog has not been read yet".to_owned()),
        (Some(_), true) => Err("the last read of the catalog failed (see the log)".to_owned()),
        (Some(_), false) => Ok(f.last_backup),
    }
}

async fn judge_once(cfg: &Arc<Config>, status: &NodeStatus, cache: &mut Cache) -> Vec<Verdict> {
    let Some(b) = cfg.backup.as_ref() else {
        return Vec::new();
    };
    if b.objectives.is_empty() {
        return Vec::new();
    }
    let sysid = status.system_identifier.clone().unwrap_or_default();
    let drills = cache.drills(cfg, sysid).await;
    let last_backup = last_backup();
    let facts = dr::Facts {
        now: Utc::now(),
        newest_wal: newest_upload(status),
        repository_ok: last_backup.as_ref().map(|_| ()).map_err(Clone::clone),
        last_backup,
        backup_noun: "base backup",
        drills,
        copies: Ok(copy_facts(b)),
    };
    dr::judge(&b.objectives, &facts)
}

/// The copies as this member's copier last measured them (it runs on the archiver,
/// where the judge runs): in sync when its last pass succeeded and its lag is within
/// `max_lag`.
fn copy_facts(b: &warden_config::BackupConfig) -> Vec<CopyFact> {
    let status = warden_backup::copies::status();
    b.copies
        .iter()
        .map(|c| {
            let (in_sync, detail) = match status.get(&c.name) {
                None => (
                    Err("the copier has not measured it yet".to_owned()),
                    String::new(),
                ),
                Some(s) => match (&s.error, &s.lag) {
                    (Some(e), _) => (Ok(false), format!("failing: {e}")),
                    (None, None) => (
                        Err("the copier has not measured it yet".to_owned()),
                        String::new(),
                    ),
                    (None, Some(l)) => (
                        Ok(l.seconds <= c.max_lag.as_secs_f64()),
                        format!(
                            "{} object(s) behind, lag {:.1}s, max_lag {}",
                            l.objects,
                            l.seconds,
                            dr::human(c.max_lag)
                        ),
                    ),
                },
            };
            CopyFact {
                name: c.name.clone(),
                in_sync,
                detail,
            }
        })
        .collect()
}

/// When the streamer last put WAL into the repository (a complete segment or the
/// live one).
fn newest_upload(status: &NodeStatus) -> Result<DateTime<Utc>, String> {
    let a = status
        .archive
        .as_ref()
        .ok_or("this member is not streaming WAL into the repository")?;
    let times: [Option<SystemTime>; 2] = [
        a.last_uploaded.as_ref().map(|(_, t)| *t),
        a.last_live_upload.as_ref().map(|(_, t)| *t),
    ];
    times
        .into_iter()
        .flatten()
        .max()
        .map(DateTime::<Utc>::from)
        .ok_or_else(|| "the archiver has not uploaded any WAL since it started".to_owned())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    scope: String,
    name: String,
    objective: String,
}

/// `warden_dr_objective_met{objective=...}`: 1 met, 0 violated, -1 unknown; only on
/// the archiver, only for configured objectives.
pub fn gauges(registry: &mut Registry, scope: &str, name: &str) {
    let v = verdicts();
    if v.is_empty() {
        return;
    }
    let family = Family::<Labels, Gauge>::default();
    for x in v.iter() {
        family
            .get_or_create(&Labels {
                scope: scope.to_owned(),
                name: name.to_owned(),
                objective: x.objective.as_str().to_owned(),
            })
            .set(x.status.gauge());
    }
    registry.register(
        "warden_dr_objective_met",
        "DR objective (backup.objectives) verdict on the archiver: 1 met, 0 violated, -1 unknown",
        family,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use warden_backup::objectives::{Objective, Status};

    #[test]
    fn gauges_only_while_there_are_verdicts() {
        let mut r = Registry::default();
        *verdicts() = Vec::new();
        gauges(&mut r, "demo", "n1");
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        assert!(!out.contains("warden_dr_objective_met"), "{out}");

        *verdicts() = [
            (Objective::Rpo, Status::Met),
            (Objective::MaxBackupAge, Status::Violated),
            (Objective::MinCopies, Status::Unknown),
        ]
        .into_iter()
        .map(|(objective, status)| Verdict {
            objective,
            status,
            target: "1".into(),
            measured: None,
            reason: String::new(),
        })
        .collect();
        let mut r = Registry::default();
        gauges(&mut r, "demo", "n1");
        *verdicts() = Vec::new();
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        for line in [
            "warden_dr_objective_met{scope=\"demo\",name=\"n1\",objective=\"rpo\"} 1",
            "warden_dr_objective_met{scope=\"demo\",name=\"n1\",objective=\"max_backup_age\"} 0",
            "warden_dr_objective_met{scope=\"demo\",name=\"n1\",objective=\"min_copies\"} -1",
        ] {
            assert!(out.contains(line), "{line} not in\n{out}");
        }
    }

    #[test]
    fn the_newest_upload_is_the_later_of_segment_and_live_copy() {
        let mut s = NodeStatus::new("demo".into(), "n1".into(), serde_json::Map::new());
        assert!(newest_upload(&s).is_err());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        s.archive = Some(warden_backup::archiver::stream::Status::default());
        assert!(newest_upload(&s).unwrap_err().contains("not uploaded"));
        let a = s.archive.as_mut().unwrap();
        a.last_uploaded = Some(("seg".into(), t0));
        a.last_live_upload = Some(("seg2".into(), t0 + Duration::from_secs(5)));
        assert_eq!(
            newest_upload(&s).unwrap(),
            DateTime::<Utc>::from(t0 + Duration::from_secs(5))
        );
    }
}
