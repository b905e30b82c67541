//! TLS for [`PostgresStore`](super::PostgresStore): libpq's `sslmode` and `sslrootcert`, over rustls
//! with the `ring` provider.
//!
//! tokio-postgres reads only `sslmode=disable|prefer|require` and has no `sslrootcert`, so both are
//! taken out of the connection string here ([`UrlTls::split`]), the rest goes to
//! `tokio_postgres::Config`, and [`Settings`] decides the certificate check: none, the chain only, or
//! the chain and the host name.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::config::Host;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, plain text otherwise; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS, and the certificate must chain to a trusted root; the host name is not checked.
    VerifyCa,
    /// TLS, the certificate must chain to a trusted root and name the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What tokio-postgres does before the handshake: the certificate check is the verifier's.
    fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// A connection string split into what tokio-postgres reads and the TLS parameters it does not.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UrlTls {
    /// The connection string without `sslmode` and `sslrootcert`.
    pub(crate) rest: String,
    mode: Option<SslMode>,
    root_cert: Option<String>,
}

impl UrlTls {
    /// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL (`?sslmode=verify-full&...`) or a
    /// `key=value` string. The last value of a parameter given twice wins, as in tokio-postgres. Fails
    /// with the reason for an `sslmode` that is not one of libpq's five.
    pub(crate) fn split(url: &str) -> Result<UrlTls, String> {
        let mut found = UrlTls {
            rest: String::new(),
            mode: None,
            root_cert: None,
        };
        let after_scheme = ["postgres://", "postgresql://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme));
        match after_scheme {
            Some(after) => found.split_url(url, after)?,
            None => found.split_key_values(url)?,
        }
        Ok(found)
    }

    fn take(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "sslmode" => {
                self.mode = Some(SslMode::parse(value).ok_or_else(|| {
                    format!(
                        "unknown sslmode `{value}`: use disable, prefer, require, verify-ca or \
                         verify-full"
                    )
                })?);
                Ok(true)
            }
            "sslrootcert" => {
                // An empty value is libpq's "not given".
                self.root_cert = (!value.is_empty()).then(|| value.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The query string starts at the first `?` after the credentials (tokio-postgres reads the
    /// credentials up to the first `@`, so a password may hold a `?`).
    fn split_url(&mut self, url: &str, after_scheme: &str) -> Result<(), String> {
        let scheme_len = url.len() - after_scheme.len();
        let credentials_end = after_scheme.find('@').map_or(0, |at| at + 1);
        let Some(question) = after_scheme[credentials_end..].find('?') else {
            self.rest = url.to_owned();
            return Ok(());
        };
        let query_start = scheme_len + credentials_end + question;
        let mut kept = Vec::new();
        for pair in url[query_start + 1..].split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Ok(key), Ok(value)) = (
                percent_decode_str(key).decode_utf8(),
                percent_decode_str(value).decode_utf8(),
            ) else {
                // Not ours to judge: tokio-postgres reports what it cannot decode.
                kept.push(pair);
                continue;
            };
            if !self.take(&key, &value)? {
                kept.push(pair);
            }
        }
        self.rest = url[..query_start].to_owned();
        if !kept.is_empty() {
            self.rest.push('?');
            self.rest.push_str(&kept.join("&"));
        }
        Ok(())
    }

    /// `key=value` pairs separated by spaces, a value in single quotes or not, `\` escaping the next
    /// character: tokio-postgres's grammar. The other pairs are written back quoted; a string that
    /// does not follow the grammar is passed on whole, for tokio-postgres to report.
    fn split_key_values(&mut self, s: &str) -> Result<(), String> {
        let Some(pairs) = key_values(s) else {
            self.rest = s.to_owned();
            return Ok(());
        };
        let mut kept = Vec::new();
        for (key, value) in pairs {
            if !self.take(key, &value)? {
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                kept.push(format!("{key}='{quoted}'"));
            }
        }
        self.rest = kept.join(" ");
        Ok(())
    }
}

/// The `key=value` pairs of `s`, or `None` where tokio-postgres's parser would fail.
fn key_values(s: &str) -> Option<Vec<(&str, String)>> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| c.is_whitespace() || c == '=')?;
        let key = &rest[..key_end];
        if key.is_empty() {
            return None;
        }
        rest = rest[key_end..].trim_start().strip_prefix('=')?.trim_start();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let quoted = rest.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '\'' if quoted => {
                    end = Some(i + 1);
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = match end {
            Some(end) => end,
            None if quoted => return None,
            None => rest.len(),
        };
        if !quoted && value.is_empty() {
            return None;
        }
        pairs.push((key, value));
        rest = rest[end..].trim_start();
    }
    Some(pairs)
}

/// Whose certificates the server's must chain to.
#[derive(Debug, Clone)]
pub(crate) enum Roots {
    /// Not checked (`prefer` and `require` without `sslrootcert`, and `disable`).
    Unchecked,
    /// The platform's trusted roots (`sslrootcert=system`, or `verify-*` without `sslrootcert`).
    Platform,
    /// The PEM file named by `sslrootcert`.
    File(PathBuf),
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::Unchecked => f.write_str("no trusted roots"),
            Roots::Platform => f.write_str("this machine's trusted root certificates"),
            Roots::File(path) => write!(f, "sslrootcert={}", path.display()),
        }
    }
}

