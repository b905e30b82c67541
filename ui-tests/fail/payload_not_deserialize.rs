//! A payload parameter that serializes but cannot be deserialized: replay and revert could not call the
//! action again from its stored payload.

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

#[agent_action(key = "notify:{note.id}")]
async fn notify(run: &Run, note: &Note) -> Result<u64, LedgerError> {
    let _ = (run, note);
    Ok(1)
}

#[derive(Serialize)]
pub struct Note {
    pub id: u64,
}

fn main() {}
