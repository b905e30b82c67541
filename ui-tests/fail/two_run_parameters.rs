//! Two run handles: which run would the action belong to?

use actguard::{Classify, Run, agent_action};

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

#[agent_action(key = "close:{loan_id}")]
async fn close(run: &Run, other: &Run, loan_id: u64) -> Result<(), LedgerError> {
    let _ = (run, other, loan_id);
    Ok(())
}

fn main() {}
