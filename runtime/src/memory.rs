//! [`MemoryStore`]: the [`Store`] for tests and examples. Same semantics as every other store, no
//! durability: everything is lost with the process.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use uuid::Uuid;

use crate::key::PayloadJson;
use crate::log::Outcome;
use crate::log::{LogEntry, LogHead, LogQuery, NewLogEntry};
use crate::redacted::RedactionKey;
use crate::rules::{
    self, ActedView, CompletePlan, FailPlan, Holder, KeyPhase, KeyView, LeaseView, RecordView,
    Refusal,
};
use crate::store::{
    self, Appended, Begin, BeginRequest, Completion, Failure, Millis, QueueEntry, QueueQuery,
    QueueRef, QueueStatus, QueueUpdate, Renewal, RunState, SharedStr, Store, StoreError,
};

/// A store in memory. Cheap to clone: clones share the same state, so a test can keep one handle and
/// give another to the [`Agent`](crate::Agent). Its redaction secret
/// ([`Store::redaction_key`]) is random, drawn when it is created, and shared by its clones.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use actguard::{Agent, MemoryStore};
///
/// let store = MemoryStore::new();
/// let agent = Agent::builder().store(store.clone()).build().unwrap();
/// let run = agent.start_run();
/// assert!(!run.is_halted().await.unwrap());
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    redaction: RedactionKey,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("MemoryStore")
            .field("keys", &s.keys.len())
            .field("log", &s.log.len())
            .field("queue", &s.queue.len())
            .finish()
    }
}

/// The maps of the store hash with foldhash's fast hasher: a guarded call makes about a dozen lookups,
/// and SipHash over 64-character digests was a large share of its cost. An in-memory store for tests
/// and examples needs no resistance to chosen collisions.
type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

#[derive(Default)]
struct State {
    runs: Map<Uuid, RunState>,
    /// Boxed, like `records`' states: a table of small entries grows (and is dropped) without moving
    /// or touching a few hundred bytes per key.
    keys: Map<SharedStr, Box<KeyRow>>,
    /// Per record: its fencing tokens, its lease and the loop filter's marks (one map, one lookup).
    records: Map<SharedStr, Box<RecordState>>,
    log: Log,
    queue: Vec<QueueEntry>,
}

/// The action log, in chunks of [`Log::CHUNK`] entries: appending never moves the entries already
/// kept (a growing `Vec` copies them all at each doubling), and a chunk is small enough for the
/// allocator to reuse rather than map fresh pages for.
#[derive(Default)]
struct Log {
    chunks: Vec<Vec<LogEntry>>,
}

impl Log {
    const CHUNK: usize = 128;

    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    fn last(&self) -> Option<&LogEntry> {
        self.chunks.last().and_then(|c| c.last())
    }

    fn push(&mut self, entry: LogEntry) -> &LogEntry {
        if self.chunks.last().is_none_or(|c| c.len() == Self::CHUNK) {
            self.chunks.push(Vec::with_capacity(Self::CHUNK));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        chunk.push(entry);
        chunk.last().expect("just pushed")
    }

    fn iter(&self) -> impl Iterator<Item = &LogEntry> {
        self.chunks.iter().flatten()
    }

    /// The log as one vector, to edit (tests), then kept again in chunks.
    fn edit(&mut self, edit: impl FnOnce(&mut Vec<LogEntry>)) {
        let mut all: Vec<LogEntry> = std::mem::take(&mut self.chunks)
            .into_iter()
            .flatten()
            .collect();
        edit(&mut all);
        for e in all {
            self.push(e);
        }
    }
}

/// A key as the memory store holds it (the store-neutral view is [`store::KeyState`]).
struct KeyRow {
    fingerprint: SharedStr,
    status: KeyRowStatus,
    /// What the key was last claimed with (for [`Store::key_state`]).
    call: KeyCall,
    /// Attempts counted against the budget of the key's current call ([`rules`]).
    attempts: u32,
}

impl KeyRow {
    /// The key's stored status and queue entry, as operators' rules see it.
    fn stored(&self) -> (store::KeyStatus, Option<u64>) {
        match &self.status {
            KeyRowStatus::Claimed { .. } => (store::KeyStatus::Claimed, None),
            KeyRowStatus::Completed { .. } => (store::KeyStatus::Completed, None),
            KeyRowStatus::Failed { entry } => (store::KeyStatus::Failed, Some(entry.id)),
            KeyRowStatus::Released => (store::KeyStatus::Released, None),
        }
    }

