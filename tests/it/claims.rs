//! Claims on keys: a key used again with another payload is refused, a live claim answers
//! `InProgress`, and an expired claim of a dead worker is taken over with its attempt count.

use std::time::Duration;

use actguard::testing::{Downstream, DownstreamError, Receipt, log};
use actguard::{ActionError, Outcome, Run, agent_action};
use actguard_tests::World;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shipment {
    order: String,
    qty: u32,
}

#[agent_action(
    key = "ship:{s.order}",
    record = "{s.order}",
    lease = "30s",
    on_validation = route_owner,
    owner = "warehouse",
    backoff = "1s..1s"
)]
async fn ship(
    run: &Run,
    #[dep] carrier: &Downstream,
    s: &Shipment,
) -> Result<Receipt, DownstreamError> {
    carrier.write_for(run.attempt()).await
}

/// The attempt the body saw: (number, retry, fencing token).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u32, bool, Option<u64>)>>>;

#[agent_action(
    key = "ship:{s.order}",
    record = "{s.order}",
    name = "ship_seen",
    lease = "30s",
    backoff = "1s..1s"
)]
async fn ship_and_note(
    run: &Run,
    #[dep] carrier: &Downstream,
    #[dep] seen: &Seen,
    #[dep] hang_from_attempt: Option<u32>,
    s: &Shipment,
) -> Result<Receipt, DownstreamError> {
    let a = run.attempt();
    seen.lock()
        .unwrap()
        .push((a.number(), a.is_retry(), a.fencing_token()));
    if hang_from_attempt.is_some_and(|n| a.number() >= n) {
        // The worker dies here (its task is aborted): it never answers.
        std::future::pending::<()>().await;
    }
    carrier.write_for(a).await
}

fn shipment(qty: u32) -> Shipment {
    Shipment {
        order: "O-5".into(),
        qty,
    }
}

#[tokio::test(start_paused = true)]
async fn key_reused_with_a_changed_payload_after_a_routed_failure() {
    let w = World::new();
    let run = w.agent.start_run();
    let carrier = Downstream::new();
    carrier.fail_next(DownstreamError::Invalid("no address".into()));
    assert!(matches!(
        ship(&run, &carrier, &shipment(1)).await,
        Err(ActionError::Routed { .. })
    ));
    let changed = ship(&run, &carrier, &shipment(2)).await;
    assert!(matches!(changed, Err(ActionError::KeyReused { ref key }) if key == "ship:O-5"));
    assert_eq!(carrier.writes(), 1);
}

