//! Every option of #[agent_action], each at least once.

#![deny(warnings)]

use actguard::{Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Disbursement {
    pub loan_id: String,
    pub seq: u32,
}

#[derive(Serialize, Deserialize)]
pub struct Receipt {
    pub id: u64,
}

#[derive(Debug, Classify, thiserror::Error)]
pub enum LedgerError {
    #[error("timeout")]
    #[classify(transient)]
    Timeout,
    #[error("rejected")]
    #[classify(validation)]
    Rejected,
}

#[agent_action(
    name = "loan.disburse",
    effect = write,
    key = "disburse:{instr.loan_id}:{instr.seq}",
    record = "{instr.loan_id}",
    retries = 5,
    max_elapsed = "2m",
    backoff = "250ms..10s",
    jitter = decorrelated,
    dedup = "7d",
    cycle = "24h",
    lease = "30s",
    on_transient = dead_letter,
    on_validation = route_owner,
    on_conflict = escalate,
    on_security = halt,
    owner = "loan-ops",
    expert = "credit-risk",
    compensate = reverse_disbursement,
)]
pub async fn disburse(run: &Run, instr: &Disbursement) -> Result<Receipt, LedgerError> {
    let _ = run.attempt().key();
    Ok(Receipt { id: 1 })
}

#[agent_action(key = "reverse:{instr.loan_id}:{instr.seq}", jitter = none, dedup = "none")]
pub async fn reverse_disbursement(run: &Run, instr: &Disbursement) -> Result<Receipt, LedgerError> {
    let _ = run;
    Ok(Receipt { id: 2 })
}

#[agent_action(
    effect = destructive,
    key = "close:{loan_id}",
    compensate = reopen,
    jitter = equal,
    on_transient = retry,
    on_validation = dead_letter,
    on_conflict = halt,
    on_security = dead_letter,
)]
pub async fn close(run: &Run, loan_id: u64) -> Result<(), LedgerError> {
    let _ = (run, loan_id);
    Ok(())
}

#[agent_action(key = "reopen:{loan_id}", jitter = full, dedup = none)]
pub async fn reopen(run: &Run, loan_id: u64) -> Result<(), LedgerError> {
    let _ = (run, loan_id);
    Ok(())
}

#[agent_action(
    effect = destructive,
    key = "write-off:{loan_id}",
    compensate = "loan.reinstate"
)]
pub async fn write_off(run: &Run, loan_id: u64) -> Result<(), LedgerError> {
    let _ = (run, loan_id);
    Ok(())
}

mod facade {
    pub use actguard as guard;
}

#[agent_action(crate = "crate::facade::guard", key = "note:{id}")]
pub async fn through_a_reexport(run: &Run, id: u64) -> Result<u64, LedgerError> {
    let _ = run;
    Ok(id)
}

fn main() {}
