//! PostgreSQL WAL positions (`X/Y` text form) as plain integers, as Patroni stores them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
            return None;
        }
        Some(Lsn((hi << 32) | lo))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_form() {
        let l = Lsn::parse("0/3000060").unwrap();
        assert_eq!(l.0, 0x300_0060);
        assert_eq!(l.to_string(), "0/3000060");
        assert_eq!(Lsn::parse("1/0").unwrap().0, 1 << 32);
        assert_eq!(
            Lsn::parse("16/B374D848").unwrap().to_string(),
            "16/B374D848"
        );
        assert!(Lsn::parse("nope").is_none());
        assert!(Lsn::parse("1FFFFFFFF/0").is_none());
    }
}
