//! Shared by the PostgreSQL tests: the server URL, and a fresh schema per test, dropped afterwards.

#![allow(dead_code)]

use actguard::PostgresStore;

/// The server the tests use: `ACTGUARD_PG_URL`, or a local server with trust authentication.
pub fn url() -> String {
    std::env::var(PostgresStore::URL_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test uses.
pub fn fresh_schema_name() -> String {
    format!("actguard_test_{}", uuid::Uuid::now_v7().simple())
}

/// Drops its schema (and everything in it) when dropped.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot block on a future: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let client = connect(&url).await;
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '30s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
            })
        })
        .join();
        if !std::thread::panicking() {
            dropped
                .expect("the schema drop ran")
                .expect("the test schema can be dropped");
        }
    }
}

/// A plain client for the tests' own checks, panicking with a clear message without a server.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{}", no_server(&e.to_string())));
    tokio::spawn(connection);
    client
}

/// The message of a test that cannot reach its server.
pub fn no_server(e: &str) -> String {
    format!(
        "the PostgreSQL tests need a server at {} ({e}): start one, or set {} to a \
         postgres://user@host:port/database URL",
        url(),
        PostgresStore::URL_ENV
    )
}

/// A store in a fresh schema of the test server, and the guard that drops the schema.
pub async fn fresh_store() -> (PostgresStore, Schema) {
    let url = url();
    let name = fresh_schema_name();
    let store = PostgresStore::connect_with_schema(&url, &name)
        .await
        .unwrap_or_else(|e| panic!("{}", no_server(&e.to_string())));
    (store, Schema { url, name })
}

/// A store in a fresh schema that the conformance suite can open again.
pub struct Fixture {
    pub store: PostgresStore,
    pub schema: Schema,
}

impl actguard::conformance::Fixture for Fixture {
    fn store(&self) -> &dyn actguard::Store {
        &self.store
    }

    /// The same schema, connected to again.
    fn reopen(&self) -> actguard::conformance::Reopened<'_> {
        Box::pin(async move {
            let again = PostgresStore::connect_with_schema(&self.schema.url, &self.schema.name)
                .await
                .expect("the store connects again");
            Some(Box::new(again) as Box<dyn actguard::Store>)
        })
    }
}

/// [`fresh_store`] as a conformance fixture.
pub async fn fresh_fixture() -> Fixture {
    let (store, schema) = fresh_store().await;
    Fixture { store, schema }
}
