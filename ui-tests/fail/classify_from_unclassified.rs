//! Delegation to a type that is not Classify.

use actguard::Classify;

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(from)]
    Io(std::io::Error),
}

fn main() {}
