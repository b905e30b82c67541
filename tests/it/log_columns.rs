//! The queryable columns of the SQLite log (copies of entry fields next to the hashed entry) and its
//! query index: `verify` reports a row or an index row that disagrees with its hashed entry as
//! tampering, naming the entry and the column; queries never return such a row; and a head kept
//! outside the store detects entries deleted from the end of the log.

use std::path::{Path, PathBuf};

use actguard::{HeadError, LogHead, LogQuery, SqliteStore, Store, StoreError, VerifyError};
use actguard_tests::{column_edits, log_entry};
use tempfile::TempDir;

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("actguard.db")
}

/// A store at `path` with entries 1..=n.
async fn store_with(path: &Path, n: u64) -> SqliteStore {
    let store = SqliteStore::open(path).expect("the store opens");
    for i in 1..=n {
        store.append_log(&log_entry(i)).await.expect("appended");
    }
    store
}

fn raw(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
}

fn corrupt<T: std::fmt::Debug>(r: Result<T, VerifyError>) -> String {
    match r {
        Err(VerifyError::Store(StoreError::Corrupt(m))) => m.to_string(),
        other => panic!("expected the log reported as tampered, got {other:?}"),
    }
}

#[tokio::test]
async fn verify_reports_each_edited_queryable_column_naming_the_entry_and_the_column() {
    for (column, assignment, _) in column_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let store = store_with(&path, 5).await;
        actguard::verify(&store).await.expect("the log verifies");
        raw(&path, &format!("UPDATE log SET {assignment} WHERE seq = 3"));
        let m = corrupt(actguard::verify(&store).await);
        assert!(m.contains("log entry 3 was tampered with"), "{column}: {m}");
        assert!(m.contains(&format!("`{column}` column")), "{column}: {m}");
    }
}

