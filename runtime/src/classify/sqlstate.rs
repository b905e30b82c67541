//! `Classify` by SQLSTATE, for `tokio_postgres::Error` (feature `tokio-postgres`) and `sqlx::Error`
//! (feature `sqlx`).

use std::borrow::Cow;

use super::io::classify_io_kind;
use super::{Classify, MAY_HAVE_APPLIED, unrecognized};
use crate::policy::FailureKind;

/// The kind of failure a SQLSTATE says, or `None` for one not recognized:
///
/// | SQLSTATE | kind |
/// |---|---|
/// | class 08 (connection exception), 40001 (serialization failure), 40P01 (deadlock), class 53 (insufficient resources), 57P01–57P03 (the server shutting down or starting), 57014 (statement timeout, cancelled), 55P03 (lock not available) | transient |
/// | 23505 (unique violation), 23P01 (exclusion violation) | conflict |
/// | any other of class 23 (integrity constraint), class 22 (data exception) | validation |
/// | class 28 (invalid authorization), 42501 (insufficient privilege) | security |
pub fn classify_sqlstate(code: &str) -> Option<FailureKind> {
    let class = code.get(..2)?;
    Some(match (class, code) {
        (_, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "57014" | "55P03")
        | ("08" | "53", _) => FailureKind::Transient,
        (_, "23505" | "23P01") => FailureKind::Conflict,
        ("23" | "22", _) => FailureKind::Validation,
        (_, "42501") | ("28", _) => FailureKind::Security,
        _ => return None,
    })
}

/// Whether a transient SQLSTATE may follow a commit that reached the server: the connection ended.
fn connection_lost(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P0")
}

fn by_sqlstate(code: &str) -> (FailureKind, Option<Cow<'static, str>>) {
    match classify_sqlstate(code) {
        Some(kind) => (
            kind,
            connection_lost(code).then_some(Cow::Borrowed(MAY_HAVE_APPLIED)),
        ),
        None => (
            FailureKind::Validation,
            Some(unrecognized(format_args!("SQLSTATE {code}"))),
        ),
    }
}

fn by_io(error: &std::io::Error) -> (FailureKind, Option<Cow<'static, str>>) {
    match classify_io_kind(error.kind()) {
        Some(FailureKind::Transient) => (
            FailureKind::Transient,
            Some(Cow::Borrowed(MAY_HAVE_APPLIED)),
        ),
        Some(kind) => (kind, None),
        None => (
            FailureKind::Validation,
            Some(unrecognized(format_args!(
                "a database I/O error of kind {:?}",
                error.kind()
            ))),
        ),
    }
}

#[cfg(feature = "tokio-postgres")]
mod tokio_postgres_error {
    use super::*;
    use crate::classify::io::io_source;

    /// By SQLSTATE when the server sent one; a closed connection or a transient I/O error is
    /// transient (a commit in flight may have been applied); anything else is not recognized.
    ///
    /// The error's own text is only `db error`: the note carries what the server said.
    fn judge(error: &tokio_postgres::Error) -> (FailureKind, Option<Cow<'static, str>>) {
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            let said = format!("the server said: {} [SQLSTATE {code}]", db.message());
            return match by_sqlstate(code) {
                (kind, Some(note)) => (kind, Some(Cow::Owned(format!("{said}; {note}")))),
                (kind, None) => (kind, Some(Cow::Owned(said))),
            };
        }
        if let Some(state) = error.code() {
            return by_sqlstate(state.code());
        }
        if error.is_closed() {
            return (
                FailureKind::Transient,
                Some(Cow::Borrowed(MAY_HAVE_APPLIED)),
            );
        }
        match io_source(error) {
            Some(io) => by_io(io),
            None => (
                FailureKind::Validation,
                Some(unrecognized(format_args!(
                    "a tokio-postgres error without SQLSTATE"
                ))),
            ),
        }
    }

    #[diagnostic::do_not_recommend]
    impl Classify for tokio_postgres::Error {
        fn classify(&self) -> FailureKind {
            judge(self).0
        }

        fn note(&self) -> Option<Cow<'static, str>> {
            judge(self).1
        }
    }
}

#[cfg(feature = "sqlx")]
mod sqlx_error {
    use super::*;

