//! The expansion of `#[agent_action]` runs the user's body, returns its value, and registers the spec.

use actguard::{ActionError, Classify, Effect, Jitter, Route, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Disbursement {
    loan_id: String,
    seq: u32,
    amount_cents: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Receipt {
    key: String,
    record: String,
    cents: u64,
}

#[derive(Debug, Classify, thiserror::Error)]
enum LedgerError {
    #[error("timeout")]
    #[classify(transient)]
    Timeout,
    #[error("bad account")]
    #[classify(validation)]
    BadAccount,
}

struct Ledger {
    fee_cents: u64,
}

#[agent_action(
    key = "disburse:{instr.loan_id}:{instr.seq}",
    record = "{instr.loan_id}",
    retries = 5,
    max_elapsed = "2m",
    dedup = "24h",
    on_validation = route_owner,
    owner = "loan-ops"
)]
async fn disburse(
    run: &Run,
    instr: &Disbursement,
    #[dep] ledger: &Ledger,
) -> Result<Receipt, LedgerError> {
    if instr.amount_cents == 0 {
        return Err(LedgerError::BadAccount);
    }
    Ok(Receipt {
        key: run.attempt().key().to_owned(),
        record: run.attempt().record().to_owned(),
        cents: instr.amount_cents + ledger.fee_cents,
    })
}

#[agent_action(
    effect = destructive,
    key = "claw-back:{instr.loan_id}:{instr.seq}",
    compensate = disburse,
    backoff = "1s..1m",
    jitter = none,
    dedup = "none",
    cycle = "1h",
    lease = "10s",
    on_transient = dead_letter,
    on_conflict = halt
)]
async fn claw_back(run: &Run, instr: &Disbursement) -> Result<(), LedgerError> {
    let _ = (run, instr);
    Ok(())
}

#[agent_action(effect = read)]
async fn balance(run: &Run, loan_id: String) -> Result<u64, LedgerError> {
    let _ = run.attempt().number();
    Ok(loan_id.len() as u64)
}

impl Ledger {
    #[agent_action(key = "fee:{self.fee_cents}:{loan_id}", name = "set_fee")]
    async fn apply_fee(&self, run: &Run, loan_id: &str) -> Result<u64, LedgerError> {
        let _ = run;
        Ok(self.fee_cents)
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn the_body_runs_and_its_value_is_returned() {
    let run = actguard::Agent::in_memory().unwrap().start_run();
    let ledger = Ledger { fee_cents: 7 };
    let instr = Disbursement {
        loan_id: "L-17".into(),
        seq: 3,
        amount_cents: 100,
    };
    let receipt = block_on(disburse(&run, &instr, &ledger)).unwrap();
    assert_eq!(
        receipt,
        Receipt {
            key: "disburse:L-17:3".into(),
            record: "L-17".into(),
            cents: 107,
        }
    );
    assert_eq!(block_on(balance(&run, "abc".into())).unwrap(), 3);
    assert_eq!(block_on(ledger.apply_fee(&run, "L-1")).unwrap(), 7);
}

#[test]
fn the_error_type_is_wrapped_in_action_error() {
    let run = actguard::Agent::in_memory().unwrap().start_run();
    let instr = Disbursement {
        loan_id: "L-18".into(),
        seq: 1,
        amount_cents: 0,
    };
    let result: Result<Receipt, ActionError<LedgerError>> =
        block_on(disburse(&run, &instr, &Ledger { fee_cents: 0 }));
    assert!(result.is_err());
    assert_eq!(
        LedgerError::Timeout.classify(),
        actguard::FailureKind::Transient
    );
}

fn spec(name: &str) -> &'static actguard::ActionSpec {
    actguard::registry()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("`{name}` is not registered"))
}

#[test]
fn the_registry_holds_every_option_written_and_defaults_for_the_rest() {
    let s = spec("disburse");
    assert_eq!(s.fn_name, "disburse");
    assert_eq!(s.effect, Effect::Write);
    assert_eq!(s.key, Some("disburse:{instr.loan_id}:{instr.seq}"));
    assert_eq!(s.record, Some("{instr.loan_id}"));
    assert_eq!(
        s.explicit,
        &[
            "key",
            "record",
            "retries",
            "max_elapsed",
            "dedup",
            "on_validation",
            "owner"
        ]
    );
    assert!(s.is_explicit("retries") && !s.is_explicit("jitter"));
    assert_eq!(s.policy.retries, 5);
    assert_eq!(s.policy.max_elapsed.as_secs(), 120);
    assert_eq!(s.policy.jitter, Jitter::Full);
    assert_eq!(s.policy.on_validation, Route::RouteOwner);
    assert_eq!(s.policy.owner, Some("loan-ops"));
    assert_eq!(s.policy.lease, actguard::Policy::DEFAULT.lease);
    assert_eq!(s.payload.len(), 1);
    assert_eq!(
        (s.payload[0].name, s.payload[0].ty),
        ("instr", "&Disbursement")
    );
    assert_eq!((s.deps[0].name, s.deps[0].ty), ("ledger", "&Ledger"));
    assert_eq!(s.result_type, "Receipt");
    assert_eq!(s.error_type, "LedgerError");
    assert!(s.file.ends_with("expansion.rs"));
    assert!(s.module_path.ends_with("expansion"));

    let read = spec("balance");
    assert_eq!(read.effect, Effect::Read);
    assert_eq!(read.key, None);
    assert!(read.explicit == ["effect"]);

    let destructive = spec("claw_back");
    assert_eq!(destructive.effect, Effect::Destructive);
    assert_eq!(destructive.compensate, Some("disburse"));
    assert_eq!(destructive.record, None);
    assert_eq!(
        destructive.record_template(),
        Some("claw-back:{instr.loan_id}:{instr.seq}")
    );
    let p = &destructive.policy;
    assert_eq!((p.backoff_base.as_secs(), p.backoff_cap.as_secs()), (1, 60));
    assert_eq!(p.jitter, Jitter::None);
    assert_eq!(p.dedup, None);
    assert_eq!(p.cycle.map(|c| c.as_secs()), Some(3600));
    assert_eq!(p.lease.as_secs(), 10);
    assert_eq!(p.on_transient, Route::DeadLetter);
    assert_eq!(p.on_conflict, Route::Halt);
    assert_eq!(p.on_security, Route::Halt);
    assert_eq!(p.retries, actguard::Policy::DEFAULT.retries);

    let method = spec("set_fee");
    assert_eq!(method.fn_name, "apply_fee");
    assert_eq!(method.payload[0].ty, "&str");
}

#[derive(Debug, Classify)]
enum Transport {
    #[classify(transient, retry_after = wait)]
    Throttled { wait: Option<std::time::Duration> },
    #[classify(security)]
    Forbidden,
}

#[derive(Debug, Classify)]
enum GatewayError {
    #[classify(from)]
    Transport(Transport),
    #[classify(conflict)]
    Stale,
}

#[test]
fn derived_classify_delegates_and_reads_retry_after() {
    use actguard::FailureKind;
    use std::time::Duration;

    let throttled = GatewayError::Transport(Transport::Throttled {
        wait: Some(Duration::from_secs(7)),
    });
    assert_eq!(throttled.classify(), FailureKind::Transient);
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
    let forbidden = GatewayError::Transport(Transport::Forbidden);
    assert_eq!(forbidden.classify(), FailureKind::Security);
    assert_eq!(forbidden.retry_after(), None);
    assert_eq!(GatewayError::Stale.classify(), FailureKind::Conflict);
    assert_eq!(GatewayError::Stale.retry_after(), None);
}