#[tokio::test]
async fn a_query_errors_instead_of_returning_a_row_whose_column_disagrees_with_its_entry() {
    for (column, assignment, query) in column_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let store = store_with(&path, 5).await;
        raw(&path, &format!("UPDATE log SET {assignment} WHERE seq = 3"));
        match store.log(&query).await {
            Err(StoreError::Corrupt(m)) => {
                assert!(m.contains("log entry 3"), "{column}: {m}");
                assert!(m.contains(&format!("`{column}` column")), "{column}: {m}");
            }
            other => panic!("{column}: expected an error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_column_of_a_text_type_where_an_integer_belongs_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = store_with(&path, 3).await;
    raw(&path, "UPDATE log SET at_ms = 'soon' WHERE seq = 2");
    let m = corrupt(actguard::verify(&store).await);
    assert!(
        m.contains("log entry 2") && m.contains("`at_ms` column"),
        "{m}"
    );
}

/// More entries than the writer indexes at once (256): the first ones are in `log_index`.
const INDEXED: u64 = 300;

#[tokio::test]
async fn an_edited_column_of_an_indexed_entry_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = store_with(&path, INDEXED).await;
    actguard::verify(&store).await.expect("the log verifies");
    raw(&path, "UPDATE log SET record = 'rec-other' WHERE seq = 10");
    let m = corrupt(actguard::verify(&store).await);
    assert!(
        m.contains("log entry 10") && m.contains("`record` column"),
        "{m}"
    );
}

#[tokio::test]
async fn an_index_row_that_disagrees_with_its_log_row_is_reported() {
    for (kind, column, value) in [
        (0, "run_id", "'00000000-0000-0000-0000-000000000063'"),
        (1, "action", "'refund'"),
        (2, "record", "'rec-other'"),
        (3, "at_ms", "5"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let store = store_with(&path, INDEXED).await;
        actguard::verify(&store).await.expect("the log verifies");
        raw(
            &path,
            &format!("UPDATE log_index SET value = {value} WHERE kind = {kind} AND seq = 10"),
        );
        let m = corrupt(actguard::verify(&store).await);
        assert!(
            m.contains("log entry 10 was tampered with"),
            "{column}: {m}"
        );
        assert!(m.contains(&format!("`{column}` copy")), "{column}: {m}");
    }
}

#[tokio::test]
async fn rows_missing_from_the_index_below_its_high_water_mark_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = store_with(&path, INDEXED).await;
    raw(&path, "DELETE FROM log_index WHERE kind = 2 AND seq = 7");
    let m = corrupt(actguard::verify(&store).await);
    assert!(
        m.contains("log entry 7") && m.contains("`record` copy is missing from the log index"),
        "{m}"
    );
}

#[tokio::test]
async fn verify_report_returns_the_count_and_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(&db(&dir), 4).await;
    let last = store
        .log(&LogQuery::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    let report = actguard::verify_report(&store, None).await.unwrap();
    assert_eq!(report.entries, 4);
    let head = report.head.expect("a head");
    assert_eq!(head.seq, 4);
    assert_eq!(head.hash, last.hash.as_str());
    assert_eq!(head.to_string().parse::<LogHead>().unwrap(), head);
    // The head still holds after more entries: the log grew, it was not cut.
    store.append_log(&log_entry(5)).await.unwrap();
    let later = actguard::verify_report(&store, Some(&head)).await.unwrap();
    assert_eq!(later.entries, 5);

    let empty_dir = tempfile::tempdir().unwrap();
    let empty = SqliteStore::open(db(&empty_dir)).unwrap();
    let report = actguard::verify_report(&empty, None).await.unwrap();
    assert_eq!((report.entries, report.head), (0, None));
}

#[tokio::test]
async fn deleting_the_last_rows_fails_the_expected_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = store_with(&path, 5).await;
    let old = actguard::verify_report(&store, None)
        .await
        .unwrap()
        .head
        .unwrap();
    raw(&path, "DELETE FROM log WHERE seq >= 4");
    // The chain alone still verifies: what is left is a valid, shorter chain.
    let report = actguard::verify_report(&store, None).await.unwrap();
    assert_eq!(report.head.map(|h| h.seq), Some(3));
    match actguard::verify_report(&store, Some(&old)).await {
        Err(VerifyError::Head(HeadError::Missing { expected, last })) => {
            assert_eq!((expected.seq, last), (5, 3));
        }
        other => panic!("expected the head missing, got {other:?}"),
    }
    raw(&path, "DELETE FROM log");
    assert!(matches!(
        actguard::verify_report(&store, Some(&old)).await,
        Err(VerifyError::Head(HeadError::Missing { last: 0, .. }))
    ));
}

#[tokio::test]
async fn a_chain_rewritten_after_a_deletion_fails_the_expected_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = store_with(&path, 5).await;
    let old = actguard::verify_report(&store, None)
        .await
        .unwrap()
        .head
        .unwrap();
    raw(&path, "DELETE FROM log WHERE seq >= 4");
    for i in 4..=5 {
        let mut e = log_entry(i);
        e.record = "rec-rewritten".into();
        store.append_log(&e).await.unwrap();
    }
    let report = actguard::verify_report(&store, None).await.unwrap();
    assert_eq!(report.head.as_ref().map(|h| h.seq), Some(5));
    match actguard::verify_report(&store, Some(&old)).await {
        Err(VerifyError::Head(HeadError::Differs { expected, found })) => {
            assert_eq!(expected, old);
            assert_eq!(Some(found), report.head.map(|h| h.hash));
        }
        other => panic!("expected another hash, got {other:?}"),
    }
}

#[tokio::test]
async fn deleting_indexed_entries_from_the_end_is_reported_by_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = store_with(&path, INDEXED).await;
    raw(&path, "DELETE FROM log WHERE seq > 200");
    let m = corrupt(actguard::verify(&store).await);
    assert!(m.contains("not in the log"), "{m}");
}
