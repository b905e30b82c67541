//! [`PostgresStore`]: the store for agents that run on many machines (feature `postgres`).
//!
//! This file holds the store, its options, connecting, and the [`Store`] impl, whose every method
//! takes a pooled connection and calls one function of `apply` (the writes, each applying the
//! rulebook's plan in one transaction), `chain` (the action log) or `reads`. Those run their SQL
//! through `statements` and decode rows with `rows`; `schema` creates and migrates the tables,
//! `pool` keeps the connections, `server` names the server in errors and `tls` encrypts.

mod apply;
mod chain;
mod pool;
mod reads;
mod rows;
mod schema;
mod server;
mod statements;
mod tls;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use self::pool::{Conn, LastError, Manager, Pool, settle};
use self::server::{Server, bad_url, redact};
use self::statements::{Db, Statements};

use crate::log::{LogEntry, LogHead, LogQuery, NewLogEntry};
use crate::redacted::RedactionKey;
use crate::store::{
    Appended, Begin, BeginRequest, Completion, Failure, KeyState, Millis, QueueEntry, QueueQuery,
    QueueUpdate, Renewal, RunState, Store, StoreError,
};

/// The store in a PostgreSQL schema (feature `postgres`), shared by every process that connects to it.
///
/// Every process that connects to the same database and schema shares the same claims, leases,
/// fencing tokens, loop filter, halted runs, queues and action log, with the rules documented on
/// [`Store`].
///
/// # How each operation is made atomic across processes
///
/// Every write is one short transaction (`READ COMMITTED`) that answers only after it committed:
///
/// - `begin` first takes a transaction-scoped advisory lock on the key (`pg_advisory_xact_lock`, so two
///   processes beginning the same key — even one that has no row yet — are serialized), then locks the
///   key's row (`SELECT ... FOR UPDATE`) and the record's row (an `INSERT ... ON CONFLICT DO UPDATE`
///   that creates it if needed and locks it). Every check is then made on the latest committed state,
///   and the claim (next fencing token, record lease, key claim) is one statement.
/// - `complete` and `fail` are conditional updates: `UPDATE keys ... WHERE state = 'claimed' AND
///   claim_id = $claim`. A claim that was taken over updates no row and gets
///   [`StoreError::ClaimLost`] with nothing changed.
/// - Locks are always taken in the same order — key, queue entry, record, log head — so operations
///   never deadlock each other. An operator's `queue_update` locks the entry's row (`SELECT ... FOR
///   UPDATE`), checks the transition ([`QueueOp::check`](crate::store::QueueOp::check)) and appends its
///   log entry in the same transaction.
/// - Fencing tokens are `last_token + 1` on the record's row, under its row lock: strictly increasing
///   per record, whichever process claims.
///
/// # The action log under concurrent writers
///
/// The chain has one head row (`log_head`: the last `seq` and `hash`). An append, in the same
/// transaction as the change it logs, locks that row (`SELECT ... FOR UPDATE`), computes the entry
/// with [`LogEntry::chain_after`] (so hashes are byte-for-byte those of every other store), inserts
/// it and moves the head. The lock is held until commit, so appends from every connection of every
/// process are totally ordered: each one sees the head its predecessor committed, `seq` has no gap
/// (a rolled-back append also rolls back its head move) and the chain never forks. The head lock is
/// taken last in each transaction, to hold it as briefly as possible.
///
/// # What is durable when
///
/// A write answers only after its transaction committed, so a claim is on the server before `begin`
/// answers [`Begin::Claimed`], and a result, its loop-filter mark, the released lease and the log entry
/// are stored together or not at all. That is as durable as the server's commit: keep
/// `synchronous_commit` on (the default) — with it off, a server crash can lose the last claims.
///
/// A process killed at any point leaves at most a claim whose lease will expire; a later `begin` of the
/// same key in any process takes it over ([`Claim::takeover`](crate::store::Claim::takeover)) with the
/// next fencing token, and a `complete` of the dead claim would get [`StoreError::ClaimLost`].
///
/// # Errors
///
/// Nothing is acted on without a claim: any error of the server, the network or the pool is a
/// [`StoreError`], whose message names the server (`host:port`, database, user) and what to check.
///
/// # TLS
///
/// The URL's `sslmode` says whether connections are encrypted and what is checked, as libpq reads it
/// (`postgres://...?sslmode=verify-full`, or `sslmode=verify-full` in the `key=value` form):
///
/// | `sslmode` | encrypted | the server's certificate |
/// |---|---|---|
/// | `disable` | never | not asked for |
/// | `prefer` (without `sslmode`) | when the server offers TLS; in plain text when it does not, or when the handshake fails | not checked |
/// | `require` | always, or no connection | not checked |
/// | `verify-ca` | always, or no connection | must chain to a trusted root; the host name is not checked |
/// | `verify-full` | always, or no connection | must chain to a trusted root and name the host connected to |
///
/// `prefer` and `require` encrypt without authenticating the server, as libpq does: they protect
/// against reading the traffic on the wire, not against a machine in the middle that presents a
/// certificate of its own. Use `verify-full` where that matters.
///
/// The trusted roots are the PEM certificates of the file named by `sslrootcert=PATH` in the URL (or
/// [`PostgresOptions::ssl_root_cert`], which makes the default `verify-full`; the URL wins), else the
/// platform's (the operating system's store, or `SSL_CERT_FILE` and `SSL_CERT_DIR`;
/// `sslrootcert=system` names them and requires `verify-full`, as libpq). As in libpq, `prefer` and
/// `require` given an `sslrootcert` check the chain as `verify-ca` does. A self-signed
/// server certificate given as its own `sslrootcert` is trusted, whether or not it is marked as a CA.
/// `verify-full` checks the names of the certificate's subjectAltName (and not its subject's CN).
/// Over a Unix socket there is no TLS, whatever the `sslmode`. Over TLS, SCRAM authentication is bound
/// to the connection (`SCRAM-SHA-256-PLUS`; `channel_binding=require` in the URL insists on it). TLS
/// is rustls (TLS 1.2 and 1.3); client certificates (`sslcert`, `sslkey`) are not supported.
///
/// A connection refused for TLS is a [`StoreError::Unavailable`] naming the server and the reason:
/// the server does not accept TLS and `sslmode` allows no plain text, its certificate is not trusted
/// by the roots (naming `sslrootcert`), is not valid for the host, or is expired; `sslrootcert`
/// cannot be read or holds no certificate; `sslmode` is not one of the five.
///
/// ```no_run
/// # async fn example() -> Result<(), actguard::StoreError> {
/// let store = actguard::PostgresStore::connect(
///     "postgres://agent@db.internal/agents?sslmode=verify-full&sslrootcert=/etc/actguard/db-ca.pem",
/// )
/// .await?;
/// # Ok(()) }
/// ```
///
/// # Example
///
/// ```no_run
/// # async fn example() -> Result<(), actguard::StoreError> {
/// use actguard::{PostgresStore, Store};
/// let store = PostgresStore::connect("postgres://actguard@db.internal/agents").await?;
/// assert_eq!(store.current_fencing_token("loan-7").await?, None);
/// # Ok(()) }
/// ```
pub struct PostgresStore {
    /// `None` once closed.
    pool: Mutex<Option<Pool>>,
    /// The last error met while opening a connection in the background.
    last_error: LastError,
    schema: String,
    server: Server,
    /// Read when the store connects ([`Store::redaction_key`]).
    redaction: RedactionKey,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.server.to_string())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// How to connect a [`PostgresStore`]: `PostgresStore::options().schema("agents").connect(url)`.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    schema: String,
    max_connections: usize,
    connect_timeout: Duration,
    wait_timeout: Duration,
    ssl_root_cert: Option<PathBuf>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: PostgresStore::DEFAULT_SCHEMA.to_owned(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(30),
            ssl_root_cert: None,
        }
    }
}

