//! What a guarded call returns when it did not simply succeed.

use std::fmt;

use uuid::Uuid;

use crate::limits::LimitError;
use crate::policy::FailureKind;
use crate::store::{Millis, QueueRef, StoreError};

/// The error of a guarded action: every outcome a caller must handle differently.
///
/// A replayed success (the key completed before) is `Ok(T)`, not an error.
#[derive(Debug, thiserror::Error)]
pub enum ActionError<E> {
    /// The run is halted (by a security failure or an operator). With `attempts == 0` the action did
    /// not run; otherwise that many attempts of this call ran (and failed, as the log says) before the
    /// halt stopped its retries: an ambiguous write among them may have landed downstream.
    #[error("{}", halted_message(*.run_id, *.attempts))]
    Halted {
        /// The halted run.
        run_id: Uuid,
        /// Attempts of this call that ran before the halt (0: it did not run).
        attempts: u32,
    },
    /// The loop filter skipped the call: this (record, action) acted within the dedup window.
    #[error(
        "skipped `{action}` on record `{record}`: it acted under key `{previous_key}` within the dedup window"
    )]
    Skipped {
        action: String,
        record: String,
        /// The key that acted.
        previous_key: String,
        /// When it acted.
        acted_at_ms: Millis,
    },
    /// The failure was routed to a review queue (validation → owner, conflict → expert, or as declared).
    #[error("{kind} failure routed to the {} queue `{}` (entry {}): {error}", .queue.kind.as_str(), .queue.name, .queue.id)]
    Routed {
        kind: FailureKind,
        queue: QueueRef,
        error: E,
    },
    /// Retries were exhausted (or the budget ran out): the call is in the dead-letter queue.
    #[error("dead-lettered after {attempts} attempts (entry {}): {error}", .queue.id)]
    DeadLettered {
        attempts: u32,
        queue: QueueRef,
        error: E,
    },
    /// A security failure (or another failure routed to `halt`): the whole run is halted, the alert
    /// sink told once, and the key quarantined in the security queue (`queue`): later runs that meet
    /// the key are refused without calling the downstream until a person resolves the entry.
    #[error("security failure: run {run_id} halted: {error}")]
    SecurityHalt {
        run_id: Uuid,
        /// The security queue entry holding the key (`None` for a read, which holds no key, or when
        /// the store could not record it).
        queue: Option<QueueRef>,
        error: E,
    },
    /// A `read` action failed for good (its retries ran out, or its failure kind is not retried). Reads
    /// hold no claim and are not queued: there is nothing to replay.
    #[error("{kind} failure of a read after {attempts} attempts: {error}")]
    Failed {
        kind: FailureKind,
        attempts: u32,
        error: E,
    },
    /// The key failed terminally in an earlier call: its queue entry decides what happens next.
    #[error("key `{key}` failed before: the {} queue `{}` holds it (entry {}); see `actguard queue show {}`", .queue.kind.as_str(), .queue.name, .queue.id, .queue.id)]
    PreviouslyFailed { key: String, queue: QueueRef },
    /// The action needs a person's approval before it acts (`approve`): nothing was done. The approval
    /// request is the queue entry; once approved, a call with the same key and payload acts once.
    #[error("key `{key}` awaits approval in the queue `{}` (entry {}): nothing was done; see `actguard queue show {}`", .queue.name, .queue.id, .queue.id)]
    AwaitingApproval { key: String, queue: QueueRef },
    /// A person rejected this key's approval request: nothing was done, and the key stays refused.
    #[error("key `{key}` was rejected in the approval queue `{}` (entry {}){}", .queue.name, .queue.id, .note.as_deref().map(|n| format!(": {n}")).unwrap_or_default())]
    Rejected {
        key: String,
        queue: QueueRef,
        note: Option<String>,
    },
    /// Another worker holds a live claim on this key (or on its record) beyond the wait allowed.
    #[error(
        "key `{key}` is in progress in another worker until {lease_until_ms} (Unix ms); try again later"
    )]
    InProgress { key: String, lease_until_ms: Millis },
    /// The key was used before with a different payload: keys must identify one intent.
    #[error(
        "key `{key}` was already used with a different payload: an idempotency key must identify exactly one intent (include the changing fields in the key template)"
    )]
    KeyReused { key: String },
    /// The payload or the result could not be serialized, or a stored result no longer deserializes.
    #[error("cannot serialize the payload or result of `{action}`: {message}")]
    Serialization { action: String, message: String },
    /// The payload is beyond what a store keeps ([limits](crate::limits)): a parameter nested deeper
    /// than [`MAX_DEPTH`](crate::MAX_DEPTH), a payload larger than
    /// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES), or a float that is `NaN` or infinite. Refused
    /// before acting: the body did not run and the key was not claimed, so a later call with a
    /// payload within the limits acts under the same key.
    #[error(
        "`{action}` did not run: its payload cannot be stored: {error}; the key was not claimed"
    )]
    PayloadRefused {
        action: String,
        /// What is beyond the limits, and where.
        error: LimitError,
    },
    /// The store could not be reached or refused **before** the body ran: the action did not run
    /// (fail closed).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The body ran (or may have run), but what happened could not be recorded: the store failed or
    /// the claim was lost after the body started. Treat the effect as possible. The key stays as the
    /// store last had it: a claim runs out with its lease and the next call under the key may run the
    /// body again, with the same key passed downstream for it to deduplicate.
    #[error(
        "`{key}` ran (or may have) but its outcome could not be recorded after {attempts} attempt(s): {error}; treat the effect as possible"
    )]
    Unrecorded {
        key: String,
        /// Attempts of this call that ran.
        attempts: u32,
        /// What the store said.
        error: StoreError,
    },
    /// The body ran and returned a result that cannot be stored for replay (it does not serialize, it
    /// or a state the body captured is beyond the [limits](crate::limits), or the store refused it).
    /// So that it never runs again, the key is dead-lettered with what happened.
    #[error(
        "`{key}` ran, but its result cannot be stored ({message}): the key waits in the dead-letter queue (entry {}) and will not run again; check the downstream, then resolve or release it", .queue.id
    )]
    ResultNotStored {
        key: String,
        /// The dead-letter entry.
        queue: QueueRef,
        /// Why the result could not be stored.
        message: String,
    },
}

