//! Failure classification: deterministic code, not a model, decides what a failure is.
//!
//! [`Classify`] is derived for the application's own error types. For the errors of the crates an
//! agent's writes go through, actguard implements it, behind one feature each (all off by default):
//!
//! | feature | implements `Classify` for |
//! |---|---|
//! | `http` | `http::StatusCode`, `http::Response` (status and `Retry-After`), `HttpFailure` |
//! | `reqwest` | `reqwest::Error`, and `HttpFailure` from a `reqwest::Response` |
//! | `io` | `std::io::Error` |
//! | `tonic` | `tonic::Status` (AIP-194, with the server's `RetryInfo`) |
//! | `tokio-postgres` | `tokio_postgres::Error` (by SQLSTATE) |
//! | `sqlx` | `sqlx::Error` (by SQLSTATE) |
//!
//! The full table of each, and why, is in `docs/classifiers.md`. Whatever a classifier does not
//! recognize **fails closed**: it is classified [`FailureKind::Validation`] (not retried, routed to
//! the data owner), and the failure's message says it was not recognized ([`Classify::note`]).
//! `#[classify(from)]` on a variant holding any of these types delegates to them. Their
//! implementations are `#[diagnostic::do_not_recommend]`: a compiler error about an application's own
//! unclassified type does not list them.

use std::borrow::Cow;
use std::time::Duration;

#[cfg(feature = "http")]
mod http;
#[cfg(any(
    feature = "io",
    feature = "reqwest",
    feature = "tokio-postgres",
    feature = "sqlx"
))]
mod io;
#[cfg(feature = "reqwest")]
mod reqwest;
#[cfg(any(feature = "tokio-postgres", feature = "sqlx"))]
mod sqlstate;
#[cfg(feature = "tonic")]
mod tonic;

#[cfg(feature = "http")]
pub use self::http::{HttpFailure, classify_status, parse_retry_after};
#[cfg(any(
    feature = "io",
    feature = "reqwest",
    feature = "tokio-postgres",
    feature = "sqlx"
))]
pub use self::io::classify_io_kind;
#[cfg(any(feature = "tokio-postgres", feature = "sqlx"))]
pub use self::sqlstate::classify_sqlstate;

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
    note = "add `#[derive(actguard::Classify)]` to the error enum and mark each variant with `#[classify(...)]`",
    note = "for the errors of reqwest, http, std::io, tonic, tokio-postgres and sqlx, enable actguard's feature `reqwest`, `http`, `io`, `tonic`, `tokio-postgres` or `sqlx`"
)]
pub trait Classify {
    /// The kind of this failure.
    fn classify(&self) -> FailureKind;

    /// The delay the server asked for (Retry-After), if any. A transient failure waits exactly that
    /// long before the next attempt (no jitter, whatever the backoff cap); when the server asks for
    /// longer than what is left of the action's `max_elapsed`, the call is dead-lettered at once, with
    /// a message that says what the server asked for.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// What the classification adds to this failure's logged and queued message, if anything: that
    /// the error was not recognized (and so failed closed as a validation failure), or that a
    /// request may have reached the server before it failed (its retry carries the same key).
    fn note(&self) -> Option<Cow<'static, str>> {
        None
    }
}

/// The [`Classify::note`] of an error a classifier did not recognize: it fails closed, as a
/// validation failure (not retried; routed to the data owner).
#[cfg_attr(
    not(any(
        feature = "http",
        feature = "io",
        feature = "reqwest",
        feature = "tonic",
        feature = "tokio-postgres",
        feature = "sqlx"
    )),
    allow(dead_code)
)]
pub(crate) fn unrecognized(what: std::fmt::Arguments<'_>) -> Cow<'static, str> {
    Cow::Owned(format!(
        "not recognized: {what}; classified as a validation failure (fail closed: not retried)"
    ))
}

/// The [`Classify::note`] of a transient failure whose request may have been applied.
#[cfg_attr(
    not(any(
        feature = "reqwest",
        feature = "tonic",
        feature = "tokio-postgres",
        feature = "sqlx"
    )),
    allow(dead_code)
)]
pub(crate) const MAY_HAVE_APPLIED: &str =
    "the request may have reached the server: the retry carries the same idempotency key";

impl<T: Classify + ?Sized> Classify for Box<T> {
    fn classify(&self) -> FailureKind {
        (**self).classify()
    }

    fn retry_after(&self) -> Option<Duration> {
        (**self).retry_after()
    }

    fn note(&self) -> Option<Cow<'static, str>> {
        (**self).note()
    }
}
