//! Backoff delays between the attempts of a guarded call: exponential from a base to a cap, randomized
//! with one of the AWS jitter formulas ("Exponential Backoff And Jitter", AWS Architecture Blog).
//!
//! A [`Backoff`] is an endless `Iterator<Item = Duration>`: the guarded call bounds it by the action's
//! `retries` and `max_elapsed`. With `n` the number of delays already produced and
//! `e = min(cap, base·2ⁿ)`:
//!
//! | jitter | delay |
//! |---|---|
//! | `full` | `U(0, e)` |
//! | `equal` | `e/2 + U(0, e/2)` |
//! | `decorrelated` | `min(cap, U(base, 3·previous))`, with `previous = base` at first |
//! | `none` | `e` |
//!
//! ```
//! use std::time::Duration;
//! use actguard::{Backoff, Jitter};
//!
//! let delays: Vec<Duration> = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), Jitter::None)
//!     .take(5)
//!     .collect();
//! assert_eq!(delays, [100, 200, 400, 800, 1000].map(Duration::from_millis));
//! ```

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::policy::{Jitter, Policy};

/// Exponential backoff with jitter: an endless iterator of delays.
#[derive(Debug, Clone)]
pub struct Backoff<R = SmallRng> {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
    rng: R,
    /// Delays produced so far (the exponent `n`).
    n: u32,
    /// The previous delay (decorrelated jitter); `base` before the first.
    prev: Duration,
}

impl Backoff<SmallRng> {
    /// A backoff from `base` to `cap` with a randomly seeded generator.
    pub fn new(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Backoff::with_rng(base, cap, jitter, SmallRng::from_rng(&mut rand::rng()))
    }

    /// A backoff whose random delays are reproducible: the same seed gives the same delays.
    pub fn seeded(base: Duration, cap: Duration, jitter: Jitter, seed: u64) -> Self {
        Backoff::with_rng(base, cap, jitter, SmallRng::seed_from_u64(seed))
    }

    /// The backoff an action's policy declares (`backoff = "base..cap"`, `jitter = ...`).
    pub fn from_policy(policy: &Policy) -> Self {
        Backoff::new(policy.backoff_base, policy.backoff_cap, policy.jitter)
    }
}

impl<R: Rng> Backoff<R> {
    /// A backoff drawing its randomness from `rng`.
    pub fn with_rng(base: Duration, cap: Duration, jitter: Jitter, rng: R) -> Self {
        Backoff {
            base,
            cap,
            jitter,
            rng,
            n: 0,
            prev: base,
        }
    }

    /// The first delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The jitter formula.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// `min(cap, base·2ⁿ)` for the next delay, without randomness.
    pub fn ceiling(&self) -> Duration {
        exponential(self.base, self.cap, self.n)
    }

    fn uniform(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (nanos(lo), nanos(hi));
        if hi <= lo {
            return Duration::from_nanos(lo);
        }
        Duration::from_nanos(self.rng.random_range(lo..=hi))
    }
}

impl<R: Rng> Iterator for Backoff<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let e = self.ceiling();
        let delay = match self.jitter {
            Jitter::Full => self.uniform(Duration::ZERO, e),
            Jitter::Equal => {
                let half = e / 2;
                // `e - half` rather than `half` so an odd number of nanoseconds still reaches `e`.
                half + self.uniform(Duration::ZERO, e - half)
            }
            Jitter::Decorrelated => {
                let hi = self.prev.saturating_mul(3).max(self.base);
                self.uniform(self.base, hi).min(self.cap)
            }
            Jitter::None => e,
        };
        self.n = self.n.saturating_add(1);
        self.prev = delay;
        Some(delay)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

/// `min(cap, base·2ⁿ)`, without overflow.
pub(crate) fn exponential(base: Duration, cap: Duration, n: u32) -> Duration {
    let base = base.as_nanos();
    let cap_ns = cap.as_nanos();
    let e = if n >= 64 || base == 0 {
        if base == 0 { 0 } else { cap_ns }
    } else {
        base.saturating_mul(1u128 << n).min(cap_ns)
    };
    Duration::from_nanos(u64::try_from(e.min(cap_ns)).unwrap_or(u64::MAX))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn none_doubles_up_to_the_cap() {
        let d: Vec<_> = Backoff::seeded(100 * MS, 1000 * MS, Jitter::None, 1)
            .take(6)
            .collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000].map(|m| m * MS));
    }

    #[test]
    fn full_stays_below_the_exponential_ceiling() {
        let mut b = Backoff::seeded(100 * MS, 30_000 * MS, Jitter::Full, 7);
        for n in 0..40 {
            let ceiling = exponential(100 * MS, 30_000 * MS, n);
            assert!(b.next().unwrap() <= ceiling);
        }
    }

    #[test]
    fn equal_is_at_least_half_the_ceiling() {
        let mut b = Backoff::seeded(100 * MS, 30_000 * MS, Jitter::Equal, 7);
        for n in 0..40 {
            let e = exponential(100 * MS, 30_000 * MS, n);
            let d = b.next().unwrap();
            assert!(d >= e / 2 && d <= e, "{d:?} not in [{:?}, {e:?}]", e / 2);
        }
    }

    #[test]
    fn decorrelated_is_between_base_and_three_times_the_previous() {
        let mut b = Backoff::seeded(100 * MS, 30_000 * MS, Jitter::Decorrelated, 7);
        let mut prev = 100 * MS;
        for _ in 0..40 {
            let d = b.next().unwrap();
            assert!(d >= 100 * MS && d <= (prev * 3).min(30_000 * MS));
            prev = d;
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let a: Vec<_> = Backoff::seeded(MS, 1000 * MS, Jitter::Full, 3)
            .take(10)
            .collect();
        let b: Vec<_> = Backoff::seeded(MS, 1000 * MS, Jitter::Full, 3)
            .take(10)
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn huge_exponents_saturate_at_the_cap() {
        assert_eq!(exponential(MS, 5 * MS, 200), 5 * MS);
        assert_eq!(exponential(Duration::MAX, 5 * MS, 3), 5 * MS);
    }
}
