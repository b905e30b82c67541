//! Operators take over where the agent was confidently wrong: queue entries are claimed, resolved,
//! discarded (each change in the action log), and a dead-lettered call is replayed until it succeeds,
//! acting exactly once downstream. Against the memory store and the embedded SQLite store.

use actguard::log::LogQuery;
use actguard::ops::{self, OpsError};
use actguard::testing::{Downstream, DownstreamError, Receipt};
use actguard::{
    ActionError, Agent, InvokeError, MemoryStore, Outcome, QueueKind, QueueQuery, QueueStatus, Run,
    SqliteStore, Store, StoreError, agent_action, verify_chain,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    id: u32,
    account: String,
    cents: i64,
}

fn payment(id: u32) -> Payment {
    Payment {
        id,
        account: format!("A-{id}"),
        cents: 100,
    }
}

#[agent_action(
    key = "pay:{p.id}",
    record = "{p.account}",
    retries = 1,
    backoff = "1s..2s",
    jitter = none,
    owner = "payments-ops",
    expert = "payments-risk"
)]
async fn pay(run: &Run, #[dep] bank: &Downstream, p: &Payment) -> Result<Receipt, DownstreamError> {
    bank.write_for(run.attempt()).await
}

/// The two stores every behaviour here is checked against.
enum Kind {
    Memory,
    Sqlite,
}

struct World {
    agent: Agent,
    bank: Downstream,
    _dir: Option<tempfile::TempDir>,
}

fn world(kind: Kind) -> World {
    let bank = Downstream::new();
    let builder = Agent::builder().resource(bank.clone()).jitter_seed(3);
    let (builder, dir) = match kind {
        Kind::Memory => (builder.store(MemoryStore::new()), None),
        Kind::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path().join("actguard.db")).unwrap();
            (builder.store(store), Some(dir))
        }
    };
    World {
        agent: builder.build().expect("the agent builds"),
        bank,
        _dir: dir,
    }
}

fn store(w: &World) -> &dyn Store {
    w.agent.store().as_ref()
}

async fn operator_log(w: &World) -> Vec<actguard::LogEntry> {
    store(w)
        .log(&LogQuery {
            outcome: Some(Outcome::Operator),
            ..LogQuery::default()
        })
        .await
        .unwrap()
}

/// A validation failure in the owner queue; returns its id.
async fn routed(w: &World, id: u32) -> u64 {
    w.bank
        .fail_next(DownstreamError::Invalid("unknown account".into()));
    match pay(&w.agent.start_run(), &w.bank, &payment(id)).await {
        Err(ActionError::Routed { queue, .. }) => {
            assert_eq!(
                (queue.kind, queue.name.as_str()),
                (QueueKind::Owner, "payments-ops")
            );
            queue.id
        }
        other => panic!("expected a routed failure, got {other:?}"),
    }
}

