//! The store's clock, injectable: dead-node marking, the memory store's expiry and the unix
//! time of memcached's absolute expirations all read it, so tests move time on instead of
//! sleeping. (Per-operation I/O timeouts use tokio's timer.)

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time.
pub trait Clock: Send + Sync + Debug {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Seconds since the unix epoch.
    fn unix_now(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]); for tests.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    unix_start: u64,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock at the real time of its creation, standing still.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            unix_start: SystemClock.unix_now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut o) = self.offset.lock() {
            *o += by;
        }
    }

    fn offset(&self) -> Duration {
        self.offset.lock().map(|o| *o).unwrap_or_default()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }

    fn unix_now(&self) -> u64 {
        self.unix_start + self.offset().as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new();
        let (t0, u0) = (c.now(), c.unix_now());
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now() - t0, Duration::from_secs(5));
        assert_eq!(c.unix_now(), u0 + 5);
    }
}
