//! actguard makes the writes of an agent safe to retry, safe to repeat and possible to undo.
//!
//! Put `#[agent_action(...)]` on each async function that writes to an external system, and get,
//! generated at compile time: a deterministic idempotency key persisted before the call, bounded and
//! strictly sequential retries, a loop filter, per-record serialization, failure classification and
//! routing, and a tamper-evident action log.

mod agent;
mod bounds;
mod classify;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod guard;
mod key;
pub mod log;
mod policy;
#[cfg(feature = "postgres")]
mod postgres;
mod registry;
mod run;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod store;

pub use actguard_macros::{Classify, agent_action};
pub use agent::Agent;
pub use classify::Classify;
pub use clock::{Clock, TokioClock};
pub use error::ActionError;
pub use key::{KeyPart, Payload, RenderedKey, fingerprint};
pub use log::{ChainError, LogEntry, LogQuery, Outcome, verify_chain};
pub use policy::{ActionSpec, Effect, FailureKind, Jitter, ParamSpec, Policy, Route};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use registry::registry;
pub use run::{Attempt, Run};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{QueueEntry, QueueKind, QueueRef, QueueStatus, Store, StoreError};

/// What the expansion of `#[agent_action]` and `#[derive(Classify)]` names. Not public API: it may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::classify::RetryAfterValue;
    pub use crate::guard::{Begun, Call, attempt};
    pub use crate::key::{KeyBuilder, PayloadBuilder};
    pub use crate::policy::{ActionSpec, Effect, FailureKind, Jitter, ParamSpec, Policy, Route};
    pub use crate::registry::Registration;
    pub use inventory;
    pub use std::option::Option::{None, Some};
    pub use std::time::Duration;
}
