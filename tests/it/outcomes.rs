//! Errors that say whether the action ran: a lost completion reply converges, a result that cannot be
//! stored never lets the body run again, and every error tells "did not run", "ran, recorded" and
//! "ran or may have run, unrecorded" apart. Each test runs on `MemoryStore` and on a `SqliteStore` file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use actguard::testing::{Downstream, DownstreamError, Receipt, log};
use actguard::{
    ActionError, Agent, MemoryStore, Outcome, QueueKind, Ran, Run, SqliteStore, StoreError,
    agent_action,
};
use actguard_tests::FaultyStore;
use tempfile::TempDir;

#[agent_action(
    key = "pay:{invoice}",
    name = "pay_invoice",
    record = "{invoice}",
    retries = 2,
    backoff = "1s..1s",
    jitter = none
)]
async fn pay(
    run: &Run,
    #[dep] bank: &Downstream,
    invoice: &str,
) -> Result<Receipt, DownstreamError> {
    run.attempt().before(&format!("{invoice} unpaid"));
    run.attempt().after(&format!("{invoice} paid"));
    bank.write_for(run.attempt()).await
}

/// An action whose result is a number JSON cannot hold (above `u64::MAX`).
#[agent_action(key = "mint:{serial}", record = "{serial}")]
async fn mint(run: &Run, #[dep] calls: &AtomicU32, serial: u32) -> Result<u128, DownstreamError> {
    let _ = run;
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(u128::from(u64::MAX) + u128::from(serial))
}

/// A faulty wrapper of each store, with the agent over it.
fn stores() -> Vec<(&'static str, Arc<FaultyStore>, Agent, Option<TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("actguard.db")).unwrap();
    [
        ("memory", FaultyStore::new(MemoryStore::new()), None),
        ("sqlite", FaultyStore::new(sqlite), Some(dir)),
    ]
    .into_iter()
    .map(|(name, store, dir)| {
        let store = Arc::new(store);
        let agent = Agent::builder()
            .shared_store(store.clone())
            .build()
            .unwrap();
        (name, store, agent, dir)
    })
    .collect()
}

#[tokio::test(start_paused = true)]
async fn a_lost_completion_reply_converges_instead_of_running_again() {
    for (name, store, agent, _dir) in stores() {
        let bank = Downstream::new();
        let run = agent.start_run();
        store.lose_complete_replies(1);
        let receipt = pay(&run, &bank, "INV-1")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(bank.effects("INV-1"), 1, "{name}");
        // One completion in the log, and the key replays it.
        let steps: Vec<Outcome> = log(&agent).await.iter().map(|e| e.entry.outcome).collect();
        assert_eq!(steps, [Outcome::Succeeded], "{name}");
        assert_eq!(pay(&run, &bank, "INV-1").await.unwrap(), receipt, "{name}");
        assert_eq!(bank.effects("INV-1"), 1, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_result_that_cannot_be_stored_dead_letters_the_key_and_never_runs_it_again() {
    for (name, _store, agent, _dir) in stores() {
        let calls = AtomicU32::new(0);
        let run = agent.start_run();
        let error = mint(&run, &calls, 1).await.unwrap_err();
        let ActionError::ResultNotStored { key, queue, .. } = &error else {
            panic!("{name}: {error:?}");
        };
        assert_eq!(
            (key.as_str(), queue.kind),
            ("mint:1", QueueKind::DeadLetter)
        );
        assert_eq!(error.ran(), Ran::Recorded, "{name}");
        // A later call, even after the lease would have run out, does not run the body again.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(
            matches!(
                mint(&agent.start_run(), &calls, 1).await,
                Err(ActionError::PreviouslyFailed { .. })
            ),
            "{name}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{name}");
        let last = log(&agent).await.pop().unwrap();
        assert_eq!(last.entry.outcome, Outcome::DeadLettered, "{name}");
        assert!(
            last.entry
                .message
                .as_deref()
                .is_some_and(|m| m.contains("ran and succeeded")),
            "{name}: {:?}",
            last.entry.message
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_completion_the_store_keeps_refusing_dead_letters_the_key() {
    for (name, store, agent, _dir) in stores() {
        let bank = Downstream::new();
        store.refuse_completes(10);
        let error = pay(&agent.start_run(), &bank, "INV-2").await.unwrap_err();
        assert!(
            matches!(error, ActionError::ResultNotStored { .. }),
            "{name}: {error:?}"
        );
        assert_eq!(error.ran(), Ran::Recorded, "{name}");
        // The dead-letter entry keeps the states the body captured: blast radius and revert see it.
        let last = log(&agent).await.pop().unwrap();
        assert_eq!(last.entry.outcome, Outcome::DeadLettered, "{name}");
        assert_eq!(
            (last.entry.before.clone(), last.entry.after.clone()),
            (
                Some(serde_json::json!("INV-2 unpaid")),
                Some(serde_json::json!("INV-2 paid"))
            ),
            "{name}"
        );
        assert!(matches!(
            pay(&agent.start_run(), &bank, "INV-2").await,
            Err(ActionError::PreviouslyFailed { .. })
        ));
        assert_eq!(bank.effects("INV-2"), 1, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_after_the_body_ran_says_the_effect_may_have_happened() {
    for (name, store, agent, _dir) in stores() {
        let bank = Downstream::new();
        store.unreachable_completes(10);
        let error = pay(&agent.start_run(), &bank, "INV-3").await.unwrap_err();
        match &error {
            ActionError::Unrecorded {
                key,
                attempts,
                error,
            } => {
                assert_eq!((key.as_str(), *attempts), ("pay:INV-3", 1), "{name}");
                assert!(matches!(error, StoreError::Unavailable(_)), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(error.ran(), Ran::Unrecorded, "{name}");
        assert_eq!(bank.effects("INV-3"), 1, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_halt_says_whether_an_attempt_of_the_call_ran() {
    for (name, _store, agent, _dir) in stores() {
        let bank = Downstream::new().with_latency(Duration::ZERO);
        let run = agent.start_run();
        // An ambiguous write: the acknowledgement is lost, the call waits to retry, the run halts.
        bank.fail_next(DownstreamError::AckTimeout);
        let call = tokio::spawn({
            let (run, bank) = (run.clone(), bank.clone());
            async move { pay(&run, &bank, "INV-4").await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.halt("operator stop").await.unwrap();
        let error = call.await.unwrap().unwrap_err();
        assert!(
            matches!(error, ActionError::Halted { attempts: 1, .. }),
            "{name}: {error:?}"
        );
        assert_eq!(error.ran(), Ran::Recorded, "{name}");
        assert!(
            error.to_string().contains("after 1 attempt"),
            "{name}: {error}"
        );

        // The next call of the halted run did not run at all.
        let refused = pay(&run, &bank, "INV-5").await.unwrap_err();
        assert!(
            matches!(refused, ActionError::Halted { attempts: 0, .. }),
            "{name}"
        );
        assert_eq!(refused.ran(), Ran::No, "{name}");
    }
}
