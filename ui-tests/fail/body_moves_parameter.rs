//! A body that consumes a parameter: it may run once per attempt.

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

#[agent_action(key = "note:{text}")]
async fn note(run: &Run, text: String) -> Result<String, LedgerError> {
    let _ = run;
    Ok(text)
}

fn main() {}
