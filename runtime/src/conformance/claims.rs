//! Holding a claim: fencing tokens, completing and failing under a claim, losing it to a takeover,
//! sending a completion again, renewing the lease.

use super::{LEASE, T0, begin, claim, completion, failure, id, request};
use crate::log::{LogQuery, Outcome};
use crate::policy::FailureKind;
use crate::store::{
    Begin, BeginRequest, Millis, QueueKind, QueueQuery, QueueStatus, Renewal, Store, StoreError,
};

/// Every claim on a record gets a larger token than any before it (fresh, takeover, after release).
pub async fn fencing_tokens_strictly_increase_per_record(store: &dyn Store) {
    let mut seen = Vec::new();
    let mut now = T0;
    for i in 0..6 {
        let r = BeginRequest {
            dedup_ms: None,
            ..request(id(), &format!("k{i}"), "rec-1", now)
        };
        seen.push(claim(store, &r).await.fencing_token);
        if i % 2 == 0 {
            store
                .complete(completion(&r, serde_json::json!(i), now + 1))
                .await
                .unwrap();
            now += 2;
        } else {
            // Abandoned: the next claim comes after its lease.
            now += LEASE;
            let takeover = BeginRequest {
                claim_id: id(),
                now_ms: now,
                ..r.clone()
            };
            let c = claim(store, &takeover).await;
            assert!(c.takeover);
            seen.push(c.fencing_token);
            store
                .complete(completion(&takeover, serde_json::json!(i), now + 1))
                .await
                .unwrap();
            now += 2;
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "tokens {seen:?} are not increasing"
    );
    assert_eq!(
        store.current_fencing_token("rec-1").await.unwrap(),
        seen.last().copied()
    );
    // Another record counts on its own.
    let other = request(id(), "x", "rec-2", now);
    assert_eq!(claim(store, &other).await.fencing_token, 1);
}

/// The worker whose claim was taken over cannot complete: nothing changes.
pub async fn complete_after_takeover_is_claim_lost(store: &dyn Store) {
    let old = request(id(), "k1", "rec-1", T0);
    claim(store, &old).await;
    let new = BeginRequest {
        claim_id: id(),
        now_ms: T0 + LEASE,
        ..old.clone()
    };
    claim(store, &new).await;
    let before = store.log(&LogQuery::default()).await.unwrap();
    match store
        .complete(completion(&old, serde_json::json!("stale"), T0 + LEASE + 1))
        .await
    {
        Err(StoreError::ClaimLost { key }) => assert_eq!(key, "k1"),
        other => panic!("expected ClaimLost, got {other:?}"),
    }
    assert_eq!(store.log(&LogQuery::default()).await.unwrap(), before);
    // The new holder still holds the key and completes.
    let again = request(id(), "k1", "rec-1", T0 + LEASE + 2);
    assert!(matches!(
        begin(store, &again).await,
        Begin::InProgress { .. }
    ));
    store
        .complete(completion(&new, serde_json::json!("fresh"), T0 + LEASE + 3))
        .await
        .unwrap();
    let replay = request(id(), "k1", "rec-1", T0 + LEASE + 4);
    assert_eq!(
        begin(store, &replay).await,
        Begin::Completed {
            result: serde_json::json!("fresh"),
            completed_at_ms: T0 + LEASE + 3
        }
    );
}

/// The worker whose claim was taken over cannot fail either: no queue entry, no log entry.
pub async fn fail_after_takeover_is_claim_lost(store: &dyn Store) {
    let old = request(id(), "k1", "rec-1", T0);
    claim(store, &old).await;
    let new = BeginRequest {
        claim_id: id(),
        now_ms: T0 + LEASE,
        ..old.clone()
    };
    claim(store, &new).await;
    let lost = store
        .fail(failure(
            &old,
            Some((QueueKind::Owner, "ops")),
            T0 + LEASE + 1,
        ))
        .await;
    assert!(
        matches!(lost, Err(StoreError::ClaimLost { .. })),
        "got {lost:?}"
    );
    assert!(
        store
            .queue_entries(&QueueQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.log(&LogQuery::default()).await.unwrap().is_empty());
    let again = request(id(), "k1", "rec-1", T0 + LEASE + 2);
    assert!(matches!(
        begin(store, &again).await,
        Begin::InProgress { .. }
    ));
}

/// A claim that never existed cannot be completed; one that completed already cannot be completed
/// with another result (a conflict) nor failed.
pub async fn complete_with_unknown_claim_is_claim_lost(store: &dyn Store) {
    let never = request(id(), "ghost", "rec-1", T0);
    let lost = store
        .complete(completion(&never, serde_json::json!(1), T0))
        .await;
    assert!(
        matches!(lost, Err(StoreError::ClaimLost { .. })),
        "got {lost:?}"
    );
    let r = request(id(), "k1", "rec-2", T0);
    claim(store, &r).await;
    store
        .complete(completion(&r, serde_json::json!(1), T0 + 1))
        .await
        .unwrap();
    let twice = store
        .complete(completion(&r, serde_json::json!(2), T0 + 2))
        .await;
    assert!(
        matches!(twice, Err(StoreError::Conflict(_))),
        "got {twice:?}"
    );
    let failed = store.fail(failure(&r, None, T0 + 3)).await;
    assert!(
        matches!(failed, Err(StoreError::ClaimLost { .. })),
        "got {failed:?}"
    );
    assert_eq!(store.log(&LogQuery::default()).await.unwrap().len(), 1);
}

/// `fail` with a queue entry creates it, names it in the log entry, releases the record and makes the
/// key terminally failed.
pub async fn fail_with_queue_entry_fails_key_terminally(store: &dyn Store) {
    let run = id();
    let r = request(run, "k1", "rec-1", T0);
    claim(store, &r).await;
    let logged = store
        .fail(failure(
            &r,
            Some((QueueKind::Expert, "credit-risk")),
            T0 + 7,
        ))
        .await
        .unwrap();
    let queued = logged
        .entry
        .queue_entry
        .expect("the log entry names the queue entry");
    let q = store
        .queue_entry(queued)
        .await
        .unwrap()
        .expect("the queue entry exists");
    assert_eq!(q.kind, QueueKind::Expert);
    assert_eq!(q.name, "credit-risk");
    assert_eq!(q.status, QueueStatus::Open);
    assert_eq!(q.key_digest, r.key_digest);
    assert_eq!(q.payload, r.payload.value());
    assert_eq!(q.failure_kind, FailureKind::Conflict);
    assert_eq!(q.run_id, run);
    assert_eq!(logged.entry.outcome, Outcome::Routed);
    // The record is free for another key (no dedup: failing is not acting).
    let other = request(id(), "k2", "rec-1", T0 + 8);
    assert_eq!(claim(store, &other).await.fencing_token, 2);
}

/// `fail` without a queue entry (a halt) releases the claim: the key is neither failed nor held.
pub async fn fail_without_queue_entry_releases_claim(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    let logged = store.fail(failure(&r, None, T0 + 1)).await.unwrap();
    assert_eq!(logged.entry.queue_entry, None);
    assert_eq!(logged.entry.outcome, Outcome::Halted);
    assert!(
        store
            .queue_entries(&QueueQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    let again = request(id(), "k1", "rec-1", T0 + 2);
    let c = claim(store, &again).await;
    assert!(!c.takeover, "a released claim is not taken over");
    assert_eq!(c.fencing_token, 2);
}

/// A completion whose commit succeeded but whose reply was lost is sent again by the same claim: the
/// store answers where the first completion's entry went and changes nothing. The same claim with
/// another result is a conflict; another claim is still a lost claim.
pub async fn complete_sent_again_by_its_claim_converges(store: &dyn Store) {
    let r = request(id(), "k-lost-reply", "rec-lost-reply", T0);
    claim(store, &r).await;
    let first = store
        .complete(completion(&r, serde_json::json!({"receipt": 7}), T0 + 1))
        .await
        .unwrap();
    let again = store
        .complete(completion(&r, serde_json::json!({"receipt": 7}), T0 + 2))
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "the second completion answers the first one's entry"
    );
    let logged = store.log(&LogQuery::default()).await.unwrap();
    assert_eq!(logged.len(), 1, "nothing was appended the second time");
    assert!(matches!(
        store
            .complete(completion(&r, serde_json::json!({"receipt": 8}), T0 + 3))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let mut other = completion(&r, serde_json::json!({"receipt": 7}), T0 + 3);
    other.claim_id = id();
    assert!(matches!(
        store.complete(other).await,
        Err(StoreError::ClaimLost { .. })
    ));
    match begin(
        store,
        &request(id(), "k-lost-reply", "rec-lost-reply", T0 + 4),
    )
    .await
    {
        Begin::Completed {
            result,
            completed_at_ms,
        } => {
            assert_eq!(result, serde_json::json!({"receipt": 7}));
            assert_eq!(completed_at_ms, T0 + 1);
        }
        other => panic!("expected the stored result, got {other:?}"),
    }
}

fn renewal(r: &BeginRequest, now_ms: Millis) -> Renewal {
    Renewal {
        key_digest: r.key_digest.clone(),
        key_text: r.key_text.clone(),
        claim_id: r.claim_id,
        record: r.record.clone(),
        now_ms,
        lease_ms: LEASE,
    }
}

/// A renewal extends both the key's claim and the record's lease to a lease from now: the same key
/// is in progress and the record busy until then, and only then can the claim be taken over.
pub async fn renew_extends_the_claim_and_the_record_lease(store: &dyn Store) {
    let r = request(id(), "k-renew", "rec-renew", T0);
    claim(store, &r).await;
    let until = store.renew(&renewal(&r, T0 + 20_000)).await.unwrap();
    assert_eq!(until, T0 + 20_000 + LEASE);
    assert_eq!(
        begin(store, &request(id(), "k-renew", "rec-renew", T0 + LEASE)).await,
        Begin::InProgress {
            lease_until_ms: until
        }
    );
    match begin(store, &request(id(), "k-other", "rec-renew", T0 + LEASE)).await {
        Begin::RecordBusy {
            holder_key,
            lease_until_ms,
        } => assert_eq!((holder_key.as_str(), lease_until_ms), ("k-renew", until)),
        other => panic!("expected the record busy, got {other:?}"),
    }
    let taker = request(id(), "k-renew", "rec-renew", until);
    assert!(claim(store, &taker).await.takeover);
}

/// A claim that was taken over cannot be renewed: the renewal is a lost claim and changes nothing.
pub async fn renew_after_takeover_is_claim_lost(store: &dyn Store) {
    let old = request(id(), "k-renew-lost", "rec-renew-lost", T0);
    claim(store, &old).await;
    let taker = request(id(), "k-renew-lost", "rec-renew-lost", T0 + LEASE);
    claim(store, &taker).await;
    assert!(matches!(
        store.renew(&renewal(&old, T0 + LEASE + 1)).await,
        Err(StoreError::ClaimLost { .. })
    ));
    // The taker's lease is as it set it.
    assert_eq!(
        begin(
            store,
            &request(id(), "k-renew-lost", "rec-renew-lost", T0 + LEASE + 1)
        )
        .await,
        Begin::InProgress {
            lease_until_ms: T0 + 2 * LEASE
        }
    );
    // A key never claimed cannot be renewed either.
    let never = request(id(), "k-never", "rec-never", T0);
    assert!(matches!(
        store.renew(&renewal(&never, T0)).await,
        Err(StoreError::ClaimLost { .. })
    ));
}