/// The TLS a store's connections use, decided once from the URL and the options.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) mode: SslMode,
    pub(crate) roots: Roots,
}

impl Settings {
    /// Decides the TLS of `config` from the URL's parameters and the options' CA file (the URL's
    /// `sslrootcert` wins), and sets tokio-postgres's `sslmode` to match. Without `sslmode` in the URL,
    /// the mode is libpq's default, `prefer`, except `verify-full` for `sslrootcert=system` (as libpq)
    /// and for a CA file given in the options (code that names a CA means it to be checked, never to
    /// fall back to plain text). Fails with the reason when the two cannot go together.
    pub(crate) fn resolve(
        url: &UrlTls,
        option_root_cert: Option<&Path>,
        config: &mut tokio_postgres::Config,
    ) -> Result<Settings, String> {
        let root_cert = url.root_cert.as_deref().map(Path::new).or(option_root_cert);
        let system = root_cert.is_some_and(|p| p == Path::new("system"));
        let from_options = url.root_cert.is_none() && option_root_cert.is_some();
        let mode = url.mode.unwrap_or(if system || from_options {
            SslMode::VerifyFull
        } else {
            SslMode::Prefer
        });
        if system && mode != SslMode::VerifyFull && mode != SslMode::Disable {
            return Err(format!(
                "sslmode={mode} may not be used with sslrootcert=system: use sslmode=verify-full, \
                 the only mode that checks the server against the platform's roots by name"
            ));
        }
        let roots = match (mode, root_cert) {
            (SslMode::Disable, _) => Roots::Unchecked,
            (_, Some(_)) if system => Roots::Platform,
            // As libpq: a CA file given to `prefer` or `require` is used to check the chain.
            (_, Some(path)) => Roots::File(path.to_owned()),
            (SslMode::Prefer | SslMode::Require, None) => Roots::Unchecked,
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => Roots::Platform,
        };
        // PostgreSQL has no TLS over a Unix socket: libpq ignores sslmode there, and so does this.
        let only_local_sockets = config.get_hostaddrs().is_empty()
            && !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, Host::Tcp(_)));
        config.ssl_mode(if only_local_sockets {
            tokio_postgres::config::SslMode::Disable
        } else {
            mode.driver_mode()
        });
        // With `hostaddr` alone tokio-postgres has no name for the handshake; libpq then uses the
        // address, and so does this (a `verify-full` certificate must name that address).
        if config.get_hosts().is_empty() {
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
        Ok(Settings { mode, roots })
    }

    /// The connector: loads the trusted roots and builds the rustls configuration. Fails with the
    /// reason when `sslrootcert` cannot be read or no trusted root is found.
    pub(crate) fn connector(&self) -> Result<MakeTls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let verifier: Arc<dyn ServerCertVerifier> = match &self.roots {
            Roots::Unchecked => Arc::new(Unchecked { algorithms }),
            roots => {
                let (roots, given) = self.load_roots(roots)?;
                Arc::new(Checked {
                    roots: Arc::new(roots),
                    given,
                    check_name: self.mode == SslMode::VerifyFull,
                    algorithms,
                })
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up ({e})"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // PostgreSQL's ALPN name: servers from PostgreSQL 17 on check it when given, and require it
        // for `sslnegotiation=direct`.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeTls {
            config: Arc::new(config),
        })
    }

    /// The trusted roots, and the certificates of `sslrootcert` as given.
    fn load_roots(
        &self,
        roots: &Roots,
    ) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), String> {
        let mut store = RootCertStore::empty();
        let mut given = Vec::new();
        match roots {
            Roots::Unchecked => {}
            Roots::File(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    format!(
                        "cannot read sslrootcert={} ({e}): check the path and that this process \
                         may read the file",
                        path.display()
                    )
                })?;
                let mut found = 0;
                for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
                    let added = cert.map_err(|e| e.to_string()).and_then(|cert| {
                        given.push(cert.clone());
                        store.add(cert).map_err(|e| e.to_string())
                    });
                    if let Err(e) = added {
                        return Err(format!(
                            "certificate {} of sslrootcert={} cannot be a trusted root ({e}): give \
                             the PEM certificates of the CA that signed the server's certificate",
                            i + 1,
                            path.display()
                        ));
                    }
                    found += 1;
                }
                if found == 0 {
                    return Err(format!(
                        "sslrootcert={} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give \
                         the PEM certificates of the CA that signed the server's certificate",
                        path.display()
                    ));
                }
            }
            Roots::Platform => {
                let loaded = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(loaded.certs);
                if store.is_empty() {
                    let errors = loaded
                        .errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>();
                    let why = if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    };
                    return Err(format!(
                        "sslmode={} checks the server's certificate, and this machine has no trusted \
                         root certificates{why}: give the server's CA as sslrootcert=PATH in the \
                         connection URL, or install the platform's CA certificates",
                        self.mode
                    ));
                }
            }
        }
        Ok((store, given))
    }
}

