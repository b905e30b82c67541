//! A key template reading a field of a parameter whose type is a `Redacted` behind a type alias (and
//! a reference): caught by the type check, not by the name of the type.

use actguard::{Classify, Redacted, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Pin {
    pub digits: String,
    pub account: u64,
}

pub type SecretPin = Redacted<Pin>;

#[derive(Debug, Classify)]
pub enum BankError {
    #[classify(transient)]
    Timeout,
}

impl std::fmt::Display for BankError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timeout")
    }
}

#[agent_action(key = "unlock:{pin.account}:{pin.digits}")]
async fn unlock(run: &Run, pin: &SecretPin) -> Result<u64, BankError> {
    let _ = (run, pin);
    Ok(1)
}

fn main() {}
