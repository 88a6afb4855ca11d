//! Data page checksums, checked as the `files` method copies relation files, as
//! PostgreSQL's own base backup does when the cluster has `data_checksums` on: a page
//! whose stored checksum does not match its content, and which was not written since
//! the backup started (its LSN is older than the start), is a corrupt page, and the
//! backup fails naming it rather than keep a copy of the damage.
//!
//! The algorithm is PostgreSQL's (`storage/checksum_impl.h`): 32 parallel FNV-1a-like
//! lanes over the 8 KiB page read as native-endian 32-bit words (with `pd_checksum`
//! taken as zero), two rounds of zeros, the lanes XOR-folded, the block number mixed
//! in, reduced modulo 65535 plus one (never zero).

use std::fs::File;
use std::os::unix::fs::FileExt;

use warden_pg::lsn::Lsn;

/// PostgreSQL's page size (the only one Warden supports: the default build's).
pub const BLCKSZ: usize = 8192;
/// Blocks per relation segment file (1 GiB of 8 KiB pages).
const RELSEG_SIZE: u64 = 131_072;
const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
/// Each lane's starting state.
const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F_36E9,
    0xB852_5960,
    0x02AB_50AA,
    0x1DE6_6D2A,
    0x79FF_467A,
    0x9BB9_F8A3,
    0x217E_7CD2,
    0x83E1_3D2C,
    0xF8D4_474F,
    0xE39E_B970,
    0x42C6_AE16,
    0x9932_16FA,
    0x7B09_3B5D,
    0x98DA_FF3C,
    0xF718_902A,
    0x0B1C_9CDB,
    0xE58F_764B,
    0x1876_36BC,
    0x5D7B_3BB1,
    0xE73D_E7DE,
    0x92BE_C979,
    0xCCA6_C0B2,
    0x304A_0979,
    0x85AA_43D4,
    0x7831_25BB,
    0x6CA8_EAA2,
    0xE407_EAC6,
    0x4B5C_FC3E,
    0x9FBF_8C76,
    0x15CA_20BE,
    0xF2CA_9FD3,
    0x959B_D756,
];
/// Failed blocks named in the error (the count covers the rest).
const NAMED: usize = 10;

fn comp(sum: &mut u32, value: u32) {
    let t = *sum ^ value;
    *sum = t.wrapping_mul(FNV_PRIME) ^ (t >> 17);
}

