//! A run of an agent, and the context of one attempt of a guarded call.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use uuid::Uuid;

use crate::agent::Agent;

/// One run of an agent: the first argument of every guarded action (`disburse(&run, &instr).await`).
///
/// Cheap to clone. Inside an action's body, the same name gives access to the current attempt through
/// [`Run::attempt`].
#[derive(Clone)]
pub struct Run {
    pub(crate) agent: Agent,
    pub(crate) id: Uuid,
    pub(crate) attempt: Option<Arc<Attempt>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Run {
    /// The run's id (UUIDv7: sortable by start time).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The agent this run belongs to.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The current attempt of the guarded call whose body is running.
    ///
    /// # Panics
    /// Outside the body of an `#[agent_action]`; use [`Run::try_attempt`] where that can happen.
    pub fn attempt(&self) -> &Attempt {
        self.try_attempt()
            .expect("run.attempt() is only available inside the body of an #[agent_action] function")
    }

    /// The current attempt, or `None` outside the body of an action.
    pub fn try_attempt(&self) -> Option<&Attempt> {
        self.attempt.as_deref()
    }

    pub(crate) fn with_attempt(&self, attempt: Attempt) -> Run {
        Run {
            agent: self.agent.clone(),
            id: self.id,
            attempt: Some(Arc::new(attempt)),
        }
    }
}

/// The context of one attempt: the key to pass downstream, the record, the attempt number, the fencing
/// token, and the before/after capture of the action log.
#[derive(Debug)]
pub struct Attempt {
    pub(crate) action: &'static str,
    pub(crate) key: String,
    pub(crate) key_digest: String,
    pub(crate) record: String,
    pub(crate) number: u32,
    pub(crate) retry: bool,
    pub(crate) run_id: Uuid,
    pub(crate) fencing_token: Option<u64>,
    pub(crate) before: Mutex<Option<serde_json::Value>>,
    pub(crate) after: Mutex<Option<serde_json::Value>>,
}

impl Attempt {
    /// The action's name.
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// The readable rendered idempotency key (`disburse:L-17:3`): pass it downstream.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key's digest (hex SHA-256 of action and parts): a fixed-length form for downstreams that
    /// limit key length.
    pub fn key_digest(&self) -> &str {
        &self.key_digest
    }

    /// The rendered record this write touches.
    pub fn record(&self) -> &str {
        &self.record
    }

    /// 1 for the first attempt, 2 for the first retry, …
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether this attempt is a retry (of this call, or of a claim taken over from a dead worker).
    pub fn is_retry(&self) -> bool {
        self.retry
    }

    /// The run's id.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The record lease's fencing token (strictly increasing per record): pass it downstream so a
    /// stale writer can be rejected. `None` for `read` actions.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// Captures the state of the record before the write, for the action log (and revert).
    pub fn before<S: Serialize + ?Sized>(&self, state: &S) {
        let v = serde_json::to_value(state).ok();
        *self.before.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    /// Captures the state after the write (default: the action's result).
    pub fn after<S: Serialize + ?Sized>(&self, state: &S) {
        let v = serde_json::to_value(state).ok();
        *self.after.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    pub(crate) fn take_before(&self) -> Option<serde_json::Value> {
        self.before.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub(crate) fn take_after(&self) -> Option<serde_json::Value> {
        self.after.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
