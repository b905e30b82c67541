//! The checks of one action, question by question: retry budget, routing, reversal, loop filter,
//! key, and in strict mode the answers left to defaults.

use std::collections::BTreeMap;

use super::{AuditSettings, Finding, MAX_RETRIES, Rule, Severity, location, payload_shape};
use crate::manifest::short_duration;
use crate::policy::{ActionSpec, Effect, FailureKind, Route};

pub(super) fn check_action(
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
