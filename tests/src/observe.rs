//! Background observers that timestamp what the cluster reports, so a test
//! can compare the order of events after the fact: when each node's
//! `/primary` answered what, and when the leader key changed hands.
//!
//! Each observed endpoint gets its own thread polling with a short timeout,
//! so a frozen node (SIGSTOPped agent) delays only its own samples, never
//! those of the others. Every sample keeps the instant the request was sent
//! and the instant the answer came: the state it reports held at some point
//! in between, which is what ordering assertions need to stay conservative.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::etcd::EtcdCluster;
use crate::http;

/// Interval between two polls of one endpoint.
pub const POLL: Duration = Duration::from_millis(50);
/// Timeout of one poll.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// One poll: what was seen, sent at `sent`, answered at `got`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<T> {
    pub sent: Instant,
    pub got: Instant,
    pub value: T,
}

/// A series of samples from one poller thread.
#[derive(Debug)]
struct Series<T> {
    samples: Arc<Mutex<Vec<Sample<T>>>>,
}

impl<T: Clone> Series<T> {
    fn snapshot(&self) -> Vec<Sample<T>> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn spawn_poller<T: Send + 'static>(
    name: &str,
    stop: &Arc<AtomicBool>,
    poll: impl FnMut() -> T + Send + 'static,
) -> (Series<T>, JoinHandle<()>) {
    spawn_poller_every(name, stop, POLL, poll)
}

fn spawn_poller_every<T: Send + 'static>(
    name: &str,
    stop: &Arc<AtomicBool>,
    interval: Duration,
    mut poll: impl FnMut() -> T + Send + 'static,
) -> (Series<T>, JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let (s, st) = (Arc::clone(&samples), Arc::clone(stop));
    let h = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let value = poll();
                let got = Instant::now();
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Sample { sent, got, value });
                std::thread::sleep(interval);
            }
        })
        .unwrap_or_else(|e| panic!("spawning observer thread: {e}"));
    (Series { samples }, h)
}

/// The first sample at or after `since` whose value satisfies `pred`,
/// together with the previous sample (whose `sent` is the earliest instant
/// the change can have happened).
fn first_change<T: Clone>(
    samples: &[Sample<T>],
    since: Instant,
    pred: impl Fn(&T) -> bool,
) -> Option<Transition> {
    let mut prev_sent = None;
    for s in samples {
        if s.sent < since {
            prev_sent = Some(s.sent);
            continue;
        }
        if pred(&s.value) {
            return Some(Transition {
                not_before: prev_sent.unwrap_or(since).max(since),
                seen: s.got,
            });
        }
        prev_sent = Some(s.sent);
    }
    None
}

/// When something was first observed: it happened after `not_before` (the
/// previous poll, which did not see it yet, was sent then) and was seen at
/// `seen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub not_before: Instant,
    pub seen: Instant,
}

/// Polls `GET /primary` on every node.
#[derive(Debug)]
pub struct PrimaryWatch {
    names: Vec<String>,
    series: Vec<Series<Option<u16>>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl PrimaryWatch {
    /// Start polling `<api_url>/primary` for each `(name, api_url)`.
    pub fn start(nodes: &[(String, String)]) -> PrimaryWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let mut series = Vec::new();
        let mut handles = Vec::new();
        for (name, url) in nodes {
            let url = format!("{}/primary", url.trim_end_matches('/'));
            let (s, h) = spawn_poller(&format!("watch-{name}"), &stop, move || {
                http::get_with_timeout(&url, POLL_TIMEOUT)
                    .ok()
                    .map(|r| r.status)
            });
            series.push(s);
            handles.push(h);
        }
        PrimaryWatch {
            names: nodes.iter().map(|(n, _)| n.clone()).collect(),
            series,
            stop,
            handles,
        }
    }

    /// Every sample of node `i`.
    pub fn samples(&self, i: usize) -> Vec<Sample<Option<u16>>> {
        self.series[i].snapshot()
    }

    /// When node `i` first answered 200 at or after `since`.
    pub fn first_200(&self, i: usize, since: Instant) -> Option<Transition> {
        first_change(&self.samples(i), since, |v| *v == Some(200))
    }

    /// When node `i` first did not answer 200 (503, or no answer) at or
    /// after `since`.
    pub fn first_not_200(&self, i: usize, since: Instant) -> Option<Transition> {
        first_change(&self.samples(i), since, |v| *v != Some(200))
    }

