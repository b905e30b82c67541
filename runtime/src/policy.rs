//! The policy of an action: what `#[agent_action(...)]` declares, as plain data.
//!
//! Every type here is built at compile time by the attribute (as a `static`) and read at run time by
//! the guarded call, the registry, the audit and the manifest.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an action does to the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Reads only: needs no idempotency key.
    Read,
    /// Writes: must declare an idempotency key.
    Write,
    /// Writes something that cannot simply be written again: must declare a key and a `compensate` action.
    Destructive,
}

impl Effect {
    /// The spelling used in the attribute and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Write => "write",
            Effect::Destructive => "destructive",
        }
    }
}

/// How a backoff delay is randomized (the AWS formulas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// `U(0, min(cap, base·2ⁿ))`.
    Full,
    /// `e/2 + U(0, e/2)` with `e = min(cap, base·2ⁿ)`.
    Equal,
    /// `min(cap, U(base, 3·previous))`.
    Decorrelated,
    /// `min(cap, base·2ⁿ)`, no randomness.
    None,
}

impl Jitter {
    /// The spelling used in the attribute and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
            Jitter::None => "none",
        }
    }
}

/// The category of a failure, decided by deterministic code ([`Classify`](crate::Classify)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Might succeed if tried again (timeouts, 503, throttling).
    Transient,
    /// The input is wrong; the data owner must fix it.
    Validation,
    /// The target's state does not allow the write; a domain expert must decide.
    Conflict,
    /// Something is unsafe (forbidden, tampered, suspicious): stop the whole run.
    Security,
}

impl FailureKind {
    /// The spelling used in the attribute and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Validation => "validation",
            FailureKind::Conflict => "conflict",
            FailureKind::Security => "security",
        }
    }
}

/// Where a failure of one kind goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Try again after a backoff (transient failures only).
    Retry,
    /// Put it in the data owner's queue (`owner`).
    RouteOwner,
    /// Put it in the domain expert's queue (`expert`).
    Escalate,
    /// Put it in the dead-letter queue.
    DeadLetter,
    /// Halt the whole run and alert.
    Halt,
}

impl Route {
    /// The spelling used in the attribute and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Retry => "retry",
            Route::RouteOwner => "route_owner",
            Route::Escalate => "escalate",
            Route::DeadLetter => "dead_letter",
            Route::Halt => "halt",
        }
    }
}

/// The retry, dedup, lease and routing policy of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Retries after the first attempt (at most `retries + 1` attempts).
    pub retries: u32,
    /// Total time budget of one call, checked before each sleep.
    #[serde(with = "duration_ms")]
    pub max_elapsed: Duration,
    /// First backoff delay.
    #[serde(with = "duration_ms")]
    pub backoff_base: Duration,
    /// Largest backoff delay.
    #[serde(with = "duration_ms")]
    pub backoff_cap: Duration,
    /// How delays are randomized.
    pub jitter: Jitter,
    /// Loop-filter window for (record, action); `None` turns the filter off.
    #[serde(with = "opt_duration_ms")]
    pub dedup: Option<Duration>,
    /// The longest run cycle, if declared.
    #[serde(with = "opt_duration_ms")]
    pub cycle: Option<Duration>,
    /// How long an in-progress claim holds before another worker may take it over.
    #[serde(with = "duration_ms")]
    pub lease: Duration,
    /// Route of transient failures once they may no longer be retried, or always if not `Retry`.
    pub on_transient: Route,
    /// Route of validation failures.
    pub on_validation: Route,
    /// Route of state conflicts.
    pub on_conflict: Route,
    /// Route of security failures.
    pub on_security: Route,
    /// The data owner's queue.
    pub owner: Option<&'static str>,
    /// The domain expert's queue.
    pub expert: Option<&'static str>,
    /// The queue of the people who approve each key before it acts (`approve`), if any.
    pub approve: Option<&'static str>,
    /// How long an approval may wait to be used before it expires (`approval_expires`).
    #[serde(with = "duration_ms")]
    pub approval_expires: Duration,
}

