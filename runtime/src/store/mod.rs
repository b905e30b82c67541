//! The store: where claims, leases, the dedup window, the action log, the review queues and run state live.
//!
//! The trait is small and speaks plain data. A store never reads a clock: every request carries `now_ms`
//! (Unix milliseconds from the agent's [`Clock`](crate::Clock)), so tests control time and every
//! process sharing a store applies the same rules.
//!
//! Every method is atomic: it takes effect entirely or not at all. `begin`, `complete` and `fail` are
//! the steps of one guarded call; what each decides is written once, in [`rules`](crate::rules).

mod error;

pub use error::{ErrorDetail, StoreError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::key::PayloadJson;
use crate::log::{LogEntry, LogHead, LogQuery, NewLogEntry};
use crate::policy::FailureKind;
pub use crate::shared::SharedStr;

/// Unix time in milliseconds.
pub type Millis = i64;

/// What the guarded call asks the store before acting (one atomic step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeginRequest {
    /// The run making the call.
    pub run_id: Uuid,
    /// The action name.
    pub action: SharedStr,
    /// The readable rendered key.
    pub key_text: SharedStr,
    /// The key's digest (`sha256(action ‖ parts)`): the identity of the claim.
    pub key_digest: SharedStr,
    /// The rendered record: unit of dedup, serialization (record lease) and blast radius.
    pub record: SharedStr,
    /// SHA-256 of the canonical payload.
    pub fingerprint: SharedStr,
    /// The payload as canonical JSON (the bytes `fingerprint` hashes), stored with the claim so a
    /// queue entry can be replayed. Shared: the store keeps it without copying. Build one from a
    /// `serde_json::Value` with `.into()`.
    pub payload: PayloadJson,
    /// Identifies this claim attempt (fresh per `begin`), so `complete`/`fail` of a claim that was taken
    /// over are rejected.
    pub claim_id: Uuid,
    /// Now.
    pub now_ms: Millis,
    /// How long the claim and the record lease hold: both expire at `now_ms + lease_ms`.
    pub lease_ms: Millis,
    /// Loop-filter window for (record, action); `None` turns it off.
    pub dedup_ms: Option<Millis>,
    /// A replay of this queue entry: when the key is terminally failed with exactly this entry and the
    /// entry is open or claimed, the key is claimed again (next fencing token, no takeover) instead of
    /// answering [`Begin::Failed`].
    #[serde(default)]
    pub replay_of: Option<u64>,
}

/// The answer to [`Store::begin`], checked in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Begin {
    /// The run is halted: nothing was claimed.
    Halted,
    /// The key is known with another payload fingerprint (Stripe's rule): nothing was claimed.
    KeyReused {
        /// The fingerprint stored with the key.
        stored_fingerprint: String,
    },
    /// The key completed before: here is its stored result; nothing was claimed.
    Completed {
        /// The stored result (`T` serialized).
        result: serde_json::Value,
        /// When it completed.
        completed_at_ms: Millis,
    },
    /// The key failed terminally before (routed or dead-lettered): here is its queue entry.
    Failed {
        /// The queue entry created by that failure.
        entry: QueueRef,
    },
    /// The key is claimed by a live lease (another worker is acting on it).
    InProgress {
        /// When that lease expires.
        lease_until_ms: Millis,
    },
    /// Another key holds the record's lease (calls on one record are serialized).
    RecordBusy {
        /// The key that holds the record.
        holder_key: String,
        /// When that lease expires.
        lease_until_ms: Millis,
    },
    /// (record, action) completed under another key within the dedup window: skip. The store has
    /// recorded nothing; the caller logs the skip.
    Skipped {
        /// The key that acted.
        previous_key: String,
        /// When it acted.
        acted_at_ms: Millis,
    },
    /// The key and the record lease are claimed, durably, until `now_ms + lease_ms`.
    Claimed(Claim),
}

/// A claim held on a key and its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Strictly increasing per record: a downstream that remembers the highest token it has seen per
    /// record can reject a stale writer.
    pub fencing_token: u64,
    /// Whether an expired claim of another worker on this key was taken over.
    pub takeover: bool,
    /// Attempts already logged under this key before this claim (by a worker that died).
    pub previous_attempts: u32,
}

