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

/// A body that waits once (as any body doing I/O does), so the call's claim renewal is armed: its
/// timer is created at the body's first `Pending`.
async fn plain_waiting(run: &Run, id: u64) -> Result<u64, BenchError> {
    tokio::task::yield_now().await;
    plain(run, id).await
}

#[agent_action(key = "bench_wait:{id}", dedup = "none")]
async fn guarded_waiting(run: &Run, id: u64) -> Result<u64, BenchError> {
    tokio::task::yield_now().await;
    let _ = run;
    if id == u64::MAX {
        return Err(BenchError::Unavailable);
    }
    Ok(black_box(id).wrapping_mul(2))
}

/// Keys already in the store of the large-store case.
const LARGE_STORE: u64 = 100_000;

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
    // `n` calls of `$action`, on a fresh agent and store every `SMALL_STORE` calls (their creation and
    // drop timed too).
    macro_rules! calls_per_store {
        ($action:ident, $n:expr) => {
            rt.block_on(async {
                let start = Instant::now();
                let mut done = 0;
                while done < $n {
                    let run = fresh_run_in();
                    for _ in 0..SMALL_STORE.min($n - done) {
                        black_box($action(&run, id()).await.ok());
                    }
                    done += SMALL_STORE;
                }
                start.elapsed()
            })
        };
    }

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
            calls_per_store!(guarded, n)
        }),
        // A store that holds 100 000 keys (and their log) before the timed calls begin: the per-call
        // cost once a long-lived agent's store is large. Filled outside the timed region.
        Case::new("guarded call, MemoryStore holding 100 000 keys", |n| {
            rt.block_on(async {
                let run = fresh_run_in();
                for _ in 0..LARGE_STORE {
                    black_box(guarded(&run, id()).await.ok());
                }
                let start = Instant::now();
                for _ in 0..n {
                    black_box(guarded(&run, id()).await.ok());
                }
                start.elapsed()
            })
        }),
        // The claim renewal's cost: a body that waits once arms the renewal timer (a short call's
        // renewal never fires). Compare with the same plain fn waiting once.
        Case::new("plain async fn, waits once", |n| {
            let run = fresh_run(&rt);
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    black_box(plain_waiting(&run, id()).await.ok());
                }
                start.elapsed()
            })
        }),
        Case::new("guarded call, waits once, 1000 calls per store", |n| {
            calls_per_store!(guarded_waiting, n)
        }),
    ];
    let stats = support::compare(&mut cases, support::rounds(15), Duration::from_millis(300));
    support::print_times("per-call time (ratio to the plain async fn)", &stats, 0);
    println!(
        "\nadded by the guarded call: {} per call (one growing store), {} per call (1000 calls per store), {} per call (a store holding 100 000 keys)",
        support::human_ns(stats[2].median_ns - stats[0].median_ns),
        support::human_ns(stats[3].median_ns - stats[0].median_ns),
        support::human_ns(stats[4].median_ns - stats[0].median_ns)
    );
    println!(
        "added by the guarded call to a body that waits once (its claim renewal armed): {} per call (1000 calls per store)",
        support::human_ns(stats[6].median_ns - stats[5].median_ns)
    );
}
