//! Loopback port allocation.
//!
//! Every process a test starts listens on its own loopback ports, so tests can
//! run in parallel and next to a running demo. Two rules keep allocations from
//! colliding:
//!
//! * Ports are taken from below the kernel's ephemeral range. A port handed
//!   out by `bind(127.0.0.1:0)` lives in the ephemeral range, where the kernel
//!   also picks the source ports of outgoing connections; between "we probed
//!   it" and "etcd binds it" some client socket could take it. Below that
//!   range nothing is assigned behind our back.
//! * Every handed-out port is remembered for the life of the process, so two
//!   tests in one test binary never get the same port even before either has
//!   bound it.
//!
//! A candidate is only handed out if binding it on 127.0.0.1 succeeds right
//! now, which catches ports used by other processes (another test binary, the
//! demo, a system service).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Result};

/// Lowest port the allocator uses; below are well-known service ports.
const RANGE_START: u16 = 10_000;
/// Ports the demo and deploy/ examples use; never hand them to tests so a demo
/// started after a test still finds them free.
const RESERVED: &[u16] = &[15432, 15433, 15434];

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// First port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&p| p > RANGE_START + 1000)
        .unwrap_or(32_768)
}

/// Cursor into the range. Starting at an offset derived from the pid makes two
/// test processes running at the same time unlikely to probe the same ports.
fn cursor() -> &'static AtomicU32 {
    static CURSOR: OnceLock<AtomicU32> = OnceLock::new();
    CURSOR.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919)))
}

/// True if nothing listens on 127.0.0.1:`port` (we could bind it).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
}

/// True if a TCP connection to 127.0.0.1:`port` is accepted within 300 ms.
pub fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// One free loopback port, never handed out before in this process.
pub fn free_port() -> Result<u16> {
    let start = RANGE_START;
    let end = ephemeral_start();
    let span = u32::from(end - start);
    let mut taken = handed_out()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..span {
        let offset = cursor().fetch_add(1, Ordering::Relaxed) % span;
        // `offset < span` and `start + span == end <= u16::MAX`, so this fits.
        let Ok(port) = u16::try_from(u32::from(start) + offset) else {
            continue;
        };
        if RESERVED.contains(&port) || taken.contains(&port) {
            continue;
        }
        if port_is_free(port) {
            taken.insert(port);
            return Ok(port);
        }
    }
    bail!("no free loopback port left in {start}..{end}")
}

/// `n` distinct free loopback ports.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    (0..n).map(|_| free_port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_ephemeral_range() {
        let ports = free_ports(50).unwrap();
        let unique: HashSet<_> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "duplicate ports: {ports:?}");
        for p in ports {
            assert!((RANGE_START..ephemeral_start()).contains(&p), "{p}");
            assert!(!RESERVED.contains(&p));
            assert!(port_is_free(p), "{p} should still be bindable");
        }
    }

    #[test]
    fn parallel_allocations_never_collide() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| free_ports(25).unwrap()))
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for p in h.join().unwrap() {
                assert!(all.insert(p), "port {p} handed out twice");
            }
        }
    }

    #[test]
    fn a_bound_port_is_not_free_and_accepts() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!port_is_free(port));
        assert!(accepts(port));
        drop(l);
        assert!(!accepts(port));
    }
}
