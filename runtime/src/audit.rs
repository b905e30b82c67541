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

use crate::manifest::short_duration;
use crate::policy::{ActionSpec, Effect, FailureKind, Route};
use crate::registry::registry;

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

/// One problem the audit found in one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it stops the agent from starting.
    pub severity: Severity,
    /// The rule broken.
    pub rule: Rule,
    /// The action's name.
    pub action: String,
    /// Where the action is declared, `file:line`.
    pub location: String,
    /// What is wrong and how to fix it, for the person reading the startup log.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: action `{}` at {}\n    {}",
            self.severity, self.rule, self.action, self.location, self.message
        )
    }
}

/// The result of an audit: every finding, errors and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    findings: Vec<Finding>,
    actions: usize,
    strict: bool,
}

impl AuditReport {
    /// No errors (warnings are allowed).
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    /// Every finding, sorted by action, then severity, then rule.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The findings that stop the agent from starting.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// The findings that do not.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    /// How many actions were audited.
    pub fn action_count(&self) -> usize {
        self.actions
    }

    /// Whether the audit ran in strict mode.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// `Ok(self)` without errors, so an agent can refuse to start with `report.into_result()?`.
    pub fn into_result(self) -> Result<AuditReport, AuditError> {
        if self.is_ok() {
            Ok(self)
        } else {
            Err(AuditError { report: self })
        }
    }

    /// The one-line summary that ends the [`Display`](fmt::Display) output.
    pub fn summary(&self) -> String {
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        format!(
            "audit {}: {} in {}{}",
            if self.is_ok() { "passed" } else { "failed" },
            join_counts(errors, warnings),
            plural(self.actions, "action"),
            if self.strict { " (strict)" } else { "" },
        )
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        write!(f, "{}", self.summary())
    }
}

/// The audit found errors: the agent must not start. Carries the whole report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the action audit failed, the agent will not start:\n{report}")]
pub struct AuditError {
    report: AuditReport,
}

impl AuditError {
    /// The report with every finding.
    pub fn report(&self) -> &AuditReport {
        &self.report
    }

    /// Takes the report out.
    pub fn into_report(self) -> AuditReport {
        self.report
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

fn check_action(
    spec: &ActionSpec,
    by_name: &BTreeMap<&str, Vec<&ActionSpec>>,
    settings: &AuditSettings,
    out: &mut Vec<Finding>,
) {
    let mut f = Findings { spec, out };
    check_retry_budget(spec, &mut f);
    check_routing(spec, settings.strict, &mut f);
    check_reversal(spec, by_name, settings.strict, &mut f);
    check_loop_filter(spec, settings.strict, &mut f);
    check_key(spec, &mut f);
    if settings.strict && spec.effect != Effect::Read {
        check_strict(spec, &mut f);
    }
}

/// The findings of one action.
struct Findings<'a> {
    spec: &'a ActionSpec,
    out: &'a mut Vec<Finding>,
}

impl Findings<'_> {
    fn push(&mut self, severity: Severity, rule: Rule, message: String) {
        self.out.push(Finding {
            severity,
            rule,
            action: self.spec.name.to_owned(),
            location: location(self.spec),
            message,
        });
    }
}

/// Question 2: bounded retries, only of transient failures, with a sane backoff.
fn check_retry_budget(spec: &ActionSpec, f: &mut Findings<'_>) {
    let p = &spec.policy;
    if p.retries > MAX_RETRIES {
        f.push(
            Severity::Error,
            Rule::UnboundedRetries,
            format!(
                "retries = {} is over the limit of {MAX_RETRIES}; a call that keeps failing must reach \
                 the dead-letter queue in bounded time, so lower `retries`",
                p.retries
            ),
        );
    }

    for kind in PERMANENT_KINDS {
        if p.route_for(kind) == Route::Retry {
            f.push(
                Severity::Error,
                Rule::RetryOnPermanentFailure,
                format!(
                    "on_{} = retry: only transient failures may be retried, a {} failure fails the \
                     same way every time; route it to `route_owner`, `escalate`, `dead_letter` or `halt`",
                    kind.as_str(),
                    kind.as_str()
                ),
            );
        }
    }

    if p.backoff_base > p.backoff_cap {
        f.push(
            Severity::Error,
            Rule::BackoffBaseAboveCap,
            format!(
                "backoff starts at {} but is capped at {}; write `backoff = \"base..cap\"` with base \
                 not above cap",
                short_duration(p.backoff_base),
                short_duration(p.backoff_cap)
            ),
        );
    }
}

