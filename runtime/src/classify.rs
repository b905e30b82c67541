//! Failure classification: deterministic code, not a model, decides what a failure is.

use std::time::Duration;

pub use crate::policy::FailureKind;

/// Says what kind of failure an error is, and whether the server asked for a delay.
///
/// Derive it with `#[derive(Classify)]`: every variant carries `#[classify(transient)]`,
/// `#[classify(validation)]`, `#[classify(conflict)]`, `#[classify(security)]` or `#[classify(from)]`
/// (delegate to the variant's single field); `#[classify(transient, retry_after = field)]` feeds a
/// server's Retry-After (a field of type `Duration` or `Option<Duration>`) into the backoff.
///
/// ```
/// use actguard::{Classify, FailureKind};
///
/// #[derive(Debug, Classify)]
/// enum LedgerError {
///     #[classify(transient)]
///     Timeout,
///     #[classify(validation)]
///     BadAccount(String),
///     #[classify(security)]
///     Forbidden,
/// }
///
/// assert_eq!(LedgerError::Timeout.classify(), FailureKind::Transient);
/// assert_eq!(LedgerError::Forbidden.classify(), FailureKind::Security);
/// ```
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` of an #[agent_action] must implement `Classify`",
    label = "every failure must be classified as transient, validation, conflict or security",
    note = "add `#[derive(actguard::Classify)]` to the error enum and mark each variant with `#[classify(...)]`"
)]
pub trait Classify {
    /// The kind of this failure.
    fn classify(&self) -> FailureKind;

    /// The delay the server asked for (Retry-After), if any; honoured for transient failures, capped by
    /// the action's backoff cap and its `max_elapsed`.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl<T: Classify + ?Sized> Classify for Box<T> {
    fn classify(&self) -> FailureKind {
        (**self).classify()
    }

    fn retry_after(&self) -> Option<Duration> {
        (**self).retry_after()
    }
}

/// Converts what a `retry_after = field` names into an optional delay; used by `#[derive(Classify)]`.
#[doc(hidden)]
pub trait RetryAfterValue {
    fn retry_after_value(&self) -> Option<Duration>;
}

impl RetryAfterValue for Duration {
    fn retry_after_value(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl RetryAfterValue for Option<Duration> {
    fn retry_after_value(&self) -> Option<Duration> {
        *self
    }
}

impl<T: RetryAfterValue + ?Sized> RetryAfterValue for &T {
    fn retry_after_value(&self) -> Option<Duration> {
        (**self).retry_after_value()
    }
}