/// The checksum PostgreSQL stores in `pd_checksum` for `page` at block `blkno` of its
/// relation fork.
pub fn page_checksum(page: &[u8; BLCKSZ], blkno: u32) -> u16 {
    let mut sums = BASE_OFFSETS;
    for (i, row) in page.chunks_exact(4 * N_SUMS).enumerate() {
        for (j, (word, sum)) in row.chunks_exact(4).zip(sums.iter_mut()).enumerate() {
            let mut b = [word[0], word[1], word[2], word[3]];
            if i == 0 && j == 2 {
                // pd_checksum (bytes 8 and 9 of the page) counts as zero.
                b[0] = 0;
                b[1] = 0;
            }
            comp(sum, u32::from_ne_bytes(b));
        }
    }
    for _ in 0..2 {
        for sum in &mut sums {
            comp(sum, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ blkno;
    // 1..=65535: never zero. (PostgreSQL 15's `% 65535`; the result fits.)
    u16::try_from(folded % 65_535 + 1).unwrap_or(u16::MAX)
}

fn stored_checksum(page: &[u8; BLCKSZ]) -> u16 {
    u16::from_ne_bytes([page[8], page[9]])
}

fn page_lsn(page: &[u8; BLCKSZ]) -> u64 {
    let hi = u32::from_ne_bytes([page[0], page[1], page[2], page[3]]);
    let lo = u32::from_ne_bytes([page[4], page[5], page[6], page[7]]);
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `pd_upper == 0`: a page never initialized (extended but not yet written).
fn is_new(page: &[u8; BLCKSZ]) -> bool {
    page[14] == 0 && page[15] == 0
}

/// Whether `rel` (a path in the data directory) holds checksummed pages: relation
/// files under `base/` and `global/`, not the few other files kept there.
pub fn is_checksummed(rel: &str) -> Option<u64> {
    if !(rel.starts_with("base/") || rel.starts_with("global/")) {
        return None;
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if matches!(
        name,
        "pg_control" | "pg_filenode.map" | "pg_internal.init" | "PG_VERSION"
    ) {
        return None;
    }
    // `<relfilenode>[_fork][.segment]`; the segment numbers the blocks.
    let (base, segment) = match name.split_once('.') {
        Some((b, seg)) => (b, seg.parse::<u64>().ok()?),
        None => (name, 0),
    };
    let node = base.split_once('_').map_or(base, |(n, _)| n);
    (!node.is_empty() && node.bytes().all(|b| b.is_ascii_digit())).then_some(segment)
}

/// Checks the pages of the files a backup copies.
#[derive(Debug)]
pub struct PageCheck {
    /// The backup's start: a page with this LSN or later was written during the
    /// backup, and WAL replay rewrites it.
    start: u64,
    failed: Vec<(String, u64)>,
    failed_total: u64,
    pub checked: u64,
}

impl PageCheck {
    pub fn new(start: Lsn) -> Self {
        Self {
            start: start.0,
            failed: Vec::new(),
            failed_total: 0,
            checked: 0,
        }
    }

    /// Checks the whole pages of `data`, read from `file` (`rel`, segment `segment`) at
    /// byte `offset` (a multiple of [`BLCKSZ`]). A page that fails is read again once
    /// from the file: it may have been caught half written.
    pub fn check(&mut self, rel: &str, segment: u64, file: &File, offset: u64, data: &[u8]) {
        for (i, page) in data.chunks_exact(BLCKSZ).enumerate() {
            let page: &[u8; BLCKSZ] = page.try_into().expect("chunks_exact");
            let block_in_file = offset / BLCKSZ as u64 + i as u64;
            let blkno = segment * RELSEG_SIZE + block_in_file;
            if self.page_ok(page, blkno) {
                continue;
            }
            let mut again = [0u8; BLCKSZ];
            let reread = file.read_exact_at(&mut again, block_in_file * BLCKSZ as u64);
            if reread.is_ok() && self.page_ok(&again, blkno) {
                continue;
            }
            self.failed_total += 1;
            if self.failed.len() < NAMED {
                self.failed.push((rel.to_owned(), block_in_file));
            }
        }
    }

    fn page_ok(&mut self, page: &[u8; BLCKSZ], blkno: u64) -> bool {
        if is_new(page) || page_lsn(page) >= self.start {
            return true;
        }
        self.checked += 1;
        // Block numbers are 32-bit in PostgreSQL.
        let blkno = u32::try_from(blkno).unwrap_or(u32::MAX);
        page_checksum(page, blkno) == stored_checksum(page)
    }

    /// `Err` naming the failed blocks, if any.
    pub fn verdict(&self) -> Result<(), String> {
        if self.failed_total == 0 {
            return Ok(());
        }
        let named: Vec<String> = self
            .failed
            .iter()
            .map(|(rel, block)| format!("{rel} block {block}"))
            .collect();
        Err(format!(
            "data checksum verification failed in {} page(s): {}{}; the cluster has \
             corrupt pages (PostgreSQL's own base backup refuses them too)",
            self.failed_total,
            named.join(", "),
            if self.failed_total as usize > named.len() {
                ", ..."
            } else {
                ""
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(lsn: u64, fill: u8) -> [u8; BLCKSZ] {
        let mut p = [fill; BLCKSZ];
        p[0..4].copy_from_slice(&((lsn >> 32) as u32).to_ne_bytes());
        p[4..8].copy_from_slice(&(lsn as u32).to_ne_bytes());
        p[14..16].copy_from_slice(&8000u16.to_ne_bytes()); // pd_upper: initialized
        p
    }

    fn sealed(mut p: [u8; BLCKSZ], blkno: u32) -> [u8; BLCKSZ] {
        let sum = page_checksum(&p, blkno);
        p[8..10].copy_from_slice(&sum.to_ne_bytes());
        p
    }

    /// Block 2 of `pg_class` from a PostgreSQL 15 `initdb -k`: the checksum
    /// PostgreSQL stored is the one computed here.
    const REAL_PAGE: &[u8; BLCKSZ] = include_bytes!("testdata/pg_class_block2.page");

    #[test]
    fn matches_a_page_postgresql_wrote() {
        assert_eq!(page_checksum(REAL_PAGE, 2), stored_checksum(REAL_PAGE));
        assert_ne!(page_checksum(REAL_PAGE, 3), stored_checksum(REAL_PAGE));
        let mut check = PageCheck::new(Lsn(u64::MAX));
        let tmp = tempfile::NamedTempFile::new().unwrap();
        check.check(
            "base/5/1259",
            0,
            tmp.as_file(),
            2 * BLCKSZ as u64,
            REAL_PAGE,
        );
        assert_eq!(check.checked, 1);
        assert!(check.verdict().is_ok());
    }

    #[test]
    fn the_stored_checksum_does_not_count_and_everything_else_does() {
        let p = sealed(page(0x100, 7), 3);
        assert_eq!(page_checksum(&p, 3), stored_checksum(&p));
        assert_ne!(
            page_checksum(&p, 4),
            stored_checksum(&p),
            "the block number counts"
        );
        let mut q = p;
        q[4000] ^= 1;
        assert_ne!(
            page_checksum(&q, 3),
            stored_checksum(&q),
            "a flipped bit counts"
        );
        assert_ne!(page_checksum(&p, 3), 0, "never zero");
    }

    #[test]
    fn checks_old_pages_and_skips_new_and_recent_ones() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let file = tmp.reopen().unwrap();
        let good = sealed(page(0x100, 1), 0);
        let mut bad = sealed(page(0x100, 2), 1);
        bad[5000] ^= 0x40;
        let recent = page(0x9000, 3); // written after the start: not checked
        let fresh = [0u8; BLCKSZ]; // never initialized
        let data: Vec<u8> = [good, bad, recent, fresh].concat();
        std::fs::write(tmp.path(), &data).unwrap();
        let mut check = PageCheck::new(Lsn(0x8000));
        check.check("base/5/16384", 0, &file, 0, &data);
        assert_eq!(check.checked, 3, "good and bad, bad twice (read again)");
        let e = check.verdict().unwrap_err();
        assert!(e.contains("1 page(s): base/5/16384 block 1;"), "{e}");
        // The block number comes from the offset in the file.
        let filler = page(0x100, 9);
        let second = sealed(page(0x100, 4), 1);
        std::fs::write(tmp.path(), [filler, second].concat()).unwrap();
        let mut check = PageCheck::new(Lsn(0x8000));
        check.check("base/5/16385", 0, &file, BLCKSZ as u64, &second);
        assert!(check.verdict().is_ok());
        check.check("base/5/16385", 0, &file, 0, &second);
        assert!(check
            .verdict()
            .unwrap_err()
            .contains("base/5/16385 block 0"));
    }

    #[test]
    fn which_files_hold_checksummed_pages() {
        assert_eq!(is_checksummed("base/5/16384"), Some(0));
        assert_eq!(is_checksummed("base/5/16384_fsm.2"), Some(2));
        assert_eq!(is_checksummed("global/1262"), Some(0));
        assert_eq!(is_checksummed("global/pg_control"), None);
        assert_eq!(is_checksummed("base/5/pg_filenode.map"), None);
        assert_eq!(is_checksummed("base/5/PG_VERSION"), None);
        assert_eq!(is_checksummed("pg_xact/0000"), None);
        assert_eq!(is_checksummed("base/5/16384.x"), None);
    }
}