    /// The key as the rules of `begin` see it.
    fn view(&self, queue: &[QueueEntry], req: &BeginRequest) -> KeyView<'_> {
        let phase = match &self.status {
            KeyRowStatus::Claimed { lease_until_ms, .. } => KeyPhase::Claimed {
                lease_until_ms: *lease_until_ms,
            },
            KeyRowStatus::Completed { .. } => KeyPhase::Completed,
            KeyRowStatus::Failed { entry } => KeyPhase::Failed {
                entry: entry.id,
                entry_replayable: rules::replays(req, entry.id)
                    && queue
                        .iter()
                        .find(|e| e.id == entry.id)
                        .is_some_and(|e| rules::replayable(e.status)),
            },
            KeyRowStatus::Released => KeyPhase::Released,
        };
        KeyView {
            fingerprint: rules::stored_fingerprint(&self.fingerprint),
            phase,
            attempts: self.attempts,
        }
    }

    /// The claim holding the key, if it is claimed.
    fn claimed_by(&self) -> Option<Uuid> {
        match self.status {
            KeyRowStatus::Claimed { claim_id, .. } => Some(claim_id),
            _ => None,
        }
    }
}

/// The answer to a refusal of `begin` on a stored key: its stored result or its queue entry where
/// the rules say so.
fn refusal_answer(refusal: Refusal<'_>, key: &KeyRow) -> Begin {
    match (refusal, &key.status) {
        (Refusal::Completed, KeyRowStatus::Completed { result, at_ms, .. }) => Begin::Completed {
            result: result.clone(),
            completed_at_ms: *at_ms,
        },
        (Refusal::Failed { .. }, KeyRowStatus::Failed { entry }) => Begin::Failed {
            entry: entry.clone(),
        },
        (refusal, _) => refusal
            .answer()
            .expect("the rules answer a completed or failed key only from its state"),
    }
}

struct KeyCall {
    action: SharedStr,
    key_text: SharedStr,
    record: SharedStr,
    payload: PayloadJson,
}

/// Where a key of the memory store stands, with what each state keeps (the store-neutral view is
/// [`store::KeyStatus`]).
enum KeyRowStatus {
    Claimed {
        claim_id: Uuid,
        lease_until_ms: Millis,
    },
    Completed {
        result: serde_json::Value,
        at_ms: Millis,
        /// The claim that completed it (a lost reply's completion, sent again, converges).
        by: Uuid,
    },
    Failed {
        entry: QueueRef,
    },
    /// Released without a result (the run halted): may be claimed again.
    Released,
}

/// The loop filter's mark: an action completed on a record.
struct Acted {
    action: SharedStr,
    key_text: SharedStr,
    key_digest: SharedStr,
    at_ms: Millis,
}

#[derive(Default)]
struct RecordState {
    highest_token: u64,
    lease: Option<RecordLease>,
    /// The last completion of each action on the record: the first action's inline, others after.
    acted: Option<Acted>,
    acted_more: Vec<Acted>,
}

impl RecordState {
    /// The last completion of `action` on this record.
    fn acted(&self, action: &str) -> Option<&Acted> {
        self.acted
            .iter()
            .chain(&self.acted_more)
            .find(|a| a.action == action)
    }

    /// Marks `acted.action` completed on this record (replacing its previous mark).
    fn mark(&mut self, acted: Acted) {
        let marks = self.acted.iter_mut().chain(&mut self.acted_more);
        if let Some(mark) = marks.into_iter().find(|a| a.action == acted.action) {
            *mark = acted;
        } else if self.acted.is_none() {
            self.acted = Some(acted);
        } else {
            self.acted_more.push(acted);
        }
    }
}

struct RecordLease {
    key_digest: SharedStr,
    key_text: SharedStr,
    claim_id: Uuid,
    until_ms: Millis,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Arc::default(),
            redaction: RedactionKey::new(RedactionKey::generate_secret())
                .expect("a generated secret is long enough"),
        }
    }
}

