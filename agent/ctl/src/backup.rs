//! `wardenctl backup create` (asks the archiver's REST API) and `wardenctl backup
//! list` (reads the catalog in the repository directly, with the `backup` section of
//! the `-c` config and the system identifier from the DCS). A Redis cluster's RDB
//! snapshots go the same ways: `create` asks the archiver (which takes a snapshot),
//! `list` shows them, `verify` checks them (the cluster's `initialize` value stands
//! for the system identifier).

use super::args::{BackupArgs, BackupCommand, BackupCreateArgs, BackupListArgs, BackupVerifyArgs};
use super::commands::timestamp;
use super::output::{Align, TextTable};
use super::Ctl;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::time::Duration;
use warden_api::client::Method;
use warden_backup::catalog::{BackupRecord, Catalog, DrillRecord, DumpRecord, RdbRecord};
use warden_config::BackupConfig;

/// Consecutive failed status reads before `create --wait` gives up.
const MAX_STATUS_FAILURES: u32 = 30;
/// A progress line at least this often while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `1.5 GiB`, `640 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn seconds(r: &BackupRecord) -> f64 {
    (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0
}

/// One backup as `backup list --json` shows it (without the per-file list).
pub fn backup_summary(r: &BackupRecord) -> Value {
    json!({
        "id": r.id,
        "member": r.member,
        "pg_version": r.pg_version,
        "timeline": r.timeline,
        "start_lsn": r.start_lsn,
        "end_lsn": r.end_lsn,
        "start_wal": r.start_wal,
        "end_wal": r.end_wal,
        "size": r.size,
        "stored_size": r.stored_size,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "duration_seconds": seconds(r),
        "parts": r.parts.len(),
        "files": r.file_count.unwrap_or(r.files.len() as u64),
    })
}

fn dump_summary(d: &DumpRecord) -> Value {
    json!({
        "id": d.id,
        "member": d.member,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "databases": d.databases.iter().map(|db| json!({
            "name": db.name, "size": db.size, "stored_size": db.stored_size,
        })).collect::<Vec<_>>(),
    })
}

