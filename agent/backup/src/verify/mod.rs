//! `wardenctl backup verify [ID]`: re-reads a backup (or every backup and dump) from
//! the repository and checks it, and checks that the archived WAL continues from the
//! backup's start to the newest archived WAL.
//!
//! For a base backup: every part authenticates and its sealed SHA-256 and sizes match
//! the record; the parts' plaintext, concatenated, is a tar stream whose regular files
//! hash to the record's `files`; the manifest object authenticates. For WAL, see
//! `walchain`. Every problem names the object (or WAL file) it is about.

mod archive;

use serde::Serialize;

use super::base::filesums;
use super::catalog::{BackupRecord, Catalog, CatalogError, DumpRecord, Part, MANIFEST};
use super::codec;
use super::parts::{self, PartsReader, Problem};
use super::walchain;

/// The result for one base backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub id: String,
    pub parts_checked: usize,
    pub parts: usize,
    pub files_checked: usize,
    pub files: usize,
    pub bytes: u64,
    /// WAL: the timeline followed, the newest file reached, segments checked.
    pub wal_timeline: u32,
    pub wal_from: String,
    pub wal_to: Option<String>,
    pub wal_segments_checked: u64,
    pub problems: Vec<Problem>,
}

/// The result for one dump.
#[derive(Debug, Clone, Serialize)]
pub struct DumpReport {
    pub id: String,
    pub parts_checked: usize,
    pub parts: usize,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub backups: Vec<BackupReport>,
    pub dumps: Vec<DumpReport>,
    /// Redis RDB snapshots (the same shape as a dump's report).
    pub rdbs: Vec<DumpReport>,
    /// Problems not tied to one backup (the WAL listing, history files).
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.backups.iter().all(|b| b.problems.is_empty())
            && self.dumps.iter().all(|d| d.problems.is_empty())
            && self.rdbs.iter().all(|d| d.problems.is_empty())
    }

    pub fn problem_count(&self) -> usize {
        self.problems.len()
            + self.backups.iter().map(|b| b.problems.len()).sum::<usize>()
            + self.dumps.iter().map(|d| d.problems.len()).sum::<usize>()
            + self.rdbs.iter().map(|d| d.problems.len()).sum::<usize>()
    }

    pub fn human(&self) -> String {
        let mut out = String::new();
        for b in &self.backups {
            out.push_str(&format!(
                "backup {}: {}/{} parts, {}/{} files, {} bytes; WAL {} .. {} on timeline {} ({} segments): {}\n",
                b.id,
                b.parts_checked,
                b.parts,
                b.files_checked,
                b.files,
                b.bytes,
                b.wal_from,
                b.wal_to.as_deref().unwrap_or("-"),
                b.wal_timeline,
                b.wal_segments_checked,
                if b.problems.is_empty() { "OK" } else { "FAILED" }
            ));
            for p in &b.problems {
                out.push_str(&format!("  {}: {}\n", p.object, p.problem));
            }
        }
        for (kind, d) in self
            .dumps
            .iter()
            .map(|d| ("dump", d))
            .chain(self.rdbs.iter().map(|d| ("RDB snapshot", d)))
        {
            out.push_str(&format!(
                "{kind} {}: {}/{} parts: {}\n",
                d.id,
                d.parts_checked,
                d.parts,
                if d.problems.is_empty() {
                    "OK"
                } else {
                    "FAILED"
                }
            ));
            for p in &d.problems {
                out.push_str(&format!("  {}: {}\n", p.object, p.problem));
            }
        }
        for p in &self.problems {
            out.push_str(&format!("{}: {}\n", p.object, p.problem));
        }
        if self.ok() {
            out.push_str("verify: OK\n");
        } else {
            out.push_str(&format!("verify: {} problem(s)\n", self.problem_count()));
        }
        out
    }
}

/// What [`read_parts`] found about the parts themselves.
#[derive(Debug, Clone, Default)]
pub struct PartsSummary {
    pub problems: Vec<Problem>,
    /// Parts that authenticated and matched their record entry.
    pub checked: usize,
    /// Plaintext bytes read.
    pub bytes: u64,
}

/// Verifies backup `id` (`latest` works), or every backup, dump and RDB snapshot when
/// `None`.
pub async fn verify(catalog: &Catalog, id: Option<&str>) -> Result<Report, CatalogError> {
    let (backups, dumps, rdbs) = match id {
        Some(id) => (vec![catalog.backup(id).await?], vec![], vec![]),
        None => (
            catalog.backups().await?,
            catalog.dumps().await?,
            catalog.rdbs().await?,
        ),
    };
    let mut report = Report::default();
    let archived = archive::read(catalog, &mut report.problems).await?;
    for b in &backups {
        report
            .backups
            .push(verify_backup(catalog, b, &archived).await);
    }
    for d in &dumps {
        report.dumps.push(verify_dump(catalog, d).await);
    }
    for r in &rdbs {
        report.rdbs.push(verify_rdb(catalog, r).await);
    }
    Ok(report)
}