async fn queue_operations_are_logged_and_checked(kind: Kind) {
    let w = world(kind);
    let a = routed(&w, 1).await;
    let b = routed(&w, 2).await;

    let open = QueueQuery {
        status: Some(QueueStatus::Open),
        ..QueueQuery::default()
    };
    let listed = ops::queue_list(store(&w), &open).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [a, b]);

    let claimed = ops::queue_claim(&w.agent, a, "alice").await.unwrap();
    assert_eq!(
        (claimed.status, claimed.claimed_by.as_deref()),
        (QueueStatus::Claimed, Some("alice"))
    );
    let resolved = ops::queue_resolve(&w.agent, a, "alice", "account reopened by hand")
        .await
        .unwrap();
    assert_eq!(resolved.status, QueueStatus::Resolved);
    assert_eq!(resolved.note.as_deref(), Some("account reopened by hand"));
    assert!(resolved.closed_ms.is_some());
    let discarded = ops::queue_discard(&w.agent, b, "bob", "customer withdrew")
        .await
        .unwrap();
    assert_eq!(discarded.status, QueueStatus::Discarded);

    let log = operator_log(&w).await;
    let said: Vec<(Option<u64>, String)> = log
        .iter()
        .map(|e| (e.entry.queue_entry, e.entry.message.clone().unwrap()))
        .collect();
    assert_eq!(
        said,
        [
            (Some(a), format!("queue entry {a} claimed by alice")),
            (
                Some(a),
                format!("queue entry {a} resolved by alice: account reopened by hand")
            ),
            (
                Some(b),
                format!("queue entry {b} discarded by bob: customer withdrew")
            ),
        ]
    );
    assert_eq!(log[0].entry.action, "pay");
    assert_eq!(log[0].entry.key_text, "pay:1");

    // Invalid transitions: a conflict naming the entry and its status, nothing logged.
    for result in [
        ops::queue_claim(&w.agent, a, "carol").await,
        ops::queue_discard(&w.agent, a, "carol", "x").await,
        ops::queue_resolve(&w.agent, b, "carol", "x").await,
    ] {
        match result {
            Err(OpsError::Store(StoreError::Conflict(m))) => {
                assert!(m.starts_with("queue entry"), "{m}");
                assert!(m.contains("resolved") || m.contains("discarded"), "{m}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert!(matches!(
        ops::replay(&w.agent, a, "carol").await,
        Err(OpsError::Store(StoreError::Conflict(_)))
    ));
    assert!(matches!(
        ops::queue_claim(&w.agent, 777, "carol").await,
        Err(OpsError::Store(StoreError::NotFound(_)))
    ));
    assert_eq!(operator_log(&w).await.len(), 3);
    let all = store(&w).log(&LogQuery::default()).await.unwrap();
    verify_chain(&all).unwrap();
}

#[tokio::test(start_paused = true)]
async fn queue_operations_are_logged_and_checked_in_memory() {
    queue_operations_are_logged_and_checked(Kind::Memory).await;
}

#[tokio::test(start_paused = true)]
async fn queue_operations_are_logged_and_checked_in_sqlite() {
    queue_operations_are_logged_and_checked(Kind::Sqlite).await;
}

async fn replay_until_it_succeeds_acts_once(kind: Kind) {
    let w = world(kind);
    let unavailable = DownstreamError::Unavailable { retry_after: None };
    // Two attempts (retries = 1), both unavailable: dead-lettered.
    w.bank.fail_next_n(2, unavailable.clone());
    let first = pay(&w.agent.start_run(), &w.bank, &payment(7)).await;
    let id = match first {
        Err(ActionError::DeadLettered {
            attempts, queue, ..
        }) => {
            assert_eq!(attempts, 2);
            queue.id
        }
        other => panic!("expected dead-lettered, got {other:?}"),
    };
    assert_eq!(w.bank.effects("A-7"), 0);

    // The service is still down: the replay fails again and updates the same entry.
    w.bank.fail_next_n(2, unavailable.clone());
    let again = ops::replay(&w.agent, id, "alice").await.unwrap();
    assert!(!again.succeeded());
    match &again.outcome {
        Err(InvokeError::Action {
            kind, queue_entry, ..
        }) => assert_eq!((*kind, *queue_entry), ("dead_lettered", Some(id))),
        other => panic!("expected a dead-lettered replay, got {other:?}"),
    }
    assert_eq!(again.entry.id, id);
    assert_eq!(again.entry.status, QueueStatus::Open);
    assert_eq!(again.entry.attempts, 4);
    assert_eq!(
        store(&w)
            .queue_entries(&QueueQuery::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(w.bank.effects("A-7"), 0);

    // Back up: the replay succeeds, once.
    let done = ops::replay(&w.agent, id, "alice").await.unwrap();
    let receipt: Receipt = serde_json::from_value(done.outcome.clone().unwrap()).unwrap();
    assert_eq!(receipt.key.as_deref(), Some("pay:7"));
    assert_eq!(done.entry.status, QueueStatus::Replayed);
    assert!(done.entry.closed_ms.is_some());
    assert_ne!(done.run_id, again.run_id);
    assert_eq!(w.bank.effects("A-7"), 1);

    // The key is completed: the agent's own later call returns the stored result, acting no more, and
    // the entry cannot be replayed twice.
    let later = pay(&w.agent.start_run(), &w.bank, &payment(7))
        .await
        .unwrap();
    assert_eq!(later, receipt);
    assert!(matches!(
        ops::replay(&w.agent, id, "bob").await,
        Err(OpsError::Store(StoreError::Conflict(_)))
    ));
    assert_eq!(w.bank.effects("A-7"), 1);
    assert_eq!(w.bank.total_effects(), 1);

    // The log tells the story: who asked, and each replayed attempt says so.
    let log = store(&w).log(&LogQuery::default()).await.unwrap();
    verify_chain(&log).unwrap();
    let requested: Vec<_> = log
        .iter()
        .filter(|e| e.entry.outcome == Outcome::Operator)
        .map(|e| e.entry.message.clone().unwrap())
        .collect();
    assert_eq!(
        requested,
        [
            format!("replay of queue entry {id} requested by alice"),
            format!("replay of queue entry {id} requested by alice"),
        ]
    );
    let succeeded: Vec<_> = log
        .iter()
        .filter(|e| e.entry.outcome == Outcome::Succeeded)
        .collect();
    assert_eq!(succeeded.len(), 1);
    assert!(succeeded[0].entry.retry);
    assert_eq!(succeeded[0].entry.queue_entry, Some(id));
    assert_eq!(
        succeeded[0].entry.message.as_deref(),
        Some(format!("replay of queue entry {id}").as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn replaying_a_dead_lettered_entry_until_it_succeeds_acts_once_in_memory() {
    replay_until_it_succeeds_acts_once(Kind::Memory).await;
}

#[tokio::test(start_paused = true)]
async fn replaying_a_dead_lettered_entry_until_it_succeeds_acts_once_in_sqlite() {
    replay_until_it_succeeds_acts_once(Kind::Sqlite).await;
}

#[tokio::test(start_paused = true)]
async fn a_replay_needs_the_resources_of_the_action() {
    // An agent without the bank: the replay says which resource to register, and the entry stays open.
    let bank = Downstream::new();
    let store = MemoryStore::new();
    let with_bank = Agent::builder()
        .store(store.clone())
        .resource(bank.clone())
        .build()
        .unwrap();
    bank.fail_next(DownstreamError::Invalid("bad".into()));
    let id = match pay(&with_bank.start_run(), &bank, &payment(3)).await {
        Err(ActionError::Routed { queue, .. }) => queue.id,
        other => panic!("{other:?}"),
    };
    let without = Agent::builder().store(store).build().unwrap();
    let r = ops::replay(&without, id, "alice").await.unwrap();
    match r.outcome {
        Err(InvokeError::MissingResource { type_name, .. }) => {
            assert!(type_name.ends_with("Downstream"), "{type_name}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.entry.status, QueueStatus::Open);
    assert_eq!(bank.writes(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_replay_of_an_action_this_program_does_not_register_is_refused() {
    // An entry written by another program, whose action `elsewhere` this one does not link.
    let w = world(Kind::Memory);
    let id = routed(&w, 9).await;
    let store = MemoryStore::new();
    let agent = Agent::builder().store(store.clone()).build().unwrap();
    let e = w.agent.store().queue_entry(id).await.unwrap().unwrap();
    let r = actguard::store::BeginRequest {
        run_id: e.run_id,
        action: "elsewhere".into(),
        key_text: e.key_text.clone().into(),
        key_digest: e.key_digest.clone().into(),
        record: e.record.clone().into(),
        fingerprint: "fp".into(),
        payload: actguard::PayloadJson::from(e.payload.clone()),
        claim_id: uuid::Uuid::now_v7(),
        now_ms: 0,
        lease_ms: 1_000,
        dedup_ms: None,
        replay_of: None,
    };
    store.begin(&r).await.unwrap();
    let queued = actguard::store::NewQueueEntry {
        kind: e.kind,
        name: e.name.clone(),
        run_id: e.run_id,
        action: "elsewhere".into(),
        key_text: e.key_text.clone(),
        key_digest: e.key_digest.clone(),
        record: e.record.clone(),
        payload: e.payload.clone(),
        failure_kind: e.failure_kind,
        message: e.message.clone(),
        attempts: 1,
        first_failure_ms: 0,
        last_failure_ms: 0,
    };
    let logged = store
        .fail(actguard::store::Failure {
            key_digest: r.key_digest.clone(),
            claim_id: r.claim_id,
            queue_entry: Some(queued),
            entry: actguard::log::NewLogEntry {
                at_ms: 0,
                run_id: r.run_id,
                action: "elsewhere".into(),
                record: r.record.clone(),
                key_text: r.key_text.clone(),
                key_digest: r.key_digest.clone(),
                attempt: 1,
                retry: false,
                outcome: Outcome::Routed,
                failure_kind: None,
                route: None,
                message: None,
                queue_entry: None,
                before: None,
                after: None,
                fencing_token: None,
                duration_ms: 0,
            },
            now_ms: 0,
            replay_of: None,
        })
        .await
        .unwrap();
    let other = logged.entry.queue_entry.unwrap();
    match ops::replay(&agent, other, "alice").await {
        Err(OpsError::UnknownAction(name)) => assert_eq!(name, "elsewhere"),
        other => panic!("{other:?}"),
    }
}

#[derive(Debug, Clone)]
struct Prefix(String);

/// Every kind of parameter an invocation fills: `&str`, a value, a slice, a `#[dep]` by reference and
/// one by value (cloned from the resource).
#[agent_action(effect = read)]
async fn label(
    run: &Run,
    #[dep] prefix: Prefix,
    #[dep] bank: &Downstream,
    name: &str,
    count: u32,
    tags: &[String],
) -> Result<String, DownstreamError> {
    let _ = (run, bank);
    Ok(format!("{}{name}x{count}[{}]", prefix.0, tags.join(",")))
}

struct Service;

impl Service {
    #[agent_action(effect = read)]
    async fn status(&self, run: &Run) -> Result<u32, DownstreamError> {
        let _ = run;
        Ok(1)
    }
}

fn spec(name: &str) -> &'static actguard::ActionSpec {
    actguard::registry()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_invocation_reads_each_parameter_from_the_payload_and_the_resources() {
    let agent = Agent::builder()
        .store(MemoryStore::new())
        .resource(Prefix("#".into()))
        .resource(Downstream::new())
        .build()
        .unwrap();
    let run = agent.start_run();
    assert_eq!(
        label(
            &run,
            Prefix("#".into()),
            &Downstream::new(),
            "a",
            2,
            &["x".into()]
        )
        .await
        .unwrap(),
        "#ax2[x]"
    );
    let invoke = spec("label").invoke.expect("a free function is invocable");
    let out = invoke(
        &run,
        serde_json::json!({"name": "box", "count": 3, "tags": ["a", "b"]}),
    )
    .await
    .unwrap();
    assert_eq!(out.value, serde_json::json!("#boxx3[a,b]"));
    assert!(!out.replayed);
    match invoke(
        &run,
        serde_json::json!({"name": "box", "count": "three", "tags": []}),
    )
    .await
    {
        Err(InvokeError::Payload { field, action, .. }) => {
            assert_eq!((field.as_str(), action.as_str()), ("count", "label"))
        }
        other => panic!("{other:?}"),
    }
    assert!(spec("status").invoke.is_none(), "a method is not invocable");
    let _ = Service.status(&run).await;
}
