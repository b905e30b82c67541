//! Time as the guarded call sees it: injectable, so tests run on tokio's paused clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::Millis;

/// Unix time in milliseconds for stores (leases, dedup windows, log times).
pub trait Clock: Send + Sync + 'static {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> Millis;

    /// Now, both as tokio's monotonic instant (what the retry budget is measured with) and in Unix
    /// milliseconds. The default reads each; a clock that derives one from the other reads once.
    fn now(&self) -> (tokio::time::Instant, Millis) {
        (tokio::time::Instant::now(), self.now_ms())
    }
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

impl TokioClock {
    fn ms_at(&self, instant: tokio::time::Instant) -> Millis {
        self.base_wall_ms + instant.duration_since(self.base_instant).as_millis() as Millis
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> Millis {
        self.ms_at(tokio::time::Instant::now())
    }

    fn now(&self) -> (tokio::time::Instant, Millis) {
        let now = tokio::time::Instant::now();
        (now, self.ms_at(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `now` reads once for both: the milliseconds are those of the instant it answers.
    #[tokio::test(start_paused = true)]
    async fn now_answers_the_instant_and_its_milliseconds_together() {
        let clock = TokioClock::new();
        let (start, start_ms) = clock.now();
        assert_eq!(start_ms, clock.now_ms());
        tokio::time::sleep(Duration::from_millis(1_250)).await;
        let (later, later_ms) = clock.now();
        assert_eq!(later - start, Duration::from_millis(1_250));
        assert_eq!(later_ms - start_ms, 1_250);
        assert_eq!(later_ms, clock.now_ms());
    }
}