/// `prefer` and `require` without `sslrootcert`: encryption without authentication, as libpq. Any
/// certificate is accepted, so a machine in the middle can read and change the traffic; the
/// handshake's signatures are still checked against the certificate presented.
#[derive(Debug)]
struct Unchecked {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca` and `verify-full` (and `prefer` or `require` with `sslrootcert`): the certificate must
/// chain to a trusted root and be valid now; under `verify-full` it must also name the host.
#[derive(Debug)]
struct Checked {
    roots: Arc<RootCertStore>,
    /// The certificates of `sslrootcert`, as given.
    given: Vec<CertificateDer<'static>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let chained = rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        );
        match chained {
            Ok(()) => {}
            // A self-signed certificate marked as a CA serving as the server's own (`openssl req
            // -x509` makes one so, as PostgreSQL's documentation does) and given in sslrootcert byte
            // for byte: OpenSSL, and so libpq, accept it; webpki refuses a CA as end entity. Its
            // validity period was checked before that refusal.
            Err(e)
                if is_ca_used_as_end_entity(&e)
                    && self.given.iter().any(|g| g.as_ref() == end_entity.as_ref()) => {}
            Err(e) => return Err(e),
        }
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
        }
        _ => false,
    }
}

/// Opens the store's connections as the settings say. Under `prefer`, a connection whose TLS handshake
/// failed is opened again in plain text, as libpq does (a server that declines TLS altogether is
/// answered in plain text by tokio-postgres itself).
pub(crate) struct Connector {
    tls: PostgresConnectionManager<MakeTls>,
    plain: Option<PostgresConnectionManager<MakeTls>>,
}

impl Connector {
    pub(crate) fn new(config: tokio_postgres::Config, make: MakeTls) -> Connector {
        use tokio_postgres::config::SslMode as Driver;
        let plain = (config.get_ssl_mode() == Driver::Prefer).then(|| {
            let mut plain = config.clone();
            plain.ssl_mode(Driver::Disable);
            PostgresConnectionManager::new(plain, make.clone())
        });
        Connector {
            tls: PostgresConnectionManager::new(config, make),
            plain,
        }
    }

