//! A run parameter that is not a plain name: the body could not see the attempt through it.

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
async fn close(_: &Run, loan_id: u64) -> Result<(), LedgerError> {
    let _ = loan_id;
    Ok(())
}

fn main() {}
