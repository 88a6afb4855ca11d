//! `wardenctl backup verify` and `wardenctl backup delete`: they work on the
//! repository directly (no agent involved), with the repository and key from the
//! agent's config file (`-c`) and the cluster's system identifier from the DCS.

use anyhow::{anyhow, bail, Result};

use super::args::{BackupCreateArgs, BackupDeleteArgs, BackupVerifyArgs};
use super::Ctl;
use serde_json::{json, Value};
use warden_api::client::Method;
use warden_backup::catalog::Catalog;
use warden_backup::key::EncryptionKey;
use warden_backup::layout::Layout;
use warden_backup::repo::Repository;
use warden_backup::{prune, verify, walchain};
use warden_config::BackupConfig;

impl Ctl<'_> {
    /// The agent config's `backup` section (the file given with `-c`).
    pub fn backup_config(&self) -> Result<BackupConfig> {
        let path = self.config.file.as_ref().ok_or_else(|| {
            anyhow!("backup commands need the agent's config file (-c CONFIG) for backup.repository and the key")
        })?;
        warden_config::load_backup_section(path)
            .map_err(|e| anyhow!("{e}"))?
            .ok_or_else(|| {
                anyhow!(
                    "{} has no backup section: wardenctl needs backup.repository and the \
                     encryption key to read the repository",
                    path.display()
                )
            })
    }

    /// The catalog of cluster `scope`: repository and key from the config file, the
    /// system identifier from the DCS (`initialize`).
    pub async fn backup_catalog(
        &mut self,
        cluster: Option<&str>,
    ) -> Result<(Catalog, BackupConfig)> {
        self.backup_catalog_from(cluster, None).await
    }

    /// [`Ctl::backup_catalog`] of repository `repository` (`--repository`: a
    /// `backup.copies` name, with that copy's key; `None` or `main`: the main one). The
    /// returned config is the main one (with its copies).
    pub async fn backup_catalog_from(
        &mut self,
        cluster: Option<&str>,
        repository: Option<&str>,
    ) -> Result<(Catalog, BackupConfig)> {
        let scope = self.config.scope_for(cluster)?;
        let backup = self.backup_config()?;
        let seen = backup
            .for_repository(repository)
            .map_err(|e| anyhow!("--repository: {e}"))?;
        let view = self.read_existing(&scope).await?;
        let sysid: u64 = view
            .cluster
            .initialize
            .as_deref()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                anyhow!(
                    "cluster {scope:?} has no system identifier in the DCS ({}initialize): \
                     is it bootstrapped?",
                    view.keys.prefix()
                )
            })?;
        let catalog = Catalog {
            repo: Repository::open(&seen.repository)?,
            layout: Layout::new(&scope, sysid),
            key: EncryptionKey::load(seen.encryption_key_file.as_deref())?,
        };
        Ok((catalog, backup))
    }

    /// `backup verify [ID] [--json]`: fails (exit 1) on any problem.
    pub async fn backup_verify(&mut self, a: BackupVerifyArgs) -> Result<()> {
        let (catalog, _) = self
            .backup_catalog_from(a.cluster.as_deref(), a.repository.as_deref())
            .await?;
        let report = verify::verify(&catalog, a.id.as_deref()).await?;
        if a.json {
            writeln!(self.io.out, "{}", serde_json::to_string_pretty(&report)?)?;
        } else {
            write!(self.io.out, "{}", report.human())?;
        }
        if report.backups.is_empty() && report.dumps.is_empty() {
            bail!("the repository holds no committed backup of this cluster");
        }
        if !report.ok() {
            bail!("verify found {} problem(s)", report.problem_count());
        }
        Ok(())
    }

    /// `backup delete ID | --prune [--confirm] [--json]`: a dry run unless confirmed.
    pub async fn backup_delete(&mut self, a: BackupDeleteArgs) -> Result<()> {
        let (catalog, cfg) = self.backup_catalog(a.cluster.as_deref()).await?;
        let plan = match (&a.id, a.prune) {
            (Some(_), true) => bail!("give either a backup ID or --prune, not both"),
            (None, false) => bail!("give a backup (or dump) ID to delete, or --prune"),
            (Some(id), false) => prune::plan_delete(&catalog, id).await?,
            (None, true) => {
                if cfg.retention.keeps_everything() {
                    self.io.warn(
                        "backup.retention sets no rule: every backup and dump is kept; only incomplete leftovers are pruned",
                    )?;
                }
                prune::plan_prune(&catalog, &cfg.retention, walchain::DEFAULT_SEGMENT_SIZE).await?
            }
        };
        if a.confirm {
            prune::execute(&catalog, &plan).await?;
        }
        let report = prune::Report::of(&plan, !a.confirm);
        if a.json {
            writeln!(self.io.out, "{}", serde_json::to_string_pretty(&report)?)?;
        } else {
            write!(self.io.out, "{}", report.human())?;
        }
        Ok(())
    }

    /// `backup create --dump`: asks the archiver for a logical dump and (unless
    /// --no-wait) waits for its outcome in `GET /backup`'s `dump`.
    pub async fn dump_create(&mut self, a: BackupCreateArgs) -> Result<()> {
        let (archiver, api_url, id) = self
            .start_on_archiver(a.cluster_name.as_deref(), "dump", json!({"kind": "dump"}))
            .await?;
        if a.no_wait {
            return self.say(
                a.json,
                json!({"id": id, "member": archiver, "status": "started"}),
                format!("Dump {id} started on {archiver}"),
            );
        }
        let deadline = tokio::time::Instant::now() + self.timing.reinit_deadline;
        let mut failures = 0u32;
        loop {
            match self
                .api
                .call(Method::GET, &archiver, &api_url, "backup", None, None)
                .await
            {
                Ok(r) if r.status == 200 => {
                    failures = 0;
                    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    let last = &v["dump"]["last"];
                    if last["id"].as_str() == Some(id.as_str()) {
                        let ok = last["ok"].as_bool() == Some(true);
                        let line = if ok {
                            format!(
                                "Dump {id} committed on {archiver}: {} verified with pg_restore --list ({} TOC entries)",
                                last["databases"].as_array().map(|d| d.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
                                last["toc_entries"]
                            )
                        } else {
                            String::new()
                        };
                        if a.json || ok {
                            self.say(a.json, last.clone(), line)?;
                        }
                        if !ok {
                            bail!(
                                "dump {id} on {archiver} failed: {}",
                                last["error"].as_str().unwrap_or("(no reason given)")
                            );
                        }
                        return Ok(());
                    }
                    if v["dump"]["running"].as_str() != Some(id.as_str()) {
                        bail!("{archiver} no longer reports dump {id} (the agent restarted?)");
                    }
                }
                Ok(_) | Err(_) => {
                    failures += 1;
                    if failures >= 30 {
                        bail!("cannot read the dump status from {archiver}");
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("dump {id} on {archiver} did not finish in time; it may still be running");
            }
            tokio::time::sleep(self.timing.poll).await;
        }
    }

    fn say(&mut self, as_json: bool, v: Value, line: String) -> Result<()> {
        if as_json {
            self.io.println(v)
        } else {
            self.io.println(line)
        }
    }
}
