//! The manifest of hand-made action specs: JSON schema, digest, Markdown sheet, MCP hints, snapshot
//! check and diff; and the registry with specs submitted the way the attribute submits them.

use std::sync::Mutex;
use std::time::Duration;

use actguard::__private::Registration;
use actguard::manifest::{OptionSource, UPDATE_ENV};
use actguard::{
    ActionSpec, AuditSettings, Change, Effect, Jitter, Manifest, ManifestError, ParamSpec, Policy,
    Route, audit_registry, registry,
};

static DISBURSE: ActionSpec = ActionSpec {
    name: "disburse",
    fn_name: "disburse",
    module_path: "loans::actions",
    file: "src/actions.rs",
    line: 12,
    effect: Effect::Write,
    key: Some("disburse:{instr.loan_id}:{instr.seq}"),
    record: Some("{instr.loan_id}"),
    policy: Policy {
        retries: 5,
        max_elapsed: Duration::from_secs(120),
        dedup: Some(Duration::from_secs(24 * 3600)),
        on_validation: Route::RouteOwner,
        owner: Some("loan-ops"),
        on_conflict: Route::Escalate,
        expert: Some("credit-risk"),
        on_security: Route::Halt,
        ..Policy::DEFAULT
    },
    compensate: Some("reverse_disbursement"),
    explicit: &[
        "key",
        "record",
        "retries",
        "max_elapsed",
        "dedup",
        "on_validation",
        "owner",
        "on_conflict",
        "expert",
        "on_security",
        "compensate",
    ],
    payload: &[ParamSpec {
        name: "instr",
        ty: "&Disbursement",
    }],
    deps: &[],
    result_type: "Receipt",
    error_type: "LedgerError",
};

static REVERSE: ActionSpec = ActionSpec {
    name: "reverse_disbursement",
    fn_name: "reverse",
    module_path: "loans::actions",
    file: "src/actions.rs",
    line: 40,
    effect: Effect::Destructive,
    key: Some("reverse:{receipt.id}"),
    record: None,
    policy: Policy {
        retries: 0,
        backoff_base: Duration::from_millis(250),
        jitter: Jitter::Decorrelated,
        dedup: None,
        on_transient: Route::DeadLetter,
        on_validation: Route::DeadLetter,
        on_conflict: Route::Halt,
        ..Policy::DEFAULT
    },
    compensate: Some("disburse"),
    explicit: &[
        "name",
        "effect",
        "key",
        "retries",
        "backoff",
        "jitter",
        "dedup",
        "on_transient",
        "on_validation",
        "on_conflict",
        "compensate",
    ],
    payload: &[ParamSpec {
        name: "receipt",
        ty: "&Receipt",
    }],
    deps: &[ParamSpec {
        name: "ledger",
        ty: "&LedgerClient",
    }],
    result_type: "()",
    error_type: "LedgerError",
};

static BALANCE: ActionSpec = ActionSpec {
    name: "balance",
    fn_name: "balance",
    module_path: "loans::actions",
    file: "src/actions.rs",
    line: 60,
    effect: Effect::Read,
    key: None,
    record: None,
    policy: Policy::DEFAULT,
    compensate: None,
    explicit: &["effect"],
    payload: &[ParamSpec {
        name: "loan_id",
        ty: "u64",
    }],
    deps: &[],
    result_type: "Money",
    error_type: "LedgerError",
};

// Registered the way `#[agent_action]` registers them.
actguard::__private::inventory::submit! { Registration(&DISBURSE) }
actguard::__private::inventory::submit! { Registration(&REVERSE) }
actguard::__private::inventory::submit! { Registration(&BALANCE) }

fn specs() -> Vec<&'static ActionSpec> {
    vec![&REVERSE, &DISBURSE, &BALANCE]
}

#[test]
fn print() {
    let m = Manifest::from_specs(&specs());
    println!("{}", m.to_json());
    println!("{}", m.to_markdown());
}
