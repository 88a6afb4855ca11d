//! The commands that read the DCS (`list`, `topology`, `history`, `show-config`,
//! `version`) or write it directly (`edit-config`, `remove`).

use super::args::{
    ClusterArg, EditConfigArgs, Format, HistoryArgs, ListArgs, RemoveArgs, TopologyArgs,
    VersionArgs, WatchArgs,
};
use super::members::{self, Layout};
use super::output::{yaml_block, Rows};
use super::{edit, Ctl};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::time::Duration;
use warden_api::client::Method;
use warden_api::PatroniStatus;

/// Local time as progress lines show it.
pub fn timestamp() -> String {
    chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// Local time to the second, as patronictl prints it in `list -t` and in `query`'s
/// error rows.
pub fn timestamp_secs() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(crate) fn watch_interval(w: &WatchArgs) -> Result<Option<Duration>> {
    match (w.watch, w.w) {
        (Some(s), _) if !(s > 0.0 && s.is_finite()) => {
            bail!("--watch {s}: expected a positive number of seconds")
        }
        (Some(s), _) => Ok(Some(Duration::from_secs_f64(s))),
        (None, true) => Ok(Some(Duration::from_secs(2))),
        (None, false) => Ok(None),
    }
}

/// `150010` -> `15.10`, `90624` -> `9.6.24`.
pub fn format_pg_version(v: u64) -> String {
    if v < 100_000 {
        format!("{}.{}.{}", v / 10_000, v / 100 % 100, v % 100)
    } else {
        format!("{}.{}", v / 10_000, v % 100)
    }
}

impl Ctl<'_> {
    pub async fn list(&mut self, a: ListArgs) -> Result<()> {
        let names = self.cluster_names(&a.cluster_names)?;
        let every = watch_interval(&a.watch)?;
        self.show_members(
            &names,
            a.extended,
            Layout::Format(a.format),
            a.timestamp,
            every,
        )
        .await
    }

    pub async fn topology(&mut self, a: TopologyArgs) -> Result<()> {
        let names = self.cluster_names(&a.cluster_names)?;
        let every = watch_interval(&a.watch)?;
        self.show_members(&names, false, Layout::Topology, false, every)
            .await
    }

    fn cluster_names(&self, given: &[String]) -> Result<Vec<String>> {
        if given.is_empty() {
            Ok(vec![self.config.scope_for(None)?])
        } else {
            Ok(given.to_vec())
        }
    }

    async fn show_members(
        &mut self,
        names: &[String],
        extended: bool,
        layout: Layout,
        ts: bool,
        every: Option<Duration>,
    ) -> Result<()> {
        loop {
            let started = tokio::time::Instant::now();
            if every.is_some() && self.clear_screen {
                write!(self.io.out, "\x1b[2J\x1b[H")?;
            }
            if ts {
                self.io.println(timestamp_secs())?;
            }
            for name in names {
                let view = self.read(name).await?;
                if !view.exists() {
                    self.io.warn(format!(
                        "no keys under {}: is {name:?} the right cluster name?",
                        view.keys.prefix()
                    ))?;
                }
                let text = members::render(name, &view.cluster, extended, layout);
                self.io.println(text)?;
            }
            let Some(every) = every else {
                return Ok(());
            };
            tokio::time::sleep_until(started + every).await;
        }
    }

    /// Prints the member table as the action commands show it before asking.
    pub fn print_table(&mut self, view: &super::View) -> Result<()> {
        let text = members::render(
            &view.scope,
            &view.cluster,
            false,
            Layout::Format(Format::Pretty),
        );
        self.io.println(text)
    }

    pub async fn history(&mut self, a: HistoryArgs) -> Result<()> {
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        let view = self.read_existing(&scope).await?;
        let rows = Rows {
            columns: ["TL", "LSN", "Reason", "Timestamp", "New Leader"]
                .map(String::from)
                .to_vec(),
            rows: view
                .cluster
                .history
                .iter()
                .map(|h| {
                    vec![
                        json!(h.timeline),
                        json!(h.lsn),
                        json!(h.reason),
                        json!(h.timestamp.clone().unwrap_or_default()),
                        json!(h.new_leader.clone().unwrap_or_default()),
                    ]
                })
                .collect(),
            right: vec!["TL", "LSN"],
            skip_empty: false,
        };
        self.io.println(rows.render(a.format, ""))
    }

    pub async fn show_config(&mut self, a: ClusterArg) -> Result<()> {
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        let view = self.read_existing(&scope).await?;
        match view.raw(&view.keys.config()) {
            Some(kv) => {
                let v: Value = serde_json::from_slice(&kv.value)
                    .with_context(|| format!("{} does not hold JSON", kv.key))?;
                // As patronictl: the YAML, then an empty line.
                self.io.println(yaml_block(&v))
            }
            None => {
                self.io.warn(format!(
                    "cluster {scope:?} has no config key ({})",
                    view.keys.config()
                ))?;
                Ok(())
            }
        }
    }

    pub async fn edit_config(&mut self, a: EditConfigArgs) -> Result<()> {
        let scope = self.config.scope_for(a.cluster_name.as_deref())?;
        let view = self.read_existing(&scope).await?;
        let key = view.keys.config();
        let Some(kv) = view.raw(&key) else {
            bail!("the config key does not exist in cluster {scope:?} ({key})");
        };
        let mod_revision = kv.mod_revision;
        let before: Value = serde_json::from_slice(&kv.value)
            .with_context(|| format!("{key} does not hold JSON; fix it with --replace"))?;
        let before_text = yaml_block(&before);

        let mut after = before.clone();
        let mut edited = false;
        if let Some(file) = &a.replace {
            after = edit::patch_from_yaml(&self.read_file_arg(file)?, &describe_file(file))?;
            // A replacement carries no deletions.
            let mut fresh = json!({});
            edit::merge_patch(&mut fresh, &after);
            after = fresh;
            edited = true;
        }
        if let Some(file) = &a.apply {
            let patch = edit::patch_from_yaml(&self.read_file_arg(file)?, &describe_file(file))?;
            edit::merge_patch(&mut after, &patch);
            edited = true;
        }
        let mut pairs = a.set.clone();
        pairs.extend(edit::pg_pairs(&a.pg));
        if !pairs.is_empty() {
            edit::apply_sets(&mut after, &pairs)?;
            edited = true;
        }
        if !edited {
            after = self.run_editor(&scope, &before_text)?;
        }
        if after == before {
            if !a.quiet {
                self.io.println("Not changed")?;
            }
            return Ok(());
        }
        edit::validate(&after)?;
        if !a.quiet {
            let d = edit::diff(&before_text, &yaml_block(&after));
            write!(self.io.out, "{d}")?;
        }
        let from_stdin = a.apply.as_deref() == Some("-") || a.replace.as_deref() == Some("-");
        if from_stdin && !a.force {
            bail!(
                "not applied: changes read from standard input need --force (standard input \
                 cannot also answer \"Apply these changes?\")"
            );
        }
        if !a.force && !self.io.confirm("Apply these changes?")? {
            bail!("not applied: the change was not confirmed");
        }
        let dcs = self.dcs().await?;
        let body = serde_json::to_vec(&after)?;
        let swapped = dcs
            .compare_and_swap(&key, body, mod_revision, None)
            .await
            .map_err(|e| self.dcs_error(&format!("writing {key}"), &e))?;
        if !swapped {
            bail!(
                "config modification aborted: {key} changed concurrently since it was read \
                 (mod_revision {mod_revision}); nothing was written, run edit-config again"
            );
        }
        self.io.println("Configuration changed")
    }

    fn read_file_arg(&mut self, file: &str) -> Result<String> {
        if file == "-" {
            let mut s = String::new();
            self.io
                .input
                .read_to_string(&mut s)
                .context("reading standard input")?;
            Ok(s)
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
        }
    }

    /// Hands the YAML to the editor in a temporary file and reads it back.
    fn run_editor(&mut self, scope: &str, text: &str) -> Result<Value> {
        let Some(editor) = self.editor.clone() else {
            bail!(
                "no editor: set EDITOR (or install editor or vi), or give the change with \
                 -s/-p/--apply/--replace"
            );
        };
        let mut file = tempfile::Builder::new()
            .prefix(&format!("{}-config-", scope.replace('/', "_")))
            .suffix(".yaml")
            .tempfile()
            .context("creating a temporary file for the editor")?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        // Through the shell, so EDITOR may carry arguments ("code --wait").
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(file.path())
            .status()
            .with_context(|| format!("starting the editor {editor:?}"))?;
        if !status.success() {
            bail!("the editor {editor:?} exited with {status}; nothing changed");
        }
        let edited = std::fs::read_to_string(file.path()).context("reading the edited file")?;
        edit::patch_from_yaml(&edited, "the edited config")
    }

    pub async fn version(&mut self, a: VersionArgs) -> Result<()> {
        self.io
            .println(format!("wardenctl version {}", env!("CARGO_PKG_VERSION")))?;
        let Some(scope) = a.cluster_name.filter(|s| !s.is_empty()) else {
            return Ok(());
        };
        self.io.println("")?;
        let view = self.read_existing(&scope).await?;
        for name in &a.member_names {
            if !view.cluster.members.contains_key(name) {
                bail!("unknown member {name:?} (members: {})", view.member_names());
            }
        }
        let mut failed = Vec::new();
        for (name, m) in &view.cluster.members {
            if !a.member_names.is_empty() && !a.member_names.contains(name) {
                continue;
            }
            let got = self
                .api
                .call(Method::GET, name, &m.value.api_url, "patroni", None, None)
                .await;
            let line = match got {
                Ok(r) if r.status == 200 => {
                    match serde_json::from_slice::<PatroniStatus>(&r.body) {
                        Ok(v) => describe_version(name, &v),
                        Err(e) => {
                            failed.push(name.clone());
                            format!(
                                "{name}: failed to get version: the answer is not a /patroni \
                             document: {e}"
                            )
                        }
                    }
                }
                Ok(r) => {
                    failed.push(name.clone());
                    format!(
                        "{name}: failed to get version: status code={}, ({})",
                        r.status,
                        r.text()
                    )
                }
                Err(e) => {
                    failed.push(name.clone());
                    format!("{name}: failed to get version: {e}")
                }
            };
            self.io.println(line)?;
        }
        if !failed.is_empty() {
            bail!("could not get the version of {}", failed.join(", "));
        }
        Ok(())
    }

    pub async fn remove(&mut self, a: RemoveArgs) -> Result<()> {
        let scope = a.cluster_name;
        let view = self.read_existing(&scope).await?;
        let table = members::render(&scope, &view.cluster, false, Layout::Format(a.format));
        self.io.println(table)?;
        let typed = self
            .io
            .prompt("Please confirm the cluster name to remove", None)?;
        if typed != scope {
            bail!("cluster names do not match ({typed:?} is not {scope:?}); nothing removed");
        }
        let phrase = "Yes I am aware";
        let typed = self.io.prompt(
            &format!(
                "You are about to remove all information in DCS for {scope}, please type: \
                 \"{phrase}\""
            ),
            None,
        )?;
        if typed != phrase {
            bail!("you did not exactly type \"{phrase}\"; nothing removed");
        }
        if let Some(leader) = view.cluster.leader_name().map(str::to_string) {
            let typed = self.io.prompt(
                "This cluster currently is healthy. Please specify the leader name to continue",
                None,
            )?;
            if typed != leader {
                bail!("you did not specify the current leader of the cluster; nothing removed");
            }
        }
        let dcs = self.dcs().await?;
        let prefix = view.keys.prefix().to_string();
        let n = dcs
            .delete_prefix(&prefix)
            .await
            .map_err(|e| self.dcs_error(&format!("deleting {prefix}"), &e))?;
        self.io
            .println(format!("Removed cluster {scope}: {n} keys under {prefix}"))
    }
}

