//! Redis's CRC-64: the Jones polynomial `0xad93d23594c935a9`, reflected in and out,
//! initial value 0, no final xor (Redis `src/crc64.c`). The `crc` crate's catalogue has
//! exactly this variant as `CRC_64_REDIS` (its check value is asserted below); the
//! 16-lane table (32 KiB, built at compile time) keeps the check well above network
//! speed.

use crc::{Crc, Digest, Table, CRC_64_REDIS};

/// One instance for the process: the table lives in a static, not on each use.
static REDIS: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// The CRC-64 of `data`, as Redis computes it.
pub fn crc64(data: &[u8]) -> u64 {
    REDIS.checksum(data)
}

/// A running CRC-64 over data that arrives in pieces.
#[derive(Clone)]
pub struct Crc64(Digest<'static, u64, Table<16>>);

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Crc64")
            .field(&format_args!("{:016x}", self.value()))
            .finish()
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    pub fn new() -> Self {
        Self(REDIS.digest())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC of everything given so far (the digest goes on).
    pub fn value(&self) -> u64 {
        self.0.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_is_redis_s() {
        // The value Redis's own crc64 test prints for "123456789".
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(CRC_64_REDIS.poly, 0xad93_d235_94c9_35a9);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn pieces_give_the_same_crc_as_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for cut in [0, 1, 15, 16, 17, 4095, 9_999, 10_000] {
            let mut c = Crc64::new();
            c.update(&data[..cut]);
            c.update(&data[cut..]);
            assert_eq!(c.value(), crc64(&data), "cut at {cut}");
        }
    }

    #[test]
    fn matches_a_bitwise_reference() {
        // The definition, one bit at a time: reflected polynomial, shift right.
        fn bitwise(data: &[u8]) -> u64 {
            let poly = 0xad93_d235_94c9_35a9u64.reverse_bits();
            let mut crc = 0u64;
            for &b in data {
                crc ^= u64::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ poly
                    } else {
                        crc >> 1
                    };
                }
            }
            crc
        }
        let data: Vec<u8> = (0..1000u32).map(|i| ((i * 31) ^ (i >> 3)) as u8).collect();
        assert_eq!(crc64(&data), bitwise(&data));
        assert_eq!(bitwise(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }
}
