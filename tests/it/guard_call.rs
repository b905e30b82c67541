//! The guarded call driven by hand, the way the expansion of `#[agent_action]` drives it: claims,
//! waits, takeover, KeyReused, read actions, halted runs, store failures.

use std::time::Duration;

use actguard::store::{
    Appended, Begin, BeginRequest, Completion, Failure, Millis, QueueQuery, Renewal, RunState,
    Store, StoreError,
};
use actguard::testing::{Downstream, DownstreamError, Receipt, guarded_call, log};
use actguard::{ActionError, ActionSpec, LogEntry, LogQuery, MemoryStore, Outcome, Run};
use actguard_tests::{World, action_spec};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

static WRITE: ActionSpec = action_spec!(
    "write_ticket",
    Write,
    retries: 3,
    lease: Duration::from_secs(10),
    owner: Some("ticket-owners"),
    dedup: None,
);

static READ: ActionSpec = action_spec!("read_ticket", Read, retries: 2);

async fn write(
    run: &Run,
    ds: &Downstream,
    key: &str,
    payload: serde_json::Value,
) -> Result<Receipt, ActionError<DownstreamError>> {
    guarded_call(run, &WRITE, Some(key), Some("T-1"), payload, |run| {
        let ds = ds.clone();
        async move { ds.write_for(run.attempt()).await }
    })
    .await
}

