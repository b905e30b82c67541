//! `Classify` for `tonic::Status` (feature `tonic`), after AIP-194's retry guidance.

use std::borrow::Cow;
use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;

use super::{Classify, MAY_HAVE_APPLIED, unrecognized};
use crate::policy::FailureKind;

/// | code | kind |
/// |---|---|
/// | `UNAVAILABLE` | transient |
/// | `DEADLINE_EXCEEDED`, `ABORTED` | transient: the call may have been applied, the retry carries the same key |
/// | `RESOURCE_EXHAUSTED` | transient, after the server's `RetryInfo` delay when it sent one |
/// | `INVALID_ARGUMENT`, `OUT_OF_RANGE`, `NOT_FOUND` | validation |
/// | `FAILED_PRECONDITION`, `ALREADY_EXISTS` | conflict |
/// | `PERMISSION_DENIED`, `UNAUTHENTICATED` | security |
/// | any other (`UNKNOWN`, `INTERNAL`, `CANCELLED`, …) | not recognized: validation |
fn judge(status: &tonic::Status) -> (FailureKind, Option<Cow<'static, str>>) {
    match status.code() {
        Code::Unavailable | Code::ResourceExhausted => (FailureKind::Transient, None),
        Code::DeadlineExceeded | Code::Aborted => (
            FailureKind::Transient,
            Some(Cow::Borrowed(MAY_HAVE_APPLIED)),
        ),
        Code::InvalidArgument | Code::OutOfRange | Code::NotFound => {
            (FailureKind::Validation, None)
        }
        Code::FailedPrecondition | Code::AlreadyExists => (FailureKind::Conflict, None),
        Code::PermissionDenied | Code::Unauthenticated => (FailureKind::Security, None),
        other => (
            FailureKind::Validation,
            Some(unrecognized(format_args!("gRPC status {other:?}"))),
        ),
    }
}

#[diagnostic::do_not_recommend]
impl Classify for tonic::Status {
    fn classify(&self) -> FailureKind {
        judge(self).0
    }

    /// The `retry_delay` of a `google.rpc.RetryInfo` in the status's details, when the server sent
    /// one.
    fn retry_after(&self) -> Option<Duration> {
        self.get_details_retry_info()?.retry_delay
    }

    fn note(&self) -> Option<Cow<'static, str>> {
        judge(self).1
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    #[test]
    fn every_code_has_its_kind() {
        let table = [
            (Code::Unavailable, FailureKind::Transient, false),
            (Code::DeadlineExceeded, FailureKind::Transient, true),
            (Code::Aborted, FailureKind::Transient, true),
            (Code::ResourceExhausted, FailureKind::Transient, false),
            (Code::InvalidArgument, FailureKind::Validation, false),
            (Code::OutOfRange, FailureKind::Validation, false),
            (Code::NotFound, FailureKind::Validation, false),
            (Code::FailedPrecondition, FailureKind::Conflict, false),
            (Code::AlreadyExists, FailureKind::Conflict, false),
            (Code::PermissionDenied, FailureKind::Security, false),
            (Code::Unauthenticated, FailureKind::Security, false),
        ];
        for (code, kind, noted) in table {
            let status = tonic::Status::new(code, "x");
            assert_eq!(status.classify(), kind, "{code:?}");
            assert_eq!(status.note().is_some(), noted, "{code:?}");
        }
        for code in [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::Unimplemented,
            Code::Internal,
            Code::DataLoss,
        ] {
            let status = tonic::Status::new(code, "x");
            assert_eq!(status.classify(), FailureKind::Validation, "{code:?}");
            assert!(status.note().unwrap().starts_with("not recognized"));
        }
    }

    #[test]
    fn the_servers_retry_info_is_the_delay() {
        let details = ErrorDetails::with_retry_info(Some(Duration::from_millis(1500)));
        let status = tonic::Status::with_error_details(Code::ResourceExhausted, "quota", details);
        // Through the wire form: the details travel as `grpc-status-details-bin`.
        let response = status.into_http::<()>();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.classify(), FailureKind::Transient);
        assert_eq!(status.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(
            tonic::Status::resource_exhausted("quota").retry_after(),
            None
        );
    }
}
