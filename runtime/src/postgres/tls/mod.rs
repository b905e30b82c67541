//! TLS for [`PostgresStore`](super::PostgresStore): libpq's `sslmode` and `sslrootcert`, over rustls
//! with the `ring` provider.
//!
//! tokio-postgres reads only `sslmode=disable|prefer|require` and has no `sslrootcert`, so both are
//! taken out of the connection string ([`UrlTls::split`]), the rest goes to
//! `tokio_postgres::Config`, and [`Settings`] decides the certificate check: none, the chain only, or
//! the chain and the host name.
//!
//! Each file holds one part: `url` takes the parameters out of the connection string, `settings`
//! decides the mode and the trusted roots, `verify` checks the server's certificate, `connect` opens
//! TLS on a connection, `failure` explains a refused handshake, and `channel_binding` binds SCRAM
//! to the connection.

mod channel_binding;
mod connect;
mod failure;
mod settings;
mod url;
mod verify;

pub(crate) use connect::Connector;
pub(crate) use failure::describe;
pub(crate) use settings::Settings;
pub(crate) use url::UrlTls;