/// A live call's renewal of its claim (the guarded call sends one every third of the lease while the
/// body runs or waits to retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// The key's digest.
    pub key_digest: SharedStr,
    /// The key's readable text (for the error).
    pub key_text: SharedStr,
    /// The claim renewing (`BeginRequest::claim_id`).
    pub claim_id: Uuid,
    /// The record whose lease the claim holds.
    pub record: SharedStr,
    /// Now.
    pub now_ms: Millis,
    /// The claim and the record lease then hold until `now_ms + lease_ms`.
    pub lease_ms: Millis,
}

/// A successful end of a claimed call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The key's digest.
    pub key_digest: SharedStr,
    /// The claim being completed (`BeginRequest::claim_id`).
    pub claim_id: Uuid,
    /// The action name (dedup window is per record and action).
    pub action: SharedStr,
    /// The record.
    pub record: SharedStr,
    /// The result, stored for idempotent replay.
    pub result: serde_json::Value,
    /// The final log entry, appended in the same transaction.
    pub entry: NewLogEntry,
    /// Now.
    pub now_ms: Millis,
    /// The queue entry this call replays: it is marked [`QueueStatus::Replayed`] in the same transaction.
    #[serde(default)]
    pub replay_of: Option<u64>,
}

/// Where [`Store::complete`] appended its entry: the entry's place in the chain. (The entry itself is
/// the caller's: it is not handed back.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The entry's sequence number.
    pub seq: u64,
    /// The hash of the entry before it ([`GENESIS_HASH`](crate::log::GENESIS_HASH) for the first).
    pub prev_hash: SharedStr,
    /// The entry's own hash.
    pub hash: SharedStr,
}

impl Appended {
    /// The place of `entry`.
    pub fn of(entry: &LogEntry) -> Self {
        Appended {
            seq: entry.seq,
            prev_hash: entry.prev_hash.clone(),
            hash: entry.hash.clone(),
        }
    }
}

/// A terminal failure of a claimed call (routed, dead-lettered or halted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The key's digest.
    pub key_digest: SharedStr,
    /// The claim ending (`BeginRequest::claim_id`).
    pub claim_id: Uuid,
    /// The queue entry to create, if the failure goes to a queue. With `Some`, the key becomes
    /// terminally failed (a later `begin` answers [`Begin::Failed`]); with `None` (halt) the claim is
    /// simply released.
    pub queue_entry: Option<NewQueueEntry>,
    /// The final log entry, appended in the same transaction (its `queue_entry` is filled in by the store).
    pub entry: NewLogEntry,
    /// Now.
    pub now_ms: Millis,
    /// The queue entry this call replays. A replay that fails again with a `queue_entry` updates that
    /// entry (attempts added, `last_failure_ms`, message, status back to open) instead of creating a new
    /// one; the key stays failed and points at it.
    #[serde(default)]
    pub replay_of: Option<u64>,
}

/// Which review queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// The data owner's queue (validation failures).
    Owner,
    /// The domain expert's queue (state conflicts).
    Expert,
    /// Exhausted retries, or routed there explicitly.
    DeadLetter,
    /// A failure that halted its run (a security failure, by default): the key is quarantined until a
    /// person resolves the entry.
    Security,
    /// A call waiting for a person's approval before it acts (actions with `approve`): approved
    /// ([`ops::queue_approve`](crate::ops::queue_approve)), the same key and payload act once;
    /// rejected ([`ops::queue_reject`](crate::ops::queue_reject)), the key answers `rejected`.
    Approval,
}

impl QueueKind {
    /// Every kind.
    pub const ALL: [QueueKind; 5] = [
        QueueKind::Owner,
        QueueKind::Expert,
        QueueKind::DeadLetter,
        QueueKind::Security,
        QueueKind::Approval,
    ];

    /// The spelling used in logs, stores and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueKind::Owner => "owner",
            QueueKind::Expert => "expert",
            QueueKind::DeadLetter => "dead_letter",
            QueueKind::Security => "security",
            QueueKind::Approval => "approval",
        }
    }

    /// The kind spelled `s` ([`as_str`](Self::as_str)), if any.
    pub fn parse(s: &str) -> Option<QueueKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A pointer to a queue entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QueueRef {
    /// Entry id, unique in the store.
    pub id: u64,
    /// Which queue.
    pub kind: QueueKind,
    /// The queue's name (`owner`/`expert` of the action, `dead-letter` or `security`).
    pub name: String,
}