/// Question 4: a queue named for every failure routed to a person.
fn check_routing(spec: &ActionSpec, strict: bool, f: &mut Findings<'_>) {
    let p = &spec.policy;
    let owner_routed = kinds_routed_to(spec, Route::RouteOwner);
    if !owner_routed.is_empty() && p.owner.is_none() {
        let (kinds, note) = describe_kinds(spec, &owner_routed);
        f.push(
            unnamed_queue_severity(spec, &owner_routed, strict),
            Rule::RouteOwnerWithoutOwner,
            format!(
                "{kinds} failures are routed to the data owner{note}, but no owner queue is named \
                 (they go to the queue `owner`); add `owner = \"...\"`, or route them elsewhere ({})",
                reroute_hint(&owner_routed)
            ),
        );
    }

    let expert_routed = kinds_routed_to(spec, Route::Escalate);
    if !expert_routed.is_empty() && p.expert.is_none() {
        let (kinds, note) = describe_kinds(spec, &expert_routed);
        f.push(
            unnamed_queue_severity(spec, &expert_routed, strict),
            Rule::EscalateWithoutExpert,
            format!(
                "{kinds} failures are escalated to a domain expert{note}, but no expert queue is \
                 named (they go to the queue `expert`); add `expert = \"...\"`, or route them \
                 elsewhere ({})",
                reroute_hint(&expert_routed)
            ),
        );
    }
}

/// What reverses a destructive action, and who approves a destructive tool.
fn check_reversal(
    spec: &ActionSpec,
    by_name: &BTreeMap<&str, Vec<&ActionSpec>>,
    strict: bool,
    f: &mut Findings<'_>,
) {
    let p = &spec.policy;
    if spec.effect == Effect::Destructive && spec.compensate.is_none() {
        f.push(
            Severity::Error,
            Rule::DestructiveWithoutCompensate,
            "a destructive action must declare the action that reverses it; add \
             `compensate = <action>` so a bad batch can be reverted"
                .to_owned(),
        );
    }

    if let Some(target) = spec.compensate {
        match by_name.get(target) {
            None => f.push(
                Severity::Error,
                Rule::UnknownCompensate,
                format!(
                    "compensate = `{target}`, but no action named `{target}` is registered; a revert \
                     would have nothing to run (is its crate linked? add `use its_crate as _;`)"
                ),
            ),
            Some(group) if group.iter().all(|t| t.effect == Effect::Read) => f.push(
                Severity::Warning,
                Rule::CompensateIsRead,
                format!(
                    "compensate = `{target}`, but `{target}` only reads; an action that reverses a \
                     write must itself write"
                ),
            ),
            Some(group) => {
                let ours = payload_shape(spec);
                if let Some(other) = group.iter().find(|t| payload_shape(t) != ours) {
                    let show = |shape: Vec<(&str, String)>| {
                        let params: Vec<String> =
                            shape.iter().map(|(n, t)| format!("{n}: {t}")).collect();
                        format!("({})", params.join(", "))
                    };
                    // A warning: only a revert needs the convention, and it reports such records as
                    // failed with this reason rather than calling the action with a wrong payload.
                    f.push(
                        Severity::Warning,
                        Rule::CompensateSignatureMismatch,
                        format!(
                            "compensate = `{target}`, but `{target}` takes the payload {} while this                              action takes {}; a revert calls the compensating action with the stored                              payload of the entry it reverses, so give it the same payload parameters                              (names and types; `#[dep]`s may differ)",
                            show(payload_shape(other)),
                            show(ours)
                        ),
                    );
                }
            }
        }
    }

    if spec.effect == Effect::Destructive && spec.tool.is_some() && p.approve.is_none() {
        f.push(
            if strict {
                Severity::Error
            } else {
                Severity::Warning
            },
            Rule::DestructiveToolWithoutApproval,
            "a destructive action is a tool without `approve`: a model's call alone can destroy; \
             add `approve = \"queue\"` so a person approves each key first"
                .to_owned(),
        );
    }
}