async fn read(run: &Run, ds: &Downstream) -> Result<Receipt, ActionError<DownstreamError>> {
    guarded_call(run, &READ, None, None, json!({}), |_run| {
        let ds = ds.clone();
        async move { ds.write("T-1", None, None).await }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn key_reused_with_a_changed_payload_is_refused_while_the_key_is_open() {
    let w = World::new();
    let run = w.agent.start_run();
    let ds = Downstream::new();
    ds.fail_next(DownstreamError::Invalid("no such ticket".into()));
    let first = write(&run, &ds, "k1", json!({"amount": 1})).await;
    assert!(matches!(first, Err(ActionError::Routed { .. })));

    let changed = write(&run, &ds, "k1", json!({"amount": 2})).await;
    assert!(matches!(changed, Err(ActionError::KeyReused { ref key }) if key == "k1"));
    // Same payload: the existing queue entry, not a new attempt.
    let same = write(&run, &ds, "k1", json!({"amount": 1})).await;
    match same {
        Err(ActionError::PreviouslyFailed { queue, .. }) => {
            assert_eq!((queue.id, queue.name.as_str()), (1, "ticket-owners"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ds.writes(), 1);
    assert_eq!(
        w.agent
            .metrics()
            .get("write_ticket", actguard::MetricOutcome::KeyReused),
        1
    );
}

/// A `MemoryStore` whose claims are odd: held by another worker for ever, or slow to commit.
#[derive(Clone, Default)]
struct OddClaims {
    inner: MemoryStore,
    /// Every key is held by another worker whose lease never ends.
    held_elsewhere: bool,
    /// How long each claim takes to become durable.
    commit_delay: Duration,
}

#[async_trait::async_trait]
impl Store for OddClaims {
    async fn begin(&self, req: &BeginRequest) -> Result<Begin, StoreError> {
        if self.held_elsewhere {
            return Ok(Begin::InProgress {
                lease_until_ms: req.now_ms + 60_000,
            });
        }
        tokio::time::sleep(self.commit_delay).await;
        self.inner.begin(req).await
    }
    async fn renew(&self, r: &Renewal) -> Result<Millis, StoreError> {
        self.inner.renew(r).await
    }
    async fn complete(&self, c: Completion) -> Result<Appended, StoreError> {
        self.inner.complete(c).await
    }
    async fn fail(&self, f: Failure) -> Result<LogEntry, StoreError> {
        self.inner.fail(f).await
    }
    async fn append_log(&self, e: &actguard::log::NewLogEntry) -> Result<LogEntry, StoreError> {
        self.inner.append_log(e).await
    }
    async fn log(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        self.inner.log(q).await
    }
    async fn halt_run(&self, id: Uuid, r: &str, now: Millis) -> Result<bool, StoreError> {
        self.inner.halt_run(id, r, now).await
    }
    async fn run_state(&self, id: Uuid) -> Result<RunState, StoreError> {
        self.inner.run_state(id).await
    }
    async fn current_fencing_token(&self, r: &str) -> Result<Option<u64>, StoreError> {
        self.inner.current_fencing_token(r).await
    }
    async fn queue_entries(&self, q: &QueueQuery) -> Result<Vec<actguard::QueueEntry>, StoreError> {
        self.inner.queue_entries(q).await
    }
    async fn queue_entry(&self, id: u64) -> Result<Option<actguard::QueueEntry>, StoreError> {
        self.inner.queue_entry(id).await
    }
    async fn queue_update(
        &self,
        u: &actguard::QueueUpdate,
    ) -> Result<actguard::QueueEntry, StoreError> {
        self.inner.queue_update(u).await
    }
    async fn key_state(&self, d: &str) -> Result<Option<actguard::KeyState>, StoreError> {
        self.inner.key_state(d).await
    }
    fn redaction_key(&self) -> Option<actguard::RedactionKey> {
        self.inner.redaction_key()
    }
}

#[tokio::test(start_paused = true)]
async fn a_live_claim_answers_in_progress_after_the_bounded_wait() {
    let w = World::with(|b| {
        b.shared_store(std::sync::Arc::new(OddClaims {
            held_elsewhere: true,
            ..OddClaims::default()
        }))
        .claim_wait(Duration::from_secs(2))
    });
    let run = w.agent.start_run();
    let ds = Downstream::new();
    let start = Instant::now();
    let r = write(&run, &ds, "k1", json!({})).await;
    assert!(matches!(r, Err(ActionError::InProgress { ref key, .. }) if key == "k1"));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(ds.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_logs_its_own_duration_not_the_claims_commit() {
    let store = OddClaims {
        commit_delay: Duration::from_millis(250),
        ..OddClaims::default()
    };
    let w = World::with(|b| b.shared_store(std::sync::Arc::new(store)));
    let run = w.agent.start_run();
    let ds = Downstream::new().with_latency(Duration::from_millis(40));
    write(&run, &ds, "k1", json!({})).await.unwrap();
    let entries = log(&w.agent).await;
    assert_eq!(entries[0].entry.outcome, Outcome::Succeeded);
    assert_eq!(entries[0].entry.duration_ms, 40);
}

#[tokio::test(start_paused = true)]
async fn in_progress_on_a_live_claim_without_waiting() {
    let w = World::with(|b| b.claim_wait(Duration::ZERO));
    let run = w.agent.start_run();
    let slow = Downstream::new().with_latency(Duration::from_secs(5));
    let first = tokio::spawn({
        let run = run.clone();
        let slow = slow.clone();
        async move { write(&run, &slow, "k1", json!({})).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let second = write(&run, &slow, "k1", json!({})).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    match second {
        Err(ActionError::InProgress { key, .. }) => assert_eq!(key, "k1"),
        other => panic!("{other:?}"),
    }
    first.await.unwrap().unwrap();
    assert_eq!(slow.effects("T-1"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_gets_the_result_once_the_holder_completes() {
    let w = World::new();
    let run = w.agent.start_run();
    let slow = Downstream::new().with_latency(Duration::from_secs(3));
    let first = tokio::spawn({
        let (run, slow) = (run.clone(), slow.clone());
        async move { write(&run, &slow, "k1", json!({})).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = write(&run, &slow, "k1", json!({})).await.unwrap();
    assert_eq!(first.await.unwrap().unwrap(), second);
    assert_eq!(slow.writes(), 1);
    let outcomes: Vec<Outcome> = log(&w.agent)
        .await
        .iter()
        .map(|e| e.entry.outcome)
        .collect();
    assert_eq!(outcomes, [Outcome::Succeeded, Outcome::Replayed]);
}

#[tokio::test(start_paused = true)]
async fn takeover_after_lease_expiry_continues_the_attempt_count() {
    let w = World::new();
    let run = w.agent.start_run();
    // The first worker fails once (logged), then hangs in its second attempt and dies.
    let hanging = Downstream::new().with_latency(Duration::from_secs(3600));
    let dead = tokio::spawn({
        let run = run.clone();
        async move {
            guarded_call(&run, &WRITE, Some("k1"), Some("T-1"), json!({}), |run| {
                let hanging = hanging.clone();
                async move {
                    if run.attempt().number() == 1 {
                        Err(DownstreamError::AckTimeout)
                    } else {
                        hanging.write_for(run.attempt()).await
                    }
                }
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    dead.abort();

    let start = Instant::now();
    let ds = Downstream::new();
    let mut seen = None;
    let r: Result<Receipt, ActionError<DownstreamError>> =
        guarded_call(&run, &WRITE, Some("k1"), Some("T-1"), json!({}), |run| {
            let ds = ds.clone();
            seen = Some((
                run.attempt().number(),
                run.attempt().is_retry(),
                run.attempt().fencing_token(),
            ));
            async move { ds.write_for(run.attempt()).await }
        })
        .await;
    r.unwrap();
    // The lease (10s) was taken at t≈0: the takeover happens when it expires, not before.
    assert!(
        start.elapsed() >= Duration::from_secs(8) && start.elapsed() <= Duration::from_secs(10)
    );
    assert_eq!(seen, Some((2, true, Some(2))));
}

#[tokio::test(start_paused = true)]
async fn reads_take_no_claim_and_write_no_log_but_are_retried() {
    let w = World::new();
    let run = w.agent.start_run();
    let ds = Downstream::new();
    ds.fail_next_n(2, DownstreamError::AckTimeout);
    read(&run, &ds).await.unwrap();
    assert_eq!(ds.writes(), 3);
    assert!(log(&w.agent).await.is_empty());
    assert_eq!(w.store.current_fencing_token("").await.unwrap(), None);

    ds.fail_next_n(3, DownstreamError::AckTimeout);
    match read(&run, &ds).await {
        Err(ActionError::Failed { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("{other:?}"),
    }
    assert!(log(&w.agent).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_halted_run_refuses_reads_and_writes_without_side_effects() {
    let w = World::new();
    let run = w.agent.start_run();
    assert!(!run.is_halted().await.unwrap());
    assert!(run.halt("operator stop").await.unwrap());
    assert!(!run.halt("again").await.unwrap());
    assert!(run.is_halted().await.unwrap());
    assert_eq!(w.alerts.alerts().len(), 1);
    let ds = Downstream::new();
    assert!(matches!(
        read(&run, &ds).await,
        Err(ActionError::Halted { .. })
    ));
    assert!(matches!(
        write(&run, &ds, "k", json!({})).await,
        Err(ActionError::Halted { .. })
    ));
    assert_eq!(ds.writes(), 0);
    // Another run of the same agent is not affected.
    write(&w.agent.start_run(), &ds, "k", json!({}))
        .await
        .unwrap();
}

/// A store that cannot be reached.
struct Unreachable;

#[async_trait::async_trait]
impl Store for Unreachable {
    async fn begin(&self, _: &BeginRequest) -> Result<Begin, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn renew(&self, _: &Renewal) -> Result<Millis, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn complete(&self, _: Completion) -> Result<Appended, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn fail(&self, _: Failure) -> Result<LogEntry, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn append_log(&self, _: &actguard::log::NewLogEntry) -> Result<LogEntry, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn log(&self, _: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn halt_run(&self, _: Uuid, _: &str, _: Millis) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn run_state(&self, _: Uuid) -> Result<RunState, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn current_fencing_token(&self, _: &str) -> Result<Option<u64>, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn queue_entries(&self, _: &QueueQuery) -> Result<Vec<actguard::QueueEntry>, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn queue_entry(&self, _: u64) -> Result<Option<actguard::QueueEntry>, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn queue_update(
        &self,
        _: &actguard::QueueUpdate,
    ) -> Result<actguard::QueueEntry, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    async fn key_state(&self, _: &str) -> Result<Option<actguard::KeyState>, StoreError> {
        Err(StoreError::Unavailable("disk gone".into()))
    }
    /// It keeps nothing, not even a secret: the agent is given one.
    fn redaction_key(&self) -> Option<actguard::RedactionKey> {
        None
    }
}

/// A store that keeps no redaction secret: the agent refuses to build without one of its own, rather
/// than digesting `Redacted` values with a weaker key.
#[test]
fn an_agent_on_a_store_without_a_secret_needs_one() {
    match actguard::Agent::builder().store(Unreachable).build() {
        Err(actguard::AgentError::RedactionKey(actguard::RedactionKeyError::NoKey)) => {}
        other => panic!("expected a missing key: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_fails_closed() {
    let key = actguard::RedactionKey::new([1; 32]).unwrap();
    let w = World::with(|b| b.store(Unreachable).redaction_key(key));
    let run = w.agent.start_run();
    let ds = Downstream::new();
    assert!(matches!(
        write(&run, &ds, "k", json!({})).await,
        Err(ActionError::Store(StoreError::Unavailable(_)))
    ));
    assert!(matches!(
        read(&run, &ds).await,
        Err(ActionError::Store(StoreError::Unavailable(_)))
    ));
    assert_eq!(ds.writes(), 0);
    assert_eq!(
        w.agent.metrics().total(actguard::MetricOutcome::StoreError),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn before_and_after_are_captured_in_the_final_entry() {
    let w = World::new();
    let run = w.agent.start_run();
    let r: Result<u32, ActionError<DownstreamError>> = guarded_call(
        &run,
        &WRITE,
        Some("k"),
        Some("T-9"),
        json!({}),
        |run| async move {
            run.attempt().before(&json!({"priority": "low"}));
            Ok(7)
        },
    )
    .await;
    assert_eq!(r.unwrap(), 7);
    let r: Result<u32, ActionError<DownstreamError>> = guarded_call(
        &run,
        &WRITE,
        Some("k2"),
        Some("T-9"),
        json!({}),
        |run| async move {
            run.attempt().after(&json!({"priority": "high"}));
            Ok(8)
        },
    )
    .await;
    assert_eq!(r.unwrap(), 8);
    let entries = log(&w.agent).await;
    assert_eq!(entries[0].entry.before, Some(json!({"priority": "low"})));
    assert_eq!(entries[0].entry.after, Some(json!(7)));
    assert_eq!(entries[1].entry.after, Some(json!({"priority": "high"})));
    assert_eq!(entries[1].entry.fencing_token, Some(2));
}
