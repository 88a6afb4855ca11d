//! Fencing: the rules that keep a node that may have lost leadership from accepting writes.
//!
//! The core is [`LeaseDeadline`]: the leader records the instant each successful lease
//! renewal *started*; etcd can only expire the lease `ttl` after it *received* that
//! request, which is later. So `start + ttl - margin` always passes before the server-side
//! expiry, and a leader that stops serving writes at its local deadline can never overlap
//! with a successor.

pub mod guard;
pub mod watchdog;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Margin kept between the local deadline and the earliest server-side lease expiry.
/// It covers clock-rate differences between hosts and the time it takes to stop
/// accepting writes: a fifth of the TTL, at least 1 s and at most 5 s.
pub fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// The local lease deadline, readable lock-free from any thread (the REST API checks it
/// on every `/primary` request; the fencing timer checks it without the HA loop).
#[derive(Debug)]
pub struct LeaseDeadline {
    origin: Instant,
    /// Nanoseconds after `origin`; 0 means "no lease held".
    deadline_nanos: AtomicU64,
}

impl Default for LeaseDeadline {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaseDeadline {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            deadline_nanos: AtomicU64::new(0),
        }
    }

    /// Records a successful renewal whose request started at `request_started`.
    pub fn renewed(&self, request_started: Instant, ttl: Duration) {
        let deadline = request_started + ttl.saturating_sub(safety_margin(ttl));
        let nanos = deadline.saturating_duration_since(self.origin).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX).max(1);
        self.deadline_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Forgets the lease (released, lost, or never held).
    pub fn clear(&self) {
        self.deadline_nanos.store(0, Ordering::SeqCst);
    }

    /// The deadline, if a lease is held.
    pub fn deadline(&self) -> Option<Instant> {
        match self.deadline_nanos.load(Ordering::SeqCst) {
            0 => None,
            n => Some(self.origin + Duration::from_nanos(n)),
        }
    }

    /// Whether the lease may still be relied on at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now < d)
    }

    /// Time left before the deadline at `now` (zero when passed or not held).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.deadline()
            .map_or(Duration::ZERO, |d| d.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_precedes_server_expiry_by_the_margin() {
        let d = LeaseDeadline::new();
        let start = Instant::now();
        assert!(!d.valid_at(start));
        d.renewed(start, Duration::from_secs(10));
        assert_eq!(d.deadline(), Some(start + Duration::from_secs(8)));
        assert!(d.valid_at(start + Duration::from_millis(7999)));
        assert!(!d.valid_at(start + Duration::from_secs(8)));
        assert_eq!(
            d.remaining(start + Duration::from_secs(3)),
            Duration::from_secs(5)
        );
        d.clear();
        assert!(!d.valid_at(start));
        assert_eq!(d.remaining(start), Duration::ZERO);
    }

    #[test]
    fn margin_is_bounded() {
        assert_eq!(
            safety_margin(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            safety_margin(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(
            safety_margin(Duration::from_secs(100)),
            Duration::from_secs(5)
        );
    }
}
