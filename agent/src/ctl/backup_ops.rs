//! `wardenctl backup verify` and `wardenctl backup delete`: they work on the
//! repository directly (no agent involved), with the repository and key from the
//! agent's config file (`-c`) and the cluster's system identifier from the DCS.

use anyhow::{anyhow, bail, Result};

use super::args::{BackupDeleteArgs, BackupVerifyArgs};
use super::Ctl;
use crate::backup::catalog::Catalog;
use crate::backup::key::EncryptionKey;
use crate::backup::layout::Layout;
use crate::backup::repo::Repository;
use crate::backup::{prune, verify, walchain};
use crate::config::BackupConfig;

impl Ctl<'_> {
    /// The agent config's `backup` section (the file given with `-c`).
    pub fn backup_config(&self) -> Result<BackupConfig> {
        let path = self.config.file.as_ref().ok_or_else(|| {
            anyhow!("backup commands need the agent's config file (-c CONFIG) for backup.repository and the key")
        })?;
        crate::config::load_backup_section(path)
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
        let scope = self.config.scope_for(cluster)?;
        let backup = self.backup_config()?;
        let view = self.read_existing(&scope).await?;
        let sysid: u64 = view
            .cluster
            .initialize
            .as_deref()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                anyhow!(
                    "cluster {scope:?} has no system identifier in the DCS yet (initialize key)"
                )
            })?;
        let catalog = Catalog {
            repo: Repository::open(&backup.repository)?,
            layout: Layout::new(&scope, sysid),
            key: EncryptionKey::load(backup.encryption_key_file.as_deref())?,
        };
        Ok((catalog, backup))
    }

    /// `backup verify [ID] [--json]`: fails (exit 1) on any problem.
    pub async fn backup_verify(&mut self, a: BackupVerifyArgs) -> Result<()> {
        let (catalog, _) = self.backup_catalog(a.cluster.as_deref()).await?;
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
}
