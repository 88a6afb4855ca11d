//! Reading the facts a report needs — the DCS view (the same read as `list`), the
//! repository's catalog (the same as `backup list`), the newest live WAL copy — and
//! putting them in a [`Report`]. Nothing here writes anywhere.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::super::members::{self, MemberRow, Wal};
use super::super::Ctl;
use warden_backup::catalog::{BackupRecord, Catalog, DrillRecord, DumpRecord, RdbRecord};
use warden_backup::objectives::{self as dr, human, CopyFact, DrillFact, Verdict};
use warden_config::{BackupConfig, Objectives, Retention};
use warden_consensus::transitions::{self, Transition, TransitionKind};
use warden_consensus::Cluster;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub service: Service,
    /// The objectives as configured (`null`: not set, not judged).
    pub objectives: ObjectivesView,
    pub schedule: Vec<ScheduleRow>,
    pub facts: Vec<Fact>,
    pub verdicts: Vec<Verdict>,
    /// Some objective is violated (the exit status is then 3).
    pub violated: bool,
    pub procedures: Vec<Procedure>,
    /// `warden/transitions` as stored: the recent promotions, oldest first.
    pub transitions: Vec<Transition>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub scope: String,
    pub namespace: String,
    pub engine: String,
    pub system_identifier: String,
    pub leader: Option<String>,
    pub standby_cluster: bool,
    pub archiver: Option<String>,
    pub repository: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub name: String,
    pub host: String,
    pub role: String,
    pub state: String,
    pub timeline: Option<u32>,
    /// Bytes behind the leader's last position (replicas; `null`: not published).
    pub lag_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ObjectivesView {
    pub rpo: Option<String>,
    pub rto: Option<String>,
    pub max_backup_age: Option<String>,
    pub max_drill_age: Option<String>,
    pub min_copies: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRow {
    pub component: String,
    pub method: String,
    pub frequency: String,
    pub retention: String,
    pub location: String,
}

/// A measured fact and when it was true.
#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    pub name: String,
    pub value: String,
    /// When the fact was measured or the event happened (`null`: never happened).
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Procedure {
    pub scenario: String,
    pub summary: String,
    pub commands: Vec<String>,
}

/// What the catalog holds, each list oldest first.
struct Catalogued {
    backups: Vec<BackupRecord>,
    dumps: Vec<DumpRecord>,
    rdbs: Vec<RdbRecord>,
    drills: Vec<DrillRecord>,
}

async fn read_catalog(catalog: &Catalog) -> Result<Catalogued, String> {
    let where_ = catalog.repo.url().to_string();
    let err =
        |what: &str, e: &dyn std::fmt::Display| format!("cannot read the {what} in {where_}: {e}");
    Ok(Catalogued {
        backups: catalog.backups().await.map_err(|e| err("backups", &e))?,
        dumps: catalog.dumps().await.map_err(|e| err("dumps", &e))?,
        rdbs: catalog.rdbs().await.map_err(|e| err("RDB snapshots", &e))?,
        drills: catalog.drills().await.map_err(|e| err("drills", &e))?,
    })
}

fn objectives_view(o: &Objectives) -> ObjectivesView {
    ObjectivesView {
        rpo: o.rpo.map(human),
        rto: o.rto.map(human),
        max_backup_age: o.max_backup_age.map(human),
        max_drill_age: o.max_drill_age.map(human),
        min_copies: o.min_copies,
    }
}

fn retention_text(r: &Retention) -> String {
    if r.keeps_everything() {
        return "keep everything (no backup.retention rule)".into();
    }
    [
        ("keep_last", r.keep_last),
        ("keep_daily", r.keep_daily),
        ("keep_weekly", r.keep_weekly),
        ("keep_monthly", r.keep_monthly),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|n| format!("{k} {n}")))
    .collect::<Vec<_>>()
    .join(", ")
}

fn cron_text(c: Option<&warden_config::CronSchedule>, none: &str) -> String {
    c.map_or_else(|| none.to_owned(), |c| format!("cron \"{}\" (UTC)", c.0))
}

