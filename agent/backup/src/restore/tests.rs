//! A restore through a real filesystem repository of a synthetic backup: parts
//! sealed as the take path seals them, then corrupted in each way a restore must
//! notice.

use super::*;
use crate::catalog::{FileSum, Part};
use crate::testkit::{backup_record, catalog};
use sha2::{Digest, Sha256};

fn tar_stream() -> (Vec<u8>, Vec<FileSum>) {
    let mut b = tar::Builder::new(Vec::new());
    let mut files = Vec::new();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for (name, data) in [
        ("PG_VERSION", b"15\n".to_vec()),
        ("base/1/1259", big),
        ("global/pg_control", vec![7u8; 8192]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
        files.push(FileSum {
            path: name.into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(&data)),
        });
    }
    (b.into_inner().unwrap(), files)
}

/// Stores `stream` as parts of `slice` bytes and commits the record.
async fn store(cat: &Catalog, stream: &[u8], files: Vec<FileSum>, slice: usize) -> BackupRecord {
    let id = "20261202T120000Z";
    let dir = cat.backup_dir(id);
    let mut parts = Vec::new();
    for (n, chunk) in stream.chunks(slice).enumerate() {
        let name = format!("base.tar.{n:05}");
        let path = format!("{dir}/{name}");
        let (sealed, s) = codec::seal_bytes(&cat.key, 3, &path, chunk).unwrap();
        parts.push(Part {
            name,
            plain_size: s.len,
            stored_size: sealed.len() as u64,
            sha256: hex::encode(s.digest),
        });
        cat.repo.put(&path, sealed.into()).await.unwrap();
    }
    let manifest = format!("{dir}/{MANIFEST}");
    let (sealed, _) = codec::seal_bytes(&cat.key, 3, &manifest, b"{\"manifest\": 1}").unwrap();
    cat.repo.put(&manifest, sealed.into()).await.unwrap();
    let now = chrono::Utc::now();
    BackupRecord {
        member: "n1".into(),
        start_lsn: "0/2000028".into(),
        end_lsn: "0/2000100".into(),
        size: stream.len() as u64,
        parts,
        files,
        file_count: None,
        ..backup_record(id, now, "000000010000000000000002")
    }
}

fn recovery() -> Recovery {
    Recovery {
        target: Target::Immediate,
        restore_command: "true".into(),
        action: "promote",
        archive_off: true,
        standby: false,
    }
}

#[tokio::test]
async fn restores_a_multi_part_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = catalog(tmp.path());
    let (stream, files) = tar_stream();
    let record = store(&cat, &stream, files, 100_000).await;
    assert!(record.parts.len() >= 3);
    let dest = tmp.path().join("restored");
    let report = restore(&cat, &record, &dest, &recovery()).await.unwrap();
    assert_eq!(report.files, 3);
    assert_eq!(report.bytes, 300_000 + 3 + 8192);
    assert!(report.stored_bytes > 0);
    assert_eq!(
        std::fs::read(dest.join("base/1/1259")).unwrap().len(),
        300_000
    );
    assert_eq!(
        std::fs::read(dest.join(MANIFEST)).unwrap(),
        b"{\"manifest\": 1}"
    );
    assert!(dest.join("pg_wal/archive_status").is_dir());
    assert!(dest.join("recovery.signal").is_file());
    let auto = std::fs::read_to_string(dest.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("recovery_target = 'immediate'"), "{auto}");
    let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    // Not into a directory that has anything in it.
    let e = restore(&cat, &record, &dest, &recovery())
        .await
        .unwrap_err();
    assert!(matches!(e, RestoreError::NotEmpty(_)), "{e}");
}

#[tokio::test]
async fn a_swapped_or_tampered_part_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = catalog(tmp.path());
    let (stream, files) = tar_stream();
    let record = store(&cat, &stream, files, 100_000).await;
    let dir = cat.backup_dir(&record.id);

    // Part 1 replaced by part 2's object: sealed for another path.
    let p1 = format!("{dir}/{}", record.parts[1].name);
    let p2 = format!("{dir}/{}", record.parts[2].name);
    let original = cat.repo.get(&p1).await.unwrap();
    cat.repo
        .put(&p1, cat.repo.get(&p2).await.unwrap())
        .await
        .unwrap();
    let e = restore(&cat, &record, &tmp.path().join("a"), &recovery())
        .await
        .unwrap_err();
    assert_eq!(
        std::fs::read_dir(tmp.path().join("a")).unwrap().count(),
        0,
        "a failed restore leaves the directory empty"
    );
    assert!(
        matches!(e, RestoreError::Corrupt { ref object, .. } if *object == p1),
        "{e}"
    );
    cat.repo.put(&p1, original).await.unwrap();

    // The record's digest of a part does not match what is stored.
    let mut bad = record.clone();
    bad.parts[0].sha256 = "00".repeat(32);
    let e = restore(&cat, &bad, &tmp.path().join("b"), &recovery())
        .await
        .unwrap_err();
    assert!(matches!(e, RestoreError::PartDigest { .. }), "{e}");

    // A missing part.
    cat.repo.delete(&p2).await.unwrap();
    let e = restore(&cat, &record, &tmp.path().join("c"), &recovery())
        .await
        .unwrap_err();
    assert!(matches!(e, RestoreError::Repo(_)), "{e}");
}

