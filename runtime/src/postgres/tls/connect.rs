//! Opening TLS on the store's connections: the connector (with libpq's fallback to plain text under
//! `prefer`), the handshake, and the encrypted stream with its channel binding.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use super::channel_binding::end_point_hash;
use super::failure::{Failure, FailureKind};

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
    pub(super) config: Arc<ClientConfig>,
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
