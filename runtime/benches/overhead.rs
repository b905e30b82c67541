//! What a guarded call costs over the plain async fn, with the in-memory store: the same run, the same
//! body, a distinct key per call (`dedup = "none"`), so every guarded call really claims, completes and
//! appends a chained log entry. For reference, the same plain fn under `backon`'s retry (exponential
//! backoff, no key, no claim, no log), measured in the same run.
//!
//! `cargo bench -p actguard --bench overhead`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actguard::{Agent, Classify, MemoryStore, Run, agent_action};

mod support;

use backon::{ExponentialBuilder, Retryable};
use support::Case;

#[derive(Debug, Classify, thiserror::Error)]
enum BenchError {
    #[error("unavailable")]
    #[classify(transient)]
    Unavailable,
}

async fn plain(run: &Run, id: u64) -> Result<u64, BenchError> {
    let _ = run;
    if id == u64::MAX {
        return Err(BenchError::Unavailable);
    }
    Ok(black_box(id).wrapping_mul(2))
}

#[agent_action(key = "bench:{id}", dedup = "none")]
async fn guarded(run: &Run, id: u64) -> Result<u64, BenchError> {
    let _ = run;
    if id == u64::MAX {
        return Err(BenchError::Unavailable);
    }
    Ok(black_box(id).wrapping_mul(2))
}

/// A fresh agent on a fresh in-memory store for each round, so every round starts from the same state
/// instead of an ever-growing store.
fn fresh_run(rt: &tokio::runtime::Runtime) -> Run {
    rt.block_on(async { fresh_run_in() })
}

/// Calls per store in the bounded-store case.
const SMALL_STORE: u64 = 1000;

/// A fresh agent on a fresh in-memory store, from inside the runtime.
fn fresh_run_in() -> Run {
    Agent::builder()
        .store(MemoryStore::new())
        .build()
        .unwrap()
        .start_run()
}

fn main() {
    if support::filtered_out("overhead") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let next = AtomicU64::new(0);
    let id = || next.fetch_add(1, Ordering::Relaxed);

    let mut cases = vec![
        Case::new("plain async fn", |n| {
            let run = fresh_run(&rt);
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    black_box(plain(&run, id()).await.ok());
                }
                start.elapsed()
            })
        }),
        Case::new("plain async fn under backon retry", |n| {
            let run = fresh_run(&rt);
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    let (run, id) = (&run, id());
                    let r = (move || plain(run, id))
                        .retry(ExponentialBuilder::default())
                        .await;
                    black_box(r.ok());
                }
                start.elapsed()
            })
        }),
        Case::new("guarded call, MemoryStore", |n| {
            let run = fresh_run(&rt);
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    black_box(guarded(&run, id()).await.ok());
                }
                start.elapsed()
            })
        }),
        // The same calls, on a store that never holds more than `SMALL_STORE` actions: a fresh agent
        // and store every `SMALL_STORE` calls, their creation and drop inside the timed region. The
        // case above lets one store grow to every call of the round (tens of thousands of log
        // entries, keys and marks), whose memory traffic is a good part of its time; this one shows
        // the per-call cost at the size of a typical run.
        Case::new("guarded call, MemoryStore, 1000 calls per store", |n| {
            rt.block_on(async {
                let start = Instant::now();
                let mut done = 0;
                while done < n {
                    let run = fresh_run_in();
                    for _ in 0..SMALL_STORE.min(n - done) {
                        black_box(guarded(&run, id()).await.ok());
                    }
                    done += SMALL_STORE;
                }
                start.elapsed()
            })
        }),
    ];
    let stats = support::compare(&mut cases, support::rounds(15), Duration::from_millis(300));
    support::print_times("per-call time (ratio to the plain async fn)", &stats, 0);
    println!(
        "\nadded by the guarded call: {} per call (one growing store), {} per call (1000 calls per store)",
        support::human_ns(stats[2].median_ns - stats[0].median_ns),
        support::human_ns(stats[3].median_ns - stats[0].median_ns)
    );
}
