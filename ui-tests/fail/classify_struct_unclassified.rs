//! A struct without a classification.

use actguard::Classify;

#[derive(Debug, Classify)]
pub struct Rejected {
    pub reason: String,
}

fn main() {}
