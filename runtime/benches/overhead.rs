//! What a guarded call costs over the plain async fn, with the in-memory store: the same run, the same
//! body, a distinct key per call (`dedup = "none"`), so every guarded call really claims, completes and
//! appends a chained log entry. For reference, the same plain fn under `backon`'s retry (exponential
//! backoff, no key, no claim, no log), measured in the same run.
//!
//! `cargo bench -p actguard --bench overhead`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actguard::{Agent, Classify, MemoryStore, Run, agent_action};
use backon::{ExponentialBuilder, Retryable};
use criterion::{Criterion, criterion_group, criterion_main};

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

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let agent = rt.block_on(async { Agent::builder().store(MemoryStore::new()).build().unwrap() });
    let run = agent.start_run();
    let next = AtomicU64::new(0);

    let mut group = c.benchmark_group("overhead");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("plain_async_fn", |b| {
        b.to_async(&rt)
            .iter(|| plain(&run, next.fetch_add(1, Ordering::Relaxed)))
    });
    group.bench_function("plain_async_fn_backon_retry", |b| {
        b.to_async(&rt).iter(|| {
            let (run, id) = (&run, next.fetch_add(1, Ordering::Relaxed));
            (move || plain(run, id)).retry(ExponentialBuilder::default())
        })
    });
    group.bench_function("guarded_memory_store", |b| {
        b.to_async(&rt)
            .iter(|| guarded(&run, next.fetch_add(1, Ordering::Relaxed)))
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
