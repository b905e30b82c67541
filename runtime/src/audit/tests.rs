//! The audit's own tests: one per rule, strict mode, and the report.

use std::time::Duration;

use super::*;
use crate::policy::{Effect, Policy, Route};

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
        strict
            .findings()
            .iter()
            .any(|f| { f.rule == Rule::RouteOwnerWithoutOwner && f.severity == Severity::Error })
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
