//! Retry-After on a failure that is never retried.

use actguard::Classify;

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(validation, retry_after = 0)]
    Rejected(std::time::Duration),
}

fn main() {}
