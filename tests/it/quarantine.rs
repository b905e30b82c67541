//! A security failure waits for a person, once; corrected data can act under the same key once a
//! person releases it. Each test runs on `MemoryStore` and on a `SqliteStore` file.

use actguard::testing::{Downstream, DownstreamError, Receipt, RecordingAlert, log};
use actguard::{
    ActionError, Agent, MemoryStore, Outcome, QueueKind, Run, SECURITY_QUEUE, SqliteStore,
    agent_action, ops,
};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Posting {
    id: u32,
    account: String,
    cents: i64,
}

fn posting(id: u32, cents: i64) -> Posting {
    Posting {
        id,
        account: format!("A-{id}"),
        cents,
    }
}

#[agent_action(
    key = "post:{p.id}",
    name = "post_posting",
    record = "{p.account}",
    retries = 2,
    backoff = "1s..10s",
    jitter = none,
    on_validation = route_owner,
    owner = "loan-ops",
    on_security = halt
)]
async fn post(
    run: &Run,
    #[dep] ledger: &Downstream,
    p: &Posting,
) -> Result<Receipt, DownstreamError> {
    ledger.write_for(run.attempt()).await
}

/// An agent on each store, with its alert recorder (and the directory a file store lives in).
fn agents() -> Vec<(&'static str, Agent, RecordingAlert, Option<TempDir>)> {
    let memory_alerts = RecordingAlert::new();
    let memory = Agent::builder()
        .store(MemoryStore::new())
        .alert_sink(memory_alerts.clone())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_alerts = RecordingAlert::new();
    let sqlite = Agent::builder()
        .store(SqliteStore::open(dir.path().join("actguard.db")).unwrap())
        .alert_sink(sqlite_alerts.clone())
        .build()
        .unwrap();
    vec![
        ("memory", memory, memory_alerts, None),
        ("sqlite", sqlite, sqlite_alerts, Some(dir)),
    ]
}

