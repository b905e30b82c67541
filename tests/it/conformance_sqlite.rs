//! The Store conformance suite against `SqliteStore`, file-backed in a temporary directory.

use actguard::conformance::{Fixture, Reopened};
use actguard::{SqliteStore, Store};
use tempfile::TempDir;

/// A store in its own directory, which lives as long as the test.
struct FileStore {
    store: SqliteStore,
    dir: TempDir,
}

impl Fixture for FileStore {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    /// The same file, opened again.
    fn reopen(&self) -> Reopened<'_> {
        let path = self.dir.path().join("actguard.db");
        Box::pin(async move {
            let again = SqliteStore::open(path).expect("the store opens again");
            Some(Box::new(again) as Box<dyn Store>)
        })
    }
}

/// A fresh store in its own directory.
fn file_store() -> FileStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("actguard.db")).expect("the store opens");
    FileStore { store, dir }
}

actguard::conformance_suite!(file_store());

/// The same suite against the in-memory variant.
mod in_memory {
    actguard::conformance_suite!(actguard::SqliteStore::open_in_memory().expect("the store opens"));
}

/// What only a file-backed store can show: durability across reopen, and the group commit's isolation
/// of requests that share a transaction.
mod sqlite_only {
    use std::sync::Arc;

    use actguard::log::{LogQuery, NewLogEntry, Outcome};
    use actguard::store::{Begin, BeginRequest, Completion};
    use actguard::{SqliteStore, Store, StoreError, verify_chain};
    use uuid::Uuid;

    const T0: i64 = 1_700_000_000_000;

    fn request(n: u128) -> BeginRequest {
        BeginRequest {
            run_id: Uuid::from_u128(1),
            payload: actguard::PayloadJson::from(serde_json::json!({ "n": n.to_string() })),
            claim_id: Uuid::from_u128(1_000 + n),
            ..actguard_tests::begin_request("disburse", &format!("k{n}"), &format!("rec-{n}"), T0)
        }
    }

    fn completion(r: &BeginRequest, claim_id: Uuid) -> Completion {
        Completion {
            key_digest: r.key_digest.clone(),
            claim_id,
            action: r.action.clone(),
            record: r.record.clone(),
            result: serde_json::json!(r.key_text),
            entry: NewLogEntry {
                at_ms: T0 + 1,
                run_id: r.run_id,
                action: r.action.clone(),
                record: r.record.clone(),
                key_text: r.key_text.clone(),
                key_digest: r.key_digest.clone(),
                attempt: 1,
                retry: false,
                outcome: Outcome::Succeeded,
                failure_kind: None,
                route: None,
                message: None,
                queue_entry: None,
                before: None,
                after: None,
                fencing_token: Some(1),
                duration_ms: 1,
            },
            now_ms: T0 + 1,
            replay_of: None,
        }
    }