/// As the take path stores a backup since issue 15: codec version 3 parts, `files`
/// empty, the checksums in the sealed backup_manifest (written from `manifest_files`,
/// which may differ from what the stream holds).
async fn store_manifest_based(
    cat: &Catalog,
    stream: &[u8],
    manifest_files: &[(&str, &[u8])],
) -> BackupRecord {
    let id = "20261202T130000Z";
    let dir = cat.backup_dir(id);
    let mut parts = Vec::new();
    for (n, chunk) in stream.chunks(100_000).enumerate() {
        let name = format!("base.tar.{n:05}");
        let path = format!("{dir}/{name}");
        let mut s = codec::seal_unhashed(&cat.key, 1, &path, Vec::new()).unwrap();
        std::io::Write::write_all(&mut s, chunk).unwrap();
        let (sealed, info) = s.finish().unwrap();
        parts.push(Part {
            name,
            plain_size: info.len,
            stored_size: sealed.len() as u64,
            sha256: String::new(),
        });
        cat.repo.put(&path, sealed.into()).await.unwrap();
    }
    let manifest = crate::base::filesums::tests::manifest_of(manifest_files);
    let path = format!("{dir}/{MANIFEST}");
    let (sealed, _) = codec::seal_bytes(&cat.key, 3, &path, &manifest).unwrap();
    cat.repo.put(&path, sealed.into()).await.unwrap();
    BackupRecord {
        start_lsn: "0/2000028".into(),
        end_lsn: "0/2000100".into(),
        size: stream.len() as u64,
        parts,
        files: Vec::new(),
        file_count: None,
        ..backup_record(id, chrono::Utc::now(), "000000010000000000000002")
    }
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[tokio::test]
async fn manifest_checksums_restore_and_catch_a_flipped_byte() {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 239) as u8).collect();
    let mut flipped = big.clone();
    flipped[250_000] ^= 0x80;
    let files: [(&str, &[u8]); 2] = [("PG_VERSION", b"15\n"), ("base/1/1259", &big)];

    let tmp = tempfile::tempdir().unwrap();
    let cat = catalog(tmp.path());
    let record = store_manifest_based(&cat, &tar_of(&files), &files).await;
    let dest = tmp.path().join("ok");
    let report = restore(&cat, &record, &dest, &recovery()).await.unwrap();
    assert_eq!(report.files, 2);
    assert!(
        report.unchecked_files.is_empty(),
        "{:?}",
        report.unchecked_files
    );
    assert_eq!(std::fs::read(dest.join("base/1/1259")).unwrap(), big);
    let manifest = std::fs::read(dest.join(MANIFEST)).unwrap();
    assert!(crate::base::filesums::FileSums::from_manifest(&manifest).is_ok());

    // One byte differs from what the server checksummed: every part authenticates,
    // the file's CRC32C does not match the manifest.
    let tmp = tempfile::tempdir().unwrap();
    let cat = catalog(tmp.path());
    let stream = tar_of(&[("PG_VERSION", b"15\n"), ("base/1/1259", &flipped)]);
    let record = store_manifest_based(&cat, &stream, &files).await;
    let e = restore(&cat, &record, &tmp.path().join("bad"), &recovery())
        .await
        .unwrap_err();
    assert!(
        matches!(e, RestoreError::FileChecksum { ref path, ref expected, .. }
            if path == "base/1/1259" && expected.starts_with("CRC32C")),
        "{e}"
    );

    // A backup whose manifest is gone cannot be checked: refused, not restored blind.
    let dir = cat.backup_dir(&record.id);
    cat.repo.delete(&format!("{dir}/{MANIFEST}")).await.unwrap();
    let e = restore(&cat, &record, &tmp.path().join("nomanifest"), &recovery())
        .await
        .unwrap_err();
    assert!(matches!(e, RestoreError::Repo(_)), "{e}");
}
