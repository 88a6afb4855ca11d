//! Verify against a real filesystem repository holding a synthetic backup (sealed with
//! the real codec), so the part, file and WAL checks are exercised without PostgreSQL.

use super::*;
use crate::catalog::{FileSum, BACKUP_RECORD};
use crate::layout::WalName;
use crate::testkit::{backup_record, catalog};
use sha2::{Digest, Sha256};

const ID: &str = "20261202T100000Z";

async fn put_sealed(c: &Catalog, path: &str, plain: &[u8]) -> Part {
    let (sealed, s) = codec::seal_bytes(&c.key, 3, path, plain).unwrap();
    c.repo.put(path, sealed.clone().into()).await.unwrap();
    Part {
        name: path.rsplit('/').next().unwrap().to_owned(),
        plain_size: s.len,
        stored_size: sealed.len() as u64,
        sha256: hex::encode(s.digest),
    }
}

/// A backup of three files in two parts, and WAL segments 2..=4 on timeline 1.
async fn setup(c: &Catalog) {
    let files: [(&str, Vec<u8>); 3] = [
        ("PG_VERSION", b"15\n".to_vec()),
        ("base/1/1259", vec![9u8; 200_000]),
        ("global/pg_control", vec![1u8; 8192]),
    ];
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let stream = b.into_inner().unwrap();
    let dir = c.backup_dir(ID);
    let half = stream.len() / 2;
    let parts = vec![
        put_sealed(c, &format!("{dir}/base.tar.00000"), &stream[..half]).await,
        put_sealed(c, &format!("{dir}/base.tar.00001"), &stream[half..]).await,
    ];
    put_sealed(c, &format!("{dir}/{MANIFEST}"), b"{}").await;
    for seg in 2..=4 {
        let name = WalName::parse(&format!("0000000100000000000000{seg:02X}")).unwrap();
        put_sealed(c, &c.layout.wal(&name), b"wal").await;
    }
    let t = chrono::Utc::now();
    let record = BackupRecord {
        start_lsn: "0/2000028".into(),
        end_lsn: "0/2000100".into(),
        size: stream.len() as u64,
        stored_size: parts.iter().map(|p| p.stored_size).sum(),
        parts,
        files: files
            .iter()
            .map(|(p, d)| FileSum {
                path: (*p).into(),
                size: d.len() as u64,
                sha256: hex::encode(Sha256::digest(d)),
            })
            .collect(),
        ..backup_record(ID, t, "000000010000000000000002")
    };
    c.put_record(&format!("{dir}/{BACKUP_RECORD}"), &record)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_sound_backup_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    setup(&c).await;
    let r = verify(&c, Some("latest")).await.unwrap();
    assert!(r.ok(), "{}", r.human());
    let b = &r.backups[0];
    assert_eq!((b.parts_checked, b.files_checked), (2, 3));
    assert_eq!(b.wal_to.as_deref(), Some("000000010000000000000004"));
    assert_eq!(b.wal_segments_checked, 3);
    assert!(r.human().contains("verify: OK"));
}

#[tokio::test]
async fn a_flipped_byte_is_named_and_later_parts_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    setup(&c).await;
    let part = format!("{}/base.tar.00000", c.backup_dir(ID));
    let file = dir.path().join("repo").join(&part);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let r = verify(&c, None).await.unwrap();
    assert!(!r.ok());
    let b = &r.backups[0];
    assert!(
        b.problems
            .iter()
            .any(|p| p.object == part && p.problem.contains("authentication")),
        "{}",
        r.human()
    );
    // The second part authenticated on its own.
    assert_eq!(b.parts_checked, 1, "{}", r.human());
    assert!(r.human().contains(&part));
}

