//! Why a TLS handshake failed, and what to tell the user about it.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use rustls::CertificateError;

use super::settings::{Roots, Settings};

/// Why a handshake failed, for [`Server::error`](crate::postgres::server::Server::error).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(super) host: String,
    pub(super) kind: FailureKind,
}

#[derive(Debug)]
pub(super) enum FailureKind {
    /// The certificate does not chain to a trusted root (or is malformed, or revoked).
    Untrusted(rustls::Error),
    /// The certificate chains, but does not name the host (`verify-full`).
    WrongHost,
    /// The certificate expired, or is not valid yet.
    OutsideValidity(rustls::Error),
    /// Anything else: the server closed the connection, a protocol version in common, ...
    Handshake(io::Error),
}

impl Failure {
    pub(super) fn of(host: String, e: io::Error) -> Failure {
        use CertificateError as C;
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let kind = match rustls_error {
            Some(rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            )) => FailureKind::WrongHost,
            Some(
                err @ rustls::Error::InvalidCertificate(
                    C::Expired
                    | C::ExpiredContext { .. }
                    | C::NotValidYet
                    | C::NotValidYetContext { .. },
                ),
            ) => FailureKind::OutsideValidity(err.clone()),
            Some(err @ rustls::Error::InvalidCertificate(_)) => FailureKind::Untrusted(err.clone()),
            _ => FailureKind::Handshake(e),
        };
        Failure { host, kind }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FailureKind::Untrusted(e) | FailureKind::OutsideValidity(e) => {
                write!(f, "certificate of `{}` refused: {e}", self.host)
            }
            FailureKind::WrongHost => write!(f, "certificate not valid for `{}`", self.host),
            FailureKind::Handshake(e) => write!(f, "TLS handshake with `{}`: {e}", self.host),
        }
    }
}

impl StdError for Failure {}

/// What to tell the user when opening a connection failed for a reason of TLS, or `None`.
pub(crate) fn describe(e: &tokio_postgres::Error, settings: &Settings) -> Option<String> {
    let source = e.source()?;
    if let Some(failure) = source.downcast_ref::<Failure>() {
        let roots = &settings.roots;
        return Some(match &failure.kind {
            FailureKind::Untrusted(err) => {
                let fix = match roots {
                    Roots::File(_) => {
                        "check that sslrootcert names the CA that signed the server's certificate"
                    }
                    _ => "give the CA that signed it as sslrootcert=PATH in the connection URL",
                };
                format!("the server's certificate is not trusted by {roots} ({err}): {fix}")
            }
            FailureKind::WrongHost => format!(
                "the server's certificate is not valid for host `{}` (sslmode=verify-full checks \
                 the host name): connect with a host name the certificate names in its \
                 subjectAltName (a name only in its subject's CN does not count), or use \
                 sslmode=verify-ca to check only that a trusted CA signed it",
                failure.host
            ),
            FailureKind::OutsideValidity(err) => format!(
                "the server's certificate is outside its validity period ({err}): renew the \
                 server's certificate, or check this machine's clock"
            ),
            FailureKind::Handshake(err) => format!(
                "the TLS handshake failed ({err}): check the server's ssl settings and the \
                 sslmode in the connection URL"
            ),
        });
    }
    // tokio-postgres's answer to a server that declined the SSLRequest under `require`.
    if source.to_string() == "server does not support TLS" {
        return Some(format!(
            "the server does not accept TLS connections, and sslmode={} allows no other: enable \
             ssl on the server, or check that the connection URL names the right server",
            settings.mode
        ));
    }
    None
}
