//! The startup audit: checks every registered action's policy before an agent acts.
//!
//! Most mistakes are rejected at compile time by `#[agent_action]`; the audit sees the whole program
//! at once, so it also catches what one attribute cannot: two actions with the same name, a
//! `compensate` naming an action that does not exist. It re-checks the per-attribute rules too, so a
//! hand-built [`ActionSpec`] (or one from an older macro) is held to the same bar.
//!
//! In strict mode ([`AuditSettings::strict`]) every write must also answer the operations team's
//! questions explicitly instead of leaving them to actguard's defaults; see [`Rule`] for what each
//! strict rule requires.
//!
//! ```
//! use actguard::{AuditSettings, audit_registry};
//!
//! let report = audit_registry(&AuditSettings::default());
//! assert!(report.is_ok(), "{report}");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::policy::ActionSpec;
use crate::registry::registry;

mod checks;
mod report;
#[cfg(test)]
mod tests;

use checks::check_action;
pub use report::{AuditError, AuditReport, Finding};

/// The largest `retries` the attribute accepts.
pub const MAX_RETRIES: u32 = 100;

/// How the audit is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditSettings {
    /// Also reject writes (`write` and `destructive` actions; reads are exempt) that leave one of the
    /// five questions to a default:
    ///
    /// 1. the key: `key` written ([`Rule::ImplicitKey`]);
    /// 2. the retry budget: `retries` and `max_elapsed` written, or the call is never retried
    ///    (`retries = 0`, or `on_transient` written as another route) ([`Rule::ImplicitRetryBudget`]);
    /// 3. the loop filter: `dedup` written, as a duration or `none` ([`Rule::ImplicitDedup`]), and a
    ///    `record` declared, the business object the filter and the per-record serialization work on
    ///    ([`Rule::NoRecord`]);
    /// 4. failure routing: for validation, `on_validation` written or `owner` named while it keeps
    ///    its default route; for conflict, `on_conflict` written or `expert` named likewise; for
    ///    security, `on_security` written ([`Rule::ImplicitFailureRouting`]);
    /// 5. the log and its store are the agent's, not an action's: not checked per action.
    pub strict: bool,
}

