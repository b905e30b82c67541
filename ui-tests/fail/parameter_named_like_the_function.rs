//! A payload parameter named like its function: the generated code calls the function by name.

use actguard::{Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Refund {
    pub invoice_id: String,
}

#[derive(Debug, Classify, thiserror::Error)]
pub enum LedgerError {
    #[error("timeout")]
    #[classify(transient)]
    Timeout,
}

#[agent_action(key = "refund:{refund.invoice_id}")]
async fn refund(run: &Run, refund: &Refund) -> Result<u64, LedgerError> {
    let _ = (run, refund);
    Ok(1)
}

fn main() {}