#[tokio::test]
async fn a_missing_wal_segment_and_part_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    setup(&c).await;
    let seg = WalName::parse("000000010000000000000003").unwrap();
    c.repo.delete(&c.layout.wal(&seg)).await.unwrap();
    let part = format!("{}/base.tar.00001", c.backup_dir(ID));
    c.repo.delete(&part).await.unwrap();
    let r = verify(&c, Some(ID)).await.unwrap();
    let b = &r.backups[0];
    assert!(
        b.problems
            .iter()
            .any(|p| p.object == c.layout.wal(&seg)
                && p.problem.contains("000000010000000000000003")),
        "{}",
        r.human()
    );
    assert!(b.problems.iter().any(|p| p.object == part), "{}", r.human());
}

/// A backup as issue 15 writes it: codec version 3 parts (no digest), `files` empty,
/// the per-file checksums in the sealed backup_manifest. `flip` changes one byte of
/// base/1/1259 in the stream *before* sealing, so every part authenticates and only
/// the manifest's checksum can tell.
async fn setup_manifest_based(c: &Catalog, flip: bool) {
    let files: [(&str, Vec<u8>); 2] = [
        ("PG_VERSION", b"15\n".to_vec()),
        (
            "base/1/1259",
            (0..200_000u32).map(|i| (i % 241) as u8).collect(),
        ),
    ];
    let manifest = crate::base::filesums::tests::manifest_of(
        &files.iter().map(|(p, d)| (*p, &d[..])).collect::<Vec<_>>(),
    );
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in &files {
        let mut data = data.clone();
        if flip && *name == "base/1/1259" {
            data[123_456] ^= 0x01;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let stream = b.into_inner().unwrap();
    let dir = c.backup_dir(ID);
    let mut parts = Vec::new();
    for (n, chunk) in stream.chunks(stream.len() / 2 + 1).enumerate() {
        let path = format!("{dir}/base.tar.{n:05}");
        let mut s = codec::seal_unhashed(&c.key, -3, &path, Vec::new()).unwrap();
        std::io::Write::write_all(&mut s, chunk).unwrap();
        let (sealed, info) = s.finish().unwrap();
        c.repo.put(&path, sealed.clone().into()).await.unwrap();
        parts.push(Part {
            name: format!("base.tar.{n:05}"),
            plain_size: info.len,
            stored_size: sealed.len() as u64,
            sha256: String::new(),
        });
    }
    put_sealed(c, &format!("{dir}/{MANIFEST}"), &manifest).await;
    for seg in 2..=4 {
        let name = WalName::parse(&format!("0000000100000000000000{seg:02X}")).unwrap();
        put_sealed(c, &c.layout.wal(&name), b"wal").await;
    }
    let record = BackupRecord {
        start_lsn: "0/2000028".into(),
        end_lsn: "0/2000100".into(),
        size: stream.len() as u64,
        stored_size: parts.iter().map(|p| p.stored_size).sum(),
        parts,
        files: Vec::new(),
        ..backup_record(ID, chrono::Utc::now(), "000000010000000000000002")
    };
    c.put_record(&format!("{dir}/{BACKUP_RECORD}"), &record)
        .await
        .unwrap();
}

#[tokio::test]
async fn manifest_checksums_verify_and_catch_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    setup_manifest_based(&c, false).await;
    let r = verify(&c, Some(ID)).await.unwrap();
    assert!(r.ok(), "{}", r.human());
    assert_eq!(
        (r.backups[0].parts_checked, r.backups[0].files_checked),
        (2, 2)
    );

    let dir = tempfile::tempdir().unwrap();
    let c = catalog(dir.path());
    setup_manifest_based(&c, true).await;
    let r = verify(&c, Some(ID)).await.unwrap();
    assert!(!r.ok());
    let b = &r.backups[0];
    assert_eq!(b.parts_checked, 2, "the parts authenticate: {}", r.human());
    assert!(
        b.problems
            .iter()
            .any(|p| p.object.ends_with("base.tar:base/1/1259") && p.problem.contains("CRC32C")),
        "{}",
        r.human()
    );
}
