//! The duplicate-disbursement incident: the ledger applies a disbursement and then the acknowledgement
//! times out, three times in a row. A naive retry loop disburses four times; the guarded action, which
//! sends the same idempotency key on every attempt, disburses once, and a later call with the same key
//! returns the stored receipt without calling the ledger at all.

use actguard::testing::{Downstream, DownstreamError, Receipt, log, naive_retry};
use actguard::{ActionError, Outcome, Run, agent_action};
use actguard_tests::World;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Disbursement {
    loan_id: String,
    seq: u32,
    amount_cents: u64,
}

#[agent_action(
    key = "disburse:{instr.loan_id}:{instr.seq}",
    record = "{instr.loan_id}",
    retries = 5,
    max_elapsed = "2m"
)]
async fn disburse(
    run: &Run,
    #[dep] ledger: &Downstream,
    instr: &Disbursement,
) -> Result<Receipt, DownstreamError> {
    ledger.write_for(run.attempt()).await
}

fn instruction() -> Disbursement {
    Disbursement {
        loan_id: "L-17".into(),
        seq: 3,
        amount_cents: 250_000,
    }
}

#[tokio::test(start_paused = true)]
async fn a_naive_retry_after_three_lost_acks_disburses_four_times() {
    // Each attempt is a new request: no key ties the retries together.
    let ledger = Downstream::new();
    ledger.fail_acks(3);
    let receipt = naive_retry(10, || ledger.write("L-17", None, None)).await;
    assert!(receipt.is_ok());
    assert_eq!(ledger.effects("L-17"), 4);
}

#[tokio::test(start_paused = true)]
async fn the_guarded_disbursement_is_applied_exactly_once_despite_three_lost_acks() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new();
    ledger.fail_acks(3);

    let receipt = disburse(&run, &ledger, &instruction()).await.unwrap();

    assert_eq!(ledger.writes(), 4, "one first attempt and three retries");
    assert_eq!(ledger.effects("L-17"), 1, "the ledger applied it once");
    assert_eq!(receipt.key.as_deref(), Some("disburse:L-17:3"));
    let entries = log(&w.agent).await;
    let steps: Vec<(Outcome, u32, bool)> = entries
        .iter()
        .map(|e| (e.entry.outcome, e.entry.attempt, e.entry.retry))
        .collect();
    assert_eq!(
        steps,
        [
            (Outcome::Retrying, 1, false),
            (Outcome::Retrying, 2, true),
            (Outcome::Retrying, 3, true),
            (Outcome::Succeeded, 4, true),
        ]
    );
    assert!(
        entries
            .iter()
            .all(|e| e.entry.key_text == "disburse:L-17:3")
    );
}

#[tokio::test(start_paused = true)]
async fn a_completed_disbursement_replays_its_stored_receipt_without_calling_the_ledger() {
    let w = World::new();
    let ledger = Downstream::new();
    let first = disburse(&w.agent.start_run(), &ledger, &instruction())
        .await
        .unwrap();
    let writes = ledger.writes();

    // A later run, same instruction: the same key.
    let again = disburse(&w.agent.start_run(), &ledger, &instruction())
        .await
        .unwrap();

    assert_eq!(again, first);
    assert_eq!(ledger.writes(), writes, "the body did not run");
    assert_eq!(ledger.effects("L-17"), 1);
    let last = log(&w.agent).await.pop().unwrap();
    assert_eq!(
        (last.entry.outcome, last.entry.attempt),
        (Outcome::Replayed, 0)
    );
    assert_eq!(
        w.agent
            .metrics()
            .get("disburse", actguard::MetricOutcome::Replayed),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_key_with_another_amount_is_refused_while_the_first_is_open() {
    // While the first disbursement is still being retried, the same key with another amount is a bug
    // in the key template, not a second intent.
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new();
    ledger.fail_next_n(2, DownstreamError::Unavailable { retry_after: None });
    let first = tokio::spawn({
        let (run, ledger) = (run.clone(), ledger.clone());
        async move { disburse(&run, &ledger, &instruction()).await }
    });
    tokio::task::yield_now().await;
    let mut changed = instruction();
    changed.amount_cents += 1;
    let reused = disburse(&run, &ledger, &changed).await;
    assert!(matches!(reused, Err(ActionError::KeyReused { ref key }) if key == "disburse:L-17:3"));
    first.await.unwrap().unwrap();
    assert_eq!(ledger.effects("L-17"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_same_key_with_another_amount_is_refused_after_the_first_completed() {
    // Stripe's rule holds after completion too: the stored receipt answers only the same intent.
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new();
    disburse(&run, &ledger, &instruction()).await.unwrap();

    let mut changed = instruction();
    changed.amount_cents += 1;
    let reused = disburse(&run, &ledger, &changed).await;

    assert!(matches!(reused, Err(ActionError::KeyReused { ref key }) if key == "disburse:L-17:3"));
    assert_eq!(ledger.writes(), 1, "the body did not run again");
}