/// A queue entry to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewQueueEntry {
    pub kind: QueueKind,
    pub name: String,
    pub run_id: Uuid,
    pub action: String,
    pub key_text: String,
    pub key_digest: String,
    pub record: String,
    pub payload: serde_json::Value,
    pub failure_kind: FailureKind,
    pub message: String,
    pub attempts: u32,
    pub first_failure_ms: Millis,
    pub last_failure_ms: Millis,
}

/// The state of a queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStatus {
    /// Waiting for a person.
    Open,
    /// Taken by a person.
    Claimed,
    /// Settled with a note.
    Resolved,
    /// Dropped.
    Discarded,
    /// Re-run successfully.
    Replayed,
}

/// A review-queue entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: u64,
    pub kind: QueueKind,
    pub name: String,
    pub run_id: Uuid,
    pub action: String,
    pub key_text: String,
    pub key_digest: String,
    pub record: String,
    pub payload: serde_json::Value,
    pub failure_kind: FailureKind,
    pub message: String,
    pub attempts: u32,
    pub first_failure_ms: Millis,
    pub last_failure_ms: Millis,
    pub status: QueueStatus,
    pub created_ms: Millis,
    /// Who claimed the entry (the last operator to claim, resolve or discard it).
    #[serde(default)]
    pub claimed_by: Option<String>,
    /// The note of the resolution or discard.
    #[serde(default)]
    pub note: Option<String>,
    /// When the entry reached a terminal status (resolved, discarded, replayed).
    #[serde(default)]
    pub closed_ms: Option<Millis>,
}

impl QueueEntry {
    /// The failure the entry records, as it was created (or last merged by
    /// [`rules::refail`](crate::rules::refail)): what a store keeps as the entry's JSON.
    pub fn failure(&self) -> NewQueueEntry {
        NewQueueEntry {
            kind: self.kind,
            name: self.name.clone(),
            run_id: self.run_id,
            action: self.action.clone(),
            key_text: self.key_text.clone(),
            key_digest: self.key_digest.clone(),
            record: self.record.clone(),
            payload: self.payload.clone(),
            failure_kind: self.failure_kind,
            message: self.message.clone(),
            attempts: self.attempts,
            first_failure_ms: self.first_failure_ms,
            last_failure_ms: self.last_failure_ms,
        }
    }

    /// A pointer to the entry.
    pub fn to_ref(&self) -> QueueRef {
        QueueRef {
            id: self.id,
            kind: self.kind,
            name: self.name.clone(),
        }
    }

    /// A new, open entry created at `created_ms` from what a failure recorded; every store builds its
    /// entries (and reads them back) through this, so the three agree field by field.
    pub fn open(id: u64, q: NewQueueEntry, created_ms: Millis) -> QueueEntry {
        QueueEntry {
            id,
            kind: q.kind,
            name: q.name,
            run_id: q.run_id,
            action: q.action,
            key_text: q.key_text,
            key_digest: q.key_digest,
            record: q.record,
            payload: q.payload,
            failure_kind: q.failure_kind,
            message: q.message,
            attempts: q.attempts,
            first_failure_ms: q.first_failure_ms,
            last_failure_ms: q.last_failure_ms,
            status: QueueStatus::Open,
            created_ms,
            claimed_by: None,
            note: None,
            closed_ms: None,
        }
    }
}

impl QueueStatus {
    /// Every status.
    pub const ALL: [QueueStatus; 5] = [
        QueueStatus::Open,
        QueueStatus::Claimed,
        QueueStatus::Resolved,
        QueueStatus::Discarded,
        QueueStatus::Replayed,
    ];

    /// The status spelled `s` ([`as_str`](Self::as_str)), if any.
    pub fn parse(s: &str) -> Option<QueueStatus> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The spelling used in logs, stores and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Open => "open",
            QueueStatus::Claimed => "claimed",
            QueueStatus::Resolved => "resolved",
            QueueStatus::Discarded => "discarded",
            QueueStatus::Replayed => "replayed",
        }
    }

    /// Whether no operation may change the entry any more (resolved, discarded, replayed).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            QueueStatus::Resolved | QueueStatus::Discarded | QueueStatus::Replayed
        )
    }
}

/// What an operator does to a queue entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOp {
    /// Take the entry: open → claimed.
    Claim { by: String },
    /// Settle it with a note: open or claimed → resolved. With `release`, the entry's key is released
    /// too ([`rules::releases_key`](crate::rules::releases_key)): the next call under that key acts,
    /// with any payload (the corrected data), instead of answering this entry.
    Resolve {
        by: String,
        note: String,
        #[serde(default)]
        release: bool,
    },
    /// Drop it with a note: open or claimed → discarded.
    Discard { by: String, note: String },
}

