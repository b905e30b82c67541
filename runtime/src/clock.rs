//! Time as the guarded call sees it: injectable, so tests run on tokio's paused clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::Millis;

/// Unix time in milliseconds for stores (leases, dedup windows, log times).
pub trait Clock: Send + Sync + 'static {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> Millis;
}

/// The default clock: the wall time at creation, advanced by `tokio::time::Instant`.
///
/// In production it follows the wall clock; under `tokio::time::pause()` it moves only when the test
/// advances time, so dedup windows and leases can be tested without waiting.
#[derive(Debug, Clone)]
pub struct TokioClock {
    base_wall_ms: Millis,
    base_instant: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting at the current wall time.
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        TokioClock {
            base_wall_ms: wall.as_millis() as Millis,
            base_instant: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> Millis {
        self.base_wall_ms + self.base_instant.elapsed().as_millis() as Millis
    }
}