impl Policy {
    /// The defaults: 3 retries, 5 minutes, 100ms..30s full jitter, 24h dedup, 10 second lease (renewed
    /// while the call runs, so it bounds only how long a dead worker's claim blocks its key),
    /// retry / route_owner / escalate / halt.
    pub const DEFAULT: Policy = Policy {
        retries: 3,
        max_elapsed: Duration::from_secs(5 * 60),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(30),
        jitter: Jitter::Full,
        dedup: Some(Duration::from_secs(24 * 3600)),
        cycle: None,
        lease: Duration::from_secs(10),
        on_transient: Route::Retry,
        on_validation: Route::RouteOwner,
        on_conflict: Route::Escalate,
        on_security: Route::Halt,
        owner: None,
        expert: None,
        approve: None,
        approval_expires: Duration::from_secs(24 * 3600),
    };

    /// The route declared for a failure kind.
    pub fn route_for(&self, kind: FailureKind) -> Route {
        match kind {
            FailureKind::Transient => self.on_transient,
            FailureKind::Validation => self.on_validation,
            FailureKind::Conflict => self.on_conflict,
            FailureKind::Security => self.on_security,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::DEFAULT
    }
}

/// One parameter of an action's signature, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamSpec {
    /// The parameter's name.
    pub name: &'static str,
    /// Its type, as written in the source.
    pub ty: &'static str,
}

/// Everything the attribute knows about one action: registered in [`registry()`](crate::registry()),
/// audited at startup, exported in the manifest.
#[derive(Debug, Serialize)]
pub struct ActionSpec {
    /// Stable action name (the `name` option or the function's name).
    pub name: &'static str,
    /// The Rust function's name.
    pub fn_name: &'static str,
    /// `module_path!()` of the function.
    pub module_path: &'static str,
    /// Source file of the attribute.
    pub file: &'static str,
    /// Source line of the attribute.
    pub line: u32,
    /// What the action does to the outside world.
    pub effect: Effect,
    /// The idempotency key template, if any (required for `write` and `destructive`).
    pub key: Option<&'static str>,
    /// The record template, the business object the action acts on; `None` when none is declared:
    /// each rendered key is then its own record, so the loop filter never skips anything.
    pub record: Option<&'static str>,
    /// Retry, dedup, lease and routing.
    pub policy: Policy,
    /// The action that reverses this one (`compensate`), by action name.
    pub compensate: Option<&'static str>,
    /// Names of the options written in the attribute; every other option has its default.
    pub explicit: &'static [&'static str],
    /// Payload parameters (fingerprinted, stored with queue entries).
    pub payload: &'static [ParamSpec],
    /// `#[dep]` parameters (not part of the payload).
    pub deps: &'static [ParamSpec],
    /// The success type `T` of `Result<T, E>`, as written.
    pub result_type: &'static str,
    /// The error type `E` of `Result<T, E>`, as written.
    pub error_type: &'static str,
    /// The tool this action is exported as (`tool`): what an LLM may call by name.
    pub tool: Option<crate::tools::ToolSpec>,
    /// Calls the action from a stored payload (replay, revert). Generated for free, non-generic
    /// functions; `None` for methods and generic functions, which operations cannot invoke.
    #[serde(skip)]
    pub invoke: Option<crate::invoke::InvokeFn>,
}

impl ActionSpec {
    /// Whether `option` was written in the attribute (as opposed to left to its default).
    pub fn is_explicit(&self, option: &str) -> bool {
        self.explicit.contains(&option)
    }

    /// The record template in force: `record`, else `key` (each key its own record).
    pub fn record_template(&self) -> Option<&'static str> {
        self.record.or(self.key)
    }
}

mod duration_ms {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

mod opt_duration_ms {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
}
