//! The Store conformance suite against `SqliteStore`, file-backed in a temporary directory.

use actguard::SqliteStore;
use tempfile::TempDir;

/// A fresh store in its own directory; the directory lives as long as the test.
fn file_store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("actguard.db")).expect("the store opens");
    (store, dir)
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
            action: "disburse".to_owned().into(),
            key_text: format!("k{n}").into(),
            key_digest: format!("digest:k{n}").into(),
            record: format!("rec-{n}").into(),
            fingerprint: "fp".to_owned().into(),
            payload: std::sync::Arc::new(serde_json::json!({ "n": n.to_string() })),
            claim_id: Uuid::from_u128(1_000 + n),
            now_ms: T0,
            lease_ms: 30_000,
            dedup_ms: None,
            replay_of: None,
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
                .complete(&completion(&done, done.claim_id))
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
                (i, store.complete(&completion(&r, claim_id)).await)
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
}
