//! Errors quote the options as the user wrote them: `"24h"`, not a normalized `"1d"`.

use actguard::{Classify, Run, agent_action};

#[derive(Debug, Classify, thiserror::Error)]
pub enum LedgerError {
    #[error("timeout")]
    #[classify(transient)]
    Timeout,
}

#[agent_action(key = "remind:{id}", record = "{id}", dedup = "24h", cycle = "24h")]
async fn remind(run: &Run, id: u32) -> Result<u64, LedgerError> {
    let _ = (run, id);
    Ok(1)
}

fn main() {}
