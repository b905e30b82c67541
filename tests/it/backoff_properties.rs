//! Backoff properties: every delay lies within its AWS formula's bounds, and the guarded retry schedule
//! never runs past `max_elapsed`, whatever the policy.

use std::time::Duration;

use actguard::testing::{DownstreamError, guarded_call, spec};
use actguard::{ActionError, Backoff, Effect, Jitter, Policy, Route};
use actguard_tests::World;
use proptest::prelude::*;
use serde_json::json;

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        Just(Jitter::None),
    ]
}

/// `min(cap, base·2ⁿ)`.
fn ceiling(base: Duration, cap: Duration, n: u32) -> Duration {
    let e = base.as_nanos().saturating_mul(1u128 << n.min(100));
    Duration::from_nanos(e.min(cap.as_nanos()) as u64)
}

proptest! {
    #[test]
    fn every_delay_is_within_its_formula(
        base_ms in 1u64..5_000,
        cap_factor in 1u64..1_000,
        jitter in jitter(),
        seed in any::<u64>(),
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = base * cap_factor as u32;
        let mut prev = base;
        for (n, d) in Backoff::seeded(base, cap, jitter, seed).take(40).enumerate() {
            let e = ceiling(base, cap, n as u32);
            match jitter {
                Jitter::Full => prop_assert!(d <= e, "full: {d:?} > {e:?}"),
                Jitter::Equal => prop_assert!(d >= e / 2 && d <= e, "equal: {d:?} not in [e/2, {e:?}]"),
                Jitter::Decorrelated => {
                    prop_assert!(d >= base.min(cap) && d <= cap && d <= (prev * 3).max(base),
                        "decorrelated: {d:?} after {prev:?}");
                }
                Jitter::None => prop_assert_eq!(d, e),
            }
            prev = d;
        }
    }

    #[test]
    fn the_guarded_retry_schedule_never_exceeds_max_elapsed(
        retries in 0u32..40,
        max_elapsed_ms in 0u64..120_000,
        base_ms in 1u64..2_000,
        cap_factor in 1u32..100,
        jitter in jitter(),
        retry_after_ms in prop::option::of(0u64..20_000),
        seed in any::<u64>(),
    ) {
        let policy = Policy {
            retries,
            max_elapsed: Duration::from_millis(max_elapsed_ms),
            backoff_base: Duration::from_millis(base_ms),
            backoff_cap: Duration::from_millis(base_ms) * cap_factor,
            jitter,
            dedup: None,
            on_transient: Route::Retry,
            ..Policy::DEFAULT
        };
        let spec = spec("always_unavailable", Effect::Write, policy.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (elapsed, attempts, result) = rt.block_on(async move {
            let w = World::with(|b| b.jitter_seed(seed));
            let run = w.agent.start_run();
            let start = tokio::time::Instant::now();
            let mut attempts = 0u32;
            let result: Result<(), ActionError<DownstreamError>> =
                guarded_call(&run, spec, Some("k"), Some("r"), json!({}), |_run| {
                    attempts += 1;
                    async move {
                        Err(DownstreamError::Unavailable {
                            retry_after: retry_after_ms.map(Duration::from_millis),
                        })
                    }
                })
                .await;
            (start.elapsed(), attempts, result)
        });
        prop_assert!(elapsed <= policy.max_elapsed, "{elapsed:?} > {:?}", policy.max_elapsed);
        prop_assert!(attempts >= 1 && attempts <= retries + 1);
        match result {
            Err(ActionError::DeadLettered { attempts: n, .. }) => prop_assert_eq!(n, attempts),
            other => prop_assert!(false, "expected dead-letter, got {other:?}"),
        }
    }
}
