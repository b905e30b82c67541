//! A key template naming a field with a typo: the hint names the field, not a whole template.

use actguard::{Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Disbursement {
    pub loan_id: String,
    pub seq: u32,
    pub rate: f64,
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

#[agent_action(key = "disburse:{instr.loan_id}:{instr.sek}")]
async fn disburse(run: &Run, instr: &Disbursement) -> Result<u64, LedgerError> {
    let _ = (run, instr);
    Ok(1)
}

fn main() {}
