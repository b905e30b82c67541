//! The manifest of hand-made action specs: JSON schema, digest, Markdown sheet, MCP hints, snapshot
//! check and diff; and the registry with specs submitted the way the attribute submits them.

use std::sync::Mutex;
use std::time::Duration;

use actguard::__private::Registration;
use actguard::manifest::{FilterOff, LoopFilter, OptionSource, UPDATE_ENV};
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
    tool: None,
    invoke: None,
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
    tool: None,
    invoke: None,
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
    policy: Policy {
        owner: Some("loan-ops"),
        expert: Some("credit-risk"),
        ..Policy::DEFAULT
    },
    compensate: None,
    explicit: &["effect", "owner", "expert"],
    payload: &[ParamSpec {
        name: "loan_id",
        ty: "u64",
    }],
    deps: &[],
    result_type: "Money",
    error_type: "LedgerError",
    tool: None,
    invoke: None,
};

// Registered the way `#[agent_action]` registers them.
actguard::__private::inventory::submit! { Registration(&DISBURSE) }
actguard::__private::inventory::submit! { Registration(&REVERSE) }
actguard::__private::inventory::submit! { Registration(&BALANCE) }

fn specs() -> Vec<&'static ActionSpec> {
    vec![&REVERSE, &DISBURSE, &BALANCE]
}

/// `DISBURSE` with other policy values (a non-static copy).
fn disburse_with(change: impl FnOnce(&mut ActionSpec)) -> ActionSpec {
    let mut spec = ActionSpec {
        policy: DISBURSE.policy.clone(),
        ..DISBURSE
    };
    change(&mut spec);
    spec
}

fn manifest() -> Manifest {
    Manifest::from_specs(&specs())
}

/// Tests that read `ACTGUARD_UPDATE_MANIFEST` (every `check_file`) hold this lock, so the one test
/// that sets it cannot race them.
static ENV: Mutex<()> = Mutex::new(());

fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The committed schema, compiled (compiling checks it against the draft 2020-12 meta-schema).
fn schema() -> (boon::Schemas, boon::SchemaIndex) {
    let schema: serde_json::Value = serde_json::from_str(actguard::manifest::JSON_SCHEMA).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("urn:actguard:manifest.schema.json", schema)
        .unwrap();
    let index = compiler
        .compile("urn:actguard:manifest.schema.json", &mut schemas)
        .expect("the schema is a valid JSON Schema");
    (schemas, index)
}

#[test]
fn the_manifest_validates_against_the_committed_schema() {
    let (schemas, index) = schema();
    let is_valid = |v: &serde_json::Value| schemas.validate(v, index).is_ok();

    let instance: serde_json::Value = serde_json::from_str(&manifest().to_json()).unwrap();
    if let Err(e) = schemas.validate(&instance, index) {
        panic!("the manifest does not validate: {e:#}");
    }

    let empty: serde_json::Value =
        serde_json::from_str(&Manifest::from_specs(&[]).to_json()).unwrap();
    assert!(is_valid(&empty));

    // The schema is not vacuous: a malformed duration, an unknown route and a missing answer fail.
    let mut bad = instance.clone();
    bad["actions"][1]["retries"]["max_elapsed"] = "two minutes".into();
    assert!(!is_valid(&bad));
    let mut bad = instance.clone();
    bad["actions"][1]["failure_routing"]["security"]["route"] = "ignore".into();
    assert!(!is_valid(&bad));
    let mut bad = instance.clone();
    bad["actions"][1]["dedup"]
        .as_object_mut()
        .unwrap()
        .remove("window");
    assert!(!is_valid(&bad));
    // The loop filter's state agrees with its window and reason.
    let mut bad = instance.clone();
    bad["actions"][1]["dedup"]["loop_filter"] = "off".into();
    assert!(!is_valid(&bad));
    bad["actions"][1]["dedup"]["off_because"] = "no_record".into();
    assert!(!is_valid(&bad), "an off filter has no window");
    bad["actions"][1]["dedup"]["window"] = serde_json::Value::Null;
    assert!(is_valid(&bad));
    let mut bad = instance;
    bad["actions"][2]["dedup"]["loop_filter"] = "on".into();
    assert!(
        !is_valid(&bad),
        "an on filter has a window and no reason to be off"
    );
}

