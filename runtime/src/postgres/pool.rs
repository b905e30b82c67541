//! The store's connections: a `bb8` pool of them, each with its prepared statements, the last error
//! met opening one, and the drop of a connection found unusable.

use std::sync::{Arc, Mutex, PoisonError};

use bb8::{ErrorSink, ManageConnection, PooledConnection};

use super::server::Server;
use super::statements::Statements;
use super::{PostgresStore, tls};
use crate::store::StoreError;

impl PostgresStore {
    /// A connection from the pool; failing, why: the store was closed, the server's error, or the
    /// last error met opening one in the background when none became free in time.
    pub(super) async fn client(&self) -> Result<PooledConnection<'static, Manager>, StoreError> {
        let pool = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                StoreError::Unavailable(format!("the store for {} was closed", self.server).into())
            })?;
        match pool.get_owned().await {
            Ok(conn) => {
                self.last_error.clear();
                Ok(conn)
            }
            Err(bb8::RunError::User(e)) => Err(self.server.error(e)),
            Err(bb8::RunError::TimedOut) => {
                Err(self.last_error.take().unwrap_or_else(|| {
                    StoreError::Unavailable(format!(
                    "no connection to {} became available in time: check that the server is \
                     reachable, or raise max_connections",
                    self.server
                ).into())
                }))
            }
        }
    }
}

pub(super) type Pool = bb8::Pool<Manager>;

/// A pooled connection, and whether an operation found it unusable.
pub(super) struct Conn {
    pub(super) client: tokio_postgres::Client,
    broken: bool,
    /// The statements prepared on this connection.
    pub(super) statements: Statements,
}

/// Opens connections with `bb8-postgres`, with TLS as the URL asks; the pool drops a connection that is closed or was marked
/// broken instead of handing it out again.
pub(super) struct Manager(pub(super) tls::Connector);

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Conn, tokio_postgres::Error> {
        let client = self.0.connect().await?;
        Ok(Conn {
            client,
            broken: false,
            statements: Statements::default(),
        })
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), tokio_postgres::Error> {
        self.0.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || self.0.has_broken(&mut conn.client)
    }
}

/// Keeps the last error the pool met while opening a connection in the background, so that an
/// operation that timed out waiting for one reports why (server down, credentials refused).
#[derive(Debug, Clone)]
pub(super) struct LastError {
    pub(super) server: Server,
    pub(super) last: Arc<Mutex<Option<StoreError>>>,
}

impl LastError {
    fn take(&self) -> Option<StoreError> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn clear(&self) {
        self.take();
    }
}

impl ErrorSink<tokio_postgres::Error> for LastError {
    fn sink(&self, error: tokio_postgres::Error) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.server.error(error));
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}

/// Passes `result` on; a connection that failed with [`StoreError::Unavailable`] (closed, server shutting
/// down) is dropped instead of going back to the pool, so the next operation opens a fresh one.
pub(super) fn settle<T>(
    mut conn: PooledConnection<'static, Manager>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    if matches!(result, Err(StoreError::Unavailable(_))) {
        conn.broken = true;
    }
    result
}
