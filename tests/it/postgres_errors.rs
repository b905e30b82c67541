//! `PostgresStore` errors a user can act on: unreachable server, refused credentials, missing
//! database, a schema from a newer version, a bad URL or schema name, a connection lost under a
//! running store; and migrations that many processes may run at once.

use crate::support::pg_support;

use std::time::{Duration, Instant};

use actguard::store::{Begin, BeginRequest};
use actguard::{PostgresStore, Store, StoreError};
use pg_support::{Schema, connect, fresh_schema_name, fresh_store, url};

fn request(key: &str) -> BeginRequest {
    actguard_tests::begin_request("ship", key, &format!("rec-{key}"), 1_700_000_000_000)
}

/// The test server's URL with another user and database.
fn url_with(user: &str, database: &str) -> String {
    let base = url();
    let rest = base
        .split_once("://")
        .map(|(_, r)| r)
        .expect("a postgres:// URL");
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    let host = host.split_once('/').map_or(host, |(h, _)| h);
    format!("postgres://{user}@{host}/{database}")
}

#[tokio::test]
async fn unreachable_server_fails_fast_naming_host_port_and_url_variable() {
    let started = Instant::now();
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connection refused is reported at once, took {:?}",
        started.elapsed()
    );
    let StoreError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(msg.contains("ACTGUARD_PG_URL"), "{msg}");
    assert!(msg.contains("check that the server is running"), "{msg}");
}

#[tokio::test]
async fn unknown_user_is_refused_with_a_credentials_message() {
    let err = PostgresStore::connect(&url_with("actguard_no_such_user", "test"))
        .await
        .expect_err("the role does not exist");
    let StoreError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(
        msg.contains("refused the credentials of user `actguard_no_such_user`"),
        "{msg}"
    );
    assert!(msg.contains("ACTGUARD_PG_URL"), "{msg}");
}

#[tokio::test]
async fn missing_database_is_named() {
    let err = PostgresStore::connect(&url_with("postgres", "actguard_no_such_db"))
        .await
        .expect_err("the database does not exist");
    let StoreError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(
        msg.contains("database `actguard_no_such_db` does not exist"),
        "{msg}"
    );
    // The driver's own error is kept: a caller can read the SQLSTATE the server sent.
    let source = std::error::Error::source(&err).expect("the driver's error is the source");
    let driver = source
        .downcast_ref::<tokio_postgres::Error>()
        .expect("a tokio_postgres::Error");
    assert_eq!(
        driver.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
    );
}