#[test]
fn the_json_is_deterministic_and_sorted() {
    let a = manifest().to_json();
    let b = Manifest::from_specs(&[&BALANCE, &REVERSE, &DISBURSE]).to_json();
    assert_eq!(a, b);
    assert!(a.ends_with("}\n"));

    let m = manifest();
    let names: Vec<&str> = m.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["balance", "disburse", "reverse_disbursement"]);

    // Fixed field order: the five questions in order.
    let pos = |field: &str| a.find(&format!("\"{field}\":")).unwrap();
    assert!(pos("schema_version") < pos("digest"));
    assert!(pos("idempotency") < pos("retries"));
    assert!(pos("retries") < pos("dedup"));
    assert!(pos("dedup") < pos("failure_routing"));

    // It round-trips.
    assert_eq!(Manifest::from_json(&a).unwrap(), m);
    assert!(matches!(
        Manifest::from_json("[]"),
        Err(ManifestError::Parse { .. })
    ));
}

#[test]
fn the_digest_covers_the_content_and_changes_with_any_policy_value() {
    let m = manifest();
    assert!(
        m.digest.starts_with("sha256:") && m.digest.len() == 7 + 64,
        "{}",
        m.digest
    );
    assert_eq!(m.digest, m.compute_digest());
    assert_eq!(m.digest, manifest().digest);

    let changes: [fn(&mut ActionSpec); 6] = [
        |s| s.policy.retries = 6,
        |s| s.policy.max_elapsed = Duration::from_secs(180),
        |s| s.policy.dedup = Some(Duration::from_secs(48 * 3600)),
        |s| s.policy.on_conflict = Route::DeadLetter,
        |s| s.key = Some("disburse:{instr.loan_id}"),
        |s| s.explicit = &["key"],
    ];
    for change in changes {
        let changed = disburse_with(change);
        let other = Manifest::from_specs(&[&REVERSE, &changed, &BALANCE]);
        assert_ne!(other.digest, m.digest);
    }

    // The line of the attribute is not part of the manifest: moving code changes nothing.
    let moved = disburse_with(|s| s.line = 400);
    assert_eq!(Manifest::from_specs(&[&REVERSE, &moved, &BALANCE]), m);

    // Naming the store is part of the answer, so part of the digest.
    let stored = manifest().with_store("PostgreSQL (agents.actguard_log)");
    assert_ne!(stored.digest, m.digest);
    assert_eq!(stored.digest, stored.compute_digest());
    assert_eq!(m.log.store, "embedded SQLite (actguard.db)");
}

#[test]
fn each_action_answers_the_five_questions_with_readable_durations() {
    let m = manifest();
    let d = m.action("disburse").unwrap();
    assert_eq!(
        d.idempotency.key.as_deref(),
        Some("disburse:{instr.loan_id}:{instr.seq}")
    );
    assert_eq!(d.idempotency.record.as_deref(), Some("{instr.loan_id}"));
    assert_eq!(
        d.idempotency.downstream_key.as_deref(),
        Some("run.attempt().key()")
    );
    assert_eq!(d.idempotency.effect, Effect::Write);
    assert_eq!((d.retries.retries, d.retries.max_attempts), (5, 6));
    assert_eq!(d.retries.max_elapsed, "2m");
    assert_eq!(
        (
            d.retries.backoff.base.as_str(),
            d.retries.backoff.cap.as_str()
        ),
        ("100ms", "30s")
    );
    assert_eq!(d.dedup.loop_filter, LoopFilter::On);
    assert_eq!(d.dedup.off_because, None);
    assert_eq!(d.dedup.window.as_deref(), Some("24h"));
    assert_eq!(d.dedup.lease, "10s");
    assert_eq!(
        d.failure_routing.validation.queue.as_deref(),
        Some("loan-ops")
    );
    assert_eq!(
        d.failure_routing.conflict.queue.as_deref(),
        Some("credit-risk")
    );
    assert_eq!(d.failure_routing.security.route, Route::Halt);
    assert_eq!(
        d.failure_routing.transient.queue.as_deref(),
        Some("dead_letter")
    );
    assert_eq!(d.compensate.as_deref(), Some("reverse_disbursement"));
    assert_eq!(d.signature.payload[0].ty, "&Disbursement");
    assert_eq!(d.options["retries"], OptionSource::Explicit);
    assert_eq!(d.options["backoff"], OptionSource::Default);
    assert_eq!(d.options.len(), actguard::manifest::OPTIONS.len());

    let r = m.action("reverse_disbursement").unwrap();
    assert_eq!(r.dedup.window, None);
    assert_eq!(
        (r.dedup.loop_filter, r.dedup.off_because),
        (LoopFilter::Off, Some(FilterOff::DedupNone))
    );
    assert_eq!(r.retries.backoff.base, "250ms");
    assert_eq!(r.idempotency.record, None);
    assert_eq!(r.signature.deps[0].name, "ledger");

    let b = m.action("balance").unwrap();
    assert_eq!(b.idempotency.key, None);
    assert_eq!(b.idempotency.downstream_key, None);
    assert_eq!(
        (
            b.dedup.loop_filter,
            b.dedup.off_because,
            b.dedup.window.as_deref()
        ),
        (LoopFilter::Off, Some(FilterOff::Read), None)
    );

    let json = m.to_json();
    for text in [
        "\"max_elapsed\": \"2m\"",
        "\"window\": \"24h\"",
        "\"loop_filter\": \"on\"",
        "\"off_because\": \"dedup_none\"",
        "\"off_because\": \"read\"",
        "\"base\": \"100ms\"",
        "\"lease\": \"10s\"",
    ] {
        assert!(json.contains(text), "{text}");
    }
}

