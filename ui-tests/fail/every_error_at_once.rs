//! Several mistakes in one attribute are all reported, and nothing else: the function is still
//! emitted (`main` refers to it) and its `#[dep]` marker does not cause an error of its own.

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

#[agent_action(retries = 500, max_elapsed = "soon", jitter = wild, on_security = retry, colour = "red")]
async fn disburse(
    run: &Run,
    instr: &Disbursement,
    #[dep] client: &Client,
) -> Result<u64, LedgerError> {
    let _ = (run, instr, client);
    Ok(1)
}

pub struct Client;

fn main() {
    let _ = disburse;
}
