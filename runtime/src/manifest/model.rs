//! The manifest's data model: one answer to each of the five questions per action, as written to
//! JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::{Effect, Jitter, Route};

/// The store named in a manifest until the agent names its own ([`Manifest::with_store`]).
pub const DEFAULT_STORE: &str = "embedded SQLite (actguard.db)";

/// How the body of an action hands its idempotency key to the downstream system.
pub const DOWNSTREAM_KEY: &str = "run.attempt().key()";

/// Every option of `#[agent_action]`, in the attribute's documented order.
pub const OPTIONS: [&str; 18] = [
    "name",
    "effect",
    "key",
    "record",
    "retries",
    "max_elapsed",
    "backoff",
    "jitter",
    "dedup",
    "cycle",
    "lease",
    "on_transient",
    "on_validation",
    "on_conflict",
    "on_security",
    "owner",
    "expert",
    "compensate",
];

/// The five answers of every registered action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`](super::SCHEMA_VERSION).
    pub schema_version: String,
    /// `"sha256:<hex>"` of the canonical JSON (sorted keys, no whitespace) of this manifest without
    /// this field.
    pub digest: String,
    /// Question 5: what an action-log entry holds and where it is stored. Shared by every action.
    pub log: LogAnswer,
    /// One entry per action, sorted by name.
    pub actions: Vec<ActionEntry>,
}

/// Question 5: the action log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAnswer {
    /// Where the log (and the claims and queues) are stored.
    pub store: String,
    /// When an entry is written.
    pub written: String,
    /// How tampering is detected.
    pub integrity: String,
    /// The fields of an entry.
    pub entry_fields: Vec<FieldDoc>,
}

/// One field of an action-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDoc {
    /// The field's name in the log.
    pub name: String,
    /// What it holds.
    pub holds: String,
}

/// One action's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEntry {
    /// The stable action name.
    pub name: String,
    /// Where it is declared.
    pub source: Source,
    /// Question 1: the idempotency key.
    pub idempotency: Idempotency,
    /// Question 2: retries before dead-lettering.
    pub retries: Retries,
    /// Question 3: the loop filter.
    pub dedup: Dedup,
    /// Question 4: where each kind of failure goes.
    pub failure_routing: FailureRouting,
    /// The action that reverses this one.
    pub compensate: Option<String>,
    /// Whether a person approves each key before it acts (`approve`); absent when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalGate>,
    /// Whether the action is an LLM tool (`tool`), with its description; absent when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The function's signature.
    pub signature: Signature,
    /// For each option of the attribute ([`OPTIONS`]), whether it was written or left to its default.
    pub options: BTreeMap<String, OptionSource>,
}

/// Who approves an action's keys, and for how long an approval holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalGate {
    /// The approvers' queue.
    pub queue: String,
    /// How long an approval may wait to be used (`approval_expires`).
    pub expires: String,
}

/// Where an action is declared. No line number: moving code must not change the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Source file.
    pub file: String,
    /// `module_path!()` of the function.
    pub module_path: String,
    /// The Rust function's name.
    pub fn_name: String,
}

/// Question 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    /// What the action does to the outside world.
    pub effect: Effect,
    /// The key template (none for a read without one).
    pub key: Option<String>,
    /// The record template, the business object the action acts on: `null` when none is declared
    /// (each key is then its own record, so the loop filter is off; see [`Dedup::off_because`]).
    pub record: Option<String>,
    /// The expression the body uses to pass the key downstream ([`DOWNSTREAM_KEY`]), when there is a key.
    pub downstream_key: Option<String>,
}

/// Question 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retries {
    /// Retries after the first attempt.
    pub retries: u32,
    /// `retries + 1`.
    pub max_attempts: u32,
    /// Total time budget of one call, e.g. `"2m"`.
    pub max_elapsed: String,
    /// Exponential backoff bounds.
    pub backoff: BackoffPolicy,
    /// How delays are randomized.
    pub jitter: Jitter,
}

/// The backoff policy's bounds, e.g. `"100ms"` to `"30s"` (the delays themselves come from
/// [`crate::Backoff`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    /// First delay.
    pub base: String,
    /// Largest delay.
    pub cap: String,
}

/// Question 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// Whether the loop filter can skip a repeat on the same record.
    pub loop_filter: LoopFilter,
    /// Why the loop filter is off; `null` when it is on.
    pub off_because: Option<FilterOff>,
    /// Loop-filter window for (record, action), e.g. `"24h"`; `null` when the filter is off.
    pub window: Option<String>,
    /// The longest run cycle, if declared.
    pub cycle: Option<String>,
    /// How long an in-progress claim on a record holds.
    pub lease: String,
}

/// Whether the loop filter of an action can skip anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopFilter {
    /// A repeat on the same record within the window is skipped.
    On,
    /// Nothing is skipped; [`Dedup::off_because`] says why.
    Off,
}

/// Why the loop filter of an action is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOff {
    /// The action only reads: reads are not claimed or deduplicated.
    Read,
    /// `dedup = none`.
    DedupNone,
    /// No `record` is declared: each key is its own record, so a repeat on the same business object
    /// comes with another key and is not skipped (and one with the same key is a replay, not a skip).
    NoRecord,
}

impl FilterOff {
    /// `"read"`, `"dedup_none"` or `"no_record"`, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterOff::Read => "read",
            FilterOff::DedupNone => "dedup_none",
            FilterOff::NoRecord => "no_record",
        }
    }
}

/// Question 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRouting {
    /// Transient failures (timeouts, 503, throttling).
    pub transient: RouteAnswer,
    /// Validation failures (the input is wrong).
    pub validation: RouteAnswer,
    /// State conflicts (the target's state does not allow the write).
    pub conflict: RouteAnswer,
    /// Security failures (forbidden, tampered, suspicious).
    pub security: RouteAnswer,
    /// The data owner's queue.
    pub owner: Option<String>,
    /// The domain expert's queue.
    pub expert: Option<String>,
}

/// Where one kind of failure goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteAnswer {
    /// The declared route.
    pub route: Route,
    /// The queue the failure ends in: the owner's or expert's queue, `"dead_letter"` (also after
    /// exhausted retries), or `null` for `halt`.
    pub queue: Option<String>,
}

/// The function's signature, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Payload parameters (fingerprinted, stored with queue entries, replayable).
    pub payload: Vec<Param>,
    /// `#[dep]` parameters.
    pub deps: Vec<Param>,
    /// `T` of `Result<T, E>`.
    pub result_type: String,
    /// `E` of `Result<T, E>`.
    pub error_type: String,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
}

/// Whether an option was written in the attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionSource {
    /// Written in the attribute.
    Explicit,
    /// Left to actguard's default.
    Default,
}

impl ActionEntry {
    /// The options left to their defaults, in the attribute's order.
    pub fn defaulted_options(&self) -> Vec<&str> {
        OPTIONS
            .iter()
            .copied()
            .filter(|o| self.options.get(*o) != Some(&OptionSource::Explicit))
            .collect()
    }
}
