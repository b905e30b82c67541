//! The queryable columns of the PostgreSQL log (copies of entry fields next to the hashed entry) and
//! its chain head: `verify` reports a row that disagrees with its hashed entry as tampering, naming
//! the entry and the column; queries never return such a row; entries deleted from the end of the log
//! are reported by the chain head, and by a head kept outside the store when that was edited too.

use crate::support::pg_support;

use actguard::{HeadError, PostgresStore, Store, StoreError, VerifyError};
use actguard_tests::{column_edits, log_entry};
use pg_support::{Schema, connect, fresh_store};

/// A store in a fresh schema with entries 1..=n.
async fn store_with(n: u64) -> (PostgresStore, Schema) {
    let (store, schema) = fresh_store().await;
    for i in 1..=n {
        store.append_log(&log_entry(i)).await.expect("appended");
    }
    (store, schema)
}

/// Runs `sql` with `@` standing for the test's schema.
async fn raw(schema: &Schema, sql: &str) {
    let client = connect(&schema.url).await;
    client
        .batch_execute(&sql.replace('@', &format!("{}.", schema.name)))
        .await
        .unwrap();
}

fn corrupt<T: std::fmt::Debug>(r: Result<T, VerifyError>) -> String {
    match r {
        Err(VerifyError::Store(StoreError::Corrupt(m))) => m.to_string(),
        other => panic!("expected the log reported as tampered, got {other:?}"),
    }
}

#[tokio::test]
async fn verify_reports_each_edited_queryable_column_naming_the_entry_and_the_column() {
    let (store, schema) = store_with(5).await;
    actguard::verify(&store).await.expect("the log verifies");
    for (column, assignment, _) in column_edits() {
        raw(
            &schema,
            "DROP TABLE IF EXISTS @saved; CREATE TABLE @saved AS SELECT * FROM @log WHERE seq = 3",
        )
        .await;
        raw(
            &schema,
            &format!("UPDATE @log SET {assignment} WHERE seq = 3"),
        )
        .await;
        let m = corrupt(actguard::verify(&store).await);
        assert!(m.contains("log entry 3 was tampered with"), "{column}: {m}");
        assert!(m.contains(&format!("`{column}` column")), "{column}: {m}");
        assert!(m.contains(&schema.name), "{column}: {m}");
        // Put the row back for the next column.
        raw(
            &schema,
            "DELETE FROM @log WHERE seq = 3; INSERT INTO @log SELECT * FROM @saved",
        )
        .await;
        actguard::verify(&store)
            .await
            .expect("the restored log verifies");
    }
}

#[tokio::test]
async fn a_query_errors_instead_of_returning_a_row_whose_column_disagrees_with_its_entry() {
    let (store, schema) = store_with(5).await;
    for (column, assignment, query) in column_edits() {
        raw(
            &schema,
            "DROP TABLE IF EXISTS @saved; CREATE TABLE @saved AS SELECT * FROM @log WHERE seq = 3",
        )
        .await;
        raw(
            &schema,
            &format!("UPDATE @log SET {assignment} WHERE seq = 3"),
        )
        .await;
        match store.log(&query).await {
            Err(StoreError::Corrupt(m)) => {
                assert!(m.contains("log entry 3"), "{column}: {m}");
                assert!(m.contains(&format!("`{column}` column")), "{column}: {m}");
            }
            other => panic!("{column}: expected an error, got {other:?}"),
        }
        raw(
            &schema,
            "DELETE FROM @log WHERE seq = 3; INSERT INTO @log SELECT * FROM @saved",
        )
        .await;
    }
}

#[tokio::test]
async fn deleting_the_last_rows_is_reported_by_the_chain_head() {
    let (store, schema) = store_with(5).await;
    raw(&schema, "DELETE FROM @log WHERE seq >= 4").await;
    let m = corrupt(actguard::verify(&store).await);
    assert!(
        m.contains("`log_head`") && m.contains("is entry 5 but the log ends at entry 3"),
        "{m}"
    );
    raw(&schema, "DELETE FROM @log").await;
    let m = corrupt(actguard::verify(&store).await);
    assert!(m.contains("the log ends at entry 0"), "{m}");
}

#[tokio::test]
async fn deleting_the_last_rows_and_moving_the_chain_head_fails_the_expected_head() {
    let (store, schema) = store_with(5).await;
    let old = actguard::verify_report(&store, None)
        .await
        .unwrap()
        .head
        .unwrap();
    assert_eq!(old.seq, 5);
    raw(
        &schema,
        "DELETE FROM @log WHERE seq >= 4;
         UPDATE @log_head SET seq = 3, hash = (SELECT hash FROM @log WHERE seq = 3)",
    )
    .await;
    let report = actguard::verify_report(&store, None).await.unwrap();
    assert_eq!(report.head.map(|h| h.seq), Some(3));
    match actguard::verify_report(&store, Some(&old)).await {
        Err(VerifyError::Head(HeadError::Missing { expected, last })) => {
            assert_eq!((expected.seq, last), (5, 3));
        }
        other => panic!("expected the head missing, got {other:?}"),
    }
    // Appending again rewrites entries 4 and 5 with other hashes.
    store.append_log(&log_entry(40)).await.unwrap();
    store.append_log(&log_entry(50)).await.unwrap();
    assert!(matches!(
        actguard::verify_report(&store, Some(&old)).await,
        Err(VerifyError::Head(HeadError::Differs { .. }))
    ));
}

#[tokio::test]
async fn verify_report_returns_the_count_and_the_head() {
    let (store, _schema) = store_with(3).await;
    let report = actguard::verify_report(&store, None).await.unwrap();
    assert_eq!(report.entries, 3);
    let head = report.head.unwrap();
    let last = store
        .log(&actguard::LogQuery::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!((head.seq, head.hash.as_str()), (3, last.hash.as_str()));
}