fn section<'a>(md: &'a str, action: &str) -> &'a str {
    let start = md.find(&format!("\n## {action}\n")).unwrap();
    let rest = &md[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 4);
    &rest[..end]
}

#[test]
fn the_markdown_sheet_answers_the_five_questions_per_action() {
    let md = manifest().to_markdown();
    assert!(md.starts_with("# The five questions"));
    assert!(md.contains(&manifest().digest));
    // The overview table, one row per action.
    for row in [
        "| balance | read | none | 3 within 5m | off (read) | none |",
        "| disburse | write | `disburse:{instr.loan_id}:{instr.seq}` | 5 within 2m | 24h | reverse_disbursement |",
        "| reverse_disbursement | destructive | `reverse:{receipt.id}` | none | off (`dedup = none`) | disburse |",
    ] {
        assert!(md.contains(row), "missing row {row:?}:\n{md}");
    }
    for action in ["balance", "disburse", "reverse_disbursement"] {
        let s = section(&md, action);
        for q in [
            "**1. Idempotency key.**",
            "**2. Retries.**",
            "**3. Deduplication.**",
            "**4. Failures.**",
            "**5. Action log.**",
        ] {
            assert!(s.contains(q), "{action} lacks {q}:\n{s}");
        }
        assert!(s.contains("embedded SQLite (actguard.db)"), "{s}");
    }

    let d = section(&md, "disburse");
    for text in [
        "`disburse:{instr.loan_id}:{instr.seq}`",
        "`run.attempt().key()`",
        "retries at most 5 times within 2 minutes (6 attempts in all)",
        "then puts the call in the dead-letter queue",
        "does not act on it again for 24 hours",
        "| validation | the input is wrong | the data owner's queue `loan-ops` |",
        "| conflict | the target's state does not allow the write | escalated to the domain expert's queue `credit-risk` |",
        "| security | forbidden, tampered or suspicious | halts the whole run and raises an alert |",
        "reversed by the action `reverse_disbursement`",
        "Left to defaults: `name`, `effect`, `backoff`, `jitter`, `cycle`, `lease`, `on_transient`.",
    ] {
        assert!(d.contains(text), "disburse lacks {text:?}:\n{d}");
    }

    let r = section(&md, "reverse_disbursement");
    for text in [
        "Effect: **destructive**; reversed by the action `disburse`",
        "are not retried: the call goes to the dead-letter queue",
        "The loop filter is off (`dedup = none`): this action may act on the same business object again",
        "No record is declared: each key is its own record",
        "Only calls with the same key run one at a time",
        "| conflict | the target's state does not allow the write | halts the whole run and raises an alert |",
    ] {
        assert!(
            r.contains(text),
            "reverse_disbursement lacks {text:?}:\n{r}"
        );
    }

    let b = section(&md, "balance");
    assert!(
        b.contains("only reads, so it needs no idempotency key"),
        "{b}"
    );
    assert!(
        b.contains("only reads, so the loop filter does not apply"),
        "{b}"
    );
    assert!(
        b.contains("retries at most 3 times within 5 minutes"),
        "{b}"
    );
}