    pub(crate) async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        match (self.tls.connect().await, &self.plain) {
            (Err(e), Some(plain)) if e.source().is_some_and(|s| s.is::<Failure>()) => {
                // The handshake's failure is the one to report if plain text fails too.
                plain.connect().await.map_err(|_| e)
            }
            (result, _) => result,
        }
    }

    pub(crate) async fn is_valid(
        &self,
        client: &mut tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        self.tls.is_valid(client).await
    }

    pub(crate) fn has_broken(&self, client: &mut tokio_postgres::Client) -> bool {
        self.tls.has_broken(client)
    }
}

/// Opens TLS on the connections tokio-postgres makes (it asks the server with an SSLRequest first,
/// or not at all under `disable`).
#[derive(Clone)]
pub(crate) struct MakeTls {
    config: Arc<ClientConfig>,
}

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = TlsStream;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, io::Error> {
        Ok(Connect {
            config: self.config.clone(),
            host: host.to_owned(),
        })
    }
}

/// One handshake with the server named `host`.
pub(crate) struct Connect {
    config: Arc<ClientConfig>,
    host: String,
}

impl TlsConnect<Socket> for Connect {
    type Stream = TlsStream;
    type Error = Failure;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream, Failure>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.host.clone()).map_err(|e| Failure {
                host: self.host.clone(),
                kind: FailureKind::Handshake(io::Error::new(io::ErrorKind::InvalidInput, e)),
            })?;
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, socket)
                .await
                .map(TlsStream)
                .map_err(|e| Failure::of(self.host, e))
        })
    }
}

/// Why a handshake failed, for [`Server::error`](super::Server::error).
#[derive(Debug)]
pub(crate) struct Failure {
    host: String,
    kind: FailureKind,
}

