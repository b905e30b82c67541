//! `Redacted` values in the payload, next to the identifiers the key and record are built from:
//! by value, by reference, nested in a struct, boxed; the template reads only non-secret fields.

#![deny(warnings)]

use std::sync::Arc;

use actguard::{Classify, Redacted, Run, agent_action};
use serde::{Deserialize, Serialize};

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

#[derive(Serialize, Deserialize)]
pub struct Card {
    pub token: String,
    pub pan: Redacted<String>,
}

#[derive(Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub card: Card,
    pub notes: Box<Redacted<String>>,
    pub customer: Arc<Customer>,
}

#[derive(Serialize, Deserialize)]
pub struct Customer {
    pub id: u64,
}

#[agent_action(key = "pay:{order.id}:{order.card.token}", record = "customer:{order.customer.id}")]
async fn pay(run: &Run, order: &Order, cvc: Redacted<u16>) -> Result<u64, PaymentError> {
    let _ = (run, order.card.pan.len(), order.notes.len(), *cvc);
    Ok(1)
}

fn main() {
    let _ = pay;
}
