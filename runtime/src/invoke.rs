//! Calling a registered action from stored data: what replay and revert use.
//!
//! `#[agent_action]` on a free, non-generic function generates an [`InvokeFn`] in its
//! [`ActionSpec`](crate::ActionSpec): it deserializes each payload parameter from the stored payload
//! (by parameter name), takes each `#[dep]` from the agent's resources
//! ([`AgentBuilder::resource`](crate::AgentBuilder::resource)), calls the guarded function and
//! serializes its result. Methods (`self`) and generic functions have no `InvokeFn`: they cannot be
//! replayed or used as compensating actions by an operation (the audit warns about it).

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::classify::Classify;
use crate::error::ActionError;
use crate::policy::FailureKind;
use crate::run::Run;
use crate::store::QueueKind;

/// Calls an action with a stored payload (a JSON object with one field per payload parameter) and
/// the agent's resources; answers the serialized result.
pub type InvokeFn =
    for<'a> fn(
        &'a Run,
        serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<Invoked, InvokeError>> + Send + 'a>>;

/// What an invoked action answered: its result, serialized, and whether it was replayed (the key had
/// completed before: the stored result, nothing done).
#[derive(Debug, Clone, PartialEq)]
pub struct Invoked {
    /// The result.
    pub value: serde_json::Value,
    /// Whether the stored result of an earlier call was returned without acting.
    pub replayed: bool,
}

/// Why invoking an action from stored data did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// A payload field is missing or no longer deserializes into the parameter's type.
    #[error(
        "the stored payload of `{action}` does not deserialize: field `{field}`: {message} (was the parameter's type changed since?)"
    )]
    Payload {
        action: String,
        field: String,
        message: String,
    },
    /// A `#[dep]` the action needs was not given to the agent.
    #[error("`{action}` needs the resource `{type_name}`: register it with AgentBuilder::resource")]
    MissingResource { action: String, type_name: String },
    /// The action ran (or refused) and returned an error.
    #[error("`{action}` {kind}: {message}")]
    Action {
        action: String,
        /// What kind of outcome: `skipped`, `routed`, `dead_lettered`, `halted`, `security_halt`,
        /// `failed`, `previously_failed`, `awaiting_approval`, `rejected`, `in_progress`, `key_reused`, `serialization`,
        /// `payload_refused`, `store`, `unrecorded`, `result_not_stored`.
        kind: &'static str,
        /// The error rendered.
        message: String,
        /// The failure kind of a routed, dead-lettered, failed or halting call.
        failure_kind: Option<FailureKind>,
        /// The queue entry the call went to (routed, dead-lettered, previously failed), if any.
        queue_entry: Option<u64>,
        /// The kind of that queue entry.
        queue_kind: Option<QueueKind>,
    },
    /// The result could not be serialized.
    #[error("cannot serialize the result of `{action}`: {message}")]
    Result { action: String, message: String },
}

impl InvokeError {
    /// The kind of an [`InvokeError::Action`] (`routed`, `dead_lettered`, …), else `None`.
    pub fn action_kind(&self) -> Option<&'static str> {
        match self {
            InvokeError::Action { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// A `#[dep]` taken by reference from the agent's resources.
#[doc(hidden)]
pub fn invoke_dep<'a, T: Any + Send + Sync>(
    run: &'a Run,
    action: &str,
) -> Result<&'a T, InvokeError> {
    run.agent()
        .resource::<T>()
        .ok_or_else(|| InvokeError::MissingResource {
            action: action.to_owned(),
            type_name: std::any::type_name::<T>().to_owned(),
        })
}

/// A `#[dep]` taken by value: cloned from the agent's resources.
#[doc(hidden)]
pub fn invoke_dep_owned<T: Any + Send + Sync + Clone>(
    run: &Run,
    action: &str,
) -> Result<T, InvokeError> {
    invoke_dep::<T>(run, action).cloned()
}

/// A future the generated invocation hands over: the guarded call, boxed.
#[doc(hidden)]
pub type BoxedCall<'a, R> = Pin<Box<dyn Future<Output = R> + Send + 'a>>;

/// The state machine of every [`InvokeFn`], compiled once per argument tuple `A` rather than once per
/// action: the generated function reads the arguments from the stored payload and the agent's
/// resources (in parameter order, so the first one missing is the one reported), then `call` starts
/// the guarded call with them on `run` given a fresh place for its outcome, and the outcome the
/// guarded call recorded is answered.
#[doc(hidden)]
pub fn invoke<'a, A: Send + 'a, R: 'a>(
    run: &'a Run,
    action: &'static str,
    mut args: A,
    call: for<'x> fn(&'x Run, &'x mut A) -> Result<BoxedCall<'x, R>, InvokeError>,
) -> Pin<Box<dyn Future<Output = Result<Invoked, InvokeError>> + Send + 'a>> {
    Box::pin(async move {
        let invoked = invoke_run(run);
        // The guarded call records its outcome serialized: no bound on `T` or `E` here, so an unmet
        // one is reported once, by the guarded call.
        let _ = call(&invoked, &mut args)?.await;
        invoke_outcome(&invoked, action)
    })
}

