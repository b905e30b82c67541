//! `Classify` for HTTP (feature `http`): a status decides the kind, and `Retry-After` the delay.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::{Classify, unrecognized};
use crate::policy::FailureKind;

/// The kind of failure an HTTP status says:
///
/// | status | kind |
/// |---|---|
/// | 408, 425, 429, 500, 502, 503, 504, any other 5xx | transient |
/// | 400, 404, 405, 410, 413, 414, 415, 422, any other 4xx | validation |
/// | 409, 412, 423 | conflict |
/// | 401, 403, 407 | security |
///
/// A status that is not a failure (1xx, 2xx, 3xx) is not recognized as one: it fails closed, as
/// validation ([`Classify::note`] says so).
pub fn classify_status(status: StatusCode) -> FailureKind {
    match status.as_u16() {
        401 | 403 | 407 => FailureKind::Security,
        409 | 412 | 423 => FailureKind::Conflict,
        408 | 425 | 429 | 500..=599 => FailureKind::Transient,
        _ => FailureKind::Validation,
    }
}

fn status_note(status: StatusCode) -> Option<Cow<'static, str>> {
    (!status.is_client_error() && !status.is_server_error())
        .then(|| unrecognized(format_args!("HTTP {status} is not a failure status")))
}

/// The delay a `Retry-After` value asks for, in either of its RFC 9110 forms: delta-seconds
/// (`"120"`) or an HTTP-date (`"Wed, 21 Oct 2026 07:28:00 GMT"`, read against `now`; a date already
/// past asks for no delay). `None` for a value in neither form.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use actguard::classify::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More seconds than a u64 holds is "longer than any budget": saturate.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_retry_after(value: Option<&HeaderValue>, now: SystemTime) -> Option<Duration> {
    parse_retry_after(value?.to_str().ok()?, now)
}

/// A failed HTTP response, as an error: its status and the delay its `Retry-After` asked for (read
/// when the failure is made), with an optional detail (a line of the body, say).
///
/// ```
/// use std::time::Duration;
/// use actguard::{Classify, FailureKind};
/// use actguard::classify::HttpFailure;
///
/// let response = http::Response::builder()
///     .status(429)
///     .header("retry-after", "2")
///     .body(())
///     .unwrap();
/// let failure = HttpFailure::from(&response);
/// assert_eq!(failure.classify(), FailureKind::Transient);
/// assert_eq!(failure.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(failure.to_string(), "HTTP 429 Too Many Requests");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFailure {
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: Option<String>,
}

impl HttpFailure {
    /// A failure with this status, and no delay asked for.
    pub fn new(status: StatusCode) -> Self {
        HttpFailure {
            status,
            retry_after: None,
            detail: None,
        }
    }

    /// A failure with this status, and the delay the headers' `Retry-After` asks for now.
    pub fn from_parts(status: StatusCode, headers: &HeaderMap) -> Self {
        HttpFailure {
            retry_after: header_retry_after(headers.get(RETRY_AFTER), SystemTime::now()),
            ..HttpFailure::new(status)
        }
    }

    /// The same failure, with a detail shown after the status.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail given with [`HttpFailure::with_detail`].
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl<B> From<&Response<B>> for HttpFailure {
    fn from(response: &Response<B>) -> Self {
        HttpFailure::from_parts(response.status(), response.headers())
    }
}

impl fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpFailure {}

#[diagnostic::do_not_recommend]
impl Classify for HttpFailure {
    fn classify(&self) -> FailureKind {
        classify_status(self.status)
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    fn note(&self) -> Option<Cow<'static, str>> {
        status_note(self.status)
    }
}

#[diagnostic::do_not_recommend]
impl Classify for StatusCode {
    fn classify(&self) -> FailureKind {
        classify_status(*self)
    }

    fn note(&self) -> Option<Cow<'static, str>> {
        status_note(*self)
    }
}

/// A response classifies by its status; its `Retry-After` is read when the guarded call asks.
#[diagnostic::do_not_recommend]
impl<B> Classify for Response<B> {
    fn classify(&self) -> FailureKind {
        classify_status(self.status())
    }

    fn retry_after(&self) -> Option<Duration> {
        header_retry_after(self.headers().get(RETRY_AFTER), SystemTime::now())
    }

    fn note(&self) -> Option<Cow<'static, str>> {
        status_note(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_of_the_table_has_its_kind() {
        let table: &[(&[u16], FailureKind)] = &[
            (
                &[408, 425, 429, 500, 502, 503, 504, 501, 505, 599],
                FailureKind::Transient,
            ),
            (
                &[400, 404, 405, 410, 413, 414, 415, 422, 402, 418, 451, 499],
                FailureKind::Validation,
            ),
            (&[409, 412, 423], FailureKind::Conflict),
            (&[401, 403, 407], FailureKind::Security),
        ];
        for (statuses, kind) in table {
            for &s in *statuses {
                let status = StatusCode::from_u16(s).unwrap();
                assert_eq!(status.classify(), *kind, "{s}");
                assert_eq!(status.note(), None, "{s} is recognized");
            }
        }
    }

    #[test]
    fn a_status_that_is_not_a_failure_fails_closed_and_says_so() {
        for s in [100, 200, 204, 301, 304] {
            let status = StatusCode::from_u16(s).unwrap();
            assert_eq!(status.classify(), FailureKind::Validation);
            let note = status.note().expect("a note");
            assert!(note.starts_with("not recognized: HTTP"), "{note}");
        }
    }

    #[test]
    fn retry_after_reads_both_forms_and_nothing_else() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        // IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient must accept.
        for date in [
            "Wed, 21 Oct 2015 07:30:00 GMT",
            "Wednesday, 21-Oct-15 07:30:00 GMT",
            "Wed Oct 21 07:30:00 2015",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(120)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past"
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "2m",
            "tomorrow",
            "Wed, 32 Oct 2015 07:30:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn a_response_gives_its_status_and_retry_after() {
        let response = Response::builder()
            .status(503)
            .header("Retry-After", "30")
            .body(())
            .unwrap();
        assert_eq!(response.classify(), FailureKind::Transient);
        assert_eq!(response.retry_after(), Some(Duration::from_secs(30)));
        let failure = HttpFailure::from(&response).with_detail("maintenance");
        assert_eq!(failure.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(
            failure.to_string(),
            "HTTP 503 Service Unavailable: maintenance"
        );
        let garbled = Response::builder()
            .status(429)
            .header("Retry-After", "later")
            .body(())
            .unwrap();
        assert_eq!(garbled.retry_after(), None);
    }
}
