//! A key template reading a field of a `Redacted` parameter: the card number would be stored, logged
//! and shown in clear in the key.

use actguard::{Classify, Redacted, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Card {
    pub pan: String,
    pub expiry: String,
}

#[derive(Debug, Classify)]
pub enum PaymentError {
    #[classify(transient)]
    Timeout,
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timeout")
    }
}

#[agent_action(key = "pay:{order_id}:{card.pan}")]
async fn pay(run: &Run, order_id: u64, card: &Redacted<Card>) -> Result<u64, PaymentError> {
    let _ = (run, order_id, card);
    Ok(1)
}

fn main() {}