fn schedule(
    cfg: &BackupConfig,
    engine: &str,
    repo_url: &str,
    copy_urls: &[String],
) -> Vec<ScheduleRow> {
    let retention = retention_text(&cfg.retention);
    let row =
        |component: &str, method: String, frequency: String, retention: String, location: &str| {
            ScheduleRow {
                component: component.to_owned(),
                method,
                frequency,
                retention,
                location: location.to_owned(),
            }
        };
    let mut rows = Vec::new();
    if engine == "redis" {
        rows.push(row(
            "RDB snapshots",
            "RDB snapshot taken from a replica by the archiver, encrypted".into(),
            "on demand (wardenctl backup create)".into(),
            retention,
            repo_url,
        ));
    } else {
        rows.push(row(
            "Base backups",
            "physical base backup by the archiver (zstd, XChaCha20-Poly1305)".into(),
            cron_text(cfg.schedule.as_ref(), "on demand only (no backup.schedule)"),
            retention.clone(),
            repo_url,
        ));
        let live = cfg.partial_upload_interval.map_or_else(
            || "complete 16 MiB segments only (partial_upload_interval off)".to_owned(),
            |d| format!("the live segment every {}", human(d)),
        );
        rows.push(row(
            "WAL archive",
            "continuous streaming (pg_receivewal on the member holding warden/archiver)".into(),
            format!("continuous; {live}"),
            "the WAL the kept base backups need".into(),
            repo_url,
        ));
        if let Some(d) = &cfg.dump {
            let dbs = if d.databases.is_empty() {
                "every database".to_owned()
            } else {
                d.databases.join(", ")
            };
            rows.push(row(
                "Logical dumps",
                format!("pg_dump -Fc of {dbs}"),
                cron_text(Some(&d.schedule), ""),
                retention,
                repo_url,
            ));
        }
        rows.push(row(
            "Restore drills",
            format!(
                "restore the newest backup, replay WAL, {} check(s)",
                cfg.drill.checks.len()
            ),
            cron_text(
                cfg.drill.schedule.as_ref(),
                "on demand only (wardenctl drill)",
            ),
            "every drill record is kept".into(),
            repo_url,
        ));
    }
    for (c, url) in cfg.copies.iter().zip(copy_urls) {
        rows.push(row(
            &format!("Copy {}", c.name),
            "asynchronous copy of every committed object by the archiver".into(),
            format!("continuous; alert beyond {} behind", human(c.max_lag)),
            retention_text(&c.retention),
            url,
        ));
    }
    rows
}

fn lag_of(w: Wal) -> Option<u64> {
    match w {
        Wal::At { lag, .. } => Some(lag),
        Wal::None | Wal::Unknown => None,
    }
}

