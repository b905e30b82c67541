//! Retry-After from a field that is not a duration.

use actguard::Classify;

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(transient, retry_after = 0)]
    Throttled(u64),
}

fn main() {}