impl QueueOp {
    /// Who acts.
    pub fn by(&self) -> &str {
        match self {
            QueueOp::Claim { by } | QueueOp::Resolve { by, .. } | QueueOp::Discard { by, .. } => by,
        }
    }

    /// The status the entry moves to.
    pub fn target(&self) -> QueueStatus {
        match self {
            QueueOp::Claim { .. } => QueueStatus::Claimed,
            QueueOp::Resolve { .. } => QueueStatus::Resolved,
            QueueOp::Discard { .. } => QueueStatus::Discarded,
        }
    }

    /// The note, for resolve and discard.
    pub fn note(&self) -> Option<&str> {
        match self {
            QueueOp::Claim { .. } => None,
            QueueOp::Resolve { note, .. } | QueueOp::Discard { note, .. } => Some(note),
        }
    }

    /// Checks the transition from `entry`'s status; the error is [`StoreError::Conflict`] naming the
    /// entry and its status. Every store applies this one rule: claim an open entry; resolve or discard
    /// an open or claimed one; resolve with release also a resolved one (a release that was forgotten
    /// at the resolve).
    pub fn check(&self, entry: &QueueEntry) -> Result<(), StoreError> {
        let allowed = match self {
            QueueOp::Claim { .. } => entry.status == QueueStatus::Open,
            // Releasing may follow a resolve that forgot it: the key is freed, the entry stays
            // resolved.
            QueueOp::Resolve { release: true, .. } => {
                !entry.status.is_terminal() || entry.status == QueueStatus::Resolved
            }
            QueueOp::Resolve { .. } | QueueOp::Discard { .. } => !entry.status.is_terminal(),
        };
        if allowed {
            Ok(())
        } else {
            Err(StoreError::Conflict(
                format!(
                    "queue entry {} is {}: it cannot be {}",
                    entry.id,
                    entry.status.as_str(),
                    self.target().as_str()
                )
                .into(),
            ))
        }
    }

    /// Applies the transition to `entry` (after [`check`](Self::check)).
    pub fn apply(&self, entry: &mut QueueEntry, now_ms: Millis) {
        entry.status = self.target();
        entry.claimed_by = Some(self.by().to_owned());
        if let Some(note) = self.note() {
            entry.note = Some(note.to_owned());
            entry.closed_ms = Some(now_ms);
        }
    }
}

/// An operator's change to a queue entry, atomic with its log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueUpdate {
    /// The entry.
    pub id: u64,
    /// What to do.
    pub op: QueueOp,
    /// Now.
    pub now_ms: Millis,
    /// The operator log entry (`Outcome::Operator`, `queue_entry = Some(id)`), appended in the same
    /// transaction.
    pub entry: NewLogEntry,
}

/// What became of a key, as the store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Claimed by a call (live or expired lease).
    Claimed,
    /// Completed: the result is stored.
    Completed,
    /// Terminally failed: a queue entry decides.
    Failed,
    /// Released without a result (the run halted).
    Released,
}

impl KeyStatus {
    /// Every status.
    pub const ALL: [KeyStatus; 4] = [
        KeyStatus::Claimed,
        KeyStatus::Completed,
        KeyStatus::Failed,
        KeyStatus::Released,
    ];

    /// The status spelled `s` ([`as_str`](Self::as_str)), if any.
    pub fn parse(s: &str) -> Option<KeyStatus> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The spelling used in stores and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Claimed => "claimed",
            KeyStatus::Completed => "completed",
            KeyStatus::Failed => "failed",
            KeyStatus::Released => "released",
        }
    }
}

/// One idempotency key as stored: what it was called with and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    pub action: String,
    pub key_text: String,
    pub record: String,
    pub fingerprint: String,
    /// The payload of the call (what replay and revert invoke actions with).
    pub payload: serde_json::Value,
    pub status: KeyStatus,
    /// The stored result, once completed.
    pub result: Option<serde_json::Value>,
    /// The queue entry, once terminally failed.
    pub queue_entry: Option<u64>,
}

