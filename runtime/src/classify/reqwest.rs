//! `Classify` for `reqwest::Error` (feature `reqwest`): what failed decides whether the request could
//! have reached the server.

use std::borrow::Cow;

use super::http::{HttpFailure, classify_status};
use super::io::{classify_io_kind, io_source};
use super::{Classify, MAY_HAVE_APPLIED, unrecognized};
use crate::policy::FailureKind;

/// | the error | kind |
/// |---|---|
/// | a status error (`error_for_status`) | by the status, as [`classify_status`] |
/// | building the request, a redirect, decoding the response | validation |
/// | connecting (nothing was sent) | transient |
/// | a timeout, the body, the connection failing after it was made | transient: the request may have been applied, the retry carries the same key |
/// | anything else | not recognized: validation |
fn judge(error: &reqwest::Error) -> (FailureKind, Option<Cow<'static, str>>) {
    if let Some(status) = error.status() {
        return (classify_status(status), None);
    }
    if error.is_builder() || error.is_redirect() {
        return (FailureKind::Validation, None);
    }
    if error.is_decode() {
        return (
            FailureKind::Validation,
            Some(Cow::Borrowed(
                "the server answered, so the request was probably applied",
            )),
        );
    }
    if error.is_connect() {
        // Connecting failed (or timed out): no byte of the request was sent.
        return (FailureKind::Transient, None);
    }
    if error.is_timeout() || error.is_body() {
        return (
            FailureKind::Transient,
            Some(Cow::Borrowed(MAY_HAVE_APPLIED)),
        );
    }
    if error.is_request() {
        // The connection was made, then failed: reset, closed before the response, a broken pipe.
        return match io_source(error).map(|io| (io.kind(), classify_io_kind(io.kind()))) {
            Some((_, Some(FailureKind::Transient))) | None => (
                FailureKind::Transient,
                Some(Cow::Borrowed(MAY_HAVE_APPLIED)),
            ),
            Some((_, Some(kind))) => (kind, None),
            Some((io_kind, None)) => (
                FailureKind::Validation,
                Some(unrecognized(format_args!(
                    "a reqwest request error from an I/O error of kind {io_kind:?}"
                ))),
            ),
        };
    }
    (
        FailureKind::Validation,
        Some(unrecognized(format_args!("a reqwest error of this kind"))),
    )
}

#[diagnostic::do_not_recommend]
impl Classify for reqwest::Error {
    fn classify(&self) -> FailureKind {
        judge(self).0
    }

    fn note(&self) -> Option<Cow<'static, str>> {
        judge(self).1
    }
}

/// The status of a response, and the delay its `Retry-After` asks for now.
impl From<&reqwest::Response> for HttpFailure {
    fn from(response: &reqwest::Response) -> Self {
        HttpFailure::from_parts(response.status(), response.headers())
    }
}