/// Question 3: a loop filter that outlasts the run cycle, on a declared record.
fn check_loop_filter(spec: &ActionSpec, strict: bool, f: &mut Findings<'_>) {
    let p = &spec.policy;
    let writes = spec.effect != Effect::Read;
    match (p.dedup, p.cycle) {
        (Some(dedup), Some(cycle)) if dedup <= cycle => f.push(
            Severity::Error,
            Rule::DedupNotLongerThanCycle,
            format!(
                "dedup = \"{}\" is not longer than cycle = \"{}\": the next run cycle would act on the \
                 same record again; make `dedup` longer than the cycle",
                short_duration(dedup),
                short_duration(cycle)
            ),
        ),
        (None, Some(cycle)) => f.push(
            Severity::Warning,
            Rule::CycleWithoutDedup,
            format!(
                "cycle = \"{}\" is declared but dedup = none turns the loop filter off: nothing stops \
                 each cycle from acting on the same record again",
                short_duration(cycle)
            ),
        ),
        _ => {}
    }

    // Without a record each key is its own record: a repeat on the same business object under another
    // key is never skipped, and only calls with the same key run one at a time.
    let no_record = writes && spec.record.is_none();
    let dedup_without_record = no_record && spec.is_explicit("dedup") && p.dedup.is_some();
    if dedup_without_record {
        f.push(
            Severity::Error,
            Rule::DedupWithoutRecord,
            format!(
                "dedup = \"{}\" is declared but no record: the loop filter skips a second action on the \
                 same record within the window, and without a `record` every key is its own record, so \
                 nothing is ever skipped; {RECORD_HINT}, or remove `dedup`",
                p.dedup.map_or_else(String::new, short_duration)
            ),
        );
    }
    if no_record && !dedup_without_record {
        match (p.dedup, p.cycle) {
            _ if strict => f.push(
                Severity::Error,
                Rule::NoRecord,
                format!(
                    "no record: the loop filter is off and calls on one business object are not \
                     serialized; strict mode requires `record = \"...\"` on every write: {RECORD_HINT}"
                ),
            ),
            (Some(_), Some(cycle)) => f.push(
                Severity::Warning,
                Rule::NoRecord,
                format!(
                    "no record: the loop filter is off and calls on one business object are not \
                     serialized, yet cycle = \"{}\" is declared: nothing stops the next cycle from acting \
                     on the same object again under a new key; {RECORD_HINT}",
                    short_duration(cycle)
                ),
            ),
            _ => {}
        }
    }
}

/// Question 1: every write has an idempotency key.
fn check_key(spec: &ActionSpec, f: &mut Findings<'_>) {
    let writes = spec.effect != Effect::Read;
    if writes && spec.key.is_none() {
        f.push(
            Severity::Error,
            Rule::WriteWithoutKey,
            format!(
                "a {} action needs an idempotency key, or a retry after a timeout can write twice; \
                 add `key = \"...\"` built from the source record and the intent",
                spec.effect.as_str()
            ),
        );
    }
}

