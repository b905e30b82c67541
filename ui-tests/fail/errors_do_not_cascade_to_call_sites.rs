//! An attribute with an error: the one error is reported, and call sites that use the guarded
//! signature (`Result<T, ActionError<E>>`) add none.

use actguard::{ActionError, Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Disbursement {
    pub loan_id: String,
    pub seq: u32,
}

#[derive(Debug, Classify, thiserror::Error)]
pub enum LedgerError {
    #[error("timeout")]
    #[classify(transient)]
    Timeout,
}

#[agent_action(key = "disburse:{instr.loan_id}:{instr.seq}", retries = 500)]
async fn disburse(run: &Run, instr: &Disbursement) -> Result<u64, LedgerError> {
    let _ = (run, instr);
    Ok(1)
}

async fn caller(run: &Run, instr: &Disbursement) -> Result<u64, ActionError<LedgerError>> {
    let receipt = disburse(run, instr).await?;
    match disburse(run, instr).await {
        Err(ActionError::DeadLettered { attempts, .. }) => Ok(u64::from(attempts)),
        other => other.map(|r| r + receipt),
    }
}

fn main() {
    let _ = caller;
}