/// Which queue entries to list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueQuery {
    pub kind: Option<QueueKind>,
    pub name: Option<String>,
    pub action: Option<String>,
    pub status: Option<QueueStatus>,
    pub run_id: Option<Uuid>,
    /// Entries created at or before this time (Unix ms): "older than".
    #[serde(default)]
    pub older_than_ms: Option<Millis>,
    /// Entries created at or after this time (Unix ms): "newer than".
    #[serde(default)]
    pub newer_than_ms: Option<Millis>,
}

impl QueueQuery {
    /// Whether `e` matches every filter.
    pub fn matches(&self, e: &QueueEntry) -> bool {
        self.kind.is_none_or(|k| e.kind == k)
            && self.name.as_ref().is_none_or(|n| &e.name == n)
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self.status.is_none_or(|st| e.status == st)
            && self.run_id.is_none_or(|r| e.run_id == r)
            && self.older_than_ms.is_none_or(|t| e.created_ms <= t)
            && self.newer_than_ms.is_none_or(|t| e.created_ms >= t)
    }
}

/// Whether a run may go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Actions may run.
    Active,
    /// Halted durably; every later action of the run refuses.
    Halted {
        /// Why (the failure that halted it).
        reason: String,
        /// When.
        at_ms: Millis,
    },
}

/// The JSON text a store keeps for a value (a result, a queue entry); a value that cannot be written
/// as JSON (a map with non-string keys, a number serde_json refuses) is a [`StoreError::Backend`].
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| {
        StoreError::Backend(ErrorDetail::new(format!("cannot serialize: {e}")).with_source(e))
    })
}

/// Reads back JSON text a store kept; `corrupt` words the error when the text does not parse (the
/// store names its file or server and what it read).
///
/// Text nested deeper than `serde_json` reads by default (128 levels, written by an earlier release)
/// is read up to [`MAX_READ_DEPTH`](crate::MAX_READ_DEPTH) levels; deeper text is
/// [`StoreError::TooDeep`], worded by `corrupt` too.
pub fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    corrupt: impl FnOnce(serde_json::Error) -> StoreError,
) -> Result<T, StoreError> {
    match crate::limits::read_json(text) {
        Ok(value) => Ok(value),
        Err(crate::limits::ReadError::Json(e)) => Err(corrupt(e)),
        Err(crate::limits::ReadError::TooDeep(e)) => Err(match corrupt(e) {
            StoreError::Corrupt(message) => StoreError::TooDeep(message),
            other => other,
        }),
    }
}

