//! What a store answers when it cannot do what was asked: [`StoreError`], and the [`ErrorDetail`]
//! each variant carries (the message, and the driver's own error as its source).

use std::fmt;
use std::sync::Arc;

/// A store error: the store could not be reached or refused the operation. The guarded call fails
/// closed on any of them: no action runs without its claim.
///
/// Each variant carries an [`ErrorDetail`]: the message a person reads, and the backend's own error
/// when there was one (a `rusqlite::Error`, a `tokio_postgres::Error`, an `std::io::Error`, ...),
/// answered by [`source`](std::error::Error::source) so a caller can downcast it and read, say, the
/// SQLSTATE.
#[derive(Debug)]
pub enum StoreError {
    /// The store cannot be reached or its file cannot be opened.
    Unavailable(ErrorDetail),
    /// The stored data is not what this version can read (corrupt, written by a newer version, or
    /// a file that is not an actguard store).
    Corrupt(ErrorDetail),
    /// Stored JSON nests deeper than this release reads ([`MAX_READ_DEPTH`](crate::MAX_READ_DEPTH)):
    /// written by an earlier release, which did not limit depth. Not damage: the data is as it was
    /// written.
    TooDeep(ErrorDetail),
    /// The claim being completed or failed is no longer held (its lease expired and another worker
    /// took it over): the result was not recorded.
    ClaimLost {
        /// The key's readable text.
        key: String,
    },
    /// Something asked for does not exist.
    NotFound(ErrorDetail),
    /// The operation does not apply to the current state (a queue entry already resolved, discarded
    /// or replayed).
    Conflict(ErrorDetail),
    /// Anything else the backend reported.
    Backend(ErrorDetail),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(d) => write!(f, "store unavailable: {d}"),
            StoreError::Corrupt(d) => write!(f, "store data unreadable: {d}"),
            StoreError::TooDeep(d) => write!(f, "store data too deep to read: {d}"),
            StoreError::ClaimLost { key } => write!(
                f,
                "claim lost: the lease on key `{key}` expired and another worker took it over"
            ),
            StoreError::NotFound(d) => write!(f, "not found: {d}"),
            StoreError::Conflict(d) => write!(f, "conflict: {d}"),
            StoreError::Backend(d) => write!(f, "store error: {d}"),
        }
    }
}

impl StoreError {
    /// This error with `source` kept as the backend's error behind it (no change to a
    /// [`StoreError::ClaimLost`], which has none).
    #[must_use]
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        match self {
            StoreError::Unavailable(d) => StoreError::Unavailable(d.with_source(source)),
            StoreError::Corrupt(d) => StoreError::Corrupt(d.with_source(source)),
            StoreError::TooDeep(d) => StoreError::TooDeep(d.with_source(source)),
            StoreError::NotFound(d) => StoreError::NotFound(d.with_source(source)),
            StoreError::Conflict(d) => StoreError::Conflict(d.with_source(source)),
            StoreError::Backend(d) => StoreError::Backend(d.with_source(source)),
            lost @ StoreError::ClaimLost { .. } => lost,
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Unavailable(d)
            | StoreError::Corrupt(d)
            | StoreError::TooDeep(d)
            | StoreError::NotFound(d)
            | StoreError::Conflict(d)
            | StoreError::Backend(d) => d.source(),
            StoreError::ClaimLost { .. } => None,
        }
    }
}

/// What a [`StoreError`] says: its message, and the backend's error it came from, if any. Reads as
/// its message (it derefs to `str`), so `detail.contains("...")` and `"{detail}"` work as on a
/// `String`.
#[derive(Debug, Clone)]
pub struct ErrorDetail {
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ErrorDetail {
    /// A detail with no backend error behind it.
    pub fn new(message: impl Into<String>) -> Self {
        ErrorDetail {
            message: message.into(),
            source: None,
        }
    }

    /// The backend's error this detail came from: the [`StoreError`]'s
    /// [`source`](std::error::Error::source).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The backend's error, if one was kept.
    pub fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::ops::Deref for ErrorDetail {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl From<String> for ErrorDetail {
    fn from(message: String) -> Self {
        ErrorDetail::new(message)
    }
}

impl From<&str> for ErrorDetail {
    fn from(message: &str) -> Self {
        ErrorDetail::new(message)
    }
}

impl PartialEq<str> for ErrorDetail {
    fn eq(&self, other: &str) -> bool {
        self.message == other
    }
}

impl PartialEq<&str> for ErrorDetail {
    fn eq(&self, other: &&str) -> bool {
        self.message == *other
    }
}
