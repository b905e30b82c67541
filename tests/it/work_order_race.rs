//! The unreachable work-order state: three parallel calls on one work order each believed they were
//! the writer. Guarded, calls on one record are serialized by a lease, and its fencing token lets the
//! downstream (and the store) reject a writer whose lease was taken over.

use std::time::Duration;

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{ActionError, Run, Store, StoreError, agent_action};
use actguard_tests::{FaultyStore, World};

/// A worker frozen from the store's point of view (a long GC pause, a suspended VM, a partition): its
/// agent shares the world's store, but none of its renewals arrives.
fn frozen_worker(w: &World) -> actguard::Agent {
    let store = FaultyStore::new(w.store.clone());
    store.unreachable_renewals(true);
    actguard::Agent::builder().store(store).build().unwrap()
}
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    order: String,
    step: u32,
}

fn step(n: u32) -> Step {
    Step {
        order: "WO-9".into(),
        step: n,
    }
}

#[agent_action(
    key = "advance:{s.order}:{s.step}",
    record = "{s.order}",
    dedup = "none"
)]
async fn advance(
    run: &Run,
    #[dep] plant: &Downstream,
    s: &Step,
) -> Result<Receipt, DownstreamError> {
    plant.write_for(run.attempt()).await
}

/// A worker that stalls (a long GC pause, a suspended VM) before it writes, longer than its lease.
#[agent_action(
    key = "advance:{s.order}:{s.step}",
    record = "{s.order}",
    name = "advance_stalled",
    dedup = "none",
    lease = "1s",
    retries = 1
)]
async fn advance_after(
    run: &Run,
    #[dep] plant: &Downstream,
    #[dep] stall: Duration,
    s: &Step,
) -> Result<Receipt, DownstreamError> {
    tokio::time::sleep(stall).await;
    plant.write_for(run.attempt()).await
}

/// Like `advance_after`, but the stalled worker has nothing left to write: it only records its result.
#[agent_action(
    key = "mark:{s.order}:{s.step}",
    record = "{s.order}",
    dedup = "none",
    lease = "1s"
)]
async fn mark_after(
    run: &Run,
    #[dep] stall: Duration,
    s: &Step,
) -> Result<Option<u64>, DownstreamError> {
    tokio::time::sleep(stall).await;
    Ok(run.attempt().fencing_token())
}

#[tokio::test(start_paused = true)]
async fn three_unguarded_parallel_writers_overlap_at_the_downstream() {
    let plant = Downstream::new().with_latency(Duration::from_secs(2));
    let (a, b, c) = tokio::join!(
        plant.write("WO-9", Some("1"), None),
        plant.write("WO-9", Some("2"), None),
        plant.write("WO-9", Some("3"), None),
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert_eq!(plant.max_in_flight("WO-9"), 3);
    assert_eq!(plant.overlaps(), 2);
}

#[tokio::test(start_paused = true)]
async fn three_concurrent_calls_on_one_work_order_never_overlap_at_the_downstream() {
    let w = World::new();
    let run = w.agent.start_run();
    let plant = Downstream::new().with_latency(Duration::from_secs(2));
    let (s1, s2, s3) = (step(1), step(2), step(3));

    let (a, b, c) = tokio::join!(
        advance(&run, &plant, &s1),
        advance(&run, &plant, &s2),
        advance(&run, &plant, &s3),
    );

    let mut tokens = [a.unwrap(), b.unwrap(), c.unwrap()].map(|r| r.effect);
    tokens.sort();
    assert_eq!(tokens, [1, 2, 3]);
    assert_eq!(plant.effects("WO-9"), 3);
    assert_eq!(plant.max_in_flight("WO-9"), 1);
    assert_eq!(plant.overlaps(), 0);
    assert_eq!(plant.highest_token("WO-9"), Some(3));
}

#[tokio::test(start_paused = true)]
async fn a_stale_fencing_token_is_rejected_by_the_downstream_after_a_takeover() {
    let w = World::new();
    let run = w.agent.start_run();
    let frozen = frozen_worker(&w).start_run();
    let plant = Downstream::new();

    // Worker A claims the work order (token 1), then stalls for 5s, unable to renew its 1s lease.
    let stalled = tokio::spawn({
        let (run, plant) = (frozen.clone(), plant.clone());
        async move { advance_after(&run, &plant, Duration::from_secs(5), &step(1)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Worker B waits for the lease to expire, takes the claim over (token 2) and writes.
    let taken_over = advance_after(&run, &plant, Duration::ZERO, &step(1))
        .await
        .unwrap();
    assert_eq!(taken_over.effect, 1);
    assert_eq!(plant.highest_token("WO-9"), Some(2));

    // A wakes up and writes with token 1: the downstream rejects it, and the store refuses to record
    // anything for a claim that was taken over.
    let stale = stalled.await.unwrap();
    assert!(
        matches!(stale, Err(ActionError::Unrecorded { error: StoreError::ClaimLost { ref key }, .. }) if key == "advance:WO-9:1"),
        "{stale:?}"
    );
    assert_eq!(plant.stale_rejections(), 1);
    assert_eq!(plant.effects("WO-9"), 1);
    assert_eq!(
        w.store.current_fencing_token("WO-9").await.unwrap(),
        Some(2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_result_from_a_claim_that_was_taken_over_is_refused_by_the_store() {
    let w = World::new();
    let run = w.agent.start_run();
    let frozen = frozen_worker(&w).start_run();
    let stalled = tokio::spawn({
        let run = frozen.clone();
        async move { mark_after(&run, Duration::from_secs(5), &step(2)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let fresh = mark_after(&run, Duration::ZERO, &step(2)).await.unwrap();
    assert_eq!(fresh, Some(2));

    let stale = stalled.await.unwrap();
    assert!(matches!(
        stale,
        Err(ActionError::Unrecorded {
            error: StoreError::ClaimLost { .. },
            ..
        })
    ));
    // The stored result is the fresh worker's.
    assert_eq!(
        mark_after(&run, Duration::ZERO, &step(2)).await.unwrap(),
        Some(2)
    );
}