/// Where a guarded call's claims, log, queues and run state are kept.
///
/// Implementations: [`MemoryStore`](crate::MemoryStore) (tests and examples), `SqliteStore` (the
/// embedded default) and `PostgresStore` (agents on many machines). Every implementation loads the
/// state the [`rules`](crate::rules) ask for, applies their decision atomically, and passes the same
/// conformance suite.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Step 3 of the guarded call, atomically, in this order: run halted → [`Begin::Halted`]; key
    /// known with another fingerprint → [`Begin::KeyReused`] (whatever the key's state: a completed key
    /// never answers a different intent with its result); key completed → [`Begin::Completed`]; key
    /// terminally failed → [`Begin::Failed`]; key claimed by a live lease → [`Begin::InProgress`]; record
    /// leased by a live claim of another key → [`Begin::RecordBusy`]; (record, action) completed under
    /// another key within `dedup_ms` → [`Begin::Skipped`]; otherwise claim key and record until
    /// `now_ms + lease_ms` with the record's next fencing token, durably, → [`Begin::Claimed`].
    async fn begin(&self, request: &BeginRequest) -> Result<Begin, StoreError>;

    /// Extends a live claim: while `renewal.claim_id` still holds the key
    /// ([`rules::renew`](crate::rules::renew)), the key's claim and the record's lease both end at
    /// `now_ms + lease_ms`; otherwise [`StoreError::ClaimLost`] and nothing changes. Answers the new
    /// end.
    async fn renew(&self, renewal: &Renewal) -> Result<Millis, StoreError>;

    /// Success: store the result under the key, mark (record, action) acted at `now_ms`, append the log
    /// entry and release the claim and the record lease, atomically. Fails with
    /// [`StoreError::ClaimLost`] (and changes nothing) if `claim_id` no longer holds the key. Takes the
    /// completion by value (the store keeps its parts) and answers where the entry went.
    async fn complete(&self, completion: Completion) -> Result<Appended, StoreError>;

    /// Terminal failure: create the queue entry (if any), mark the key failed, append the log entry and
    /// release the claim and the record lease, atomically. Returns the appended entry, whose
    /// `queue_entry` names the created queue entry. Fails with [`StoreError::ClaimLost`] like `complete`.
    async fn fail(&self, failure: Failure) -> Result<LogEntry, StoreError>;

    /// Appends one log entry (an attempt that will be retried, a skip, a replay, an operator action),
    /// assigning its sequence number and hash-chain link.
    async fn append_log(&self, entry: &NewLogEntry) -> Result<LogEntry, StoreError>;

    /// Log entries matching `query`, in sequence order.
    async fn log(&self, query: &LogQuery) -> Result<Vec<LogEntry>, StoreError>;

    /// Halts a run durably. Returns `true` if this call halted it, `false` if it was halted already (so
    /// the alert is sent exactly once).
    async fn halt_run(
        &self,
        run_id: Uuid,
        reason: &str,
        now_ms: Millis,
    ) -> Result<bool, StoreError>;

    /// Whether a run is halted.
    async fn run_state(&self, run_id: Uuid) -> Result<RunState, StoreError>;

    /// The highest fencing token issued for `record`, if any: a token below it is stale.
    async fn current_fencing_token(&self, record: &str) -> Result<Option<u64>, StoreError>;

    /// Queue entries matching `query`, oldest first.
    async fn queue_entries(&self, query: &QueueQuery) -> Result<Vec<QueueEntry>, StoreError>;

    /// One queue entry.
    async fn queue_entry(&self, id: u64) -> Result<Option<QueueEntry>, StoreError>;

    /// An operator's change to a queue entry, atomically with appending `update.entry` (its
    /// `queue_entry` set to the id). Transitions (checked by [`QueueOp::check`]): open → claimed;
    /// open or claimed → resolved or discarded; anything from a terminal status →
    /// [`StoreError::Conflict`]. An unknown id → [`StoreError::NotFound`]. Returns the updated entry.
    async fn queue_update(&self, update: &QueueUpdate) -> Result<QueueEntry, StoreError>;

    /// The stored state of one key (by digest), or `None` if the store never saw it.
    async fn key_state(&self, key_digest: &str) -> Result<Option<KeyState>, StoreError>;

    /// The head of the action log: its last entry's sequence number and hash (`None` while the log is
    /// empty). Halt alerts and `actguard runs` carry it, and a checkpoint records it outside the store.
    /// It is read, not verified: [`verify_report`](crate::verify_report) checks the chain up to it.
    /// The default pages through the whole log; the built-in stores read one row. A wrapper around
    /// another store should delegate it.
    async fn log_head(&self) -> Result<Option<LogHead>, StoreError> {
        let mut head = None;
        let mut after_seq = None;
        loop {
            let page = self
                .log(&LogQuery {
                    after_seq,
                    limit: Some(1000),
                    ..LogQuery::default()
                })
                .await?;
            match page.last() {
                Some(last) => {
                    after_seq = Some(last.seq);
                    head = Some(LogHead::of(last));
                }
                None => return Ok(head),
            }
        }
    }

    /// The store's own secret for the digests of [`Redacted`](crate::Redacted) values, the key an
    /// agent uses unless it is given one
    /// ([`AgentBuilder::redaction_key`](crate::AgentBuilder::redaction_key)).
    ///
    /// A store that persists creates it once, when it is created (or upgraded from a version without
    /// one), from the operating system's random generator
    /// ([`RedactionKey::generate_secret`](crate::RedactionKey::generate_secret)), keeps it with its
    /// data, and answers the same secret to every handle that opens it, in every process, for its
    /// whole life: digests, and so the fingerprints of payloads holding a `Redacted`, must not change
    /// while keys are stored under them. Two stores have distinct secrets. Read when the store is
    /// opened (this is not a round trip). `None`: the store keeps no secret, and an agent on it must be
    /// given one (it refuses to build otherwise). A wrapper around another store should delegate it.
    fn redaction_key(&self) -> Option<crate::RedactionKey>;

    /// Checks what the store keeps about its log outside the log rows against the rows: SQLite's
    /// query index (`log_index`, up to its high-water mark), PostgreSQL's chain head (`log_head`). A
    /// disagreement (edited outside the store) is a [`StoreError::Corrupt`] naming the entry.
    /// [`verify`](crate::verify) calls it after reading the log; a store that keeps nothing else (the
    /// default) has nothing to check. A wrapper around another store should delegate it.
    async fn check_log_copies(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
