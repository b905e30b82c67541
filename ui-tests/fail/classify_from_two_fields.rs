//! Delegation needs exactly one field.

use actguard::Classify;

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(from)]
    Io(std::io::Error, String),
}

fn main() {}
