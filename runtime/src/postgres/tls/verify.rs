//! The check of the server's certificate: the trusted roots loaded, the rustls verifiers (none,
//! the chain, the chain and the host name) and the client configuration that uses them.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::connect::MakeTls;
use super::settings::{Roots, Settings};
use super::url::SslMode;

impl Settings {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