    /// The earliest first-200 at or after `since` among every node but
    /// `except`: `(node index, transition)`.
    pub fn first_other_200(&self, except: usize, since: Instant) -> Option<(usize, Transition)> {
        (0..self.names.len())
            .filter(|&i| i != except)
            .filter_map(|i| self.first_200(i, since).map(|t| (i, t)))
            .min_by_key(|(_, t)| t.seen)
    }

    /// Node `i` answered 200 in some sample sent at or after `since`.
    pub fn any_200(&self, i: usize, since: Instant) -> bool {
        self.samples(i)
            .iter()
            .any(|s| s.sent >= since && s.value == Some(200))
    }

    /// Whether any sample answered at or after `t`: the watch is still
    /// producing data for node `i` (frozen nodes may not).
    pub fn polled_after(&self, i: usize, t: Instant) -> bool {
        self.samples(i).iter().any(|s| s.sent >= t)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for PrimaryWatch {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The holder of a leased key as seen at one poll: `(value, create_revision)`,
/// `None` while the key is absent, `Err` when etcd did not answer.
pub type Holder = Result<Option<(String, i64)>, String>;

/// Polls one etcd key (the leader key, typically) through the JSON gateway.
#[derive(Debug)]
pub struct KeyWatch {
    series: Series<Holder>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl KeyWatch {
    /// Poll `key` on `etcd`'s members (client URLs copied, so the cluster is
    /// not borrowed).
    pub fn start(etcd: &EtcdCluster, key: &str) -> KeyWatch {
        let reader = etcd.reader();
        let key = key.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (series, h) = spawn_poller("watch-key", &stop, move || {
            reader
                .get(&key, POLL_TIMEOUT)
                .map(|kv| kv.map(|kv| (kv.value, kv.create_revision)))
                .map_err(|e| format!("{e:#}"))
        });
        KeyWatch {
            series,
            stop,
            handle: Some(h),
        }
    }

    pub fn samples(&self) -> Vec<Sample<Holder>> {
        self.series.snapshot()
    }

    /// When the key first stopped being `(value, create_revision)` at or
    /// after `since` (deleted, expired, or held by someone else). Failed
    /// polls are not a change.
    pub fn first_change_from(&self, since: Instant, from: &(String, i64)) -> Option<Transition> {
        first_change(&self.samples(), since, |h| match h {
            Ok(v) => v.as_ref() != Some(from),
            Err(_) => false,
        })
    }

    /// Every distinct holder seen at or after `since`, in order of
    /// appearance (absent key and failed polls left out).
    pub fn holders_since(&self, since: Instant) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = Vec::new();
        for s in self.samples() {
            if s.sent < since {
                continue;
            }
            if let Ok(Some(h)) = s.value {
                if out.last() != Some(&h) {
                    out.push(h);
                }
            }
        }
        out
    }

    /// Some poll sent at or after `since` found the key absent.
    pub fn absent_since(&self, since: Instant) -> bool {
        self.samples()
            .iter()
            .any(|s| s.sent >= since && matches!(s.value, Ok(None)))
    }

    /// Polls sent at or after `since` that etcd answered.
    pub fn answered_since(&self, since: Instant) -> usize {
        self.samples()
            .iter()
            .filter(|s| s.sent >= since && s.value.is_ok())
            .count()
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for KeyWatch {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One poll of a lease: remaining whole seconds as etcd reports them,
/// `None` once the lease is gone, `Err` when etcd did not answer.
pub type LeaseTtl = Result<Option<i64>, String>;

/// Interval of [`LeaseWatch`] polls: each whole-second step of the reported
/// TTL pins the expiry instant to about this precision.
pub const LEASE_POLL: Duration = Duration::from_millis(20);

/// Polls an etcd lease's remaining TTL (`LeaseTimeToLive` through the JSON
/// gateway) to estimate when it expires.
///
/// etcd reports the remaining time in whole seconds, truncated. A poll sent
/// at `s` and answered at `g` that reads `k ≥ 1` therefore says the expiry
/// instant lies in `[s + k, g + k + 1)`; `k = 0` means less than a second
/// either way (etcd only deletes expired leases every 0.5 s). Intersecting
/// these intervals over polls that no renewal separates — after the holder
/// was killed — narrows the expiry down to the poll interval around the
/// instant the reading steps from `k` to `k − 1`.
#[derive(Debug)]
pub struct LeaseWatch {
    series: Series<LeaseTtl>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl LeaseWatch {
    pub fn start(etcd: &EtcdCluster, lease: i64) -> LeaseWatch {
        let reader = etcd.reader();
        let stop = Arc::new(AtomicBool::new(false));
        let (series, h) = spawn_poller_every("watch-lease", &stop, LEASE_POLL, move || {
            reader
                .lease_ttl(lease, POLL_TIMEOUT)
                .map_err(|e| format!("{e:#}"))
        });
        LeaseWatch {
            series,
            stop,
            handle: Some(h),
        }
    }

    pub fn samples(&self) -> Vec<Sample<LeaseTtl>> {
        self.series.snapshot()
    }

    /// Bounds `(earliest, latest)` of the lease's expiry from the polls sent
    /// at or after `since`, which must be after the last possible renewal.
    /// `None` without a usable poll, or if the polls contradict each other
    /// (a renewal happened after `since`).
    pub fn expiry(&self, since: Instant) -> Option<(Instant, Instant)> {
        expiry_bounds(&self.samples(), since)
    }

    /// When the lease was first seen gone at or after `since`.
    pub fn gone(&self, since: Instant) -> Option<Transition> {
        first_change(&self.samples(), since, |v| matches!(v, Ok(None)))
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for LeaseWatch {
    fn drop(&mut self) {
        self.halt();
    }
}

fn expiry_bounds(samples: &[Sample<LeaseTtl>], since: Instant) -> Option<(Instant, Instant)> {
    let sec = Duration::from_secs(1);
    let mut lo: Option<Instant> = None;
    let mut hi: Option<Instant> = None;
    for s in samples.iter().filter(|s| s.sent >= since) {
        let Ok(Some(k)) = s.value else { continue };
        let k = Duration::from_secs(u64::try_from(k).unwrap_or(0));
        let (a, b) = if k.is_zero() {
            (s.sent.checked_sub(sec).unwrap_or(s.sent), s.got + sec)
        } else {
            (s.sent + k, s.got + k + sec)
        };
        lo = Some(lo.map_or(a, |l| l.max(a)));
        hi = Some(hi.map_or(b, |h| h.min(b)));
    }
    let (lo, hi) = (lo?, hi?);
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(t0: Instant, vals: &[(u64, Option<u16>)]) -> Vec<Sample<Option<u16>>> {
        vals.iter()
            .map(|&(ms, v)| Sample {
                sent: t0 + Duration::from_millis(ms),
                got: t0 + Duration::from_millis(ms + 5),
                value: v,
            })
            .collect()
    }

    #[test]
    fn lease_expiry_is_pinned_by_the_step_of_the_reported_ttl() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Expiry at t0 + 5.430 s; polls every 100 ms taking 2 ms each.
        let expiry = t0 + ms(5430);
        let samples: Vec<Sample<LeaseTtl>> = (0..30u64)
            .map(|i| {
                let sent = t0 + ms(i * 100);
                let remaining = (expiry - sent).as_secs();
                Sample {
                    sent,
                    got: sent + ms(2),
                    value: Ok(Some(i64::try_from(remaining).unwrap())),
                }
            })
            .collect();
        let (lo, hi) = expiry_bounds(&samples, t0).unwrap();
        assert!(lo <= expiry && expiry <= hi, "{:?} {:?}", lo - t0, hi - t0);
        assert!(hi - lo <= ms(110), "{:?}", hi - lo);
        // A renewal makes the polls inconsistent.
        let mut renewed = samples;
        renewed.push(Sample {
            sent: t0 + ms(3000),
            got: t0 + ms(3002),
            value: Ok(Some(9)),
        });
        assert_eq!(expiry_bounds(&renewed, t0), None);
        // Failed and gone polls are ignored.
        let none: Vec<Sample<LeaseTtl>> = vec![Sample {
            sent: t0,
            got: t0,
            value: Ok(None),
        }];
        assert_eq!(expiry_bounds(&none, t0), None);
    }

    #[test]
    fn first_change_is_bounded_by_the_previous_poll() {
        let t0 = Instant::now();
        let s = series(
            t0,
            &[
                (0, Some(503)),
                (50, Some(503)),
                (100, Some(200)),
                (150, None),
            ],
        );
        let t = first_change(&s, t0, |v| *v == Some(200)).unwrap();
        assert_eq!(t.not_before, t0 + Duration::from_millis(50));
        assert_eq!(t.seen, t0 + Duration::from_millis(105));
        // Samples before `since` are skipped but bound the change.
        let t = first_change(&s, t0 + Duration::from_millis(60), |v| *v != Some(503)).unwrap();
        assert_eq!(t.not_before, t0 + Duration::from_millis(60));
        assert_eq!(t.seen, t0 + Duration::from_millis(105));
        assert!(first_change(&s, t0, |v| *v == Some(500)).is_none());
    }
}
