//! Two parts of a key template with no text between them: `("ab", "c")` and `("a", "bc")` would
//! render the same key.

use actguard::{Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Disbursement {
    pub loan_id: String,
    pub seq: u32,
}

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(transient)]
    Timeout,
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timeout")
    }
}

#[agent_action(key = "disburse:{instr.loan_id}{instr.seq}")]
async fn disburse(run: &Run, instr: &Disbursement) -> Result<u64, LedgerError> {
    let _ = (run, instr);
    Ok(1)
}

#[agent_action(key = "refund:{instr.loan_id}:{instr.seq}", record = "{instr.loan_id}%{instr.seq}")]
async fn refund(run: &Run, instr: &Disbursement) -> Result<u64, LedgerError> {
    let _ = (run, instr);
    Ok(1)
}

fn main() {}
