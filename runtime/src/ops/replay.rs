//! Replay: re-running a queue entry's action with its stored payload.

use uuid::Uuid;

use crate::agent::Agent;
use crate::invoke::InvokeError;
use crate::policy::ActionSpec;
use crate::registry::registry;
use crate::run::Invocation;
use crate::store::{QueueEntry, QueueKind, StoreError};

use super::{OpsError, load, now, operator_entry};

fn find_action(name: &str) -> Result<&'static ActionSpec, OpsError> {
    registry()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| OpsError::UnknownAction(name.to_owned()))
}

/// What a replay did.
#[derive(Debug)]
pub struct Replay {
    /// The queue entry after the replay: `replayed` on success; open again (attempts added, the new
    /// failure's message) if the replay failed again.
    pub entry: QueueEntry,
    /// The run the replay ran in (a new one).
    pub run_id: Uuid,
    /// The action's serialized result, or why it did not succeed.
    pub outcome: Result<serde_json::Value, InvokeError>,
}

impl Replay {
    /// Whether the replayed call succeeded.
    pub fn succeeded(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Re-runs the action of queue entry `id` with its stored payload and the agent's resources, as a new
/// guarded call under the same key (claimed again although the key failed), logged as a replay.
///
/// It runs in a **new run**, not the entry's: a run halted by a security failure would refuse every
/// action, and the fix must not depend on it. Success marks the entry replayed and completes the key
/// (a later call with the key returns the stored result); a replay that fails again updates the same
/// entry (attempts added, status open again), so replaying until it succeeds acts exactly once
/// downstream. Entries already resolved, discarded or replayed are refused with
/// [`StoreError::Conflict`].
pub async fn replay(agent: &Agent, id: u64, by: &str) -> Result<Replay, OpsError> {
    let store = agent.store().as_ref();
    let entry = load(store, id).await?;
    if entry.kind == QueueKind::Approval {
        return Err(OpsError::ApprovalRequest(id));
    }
    if entry.status.is_terminal() {
        return Err(StoreError::Conflict(
            format!(
                "queue entry {id} is {}: it cannot be replayed",
                entry.status.as_str()
            )
            .into(),
        )
        .into());
    }
    let spec = find_action(&entry.action)?;
    let invoke = spec
        .invoke
        .ok_or_else(|| OpsError::NotInvocable(spec.name.to_owned()))?;
    let run = agent.start_run();
    let log = operator_entry(
        &entry,
        run.id(),
        now(agent),
        format!("replay of queue entry {id} requested by {by}"),
    );
    store.append_log(&log).await?;
    tracing::info!(queue_entry = id, by, run_id = %run.id(), "replay");
    let run = run.with_invocation(Invocation {
        replay_of: Some(id),
        ..Invocation::default()
    });
    let outcome = invoke(&run, entry.payload.clone())
        .await
        .map(|invoked| invoked.value);
    let entry = load(store, id).await?;
    Ok(Replay {
        entry,
        run_id: run.id(),
        outcome,
    })
}
