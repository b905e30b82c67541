//! The retry budget belongs to one call of one key. A call refused before its retry because its run
//! was halted gave up its claim: the next run's call of the same key is a new call, with all its
//! attempts, numbered from 1, whatever earlier runs tried.
//!
//! Each scenario is written once, over any store, and runs against the memory store, the embedded
//! SQLite store (a file) and, with feature `postgres`, PostgreSQL (a fresh schema of the server at
//! `ACTGUARD_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! Time is tokio's paused clock, and stands still while a store operation is in flight (see
//! [`frozen`]): it moves only while every task waits on a timer, so a backoff delay passes in no real
//! time and ends exactly when the test expects, whatever the store's latency.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use actguard::log::{LogEntry, LogQuery, NewLogEntry};
use actguard::store::{
    Appended, Begin, BeginRequest, Completion, Failure, KeyState, Millis, QueueEntry, QueueQuery,
    QueueUpdate, Renewal, RunState, Store, StoreError,
};
use actguard::{
    ActionError, Agent, Classify, MemoryStore, Outcome, Run, SqliteStore, agent_action,
};
use tokio::time::Instant;
use uuid::Uuid;

#[cfg(feature = "postgres")]
use crate::support::pg_support;

#[derive(Debug, Clone, PartialEq, Classify, thiserror::Error)]
enum FeedError {
    #[error("the feed is unavailable")]
    #[classify(transient)]
    Unavailable,
}

/// The downstream: fails the attempts it is told to, and records the attempt number of every call.
#[derive(Default)]
struct Feed {
    failures: AtomicU32,
    seen: Mutex<Vec<u32>>,
}

impl Feed {
    /// The next `n` attempts fail (transiently).
    fn fail_next(&self, n: u32) {
        self.failures.store(n, Ordering::SeqCst);
    }

    fn attempt(&self, number: u32) -> Result<u32, FeedError> {
        self.seen.lock().unwrap().push(number);
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            Err(FeedError::Unavailable)
        } else {
            Ok(number)
        }
    }

    /// The attempt numbers seen since the last call.
    fn take_seen(&self) -> Vec<u32> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Up to 4 attempts, 1s, 2s and 4s apart. Answers the attempt number that succeeded.
#[agent_action(
    key = "sync:{item}",
    retries = 3,
    backoff = "1s..8s",
    jitter = none,
    max_elapsed = "1m"
)]
async fn sync(run: &Run, #[dep] feed: &Feed, item: &str) -> Result<u32, FeedError> {
    feed.attempt(run.attempt().number())
}

// ---------------------------------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------------------------------

/// An agent on `store`, its store operations frozen in time.
fn agent(store: Arc<dyn Store>) -> Agent {
    Agent::builder()
        .shared_store(Arc::new(Frozen(store)))
        .jitter_seed(7)
        .build()
        .expect("the agent builds")
}

/// Runs A, B and C: in each, the first attempt of `sync("item-1")` fails, the run is halted while the
/// call waits to retry, and the call ends `Halted`. Returns the attempt numbers the body saw, per run.
async fn three_halted_runs(agent: &Agent, feed: &Feed) -> Vec<Vec<u32>> {
    let mut seen = Vec::new();
    for name in ["A", "B", "C"] {
        let run = agent.start_run();
        feed.fail_next(1);
        let done = AtomicBool::new(false);
        let call = async {
            let result = sync(&run, feed, "item-1").await;
            done.store(true, Ordering::SeqCst);
            result
        };
        let (result, ()) = tokio::join!(call, halt_while_retrying(&run, &done));
        assert!(
            matches!(result, Err(ActionError::Halted { .. })),
            "run {name}: {result:?}"
        );
        seen.push(feed.take_seen());
    }
    seen
}