    #[tokio::test]
    async fn claims_and_completions_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actguard.db");
        let (held, done) = (request(1), request(2));
        {
            let store = SqliteStore::open(&path).unwrap();
            assert!(matches!(
                store.begin(&held).await.unwrap(),
                Begin::Claimed(_)
            ));
            assert!(matches!(
                store.begin(&done).await.unwrap(),
                Begin::Claimed(_)
            ));
            store
                .complete(completion(&done, done.claim_id))
                .await
                .unwrap();
            // Dropped without `close`: what was answered is already on disk.
        }
        let store = SqliteStore::open(&path).unwrap();
        let again = |r: &BeginRequest| BeginRequest {
            claim_id: Uuid::from_u128(99),
            now_ms: T0 + 2,
            ..r.clone()
        };
        assert_eq!(
            store.begin(&again(&held)).await.unwrap(),
            Begin::InProgress {
                lease_until_ms: T0 + 30_000
            }
        );
        assert_eq!(
            store.begin(&again(&done)).await.unwrap(),
            Begin::Completed {
                result: serde_json::json!("k2"),
                completed_at_ms: T0 + 1
            }
        );
        let log = store.log(&LogQuery::default()).await.unwrap();
        assert_eq!(verify_chain(&log), Ok(1));
    }

    /// A completion that fails after its first change (here the log refuses the entry, after the
    /// key was already marked completed) poisons its batch: the whole transaction is rolled back, the
    /// caller gets an error, and the claim is as it was, not half completed.
    #[tokio::test]
    async fn a_write_failing_part_way_commits_nothing_of_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actguard.db");
        let r = request(1);
        {
            let store = SqliteStore::open(&path).unwrap();
            assert!(matches!(store.begin(&r).await.unwrap(), Begin::Claimed(_)));
        }
        let refuse_log = |sql: &str| {
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute_batch(sql)
                .unwrap()
        };
        refuse_log(
            "CREATE TRIGGER refuse_log BEFORE INSERT ON log
             BEGIN SELECT RAISE(ABORT, 'the log refuses this entry'); END;",
        );
        {
            let store = SqliteStore::open(&path).unwrap();
            let failed = store.complete(completion(&r, r.claim_id)).await;
            assert!(
                matches!(failed, Err(StoreError::Backend(ref m)) if m.contains("the log refuses")),
                "{failed:?}"
            );
        }
        refuse_log("DROP TRIGGER refuse_log;");
        let store = SqliteStore::open(&path).unwrap();
        let other = BeginRequest {
            claim_id: Uuid::from_u128(99),
            now_ms: T0 + 2,
            ..r.clone()
        };
        assert_eq!(
            store.begin(&other).await.unwrap(),
            Begin::InProgress {
                lease_until_ms: T0 + 30_000
            },
            "the key is still claimed, not completed"
        );
        assert!(store.log(&LogQuery::default()).await.unwrap().is_empty());
        // The claim that held the key still completes once the log accepts entries again.
        store.complete(completion(&r, r.claim_id)).await.unwrap();
        let log = store.log(&LogQuery::default()).await.unwrap();
        assert_eq!(verify_chain(&log), Ok(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_request_does_not_undo_the_others_in_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("actguard.db")).unwrap());
        let requests: Vec<BeginRequest> = (0..64).map(request).collect();
        for r in &requests {
            assert!(matches!(store.begin(r).await.unwrap(), Begin::Claimed(_)));
        }
        // Sent together, so they share transactions: every other one names a claim it does not hold.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, r) in requests.iter().cloned().enumerate() {
            let store = store.clone();
            tasks.spawn(async move {
                let claim_id = if i % 2 == 0 {
                    r.claim_id
                } else {
                    Uuid::from_u128(7)
                };
                (i, store.complete(completion(&r, claim_id)).await)
            });
        }
        for (i, answer) in tasks.join_all().await {
            if i % 2 == 0 {
                assert!(answer.is_ok(), "{i}: {answer:?}");
            } else {
                assert!(
                    matches!(answer, Err(StoreError::ClaimLost { .. })),
                    "{i}: {answer:?}"
                );
            }
        }
        let log = store.log(&LogQuery::default()).await.unwrap();
        assert_eq!(verify_chain(&log), Ok(32));
        for (i, r) in requests.iter().enumerate() {
            let later = BeginRequest {
                claim_id: Uuid::from_u128(5_000 + i as u128),
                now_ms: T0 + 2,
                ..r.clone()
            };
            let answer = store.begin(&later).await.unwrap();
            if i % 2 == 0 {
                assert!(matches!(answer, Begin::Completed { .. }), "{i}: {answer:?}");
            } else {
                assert!(
                    matches!(answer, Begin::InProgress { .. }),
                    "{i}: {answer:?}"
                );
            }
        }
    }

    /// A log entry for the query test: three runs, four actions, seven records, times out of order.
    fn entry(i: u64) -> NewLogEntry {
        NewLogEntry {
            at_ms: T0 + (i * 37 % 500) as i64,
            run_id: Uuid::from_u128(1 + u128::from(i % 3)),
            action: format!("a{}", i % 4).into(),
            record: format!("r{}", i % 7).into(),
            key_text: format!("k{i}").into(),
            key_digest: format!("d{i}").into(),
            attempt: 0,
            retry: false,
            outcome: if i.is_multiple_of(5) {
                Outcome::Skipped
            } else {
                Outcome::Operator
            },
            failure_kind: None,
            route: None,
            message: None,
            queue_entry: None,
            before: None,
            after: Some(serde_json::json!({ "i": i })),
            fencing_token: None,
            duration_ms: 0,
        }
    }

    async fn append_concurrently(store: &Arc<SqliteStore>, range: std::ops::Range<u64>) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in range {
            let store = store.clone();
            tasks.spawn(async move { store.append_log(&entry(i)).await.unwrap() });
        }
        tasks.join_all().await;
    }

    /// Every query answers what filtering the whole log answers, whether its entries were already
    /// added to the writer's log index or not yet.
    async fn queries_match_the_whole_log(store: &SqliteStore) {
        let all = store.log(&LogQuery::default()).await.unwrap();
        assert_eq!(verify_chain(&all), Ok(all.len() as u64));
        let run = |n: u128| Some(Uuid::from_u128(n));
        let queries = [
            LogQuery {
                record: Some("r3".into()),
                ..LogQuery::default()
            },
            LogQuery {
                run_id: run(2),
                ..LogQuery::default()
            },
            LogQuery {
                action: Some("a1".into()),
                outcome: Some(Outcome::Skipped),
                ..LogQuery::default()
            },
            LogQuery {
                from_ms: Some(T0 + 100),
                to_ms: Some(T0 + 180),
                ..LogQuery::default()
            },
            LogQuery {
                to_ms: Some(T0 + 20),
                ..LogQuery::default()
            },
            LogQuery {
                run_id: run(3),
                from_ms: Some(T0 + 400),
                ..LogQuery::default()
            },
            LogQuery {
                record: Some("r5".into()),
                after_seq: Some(250),
                limit: Some(7),
                ..LogQuery::default()
            },
            LogQuery {
                action: Some("a2".into()),
                run_id: run(1),
                record: Some("r0".into()),
                after_seq: Some(500),
                ..LogQuery::default()
            },
            LogQuery {
                record: Some("nowhere".into()),
                ..LogQuery::default()
            },
        ];
        for q in queries {
            let want: Vec<_> = all
                .iter()
                .filter(|e| q.matches(e) && q.after_seq.is_none_or(|s| e.seq > s))
                .take(q.limit.unwrap_or(usize::MAX))
                .cloned()
                .collect();
            let got = store.log(&q).await.unwrap();
            assert_eq!(got, want, "{q:?}");
        }
    }

    /// Appends `range` concurrently, then three entries one at a time: the writer indexes the log at
    /// most once during those three, so at least two of them stay outside the index.
    async fn append(store: &Arc<SqliteStore>, range: std::ops::Range<u64>) {
        let end = range.end;
        append_concurrently(store, range).await;
        for i in end..end + 3 {
            store.append_log(&entry(i)).await.unwrap();
        }
    }

    /// Entries in the log index (`log_indexed.upto`) and rows of the index, read from the file.
    fn indexed(path: &std::path::Path) -> (i64, i64) {
        let file = rusqlite::Connection::open(path).unwrap();
        file.query_row(
            "SELECT (SELECT upto FROM log_indexed), (SELECT count(*) FROM log_index)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_queries_read_indexed_and_recent_entries_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actguard.db");
        let mut store = Arc::new(SqliteStore::open(&path).unwrap());
        for (range, total) in [(0..600, 603), (603..700, 703)] {
            append(&store, range).await;
            queries_match_the_whole_log(&store).await;
            let log = store.log(&LogQuery::default()).await.unwrap();
            assert_eq!(log.len(), total);
            // Both parts were read: indexed entries (four index rows each) and a tail.
            let (upto, rows) = indexed(&path);
            assert!(
                upto >= 256 && upto < total as i64 - 1,
                "indexed up to {upto}"
            );
            assert_eq!(rows, 4 * upto);
            // The next round runs on a reopened store, which reads where the index ends.
            Arc::into_inner(store).unwrap().close().unwrap();
            store = Arc::new(SqliteStore::open(&path).unwrap());
        }
    }
}
