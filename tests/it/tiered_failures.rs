//! The flooded human queue: every failure went to one queue. Classified in code, each kind goes where
//! it can be handled: transient failures are retried, then dead-lettered with their attempts and times;
//! validation failures go to the data owner, conflicts to the domain expert, and a security failure
//! halts the whole run and alerts once.

use std::time::Duration;

use actguard::store::QueueQuery;
use actguard::testing::{Downstream, DownstreamError, Receipt, log};
use actguard::{
    ActionError, DEAD_LETTER_QUEUE, FailureKind, Outcome, QueueKind, Route, Run, Store,
    agent_action,
};
use actguard_tests::World;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Posting {
    id: u32,
    account: String,
    cents: i64,
}

fn posting(id: u32) -> Posting {
    Posting {
        id,
        account: format!("A-{id}"),
        cents: 100,
    }
}

#[agent_action(
    key = "post:{p.id}",
    record = "{p.account}",
    retries = 2,
    max_elapsed = "1m",
    backoff = "1s..10s",
    jitter = none,
    on_validation = route_owner,
    owner = "loan-ops",
    on_conflict = escalate,
    expert = "credit-risk",
    on_security = halt
)]
async fn post(
    run: &Run,
    #[dep] ledger: &Downstream,
    p: &Posting,
) -> Result<Receipt, DownstreamError> {
    ledger.write_for(run.attempt()).await
}

/// Many retries, a short budget: `max_elapsed` ends the retries first.
#[agent_action(
    key = "post_budget:{p.id}",
    record = "{p.account}",
    retries = 10,
    max_elapsed = "5s",
    backoff = "1s..10s",
    jitter = none
)]
async fn post_within_budget(
    run: &Run,
    #[dep] ledger: &Downstream,
    p: &Posting,
) -> Result<Receipt, DownstreamError> {
    ledger.write_for(run.attempt()).await
}

