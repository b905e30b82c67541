//! A record template reading through a `Redacted` field nested in a payload struct: the attribute
//! cannot see it, the type check of every value the template reads on its way does.

use actguard::{Classify, Redacted, Run, agent_action};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Card {
    pub pan: String,
}

#[derive(Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub card: Redacted<Card>,
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

#[agent_action(key = "pay:{order.id}", record = "card:{order.card.pan}")]
async fn pay(run: &Run, order: &Order) -> Result<u64, PaymentError> {
    let _ = (run, order);
    Ok(1)
}

fn main() {}