/// The newcomer's action: a `dedup` window (the default), but no record.
fn send_invoice() -> ActionSpec {
    disburse_with(|s| {
        s.name = "send_invoice";
        s.key = Some("send:{invoice.id}:{invoice.version}");
        s.record = None;
        s.policy.dedup = Some(Duration::from_secs(24 * 3600));
        s.explicit = &["key", "retries", "max_elapsed"];
    })
}

#[test]
fn without_a_record_the_loop_filter_is_off_and_the_manifest_says_so() {
    let invoice = send_invoice();
    let m = Manifest::from_specs(&[&invoice]);
    let a = m.action("send_invoice").unwrap();
    assert_eq!(a.idempotency.record, None);
    assert_eq!(a.dedup.loop_filter, LoopFilter::Off);
    assert_eq!(a.dedup.off_because, Some(FilterOff::NoRecord));
    assert_eq!(
        a.dedup.window, None,
        "a window that never applies is not shown"
    );
    assert_eq!(a.dedup.lease, "10s");

    let json = m.to_json();
    assert!(json.contains("\"loop_filter\": \"off\""), "{json}");
    assert!(json.contains("\"off_because\": \"no_record\""), "{json}");
    let (schemas, index) = schema();
    let instance: serde_json::Value = serde_json::from_str(&json).unwrap();
    if let Err(e) = schemas.validate(&instance, index) {
        panic!("the manifest does not validate: {e:#}");
    }

    let md = m.to_markdown();
    assert!(
        md.contains("| send_invoice | write | `send:{invoice.id}:{invoice.version}` | 5 within 2m | off (no record) | reverse_disbursement |"),
        "{md}"
    );
    let s = section(&md, "send_invoice");
    for text in [
        "No record is declared: each key is its own record",
        "**The loop filter is off: no record is declared.**",
        "a repeat on the same business object under another key acts again",
        "calls on one business object under different keys may overlap",
    ] {
        assert!(s.contains(text), "send_invoice lacks {text:?}:\n{s}");
    }
    assert!(!s.contains("does not act on it again"), "{s}");

    // Declaring the record turns the filter on, and a review of the manifest diff says so.
    let fixed = ActionSpec {
        record: Some("{invoice.id}"),
        explicit: &["key", "record", "retries", "max_elapsed"],
        policy: invoice.policy.clone(),
        ..invoice
    };
    let diff = Manifest::diff(&json, &Manifest::from_specs(&[&fixed]).to_json()).unwrap();
    let lines: Vec<String> = diff.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "send_invoice: record none → {invoice.id}",
            "send_invoice: loop filter off → on",
            "send_invoice: dedup none → 24h",
            "send_invoice: record source default → explicit",
        ]
    );
}

#[test]
fn mcp_annotations_follow_effect_and_key() {
    let tools = manifest().mcp_annotations();
    let hints = |name: &str| tools.iter().find(|t| t.name == name).unwrap().annotations;

    let b = hints("balance");
    assert!(b.read_only_hint && !b.destructive_hint && !b.idempotent_hint && b.open_world_hint);
    let d = hints("disburse");
    // A write may overwrite: it does not claim to be additive only.
    assert!(!d.read_only_hint && d.destructive_hint && d.idempotent_hint && d.open_world_hint);
    let r = hints("reverse_disbursement");
    assert!(!r.read_only_hint && r.destructive_hint && r.idempotent_hint);

    let json = serde_json::to_value(&tools).unwrap();
    assert_eq!(
        json[1],
        serde_json::json!({
            "name": "disburse",
            "annotations": {
                "readOnlyHint": false,
                "destructiveHint": true,
                "idempotentHint": true,
                "openWorldHint": true
            }
        })
    );
}

#[test]
fn check_file_passes_when_the_committed_manifest_matches() {
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.manifest.json");
    std::fs::write(&path, manifest().to_json()).unwrap();
    manifest().check_file(&path).unwrap();

    let md = dir.path().join("five-questions.md");
    std::fs::write(&md, manifest().to_markdown()).unwrap();
    manifest().check_file(&md).unwrap();
}