/// What an [`InvokeFn`] answers when an argument cannot be read.
#[doc(hidden)]
pub fn invoke_failed<'a>(
    error: InvokeError,
) -> Pin<Box<dyn Future<Output = Result<Invoked, InvokeError>> + Send + 'a>> {
    Box::pin(std::future::ready(Err(error)))
}

/// A parameter taken by value, moved out of the arguments `read` collected (`call` runs once).
#[doc(hidden)]
pub fn invoke_take<T>(arg: &mut Option<T>) -> T {
    arg.take()
        .expect("each invocation's arguments are read once and taken once")
}

/// Where the guarded call leaves the outcome of an invoked call, serialized: the generated invocation
/// then needs no bound on `T` and `E` (they are checked once, by the guarded call).
pub(crate) type OutcomeSlot = Arc<Mutex<Option<Result<Invoked, InvokeError>>>>;

/// Records the outcome of the call begun with `slot` (the guarded call does, with its bounds);
/// `replayed` when a success is the stored result of an earlier call.
pub(crate) fn record_outcome<T: Serialize, E: Classify + Display>(
    slot: Option<&OutcomeSlot>,
    action: &str,
    result: &Result<T, ActionError<E>>,
    replayed: bool,
) {
    let Some(slot) = slot else { return };
    let outcome = match result {
        Ok(v) => crate::limits::result_value(v)
            .map(|value| Invoked { value, replayed })
            .map_err(|e| InvokeError::Result {
                action: action.to_owned(),
                message: e.to_string(),
            }),
        Err(e) => Err(action_error(action, e)),
    };
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
}

/// `run` with a fresh place for the outcome of the call about to be invoked (its invocation kept).
#[doc(hidden)]
pub fn invoke_run(run: &Run) -> Run {
    let mut run = run.clone();
    run.attempt = None;
    run.outcome = Some(OutcomeSlot::default());
    run
}

/// The outcome the guarded call recorded for the call invoked through `run`.
#[doc(hidden)]
pub fn invoke_outcome(run: &Run, action: &str) -> Result<Invoked, InvokeError> {
    run.outcome
        .as_ref()
        .and_then(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).take())
        .unwrap_or_else(|| {
            Err(InvokeError::Result {
                action: action.to_owned(),
                message: "the call recorded no outcome".to_owned(),
            })
        })
}

fn action_error<E: Classify + Display>(action: &str, e: &ActionError<E>) -> InvokeError {
    let (kind, failure_kind, queue) = match e {
        ActionError::Halted { .. } => ("halted", None, None),
        ActionError::Skipped { .. } => ("skipped", None, None),
        ActionError::Routed { kind, queue, .. } => ("routed", Some(*kind), Some(queue)),
        ActionError::DeadLettered { queue, error, .. } => {
            ("dead_lettered", Some(error.classify()), Some(queue))
        }
        ActionError::SecurityHalt { queue, .. } => {
            ("security_halt", Some(FailureKind::Security), queue.as_ref())
        }
        ActionError::Failed { kind, .. } => ("failed", Some(*kind), None),
        ActionError::PreviouslyFailed { queue, .. } => ("previously_failed", None, Some(queue)),
        ActionError::AwaitingApproval { queue, .. } => ("awaiting_approval", None, Some(queue)),
        ActionError::Rejected { queue, .. } => ("rejected", None, Some(queue)),
        ActionError::InProgress { .. } => ("in_progress", None, None),
        ActionError::KeyReused { .. } => ("key_reused", None, None),
        ActionError::Serialization { .. } => ("serialization", None, None),
        ActionError::PayloadRefused { .. } => ("payload_refused", None, None),
        ActionError::Store(_) => ("store", None, None),
        ActionError::Unrecorded { .. } => ("unrecorded", None, None),
        ActionError::ResultNotStored { queue, .. } => ("result_not_stored", None, Some(queue)),
    };
    InvokeError::Action {
        action: action.to_owned(),
        kind,
        message: e.to_string(),
        failure_kind,
        queue_entry: queue.map(|q| q.id),
        queue_kind: queue.map(|q| q.kind),
    }
}
