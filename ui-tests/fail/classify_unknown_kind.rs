//! A classification that does not exist.

use actguard::Classify;

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(transient)]
    Timeout,
    #[classify(fatal)]
    Rejected(String),
}

fn main() {}