#[test]
fn check_file_fails_with_the_changes_and_a_diff_when_policy_changed() {
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.manifest.json");
    let committed = manifest().to_json();
    std::fs::write(&path, &committed).unwrap();

    let changed = disburse_with(|s| s.policy.retries = 6);
    let err = Manifest::from_specs(&[&REVERSE, &changed, &BALANCE])
        .check_file(&path)
        .unwrap_err();
    assert!(matches!(err, ManifestError::Outdated { .. }), "{err:?}");
    let text = err.to_string();
    for part in [
        "is out of date",
        "disburse: retries 5 → 6",
        "-         \"retries\": 5,",
        "+         \"retries\": 6,",
        "set ACTGUARD_UPDATE_MANIFEST=1 to rewrite it",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
    assert!(text.lines().count() < 40, "the diff is short:\n{text}");
    // The committed file is left alone.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), committed);

    let missing = dir.path().join("absent.json");
    let err = manifest().check_file(&missing).unwrap_err();
    assert!(matches!(err, ManifestError::Missing { .. }));
    assert!(err.to_string().contains("ACTGUARD_UPDATE_MANIFEST=1"));
}

#[test]
fn check_file_rewrites_the_file_when_asked_to() {
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifests/actguard.manifest.json");
    let changed = disburse_with(|s| s.policy.retries = 6);
    let new = Manifest::from_specs(&[&REVERSE, &changed, &BALANCE]);

    // SAFETY: every test of this binary that reads the environment holds `ENV`.
    unsafe { std::env::set_var(UPDATE_ENV, "1") };
    let missing = new.check_file(&path);
    std::fs::write(&path, manifest().to_json()).unwrap();
    let outdated = new.check_file(&path);
    // SAFETY: as above.
    unsafe { std::env::remove_var(UPDATE_ENV) };

    missing.unwrap();
    outdated.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), new.to_json());
    new.check_file(&path).unwrap();
    manifest().check_file(&path).unwrap_err();
}

#[test]
fn diff_names_each_changed_value_per_action() {
    let old = manifest().to_json();
    let changed = disburse_with(|s| {
        s.policy.retries = 6;
        s.policy.dedup = Some(Duration::from_secs(48 * 3600));
        s.policy.owner = Some("loan-review");
        s.policy.cycle = Some(Duration::from_secs(3600));
        s.explicit = &[
            "key",
            "record",
            "retries",
            "max_elapsed",
            "dedup",
            "cycle",
            "on_validation",
            "owner",
            "on_conflict",
            "expert",
            "on_security",
            "compensate",
        ];
    });
    let refund = ActionSpec {
        name: "refund",
        policy: BALANCE.policy.clone(),
        ..BALANCE
    };
    let new = Manifest::from_specs(&[&REVERSE, &changed, &refund])
        .with_store("PostgreSQL")
        .to_json();

    let diff = Manifest::diff(&old, &new).unwrap();
    let lines: Vec<String> = diff.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "log store embedded SQLite (actguard.db) → PostgreSQL",
            "removed action `balance`",
            "added action `refund`",
            "disburse: retries 5 → 6",
            "disburse: dedup 24h → 2d",
            "disburse: cycle none → 1h",
            "disburse: owner loan-ops → loan-review",
            "disburse: cycle source default → explicit",
        ]
    );
    assert!(matches!(
        &diff.changes[3],
        Change::ValueChanged { action: Some(a), field, old, new }
            if a == "disburse" && field == "retries" && old == "5" && new == "6"
    ));
    assert_eq!(diff.to_string(), lines.join("\n"));

    assert!(Manifest::diff(&old, &old).unwrap().is_empty());
    assert!(matches!(
        Manifest::diff("{", &old),
        Err(ManifestError::Parse { which: "old", .. })
    ));
}

#[test]
fn the_registry_lists_submitted_actions_sorted_and_audits_them() {
    let names: Vec<&str> = registry().iter().map(|s| s.name).collect();
    assert_eq!(names, ["balance", "disburse", "reverse_disbursement"]);
    assert_eq!(Manifest::from_registry(), manifest());

    let report = audit_registry(&AuditSettings::default());
    assert!(report.is_ok(), "{report}");

    // Strict: reverse_disbursement declares no record and leaves on_security to its default (it is
    // never retried, so it needs no max_elapsed).
    let strict = audit_registry(&AuditSettings::strict());
    let failing: Vec<(&str, &str)> = strict
        .errors()
        .map(|f| (f.action.as_str(), f.rule.as_str()))
        .collect();
    assert_eq!(
        failing,
        [
            ("reverse_disbursement", "no_record"),
            ("reverse_disbursement", "strict_implicit_failure_routing")
        ]
    );
    let err = strict.into_result().unwrap_err();
    assert!(err.to_string().contains("src/actions.rs:40"), "{err}");
}
