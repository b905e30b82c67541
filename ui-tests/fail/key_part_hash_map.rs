//! A hash map in a key: its order is random.

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

#[agent_action(key = "tag:{tags}")]
async fn tag(
    run: &Run,
    tags: std::collections::HashMap<String, String>,
) -> Result<u64, LedgerError> {
    let _ = (run, &tags);
    Ok(1)
}

fn main() {}
