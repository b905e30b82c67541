//! A variant without a classification.

use actguard::Classify;

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(transient)]
    Timeout,
    Rejected(String),
}

fn main() {}