impl MemoryStore {
    /// An empty store, with a new random redaction secret.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `edit` the stored log as it is, to change in place: for tests that prove an edited,
    /// deleted or reordered entry is detected by [`verify`](crate::verify). Nothing in actguard calls it.
    pub fn tamper_with_log(&self, edit: impl FnOnce(&mut Vec<LogEntry>)) {
        self.lock().log.edit(edit)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed: every method checks first
        // and mutates last, so the data behind a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Counts `entry`'s attempt under its key ([`rules::attempts_after_log`]), then links it into
    /// the log; returns it as kept.
    fn append(&mut self, entry: NewLogEntry) -> &LogEntry {
        if entry.attempt > 0
            && let Some(k) = self.keys.get_mut(&entry.key_digest)
            && let Some(n) = rules::attempts_after_log(
                matches!(k.status, KeyRowStatus::Claimed { .. }),
                k.attempts,
                entry.attempt,
            )
        {
            k.attempts = n;
        }
        let e = LogEntry::chain(self.log.last(), entry);
        self.log.push(e)
    }

    fn queue_mut(&mut self, id: u64) -> Option<&mut QueueEntry> {
        self.queue.iter_mut().find(|e| e.id == id)
    }

    fn release_record(&mut self, record: &str, claim_id: Uuid) {
        if let Some(r) = self.records.get_mut(record)
            && r.lease.as_ref().is_some_and(|l| l.claim_id == claim_id)
        {
            r.lease = None;
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn begin(&self, req: &BeginRequest) -> Result<Begin, StoreError> {
        let mut guard = self.lock();
        // One lookup per map: the key's and the record's entries are found once, checked by the
        // rules, then claimed in place.
        let State {
            runs,
            keys,
            records,
            queue,
            ..
        } = &mut *guard;

        let halted =
            !runs.is_empty() && matches!(runs.get(&req.run_id), Some(RunState::Halted { .. }));
        let key = keys.entry(req.key_digest.clone());
        let view = match &key {
            Entry::Occupied(k) => Some(k.get().view(queue, req)),
            Entry::Vacant(_) => None,
        };
        let grant = match rules::begin_key(req, halted, view) {
            Ok(grant) => grant,
            Err(refusal) => {
                let Entry::Occupied(k) = &key else {
                    return Ok(refusal
                        .answer()
                        .expect("only a stored key completes or fails"));
                };
                return Ok(refusal_answer(refusal, k.get()));
            }
        };

        let mut record = records.get_mut(&req.record);
        let plan = {
            let r = record.as_deref();
            let view = r.map(|r| RecordView {
                last_token: r.highest_token,
                lease: r.lease.as_ref().map(|l| LeaseView {
                    holder_digest: &l.key_digest,
                    holder_key: &l.key_text,
                    until_ms: l.until_ms,
                }),
            });
            let acted = match req.dedup_ms {
                Some(_) => r.and_then(|r| r.acted(&req.action)).map(|a| ActedView {
                    key_digest: &a.key_digest,
                    key_text: &a.key_text,
                    at_ms: a.at_ms,
                }),
                None => None,
            };
            match rules::begin_record(req, grant, view, acted) {
                Ok(plan) => plan,
                Err(refusal) => return Ok(refusal.answer().expect("a record refusal")),
            }
        };

        let lease = RecordLease {
            key_digest: req.key_digest.clone(),
            key_text: req.key_text.clone(),
            claim_id: req.claim_id,
            until_ms: plan.lease_until_ms,
        };
        match &mut record {
            Some(r) => {
                r.highest_token = plan.fencing_token;
                r.lease = Some(lease);
            }
            None => {
                records.insert(
                    req.record.clone(),
                    Box::new(RecordState {
                        highest_token: plan.fencing_token,
                        lease: Some(lease),
                        ..RecordState::default()
                    }),
                );
            }
        }
        let status = KeyRowStatus::Claimed {
            claim_id: req.claim_id,
            lease_until_ms: plan.lease_until_ms,
        };
        let call = KeyCall {
            action: req.action.clone(),
            key_text: req.key_text.clone(),
            record: req.record.clone(),
            payload: req.payload.clone(),
        };
        match key {
            Entry::Occupied(mut k) => {
                let k = k.get_mut();
                k.fingerprint = req.fingerprint.clone();
                k.status = status;
                k.call = call;
                k.attempts = plan.attempts;
            }
            Entry::Vacant(v) => {
                v.insert(Box::new(KeyRow {
                    fingerprint: req.fingerprint.clone(),
                    status,
                    call,
                    attempts: plan.attempts,
                }));
            }
        }
        Ok(Begin::Claimed(plan.claim))
    }

    async fn renew(&self, r: &Renewal) -> Result<Millis, StoreError> {
        let mut s = self.lock();
        let k = s.keys.get_mut(&r.key_digest);
        let until = rules::renew(
            k.as_deref().and_then(|k| k.claimed_by()),
            r.claim_id,
            &r.key_text,
            r.now_ms,
            r.lease_ms,
        )?;
        if let Some(KeyRowStatus::Claimed { lease_until_ms, .. }) = k.map(|k| &mut k.status) {
            *lease_until_ms = until;
        }
        if let Some(lease) = s
            .records
            .get_mut(&r.record)
            .and_then(|rec| rec.lease.as_mut())
            .filter(|l| l.claim_id == r.claim_id)
        {
            lease.until_ms = until;
        }
        Ok(until)
    }

    async fn complete(&self, c: Completion) -> Result<Appended, StoreError> {
        let mut s = self.lock();
        let Completion {
            key_digest,
            claim_id,
            action,
            record,
            result,
            entry,
            now_ms,
            replay_of,
        } = c;
        // The claim checked and the result stored in one lookup of the key.
        let k = s.keys.get_mut(&key_digest);
        let holder = match k.as_deref().map(|k| &k.status) {
            Some(KeyRowStatus::Claimed { claim_id, .. }) => Holder::Claimed(*claim_id),
            Some(KeyRowStatus::Completed { result: r, by, .. }) => {
                Holder::Completed(Some(*by), *r == result)
            }
            _ => Holder::Other,
        };
        if rules::complete(holder, claim_id, &entry.key_text)? == CompletePlan::AlreadyDone {
            let first = s
                .log
                .iter()
                .filter(|e| {
                    e.entry.key_digest == key_digest
                        && matches!(e.entry.outcome, Outcome::Succeeded | Outcome::Compensated)
                })
                .last()
                .map(Appended::of);
            return first.ok_or_else(|| {
                StoreError::Corrupt(
                    format!("key `{}` completed without a log entry", entry.key_text).into(),
                )
            });
        }
        let k = k.expect("a held claim has its key");
        k.status = KeyRowStatus::Completed {
            result,
            at_ms: now_ms,
            by: claim_id,
        };
        let state = s.records.entry(record).or_default();
        if state.lease.as_ref().is_some_and(|l| l.claim_id == claim_id) {
            state.lease = None;
        }
        state.mark(Acted {
            action,
            key_text: entry.key_text.clone(),
            key_digest,
            at_ms: now_ms,
        });
        if let Some(q) = replay_of.and_then(|id| s.queue_mut(id))
            && rules::replayable(q.status)
        {
            q.status = QueueStatus::Replayed;
            q.closed_ms = Some(now_ms);
        }
        Ok(Appended::of(s.append(entry)))
    }

    async fn fail(&self, f: Failure) -> Result<LogEntry, StoreError> {
        let mut s = self.lock();
        rules::check_claim(
            s.keys.get(&f.key_digest).and_then(|k| k.claimed_by()),
            f.claim_id,
            &f.entry.key_text,
        )?;
        let mut entry = f.entry;
        let replayed = f.replay_of.and_then(|id| s.queue_mut(id).map(|e| e.id));
        let status = match rules::fail(f.queue_entry.is_some(), replayed) {
            FailPlan::Refail { entry: id } => {
                let q = f.queue_entry.as_ref().expect("a queued failure");
                let e = s.queue_mut(id).expect("the replayed entry exists");
                rules::refail(e, q);
                entry.queue_entry = Some(id);
                KeyRowStatus::Failed { entry: e.to_ref() }
            }
            FailPlan::Return { entry: id } => KeyRowStatus::Failed {
                entry: s.queue_mut(id).expect("the replayed entry exists").to_ref(),
            },
            FailPlan::Open => {
                let q = f.queue_entry.expect("a queued failure");
                let id = s.queue.len() as u64 + 1;
                let e = QueueEntry::open(id, q, f.now_ms);
                let at = e.to_ref();
                s.queue.push(e);
                entry.queue_entry = Some(id);
                KeyRowStatus::Failed { entry: at }
            }
            FailPlan::Release => KeyRowStatus::Released,
        };
        if let Some(k) = s.keys.get_mut(&f.key_digest) {
            k.status = status;
        }
        s.release_record(&entry.record, f.claim_id);
        Ok(s.append(entry).clone())
    }

    async fn append_log(&self, entry: &NewLogEntry) -> Result<LogEntry, StoreError> {
        Ok(self.lock().append(entry.clone()).clone())
    }

    async fn log(&self, query: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let s = self.lock();
        let matching = s.log.iter().filter(|e| query.matches(e)).cloned();
        Ok(match query.limit {
            Some(n) => matching.take(n).collect(),
            None => matching.collect(),
        })
    }

    async fn log_head(&self) -> Result<Option<LogHead>, StoreError> {
        Ok(self.lock().log.last().map(LogHead::of))
    }

    async fn halt_run(
        &self,
        run_id: Uuid,
        reason: &str,
        now_ms: Millis,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.runs.get(&run_id) {
            Some(RunState::Halted { .. }) => Ok(false),
            _ => {
                s.runs.insert(
                    run_id,
                    RunState::Halted {
                        reason: reason.to_owned(),
                        at_ms: now_ms,
                    },
                );
                Ok(true)
            }
        }
    }

    async fn run_state(&self, run_id: Uuid) -> Result<RunState, StoreError> {
        Ok(self
            .lock()
            .runs
            .get(&run_id)
            .cloned()
            .unwrap_or(RunState::Active))
    }

    async fn current_fencing_token(&self, record: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().records.get(record).map(|r| r.highest_token))
    }

    async fn queue_entries(&self, q: &QueueQuery) -> Result<Vec<QueueEntry>, StoreError> {
        let s = self.lock();
        Ok(s.queue.iter().filter(|e| q.matches(e)).cloned().collect())
    }

    async fn queue_entry(&self, id: u64) -> Result<Option<QueueEntry>, StoreError> {
        Ok(self.lock().queue.iter().find(|e| e.id == id).cloned())
    }

    async fn queue_update(&self, u: &QueueUpdate) -> Result<QueueEntry, StoreError> {
        let mut s = self.lock();
        let e = s
            .queue_mut(u.id)
            .ok_or_else(|| StoreError::NotFound(format!("queue entry {}", u.id).into()))?;
        u.op.check(e)?;
        u.op.apply(e, u.now_ms);
        let updated = e.clone();
        if let Some(k) = s.keys.get_mut(updated.key_digest.as_str())
            && rules::releases_key(&u.op, Some(k.stored()), u.id)
        {
            k.status = KeyRowStatus::Released;
            k.fingerprint = SharedStr::from_static(rules::RELEASED_FINGERPRINT);
        }
        let mut entry = u.entry.clone();
        entry.queue_entry = Some(u.id);
        s.append(entry);
        Ok(updated)
    }

    async fn key_state(&self, key_digest: &str) -> Result<Option<store::KeyState>, StoreError> {
        let s = self.lock();
        Ok(s.keys.get(key_digest).map(|k| {
            let (status, queue_entry) = k.stored();
            let result = match &k.status {
                KeyRowStatus::Completed { result, .. } => Some(result.clone()),
                _ => None,
            };
            store::KeyState {
                action: k.call.action.to_string(),
                key_text: k.call.key_text.to_string(),
                record: k.call.record.to_string(),
                fingerprint: k.fingerprint.to_string(),
                payload: k.call.payload.value(),
                status,
                result,
                queue_entry,
            }
        }))
    }

    fn redaction_key(&self) -> Option<RedactionKey> {
        Some(self.redaction.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Outcome, verify_chain};
    use crate::policy::FailureKind;
    use crate::store::{Claim, NewQueueEntry, QueueKind};

    fn request(key: &str, record: &str, now_ms: Millis) -> BeginRequest {
        BeginRequest {
            run_id: Uuid::nil(),
            action: "act".into(),
            key_text: key.into(),
            key_digest: format!("digest-{key}").into(),
            record: record.into(),
            fingerprint: "fp".into(),
            payload: serde_json::json!({}).into(),
            claim_id: Uuid::now_v7(),
            now_ms,
            lease_ms: 1_000,
            dedup_ms: Some(10_000),
            replay_of: None,
        }
    }

    fn entry(req: &BeginRequest, outcome: Outcome, attempt: u32) -> NewLogEntry {
        NewLogEntry {
            at_ms: req.now_ms,
            run_id: req.run_id,
            action: req.action.clone(),
            record: req.record.clone(),
            key_text: req.key_text.clone(),
            key_digest: req.key_digest.clone(),
            attempt,
            retry: attempt > 1,
            outcome,
            failure_kind: None,
            route: None,
            message: None,
            queue_entry: None,
            before: None,
            after: None,
            fencing_token: None,
            duration_ms: 0,
        }
    }

    fn completion(req: &BeginRequest, now_ms: Millis) -> Completion {
        Completion {
            key_digest: req.key_digest.clone(),
            claim_id: req.claim_id,
            action: req.action.clone(),
            record: req.record.clone(),
            result: serde_json::json!({"ok": req.key_text}),
            entry: entry(req, Outcome::Succeeded, 1),
            now_ms,
            replay_of: None,
        }
    }

    fn queued(req: &BeginRequest, now_ms: Millis) -> Failure {
        Failure {
            key_digest: req.key_digest.clone(),
            claim_id: req.claim_id,
            queue_entry: Some(NewQueueEntry {
                kind: QueueKind::Owner,
                name: "ops".into(),
                run_id: req.run_id,
                action: req.action.to_string(),
                key_text: req.key_text.to_string(),
                key_digest: req.key_digest.to_string(),
                record: req.record.to_string(),
                payload: req.payload.value(),
                failure_kind: FailureKind::Validation,
                message: "bad".into(),
                attempts: 1,
                first_failure_ms: now_ms,
                last_failure_ms: now_ms,
            }),
            entry: entry(req, Outcome::Routed, 1),
            now_ms,
            replay_of: None,
        }
    }

    fn claimed(b: Begin) -> Claim {
        match b {
            Begin::Claimed(c) => c,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_completed_key_replays_its_result_and_claims_nothing() {
        let s = MemoryStore::new();
        let r = request("k", "rec", 0);
        claimed(s.begin(&r).await.unwrap());
        s.complete(completion(&r, 5)).await.unwrap();
        let again = request("k", "rec", 6);
        assert_eq!(
            s.begin(&again).await.unwrap(),
            Begin::Completed {
                result: serde_json::json!({"ok": "k"}),
                completed_at_ms: 5
            }
        );
        assert_eq!(s.current_fencing_token("rec").await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn the_halt_check_comes_before_everything() {
        let s = MemoryStore::new();
        let r = request("k", "rec", 0);
        claimed(s.begin(&r).await.unwrap());
        s.complete(completion(&r, 1)).await.unwrap();
        assert!(s.halt_run(Uuid::nil(), "x", 2).await.unwrap());
        assert!(!s.halt_run(Uuid::nil(), "again", 3).await.unwrap());
        assert_eq!(
            s.begin(&request("k", "rec", 4)).await.unwrap(),
            Begin::Halted
        );
        assert_eq!(
            s.run_state(Uuid::nil()).await.unwrap(),
            RunState::Halted {
                reason: "x".into(),
                at_ms: 2
            }
        );
    }

    #[tokio::test]
    async fn another_fingerprint_is_key_reused_and_a_failed_key_names_its_queue_entry() {
        let s = MemoryStore::new();
        let r = request("k", "rec", 0);
        claimed(s.begin(&r).await.unwrap());
        let mut changed = request("k", "rec", 1);
        changed.fingerprint = "other".into();
        assert_eq!(
            s.begin(&changed).await.unwrap(),
            Begin::KeyReused {
                stored_fingerprint: "fp".into()
            }
        );
        let logged = s.fail(queued(&r, 2)).await.unwrap();
        assert_eq!(logged.entry.queue_entry, Some(1));
        match s.begin(&request("k", "rec", 3)).await.unwrap() {
            Begin::Failed { entry } => assert_eq!((entry.id, entry.kind), (1, QueueKind::Owner)),
            other => panic!("{other:?}"),
        }
        let q = s.queue_entry(1).await.unwrap().unwrap();
        assert_eq!(
            (q.status, q.created_ms, q.name.as_str()),
            (QueueStatus::Open, 2, "ops")
        );
    }

    #[tokio::test]
    async fn live_claims_block_the_key_and_the_record() {
        let s = MemoryStore::new();
        let r = request("k", "rec", 0);
        claimed(s.begin(&r).await.unwrap());
        assert_eq!(
            s.begin(&request("k", "rec", 999)).await.unwrap(),
            Begin::InProgress {
                lease_until_ms: 1_000
            }
        );
        assert_eq!(
            s.begin(&request("other", "rec", 999)).await.unwrap(),
            Begin::RecordBusy {
                holder_key: "k".into(),
                lease_until_ms: 1_000
            }
        );
        // Another record is free.
        claimed(s.begin(&request("third", "rec2", 999)).await.unwrap());
    }

    #[tokio::test]
    async fn an_expired_claim_is_taken_over_and_the_old_claim_is_lost() {
        let s = MemoryStore::new();
        let old = request("k", "rec", 0);
        let first = claimed(s.begin(&old).await.unwrap());
        s.append_log(&entry(&old, Outcome::Retrying, 1))
            .await
            .unwrap();
        s.append_log(&entry(&old, Outcome::Retrying, 2))
            .await
            .unwrap();
        let new = request("k", "rec", 1_000);
        let second = claimed(s.begin(&new).await.unwrap());
        assert!(second.takeover);
        assert_eq!(second.previous_attempts, 2);
        assert!(second.fencing_token > first.fencing_token);
        let lost = s.complete(completion(&old, 1_001)).await.unwrap_err();
        assert!(matches!(lost, StoreError::ClaimLost { ref key } if key == "k"));
        let lost = s.fail(queued(&old, 1_001)).await.unwrap_err();
        assert!(matches!(lost, StoreError::ClaimLost { .. }));
        assert!(
            s.queue_entries(&QueueQuery::default())
                .await
                .unwrap()
                .is_empty()
        );
        s.complete(completion(&new, 1_002)).await.unwrap();
    }

    #[tokio::test]
    async fn the_loop_filter_skips_another_key_within_the_window_only() {
        let s = MemoryStore::new();
        let r = request("k1", "rec", 0);
        claimed(s.begin(&r).await.unwrap());
        s.complete(completion(&r, 100)).await.unwrap();
        assert_eq!(
            s.begin(&request("k2", "rec", 10_099)).await.unwrap(),
            Begin::Skipped {
                previous_key: "k1".into(),
                acted_at_ms: 100
            }
        );
        let mut no_filter = request("k2", "rec", 10_099);
        no_filter.dedup_ms = None;
        claimed(s.begin(&no_filter).await.unwrap());
        let mut other_action = request("k3", "rec2", 10_099);
        other_action.action = "other".into();
        claimed(s.begin(&other_action).await.unwrap());
        let s = MemoryStore::new();
        let r = request("k1", "rec", 0);
        claimed(s.begin(&r).await.unwrap());
        s.complete(completion(&r, 100)).await.unwrap();
        claimed(s.begin(&request("k2", "rec", 10_100)).await.unwrap());
    }

    #[tokio::test]
    async fn fencing_tokens_increase_per_record() {
        let s = MemoryStore::new();
        let mut tokens = Vec::new();
        for (i, now) in [0, 1_000, 2_000].into_iter().enumerate() {
            let mut r = request(&format!("k{i}"), "rec", now);
            r.dedup_ms = None;
            tokens.push(claimed(s.begin(&r).await.unwrap()).fencing_token);
            s.complete(completion(&r, now + 1)).await.unwrap();
        }
        assert_eq!(tokens, [1, 2, 3]);
        let r = request("x", "other", 0);
        assert_eq!(claimed(s.begin(&r).await.unwrap()).fencing_token, 1);
        assert_eq!(s.current_fencing_token("rec").await.unwrap(), Some(3));
        assert_eq!(s.current_fencing_token("none").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_halted_call_releases_its_key_and_record() {
        let s = MemoryStore::new();
        let r = request("k", "rec", 0);
        claimed(s.begin(&r).await.unwrap());
        let released = Failure {
            key_digest: r.key_digest.clone(),
            claim_id: r.claim_id,
            queue_entry: None,
            entry: entry(&r, Outcome::Halted, 1),
            now_ms: 1,
            replay_of: None,
        };
        assert_eq!(s.fail(released).await.unwrap().entry.queue_entry, None);
        let mut other = request("k", "rec", 2);
        other.run_id = Uuid::max();
        let c = claimed(s.begin(&other).await.unwrap());
        assert!(!c.takeover);
    }

    #[tokio::test]
    async fn the_log_is_chained_and_paged() {
        let s = MemoryStore::new();
        let r = request("k", "rec", 0);
        for i in 1..=5 {
            s.append_log(&entry(&r, Outcome::Retrying, i))
                .await
                .unwrap();
        }
        let all = s.log(&LogQuery::default()).await.unwrap();
        assert_eq!(verify_chain(&all), Ok(5));
        let page = s
            .log(&LogQuery {
                after_seq: Some(2),
                limit: Some(2),
                ..LogQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    }
}
