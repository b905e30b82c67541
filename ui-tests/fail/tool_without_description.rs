//! A tool with neither a doc comment nor a description: the model would not know what it does.

use actguard::{Classify, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Invoice {
    pub id: String,
    pub cents: i64,
}

#[derive(Debug, Classify, thiserror::Error)]
pub enum LedgerError {
    #[error("timeout")]
    #[classify(transient)]
    Timeout,
}

#[agent_action(key = "post:{invoice.id}", tool)]
async fn post_invoice(run: &Run, invoice: &Invoice) -> Result<u64, LedgerError> {
    let _ = (run, invoice);
    Ok(1)
}

fn main() {}
