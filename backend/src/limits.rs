//! Abuse limits that are not a single comparison: WebSocket connections per client IP, and a
//! token bucket for messages per second per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Open WebSocket connections per client IP.
#[derive(Default)]
pub struct IpLimiter {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Holds one of an IP's connection slots until dropped.
pub struct IpSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl IpLimiter {
    /// A slot for `ip`, or `None` if it already holds `max` (0: no limit).
    pub fn acquire(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            counts: self.counts.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst` (full at the start).
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32) -> Option<TokenBucket> {
        (rate > 0).then(|| {
            let burst = f64::from(burst.max(rate));
            TokenBucket {
                rate: f64::from(rate),
                burst,
                tokens: burst,
                last: Instant::now(),
            }
        })
    }

    /// Takes `n` tokens; false if there were not enough.
    pub fn take(&mut self, n: usize) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n as f64;
        self.tokens >= 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_slots_are_counted_and_released() {
        let l = IpLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = l.acquire(ip, 2).unwrap();
        let _b = l.acquire(ip, 2).unwrap();
        assert!(l.acquire(ip, 2).is_none());
        assert!(l.acquire("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(l.acquire(ip, 2).is_some());
    }

    #[test]
    fn bucket_allows_the_burst_then_refuses() {
        let mut b = TokenBucket::new(10, 100).unwrap();
        assert!(b.take(100));
        assert!(!b.take(5));
        assert!(TokenBucket::new(0, 10).is_none());
    }
}
