//! A variant classified twice.

use actguard::Classify;

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(transient, conflict)]
    Timeout,
}

fn main() {}
