//! Retry-After from a field that does not exist.

use actguard::Classify;

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(transient, retry_after = delay)]
    Throttled { wait: std::time::Duration },
}

fn main() {}
