//! Shared helpers of the behaviour tests.

use actguard::testing::RecordingAlert;
use actguard::{Agent, AgentBuilder, MemoryStore};

/// An agent on a fresh [`MemoryStore`], with a recording alert sink and reproducible jitter; the store
/// and the recorder stay reachable for assertions.
pub struct World {
    pub agent: Agent,
    pub store: MemoryStore,
    pub alerts: RecordingAlert,
}

impl World {
    /// The default world.
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    /// A world whose agent is configured further by `configure`.
    pub fn with(configure: impl FnOnce(AgentBuilder) -> AgentBuilder) -> Self {
        let store = MemoryStore::new();
        let alerts = RecordingAlert::new();
        let builder = Agent::builder()
            .store(store.clone())
            .alert_sink(alerts.clone())
            .jitter_seed(7);
        World {
            agent: configure(builder).build().expect("the agent builds"),
            store,
            alerts,
        }
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// A `static` action spec, as `#[agent_action]` generates one, for tests that drive the guarded call
/// by hand: `static S: ActionSpec = action_spec!("name", Write, retries: 2, owner: Some("ops"));`
/// (any [`actguard::Policy`] field; the rest keep their defaults).
#[macro_export]
macro_rules! action_spec {
    ($name:literal, $effect:ident $(, $field:ident : $value:expr)* $(,)?) => {
        ::actguard::ActionSpec {
            name: $name,
            fn_name: $name,
            module_path: module_path!(),
            file: file!(),
            line: line!(),
            effect: ::actguard::Effect::$effect,
            key: Some("{key}"),
            record: None,
            policy: ::actguard::Policy {
                $($field: $value,)*
                ..::actguard::Policy::DEFAULT
            },
            compensate: None,
            explicit: &[],
            payload: &[],
            deps: &[],
            result_type: "",
            error_type: "",
            tool: None,
            invoke: None,
        }
    };
}

/// A request to begin `key` of `action` on `record` at `now_ms`, for the tests that drive
/// `Store::begin` directly: a fresh run and claim id, digest `digest:{key}`, a 30 s lease, no loop
/// filter, a payload naming the key. Tests adjust it with struct update syntax.
pub fn begin_request(
    action: &str,
    key: &str,
    record: &str,
    now_ms: actguard::store::Millis,
) -> actguard::store::BeginRequest {
    actguard::store::BeginRequest {
        run_id: uuid::Uuid::now_v7(),
        action: action.into(),
        key_text: key.into(),
        key_digest: format!("digest:{key}").into(),
        record: record.into(),
        fingerprint: "fp".into(),
        payload: actguard::PayloadJson::from(serde_json::json!({ "key": key })),
        claim_id: uuid::Uuid::now_v7(),
        now_ms,
        lease_ms: 30_000,
        dedup_ms: None,
        replay_of: None,
    }
}

/// Runs `work` with tokio's paused clock held still: a test on a paused clock then sees a store that
/// works on its own thread (SQLite) answer as instantly as a memory one. An idle runtime with a paused
/// clock jumps to its next timer; a blocking task in flight keeps it from doing so (tokio inhibits
/// auto-advance while one runs), so one waits here until `work` is done. (Keeping the runtime busy
/// with `yield_now` instead is not enough: the clock was seen to jump while a store call was in
/// flight, ending a lease the test meant to keep.)
pub async fn holding_time<F: std::future::Future>(work: F) -> F::Output {
    let (done, held) = std::sync::mpsc::channel::<()>();
    let hold = tokio::task::spawn_blocking(move || {
        // Returns when `done` is dropped.
        let _ = held.recv();
    });
    let out = work.await;
    drop(done);
    hold.await.expect("the task holding the clock ends");
    out
}

/// A store that delegates to another and fails on demand, as a real one does at its edges: a reply
/// lost after the commit, a completion refused, a renewal that cannot reach the server. Time stands
/// still while the inner store works ([`holding_time`]), so tests on a paused clock see a file store
/// answer as instantly as a memory one.
pub struct FaultyStore {
    inner: std::sync::Arc<dyn actguard::Store>,
    lost_complete_replies: std::sync::atomic::AtomicU32,
    refused_completes: std::sync::atomic::AtomicU32,
    unreachable_completes: std::sync::atomic::AtomicU32,
    unreachable_renewals: std::sync::atomic::AtomicBool,
    renewals: std::sync::atomic::AtomicU32,
    lost_halt_replies: std::sync::atomic::AtomicU32,
}

impl FaultyStore {
    /// A faultless wrapper of `inner`.
    pub fn new(inner: impl actguard::Store) -> Self {
        FaultyStore {
            inner: std::sync::Arc::new(inner),
            lost_complete_replies: Default::default(),
            refused_completes: Default::default(),
            unreachable_completes: Default::default(),
            unreachable_renewals: Default::default(),
            renewals: Default::default(),
            lost_halt_replies: Default::default(),
        }
    }

    /// Another wrapper of the same store, with its own faults: a second worker on one store.
    pub fn another(&self) -> Self {
        FaultyStore {
            inner: self.inner.clone(),
            lost_complete_replies: Default::default(),
            refused_completes: Default::default(),
            unreachable_completes: Default::default(),
            unreachable_renewals: Default::default(),
            renewals: Default::default(),
            lost_halt_replies: Default::default(),
        }
    }

    /// Renewals do not reach the store (`true`) or do again (`false`).
    pub fn unreachable_renewals(&self, unreachable: bool) {
        self.unreachable_renewals
            .store(unreachable, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many renewals reached the store.
    pub fn renewals(&self) -> u32 {
        self.renewals.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The next `n` completions are committed, then answered with a dropped connection.
    pub fn lose_complete_replies(&self, n: u32) {
        self.lost_complete_replies
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next `n` halts are committed, then answered with a dropped connection.
    pub fn lose_halt_replies(&self, n: u32) {
        self.lost_halt_replies
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next `n` completions are refused (not committed) with a backend error.
    pub fn refuse_completes(&self, n: u32) {
        self.refused_completes
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next `n` completions do not reach the store.
    pub fn unreachable_completes(&self, n: u32) {
        self.unreachable_completes
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn take(counter: &std::sync::atomic::AtomicU32) -> bool {
        counter
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
    }
}

#[async_trait::async_trait]
impl actguard::Store for FaultyStore {
    async fn begin(
        &self,
        request: &actguard::store::BeginRequest,
    ) -> Result<actguard::store::Begin, actguard::StoreError> {
        holding_time(self.inner.begin(request)).await
    }
    async fn renew(&self, renewal: &actguard::store::Renewal) -> Result<i64, actguard::StoreError> {
        if self
            .unreachable_renewals
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(actguard::StoreError::Unavailable(
                "connection refused".into(),
            ));
        }
        self.renewals
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        holding_time(self.inner.renew(renewal)).await
    }
    async fn complete(
        &self,
        completion: actguard::store::Completion,
    ) -> Result<actguard::store::Appended, actguard::StoreError> {
        if Self::take(&self.refused_completes) {
            return Err(actguard::StoreError::Backend(
                "value too large for the column".into(),
            ));
        }
        if Self::take(&self.unreachable_completes) {
            return Err(actguard::StoreError::Unavailable(
                "connection refused".into(),
            ));
        }
        let done = holding_time(self.inner.complete(completion)).await?;
        if Self::take(&self.lost_complete_replies) {
            return Err(actguard::StoreError::Unavailable(
                "connection closed before the reply".into(),
            ));
        }
        Ok(done)
    }
    async fn fail(
        &self,
        failure: actguard::store::Failure,
    ) -> Result<actguard::LogEntry, actguard::StoreError> {
        holding_time(self.inner.fail(failure)).await
    }
    async fn append_log(
        &self,
        entry: &actguard::log::NewLogEntry,
    ) -> Result<actguard::LogEntry, actguard::StoreError> {
        holding_time(self.inner.append_log(entry)).await
    }
    async fn log(
        &self,
        query: &actguard::LogQuery,
    ) -> Result<Vec<actguard::LogEntry>, actguard::StoreError> {
        holding_time(self.inner.log(query)).await
    }
    async fn halt_run(
        &self,
        run_id: uuid::Uuid,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, actguard::StoreError> {
        let halted = holding_time(self.inner.halt_run(run_id, reason, now_ms)).await?;
        if Self::take(&self.lost_halt_replies) {
            return Err(actguard::StoreError::Unavailable(
                "the connection closed before the halt's answer arrived".into(),
            ));
        }
        Ok(halted)
    }
    async fn run_state(
        &self,
        run_id: uuid::Uuid,
    ) -> Result<actguard::store::RunState, actguard::StoreError> {
        holding_time(self.inner.run_state(run_id)).await
    }
    async fn current_fencing_token(
        &self,
        record: &str,
    ) -> Result<Option<u64>, actguard::StoreError> {
        holding_time(self.inner.current_fencing_token(record)).await
    }
    async fn queue_entries(
        &self,
        query: &actguard::store::QueueQuery,
    ) -> Result<Vec<actguard::store::QueueEntry>, actguard::StoreError> {
        holding_time(self.inner.queue_entries(query)).await
    }
    async fn queue_entry(
        &self,
        id: u64,
    ) -> Result<Option<actguard::store::QueueEntry>, actguard::StoreError> {
        holding_time(self.inner.queue_entry(id)).await
    }
    async fn queue_update(
        &self,
        update: &actguard::store::QueueUpdate,
    ) -> Result<actguard::store::QueueEntry, actguard::StoreError> {
        holding_time(self.inner.queue_update(update)).await
    }
    async fn key_state(
        &self,
        key_digest: &str,
    ) -> Result<Option<actguard::store::KeyState>, actguard::StoreError> {
        holding_time(self.inner.key_state(key_digest)).await
    }
    async fn log_head(&self) -> Result<Option<actguard::LogHead>, actguard::StoreError> {
        holding_time(self.inner.log_head()).await
    }
    async fn check_log_copies(&self) -> Result<(), actguard::StoreError> {
        holding_time(self.inner.check_log_copies()).await
    }
    fn redaction_key(&self) -> Option<actguard::RedactionKey> {
        self.inner.redaction_key()
    }
}

/// The `i`-th entry of a log written by the column tests: run `R` (7), action `ship`, record
/// `rec-{i}`, a retrying attempt at `T0 + i` seconds.
pub fn log_entry(i: u64) -> actguard::log::NewLogEntry {
    actguard::log::NewLogEntry {
        at_ms: 1_700_000_000_000 + i as i64 * 1000,
        run_id: uuid::Uuid::from_u128(7),
        action: "ship".into(),
        record: format!("rec-{i}").into(),
        key_text: format!("ship:rec-{i}").into(),
        key_digest: format!("digest:{i}").into(),
        attempt: 1,
        retry: false,
        outcome: actguard::Outcome::Retrying,
        failure_kind: None,
        route: None,
        message: Some("try again".to_owned()),
        queue_entry: None,
        before: None,
        after: None,
        fencing_token: None,
        duration_ms: 3,
    }
}

/// One edit per queryable column of the log tables (SQLite and PostgreSQL): the column, the SQL
/// assignment, and a query that selects the row by the edited value (or every row, for the columns
/// no query filters on). The same edit and query work on both stores.
pub fn column_edits() -> Vec<(&'static str, &'static str, actguard::LogQuery)> {
    use actguard::{LogQuery, Outcome};
    let other_run = uuid::Uuid::from_u128(99);
    vec![
        (
            "run_id",
            "run_id = '00000000-0000-0000-0000-000000000063'",
            LogQuery {
                run_id: Some(other_run),
                ..LogQuery::default()
            },
        ),
        (
            "action",
            "action = 'refund'",
            LogQuery {
                action: Some("refund".into()),
                ..LogQuery::default()
            },
        ),
        (
            "record",
            "record = 'rec-other'",
            LogQuery {
                record: Some("rec-other".into()),
                ..LogQuery::default()
            },
        ),
        (
            "key_digest",
            "key_digest = 'digest:other'",
            LogQuery::default(),
        ),
        ("attempt", "attempt = 9", LogQuery::default()),
        (
            "outcome",
            "outcome = 'succeeded'",
            LogQuery {
                outcome: Some(Outcome::Succeeded),
                ..LogQuery::default()
            },
        ),
        (
            "at_ms",
            "at_ms = 5",
            LogQuery {
                from_ms: Some(0),
                to_ms: Some(10),
                ..LogQuery::default()
            },
        ),
    ]
}