impl PostgresOptions {
    /// The schema holding the store's tables (created if missing). Default: `actguard`. Must be a
    /// plain lower-case SQL identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the store opens (each store operation uses one at a time). Default: 16.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long opening one connection may take before failing with [`StoreError::Unavailable`].
    /// Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an operation waits for a free connection when all are busy. Default: 30 s.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// The CA certificates (a PEM file) the server's certificate must chain to, as `sslrootcert=PATH`
    /// in the connection URL, which takes precedence (`system` names the platform's roots here too).
    /// A URL without `sslmode` then means `verify-full`, so that the certificate is always checked;
    /// an `sslmode` in the URL is kept (`prefer` and `require` check the chain as `verify-ca` does,
    /// as libpq). See [TLS](PostgresStore#tls).
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssl_root_cert = Some(path.into());
        self
    }

    /// Connects to the server named by `url` (`postgres://user:password@host:port/database`), creates or
    /// migrates the schema, and returns the store.
    pub async fn connect(self, url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(url, self).await
    }
}

impl PostgresStore {
    /// The schema version this version writes. A schema with a higher version is refused on connect.
    pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

    /// The schema used unless another is given.
    pub const DEFAULT_SCHEMA: &'static str = "actguard";

    /// The environment variable the examples and tests read the connection URL from.
    pub const URL_ENV: &'static str = "ACTGUARD_PG_URL";

