//! The two halves of verify that look inside: the archived WAL (listing and timeline
//! histories → `walchain`), and the per-file checksums inside a backup's tar stream.

use std::io::Read;

use crate::base::filesums::{Algorithm, FileHasher, FileSums};
use crate::catalog::{BackupRecord, Catalog, CatalogError};
use crate::codec;
use crate::layout::{WalKind, WalName};
use crate::parts::Problem;
use crate::restore::extract::normalize;
use crate::walchain::{self, Archived, Continuity, Start, DEFAULT_SEGMENT_SIZE};

/// Lists the cluster's archived WAL and reads every timeline history file. A history
/// that cannot be read is a problem (and its timeline cannot be followed).
pub async fn read(
    catalog: &Catalog,
    problems: &mut Vec<Problem>,
) -> Result<Archived, CatalogError> {
    let root = format!("{}/", catalog.layout.wal_root());
    let mut archived = Archived::default();
    for o in catalog.repo.list(&root).await? {
        let Some(file) = o.path.rsplit('/').next() else {
            continue;
        };
        let Ok(name) = WalName::parse(file) else {
            continue;
        };
        if name.kind != WalKind::TimelineHistory {
            archived.add(&name, DEFAULT_SEGMENT_SIZE);
            continue;
        }
        let Ok(tli) = u32::from_str_radix(name.timeline(), 16) else {
            continue;
        };
        let text = match catalog.repo.get(&o.path).await {
            Ok(sealed) => codec::open_bytes(&catalog.key, &o.path, &sealed)
                .map_err(|e| e.to_string())
                .and_then(|(plain, _)| String::from_utf8(plain).map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        match text.and_then(|t| walchain::parse_history(&t)) {
            Ok(h) => {
                archived.histories.insert(tli, h);
            }
            Err(problem) => problems.push(Problem {
                object: o.path.clone(),
                problem,
            }),
        }
    }
    Ok(archived)
}

/// WAL continuity from the backup's first segment; every missing segment becomes a
/// problem naming the object that should be there.
pub fn continuity(
    catalog: &Catalog,
    b: &BackupRecord,
    archived: &Archived,
    problems: &mut Vec<Problem>,
) -> Continuity {
    let start = WalName::parse(&b.start_wal)
        .ok()
        .and_then(|n| walchain::segno(&n, DEFAULT_SEGMENT_SIZE));
    let Some((segno, tli)) = start else {
        problems.push(Problem {
            object: format!("{}/backup.json", catalog.backup_dir(&b.id)),
            problem: format!("start_wal \"{}\" is not a WAL segment name", b.start_wal),
        });
        return Continuity::default();
    };
    // The end must be on the start's timeline (a backup does not span a switch).
    let needed_to = WalName::parse(&b.end_wal)
        .ok()
        .and_then(|n| walchain::segno(&n, DEFAULT_SEGMENT_SIZE))
        .map_or(segno, |(n, _)| n.max(segno));
    let c = walchain::check(
        archived,
        Start {
            tli,
            segno,
            needed_to,
        },
        DEFAULT_SEGMENT_SIZE,
    );
    for m in &c.missing {
        let object = WalName::parse(m)
            .map(|n| catalog.layout.wal(&n))
            .unwrap_or_else(|_| m.clone());
        problems.push(Problem {
            object,
            problem: format!("WAL segment {m} is missing: the archive has a gap"),
        });
    }
    for p in &c.problems {
        problems.push(Problem {
            object: catalog.layout.wal_root(),
            problem: p.clone(),
        });
    }
    c
}

/// [`check_tar_with`] against a record's SHA-256 list.
#[cfg(test)]
pub fn check_tar(
    reader: &mut dyn Read,
    files: &[crate::catalog::FileSum],
) -> (usize, Vec<(String, String)>) {
    check_tar_with(reader, FileSums::from_record(files))
}

/// Reads the tar stream, checksumming each regular file, and compares with `sums`.
/// Returns files that matched and (path, problem) for the others. A broken stream
/// (a bad part) stops the walk: files not reached are reported as not verified.
pub fn check_tar_with(reader: &mut dyn Read, sums: FileSums) -> (usize, Vec<(String, String)>) {
    let FileSums {
        files: mut want,
        exempt,
    } = sums;
    let mut problems = Vec::new();
    let mut ok = 0;
    let mut archive = tar::Archive::new(reader);
    let mut buf = vec![0u8; 256 * 1024];
    let walked: std::io::Result<()> = (|| {
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = normalize(&raw).unwrap_or(raw);
            let expected = want.remove(&path);
            let algorithm = expected.as_ref().map_or(Algorithm::None, |e| e.algorithm);
            let mut hasher = FileHasher::new(algorithm);
            let mut size = 0u64;
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                hasher.update(&buf[..n]);
            }
            let sum = hasher.finish();
            match expected {
                Some(f) => match f.mismatch(size, &sum) {
                    None => ok += 1,
                    Some(p) => problems.push((path, p)),
                },
                None if exempt.contains(&path) => {}
                None => problems.push((path, "in the backup but not in its record".to_owned())),
            }
        }
        Ok(())
    })();
    let broken = walked.is_err();
    if let Err(e) = walked {
        problems.push((String::new(), format!("the tar stream cannot be read: {e}")));
    }
    if broken {
        // One line for all of them: the cause is the broken part, reported above.
        if !want.is_empty() {
            problems.push((
                String::new(),
                format!(
                    "{} file(s) of the record not verified: the stream broke before them",
                    want.len()
                ),
            ));
        }
    } else {
        for (path, _) in want {
            problems.push((path, "in the record but missing from the backup".to_owned()));
        }
    }
    (ok, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::FileSum;
    use sha2::{Digest, Sha256};

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn sum(path: &str, data: &[u8]) -> FileSum {
        FileSum {
            path: path.into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        }
    }

    #[test]
    fn matching_mismatching_missing_and_extra_files() {
        let t = tar_of(&[
            ("PG_VERSION", b"15\n"),
            ("base/1/1", b"abc"),
            ("extra", b"x"),
        ]);
        let files = [
            sum("PG_VERSION", b"15\n"),
            sum("base/1/1", b"abd"),
            sum("global/pg_control", b"ctl"),
        ];
        let (ok, problems) = check_tar(&mut &t[..], &files);
        assert_eq!(ok, 1);
        let paths: Vec<&str> = problems.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(paths, vec!["base/1/1", "extra", "global/pg_control"]);
        assert!(problems[2].1.contains("missing"), "{problems:?}");
    }

    #[test]
    fn a_broken_stream_reports_the_rest_as_unverified() {
        let t = tar_of(&[("a", b"1"), ("b", &[7u8; 5000])]);
        // What a PartsReader does at a corrupt part: an error mid-stream.
        struct Fails;
        impl Read for Fails {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("authentication failed"))
            }
        }
        let mut broken = (&t[..1024]).chain(Fails);
        let (ok, problems) = check_tar(&mut broken, &[sum("a", b"1"), sum("b", &[7u8; 5000])]);
        assert_eq!(ok, 1);
        assert!(
            problems.iter().any(|p| p.1.contains("cannot be read")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.0.is_empty() && p.1.starts_with("1 file(s) of the record not verified")),
            "{problems:?}"
        );
    }
}