fn describe_file(file: &str) -> String {
    if file == "-" {
        "standard input".to_string()
    } else {
        file.to_string()
    }
}

/// `node1: Patroni 4.0.4 PostgreSQL 15.10 (Warden 0.1.0)` from a `/patroni` body.
pub fn describe_version(name: &str, v: &PatroniStatus) -> String {
    let api = Some(v.patroni.version.as_str())
        .filter(|v| !v.is_empty())
        .unwrap_or("unknown");
    let mut line = format!("{name}: Patroni {api}");
    if let Some(pg) = v.server_version.filter(|&n| n > 0) {
        line.push_str(&format!(" PostgreSQL {}", format_pg_version(u64::from(pg))));
    }
    if let Some(w) = &v.patroni.warden_version {
        line.push_str(&format!(" (Warden {w})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(format_pg_version(150_010), "15.10");
        assert_eq!(format_pg_version(90_624), "9.6.24");
        assert_eq!(format_pg_version(100_000), "10.0");
        assert_eq!(
            describe_version(
                "n1",
                &PatroniStatus::from_json(&json!({"server_version": 150010, "patroni": {"version": "4.0.4", "warden_version": "0.1.0"}})).unwrap()
            ),
            "n1: Patroni 4.0.4 PostgreSQL 15.10 (Warden 0.1.0)"
        );
        assert_eq!(
            describe_version("n1", &PatroniStatus::default()),
            "n1: Patroni unknown"
        );
    }

    #[test]
    fn watch_intervals() {
        let w = |w, watch| WatchArgs { w, watch };
        assert_eq!(watch_interval(&w(false, None)).unwrap(), None);
        assert_eq!(
            watch_interval(&w(true, None)).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            watch_interval(&w(true, Some(0.5))).unwrap(),
            Some(Duration::from_millis(500))
        );
        assert!(watch_interval(&w(false, Some(0.0))).is_err());
    }
}
