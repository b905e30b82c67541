//! Queue entry operations: list, claim, resolve, release, discard, and approving or rejecting
//! approval requests.

use crate::agent::Agent;
use crate::store::{QueueEntry, QueueKind, QueueOp, QueueQuery, QueueUpdate, Store};

use super::{OpsError, load, now, operator_entry};

/// How an operator's queue operation treats approval requests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Claim, resolve or discard: not a decision on an approval request.
    Plain,
    /// Approve an approval request.
    Approve,
    /// Reject an approval request.
    Reject,
}

/// Queue entries matching `query` (queue kind and name, action, status, run, age), oldest first.
pub async fn queue_list(
    store: &dyn Store,
    query: &QueueQuery,
) -> Result<Vec<QueueEntry>, OpsError> {
    Ok(store.queue_entries(query).await?)
}

async fn update(agent: &Agent, id: u64, op: QueueOp) -> Result<QueueEntry, OpsError> {
    decide(agent, id, op, Decision::Plain).await
}

async fn decide(
    agent: &Agent,
    id: u64,
    op: QueueOp,
    decision: Decision,
) -> Result<QueueEntry, OpsError> {
    let store = agent.store().as_ref();
    let entry = load(store, id).await?;
    let approval = entry.kind == QueueKind::Approval;
    match decision {
        Decision::Plain if approval && !matches!(op, QueueOp::Claim { .. }) => {
            return Err(OpsError::ApprovalRequest(id));
        }
        Decision::Approve | Decision::Reject if !approval => {
            return Err(OpsError::NotApprovalRequest(id));
        }
        _ => {}
    }
    let now_ms = now(agent);
    let message = match (&op, decision) {
        (QueueOp::Resolve { by, .. }, Decision::Approve) => {
            format!("approval request {id} approved by {by}")
        }
        (QueueOp::Discard { by, note }, Decision::Reject) => {
            format!("approval request {id} rejected by {by}: {note}")
        }
        (op, _) => plain_message(id, op),
    };
    let log = operator_entry(&entry, entry.run_id, now_ms, message);
    Ok(store
        .queue_update(&QueueUpdate {
            id,
            op,
            now_ms,
            entry: log,
        })
        .await?)
}

fn plain_message(id: u64, op: &QueueOp) -> String {
    match op {
        QueueOp::Claim { by } => format!("queue entry {id} claimed by {by}"),
        QueueOp::Resolve {
            by,
            note,
            release: false,
        } => format!("queue entry {id} resolved by {by}: {note}"),
        QueueOp::Resolve {
            by,
            note,
            release: true,
        } => format!("queue entry {id} resolved by {by}, its key released: {note}"),
        QueueOp::Discard { by, note } => format!("queue entry {id} discarded by {by}: {note}"),
    }
}

/// Approves an approval request (open or claimed → resolved), logged with who approved: the same
/// key with the same payload then acts, once, if called before the action's `approval_expires`.
pub async fn queue_approve(agent: &Agent, id: u64, by: &str) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Resolve {
        by: by.to_owned(),
        note: "approved".to_owned(),
        release: true,
    };
    decide(agent, id, op, Decision::Approve).await
}

/// Rejects an approval request (open or claimed → discarded) with a note, logged with who rejected:
/// every later call of the key answers `rejected`, and nothing acts.
pub async fn queue_reject(
    agent: &Agent,
    id: u64,
    by: &str,
    note: &str,
) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Discard {
        by: by.to_owned(),
        note: note.to_owned(),
    };
    decide(agent, id, op, Decision::Reject).await
}

/// Takes an open entry (open → claimed), logged.
pub async fn queue_claim(agent: &Agent, id: u64, by: &str) -> Result<QueueEntry, OpsError> {
    update(agent, id, QueueOp::Claim { by: by.to_owned() }).await
}

/// Settles an open or claimed entry with a note (→ resolved), logged. The key stays failed: a later
/// call with it still answers with this entry.
pub async fn queue_resolve(
    agent: &Agent,
    id: u64,
    by: &str,
    note: &str,
) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Resolve {
        by: by.to_owned(),
        note: note.to_owned(),
        release: false,
    };
    update(agent, id, op).await
}

/// Settles an open or claimed entry with a note (→ resolved) **and releases its key**, logged: the
/// next call under the key acts again, with any payload, instead of answering this entry. For a
/// routed failure whose source data was corrected, a dead-lettered call whose downstream recovered, or
/// a quarantined key a person cleared. A key that moved on since (completed by a replay) is left as it
/// is.
pub async fn queue_release(
    agent: &Agent,
    id: u64,
    by: &str,
    note: &str,
) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Resolve {
        by: by.to_owned(),
        note: note.to_owned(),
        release: true,
    };
    update(agent, id, op).await
}

/// Drops an open or claimed entry with a note (→ discarded), logged.
pub async fn queue_discard(
    agent: &Agent,
    id: u64,
    by: &str,
    note: &str,
) -> Result<QueueEntry, OpsError> {
    let op = QueueOp::Discard {
        by: by.to_owned(),
        note: note.to_owned(),
    };
    update(agent, id, op).await
}