/// Reads `parts` (with paths under `dir`) through a [`PartsReader`] on a blocking
/// thread, handing the plaintext to `consume`, then checks the parts `consume` left.
pub async fn read_parts<T, F>(
    catalog: &Catalog,
    dir: &str,
    parts: &[Part],
    consume: F,
) -> (PartsSummary, T)
where
    T: Send + 'static,
    F: FnOnce(&mut PartsReader) -> T + Send + 'static,
{
    let list: Vec<(String, Part)> = parts
        .iter()
        .map(|p| (format!("{dir}/{}", p.name), p.clone()))
        .collect();
    let rx = parts::download(
        catalog.repo.clone(),
        list.iter().map(|(p, _)| p.clone()).collect(),
    );
    let key = catalog.key.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut reader = PartsReader::new(rx, key, list);
        let out = consume(&mut reader);
        reader.drain();
        (reader.problems, reader.checked, reader.bytes, out)
    })
    .await;
    match joined {
        Ok((problems, checked, bytes, out)) => (
            PartsSummary {
                problems,
                checked,
                bytes,
            },
            out,
        ),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn verify_backup(
    catalog: &Catalog,
    b: &BackupRecord,
    archived: &walchain::Archived,
) -> BackupReport {
    let dir = catalog.backup_dir(&b.id);
    let manifest = format!("{dir}/{MANIFEST}");
    // What the files must match: the server's backup_manifest (read, authenticated
    // and self-checked here), or an older record's own SHA-256 list.
    let (sums, sums_problem) = match filesums::for_backup(catalog, b).await {
        Ok((sums, _)) => (Some(sums), None),
        Err(e) => (
            None,
            Some(Problem {
                object: manifest.clone(),
                problem: e.to_string(),
            }),
        ),
    };
    let files = sums.as_ref().map_or(b.files.len(), |s| s.files.len());
    let (reader, file_problems) = read_parts(catalog, &dir, &b.parts, move |r| match sums {
        Some(sums) => archive::check_tar_with(r, sums),
        // The parts are still authenticated and checked (by the caller's drain).
        None => (0, Vec::new()),
    })
    .await;
    let (files_checked, file_problems) = file_problems;
    let mut problems = reader.problems;
    problems.extend(sums_problem);
    problems.extend(file_problems.into_iter().map(|(path, problem)| Problem {
        object: format!("{dir}/{}", tar_file_label(&path)),
        problem,
    }));
    // The manifest: present and authentic (already read above when the checksums
    // are its own).
    if !b.files.is_empty() {
        match catalog.repo.get(&manifest).await {
            Ok(sealed) => {
                if let Err(e) = codec::open_bytes(&catalog.key, &manifest, &sealed) {
                    problems.push(Problem {
                        object: manifest,
                        problem: e.to_string(),
                    });
                }
            }
            Err(e) => problems.push(Problem {
                object: manifest,
                problem: e.to_string(),
            }),
        }
    }
    let continuity = archive::continuity(catalog, b, archived, &mut problems);
    BackupReport {
        id: b.id.clone(),
        parts_checked: reader.checked,
        parts: b.parts.len(),
        files_checked,
        files,
        bytes: reader.bytes,
        wal_timeline: continuity.timeline,
        wal_from: b.start_wal.clone(),
        wal_to: continuity.newest,
        wal_segments_checked: continuity.checked,
        problems,
    }
}

/// Files inside the tar stream are named `base.tar:<path>` in problems (the stream
/// itself `base.tar`).
fn tar_file_label(path: &str) -> String {
    if path.is_empty() {
        "base.tar".to_owned()
    } else {
        format!("base.tar:{path}")
    }
}

async fn verify_dump(catalog: &Catalog, d: &DumpRecord) -> DumpReport {
    let dir = catalog.dump_dir(&d.id);
    let mut report = DumpReport {
        id: d.id.clone(),
        parts_checked: 0,
        parts: d.databases.iter().map(|db| db.parts.len()).sum(),
        problems: vec![],
    };
    for db in &d.databases {
        let (reader, ()) = read_parts(catalog, &dir, &db.parts, |r| {
            let _ = std::io::copy(r, &mut std::io::sink());
        })
        .await;
        report.parts_checked += reader.checked;
        report.problems.extend(reader.problems);
    }
    report
}

async fn verify_rdb(catalog: &Catalog, r: &crate::catalog::RdbRecord) -> DumpReport {
    use crate::rdb::RdbCheckError;
    let (parts_checked, problems) = match crate::rdb::verify(catalog, r).await {
        Ok(c) => (c.parts_checked, vec![]),
        Err(RdbCheckError::Parts { problems, .. }) => {
            (r.parts.len() - problems.len().min(r.parts.len()), problems)
        }
        // The parts authenticated; the RDB inside them is refused.
        Err(e) => (
            r.parts.len(),
            vec![Problem {
                object: catalog.rdb_dir(&r.id),
                problem: e.to_string(),
            }],
        ),
    };
    DumpReport {
        id: r.id.clone(),
        parts_checked,
        parts: r.parts.len(),
        problems,
    }
}

#[cfg(test)]
mod tests;
