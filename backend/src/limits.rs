//! Abuse limits that are not a single comparison: WebSocket connections per client IP, and a
//! token bucket for messages per second per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// The work a connection's updates cost its document beyond what their size explains.
///
/// Integrating an update usually costs time in proportion to its bytes, but concurrent inserts
/// at one position cost time in proportion to the inserts already there (YATA compares each
/// new one with its siblings): 4,000 one-character inserts from 4,000 client ids (68 KB) took
/// 2.7 ms into an empty spot and 958 ms next to 4,000 others, and it grows with every batch.
/// Each update is allowed [`WorkDebt::BASE`] plus [`WorkDebt::PER_BYTE`] per byte; time beyond
/// that is debt, which is paid back at [`WorkDebt::REPAY`] of real time. A connection whose
/// debt passes [`WorkDebt::LIMIT`] is closed. Honest updates stay far inside their allowance
/// (a keystroke takes microseconds; a 1 MB offline catch-up well under its 2 s).
#[derive(Debug)]
pub struct WorkDebt {
    debt: Duration,
    at: Instant,
}

impl WorkDebt {
    pub const BASE: Duration = Duration::from_millis(1);
    pub const PER_BYTE: Duration = Duration::from_micros(2);
    pub const LIMIT: Duration = Duration::from_secs(1);
    /// Debt repaid per second.
    pub const REPAY: f64 = 0.1;

    pub fn new(now: Instant) -> Self {
        WorkDebt {
            debt: Duration::ZERO,
            at: now,
        }
    }

    /// Charges an update of `bytes` that took `spent` to integrate; true once the debt is over
    /// the limit.
    pub fn charge(&mut self, spent: Duration, bytes: usize, now: Instant) -> bool {
        let repaid = now.saturating_duration_since(self.at).mul_f64(Self::REPAY);
        self.at = now;
        let allowance = Self::BASE + Self::PER_BYTE * u32::try_from(bytes).unwrap_or(u32::MAX);
        self.debt = self.debt.saturating_sub(repaid) + spent.saturating_sub(allowance);
        self.debt > Self::LIMIT
    }

    pub fn debt(&self) -> Duration {
        self.debt
    }
}

#[cfg(test)]
mod work_tests {
    use super::*;

    #[test]
    fn only_work_beyond_the_allowance_is_debt_and_it_is_repaid() {
        let t0 = Instant::now();
        let mut w = WorkDebt::new(t0);
        // A keystroke, a big catch-up: inside their allowances.
        assert!(!w.charge(Duration::from_micros(50), 20, t0));
        assert!(!w.charge(Duration::from_millis(900), 1 << 20, t0));
        assert_eq!(w.debt(), Duration::ZERO);
        // 68 KB that took 958 ms: 958 - 1 - 136 = 821 ms of debt.
        assert!(!w.charge(Duration::from_millis(958), 68_000, t0));
        assert_eq!(w.debt(), Duration::from_millis(821));
        // Ten seconds later a second of it is repaid: the next one starts clean.
        let t1 = t0 + Duration::from_secs(10);
        assert!(!w.charge(Duration::ZERO, 0, t1));
        assert_eq!(w.debt(), Duration::ZERO);
        // Two costly ones in a row pass the limit.
        assert!(!w.charge(Duration::from_millis(958), 68_000, t1));
        assert!(w.charge(Duration::from_millis(958), 68_000, t1));
    }
}