    /// By SQLSTATE for a database error; I/O by its kind; a pool that timed out or a crashed worker
    /// is transient; a row, column or type that is not there, or a value that does not encode or
    /// decode, is validation; anything else is not recognized.
    fn judge(error: &sqlx::Error) -> (FailureKind, Option<Cow<'static, str>>) {
        use sqlx::Error::*;
        match error {
            Database(db) => match db.code() {
                Some(code) => by_sqlstate(&code),
                None => (
                    FailureKind::Validation,
                    Some(unrecognized(format_args!(
                        "a database error without SQLSTATE"
                    ))),
                ),
            },
            Io(io) => by_io(io),
            PoolTimedOut => (FailureKind::Transient, None),
            WorkerCrashed => (
                FailureKind::Transient,
                Some(Cow::Borrowed(MAY_HAVE_APPLIED)),
            ),
            RowNotFound
            | TypeNotFound { .. }
            | ColumnIndexOutOfBounds { .. }
            | ColumnNotFound(_)
            | ColumnDecode { .. }
            | Encode(_)
            | Decode(_)
            | InvalidArgument(_)
            | Configuration(_) => (FailureKind::Validation, None),
            Tls(_) => (FailureKind::Security, None),
            other => (
                FailureKind::Validation,
                Some(unrecognized(format_args!("the sqlx error \"{other}\""))),
            ),
        }
    }

    #[diagnostic::do_not_recommend]
    impl Classify for sqlx::Error {
        fn classify(&self) -> FailureKind {
            judge(self).0
        }

        fn note(&self) -> Option<Cow<'static, str>> {
            judge(self).1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sqlstate_of_the_table_has_its_kind() {
        let table = [
            ("08000", Some(FailureKind::Transient)),
            ("08006", Some(FailureKind::Transient)),
            ("40001", Some(FailureKind::Transient)),
            ("40P01", Some(FailureKind::Transient)),
            ("53300", Some(FailureKind::Transient)),
            ("57P01", Some(FailureKind::Transient)),
            ("57P02", Some(FailureKind::Transient)),
            ("57P03", Some(FailureKind::Transient)),
            ("57014", Some(FailureKind::Transient)),
            ("55P03", Some(FailureKind::Transient)),
            ("23505", Some(FailureKind::Conflict)),
            ("23P01", Some(FailureKind::Conflict)),
            ("23503", Some(FailureKind::Validation)),
            ("23502", Some(FailureKind::Validation)),
            ("22012", Some(FailureKind::Validation)),
            ("22P02", Some(FailureKind::Validation)),
            ("28P01", Some(FailureKind::Security)),
            ("42501", Some(FailureKind::Security)),
            ("40002", None),
            ("42P01", None),
            ("XX000", None),
            ("5", None),
        ];
        for (code, kind) in table {
            assert_eq!(classify_sqlstate(code), kind, "{code}");
        }
        assert!(
            by_sqlstate("08006").1.is_some(),
            "a lost connection notes it"
        );
        assert!(
            by_sqlstate("40001").1.is_none(),
            "a rolled-back transaction did not apply"
        );
        assert!(by_sqlstate("42P01").1.unwrap().contains("SQLSTATE 42P01"));
    }
}

#[cfg(all(test, feature = "sqlx"))]
mod sqlx_tests {
    use std::io;

    use super::*;

    /// A database error as a driver reports one: a SQLSTATE and a message.
    #[derive(Debug)]
    struct Reported(&'static str);

    impl std::fmt::Display for Reported {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Reported {}

    impl sqlx::error::DatabaseError for Reported {
        fn message(&self) -> &str {
            "reported"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn sqlx_errors_are_classified_by_sqlstate_then_by_what_failed() {
        let db = |code| sqlx::Error::Database(Box::new(Reported(code)));
        assert_eq!(db("23505").classify(), FailureKind::Conflict);
        assert_eq!(db("40001").classify(), FailureKind::Transient);
        assert_eq!(db("42501").classify(), FailureKind::Security);
        assert!(
            db("42P01")
                .note()
                .unwrap()
                .contains("not recognized: SQLSTATE 42P01")
        );
        assert_eq!(sqlx::Error::PoolTimedOut.classify(), FailureKind::Transient);
        assert_eq!(sqlx::Error::RowNotFound.classify(), FailureKind::Validation);
        let reset = sqlx::Error::Io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(reset.classify(), FailureKind::Transient);
        assert!(
            reset
                .note()
                .unwrap()
                .contains("may have reached the server")
        );
        let protocol = sqlx::Error::Protocol("unexpected message".into());
        assert_eq!(protocol.classify(), FailureKind::Validation);
        assert!(protocol.note().unwrap().starts_with("not recognized"));
    }
}