impl AuditSettings {
    /// Settings for strict mode: every write answers the five questions explicitly.
    pub fn strict() -> Self {
        AuditSettings { strict: true }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The agent must not start.
    Error,
    /// Worth a look; does not fail the audit.
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule a finding breaks. [`Rule::as_str`] is its stable id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Two actions share a name: keys, logs and queues are keyed by the name.
    DuplicateName,
    /// `retries` over [`MAX_RETRIES`].
    UnboundedRetries,
    /// `retry` declared for a failure kind other than transient: it would retry forever on bad input.
    RetryOnPermanentFailure,
    /// The first backoff delay is longer than the cap.
    BackoffBaseAboveCap,
    /// A failure kind is routed to `route_owner` but no `owner` queue is named.
    RouteOwnerWithoutOwner,
    /// A failure kind is routed to `escalate` but no `expert` queue is named.
    EscalateWithoutExpert,
    /// A `destructive` action declares no `compensate` action.
    DestructiveWithoutCompensate,
    /// `compensate` names an action that is not registered.
    UnknownCompensate,
    /// `compensate` names an action that only reads: it cannot reverse a write (warning).
    CompensateIsRead,
    /// The `compensate` action does not take the same payload parameters (names and types) as the
    /// action it reverses: a revert calls it with the reversed entry's stored payload, so it cannot
    /// revert this action (warning).
    CompensateSignatureMismatch,
    /// `dedup` is not longer than `cycle`: the loop filter would let the next cycle act again.
    DedupNotLongerThanCycle,
    /// `cycle` is declared while `dedup = none` turns the loop filter off (warning).
    CycleWithoutDedup,
    /// A write declares a `dedup` window but no `record`: each key is then its own record, so the
    /// loop filter never skips anything.
    DedupWithoutRecord,
    /// A write declares no `record`: the loop filter is off and calls on one business object are not
    /// serialized (only calls with the same key are). An error in strict mode; otherwise a warning
    /// when the action declares a `cycle` with the loop filter on, since nothing then stops the next
    /// cycle from acting on the same object again under a new key.
    NoRecord,
    /// A `write` or `destructive` action has no idempotency key.
    WriteWithoutKey,
    /// Strict: a write's `key` is not written in the attribute.
    ImplicitKey,
    /// Strict: a write leaves `retries` or `max_elapsed` (its retry budget) to the default. A write
    /// that is never retried (`retries = 0`, or `on_transient` written as anything but `retry`) needs
    /// no `max_elapsed`.
    ImplicitRetryBudget,
    /// Strict: a write leaves `dedup` (its loop-filter window) to the default.
    ImplicitDedup,
    /// Strict: a write leaves the destination of validation, conflict or security failures to the
    /// default. Validation is answered by `on_validation`, or by naming `owner` while it keeps its
    /// default route (`route_owner`); conflict by `on_conflict`, or by naming `expert` while it keeps
    /// `escalate`; security only by writing `on_security`. Transient failures are answered by the
    /// retry budget (see [`Rule::ImplicitRetryBudget`]) or `on_transient`.
    ImplicitFailureRouting,
    /// A `destructive` action is an LLM tool (`tool`) with no `approve`: a model's call alone can
    /// destroy. Strict mode makes it an error.
    DestructiveToolWithoutApproval,
}

impl Rule {
    /// The rule's stable id, e.g. `"duplicate_name"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::DuplicateName => "duplicate_name",
            Rule::UnboundedRetries => "unbounded_retries",
            Rule::RetryOnPermanentFailure => "retry_on_permanent_failure",
            Rule::BackoffBaseAboveCap => "backoff_base_above_cap",
            Rule::RouteOwnerWithoutOwner => "route_owner_without_owner",
            Rule::EscalateWithoutExpert => "escalate_without_expert",
            Rule::DestructiveWithoutCompensate => "destructive_without_compensate",
            Rule::UnknownCompensate => "unknown_compensate",
            Rule::CompensateIsRead => "compensate_is_read",
            Rule::CompensateSignatureMismatch => "compensate_signature_mismatch",
            Rule::DedupNotLongerThanCycle => "dedup_not_longer_than_cycle",
            Rule::CycleWithoutDedup => "cycle_without_dedup",
            Rule::DedupWithoutRecord => "dedup_without_record",
            Rule::NoRecord => "no_record",
            Rule::WriteWithoutKey => "write_without_key",
            Rule::ImplicitKey => "strict_implicit_key",
            Rule::ImplicitRetryBudget => "strict_implicit_retry_budget",
            Rule::ImplicitDedup => "strict_implicit_dedup",
            Rule::ImplicitFailureRouting => "strict_implicit_failure_routing",
            Rule::DestructiveToolWithoutApproval => "destructive_tool_without_approval",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Audits every action compiled into this program ([`registry()`](crate::registry())).
pub fn audit_registry(settings: &AuditSettings) -> AuditReport {
    audit(&registry(), settings)
}

/// Audits `specs` as one program: names must be unique among them and every `compensate` must name
/// one of them.
pub fn audit(specs: &[&ActionSpec], settings: &AuditSettings) -> AuditReport {
    let mut findings = Vec::new();

    let mut by_name: BTreeMap<&str, Vec<&ActionSpec>> = BTreeMap::new();
    for spec in specs {
        by_name.entry(spec.name).or_default().push(spec);
    }
    for (name, group) in &by_name {
        if group.len() > 1 {
            let places: Vec<String> = group.iter().map(|s| location(s)).collect();
            findings.push(Finding {
                severity: Severity::Error,
                rule: Rule::DuplicateName,
                action: (*name).to_owned(),
                location: places[0].clone(),
                message: format!(
                    "the name `{name}` is declared by {} actions, at {}; keys, logs and queues are \
                     keyed by the action name, so give each a unique `name = \"...\"`",
                    group.len(),
                    places.join(" and "),
                ),
            });
        }
    }

    for spec in specs {
        check_action(spec, &by_name, settings, &mut findings);
    }

    findings.sort_by(|a, b| {
        (&a.action, a.severity, a.rule, &a.location).cmp(&(
            &b.action,
            b.severity,
            b.rule,
            &b.location,
        ))
    });
    findings.dedup();
    AuditReport {
        findings,
        actions: specs.len(),
        strict: settings.strict,
    }
}

/// The payload parameters as a revert passes them: names, and types without the reference (`&T` and
/// `T` store the same payload).
pub(crate) fn payload_shape(spec: &ActionSpec) -> Vec<(&'static str, String)> {
    spec.payload
        .iter()
        .map(|p| {
            let mut ty = p.ty.trim();
            while let Some(rest) = ty.strip_prefix('&') {
                ty = rest.trim_start();
                if ty.starts_with('\'') {
                    ty = ty.split_once(' ').map_or(ty, |(_, t)| t);
                }
                ty = ty.strip_prefix("mut ").unwrap_or(ty);
            }
            (p.name, ty.replace(' ', ""))
        })
        .collect()
}

fn location(spec: &ActionSpec) -> String {
    format!("{}:{}", spec.file, spec.line)
}