/// Halts `run` once its call has logged a failed attempt that will be retried (the call then waits
/// in its backoff), unless the call ends first (`done`). The clock stands still until the halt is
/// durable: this task never waits on a timer, and store operations are frozen.
async fn halt_while_retrying(run: &Run, done: &AtomicBool) {
    let retrying = LogQuery {
        run_id: Some(run.id()),
        outcome: Some(Outcome::Retrying),
        ..LogQuery::default()
    };
    while !done.load(Ordering::SeqCst) {
        let logged = run.agent().store().log(&retrying).await.unwrap();
        if !logged.is_empty() {
            run.halt("stopped while the call waits to retry")
                .await
                .unwrap();
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// The attempt numbers and outcomes logged by `run`.
async fn logged(agent: &Agent, run: &Run) -> Vec<(u32, Outcome)> {
    let query = LogQuery {
        run_id: Some(run.id()),
        ..LogQuery::default()
    };
    let entries = agent.store().log(&query).await.unwrap();
    entries
        .iter()
        .map(|e| (e.entry.attempt, e.entry.outcome))
        .collect()
}

/// Three runs halted while their call of one key waited to retry spend nothing of the budget of the
/// next run's call: in run D, the body fails once and then succeeds, on attempts 1 and 2.
async fn halted_runs_do_not_spend_the_budget_of_the_next_run(store: Arc<dyn Store>) {
    let agent = agent(store);
    let feed = Feed::default();
    let mut seen = three_halted_runs(&agent, &feed).await;
    let run = agent.start_run();
    feed.fail_next(1);
    let result = sync(&run, &feed, "item-1").await;
    seen.push(feed.take_seen());
    assert!(
        matches!(result, Ok(2)),
        "run D: {result:?}; attempt numbers seen in runs A, B, C, D: {seen:?}"
    );
    assert_eq!(
        seen,
        [vec![1], vec![1], vec![1], vec![1, 2]],
        "attempt numbers seen in runs A, B, C, D"
    );
    assert_eq!(
        logged(&agent, &run).await,
        [(1, Outcome::Retrying), (2, Outcome::Succeeded)]
    );
    assert!(
        agent
            .store()
            .queue_entries(&QueueQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// After three halted runs, a call whose body fails every time gets its whole budget: retries + 1 = 4
/// attempts, numbered 1 to 4, 1s, 2s and 4s apart, then it is dead-lettered with 4 attempts.
async fn a_fresh_run_after_halts_gets_every_attempt_of_its_budget(store: Arc<dyn Store>) {
    let agent = agent(store);
    let feed = Feed::default();
    let mut seen = three_halted_runs(&agent, &feed).await;
    let run = agent.start_run();
    feed.fail_next(u32::MAX);
    let start = Instant::now();
    let result = sync(&run, &feed, "item-1").await;
    let elapsed = start.elapsed();
    seen.push(feed.take_seen());
    let queue = match result {
        Err(ActionError::DeadLettered {
            attempts: 4, queue, ..
        }) => queue,
        other => panic!(
            "run D: expected dead-lettered after 4 attempts, got {other:?}; attempt numbers seen \
             in runs A, B, C, D: {seen:?}"
        ),
    };
    assert_eq!(
        seen,
        [vec![1], vec![1], vec![1], vec![1, 2, 3, 4]],
        "attempt numbers seen in runs A, B, C, D"
    );
    assert_eq!(elapsed, Duration::from_secs(1 + 2 + 4));
    assert_eq!(
        logged(&agent, &run).await,
        [
            (1, Outcome::Retrying),
            (2, Outcome::Retrying),
            (3, Outcome::Retrying),
            (4, Outcome::DeadLettered)
        ]
    );
    let entry = agent.store().queue_entry(queue.id).await.unwrap().unwrap();
    assert_eq!((entry.attempts, entry.run_id), (4, run.id()));
}

// ---------------------------------------------------------------------------------------------------
// The stores
// ---------------------------------------------------------------------------------------------------

macro_rules! per_store {
    ($store:ident, $make:expr) => {
        mod $store {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(start_paused = true)]
            async fn halted_runs_do_not_spend_the_budget_of_the_next_run() {
                let (store, _guard) = $make;
                super::halted_runs_do_not_spend_the_budget_of_the_next_run(store).await;
            }

            #[tokio::test(start_paused = true)]
            async fn a_fresh_run_after_halts_gets_every_attempt_of_its_budget() {
                let (store, _guard) = $make;
                super::a_fresh_run_after_halts_gets_every_attempt_of_its_budget(store).await;
            }
        }
    };
}

per_store!(memory, (Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()));

per_store!(sqlite, {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("actguard.db")).expect("the store opens");
    (Arc::new(store) as Arc<dyn Store>, dir)
});

#[cfg(feature = "postgres")]
per_store!(postgres, {
    let (store, schema) = frozen(pg_support::fresh_store()).await;
    (Arc::new(store) as Arc<dyn Store>, schema)
});

// ---------------------------------------------------------------------------------------------------
// Time stands still while the store works
// ---------------------------------------------------------------------------------------------------

/// Runs `work` while keeping the runtime busy, so that tokio's paused clock does not move on while
/// `work` waits on something other than a timer (a store's writer thread, the network). An idle
/// runtime with a paused clock jumps to its next timer: a call's backoff could end before a halt
/// reached the store, or a connection pool's timeout fire while a query is on the wire.
async fn frozen<F: Future>(work: F) -> F::Output {
    let finished = AtomicBool::new(false);
    let work = async {
        let out = work.await;
        finished.store(true, Ordering::SeqCst);
        out
    };
    let busy = async {
        while !finished.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    };
    tokio::join!(work, busy).0
}

/// A store whose every operation is [`frozen`] in time.
struct Frozen(Arc<dyn Store>);

#[async_trait::async_trait]
impl Store for Frozen {
    async fn begin(&self, request: &BeginRequest) -> Result<Begin, StoreError> {
        frozen(self.0.begin(request)).await
    }
    async fn renew(&self, renewal: &Renewal) -> Result<Millis, StoreError> {
        frozen(self.0.renew(renewal)).await
    }
    async fn complete(&self, completion: Completion) -> Result<Appended, StoreError> {
        frozen(self.0.complete(completion)).await
    }
    async fn fail(&self, failure: Failure) -> Result<LogEntry, StoreError> {
        frozen(self.0.fail(failure)).await
    }
    async fn append_log(&self, entry: &NewLogEntry) -> Result<LogEntry, StoreError> {
        frozen(self.0.append_log(entry)).await
    }
    async fn log(&self, query: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        frozen(self.0.log(query)).await
    }
    async fn halt_run(&self, run: Uuid, reason: &str, now_ms: Millis) -> Result<bool, StoreError> {
        frozen(self.0.halt_run(run, reason, now_ms)).await
    }
    async fn run_state(&self, run: Uuid) -> Result<RunState, StoreError> {
        frozen(self.0.run_state(run)).await
    }
    async fn current_fencing_token(&self, record: &str) -> Result<Option<u64>, StoreError> {
        frozen(self.0.current_fencing_token(record)).await
    }
    async fn queue_entries(&self, query: &QueueQuery) -> Result<Vec<QueueEntry>, StoreError> {
        frozen(self.0.queue_entries(query)).await
    }
    async fn queue_entry(&self, id: u64) -> Result<Option<QueueEntry>, StoreError> {
        frozen(self.0.queue_entry(id)).await
    }
    async fn queue_update(&self, update: &QueueUpdate) -> Result<QueueEntry, StoreError> {
        frozen(self.0.queue_update(update)).await
    }
    async fn key_state(&self, key_digest: &str) -> Result<Option<KeyState>, StoreError> {
        frozen(self.0.key_state(key_digest)).await
    }
    fn redaction_key(&self) -> Option<actguard::RedactionKey> {
        self.0.redaction_key()
    }
}
