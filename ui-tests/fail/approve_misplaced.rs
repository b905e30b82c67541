//! Approval on a read, and an approval expiry without an approval.

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

#[agent_action(effect = read, approve = "treasury")]
async fn balance(run: &Run, account: &str) -> Result<u64, LedgerError> {
    let _ = (run, account);
    Ok(1)
}

#[agent_action(key = "post:{invoice.id}", approval_expires = "1h")]
async fn post_invoice(run: &Run, invoice: &Invoice) -> Result<u64, LedgerError> {
    let _ = (run, invoice);
    Ok(1)
}

fn main() {}
