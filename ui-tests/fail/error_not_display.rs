//! An error type without a message for the log.

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

#[agent_action(key = "disburse:{instr.loan_id}")]
async fn disburse(run: &Run, instr: &Disbursement) -> Result<u64, Silent> {
    let _ = (run, instr);
    Ok(1)
}

#[derive(Debug, Classify)]
#[classify(validation)]
pub struct Silent;

fn main() {}
