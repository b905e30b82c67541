//! A live call keeps its claim, however long it runs: the guarded call renews its claim on the key and
//! its lease on the record while the body runs, so a second call on the same record waits and a second
//! caller of the same key never runs the body again; a claim that cannot be renewed is seen by the body
//! and ends the call saying the effect may have happened. Each test runs on `MemoryStore` and on a
//! `SqliteStore` file.

use std::sync::Arc;
use std::time::Duration;

use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{ActionError, Agent, MemoryStore, Ran, Run, SqliteStore, StoreError, agent_action};
use actguard_tests::FaultyStore;
use tempfile::TempDir;

/// A job that takes 2.5 s downstream, with a 1 s lease.
#[agent_action(key = "long:{job}", record = "{account}", lease = "1s", dedup = "none")]
async fn long_job(
    run: &Run,
    #[dep] plant: &Downstream,
    job: u32,
    account: &str,
) -> Result<Receipt, DownstreamError> {
    plant.write_for(run.attempt()).await
}

/// Like `long_job`, but the body checks its claim before it writes, as a careful body does.
#[agent_action(
    key = "careful:{job}",
    record = "{account}",
    lease = "1s",
    dedup = "none"
)]
async fn careful_job(
    run: &Run,
    #[dep] plant: &Downstream,
    job: u32,
    account: &str,
) -> Result<Receipt, DownstreamError> {
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    if run.attempt().claim_lost() {
        return Err(DownstreamError::Conflict("claim lost: not writing".into()));
    }
    plant.write_for(run.attempt()).await
}

/// A store's name, the faulty wrapper the first worker's agent uses, the two workers' agents, and
/// the directory a file store lives in.
type Worker = (
    &'static str,
    Arc<FaultyStore>,
    Agent,
    Agent,
    Option<TempDir>,
);

/// An agent on each store, over a [`FaultyStore`] the test can reach; a second agent on the same
/// store plays another worker.
fn workers() -> Vec<Worker> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("actguard.db")).unwrap();
    // The second worker shares the first one's store: one writer per file, so a renewal never waits
    // for another connection's lock (with the clock paused, such a wait would outlast the lease).
    [
        ("memory", FaultyStore::new(MemoryStore::new()), None),
        ("sqlite", FaultyStore::new(sqlite), Some(dir)),
    ]
    .into_iter()
    .map(|(name, first, dir)| {
        let second = Arc::new(first.another());
        let first = Arc::new(first);
        // One clock for both workers: each agent's own clock would start at the wall time it was
        // built, and on a busy machine the second one, built later, would run ahead of the first on
        // the paused clock by that delay: clock skew that ends the first worker's lease early.
        let clock: Arc<dyn actguard::Clock> = Arc::new(actguard::TokioClock::new());
        let agent = |store: Arc<FaultyStore>| {
            Agent::builder()
                .shared_store(store)
                .clock(clock.clone())
                .claim_wait(Duration::from_secs(60))
                .build()
                .unwrap()
        };
        (name, first.clone(), agent(first), agent(second), dir)
    })
    .collect()
}

#[tokio::test(start_paused = true)]
async fn a_call_longer_than_its_lease_keeps_the_record_and_the_key() {
    for (name, store, agent, other, _dir) in workers() {
        let plant = Downstream::new().with_latency(Duration::from_millis(2_500));
        let first = tokio::spawn({
            let (run, plant) = (agent.start_run(), plant.clone());
            async move { long_job(&run, &plant, 1, "ACC-1").await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Another worker, 1 s later: the same record under another key, and the same key again.
        let (run_b, run_c) = (other.start_run(), other.start_run());
        let (other_key, same_key) = tokio::join!(
            long_job(&run_b, &plant, 2, "ACC-1"),
            long_job(&run_c, &plant, 1, "ACC-1"),
        );
        let first = first
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        other_key.unwrap_or_else(|e| panic!("{name}: {e}"));
        // The same key answered the first call's stored result instead of running again.
        assert_eq!(same_key.unwrap(), first, "{name}");
        assert_eq!(
            plant.max_in_flight("ACC-1"),
            1,
            "{name}: writes on one record overlapped"
        );
        assert_eq!(plant.effects("ACC-1"), 2, "{name}");
        assert!(
            store.renewals() >= 2,
            "{name}: {} renewals",
            store.renewals()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_claim_that_cannot_be_renewed_is_seen_by_the_body_and_ends_unrecorded() {
    for (name, store, agent, other, _dir) in workers() {
        let plant = Downstream::new();
        store.unreachable_renewals(true);
        let first = tokio::spawn({
            let (run, plant) = (agent.start_run(), plant.clone());
            async move { careful_job(&run, &plant, 1, "ACC-2").await }
        });
        // The first worker's lease runs out at 1 s: another worker takes the key over and acts.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let taken_over = tokio::spawn({
            let (run, plant) = (other.start_run(), plant.clone());
            async move { careful_job(&run, &plant, 1, "ACC-2").await }
        });
        let error = first.await.unwrap().unwrap_err();
        match &error {
            ActionError::Unrecorded { error, .. } => {
                assert!(
                    matches!(error, StoreError::ClaimLost { .. }),
                    "{name}: {error:?}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(error.ran(), Ran::Unrecorded, "{name}");
        taken_over
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The body saw its claim lost and did not write: only the taker's effect landed.
        assert_eq!(plant.effects("ACC-2"), 1, "{name}");
    }
}
