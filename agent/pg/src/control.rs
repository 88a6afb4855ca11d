//! Facts read straight from `global/pg_control`, for programs that run without a
//! server (PostgreSQL's `archive_command` and `restore_command`, which must be fast
//! and must work while the server is still in recovery).

use std::io::Read;
use std::path::Path;

/// The cluster's system identifier: the first field of `ControlFileData`, a 64-bit
/// integer in the machine's byte order (pg_control is never portable across
/// architectures, so native order is right).
pub fn system_identifier(data_dir: &Path) -> std::io::Result<u64> {
    let path = data_dir.join("global").join("pg_control");
    let mut first = [0u8; 8];
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_exact(&mut first))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(u64::from_ne_bytes(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_eight_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("global")).unwrap();
        let mut control = 7_312_345_678_901_234_567u64.to_ne_bytes().to_vec();
        control.extend_from_slice(&[0u8; 200]);
        std::fs::write(dir.path().join("global/pg_control"), control).unwrap();
        assert_eq!(
            system_identifier(dir.path()).unwrap(),
            7_312_345_678_901_234_567
        );
        let e = system_identifier(&dir.path().join("nothing")).unwrap_err();
        assert!(e.to_string().contains("pg_control"), "{e}");
    }
}