#[tokio::test]
async fn malformed_url_is_refused_without_leaking_the_password() {
    let err = PostgresStore::connect("postgres://u:hunter2@127.0.0.1:notaport/test")
        .await
        .expect_err("the port is not a number");
    let StoreError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(msg.contains("is not a PostgreSQL connection URL"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn schema_name_must_be_a_plain_identifier() {
    let err = PostgresStore::connect_with_schema(&url(), "x; DROP TABLE y")
        .await
        .expect_err("not an identifier");
    assert!(
        err.to_string().contains("cannot name the store's schema"),
        "{err}"
    );
}

#[tokio::test]
async fn schema_from_a_newer_version_is_refused() {
    let (store, schema) = fresh_store().await;
    drop(store);
    let client = connect(&schema.url).await;
    client
        .execute(
            &format!("UPDATE {}.schema_version SET version = $1", schema.name),
            &[&(PostgresStore::SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = PostgresStore::connect_with_schema(&schema.url, &schema.name)
        .await
        .expect_err("a newer schema is refused");
    let StoreError::Corrupt(msg) = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    let newer = PostgresStore::SCHEMA_VERSION + 1;
    assert!(msg.contains(&format!("has version {newer}")), "{msg}");
    assert!(msg.contains("upgrade actguard"), "{msg}");
    assert!(msg.contains(&schema.name), "{msg}");
}

#[tokio::test]
async fn reconnecting_keeps_the_data_and_the_version() {
    let (store, schema) = fresh_store().await;
    let Begin::Claimed(_) = store.begin(&request("k1")).await.unwrap() else {
        panic!("a fresh key is claimed");
    };
    drop(store);
    let again = PostgresStore::connect_with_schema(&schema.url, &schema.name)
        .await
        .unwrap();
    assert_eq!(
        again.current_fencing_token("rec-k1").await.unwrap(),
        Some(1)
    );
    let version: i64 = connect(&schema.url)
        .await
        .query_one(
            &format!("SELECT version FROM {}.schema_version", schema.name),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, PostgresStore::SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stores_migrating_one_new_schema_at_once_all_succeed() {
    let schema = Schema {
        url: url(),
        name: fresh_schema_name(),
    };
    let connects: Vec<_> = (0..8)
        .map(|_| {
            let (url, name) = (schema.url.clone(), schema.name.clone());
            tokio::spawn(async move { PostgresStore::connect_with_schema(&url, &name).await })
        })
        .collect();
    let mut ids = Vec::new();
    for c in connects {
        let store = c
            .await
            .unwrap()
            .expect("every concurrent migration succeeds");
        ids.push(store.redaction_key().expect("a secret").id());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one schema, one redaction secret: {ids:?}");
}

/// A schema of version 3 (before the redaction secret) keeps its data and gets a secret of its own
/// when a newer version connects; the secret then stays.
#[tokio::test]
async fn a_version_3_schema_gets_a_redaction_secret_once() {
    let (store, schema) = fresh_store().await;
    let Begin::Claimed(_) = store.begin(&request("k1")).await.unwrap() else {
        panic!("a fresh key is claimed");
    };
    let first = store.redaction_key().unwrap().id();
    drop(store);
    let client = connect(&schema.url).await;
    client
        .batch_execute(&format!(
            "DROP TABLE {0}.settings; UPDATE {0}.schema_version SET version = 3",
            schema.name
        ))
        .await
        .unwrap();
    let upgraded = PostgresStore::connect_with_schema(&schema.url, &schema.name)
        .await
        .unwrap();
    let secret = upgraded.redaction_key().unwrap().id();
    assert_ne!(secret, first, "a new secret, drawn by the upgrade");
    assert_eq!(
        upgraded.current_fencing_token("rec-k1").await.unwrap(),
        Some(1)
    );
    let again = PostgresStore::connect_with_schema(&schema.url, &schema.name)
        .await
        .unwrap();
    assert_eq!(again.redaction_key().unwrap().id(), secret);
    let stored: Vec<u8> = client
        .query_one(
            &format!(
                "SELECT value FROM {}.settings WHERE name = 'redaction_key'",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.len(), actguard::RedactionKey::SECRET_LEN);
    // A schema whose secret was removed is refused: its digests cannot be computed again.
    client
        .batch_execute(&format!("DELETE FROM {}.settings", schema.name))
        .await
        .unwrap();
    let lost = PostgresStore::connect_with_schema(&schema.url, &schema.name)
        .await
        .expect_err("no secret");
    assert!(
        matches!(&lost, StoreError::Corrupt(m) if m.contains("lost its redaction secret")),
        "{lost:?}"
    );
}

#[tokio::test]
async fn a_lost_connection_is_replaced_and_never_yields_a_claim_the_server_lacks() {
    let schema_name = fresh_schema_name();
    let app = format!("lost_{}", &schema_name[14..]);
    let store_url = format!("{}?application_name={app}", url());
    let store = PostgresStore::options()
        .schema(schema_name.clone())
        .max_connections(1)
        .connect(&store_url)
        .await
        .unwrap();
    let schema = Schema {
        url: url(),
        name: schema_name,
    };
    let killer = connect(&url()).await;
    let killed = killer
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "the store's one connection was terminated");
    // Whether the store notices the dead connection before or during the next begin, it never answers
    // with a claim that is not on the server: it fails closed, or claims on a fresh connection.
    let check = connect(&url()).await;
    let token = |record: &'static str| {
        let (check, schema) = (&check, &schema.name);
        async move {
            check
                .query_opt(
                    &format!("SELECT last_token FROM {schema}.records WHERE record = $1 AND last_token > 0"),
                    &[&record],
                )
                .await
                .unwrap()
                .map(|r| r.get::<_, i64>(0))
        }
    };
    match store.begin(&request("k1")).await {
        Err(StoreError::Unavailable(_) | StoreError::Backend(_)) => {
            assert_eq!(
                token("rec-k1").await,
                None,
                "a failed begin claimed nothing"
            )
        }
        Ok(Begin::Claimed(c)) => {
            assert_eq!(token("rec-k1").await, Some(c.fencing_token as i64))
        }
        other => panic!("unexpected answer: {other:?}"),
    }
    // The broken connection is replaced: the store works again.
    let again = store.begin(&request("k2")).await.unwrap();
    let Begin::Claimed(c) = again else {
        panic!("a fresh key is claimed: {again:?}");
    };
    assert_eq!(token("rec-k2").await, Some(c.fencing_token as i64));
}

#[tokio::test]
async fn a_closed_store_refuses_every_operation() {
    let (store, _schema) = fresh_store().await;
    store.close();
    let err = store.begin(&request("k1")).await.expect_err("closed");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_tampered_table_is_an_error_never_a_claim_or_a_panic() {
    let (store, schema) = fresh_store().await;
    connect(&schema.url)
        .await
        .batch_execute(&format!(
            "ALTER TABLE {}.records ALTER COLUMN lease_until_ms TYPE text",
            schema.name
        ))
        .await
        .unwrap();
    let answer = store.begin(&request("k1")).await;
    let Err(StoreError::Corrupt(msg)) = &answer else {
        panic!("expected Corrupt, got {answer:?}");
    };
    assert!(msg.contains(&schema.name), "{msg}");
}
