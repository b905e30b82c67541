//! Operations: what people do when the agent was confidently wrong. Review queues (list, claim,
//! resolve, discard, **replay**), the **blast radius** of a faulty action, and **revert**.
//!
//! Every operation that changes something is recorded in the action log (outcome `operator`, with who
//! did it and the queue entry it concerns), atomically with the change where the store allows it.
//!
//! Replay and revert call actions from stored data, so they need the program's registry: they take the
//! [`Agent`] of the application's own binary (which links its actions), and only actions with an
//! [`InvokeFn`](crate::InvokeFn) can be called (free, non-generic functions; methods and generic
//! functions cannot).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use actguard::{Agent, QueueQuery, ops};
//!
//! let agent = Agent::in_memory().unwrap();
//! let open = ops::queue_list(agent.store().as_ref(), &QueueQuery::default()).await.unwrap();
//! assert!(open.is_empty());
//! # });
//! ```
//!
//! # Revert
//!
//! [`blast_radius`](fn@blast_radius) folds the selected writes of each (record, action) into one change: from the
//! state **before the first write** to the state **after the last**, with how many writes there
//! were. A bad run that wrote a record three times (`s0 → s1 → s2 → s3`) shows `s0 → s3`, 3 writes.
//!
//! [`revert`](fn@revert) runs, for each affected record, the `compensate` action declared by the action that
//! wrote it, once per record however many writes there were, to restore the state before the first.
//! Conventions:
//!
//! - A compensating action takes **the same payload parameters** (names and types; `#[dep]`s may
//!   differ) as the action it reverses: it is called with the stored payload of the record's **last**
//!   write. The audit checks it (`compensate_signature_mismatch`).
//! - Its idempotency key is replaced by `revert:{key of the last write}`: stable per reversed key, so
//!   a second revert of the same selection replays the stored result instead of acting again
//!   ("already reverted").
//! - Inside its body, [`Attempt::reverting`](crate::Attempt::reverting) is the change being reversed,
//!   as one log entry: `before` is the state to restore (before the **first** write), `after` the
//!   state the faulty action left (after the **last** write). It is the last write's entry (its
//!   `seq`, key, run, hash) with the first write's `before`: a view built by
//!   [`AffectedRecord::reverting`], not an entry as stored; the compensation's log entry says it
//!   reverts that last entry, and the revert's operator entry lists every write reverted. For a record
//!   written once it is exactly the stored entry.
//! - A body that finds the record's current state differs from `after` should return an error
//!   classified as a conflict instead of overwriting a later change: the call then goes to the expert
//!   queue and the record is reported as **diverged**.

mod blast;
mod queue;
mod replay;
mod revert;

pub use blast::{AffectedRecord, BlastRadius, blast_radius};
pub use queue::{
    queue_approve, queue_claim, queue_discard, queue_list, queue_reject, queue_release,
    queue_resolve,
};
pub use replay::{Replay, replay};
pub use revert::{RevertOptions, RevertReport, RevertStatus, RevertedRecord, revert};

use uuid::Uuid;

use crate::agent::Agent;
use crate::log::{NewLogEntry, Outcome};
use crate::store::{Millis, QueueEntry, Store, StoreError};

/// Why an operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The store could not be reached or refused (including [`StoreError::Conflict`] for a queue entry
    /// already resolved, discarded or replayed, and [`StoreError::NotFound`] for an unknown entry).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The entry names an action this program does not register.
    #[error(
        "no action named `{0}` is registered in this program: run the operation from the agent's own binary (which links its actions)"
    )]
    UnknownAction(String),
    /// The action cannot be called from stored data (a method or a generic function).
    #[error(
        "`{0}` cannot be invoked from a stored payload (methods and generic functions cannot): make it a free, non-generic function to replay or revert it"
    )]
    NotInvocable(String),
    /// An approval request is settled by approving or rejecting it, not by resolving, discarding or
    /// replaying it.
    #[error(
        "queue entry {0} is an approval request: approve it (`actguard queue approve {0} --by NAME`) or reject it (`actguard queue reject {0} --by NAME --note ...`)"
    )]
    ApprovalRequest(u64),
    /// Only an approval request can be approved or rejected.
    #[error(
        "queue entry {0} is not an approval request: only entries of the approval queue are approved or rejected"
    )]
    NotApprovalRequest(u64),
}

fn now(agent: &Agent) -> Millis {
    agent.inner.clock.now_ms()
}

fn operator_entry(e: &QueueEntry, run_id: Uuid, now_ms: Millis, message: String) -> NewLogEntry {
    NewLogEntry {
        at_ms: now_ms,
        run_id,
        action: e.action.as_str().into(),
        record: e.record.as_str().into(),
        key_text: e.key_text.as_str().into(),
        key_digest: e.key_digest.as_str().into(),
        attempt: 0,
        retry: false,
        outcome: Outcome::Operator,
        failure_kind: None,
        route: None,
        message: Some(message),
        queue_entry: Some(e.id),
        before: None,
        after: None,
        fencing_token: None,
        duration_ms: 0,
    }
}

async fn load(store: &dyn Store, id: u64) -> Result<QueueEntry, OpsError> {
    store
        .queue_entry(id)
        .await?
        .ok_or_else(|| OpsError::Store(StoreError::NotFound(format!("queue entry {id}").into())))
}
