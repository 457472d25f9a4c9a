//! Connections per client address: at most so many open at once, and so
//! many new ones a second (a token bucket per address), for TCP and HTTP
//! (WebSocket and polling) together. A connection over either is refused at
//! accept — TCP with an `error` line, HTTP with 429 — and counted.
//!
//! Loopback addresses are not limited unless asked (`limit_loopback`): the
//! tests, the benchmarks and a reverse proxy on the same machine all come
//! from 127.0.0.1.
//!
//! Behind a reverse proxy ([`crate::proxies`]), an HTTP connection from the
//! proxy is not counted at accept: each request that starts something (a
//! WebSocket upgrade, a request without an Engine.IO `sid`) is, against
//! the address the proxy forwards.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The limits per client address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IpLimits {
    /// Connections open at once per address; 0: no limit.
    pub max_open: u32,
    /// New connections per second per address; 0: no limit.
    pub per_second: f64,
    /// New connections at once above that rate.
    pub burst: u32,
    /// Whether loopback addresses are limited too.
    pub limit_loopback: bool,
}

impl Default for IpLimits {
    /// 256 open connections and 64 new ones a second (bursts of 128) per
    /// address: far above a browser's or an app's needs.
    fn default() -> Self {
        IpLimits {
            max_open: 256,
            per_second: 64.0,
            burst: 128,
            limit_loopback: false,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRefusal {
    /// The address has `max_open` connections open.
    TooManyOpen,
    /// The address opens connections faster than allowed.
    TooFast,
}

impl IpRefusal {
    /// For the client.
    pub fn message(self) -> &'static str {
        match self {
            IpRefusal::TooManyOpen => {
                "too-many-connections: your address has as many connections open as it may"
            }
            IpRefusal::TooFast => {
                "too-many-connections: your address opens connections too fast; wait a little"
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    open: u32,
    tokens: f64,
    last: Instant,
}

/// The open connections and connect rates of every address; cheap to clone.
#[derive(Debug, Clone)]
pub struct IpGate {
    limits: IpLimits,
    entries: Arc<Mutex<HashMap<IpAddr, Entry>>>,
    proxies: Arc<crate::proxies::TrustedProxies>,
    /// Connections refused, by [`IpRefusal`] (too many open, too fast).
    refused: Arc<[std::sync::atomic::AtomicU64; 2]>,
}

/// An admitted connection's place: dropping it frees it.
#[derive(Debug)]
pub struct IpTicket {
    gate: Option<(IpGate, IpAddr)>,
}

impl IpGate {
    /// A gate with these limits.
    pub fn new(limits: IpLimits) -> IpGate {
        IpGate {
            limits,
            entries: Arc::new(Mutex::new(HashMap::new())),
            proxies: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// Connections refused so far: too many open, and too fast.
    pub fn refused(&self) -> [u64; 2] {
        let get = |i: usize| self.refused[i].load(std::sync::atomic::Ordering::Relaxed);
        [get(0), get(1)]
    }

    fn refuse(&self, why: IpRefusal) -> IpRefusal {
        self.refused[why as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        why
    }

    /// The same gate, believing the forwarding headers of these proxies.
    pub fn trusting(mut self, proxies: crate::proxies::TrustedProxies) -> IpGate {
        self.proxies = Arc::new(proxies);
        self
    }

    /// The trusted proxies.
    pub fn proxies(&self) -> &crate::proxies::TrustedProxies {
        &self.proxies
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr) -> Result<IpTicket, IpRefusal> {
        let l = self.limits;
        if (ip.is_loopback() && !l.limit_loopback) || (l.max_open == 0 && l.per_second <= 0.0) {
            return Ok(IpTicket { gate: None });
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        let e = entries.entry(ip).or_insert(Entry {
            open: 0,
            tokens: f64::from(l.burst),
            last: now,
        });
        if l.max_open > 0 && e.open >= l.max_open {
            return Err(self.refuse(IpRefusal::TooManyOpen));
        }
        if l.per_second > 0.0 {
            let refill = now.duration_since(e.last).as_secs_f64() * l.per_second;
            e.tokens = (e.tokens + refill).min(f64::from(l.burst));
            e.last = now;
            if e.tokens < 1.0 {
                return Err(self.refuse(IpRefusal::TooFast));
            }
            e.tokens -= 1.0;
        }
        e.open += 1;
        Ok(IpTicket {
            gate: Some((self.clone(), ip)),
        })
    }
}

impl Drop for IpTicket {
    fn drop(&mut self) {
        let Some((gate, ip)) = self.gate.take() else {
            return;
        };
        let mut entries = gate.entries.lock().unwrap();
        if let Some(e) = entries.get_mut(&ip) {
            e.open = e.open.saturating_sub(1);
            // Forget an address with nothing open and a full bucket.
            let full = gate.limits.per_second <= 0.0
                || e.tokens + e.last.elapsed().as_secs_f64() * gate.limits.per_second
                    >= f64::from(gate.limits.burst);
            if e.open == 0 && full {
                entries.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_connections_and_the_connect_rate_are_bounded_per_address() {
        let gate = IpGate::new(IpLimits {
            max_open: 2,
            per_second: 1.0,
            burst: 3,
            limit_loopback: false,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t1 = gate.admit(a).unwrap();
        let t2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), IpRefusal::TooManyOpen);
        drop(t1);
        let _t3 = gate.admit(a).unwrap();
        drop(t2);
        assert_eq!(
            gate.admit(a).unwrap_err(),
            IpRefusal::TooFast,
            "3 in a burst"
        );
        assert!(
            gate.admit("10.0.0.2".parse().unwrap()).is_ok(),
            "per address"
        );
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let many: Vec<_> = (0..10).map(|_| gate.admit(local).unwrap()).collect();
        assert_eq!(many.len(), 10, "loopback is not limited by default");
    }
}
