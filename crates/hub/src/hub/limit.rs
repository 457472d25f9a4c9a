//! A connection's request rate: a token bucket of `burst` tokens refilled at
//! `per_second`. A request over it is refused (`rate-limited`); a client
//! that keeps sending while refused — `burst` refusals in a row — is
//! disconnected.

use std::time::Instant;

/// The limit on requests per connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second; 0 turns the limit off.
    pub per_second: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 500 requests a second, bursts of 1000: no person or game loop comes
    /// near it, and a flood from one connection stops there.
    fn default() -> Self {
        RateLimit {
            per_second: 500.0,
            burst: 1000,
        }
    }
}

/// What [`Bucket::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allowed,
    /// Refuse this one.
    Refused,
    /// Refused again and again: disconnect.
    Flooding,
}

/// One connection's bucket.
#[derive(Debug)]
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
    refused_in_a_row: u32,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit) -> Bucket {
        Bucket {
            limit,
            tokens: f64::from(limit.burst),
            last: Instant::now(),
            refused_in_a_row: 0,
        }
    }

    /// Takes a token for one request.
    pub(crate) fn take(&mut self) -> Verdict {
        if self.limit.per_second <= 0.0 {
            return Verdict::Allowed;
        }
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.limit.per_second;
        self.tokens = (self.tokens + refill).min(f64::from(self.limit.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            return Verdict::Allowed;
        }
        self.refused_in_a_row += 1;
        if self.refused_in_a_row > self.limit.burst.max(1) {
            Verdict::Flooding
        } else {
            Verdict::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_refusals_then_disconnect() {
        let mut b = Bucket::new(RateLimit {
            per_second: 1.0,
            burst: 3,
        });
        let got: Vec<Verdict> = (0..8).map(|_| b.take()).collect();
        use Verdict::*;
        assert_eq!(
            got,
            vec![Allowed, Allowed, Allowed, Refused, Refused, Refused, Flooding, Flooding]
        );
        let mut off = Bucket::new(RateLimit {
            per_second: 0.0,
            burst: 0,
        });
        assert!((0..10_000).all(|_| off.take() == Allowed));
    }
}