    /// Connects to `url` (`postgres://user:password@host:port/database`) and uses schema `actguard`,
    /// creating or migrating it. The URL's `sslmode` and `sslrootcert` choose TLS (see
    /// [TLS](PostgresStore#tls)).
    ///
    /// Fails with [`StoreError::Unavailable`] if the server cannot be reached, refuses the credentials
    /// or has no such database, or TLS cannot be set up as the URL asks, and with
    /// [`StoreError::Corrupt`] if the schema was written by a newer version of actguard; each message
    /// names the server and what to check.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresOptions::default().connect(url).await
    }

    /// Like [`connect`](Self::connect), with the tables in `schema`.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<PostgresStore, StoreError> {
        PostgresOptions::default().schema(schema).connect(url).await
    }

    /// Options for [`PostgresOptions::connect`].
    pub fn options() -> PostgresOptions {
        PostgresOptions::default()
    }

    /// The schema holding this store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Closes every connection; operations after this fail with [`StoreError::Unavailable`].
    pub fn close(&self) {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    async fn connect_with(
        url: &str,
        options: PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let url_tls = tls::UrlTls::split(url).map_err(|reason| bad_url(url, &reason))?;
        let mut config = tokio_postgres::Config::from_str(&url_tls.rest).map_err(|e| {
            StoreError::Unavailable(
                format!(
                    "`{}` is not a PostgreSQL connection URL ({e}): expected \
                 postgres://user:password@host:port/database (check {})",
                    redact(url),
                    Self::URL_ENV
                )
                .into(),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        let tls = tls::Settings::resolve(&url_tls, options.ssl_root_cert.as_deref(), &mut config)
            .map_err(|reason| bad_url(url, &reason))?;
        let server = Server::of(&config, tls.clone());
        let connector = tls
            .connector()
            .map_err(|reason| StoreError::Unavailable(format!("{server}: {reason}").into()))?;
        if !schema::valid_schema_name(&options.schema) {
            return Err(StoreError::Backend(
                format!(
                    "`{}` cannot name the store's schema: use a lower-case SQL identifier \
                 ([a-z_][a-z0-9_]*, at most 63 bytes)",
                    options.schema
                )
                .into(),
            ));
        }
        let last_error = LastError {
            server: server.clone(),
            last: Arc::default(),
        };
        let pool = Pool::builder()
            .max_size(u32::try_from(options.max_connections).unwrap_or(u32::MAX))
            .connection_timeout(options.wait_timeout)
            .test_on_check_out(false)
            .error_sink(Box::new(last_error.clone()))
            .build_unchecked(Manager(tls::Connector::new(config, connector)));
        // The first connection is opened here, so that an unreachable server, refused credentials
        // or a missing database fail `connect` at once with the server's own reason.
        let mut first = pool
            .dedicated_connection()
            .await
            .map_err(|e| server.error(e))?;
        schema::migrate(&mut first.client, &server, &options.schema).await?;
        let redaction = schema::redaction_secret(&first.client, &server, &options.schema).await?;
        // A pool that is already full keeps its own connections; this one is then closed.
        let _ = pool.add(first);
        Ok(PostgresStore {
            pool: Mutex::new(Some(pool)),
            last_error,
            schema: options.schema,
            server,
            redaction,
        })
    }
}

impl PostgresStore {
    /// What an operation runs its statements through: this store's server and schema, and the
    /// connection's prepared statements.
    fn db<'a>(&'a self, statements: &'a Statements) -> Db<'a> {
        Db {
            server: &self.server,
            schema: &self.schema,
            statements,
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn begin(&self, request: &BeginRequest) -> Result<Begin, StoreError> {
        let mut conn = self.client().await?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let result = apply::begin(client, self.db(statements), request).await;
        settle(conn, result)
    }

    async fn renew(&self, renewal: &Renewal) -> Result<Millis, StoreError> {
        let mut conn = self.client().await?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let result = apply::renew(client, self.db(statements), renewal).await;
        settle(conn, result)
    }

    async fn complete(&self, completion: Completion) -> Result<Appended, StoreError> {
        let mut conn = self.client().await?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let result = apply::complete(client, self.db(statements), &completion).await;
        settle(conn, result).map(|logged| Appended::of(&logged))
    }

    async fn fail(&self, failure: Failure) -> Result<LogEntry, StoreError> {
        let mut conn = self.client().await?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let result = apply::fail(client, self.db(statements), &failure).await;
        settle(conn, result)
    }

    async fn append_log(&self, entry: &NewLogEntry) -> Result<LogEntry, StoreError> {
        let mut conn = self.client().await?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let result = chain::append_log(client, self.db(statements), entry).await;
        settle(conn, result)
    }

    async fn log(&self, query: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let conn = self.client().await?;
        let result = chain::log(&conn.client, self.db(&conn.statements), query).await;
        settle(conn, result)
    }

    async fn halt_run(
        &self,
        run_id: Uuid,
        reason: &str,
        now_ms: Millis,
    ) -> Result<bool, StoreError> {
        let conn = self.client().await?;
        let result = apply::halt(
            &conn.client,
            self.db(&conn.statements),
            run_id,
            reason,
            now_ms,
        )
        .await;
        settle(conn, result)
    }

    async fn run_state(&self, run_id: Uuid) -> Result<RunState, StoreError> {
        let conn = self.client().await?;
        let result = reads::run_state(&conn.client, self.db(&conn.statements), run_id).await;
        settle(conn, result)
    }

    async fn current_fencing_token(&self, record: &str) -> Result<Option<u64>, StoreError> {
        let conn = self.client().await?;
        let result = reads::fencing_token(&conn.client, self.db(&conn.statements), record).await;
        settle(conn, result)
    }

    async fn queue_entries(&self, query: &QueueQuery) -> Result<Vec<QueueEntry>, StoreError> {
        let conn = self.client().await?;
        let result = reads::queue_entries(&conn.client, self.db(&conn.statements), query).await;
        settle(conn, result)
    }

    async fn queue_entry(&self, id: u64) -> Result<Option<QueueEntry>, StoreError> {
        let conn = self.client().await?;
        let result = reads::queue_entry(&conn.client, self.db(&conn.statements), id).await;
        settle(conn, result)
    }

    async fn queue_update(&self, update: &QueueUpdate) -> Result<QueueEntry, StoreError> {
        let mut conn = self.client().await?;
        let Conn {
            client, statements, ..
        } = &mut *conn;
        let result = apply::queue_update(client, self.db(statements), update).await;
        settle(conn, result)
    }

    async fn key_state(&self, key_digest: &str) -> Result<Option<KeyState>, StoreError> {
        let conn = self.client().await?;
        let result = reads::key_state(&conn.client, self.db(&conn.statements), key_digest).await;
        settle(conn, result)
    }

    async fn log_head(&self) -> Result<Option<LogHead>, StoreError> {
        let conn = self.client().await?;
        let result = chain::log_head(&conn.client, self.db(&conn.statements)).await;
        settle(conn, result)
    }

    async fn check_log_copies(&self) -> Result<(), StoreError> {
        let conn = self.client().await?;
        let result = chain::check_log_head(&conn.client, self.db(&conn.statements)).await;
        settle(conn, result)
    }

    fn redaction_key(&self) -> Option<RedactionKey> {
        Some(self.redaction.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each statement is prepared once per connection: repeating operations prepares nothing more.
    #[tokio::test]
    async fn a_connection_prepares_each_statement_once() {
        let url = std::env::var(PostgresStore::URL_ENV)
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("actguard_test_{}", Uuid::now_v7().simple());
        let store = PostgresStore::options()
            .schema(&schema)
            .max_connections(1)
            .connect(&url)
            .await
            .expect("the test server");
        let entry = |i: i64| NewLogEntry {
            at_ms: i,
            run_id: Uuid::nil(),
            action: "a".into(),
            record: "r".into(),
            key_text: "k".into(),
            key_digest: "d".into(),
            attempt: 0,
            retry: false,
            outcome: crate::log::Outcome::Operator,
            failure_kind: None,
            route: None,
            message: None,
            queue_entry: None,
            before: None,
            after: None,
            fencing_token: None,
            duration_ms: 0,
        };
        let prepared = || async { store.client().await.unwrap().statements.len() };
        store.append_log(&entry(1)).await.unwrap();
        store.key_state("d").await.unwrap();
        let after_first = prepared().await;
        assert!(after_first > 0);
        for i in 2..10 {
            store.append_log(&entry(i)).await.unwrap();
            store.key_state("d").await.unwrap();
        }
        assert_eq!(prepared().await, after_first);
        assert_eq!(store.log(&LogQuery::default()).await.unwrap().len(), 9);
        let conn = store.client().await.unwrap();
        conn.client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}