async fn quarantined_entry(agent: &Agent, ledger: &Downstream) -> u64 {
    ledger.fail_next(DownstreamError::Forbidden("token revoked".into()));
    let run_a = agent.start_run();
    match post(&run_a, ledger, &posting(8, 100)).await {
        Err(ActionError::SecurityHalt { queue, .. }) => {
            let queue = queue.expect("the key is quarantined");
            assert_eq!(
                (queue.kind, queue.name.as_str()),
                (QueueKind::Security, SECURITY_QUEUE)
            );
            queue.id
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_security_failure_quarantines_its_key_and_alerts_once() {
    for (store, agent, alerts, _dir) in agents() {
        let ledger = Downstream::new();
        let id = quarantined_entry(&agent, &ledger).await;
        let writes = ledger.writes();

        // A fresh run meets the key: refused without calling the downstream, and no second alert.
        let run_b = agent.start_run();
        match post(&run_b, &ledger, &posting(8, 100)).await {
            Err(ActionError::PreviouslyFailed { queue, .. }) => {
                assert_eq!((queue.id, queue.kind), (id, QueueKind::Security), "{store}")
            }
            other => panic!("{store}: {other:?}"),
        }
        assert_eq!(
            ledger.writes(),
            writes,
            "{store}: the downstream was called"
        );
        assert_eq!(alerts.alerts().len(), 1, "{store}");
        assert!(!run_b.is_halted().await.unwrap(), "{store}");

        // Other keys of the same action go on in other runs: the quarantine is the key's.
        post(&run_b, &ledger, &posting(9, 100)).await.unwrap();

        let entry = agent.store().queue_entry(id).await.unwrap().unwrap();
        assert_eq!(entry.key_text, "post:8", "{store}");
        assert_eq!(
            entry.failure_kind,
            actguard::FailureKind::Security,
            "{store}"
        );
    }
}

#[tokio::test]
async fn a_discarded_security_entry_keeps_its_key_refused() {
    for (store, agent, alerts, _dir) in agents() {
        let ledger = Downstream::new();
        let id = quarantined_entry(&agent, &ledger).await;
        ops::queue_discard(&agent, id, "sec-team", "credential abuse")
            .await
            .unwrap();
        let writes = ledger.writes();
        assert!(
            matches!(
                post(&agent.start_run(), &ledger, &posting(8, 100)).await,
                Err(ActionError::PreviouslyFailed { .. })
            ),
            "{store}"
        );
        assert_eq!(ledger.writes(), writes, "{store}");
        assert_eq!(alerts.alerts().len(), 1, "{store}");
    }
}

#[tokio::test]
async fn a_released_security_entry_lets_its_key_act_again() {
    for (store, agent, _alerts, _dir) in agents() {
        let ledger = Downstream::new();
        let id = quarantined_entry(&agent, &ledger).await;
        // Resolved without release: still refused.
        ops::queue_claim(&agent, id, "sec-team").await.unwrap();
        let writes = ledger.writes();
        ops::queue_release(&agent, id, "sec-team", "token rotated")
            .await
            .unwrap();
        post(&agent.start_run(), &ledger, &posting(8, 100))
            .await
            .unwrap_or_else(|e| panic!("{store}: {e}"));
        assert_eq!(ledger.writes(), writes + 1, "{store}");
    }
}

#[tokio::test]
async fn corrected_data_acts_under_the_same_key_once_released() {
    for (store, agent, _alerts, _dir) in agents() {
        let ledger = Downstream::new();
        ledger.fail_next(DownstreamError::Invalid("negative amount".into()));
        let run = agent.start_run();
        let id = match post(&run, &ledger, &posting(5, -100)).await {
            Err(ActionError::Routed { queue, .. }) => queue.id,
            other => panic!("{store}: {other:?}"),
        };

        // Resolving without release changes nothing for the key.
        let corrected = posting(5, 100);
        ops::queue_resolve(&agent, id, "ana", "fixed at the source")
            .await
            .unwrap();
        assert!(
            matches!(
                post(&run, &ledger, &corrected).await,
                Err(ActionError::KeyReused { .. })
            ),
            "{store}"
        );
        assert!(
            ops::queue_resolve(&agent, id, "ana", "again")
                .await
                .is_err(),
            "{store}: a resolved entry cannot be resolved again"
        );
        // A release forgotten at the resolve can follow it: the corrected payload then acts.
        ops::queue_release(&agent, id, "ana", "release after all")
            .await
            .unwrap();
        post(&run, &ledger, &corrected)
            .await
            .unwrap_or_else(|e| panic!("{store}: {e}"));
        assert_eq!(ledger.effects("A-5"), 1, "{store}");

        // A second failure, resolved with release: the corrected payload acts under the same key.
        let ledger = Downstream::new();
        ledger.fail_next(DownstreamError::Invalid("negative amount".into()));
        let id = match post(&run, &ledger, &posting(6, -100)).await {
            Err(ActionError::Routed { queue, .. }) => queue.id,
            other => panic!("{store}: {other:?}"),
        };
        ops::queue_release(&agent, id, "ana", "amount corrected")
            .await
            .unwrap();
        let receipt = post(&run, &ledger, &posting(6, 100))
            .await
            .unwrap_or_else(|e| panic!("{store}: {e}"));
        assert_eq!(ledger.effects("A-6"), 1, "{store}");
        // And it replays from now on, with the corrected payload only.
        assert_eq!(
            post(&run, &ledger, &posting(6, 100)).await.unwrap(),
            receipt,
            "{store}"
        );
        assert!(
            matches!(
                post(&run, &ledger, &posting(6, -100)).await,
                Err(ActionError::KeyReused { .. })
            ),
            "{store}"
        );
        // The release is in the log, as an operator entry.
        let released = log(&agent)
            .await
            .into_iter()
            .find(|e| e.entry.outcome == Outcome::Operator && e.entry.queue_entry == Some(id))
            .and_then(|e| e.entry.message.clone())
            .unwrap_or_default();
        assert!(released.contains("key released"), "{store}: {released}");
    }
}

#[tokio::test]
async fn a_halt_alert_carries_the_log_head_of_the_halted_entry() {
    for (store, agent, alerts, _dir) in agents() {
        let ledger = Downstream::new();
        post(&agent.start_run(), &ledger, &posting(1, 100))
            .await
            .unwrap();
        quarantined_entry(&agent, &ledger).await;
        let alert = alerts.alerts().pop().expect("alerted");
        let head = alert.log_head.expect("the alert carries the log head");
        let entries = log(&agent).await;
        let halted = entries.last().unwrap();
        assert_eq!(halted.entry.outcome, Outcome::Halted, "{store}");
        assert_eq!(head, actguard::LogHead::of(halted), "{store}");
        // Kept outside the store, that head checks the log later.
        let report = actguard::verify_report(agent.store().as_ref(), Some(&head))
            .await
            .unwrap();
        assert_eq!(report.head, Some(head), "{store}");
    }
}

#[tokio::test]
async fn a_halt_asked_by_code_alerts_with_the_current_head() {
    for (store, agent, alerts, _dir) in agents() {
        let ledger = Downstream::new();
        let run = agent.start_run();
        assert!(run.halt("operator stop").await.unwrap(), "{store}");
        assert_eq!(alerts.alerts()[0].log_head, None, "{store}: empty log");
        let run = agent.start_run();
        post(&run, &ledger, &posting(2, 100)).await.unwrap();
        assert!(run.halt("operator stop").await.unwrap(), "{store}");
        let head = alerts.alerts()[1].log_head.clone().expect("a head");
        assert_eq!(
            Some(head.clone()),
            agent.store().log_head().await.unwrap(),
            "{store}"
        );
        assert_eq!(head.seq, log(&agent).await.len() as u64, "{store}");
    }
}

/// A halt committed whose answer was lost still tells the alert sink, once: the guarded call sends
/// the halt again and recognises its own halt in the run's state.
#[tokio::test]
async fn a_halt_whose_answer_was_lost_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let stores = [
        (
            "memory",
            actguard_tests::FaultyStore::new(MemoryStore::new()),
        ),
        (
            "sqlite",
            actguard_tests::FaultyStore::new(
                SqliteStore::open(dir.path().join("actguard.db")).unwrap(),
            ),
        ),
    ];
    for (store, faulty) in stores {
        let faulty = std::sync::Arc::new(faulty);
        let alerts = RecordingAlert::new();
        let agent = Agent::builder()
            .shared_store(faulty.clone())
            .alert_sink(alerts.clone())
            .build()
            .unwrap();
        let ledger = Downstream::new();
        faulty.lose_halt_replies(1);
        quarantined_entry(&agent, &ledger).await;
        assert_eq!(alerts.alerts().len(), 1, "{store}: a failing call");
        // A halt asked by code, its answer lost too: alerted, and `true`.
        faulty.lose_halt_replies(1);
        let run = agent.start_run();
        assert!(run.halt("operator stop").await.unwrap(), "{store}");
        assert!(run.is_halted().await.unwrap(), "{store}");
        assert_eq!(alerts.alerts().len(), 2, "{store}: a halt by code");
        // Halting it again is no new halt: no alert.
        assert!(!run.halt("operator stop").await.unwrap(), "{store}");
        assert_eq!(alerts.alerts().len(), 2, "{store}");
    }
}
