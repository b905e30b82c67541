//! #[derive(Classify)]: every kind, delegation with `from`, Retry-After by field name and index, a struct.

#![deny(warnings)]

use std::time::Duration;

use actguard::{Classify, FailureKind};

#[derive(Debug, Classify)]
pub enum Transport {
    #[classify(transient, retry_after = retry_after)]
    Throttled { retry_after: Option<Duration> },
    #[classify(transient, retry_after = 1)]
    Busy(u16, Duration),
    #[classify(security)]
    Forbidden,
}

#[derive(Debug, Classify)]
pub enum LedgerError {
    #[classify(from)]
    Transport(Transport),
    #[classify(validation)]
    BadAccount { account: String },
    #[classify(conflict)]
    Closed(u64),
    #[classify(from)]
    Boxed { inner: Box<Transport> },
}

#[derive(Debug, Classify)]
#[classify(conflict)]
pub struct StaleVersion {
    pub expected: u64,
}

#[derive(Debug, Classify)]
#[classify(transient, retry_after = 0)]
pub struct SlowDown(pub Duration);

#[derive(Debug, Classify)]
pub enum Wrapper<E> {
    #[classify(from)]
    Inner(E),
}

#[derive(Debug, Classify)]
pub enum Never {}

mod facade {
    pub use actguard as guard;
}

#[derive(Debug, Classify)]
#[classify(crate = "crate::facade::guard")]
pub enum ThroughAReexport {
    #[classify(from)]
    Transport(Transport),
}

#[derive(Debug, Classify)]
#[classify(crate = "crate::facade::guard", validation)]
pub struct Rejected;

fn main() {
    assert_eq!(
        ThroughAReexport::Transport(Transport::Forbidden).classify(),
        FailureKind::Security
    );
    assert_eq!(Rejected.classify(), FailureKind::Validation);
    let e = LedgerError::Transport(Transport::Busy(503, Duration::from_secs(2)));
    assert_eq!(e.classify(), FailureKind::Transient);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(
        Transport::Throttled { retry_after: None }.retry_after(),
        None
    );
    assert_eq!(LedgerError::Closed(1).classify(), FailureKind::Conflict);
    assert_eq!(
        StaleVersion { expected: 1 }.classify(),
        FailureKind::Conflict
    );
    assert_eq!(
        SlowDown(Duration::from_millis(5)).retry_after(),
        Some(Duration::from_millis(5))
    );
    assert_eq!(
        Wrapper::Inner(Transport::Forbidden).classify(),
        FailureKind::Security
    );
    let _ = LedgerError::BadAccount {
        account: String::new(),
    };
    let _ = LedgerError::Boxed {
        inner: Box::new(Transport::Forbidden),
    };
}
