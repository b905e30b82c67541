//! actguard makes the writes of an agent safe to retry, safe to repeat and possible to undo.
//!
//! Put `#[agent_action(...)]` on each async function that writes to an external system, and get,
//! generated at compile time: a deterministic idempotency key persisted before the call, bounded and
//! strictly sequential retries, a loop filter, per-record serialization, failure classification and
//! routing, and a tamper-evident action log.

mod agent;
mod alert;
pub mod audit;
mod backoff;
mod bounds;
pub mod canonical;
pub mod classify;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod guard;
mod invoke;
mod key;
pub mod limits;
pub mod log;
pub mod manifest;
mod memory;
mod metrics;
pub mod ops;
mod policy;
#[cfg(feature = "postgres")]
pub mod postgres;
mod redacted;
mod registry;
pub mod rules;
mod run;
mod shared;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tools;
#[cfg(feature = "webhook")]
mod webhook;

/// Derives [`Classify`](trait@Classify) for an error enum (each variant carries `#[classify(...)]`) or
/// struct (`#[classify(...)]` on the struct): see the trait's documentation.
pub use actguard_macros::Classify;
#[doc = include_str!("../docs/agent_action.md")]
pub use actguard_macros::agent_action;
pub use agent::{
    Agent, AgentBuilder, AgentError, DEFAULT_CLAIM_WAIT, DEFAULT_STORE_PATH, HeadError, STORE_ENV,
    VerifyError, VerifyReport, default_store_path, verify, verify_report,
};
pub use alert::{AlertSink, CommandAlert, HaltAlert, QueueAlert, TracingAlert};
pub use audit::{
    AuditError, AuditReport, AuditSettings, Finding, Rule, Severity, audit, audit_registry,
};
pub use backoff::Backoff;
pub use classify::Classify;
pub use clock::{Clock, TokioClock};
pub use error::{ActionError, Ran};
pub use guard::{DEAD_LETTER_QUEUE, SECURITY_QUEUE};
pub use invoke::{InvokeError, InvokeFn, Invoked};
pub use key::{KeyPart, Payload, PayloadJson, RenderedKey, fingerprint};
pub use limits::{LimitError, MAX_DEPTH, MAX_PAYLOAD_BYTES, MAX_READ_DEPTH, MAX_RESULT_BYTES};
pub use log::{ChainError, LogEntry, LogHead, LogQuery, Outcome, verify_chain};
pub use manifest::{Change, Manifest, ManifestDiff, ManifestError, McpAnnotations, McpTool};
pub use memory::MemoryStore;
pub use metrics::{MetricOutcome, MetricsSnapshot};
pub use policy::{ActionSpec, Effect, FailureKind, Jitter, ParamSpec, Policy, Route};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use redacted::{Redacted, RedactionKey, RedactionKeyError};
pub use registry::registry;
pub use run::{Attempt, Invocation, Run};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{
    KeyState, KeyStatus, QueueEntry, QueueKind, QueueOp, QueueQuery, QueueRef, QueueStatus,
    QueueUpdate, RunState, SharedStr, Store, StoreError,
};
#[cfg(feature = "webhook")]
pub use webhook::{WebhookAlert, WebhookError};

/// What the expansion of `#[agent_action]` and `#[derive(Classify)]` names. Not public API: it may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::bounds::RetryAfterValue;
    pub use crate::bounds::{
        ActionResult, ClassifyDelegate, DelegateNote, DelegateProbe, DelegateRetryAfter,
        ErrorMessage, InsideRedacted, NoDelegateNote, NoDelegateRetryAfter, NotInsideRedacted,
        OutsideRedacted, PayloadFields, PayloadParam, PayloadResult, PlainTemplateValue,
        RedactedTemplateValue, ReplayablePayload, RetryAfterField, TemplateProbe, TemplateValue,
        delegate_classify, invoke_field, payload_field, retry_after_field,
        template_value_not_redacted,
    };
    pub use crate::classify::Classify;
    pub use crate::error::ActionError;
    pub use crate::guard::drive::{Guard, begin, call_run};
    pub use crate::guard::{Begun, Call, attempt};
    pub use crate::invoke::{
        BoxedCall, InvokeError, InvokeFn, Invoked, invoke, invoke_dep, invoke_dep_owned,
        invoke_failed, invoke_outcome, invoke_run, invoke_take,
    };
    pub use crate::key::{KeyBuilder, PayloadBuilder};
    pub use crate::policy::{ActionSpec, Effect, FailureKind, Jitter, ParamSpec, Policy, Route};
    pub use crate::registry::Registration;
    pub use crate::run::Run;
    pub use crate::tools::{ToolParam, ToolSchema, ToolSpec};
    pub use inventory;
    pub use serde_json::Value;
    pub use std::borrow::Cow;
    pub use std::boxed::Box;
    pub use std::future::Future;
    pub use std::option::Option::{None, Some};
    pub use std::pin::Pin;
    pub use std::result::Result;
    pub use std::result::Result::{Err, Ok};
    pub use std::time::Duration;
}