fn member_views(rows: &[MemberRow]) -> Vec<MemberView> {
    rows.iter()
        .map(|r| MemberView {
            name: r.name.clone(),
            host: match r.port {
                Some(p) => format!("{}:{p}", r.host),
                None => r.host.clone(),
            },
            role: r.role.clone(),
            state: r.state.clone(),
            timeline: r.timeline,
            lag_bytes: lag_of(r.replay).or(lag_of(r.receive)),
        })
        .collect()
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The newest promotion `/history` records (Patroni's and older Warden's promotions
/// too): when and onto which timeline, without a duration or a cause.
fn last_history_promotion(cluster: &Cluster) -> Fact {
    let name = "last promotion in /history".to_owned();
    match cluster.history.last() {
        None => Fact {
            name,
            value: "none recorded".into(),
            at: None,
        },
        Some(h) => Fact {
            name,
            value: format!(
                "timeline {} to {} ({})",
                h.timeline + 1,
                h.new_leader.as_deref().unwrap_or("?"),
                h.reason
            ),
            at: h.timestamp.as_deref().and_then(parse_time),
        },
    }
}

fn secs(s: f64) -> String {
    format!("{s:.1}s")
}

/// The newest transition of `kind` in `warden/transitions`, with what its new leader
/// measured.
pub(super) fn last_transition(list: &[Transition], kind: TransitionKind) -> Fact {
    let name = match kind {
        TransitionKind::Failover => "last failover",
        TransitionKind::Switchover => "last switchover",
        _ => "last region failover (cluster promotion)",
    }
    .to_owned();
    let Some(t) = transitions::last_of(list, kind) else {
        return Fact {
            name,
            value: "none recorded (warden/transitions)".into(),
            at: None,
        };
    };
    let timeline = t
        .timeline
        .map(|tl| format!(" (timeline {tl})"))
        .unwrap_or_default();
    let from = t.from.as_deref().unwrap_or("?");
    let took = t.detected_to_promoted.map(secs);
    let seen = t
        .detected_at
        .as_deref()
        .map(|d| format!(" at {d}"))
        .unwrap_or_default();
    let value = match kind {
        TransitionKind::Failover => format!(
            "{from} to {}{timeline}: promoted {} after it saw the leader key vacant{seen}; \
             the old leader failed up to its ttl ({}) before the key expired",
            t.to,
            took.as_deref().unwrap_or("?"),
            t.ttl.map_or_else(|| "?".to_owned(), |s| format!("{s}s")),
        ),
        TransitionKind::Switchover => format!(
            "{from} to {}{timeline}: promoted {} after the failover key named it{seen}",
            t.to,
            took.as_deref().unwrap_or("?"),
        ),
        _ => {
            let lag = match (t.lag_bytes, t.lag_seconds) {
                (None, None) => "its lag behind the remote unknown".to_owned(),
                (b, s) => format!(
                    "{} bytes / {} behind the remote",
                    b.map_or_else(|| "?".to_owned(), |b| b.to_string()),
                    s.map_or_else(|| "?".to_owned(), secs)
                ),
            };
            format!(
                "{} promoted{timeline} {} after the standby_cluster section was removed{seen} \
                 (following {from}); {lag} then",
                t.to,
                took.as_deref().unwrap_or("?"),
            )
        }
    };
    Fact {
        name,
        value,
        at: parse_time(&t.at),
    }
}

fn drill_fact(d: &DrillRecord) -> DrillFact {
    DrillFact {
        id: d.id.clone(),
        ok: d.ok,
        finished_at: d.finished_at,
        rto_seconds: d.rto_seconds,
        error: d.error.clone(),
    }
}

fn secs_text(s: Option<f64>) -> String {
    s.map_or_else(|| "not measured".to_owned(), |s| format!("{s:.1}s"))
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    format!("{} ago", human((now - t).to_std().unwrap_or_default()))
}

/// Facts about the repository's contents.
fn catalog_facts(now: DateTime<Utc>, c: &Result<Catalogued, String>, out: &mut Vec<Fact>) {
    let c = match c {
        Ok(c) => c,
        Err(e) => {
            out.push(Fact {
                name: "catalog".into(),
                value: format!("unreadable: {e}"),
                at: Some(now),
            });
            return;
        }
    };
    let newest = |name: &str, found: Option<(String, DateTime<Utc>)>| Fact {
        name: name.into(),
        value: found.as_ref().map_or_else(
            || "none".into(),
            |(id, t)| format!("{id}, {}", ago(now, *t)),
        ),
        at: found.map(|(_, t)| t),
    };
    out.push(newest(
        "newest base backup",
        c.backups
            .iter()
            .max_by_key(|b| b.finished_at)
            .map(|b| (b.id.clone(), b.finished_at)),
    ));
    if !c.dumps.is_empty() {
        out.push(newest(
            "newest dump",
            c.dumps
                .iter()
                .max_by_key(|d| d.finished_at)
                .map(|d| (d.id.clone(), d.finished_at)),
        ));
    }
    if !c.rdbs.is_empty() {
        out.push(newest(
            "newest RDB snapshot",
            c.rdbs
                .iter()
                .max_by_key(|r| r.finished_at)
                .map(|r| (r.id.clone(), r.finished_at)),
        ));
    }
    let last = c.drills.iter().max_by_key(|d| d.finished_at);
    out.push(Fact {
        name: "last drill".into(),
        value: last.map_or_else(
            || "none recorded".into(),
            |d| {
                format!(
                    "{} {}, RTO {}, RPO {}{}",
                    d.id,
                    if d.ok { "passed" } else { "FAILED" },
                    secs_text(d.rto_seconds),
                    secs_text(d.rpo_seconds),
                    d.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            },
        ),
        at: last.map(|d| d.finished_at),
    });
}

fn rows_facts(now: DateTime<Utc>, members: &[MemberView], out: &mut Vec<Fact>) {
    let sync: Vec<&str> = members
        .iter()
        .filter(|m| m.role.contains("Sync") || m.role.contains("Quorum"))
        .map(|m| m.name.as_str())
        .collect();
    out.push(Fact {
        name: "synchronous standbys".into(),
        value: if sync.is_empty() {
            "none (asynchronous replication)".into()
        } else {
            sync.join(", ")
        },
        at: Some(now),
    });
    for m in members.iter().filter(|m| !m.role.contains("Leader")) {
        out.push(Fact {
            name: format!("replica {} lag", m.name),
            value: match m.lag_bytes {
                Some(b) => format!("{b} bytes behind the leader ({})", m.state),
                None => format!("unknown: no position published ({})", m.state),
            },
            at: Some(now),
        });
    }
}

fn engine_of(cluster: &Cluster) -> &'static str {
    let redis = cluster
        .members
        .values()
        .any(|m| m.value.conn_url.starts_with("redis"));
    if redis {
        "redis"
    } else {
        "postgresql"
    }
}

impl Ctl<'_> {
    /// Everything a report says, read now.
    pub(super) async fn gather_report(&mut self, cluster_name: Option<&str>) -> Result<Report> {
        let scope = self.config.scope_for(cluster_name)?;
        let (catalog, cfg) = self.backup_catalog(Some(&scope)).await?;
        let view = self.read_existing(&scope).await?;
        let now = Utc::now();
        let repo_url = catalog.repo.url().to_string();
        let engine = engine_of(&view.cluster);
        let catalogued = read_catalog(&catalog).await;
        let redis = engine == "redis";
        let newest_wal = match dr::newest_live_upload(&catalog).await {
            // Redis has no WAL archive: a site loss loses what came after the newest
            // snapshot, which max_backup_age judges.
            _ if redis => Err("a Redis cluster has no WAL archive; its RPO is the newest RDB \
                               snapshot's age (max_backup_age)"
                .to_owned()),
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(
                "no live WAL copy in the repository to date the newest WAL (backup.partial_upload_interval \
                 is off, or a segment was completed this instant: run again)"
                    .to_owned(),
            ),
            Err(e) => Err(e),
        };
        let copy_urls: Vec<String> = cfg
            .copies
            .iter()
            .map(|c| {
                warden_backup::repo::Repository::open(&c.repository)
                    .map_or_else(|e| format!("(cannot open: {e})"), |r| r.url().to_string())
            })
            .collect();
        let copies = self.copy_facts(&cfg, &catalog).await;
        let rows = members::rows(&view.cluster);
        let member_list = member_views(&rows);
        let facts_in = dr::Facts {
            now,
            newest_wal: newest_wal.clone(),
            last_backup: catalogued
                .as_ref()
                .map(|c| {
                    if redis {
                        c.rdbs.iter().map(|r| r.finished_at).max()
                    } else {
                        c.backups.iter().map(|b| b.finished_at).max()
                    }
                })
                .map_err(Clone::clone),
            backup_noun: if redis { "RDB snapshot" } else { "base backup" },
            drills: catalogued
                .as_ref()
                .map(|c| c.drills.iter().map(drill_fact).collect())
                .map_err(Clone::clone),
            repository_ok: catalogued.as_ref().map(|_| ()).map_err(Clone::clone),
            copies: copies.clone(),
        };
        let verdicts = dr::judge(&cfg.objectives, &facts_in);
        let mut facts = Vec::new();
        catalog_facts(now, &catalogued, &mut facts);
        facts.push(Fact {
            name: "archive RPO now".into(),
            value: match &newest_wal {
                Ok(t) => format!("{} (age of the newest WAL in the repository)", ago(now, *t)),
                Err(e) => format!("unknown: {e}"),
            },
            at: newest_wal.as_ref().ok().copied(),
        });
        match &copies {
            Ok(list) => {
                for c in list {
                    facts.push(Fact {
                        name: format!("copy {}", c.name),
                        value: match &c.in_sync {
                            Ok(true) => format!("in sync: {}", c.detail),
                            Ok(false) => format!("NOT in sync: {}", c.detail),
                            Err(e) => format!("unknown: {e}"),
                        },
                        at: Some(now),
                    });
                }
            }
            Err(e) => facts.push(Fact {
                name: "copies".into(),
                value: format!("unknown: {e}"),
                at: Some(now),
            }),
        }
        rows_facts(now, &member_list, &mut facts);
        for kind in [
            TransitionKind::Failover,
            TransitionKind::Switchover,
            TransitionKind::ClusterPromotion,
        ] {
            facts.push(last_transition(&view.cluster.transitions, kind));
        }
        facts.push(last_history_promotion(&view.cluster));
        let (job_rows, job_facts) = crate::stack_jobs::dr_rows(&cfg, &scope, &repo_url).await;
        facts.extend(job_facts);
        let service = Service {
            scope: scope.clone(),
            namespace: self.config.namespace.clone(),
            engine: engine.to_owned(),
            system_identifier: catalog.layout.system_identifier().to_string(),
            leader: view.cluster.leader_name().map(str::to_owned),
            standby_cluster: view.cluster.dynamic_config().is_standby_cluster(),
            archiver: view.cluster.archiver.clone(),
            repository: repo_url.clone(),
            members: member_list,
        };
        let procedures = self.procedures(&service, &cfg, &view.cluster);
        Ok(Report {
            generated_at: now,
            schedule: [schedule(&cfg, engine, &repo_url, &copy_urls), job_rows].concat(),
            objectives: objectives_view(&cfg.objectives),
            violated: dr::any_violated(&verdicts),
            transitions: view.cluster.transitions.clone(),
            verdicts,
            facts,
            service,
            procedures,
        })
    }

    /// Each configured copy, listed beside the main repository: in sync when the
    /// oldest committed object it lacks (`warden_backup::copies::lag`) is within its
    /// `max_lag`. A copy that cannot be listed is not in sync (it could not serve a
    /// restore either).
    async fn copy_facts(
        &mut self,
        cfg: &BackupConfig,
        catalog: &Catalog,
    ) -> Result<Vec<CopyFact>, String> {
        if cfg.copies.is_empty() {
            return Ok(Vec::new());
        }
        let cluster = catalog.layout.cluster();
        let main = catalog
            .repo
            .list(&cluster)
            .await
            .map_err(|e| format!("cannot list the repository: {e}"))?;
        let mut out = Vec::new();
        for c in &cfg.copies {
            let listed = match warden_backup::repo::Repository::open(&c.repository) {
                Ok(r) => r.list(&cluster).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let (in_sync, detail) = match listed {
                Err(e) => (Ok(false), format!("cannot list it: {e}")),
                Ok(copy) => {
                    let lag = warden_backup::copies::lag(&cluster, &main, &copy, Utc::now());
                    (
                        Ok(lag.seconds <= c.max_lag.as_secs_f64()),
                        format!(
                            "{} object(s) behind, lag {:.1}s, max_lag {}",
                            lag.objects,
                            lag.seconds,
                            human(c.max_lag)
                        ),
                    )
                }
            };
            out.push(CopyFact {
                name: c.name.clone(),
                in_sync,
                detail,
            });
        }
        Ok(out)
    }

    /// The recovery procedures, with this cluster's names in the commands.
    fn procedures(&self, s: &Service, cfg: &BackupConfig, cluster: &Cluster) -> Vec<Procedure> {
        let c = self
            .config
            .file
            .as_ref()
            .map_or_else(|| "CONFIG".to_owned(), |p| p.display().to_string());
        let ctl = format!("wardenctl -c {c}");
        let scope = &s.scope;
        let leader = s.leader.clone().unwrap_or_else(|| "LEADER".into());
        let candidate = s
            .members
            .iter()
            .find(|m| !m.role.contains("Leader") && m.state == "streaming")
            .map_or_else(|| "CANDIDATE".into(), |m| m.name.clone());
        let ttl = cluster.dynamic_config().ttl;
        let mut out = vec![
            Procedure {
                scenario: "Node failure".into(),
                summary: format!(
                    "Automatic: when the leader's lease expires (ttl {ttl} s) the healthiest \
                     replica takes the leader key and is promoted; the old node rejoins as a \
                     replica (pg_rewind) when it comes back. Check, and rebuild a broken member:"
                ),
                commands: vec![
                    format!("{ctl} list {scope}"),
                    format!("{ctl} history {scope}"),
                    format!("{ctl} reinit {scope} MEMBER"),
                ],
            },
            Procedure {
                scenario: "Planned switchover".into(),
                summary: "Hand the leader role to a streaming replica (maintenance, upgrades):"
                    .into(),
                commands: vec![format!(
                    "{ctl} switchover {scope} --leader {leader} --candidate {candidate} --force"
                )],
            },
        ];
        out.push(Procedure {
            scenario: "Site failure".into(),
            summary: if s.standby_cluster {
                "This cluster is a standby cluster: when the primary site is lost, promote it \
                 here (its standby leader becomes a primary within seconds):"
                    .into()
            } else {
                "Promote the standby cluster on the other site (a cluster with \
                 bootstrap.dcs.standby_cluster following this one, by streaming or from this \
                 repository), with that site's config, and point clients at it; once this \
                 site is back, make it a standby of the new primary:"
                    .into()
            },
            commands: if s.standby_cluster {
                vec![format!("{ctl} promote-cluster {scope}")]
            } else {
                vec![
                    "wardenctl -c STANDBY_SITE_CONFIG promote-cluster STANDBY_SCOPE".into(),
                    format!(
                        "{ctl} demote-cluster {scope} --host NEW_PRIMARY_HOST --port NEW_PRIMARY_PORT"
                    ),
                ]
            },
        });
        out.push(if s.engine == "redis" {
            redis_restore(&ctl, s, cfg)
        } else {
            pitr(&ctl, s, cfg)
        });
        out
    }
}

/// Corruption on PostgreSQL: point-in-time recovery from the repository or a copy.
fn pitr(ctl: &str, s: &Service, cfg: &BackupConfig) -> Procedure {
    let target = "--target-time 'YYYY-MM-DD HH:MM:SS+00' --to /path/to/new/data";
    let mut commands = vec![format!("{ctl} restore {target}"), format!("{ctl} drill")];
    for copy in &cfg.copies {
        commands.push(format!("{ctl} restore --repository {} {target}", copy.name));
    }
    Procedure {
        scenario: "Corruption or a bad change (point-in-time recovery)".into(),
        summary: format!(
            "Restore the newest backup before the damage into a new directory and replay \
             the archived WAL up to a time just before it (system identifier {}); to \
             rebuild the whole cluster from it instead, bootstrap a new cluster with \
             bootstrap.method: warden_restore and target_time (docs/backups.md). The \
             copies hold the same objects when the repository itself is lost:",
            s.system_identifier
        ),
        commands,
    }
}

/// Corruption on Redis: no WAL, so the newest RDB snapshot before the damage.
fn redis_restore(ctl: &str, s: &Service, cfg: &BackupConfig) -> Procedure {
    let mut commands = vec![
        format!("{ctl} backup list {}", s.scope),
        format!("{ctl} restore --backup ID --data-dir /path/to/new/dir"),
    ];
    for copy in &cfg.copies {
        commands.push(format!(
            "{ctl} restore --repository {} --backup ID --data-dir /path/to/new/dir",
            copy.name
        ));
    }
    Procedure {
        scenario: "Corruption or a bad change (restore a snapshot)".into(),
        summary: "Redis has no WAL archive: restore the newest RDB snapshot taken before \
                  the damage (its id from the list) into a new directory; what was written \
                  after it is lost:"
            .into(),
        commands,
    }
}
