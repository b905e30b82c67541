//! A tool on a method: a tool is called by name, with no receiver to call it on.

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

pub struct Ledger;

impl Ledger {
    /// Posts an invoice.
    #[agent_action(key = "post:{invoice.id}", tool = "Posts an invoice")]
    async fn post_invoice(&self, run: &Run, invoice: &Invoice) -> Result<u64, LedgerError> {
        let _ = (run, invoice);
        Ok(1)
    }
}

fn main() {}