#[tokio::test(start_paused = true)]
async fn in_progress_on_a_live_claim() {
    let w = World::with(|b| b.claim_wait(Duration::ZERO));
    let run = w.agent.start_run();
    let carrier = Downstream::new().with_latency(Duration::from_secs(10));
    let holder = tokio::spawn({
        let (run, carrier) = (run.clone(), carrier.clone());
        async move { ship(&run, &carrier, &shipment(1)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    match ship(&run, &carrier, &shipment(1)).await {
        Err(ActionError::InProgress {
            key,
            lease_until_ms,
        }) => {
            assert_eq!(key, "ship:O-5");
            assert!(lease_until_ms > w.agent.clock().now_ms());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(carrier.writes(), 1);
    holder.await.unwrap().unwrap();
    assert_eq!(
        w.agent
            .metrics()
            .get("ship", actguard::MetricOutcome::InProgress),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn takeover_after_lease_expiry() {
    let w = World::new();
    let run = w.agent.start_run();
    let seen = Seen::default();

    // The first worker times out once (logged as attempt 1), then dies inside attempt 2.
    let carrier = Downstream::new();
    carrier.fail_next(DownstreamError::AckTimeout);
    let dead = tokio::spawn({
        let (run, carrier, seen) = (run.clone(), carrier.clone(), seen.clone());
        async move { ship_and_note(&run, &carrier, &seen, Some(2), &shipment(1)).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    dead.abort();
    assert!(dead.await.unwrap_err().is_cancelled());

    let start = Instant::now();
    ship_and_note(&run, &carrier, &seen, None, &shipment(1))
        .await
        .unwrap();

    // The dead worker last renewed its 30s lease when it confirmed its claim before the retry, at the
    // end of its (seeded) backoff, t=0.765s: the takeover waited for that lease to end (t=30.765s), and
    // no longer (28.765s after this call began at t=2s, plus the 1ms write).
    assert_eq!(start.elapsed(), Duration::from_millis(28_766));
    assert_eq!(carrier.effects("O-5"), 1);
    let seen = seen.lock().unwrap().clone();
    // The dead worker's attempt 2 never ended, so it was never logged: the store counts one previous
    // attempt, and the takeover is attempt 2, a retry, with a newer fencing token.
    assert_eq!(
        seen,
        [(1, false, Some(1)), (2, true, Some(1)), (2, true, Some(2))]
    );
    let steps: Vec<(Outcome, u32)> = log(&w.agent)
        .await
        .iter()
        .map(|e| (e.entry.outcome, e.entry.attempt))
        .collect();
    assert_eq!(steps, [(Outcome::Retrying, 1), (Outcome::Succeeded, 2)]);
}

#[agent_action(
    key = "ship:{s.order}",
    record = "{s.order}",
    name = "ship_poison",
    lease = "30s",
    retries = 1,
    backoff = "1s..1s"
)]
async fn ship_poison(
    run: &Run,
    #[dep] started: &tokio::sync::mpsc::UnboundedSender<u32>,
    s: &Shipment,
) -> Result<Receipt, DownstreamError> {
    let _ = started.send(run.attempt().number());
    // An input that kills its worker: the attempt never ends (the task is aborted below).
    std::future::pending::<()>().await;
    unreachable!("the worker died")
}

/// An input that kills every worker that takes it ends in the dead-letter queue: each takeover counts
/// the attempt the dead worker's claim started, and once the budget (retries + 1) is spent the key is
/// dead-lettered without running the body again.
async fn a_poison_input_ends_in_the_dead_letter_queue(agent: actguard::Agent) {
    let run = agent.start_run();
    let (started, mut seen) = tokio::sync::mpsc::unbounded_channel();
    for attempt in 1..=2 {
        let worker = tokio::spawn({
            let (run, started) = (run.clone(), started.clone());
            async move { ship_poison(&run, &started, &shipment(1)).await }
        });
        // The worker dies once its body runs.
        assert_eq!(seen.recv().await, Some(attempt));
        worker.abort();
        assert!(worker.await.unwrap_err().is_cancelled());
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    match ship_poison(&run, &started, &shipment(1)).await {
        Err(ActionError::PreviouslyFailed { key, queue }) => {
            assert_eq!(key, "ship:O-5");
            assert_eq!(queue.kind, actguard::QueueKind::DeadLetter);
            let entry = agent.store().queue_entry(queue.id).await.unwrap().unwrap();
            assert_eq!(entry.attempts, 2);
        }
        other => panic!("{other:?}"),
    }
    // Two workers ran the body (attempts 1 and 2); the third call did not.
    assert!(seen.try_recv().is_err());
    let last = log(&agent).await.last().cloned().unwrap();
    assert_eq!(last.entry.outcome, Outcome::DeadLettered);
    // The key stays failed: a later call answers the same entry without running.
    assert!(matches!(
        ship_poison(&run, &started, &shipment(1)).await,
        Err(ActionError::PreviouslyFailed { .. })
    ));
    assert!(seen.try_recv().is_err());
}

/// Keeps the queue entries the agent tells of.
#[derive(Clone, Default)]
struct QueueAlerts(std::sync::Arc<std::sync::Mutex<Vec<actguard::QueueAlert>>>);

impl actguard::AlertSink for QueueAlerts {
    fn alert(&self, _: &actguard::HaltAlert) {}

    fn queue_entry(&self, entry: &actguard::QueueAlert) {
        self.0.lock().unwrap().push(entry.clone());
    }
}

#[tokio::test(start_paused = true)]
async fn a_poison_input_ends_in_the_dead_letter_queue_memory() {
    a_poison_input_ends_in_the_dead_letter_queue(World::new().agent).await;
}

/// The dead letter of a poison input is told to an agent that asked for queue entries, as every other
/// dead letter is.
#[tokio::test(start_paused = true)]
async fn a_poison_input_s_dead_letter_is_told_to_the_alert_sink() {
    let alerts = QueueAlerts::default();
    let agent = actguard::Agent::builder()
        .store(actguard::MemoryStore::new())
        .alert_sink(alerts.clone())
        .alert_on_queue_entries(true)
        .build()
        .unwrap();
    a_poison_input_ends_in_the_dead_letter_queue(agent).await;
    let told = alerts.0.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "one entry was opened: {told:?}");
    assert_eq!(told[0].kind, actguard::QueueKind::DeadLetter);
    assert_eq!(told[0].queue, "dead-letter");
    assert_eq!(told[0].key, "ship:O-5");
    assert!(
        told[0].message.contains("none ended"),
        "{}",
        told[0].message
    );
}

#[tokio::test(start_paused = true)]
async fn a_poison_input_ends_in_the_dead_letter_queue_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = actguard::SqliteStore::open(dir.path().join("actguard.db")).unwrap();
    let agent = actguard::Agent::builder().store(store).build().unwrap();
    a_poison_input_ends_in_the_dead_letter_queue(agent).await;
}