/// Strict mode: every answer of a write written in the attribute, none left to a default.
fn check_strict(spec: &ActionSpec, f: &mut Findings<'_>) {
    let p = &spec.policy;

    if spec.key.is_some() && !spec.is_explicit("key") {
        f.push(
            Severity::Error,
            Rule::ImplicitKey,
            "the idempotency key is not written in the attribute; strict mode requires `key = \"...\"` \
             on every write"
                .to_owned(),
        );
    }

    // A call that is never retried (`retries = 0`, or transient failures routed elsewhere) has no
    // elapsed budget to declare.
    let never_retried = (spec.is_explicit("retries") && p.retries == 0)
        || (spec.is_explicit("on_transient") && p.on_transient != Route::Retry);
    let missing_budget: Vec<&str> = ["retries", "max_elapsed"]
        .into_iter()
        .filter(|o| !spec.is_explicit(o))
        .collect();
    if !missing_budget.is_empty() && !never_retried {
        f.push(
            Severity::Error,
            Rule::ImplicitRetryBudget,
            format!(
                "the retry budget ({} {} within {}) is not written in the attribute; strict mode \
                 requires {} on every write",
                p.retries,
                if p.retries == 1 { "retry" } else { "retries" },
                short_duration(p.max_elapsed),
                missing_budget
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        );
    }

    if !spec.is_explicit("dedup") {
        f.push(
            Severity::Error,
            Rule::ImplicitDedup,
            format!(
                "the deduplication window ({}) is not written in the attribute; strict mode requires \
                 `dedup = \"...\"` (or `dedup = none`) on every write",
                p.dedup.map_or("none".to_owned(), short_duration)
            ),
        );
    }

    let unanswered: Vec<String> = PERMANENT_KINDS
        .into_iter()
        .filter_map(|kind| routing_hint_if_unanswered(spec, kind))
        .collect();
    if !unanswered.is_empty() {
        f.push(
            Severity::Error,
            Rule::ImplicitFailureRouting,
            format!(
                "where failures go is left to the defaults for {}",
                unanswered.join("; ")
            ),
        );
    }
}

/// How to answer a missing record, the end of a finding's message.
const RECORD_HINT: &str = "declare the business object this action acts on, e.g. \
    `record = \"{invoice.id}\"` (not a coarser owner such as the customer, unless the rule really is \
    once per customer per window)";

const PERMANENT_KINDS: [FailureKind; 3] = [
    FailureKind::Validation,
    FailureKind::Conflict,
    FailureKind::Security,
];

/// `None` when the destination of `kind` failures is written in the attribute, else how to write it.
fn routing_hint_if_unanswered(spec: &ActionSpec, kind: FailureKind) -> Option<String> {
    let option = format!("on_{}", kind.as_str());
    if spec.is_explicit(&option) {
        return None;
    }
    let route = spec.policy.route_for(kind);
    let queue_named = match route {
        Route::RouteOwner => spec.is_explicit("owner"),
        Route::Escalate => spec.is_explicit("expert"),
        _ => false,
    };
    if queue_named {
        return None;
    }
    Some(match route {
        Route::RouteOwner => format!(
            "{} failures (write `{option}`, or name the `owner` queue)",
            kind.as_str()
        ),
        Route::Escalate => format!(
            "{} failures (write `{option}`, or name the `expert` queue)",
            kind.as_str()
        ),
        _ => format!("{} failures (write `{option}`)", kind.as_str()),
    })
}

fn kinds_routed_to(spec: &ActionSpec, route: Route) -> Vec<FailureKind> {
    [
        FailureKind::Transient,
        FailureKind::Validation,
        FailureKind::Conflict,
        FailureKind::Security,
    ]
    .into_iter()
    .filter(|k| spec.policy.route_for(*k) == route)
    .collect()
}

/// `("validation", " (by default)")`, `("transient and validation", " (validation by default)")`.
fn describe_kinds(spec: &ActionSpec, kinds: &[FailureKind]) -> (String, String) {
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let defaulted: Vec<&str> = kinds
        .iter()
        .filter(|k| !spec.is_explicit(&format!("on_{}", k.as_str())))
        .map(|k| k.as_str())
        .collect();
    let note = if defaulted.is_empty() {
        String::new()
    } else if defaulted.len() == names.len() {
        " (by default)".to_owned()
    } else {
        format!(" ({} by default)", defaulted.join(" and "))
    };
    (names.join(" and "), note)
}

/// A route written in the attribute to an unnamed queue is an error; a default route to one is a
/// warning (the failures still land in a queue, named `owner` or `expert`), and an error in strict mode.
fn unnamed_queue_severity(spec: &ActionSpec, kinds: &[FailureKind], strict: bool) -> Severity {
    let written = kinds
        .iter()
        .any(|k| spec.is_explicit(&format!("on_{}", k.as_str())));
    if written || strict {
        Severity::Error
    } else {
        Severity::Warning
    }
}

/// "`on_validation = dead_letter`".
fn reroute_hint(kinds: &[FailureKind]) -> String {
    kinds
        .iter()
        .map(|k| format!("`on_{} = dead_letter`", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn location(spec: &ActionSpec) -> String {
    format!("{}:{}", spec.file, spec.line)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn join_counts(errors: usize, warnings: usize) -> String {
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::{Policy, Route};

    const ALL: &[&str] = &[
        "key",
        "record",
        "retries",
        "max_elapsed",
        "dedup",
        "on_validation",
        "on_conflict",
        "on_security",
        "owner",
        "expert",
    ];

    /// A write that answers every question explicitly: passes even a strict audit.
    fn good(name: &'static str) -> ActionSpec {
        ActionSpec {
            name,
            fn_name: name,
            module_path: "loans",
            file: "src/loans.rs",
            line: 10,
            effect: Effect::Write,
            key: Some("k:{id}:{seq}"),
            record: Some("{id}"),
            policy: Policy {
                owner: Some("loan-ops"),
                expert: Some("credit-risk"),
                ..Policy::DEFAULT
            },
            compensate: None,
            explicit: ALL,
            payload: &[],
            deps: &[],
            result_type: "Receipt",
            error_type: "LedgerError",
            tool: None,
            invoke: None,
        }
    }

    fn rules(report: &AuditReport) -> Vec<Rule> {
        report.findings().iter().map(|f| f.rule).collect()
    }

    fn lenient(specs: &[&ActionSpec]) -> AuditReport {
        audit(specs, &AuditSettings::default())
    }

    #[test]
    fn a_fully_declared_write_passes_even_strict() {
        let a = good("disburse");
        let report = audit(&[&a], &AuditSettings::strict());
        assert!(report.findings().is_empty(), "{report}");
        assert!(report.is_ok());
        assert_eq!(report.action_count(), 1);
    }

    #[test]
    fn duplicate_names_are_reported_with_both_locations() {
        let a = good("disburse");
        let b = ActionSpec {
            file: "src/other.rs",
            line: 42,
            ..good("disburse")
        };
        let report = lenient(&[&a, &b]);
        assert_eq!(rules(&report), vec![Rule::DuplicateName]);
        let msg = &report.findings()[0].message;
        assert!(
            msg.contains("src/loans.rs:10") && msg.contains("src/other.rs:42"),
            "{msg}"
        );
        assert!(!report.is_ok());

        let c = good("refund");
        assert!(lenient(&[&a, &c]).findings().is_empty());
    }

    #[test]
    fn retries_over_100_are_rejected() {
        let mut a = good("disburse");
        a.policy.retries = 101;
        assert_eq!(rules(&lenient(&[&a])), vec![Rule::UnboundedRetries]);
        a.policy.retries = 100;
        assert!(lenient(&[&a]).findings().is_empty());
    }

    #[test]
    fn retry_on_a_permanent_failure_is_rejected() {
        let mut a = good("disburse");
        a.policy.on_conflict = Route::Retry;
        let report = lenient(&[&a]);
        assert_eq!(rules(&report), vec![Rule::RetryOnPermanentFailure]);
        assert!(report.findings()[0].message.contains("on_conflict = retry"));
    }

    #[test]
    fn backoff_base_above_cap_is_rejected() {
        let mut a = good("disburse");
        a.policy.backoff_base = Duration::from_secs(60);
        assert_eq!(rules(&lenient(&[&a])), vec![Rule::BackoffBaseAboveCap]);
    }

    #[test]
    fn route_owner_without_owner_is_rejected_for_any_kind() {
        // The default on_validation routes to the owner.
        let mut a = good("disburse");
        a.policy.owner = None;
        a.explicit = &["key", "expert"];
        let report = lenient(&[&a]);
        assert_eq!(rules(&report), vec![Rule::RouteOwnerWithoutOwner]);
        let msg = &report.findings()[0].message;
        assert!(
            msg.contains("validation failures are routed to the data owner (by default)"),
            "{msg}"
        );
        assert!(msg.contains("`on_validation = dead_letter`"), "{msg}");
        // Left to the default, the failures still land in a queue (named `owner`): a warning, unless
        // the audit is strict.
        assert_eq!(report.findings()[0].severity, Severity::Warning);
        assert!(report.is_ok(), "{report}");
        let strict = audit(&[&a], &AuditSettings::strict());
        assert!(
            strict.findings().iter().any(|f| {
                f.rule == Rule::RouteOwnerWithoutOwner && f.severity == Severity::Error
            })
        );

        // Transient routed to the owner, validation elsewhere.
        let mut b = good("refund");
        b.policy.owner = None;
        b.policy.on_validation = Route::DeadLetter;
        b.policy.on_transient = Route::RouteOwner;
        b.explicit = &["key", "on_transient", "on_validation"];
        let report = lenient(&[&b]);
        assert_eq!(rules(&report), vec![Rule::RouteOwnerWithoutOwner]);
        let msg = &report.findings()[0].message;
        assert!(
            msg.contains("transient failures are routed to the data owner, but"),
            "{msg}"
        );
        // Written in the attribute: an error.
        assert_eq!(report.findings()[0].severity, Severity::Error);

        // Nothing routed to the owner: no owner needed.
        let mut c = good("notify");
        c.policy.owner = None;
        c.policy.on_validation = Route::DeadLetter;
        assert!(lenient(&[&c]).findings().is_empty());
    }

    #[test]
    fn escalate_without_expert_is_rejected() {
        let mut a = good("disburse");
        a.policy.expert = None;
        assert_eq!(rules(&lenient(&[&a])), vec![Rule::EscalateWithoutExpert]);

        let mut b = good("refund");
        b.policy.expert = None;
        b.policy.on_conflict = Route::Halt;
        assert!(lenient(&[&b]).findings().is_empty());
    }

    #[test]
    fn destructive_without_compensate_is_rejected() {
        let a = ActionSpec {
            effect: Effect::Destructive,
            ..good("close_account")
        };
        assert_eq!(
            rules(&lenient(&[&a])),
            vec![Rule::DestructiveWithoutCompensate]
        );

        let b = ActionSpec {
            effect: Effect::Destructive,
            compensate: Some("reopen_account"),
            ..good("close_account")
        };
        let c = good("reopen_account");
        assert!(lenient(&[&b, &c]).findings().is_empty());
    }

    #[test]
    fn a_destructive_tool_without_approval_is_flagged_and_refused_when_strict() {
        fn schema() -> serde_json::Value {
            serde_json::json!({ "type": "object" })
        }
        let tool = Some(crate::tools::ToolSpec {
            description: "Closes an account.",
            input_schema: schema,
        });
        let a = ActionSpec {
            effect: Effect::Destructive,
            compensate: Some("reopen_account"),
            tool,
            ..good("close_account")
        };
        let c = good("reopen_account");
        let report = lenient(&[&a, &c]);
        assert_eq!(rules(&report), vec![Rule::DestructiveToolWithoutApproval]);
        assert!(report.is_ok(), "a warning when lenient");
        assert!(!audit(&[&a, &c], &AuditSettings::strict()).is_ok());

        let approved = ActionSpec {
            policy: Policy {
                approve: Some("treasury"),
                ..a.policy
            },
            ..a
        };
        assert!(lenient(&[&approved, &c]).findings().is_empty());
    }

    #[test]
    fn compensate_must_name_a_registered_action() {
        let a = ActionSpec {
            compensate: Some("reverse_disbursement"),
            ..good("disburse")
        };
        let report = lenient(&[&a]);
        assert_eq!(rules(&report), vec![Rule::UnknownCompensate]);
        assert!(
            report.findings()[0]
                .message
                .contains("`reverse_disbursement`")
        );

        let b = good("reverse_disbursement");
        assert!(lenient(&[&a, &b]).findings().is_empty());
    }

    #[test]
    fn compensate_that_only_reads_is_a_warning() {
        let a = ActionSpec {
            compensate: Some("lookup"),
            ..good("disburse")
        };
        let b = ActionSpec {
            effect: Effect::Read,
            key: None,
            ..good("lookup")
        };
        let report = lenient(&[&a, &b]);
        assert_eq!(rules(&report), vec![Rule::CompensateIsRead]);
        assert_eq!(report.findings()[0].severity, Severity::Warning);
        assert!(report.is_ok());
    }

    #[test]
    fn dedup_must_be_longer_than_cycle() {
        let mut a = good("disburse");
        a.policy.dedup = Some(Duration::from_secs(3600));
        a.policy.cycle = Some(Duration::from_secs(3600));
        let report = lenient(&[&a]);
        assert_eq!(rules(&report), vec![Rule::DedupNotLongerThanCycle]);
        assert!(report.findings()[0].message.contains("dedup = \"1h\""));

        a.policy.cycle = Some(Duration::from_secs(7200));
        assert_eq!(rules(&lenient(&[&a])), vec![Rule::DedupNotLongerThanCycle]);

        a.policy.cycle = Some(Duration::from_secs(1800));
        assert!(lenient(&[&a]).findings().is_empty());
    }

    #[test]
    fn a_cycle_with_the_loop_filter_off_is_a_warning() {
        let mut a = good("disburse");
        a.policy.dedup = None;
        a.policy.cycle = Some(Duration::from_secs(1800));
        let report = lenient(&[&a]);
        assert_eq!(rules(&report), vec![Rule::CycleWithoutDedup]);
        assert!(report.is_ok());
    }

    #[test]
    fn a_dedup_window_without_a_record_is_rejected() {
        // The attribute rejects it; a hand-built spec is held to the same bar.
        let a = ActionSpec {
            record: None,
            ..good("send_invoice")
        };
        let report = lenient(&[&a]);
        assert_eq!(rules(&report), vec![Rule::DedupWithoutRecord]);
        let msg = &report.findings()[0].message;
        assert!(
            msg.contains("dedup = \"24h\" is declared but no record"),
            "{msg}"
        );
        assert!(msg.contains("`record = \"{invoice.id}\"`"), "{msg}");
        // Not reported twice in strict mode.
        let strict = audit(&[&a], &AuditSettings::strict());
        assert_eq!(rules(&strict), vec![Rule::DedupWithoutRecord]);

        // `dedup = none` says the filter is off, which is true.
        let mut b = ActionSpec {
            record: None,
            ..good("send_invoice")
        };
        b.policy.dedup = None;
        assert!(lenient(&[&b]).findings().is_empty());

        // A read has no record to declare.
        let c = ActionSpec {
            effect: Effect::Read,
            key: None,
            record: None,
            ..good("balance")
        };
        assert!(lenient(&[&c]).findings().is_empty());
    }

    #[test]
    fn a_write_without_a_record_fails_strict_and_warns_when_it_runs_in_cycles() {
        // The newcomer's action: no record, the default dedup window.
        let a = ActionSpec {
            record: None,
            explicit: &[
                "key",
                "retries",
                "max_elapsed",
                "on_validation",
                "on_conflict",
                "on_security",
                "owner",
                "expert",
            ],
            ..good("send_invoice")
        };
        // Lenient: most writes look like this; nothing to say unless it runs in cycles (below).
        assert!(lenient(&[&a]).findings().is_empty());

        let strict = audit(&[&a], &AuditSettings::strict());
        assert_eq!(rules(&strict), vec![Rule::NoRecord, Rule::ImplicitDedup]);
        let finding = &strict.findings()[0];
        assert_eq!(finding.severity, Severity::Error);
        assert!(
            finding.message.starts_with(
                "no record: the loop filter is off and calls on one business object are not serialized"
            ),
            "{}",
            finding.message
        );

        // `dedup = none` answers the loop filter, not the serialization.
        let mut b = ActionSpec {
            record: None,
            ..good("send_invoice")
        };
        b.policy.dedup = None;
        let strict = audit(&[&b], &AuditSettings::strict());
        assert_eq!(rules(&strict), vec![Rule::NoRecord]);

        // Declaring a cycle says the action runs again and again: then the missing record is worth
        // a warning even when the audit is lenient.
        let mut c = a;
        c.policy.cycle = Some(Duration::from_secs(6 * 3600));
        let report = lenient(&[&c]);
        assert_eq!(rules(&report), vec![Rule::NoRecord]);
        assert_eq!(report.findings()[0].severity, Severity::Warning);
        assert!(
            report.findings()[0]
                .message
                .contains("cycle = \"6h\" is declared"),
            "{report}"
        );
        assert!(report.is_ok());
        // With `dedup = none` the cycle warning is `cycle_without_dedup`, not this one.
        c.policy.dedup = None;
        assert_eq!(rules(&lenient(&[&c])), vec![Rule::CycleWithoutDedup]);
    }

    #[test]
    fn writes_need_a_key_reads_do_not() {
        let a = ActionSpec {
            key: None,
            ..good("disburse")
        };
        assert_eq!(rules(&lenient(&[&a])), vec![Rule::WriteWithoutKey]);
        let b = ActionSpec {
            key: None,
            effect: Effect::Destructive,
            compensate: Some("disburse"),
            ..good("wipe")
        };
        let report = lenient(&[&b, &good("disburse")]);
        assert_eq!(rules(&report), vec![Rule::WriteWithoutKey]);

        let c = ActionSpec {
            key: None,
            effect: Effect::Read,
            ..good("balance")
        };
        assert!(lenient(&[&c]).findings().is_empty());
    }

    #[test]
    fn strict_mode_rejects_answers_left_to_defaults() {
        let a = ActionSpec {
            explicit: &["key"],
            ..good("disburse")
        };
        assert!(lenient(&[&a]).findings().is_empty());

        let report = audit(&[&a], &AuditSettings::strict());
        assert_eq!(
            rules(&report),
            vec![
                Rule::ImplicitRetryBudget,
                Rule::ImplicitDedup,
                Rule::ImplicitFailureRouting
            ]
        );
        assert!(report.errors().all(|f| f.severity == Severity::Error));
        let routing = &report.findings()[2].message;
        for kind in ["validation", "conflict", "security"] {
            assert!(routing.contains(kind), "{routing}");
        }
    }

    #[test]
    fn strict_retry_budget_needs_both_retries_and_max_elapsed() {
        let a = ActionSpec {
            explicit: &[
                "key",
                "retries",
                "dedup",
                "on_validation",
                "on_conflict",
                "on_security",
            ],
            ..good("disburse")
        };
        let report = audit(&[&a], &AuditSettings::strict());
        assert_eq!(rules(&report), vec![Rule::ImplicitRetryBudget]);
        assert!(report.findings()[0].message.contains("`max_elapsed`"));
        assert!(!report.findings()[0].message.contains("`retries`"));
    }

    #[test]
    fn strict_retry_budget_is_not_needed_when_a_call_is_never_retried() {
        let mut a = ActionSpec {
            explicit: &[
                "key",
                "retries",
                "dedup",
                "on_validation",
                "on_conflict",
                "on_security",
            ],
            ..good("disburse")
        };
        a.policy.retries = 0;
        assert!(audit(&[&a], &AuditSettings::strict()).findings().is_empty());

        let mut b = ActionSpec {
            explicit: &[
                "key",
                "on_transient",
                "dedup",
                "on_validation",
                "on_conflict",
                "on_security",
            ],
            ..good("disburse")
        };
        b.policy.on_transient = Route::DeadLetter;
        assert!(audit(&[&b], &AuditSettings::strict()).findings().is_empty());

        // The default on_transient (retry) does not count.
        let c = ActionSpec {
            explicit: &[
                "key",
                "dedup",
                "on_validation",
                "on_conflict",
                "on_security",
            ],
            ..good("disburse")
        };
        let report = audit(&[&c], &AuditSettings::strict());
        assert_eq!(rules(&report), vec![Rule::ImplicitRetryBudget]);
        assert!(
            report.findings()[0]
                .message
                .contains("the retry budget (3 retries within 5m) is not written"),
            "{report}"
        );
    }

    #[test]
    fn strict_routing_is_answered_by_naming_the_queue_of_the_default_route() {
        // owner + expert named, validation and conflict keep their default routes: answered;
        // security must still be written.
        let a = ActionSpec {
            explicit: &["key", "retries", "max_elapsed", "dedup", "owner", "expert"],
            ..good("disburse")
        };
        let report = audit(&[&a], &AuditSettings::strict());
        assert_eq!(rules(&report), vec![Rule::ImplicitFailureRouting]);
        let msg = &report.findings()[0].message;
        assert!(
            msg.contains("security") && !msg.contains("validation") && !msg.contains("conflict"),
            "{msg}"
        );

        let b = ActionSpec {
            explicit: &[
                "key",
                "retries",
                "max_elapsed",
                "dedup",
                "owner",
                "expert",
                "on_security",
            ],
            ..good("disburse")
        };
        assert!(audit(&[&b], &AuditSettings::strict()).findings().is_empty());
    }

    #[test]
    fn strict_mode_requires_an_explicit_key_on_writes_only() {
        let a = ActionSpec {
            explicit: &[
                "retries",
                "max_elapsed",
                "dedup",
                "on_validation",
                "on_conflict",
                "on_security",
            ],
            ..good("disburse")
        };
        assert_eq!(
            rules(&audit(&[&a], &AuditSettings::strict())),
            vec![Rule::ImplicitKey]
        );

        let read = ActionSpec {
            effect: Effect::Read,
            key: None,
            explicit: &[],
            ..good("balance")
        };
        assert!(
            audit(&[&read], &AuditSettings::strict())
                .findings()
                .is_empty()
        );
    }

    #[test]
    fn the_report_lists_every_finding_with_action_and_location_and_a_summary() {
        let mut a = good("disburse");
        a.policy.retries = 500;
        let b = ActionSpec {
            effect: Effect::Destructive,
            line: 77,
            file: "src/accounts.rs",
            ..good("close_account")
        };
        let c = good("notify");
        let text = lenient(&[&a, &b, &c]).to_string();
        assert!(
            text.contains("error[unbounded_retries]: action `disburse` at src/loans.rs:10"),
            "{text}"
        );
        assert!(text.contains("retries = 500"), "{text}");
        assert!(
            text.contains(
                "error[destructive_without_compensate]: action `close_account` at src/accounts.rs:77"
            ),
            "{text}"
        );
        assert_eq!(
            text.lines().last(),
            Some("audit failed: 2 errors, 0 warnings in 3 actions")
        );
        // Sorted by action.
        assert!(text.find("close_account").unwrap() < text.find("`disburse`").unwrap());

        let ok = audit(&[&c], &AuditSettings::strict()).to_string();
        assert_eq!(
            ok,
            "audit passed: 0 errors, 0 warnings in 1 action (strict)"
        );
    }

    #[test]
    fn into_result_refuses_errors_and_keeps_the_report() {
        let a = ActionSpec {
            key: None,
            ..good("disburse")
        };
        let err = lenient(&[&a]).into_result().unwrap_err();
        assert_eq!(rules(err.report()), vec![Rule::WriteWithoutKey]);
        let text = err.to_string();
        assert!(text.starts_with("the action audit failed"), "{text}");
        assert!(text.contains("write_without_key"), "{text}");

        // Warnings alone do not stop an agent.
        let mut b = good("notify");
        b.policy.dedup = None;
        b.policy.cycle = Some(Duration::from_secs(60));
        let report = lenient(&[&b]).into_result().unwrap();
        assert_eq!(report.warnings().count(), 1);
    }
}
