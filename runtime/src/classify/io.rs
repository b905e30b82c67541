//! `Classify` for `std::io::Error` (feature `io`); the kinds are also read inside the errors of
//! other crates (reqwest, tokio-postgres, sqlx).

use std::io::ErrorKind;

use crate::policy::FailureKind;

/// The kind of failure an I/O error kind says, or `None` for a kind not recognized:
///
/// | kind | failure |
/// |---|---|
/// | `TimedOut`, `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`, `BrokenPipe`, `Interrupted`, `WouldBlock`, `NotConnected`, `HostUnreachable`, `NetworkUnreachable`, `NetworkDown` | transient |
/// | `PermissionDenied` | security |
/// | `InvalidInput`, `InvalidData`, `NotFound` | validation |
/// | `AlreadyExists` | conflict |
///
/// Any other kind is not recognized: the `Classify` implementation fails closed, as validation, and
/// says so in the failure's message.
pub fn classify_io_kind(kind: ErrorKind) -> Option<FailureKind> {
    use ErrorKind::*;
    Some(match kind {
        TimedOut | ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe
        | Interrupted | WouldBlock | NotConnected | HostUnreachable | NetworkUnreachable
        | NetworkDown => FailureKind::Transient,
        PermissionDenied => FailureKind::Security,
        InvalidInput | InvalidData | NotFound => FailureKind::Validation,
        AlreadyExists => FailureKind::Conflict,
        _ => return None,
    })
}

/// The first `std::io::Error` in an error's chain of sources, the error itself included.
#[cfg_attr(
    not(any(feature = "reqwest", feature = "tokio-postgres")),
    allow(dead_code)
)]
pub(crate) fn io_source<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a std::io::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        next = e.source();
    }
    None
}

#[cfg(feature = "io")]
#[diagnostic::do_not_recommend]
impl super::Classify for std::io::Error {
    fn classify(&self) -> FailureKind {
        classify_io_kind(self.kind()).unwrap_or(FailureKind::Validation)
    }

    fn note(&self) -> Option<std::borrow::Cow<'static, str>> {
        classify_io_kind(self.kind())
            .is_none()
            .then(|| super::unrecognized(format_args!("an I/O error of kind {:?}", self.kind())))
    }
}

#[cfg(all(test, feature = "io"))]
mod tests {
    use std::io;

    use super::*;
    use crate::Classify;

    #[test]
    fn every_kind_of_the_table_has_its_failure() {
        use ErrorKind::*;
        let table = [
            (TimedOut, FailureKind::Transient),
            (ConnectionRefused, FailureKind::Transient),
            (ConnectionReset, FailureKind::Transient),
            (ConnectionAborted, FailureKind::Transient),
            (BrokenPipe, FailureKind::Transient),
            (Interrupted, FailureKind::Transient),
            (WouldBlock, FailureKind::Transient),
            (NotConnected, FailureKind::Transient),
            (HostUnreachable, FailureKind::Transient),
            (NetworkUnreachable, FailureKind::Transient),
            (NetworkDown, FailureKind::Transient),
            (PermissionDenied, FailureKind::Security),
            (InvalidInput, FailureKind::Validation),
            (InvalidData, FailureKind::Validation),
            (NotFound, FailureKind::Validation),
            (AlreadyExists, FailureKind::Conflict),
        ];
        for (kind, failure) in table {
            let error = io::Error::new(kind, "x");
            assert_eq!(error.classify(), failure, "{kind:?}");
            assert_eq!(error.note(), None, "{kind:?} is recognized");
        }
    }

    #[test]
    fn any_other_kind_fails_closed_and_says_so() {
        for kind in [
            ErrorKind::Other,
            ErrorKind::UnexpectedEof,
            ErrorKind::Unsupported,
        ] {
            let error = io::Error::new(kind, "x");
            assert_eq!(error.classify(), FailureKind::Validation);
            let note = error.note().expect("a note");
            assert!(
                note.contains("not recognized") && note.contains(&format!("{kind:?}")),
                "{note}"
            );
        }
    }
}