/// One RDB snapshot as `backup list --json` shows it (without the parts).
pub fn rdb_summary(r: &RdbRecord) -> Value {
    json!({
        "id": r.id,
        "member": r.member,
        "source": r.source,
        "redis_version": r.redis_version,
        "rdb_version": r.rdb_version,
        "crc64": format!("{:016x}", r.crc64),
        "size": r.size,
        "stored_size": r.stored_size,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "duration_seconds": (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0,
        "parts": r.parts.len(),
    })
}

/// The RDB snapshots table.
pub fn rdbs_table(title: &str, rdbs: &[RdbRecord]) -> String {
    let mut t = TextTable {
        title: title.to_string(),
        columns: [
            "ID", "Member", "Source", "Redis", "CRC-64", "Size", "Stored", "Duration",
        ]
        .map(String::from)
        .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        rows: Vec::new(),
    };
    for r in rdbs {
        t.rows.push(vec![
            r.id.clone(),
            r.member.clone(),
            r.source.clone(),
            r.redis_version.clone().unwrap_or_else(|| "-".into()),
            format!("{:016x}", r.crc64),
            human_bytes(r.size),
            human_bytes(r.stored_size),
            format!(
                "{:.1}s",
                (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0
            ),
        ]);
    }
    t.render()
}

/// The backups table.
pub fn backups_table(title: &str, backups: &[BackupRecord]) -> String {
    let mut t = TextTable {
        title: title.to_string(),
        columns: [
            "ID",
            "Member",
            "TL",
            "Start LSN",
            "End LSN",
            "Size",
            "Stored",
            "Duration",
        ]
        .map(String::from)
        .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        rows: Vec::new(),
    };
    for r in backups {
        t.rows.push(vec![
            r.id.clone(),
            r.member.clone(),
            r.timeline.to_string(),
            r.start_lsn.clone(),
            r.end_lsn.clone(),
            human_bytes(r.size),
            human_bytes(r.stored_size),
            format!("{:.1}s", seconds(r)),
        ]);
    }
    t.render()
}

impl Ctl<'_> {
    pub async fn backup(&mut self, a: BackupArgs) -> Result<()> {
        match a.command {
            BackupCommand::Create(a) => self.backup_create(a).await,
            BackupCommand::List(a) => self.backup_list(a).await,
            BackupCommand::Verify(a) => self.verify_backups_or_snapshots(a).await,
            BackupCommand::Delete(a) => self.backup_delete(a).await,
        }
    }

    /// Asks the member holding the archiver key to start a `kind` job (`backup` or
    /// `dump`, `body` for `POST /backup`). Returns the archiver, its API URL and the
    /// id it started.
    pub(super) async fn start_on_archiver(
        &mut self,
        cluster_name: Option<&str>,
        kind: &str,
        body: Value,
    ) -> Result<(String, String, String)> {
        let scope = self.config.scope_for(cluster_name)?;
        let view = self.read_existing(&scope).await?;
        let archiver = view.cluster.archiver.clone().ok_or_else(|| {
            anyhow!(
                "no member holds the archiver key ({}warden/archiver): {kind}s run on \
                 the archiver; are the members configured with a backup section, and is one \
                 of them running?",
                view.keys.prefix()
            )
        })?;
        let api_url = view
            .cluster
            .member(&archiver)
            .map(|m| m.api_url.clone())
            .ok_or_else(|| anyhow!("the archiver {archiver} has no member key"))?;
        let resp = self
            .api
            .call(
                Method::POST,
                &archiver,
                &api_url,
                "backup",
                Some(&body),
                None,
            )
            .await
            .with_context(|| format!("asking {archiver} to start a {kind}"))?;
        if resp.status != 202 {
            bail!("{}", super::api::failed_line(kind, &archiver, &resp));
        }
        let started: Value = serde_json::from_slice(&resp.body)
            .with_context(|| format!("{archiver} answered with something that is not JSON"))?;
        let id = started["id"]
            .as_str()
            .ok_or_else(|| anyhow!("{archiver} did not say which {kind} it started"))?
            .to_string();
        Ok((archiver, api_url, id))
    }

    async fn backup_create(&mut self, a: BackupCreateArgs) -> Result<()> {
        if a.dump {
            return self.dump_create(a).await;
        }
        let (archiver, api_url, id) = self
            .start_on_archiver(a.cluster_name.as_deref(), "backup", json!({}))
            .await?;
        if a.no_wait {
            if a.json {
                self.io
                    .println(json!({"id": id, "member": archiver, "status": "started"}))?;
            } else {
                self.io
                    .println(format!("Backup {id} started on {archiver}"))?;
            }
            return Ok(());
        }
        if !a.json {
            self.io
                .println(format!("{} Backup {id} started on {archiver}", timestamp()))?;
        }
        let outcome = self
            .follow_backup(&archiver, &api_url, &id, !a.json)
            .await?;
        let ok = outcome["ok"].as_bool() == Some(true);
        if a.json {
            let mut v = outcome.clone();
            v["member"] = archiver.clone().into();
            self.io.println(v)?;
        }
        if !ok {
            bail!(
                "backup {id} on {archiver} failed: {}",
                outcome["error"].as_str().unwrap_or("(no reason given)")
            );
        }
        if !a.json {
            self.io.println(format!(
                "{} Backup {id} committed on {archiver}: {} in {:.1}s ({:.1} MiB/s)",
                timestamp(),
                human_bytes(outcome["bytes"].as_u64().unwrap_or(0)),
                outcome["seconds"].as_f64().unwrap_or(0.0),
                outcome["mb_per_s"].as_f64().unwrap_or(0.0),
            ))?;
        }
        Ok(())
    }

    /// Polls `GET /backup` until backup `id` ended; returns its outcome.
    async fn follow_backup(
        &mut self,
        member: &str,
        api_url: &str,
        id: &str,
        show: bool,
    ) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + self.timing.reinit_deadline;
        let mut failures = 0u32;
        let mut last_phase = String::new();
        let mut last_line = tokio::time::Instant::now();
        loop {
            match self
                .api
                .call(Method::GET, member, api_url, "backup", None, None)
                .await
            {
                Ok(r) if r.status == 200 => {
                    failures = 0;
                    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    if v["last"]["id"].as_str() == Some(id) {
                        return Ok(v["last"].clone());
                    }
                    if v["id"].as_str() == Some(id) {
                        let phase = v["phase"].as_str().unwrap_or("").to_string();
                        if show && (phase != last_phase || last_line.elapsed() >= PROGRESS_EVERY) {
                            self.io.println(format!(
                                "{} {id}: {phase}, {} streamed, {:.0}s, {:.1} MiB/s",
                                timestamp(),
                                human_bytes(v["bytes"].as_u64().unwrap_or(0)),
                                v["elapsed_seconds"].as_f64().unwrap_or(0.0),
                                v["mb_per_s"].as_f64().unwrap_or(0.0),
                            ))?;
                            last_phase = phase;
                            last_line = tokio::time::Instant::now();
                        }
                    } else {
                        bail!(
                            "{member} no longer reports backup {id} (the agent restarted?); \
                             check `wardenctl backup list` and the agent's log"
                        );
                    }
                }
                Ok(r) => {
                    failures += 1;
                    if failures >= MAX_STATUS_FAILURES {
                        bail!("{}", super::api::failed_line("backup status", member, &r));
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_STATUS_FAILURES {
                        bail!("cannot read the backup status from {member}: {e}");
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "backup {id} on {member} did not finish within {}; it may still be \
                     running (GET {api_url} /backup)",
                    humantime::format_duration(self.timing.reinit_deadline)
                );
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }

    async fn backup_list(&mut self, a: BackupListArgs) -> Result<()> {
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        let (catalog, cfg) = self
            .backup_catalog_from(Some(&scope), a.repository.as_deref())
            .await?;
        let sysid = catalog.layout.system_identifier();
        let where_ = catalog.repo.url().to_string();
        let backups = catalog
            .backups()
            .await
            .with_context(|| format!("reading the backups in {where_}"))?;
        let dumps = catalog
            .dumps()
            .await
            .with_context(|| format!("reading the dumps in {where_}"))?;
        let rdbs = catalog
            .rdbs()
            .await
            .with_context(|| format!("reading the RDB snapshots in {where_}"))?;
        let drill: Option<DrillRecord> = catalog
            .drills()
            .await
            .with_context(|| format!("reading the drill results in {where_}"))?
            .pop();
        // Listing the main repository: how far each copy is behind it.
        let copies = if a.repository.as_deref().is_none_or(|r| r == "main") {
            copies_lag(&catalog, &cfg).await
        } else {
            Vec::new()
        };
        // `backup.jobs` live in the main repository only.
        let (jobs, jobs_text) = if a.repository.as_deref().is_none_or(|r| r == "main") {
            crate::stack_jobs::jobs_overview(&cfg, &scope).await
        } else {
            (json!([]), String::new())
        };
        if a.json {
            self.io.println(serde_json::to_string_pretty(&json!({
                "cluster": scope,
                "system_identifier": sysid.to_string(),
                "repository": where_,
                "copies": copies.iter().map(CopyLag::json).collect::<Vec<_>>(),
                "backups": backups.iter().map(backup_summary).collect::<Vec<_>>(),
                "dumps": dumps.iter().map(dump_summary).collect::<Vec<_>>(),
                "rdbs": rdbs.iter().map(rdb_summary).collect::<Vec<_>>(),
                "last_drill": drill,
                "jobs": jobs,
            }))?)?;
            return Ok(());
        }
        if !rdbs.is_empty() && backups.is_empty() {
            // A Redis cluster: its snapshots are its backups.
            let title = format!("RDB snapshots: {scope} ({where_})");
            self.io.println(rdbs_table(&title, &rdbs))?;
        } else {
            let title = format!("Backups: {scope} ({where_})");
            self.io.println(backups_table(&title, &backups))?;
            if backups.is_empty() {
                self.io.println("No committed base backup.")?;
            }
            if !rdbs.is_empty() {
                self.io.println(rdbs_table("RDB snapshots", &rdbs))?;
            }
        }
        if !dumps.is_empty() {
            let mut t = TextTable {
                title: "Dumps".into(),
                columns: ["ID", "Member", "Databases", "Size", "Stored"]
                    .map(String::from)
                    .to_vec(),
                align: vec![
                    Align::Left,
                    Align::Left,
                    Align::Left,
                    Align::Right,
                    Align::Right,
                ],
                rows: Vec::new(),
            };
            for d in &dumps {
                t.rows.push(vec![
                    d.id.clone(),
                    d.member.clone(),
                    d.databases
                        .iter()
                        .map(|db| db.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    human_bytes(d.databases.iter().map(|db| db.size).sum()),
                    human_bytes(d.databases.iter().map(|db| db.stored_size).sum()),
                ]);
            }
            self.io.println(t.render())?;
        }
        if !copies.is_empty() {
            self.io.println(copies_table(&copies))?;
        }
        if let Some(d) = drill {
            self.io.println(format!(
                "Last drill: {} {} (backup {}){}",
                d.id,
                if d.ok { "passed" } else { "FAILED" },
                d.backup_id.as_deref().unwrap_or("-"),
                d.error.map(|e| format!(": {e}")).unwrap_or_default()
            ))?;
        }
        if !jobs_text.is_empty() {
            self.io.println(jobs_text.trim_end())?;
        }
        Ok(())
    }
}

impl Ctl<'_> {
    /// `backup verify`: a cluster with RDB snapshots and no base backup (Redis) has its
    /// snapshots verified (one by id, `latest`, or all); any other the PostgreSQL way.
    async fn verify_backups_or_snapshots(&mut self, a: BackupVerifyArgs) -> Result<()> {
        let (catalog, _) = self
            .backup_catalog_from(a.cluster.as_deref(), a.repository.as_deref())
            .await?;
        let where_ = catalog.repo.url().to_string();
        let rdbs = catalog
            .rdbs()
            .await
            .with_context(|| format!("reading the RDB snapshots in {where_}"))?;
        let base = catalog
            .backups()
            .await
            .with_context(|| format!("reading the backups in {where_}"))?;
        if rdbs.is_empty() || !base.is_empty() {
            return self.backup_verify(a).await;
        }
        match a.id.as_deref() {
            Some(id) => self.verify_rdb(&catalog, &rdbs, id, a.json).await,
            None => {
                let report = warden_backup::verify::verify(&catalog, None).await?;
                if a.json {
                    self.io.println(serde_json::to_string_pretty(&report)?)?;
                } else {
                    self.io.println(report.human().trim_end())?;
                }
                if !report.ok() {
                    bail!("verify found {} problem(s)", report.problem_count());
                }
                Ok(())
            }
        }
    }

    /// Verifies RDB snapshot `id` (`latest`: the newest) of `rdbs`.
    async fn verify_rdb(
        &mut self,
        catalog: &Catalog,
        rdbs: &[RdbRecord],
        id: &str,
        as_json: bool,
    ) -> Result<()> {
        let record = if id == "latest" {
            rdbs.last()
        } else {
            rdbs.iter().find(|r| r.id == id)
        }
        .ok_or_else(|| anyhow!("no committed RDB snapshot {id:?} in {}", catalog.repo.url()))?;
        let result = warden_backup::rdb::verify(catalog, record).await;
        if as_json {
            self.io.println(serde_json::to_string_pretty(&json!({
                "id": record.id,
                "kind": "rdb",
                "ok": result.is_ok(),
                "parts": record.parts.len(),
                "parts_checked": result.as_ref().map_or(0, |c| c.parts_checked),
                "crc64": format!("{:016x}", record.crc64),
                "error": result.as_ref().err().map(ToString::to_string),
            }))?)?;
        }
        match result {
            Ok(c) => {
                if !as_json {
                    self.io.println(format!(
                        "RDB snapshot {}: {}/{} parts, {}, RDB v{} CRC-64 {:016x}: OK",
                        c.id,
                        c.parts_checked,
                        record.parts.len(),
                        human_bytes(c.summary.len),
                        c.summary.version,
                        c.summary.crc
                    ))?;
                }
                Ok(())
            }
            Err(e) => {
                if !as_json {
                    self.io
                        .println(format!("RDB snapshot {}: FAILED\n  {e}", record.id))?;
                }
                bail!("verify found 1 problem(s): {e}")
            }
        }
    }
}

/// One copy's lag behind the main repository, as `backup list` shows it.
struct CopyLag {
    name: String,
    url: String,
    lag: Result<warden_backup::copies::Lag, String>,
}

impl CopyLag {
    fn json(&self) -> Value {
        match &self.lag {
            Ok(l) => json!({
                "name": self.name, "repository": self.url,
                "lag_objects": l.objects, "lag_bytes": l.bytes, "lag_seconds": l.seconds,
                "oldest_missing": l.oldest,
            }),
            Err(e) => json!({"name": self.name, "repository": self.url, "error": e}),
        }
    }
}

/// Lists the main repository and each copy (bounded by each repository's timeout)
/// and compares them with `warden_backup::copies::lag`.
async fn copies_lag(main: &warden_backup::catalog::Catalog, cfg: &BackupConfig) -> Vec<CopyLag> {
    let mut out = Vec::with_capacity(cfg.copies.len());
    for c in &cfg.copies {
        let (url, lag) = match warden_backup::repo::Repository::open(&c.repository) {
            Ok(repo) => (
                repo.url().to_owned(),
                warden_backup::copies::measure(main, &repo)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            Err(e) => ("-".to_owned(), Err(e.to_string())),
        };
        out.push(CopyLag {
            name: c.name.clone(),
            url,
            lag,
        });
    }
    out
}

fn copies_table(copies: &[CopyLag]) -> String {
    let mut t = TextTable {
        title: "Copies".into(),
        columns: ["Name", "Repository", "Behind", "Lag", "Oldest missing"]
            .map(String::from)
            .to_vec(),
        align: vec![
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Left,
        ],
        rows: Vec::new(),
    };
    for c in copies {
        let (behind, lag, oldest) = match &c.lag {
            Ok(l) => (
                format!("{} obj, {}", l.objects, human_bytes(l.bytes)),
                format!("{:.1} s", l.seconds),
                l.oldest.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
                ),
            ),
            Err(e) => ("?".to_owned(), "?".to_owned(), format!("cannot list: {e}")),
        };
        t.rows
            .push(vec![c.name.clone(), c.url.clone(), behind, lag, oldest]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::args::{BackupCommand, Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<BackupCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("wardenctl").chain(args.iter().copied()))?;
        match cli.command {
            Command::Backup(b) => Ok(b.command),
            other => panic!("parsed as {}", other.name()),
        }
    }

    #[test]
    fn backup_command_line() {
        match parse(&["backup", "create", "demo", "--no-wait", "--json"]).unwrap() {
            BackupCommand::Create(a) => {
                assert_eq!(a.cluster_name.as_deref(), Some("demo"));
                assert!(a.no_wait && a.json);
            }
            other => panic!("create parsed as {other:?}"),
        }
        // The last of --wait / --no-wait wins.
        match parse(&["backup", "create", "--no-wait", "--wait"]).unwrap() {
            BackupCommand::Create(a) => assert!(a.wait && !a.no_wait),
            other => panic!("create parsed as {other:?}"),
        }
        match parse(&["-c", "/etc/w.yml", "backup", "list", "--json"]).unwrap() {
            BackupCommand::List(a) => assert!(a.json && a.cluster_name.is_none()),
            other => panic!("list parsed as {other:?}"),
        }
        match parse(&["backup", "list", "--repository", "offsite"]).unwrap() {
            BackupCommand::List(a) => assert_eq!(a.repository.as_deref(), Some("offsite")),
            other => panic!("list parsed as {other:?}"),
        }
        match parse(&["backup", "verify", "latest", "--repository", "nas"]).unwrap() {
            BackupCommand::Verify(a) => {
                assert_eq!(a.repository.as_deref(), Some("nas"));
                assert_eq!(a.id.as_deref(), Some("latest"));
            }
            other => panic!("verify parsed as {other:?}"),
        }
        let e = parse(&["backup", "list", "--format", "x"]).unwrap_err();
        assert!(e.to_string().contains("--format"), "{e}");
        let e = parse(&["backup"]).unwrap_err();
        assert!(
            e.to_string().contains("create") && e.to_string().contains("list"),
            "{e}"
        );
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(640 * 1024), "640.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }
}