fn unavailable() -> DownstreamError {
    DownstreamError::Unavailable { retry_after: None }
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_then_dead_lettered_with_attempts_and_times() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new().with_latency(Duration::ZERO);
    ledger.fail_next_n(3, unavailable());
    let start = Instant::now();

    let result = post(&run, &ledger, &posting(1)).await;

    let queue = match result {
        Err(ActionError::DeadLettered {
            attempts,
            queue,
            error,
        }) => {
            assert_eq!(attempts, 3);
            assert_eq!(error, unavailable());
            queue
        }
        other => panic!("{other:?}"),
    };
    // Delays 1s then 2s (no jitter): three attempts in 3s.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(
        (queue.kind, queue.name.as_str()),
        (QueueKind::DeadLetter, DEAD_LETTER_QUEUE)
    );
    let entry = w.store.queue_entry(queue.id).await.unwrap().unwrap();
    assert_eq!(entry.attempts, 3);
    assert_eq!(entry.last_failure_ms - entry.first_failure_ms, 3_000);
    assert_eq!(entry.failure_kind, FailureKind::Transient);
    assert_eq!(entry.message, "service unavailable");
    assert_eq!(entry.run_id, run.id());
    assert_eq!(entry.payload["p"]["account"], "A-1");
    let steps: Vec<(Outcome, Option<Route>)> = log(&w.agent)
        .await
        .iter()
        .map(|e| (e.entry.outcome, e.entry.route))
        .collect();
    assert_eq!(
        steps,
        [
            (Outcome::Retrying, Some(Route::Retry)),
            (Outcome::Retrying, Some(Route::Retry)),
            (Outcome::DeadLettered, Some(Route::DeadLetter)),
        ]
    );
    // The key now points at its queue entry instead of acting again.
    assert!(matches!(
        post(&run, &ledger, &posting(1)).await,
        Err(ActionError::PreviouslyFailed { .. })
    ));
    assert_eq!(ledger.writes(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_that_clears_succeeds_on_a_retry() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new();
    ledger.fail_next_n(2, unavailable());
    post(&run, &ledger, &posting(2)).await.unwrap();
    assert_eq!(ledger.effects("A-2"), 1);
    let m = w.agent.metrics();
    assert_eq!(
        (
            m.get("post", actguard::MetricOutcome::Retrying),
            m.get("post", actguard::MetricOutcome::Succeeded)
        ),
        (2, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_retries_before_max_elapsed_is_overshot() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new().with_latency(Duration::ZERO);
    ledger.fail_next_n(100, unavailable());
    let start = Instant::now();
    let result = post_within_budget(&run, &ledger, &posting(3)).await;
    // 1s + 2s = 3s elapsed; the next delay (4s) would end at 7s > 5s: dead-letter now.
    assert!(matches!(
        result,
        Err(ActionError::DeadLettered { attempts: 3, .. })
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_the_server_is_waited_for_exactly_even_past_the_backoff_cap() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new().with_latency(Duration::ZERO);
    ledger.fail_next(DownstreamError::Unavailable {
        retry_after: Some(Duration::from_secs(7)),
    });
    let start = Instant::now();
    post(&run, &ledger, &posting(4)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(7));

    // The backoff cap is 10s; the server asked for 45s, which the 1m budget allows.
    ledger.fail_next(DownstreamError::Unavailable {
        retry_after: Some(Duration::from_secs(45)),
    });
    let start = Instant::now();
    post(&run, &ledger, &posting(5)).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(45),
        "not retried before the server said"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_longer_than_the_budget_left_dead_letters_at_once_and_says_why() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new().with_latency(Duration::ZERO);
    ledger.fail_next(DownstreamError::Unavailable { retry_after: None });
    ledger.fail_next(DownstreamError::Unavailable {
        retry_after: Some(Duration::from_secs(120)),
    });
    let start = Instant::now();
    let result = post(&run, &ledger, &posting(40)).await;
    assert!(
        matches!(result, Err(ActionError::DeadLettered { attempts: 2, .. })),
        "{result:?}"
    );
    // 1s of backoff after the first failure; no wait after the second.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(ledger.writes(), 2);
    let message = "service unavailable: the server asked to retry after 2m, \
                   but only 59s of the 1m budget remain";
    let dead = w
        .store
        .queue_entries(&QueueQuery {
            kind: Some(QueueKind::DeadLetter),
            ..QueueQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message, message);
    let last = log(&w.agent).await.pop().unwrap();
    assert_eq!(last.entry.outcome, Outcome::DeadLettered);
    assert_eq!(last.entry.message.as_deref(), Some(message));
}

#[tokio::test(start_paused = true)]
async fn a_validation_failure_goes_to_the_data_owner_without_retries() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new();
    ledger.fail_next(DownstreamError::Invalid("closed account".into()));
    match post(&run, &ledger, &posting(6)).await {
        Err(ActionError::Routed { kind, queue, .. }) => {
            assert_eq!(kind, FailureKind::Validation);
            assert_eq!(
                (queue.kind, queue.name.as_str()),
                (QueueKind::Owner, "loan-ops")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ledger.writes(), 1);
    let owners = w
        .store
        .queue_entries(&QueueQuery {
            kind: Some(QueueKind::Owner),
            ..QueueQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].attempts, 1);
    assert_eq!(owners[0].message, "invalid request: closed account");
    let last = log(&w.agent).await.pop().unwrap();
    assert_eq!(
        (last.entry.outcome, last.entry.route, last.entry.queue_entry),
        (Outcome::Routed, Some(Route::RouteOwner), Some(owners[0].id))
    );
}

#[tokio::test(start_paused = true)]
async fn a_state_conflict_goes_to_the_domain_expert() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new();
    ledger.fail_next(DownstreamError::Conflict("loan frozen".into()));
    match post(&run, &ledger, &posting(7)).await {
        Err(ActionError::Routed { kind, queue, .. }) => {
            assert_eq!(kind, FailureKind::Conflict);
            assert_eq!(
                (queue.kind, queue.name.as_str()),
                (QueueKind::Expert, "credit-risk")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        w.store
            .queue_entries(&QueueQuery {
                kind: Some(QueueKind::Owner),
                ..QueueQuery::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn a_security_failure_halts_the_run_and_alerts_once() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new();
    ledger.fail_next(DownstreamError::Forbidden("token revoked".into()));

    match post(&run, &ledger, &posting(8)).await {
        Err(ActionError::SecurityHalt {
            run_id,
            queue,
            error,
        }) => {
            assert_eq!(run_id, run.id());
            assert_eq!(queue.map(|q| q.kind), Some(QueueKind::Security));
            assert_eq!(error, DownstreamError::Forbidden("token revoked".into()));
        }
        other => panic!("{other:?}"),
    }
    assert!(run.is_halted().await.unwrap());

    // Later actions of that run do not run.
    let writes = ledger.writes();
    for id in 9..12 {
        assert!(matches!(
            post(&run, &ledger, &posting(id)).await,
            Err(ActionError::Halted { .. })
        ));
    }
    assert_eq!(ledger.writes(), writes);

    let alerts = w.alerts.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].run_id, run.id());
    assert_eq!(alerts[0].failure_kind, Some(FailureKind::Security));
    assert_eq!(alerts[0].key.as_deref(), Some("post:8"));
    let last = log(&w.agent).await.pop().unwrap();
    assert_eq!(
        (last.entry.outcome, last.entry.route),
        (Outcome::Halted, Some(Route::Halt))
    );
    // The key waits in the security queue: nothing else was queued.
    let queued = w.store.queue_entries(&QueueQuery::default()).await.unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|e| (e.kind, e.key_text.as_str()))
            .collect::<Vec<_>>(),
        [(QueueKind::Security, "post:8")]
    );

    // Other runs go on.
    post(&w.agent.start_run(), &ledger, &posting(20))
        .await
        .unwrap();
    assert_eq!(
        w.agent
            .metrics()
            .get("post", actguard::MetricOutcome::Refused),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn two_simultaneous_security_failures_alert_once() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new();
    ledger.fail_next_n(2, DownstreamError::Forbidden("tampered".into()));
    let (p1, p2) = (posting(30), posting(31));
    let (a, b) = tokio::join!(post(&run, &ledger, &p1), post(&run, &ledger, &p2));
    assert!(matches!(a, Err(ActionError::SecurityHalt { .. })));
    assert!(matches!(b, Err(ActionError::SecurityHalt { .. })));
    assert_eq!(w.alerts.alerts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_to_retry_stops_when_its_run_is_halted() {
    let w = World::new();
    let run = w.agent.start_run();
    let ledger = Downstream::new().with_latency(Duration::ZERO);
    ledger.fail_next(unavailable());
    let retrying = tokio::spawn({
        let (run, ledger) = (run.clone(), ledger.clone());
        async move { post(&run, &ledger, &posting(40)).await }
    });
    // The first attempt failed at t=0; its retry is due at t=1s. The run halts at t=0.5s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ledger.writes(), 1);
    run.halt("operator stop").await.unwrap();

    let result = retrying.await.unwrap();
    assert!(
        matches!(result, Err(ActionError::Halted { .. })),
        "{result:?}"
    );
    assert_eq!(ledger.writes(), 1, "no attempt after the halt");
    let last = log(&w.agent).await.pop().unwrap();
    assert_eq!(
        (last.entry.outcome, last.entry.attempt),
        (Outcome::Halted, 0)
    );
    // The claim was released, not left to expire: another run acts on the key at once.
    let start = Instant::now();
    post(&w.agent.start_run(), &ledger, &posting(40))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(ledger.effects("A-40"), 1);
}