fn halted_message(run_id: Uuid, attempts: u32) -> String {
    match attempts {
        0 => format!("run {run_id} is halted: no action of it may run (see `actguard runs`)"),
        n => format!(
            "run {run_id} was halted after {n} attempt(s) of this call had run: no retry (their outcome is in the log)"
        ),
    }
}

/// Whether a guarded call's body ran, as far as the caller can know: what
/// [`ActionError::ran`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ran {
    /// The body did not run in this call: nothing happened downstream because of it.
    No,
    /// The body ran, and what happened is recorded in the store (the log and, where due, a queue
    /// entry that a person settles).
    Recorded,
    /// The body ran or may have run, and its outcome is not recorded: treat the effect as possible.
    Unrecorded,
}

impl<E> ActionError<E> {
    /// The application error, for outcomes that carry one.
    pub fn source_error(&self) -> Option<&E> {
        match self {
            ActionError::Routed { error, .. }
            | ActionError::DeadLettered { error, .. }
            | ActionError::SecurityHalt { error, .. }
            | ActionError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the body ran, and whether what happened is recorded: the answer a caller acts on
    /// (nothing happened; it happened and a record says what; it may have happened unrecorded).
    /// A read's failure is [`Ran::Recorded`]: a read changes nothing that could go unrecorded.
    pub fn ran(&self) -> Ran {
        match self {
            ActionError::Halted { attempts: 0, .. }
            | ActionError::Skipped { .. }
            | ActionError::PreviouslyFailed { .. }
            | ActionError::AwaitingApproval { .. }
            | ActionError::Rejected { .. }
            | ActionError::InProgress { .. }
            | ActionError::KeyReused { .. }
            | ActionError::Serialization { .. }
            | ActionError::PayloadRefused { .. }
            | ActionError::Store(_) => Ran::No,
            ActionError::Halted { .. }
            | ActionError::Routed { .. }
            | ActionError::DeadLettered { .. }
            | ActionError::SecurityHalt { .. }
            | ActionError::Failed { .. }
            | ActionError::ResultNotStored { .. } => Ran::Recorded,
            ActionError::Unrecorded { .. } => Ran::Unrecorded,
        }
    }

    /// The queue entry this outcome points at, if any.
    pub fn queue_entry(&self) -> Option<&QueueRef> {
        match self {
            ActionError::Routed { queue, .. }
            | ActionError::DeadLettered { queue, .. }
            | ActionError::PreviouslyFailed { queue, .. }
            | ActionError::AwaitingApproval { queue, .. }
            | ActionError::Rejected { queue, .. }
            | ActionError::ResultNotStored { queue, .. } => Some(queue),
            ActionError::SecurityHalt { queue, .. } => queue.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