#[derive(Debug)]
enum FailureKind {
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
    fn of(host: String, e: io::Error) -> Failure {
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

/// A connection over TLS.
pub(crate) struct TlsStream(tokio_rustls::client::TlsStream<Socket>);

impl tokio_postgres::tls::TlsStream for TlsStream {
    /// `tls-server-end-point` (RFC 5929), so that SCRAM authentication is bound to this connection
    /// (`SCRAM-SHA-256-PLUS`): a machine in the middle, even one the certificate check let through,
    /// cannot relay the authentication.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| end_point_hash(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The `tls-server-end-point` hash of a DER certificate: its digest with the hash of its signature
/// algorithm, SHA-256 for MD5 and SHA-1 (RFC 5929 section 4.1). `None` for an algorithm without
/// one (RSA-PSS, Ed25519), as the server does, or a certificate that does not parse.
fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, .. }, .. }
    let (certificate, _) = der(cert, 0x30)?;
    let (_, after_tbs) = der(certificate, 0x30)?;
    let (algorithm, _) = der(after_tbs, 0x30)?;
    let (oid, _) = der(algorithm, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]; // 1.2.840.10045.4.1
    enum Hash {
        Sha256,
        Sha384,
        Sha512,
    }
    let hash = match oid {
        [rsa @ .., last] if rsa == RSA => match last {
            // md5, sha1, sha256 (and sha224: the server upgrades it too)
            0x04 | 0x05 | 0x0b | 0x0e => Hash::Sha256,
            0x0c => Hash::Sha384,
            0x0d => Hash::Sha512,
            _ => return None,
        },
        [ecdsa @ .., last] if ecdsa == ECDSA_SHA2 => match last {
            0x01 | 0x02 => Hash::Sha256,
            0x03 => Hash::Sha384,
            0x04 => Hash::Sha512,
            _ => return None,
        },
        _ if oid == ECDSA_SHA1 => Hash::Sha256,
        _ => return None,
    };
    Some(match hash {
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

/// The contents of the DER element at the start of `input` if its tag is `tag`, and what follows it.
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            if rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            (len, &rest[n..])
        }
        _ => return None,
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> UrlTls {
        UrlTls::split(url).unwrap()
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept_in_order() {
        let found = split(
            "postgres://u:p@db.internal:5433/agents?application_name=a&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20dir%2Froot.pem&connect_timeout=3",
        );
        assert_eq!(
            found.rest,
            "postgres://u:p@db.internal:5433/agents?application_name=a&connect_timeout=3"
        );
        assert_eq!(found.mode, Some(SslMode::VerifyFull));
        assert_eq!(found.root_cert.as_deref(), Some("/etc/ca dir/root.pem"));
    }

    #[test]
    fn a_url_with_only_tls_parameters_loses_its_query_and_one_without_is_unchanged() {
        let found = split("postgresql://h/db?sslmode=require");
        assert_eq!(found.rest, "postgresql://h/db");
        assert_eq!(found.mode, Some(SslMode::Require));
        let plain = split("postgres://u@h/db");
        assert_eq!(plain.rest, "postgres://u@h/db");
        assert_eq!((plain.mode, plain.root_cert), (None, None));
    }

    #[test]
    fn a_question_mark_in_the_password_does_not_start_the_query() {
        let found = split("postgres://u:pa?ss@h/db?sslmode=disable");
        assert_eq!(found.rest, "postgres://u:pa?ss@h/db");
        assert_eq!(found.mode, Some(SslMode::Disable));
    }

    #[test]
    fn the_last_sslmode_wins() {
        let found = split("postgres://h/db?sslmode=disable&sslmode=verify-ca");
        assert_eq!(found.mode, Some(SslMode::VerifyCa));
    }

    #[test]
    fn key_value_strings_are_split_and_requoted() {
        let found = split(
            "host=h user='o\\'brien' sslmode = verify-ca  sslrootcert='/a b/c.pem' password=x\\ y",
        );
        assert_eq!(found.rest, "host='h' user='o\\'brien' password='x y'");
        assert_eq!(found.mode, Some(SslMode::VerifyCa));
        assert_eq!(found.root_cert.as_deref(), Some("/a b/c.pem"));
        let config: tokio_postgres::Config = found.rest.parse().unwrap();
        assert_eq!(config.get_user(), Some("o'brien"));
        assert_eq!(config.get_password(), Some(&b"x y"[..]));
    }

    #[test]
    fn a_key_value_string_tokio_postgres_cannot_read_is_passed_on_whole() {
        let s = "host=h user='unterminated sslmode=require";
        let found = split(s);
        assert_eq!(found.rest, s);
        assert!(s.parse::<tokio_postgres::Config>().is_err());
    }

    #[test]
    fn an_unknown_sslmode_is_refused_naming_the_five() {
        for url in [
            "postgres://h/db?sslmode=verify_full",
            "host=h sslmode=allow-ish",
        ] {
            let err = UrlTls::split(url).unwrap_err();
            assert!(err.starts_with("unknown sslmode `"), "{err}");
            assert!(
                err.contains("disable, prefer, require, verify-ca or verify-full"),
                "{err}"
            );
        }
    }

    fn resolve(
        url: &str,
        option: Option<&str>,
    ) -> Result<(Settings, tokio_postgres::Config), String> {
        let split = UrlTls::split(url)?;
        let mut config: tokio_postgres::Config = split.rest.parse().unwrap();
        let settings = Settings::resolve(&split, option.map(Path::new), &mut config)?;
        Ok((settings, config))
    }

    #[test]
    fn modes_choose_the_check_and_the_driver_mode() {
        use tokio_postgres::config::SslMode as Driver;
        let cases = [
            (
                "postgres://h/db",
                SslMode::Prefer,
                "no trusted roots",
                Driver::Prefer,
            ),
            (
                "postgres://h/db?sslmode=disable&sslrootcert=/ca.pem",
                SslMode::Disable,
                "no trusted roots",
                Driver::Disable,
            ),
            (
                "postgres://h/db?sslmode=require",
                SslMode::Require,
                "no trusted roots",
                Driver::Require,
            ),
            (
                "postgres://h/db?sslmode=require&sslrootcert=/ca.pem",
                SslMode::Require,
                "sslrootcert=/ca.pem",
                Driver::Require,
            ),
            (
                "postgres://h/db?sslmode=verify-ca",
                SslMode::VerifyCa,
                "this machine's trusted root certificates",
                Driver::Require,
            ),
            (
                "postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem",
                SslMode::VerifyFull,
                "sslrootcert=/ca.pem",
                Driver::Require,
            ),
            (
                "postgres://h/db?sslrootcert=system",
                SslMode::VerifyFull,
                "this machine's trusted root certificates",
                Driver::Require,
            ),
        ];
        for (url, mode, roots, driver) in cases {
            let (settings, config) = resolve(url, None).unwrap();
            assert_eq!(settings.mode, mode, "{url}");
            assert_eq!(settings.roots.to_string(), roots, "{url}");
            assert_eq!(config.get_ssl_mode(), driver, "{url}");
        }
    }

    #[test]
    fn the_urls_sslrootcert_wins_over_the_options() {
        let (settings, _) = resolve("postgres://h/db?sslmode=verify-ca", Some("/opt.pem")).unwrap();
        assert_eq!(settings.roots.to_string(), "sslrootcert=/opt.pem");
        assert_eq!(settings.mode, SslMode::VerifyCa);
        // A CA file in the options makes the default verify-full; one in the URL leaves it prefer.
        let (settings, _) = resolve("postgres://h/db", Some("/opt.pem")).unwrap();
        assert_eq!(settings.mode, SslMode::VerifyFull);
        let (settings, _) =
            resolve("postgres://h/db?sslrootcert=/url.pem", Some("/opt.pem")).unwrap();
        assert_eq!(settings.mode, SslMode::Prefer);
        assert_eq!(settings.roots.to_string(), "sslrootcert=/url.pem");
        let (settings, _) = resolve(
            "postgres://h/db?sslmode=verify-ca&sslrootcert=/url.pem",
            Some("/opt.pem"),
        )
        .unwrap();
        assert_eq!(settings.roots.to_string(), "sslrootcert=/url.pem");
    }

    #[test]
    fn sslrootcert_system_needs_verify_full() {
        let err = resolve("postgres://h/db?sslmode=require&sslrootcert=system", None).unwrap_err();
        assert!(
            err.contains("sslmode=require may not be used with sslrootcert=system"),
            "{err}"
        );
        let err =
            resolve("postgres://h/db?sslmode=verify-ca&sslrootcert=system", None).unwrap_err();
        assert!(err.contains("use sslmode=verify-full"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn unix_sockets_never_use_tls() {
        use tokio_postgres::config::SslMode as Driver;
        let (settings, config) =
            resolve("host=/var/run/postgresql sslmode=verify-full", None).unwrap();
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(config.get_ssl_mode(), Driver::Disable);
    }

    #[test]
    fn hostaddr_alone_names_the_handshake() {
        let (_, config) = resolve("hostaddr=127.0.0.1 sslmode=require", None).unwrap();
        assert_eq!(config.get_hosts(), [Host::Tcp("127.0.0.1".to_owned())]);
    }

    #[test]
    fn an_unreadable_or_empty_root_file_is_named() {
        let dir = std::env::temp_dir().join(format!("actguard-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let settings = Settings {
            mode: SslMode::VerifyFull,
            roots: Roots::File(missing.clone()),
        };
        let err = settings.connector().err().unwrap();
        assert!(
            err.starts_with(&format!("cannot read sslrootcert={}", missing.display())),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let settings = Settings {
            mode: SslMode::VerifyCa,
            roots: Roots::File(empty.clone()),
        };
        let err = settings.connector().err().unwrap();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A certificate whose signature algorithm is `oid` (DER body), with a stand-in TBS and signature.
    fn cert_with_algorithm(oid: &[u8]) -> Vec<u8> {
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x01];
        let mut alg = vec![0x30, (oid.len() + 4) as u8, 0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        alg.extend_from_slice(&[0x05, 0x00]);
        let sig = [0x03, 0x02, 0x00, 0xff];
        let body: Vec<u8> = [&tbs[..], &alg, &sig].concat();
        let mut cert = vec![0x30, 0x81, body.len() as u8];
        cert.extend(body);
        cert
    }

    #[test]
    fn channel_binding_hashes_with_the_signature_algorithms_hash() {
        let rsa = |last| [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last];
        let ecdsa = |last| vec![0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, last];
        let cases: [(Vec<u8>, Option<usize>); 8] = [
            (rsa(0x0b).to_vec(), Some(32)), // sha256WithRSAEncryption
            (rsa(0x05).to_vec(), Some(32)), // sha1WithRSAEncryption: upgraded to SHA-256
            (rsa(0x0c).to_vec(), Some(48)), // sha384WithRSAEncryption
            (rsa(0x0d).to_vec(), Some(64)), // sha512WithRSAEncryption
            (ecdsa(0x02), Some(32)),        // ecdsa-with-SHA256
            (ecdsa(0x03), Some(48)),        // ecdsa-with-SHA384
            (rsa(0x0a).to_vec(), None),     // RSASSA-PSS: no hash of its own
            (vec![0x2b, 0x65, 0x70], None), // Ed25519
        ];
        for (oid, len) in cases {
            let cert = cert_with_algorithm(&oid);
            let hash = end_point_hash(&cert);
            assert_eq!(hash.as_ref().map(Vec::len), len, "{oid:02x?}");
            if len == Some(32) {
                assert_eq!(hash.unwrap(), Sha256::digest(&cert).to_vec());
            }
        }
        assert_eq!(end_point_hash(&[0x30, 0x05, 0x30]), None, "truncated");
    }

    /// ISRG Root X2, a real certificate signed with ecdsa-with-SHA384.
    const ISRG_ROOT_X2: &str = "\
-----BEGIN CERTIFICATE-----
MIICGzCCAaGgAwIBAgIQQdKd0XLq7qeAwSxs6S+HUjAKBggqhkjOPQQDAzBPMQsw
CQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJuZXQgU2VjdXJpdHkgUmVzZWFyY2gg
R3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBYMjAeFw0yMDA5MDQwMDAwMDBaFw00
MDA5MTcxNjAwMDBaME8xCzAJBgNVBAYTAlVTMSkwJwYDVQQKEyBJbnRlcm5ldCBT
ZWN1cml0eSBSZXNlYXJjaCBHcm91cDEVMBMGA1UEAxMMSVNSRyBSb290IFgyMHYw
EAYHKoZIzj0CAQYFK4EEACIDYgAEzZvVn4CDCuwJSvMWSj5cz3es3mcFDR0HttwW
+1qLFNvicWDEukWVEYmO6gbf9yoWHKS5xcUy4APgHoIYOIvXRdgKam7mAHf7AlF9
ItgKbppbd9/w+kHsOdx1ymgHDB/qo0IwQDAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0T
AQH/BAUwAwEB/zAdBgNVHQ4EFgQUfEKWrt5LSDv6kviejM9ti6lyN5UwCgYIKoZI
zj0EAwMDaAAwZQIwe3lORlCEwkSHRhtFcP9Ymd70/aTSVaYgLXTWNLxBo1BfASdW
tL4ndQavEi51mI38AjEAi/V3bNTIZargCyzuFJ0nN6T5U6VR5CmD1/iQMVtCnwr1
/q4AaOeMSQ+2b1tbFfLn
-----END CERTIFICATE-----\n";

    #[test]
    fn channel_binding_of_a_real_certificate() {
        let der = CertificateDer::from_pem_slice(ISRG_ROOT_X2.as_bytes()).unwrap();
        let hash = end_point_hash(&der).expect("ecdsa-with-SHA384 has a hash");
        // `openssl x509 -outform der | sha384sum`
        assert_eq!(
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "52f930bf39fe798dfd994e4f0acd63dd1751f82b4fb8a8e18b3a7f3a342e97f3\
             ff3d323bfcc60097a66afb34088025ca"
        );
    }
}
