//! `begin`, branch by branch, in the documented order: halted, key reused, completed, failed, in
//! progress, record busy, skipped, taken over, claimed.

use super::{DAY, LEASE, T0, begin, claim, completion, entry, failure, id, request};
use crate::log::{LogQuery, Outcome};
use crate::store::{Begin, BeginRequest, Claim, Millis, QueueKind, Store};

/// A key never seen is claimed with fencing token 1, no takeover, no previous attempts.
pub async fn begin_claims_fresh_key(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    let c = claim(store, &r).await;
    assert_eq!(
        c,
        Claim {
            fencing_token: 1,
            takeover: false,
            previous_attempts: 0
        }
    );
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
    assert_eq!(
        store.current_fencing_token("rec-other").await.unwrap(),
        None
    );
}

/// A halted run claims nothing.
pub async fn begin_refuses_halted_run(store: &dyn Store) {
    let run = id();
    assert!(store.halt_run(run, "forbidden", T0).await.unwrap());
    let r = request(run, "k1", "rec-1", T0 + 1);
    assert_eq!(begin(store, &r).await, Begin::Halted);
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), None);
    // Another run may claim the same key: nothing was held.
    let other = request(id(), "k1", "rec-1", T0 + 2);
    claim(store, &other).await;
}

/// Halted is checked before the key's completed result.
pub async fn begin_halted_comes_before_completed(store: &dyn Store) {
    let run = id();
    let r = request(run, "k1", "rec-1", T0);
    claim(store, &r).await;
    store
        .complete(completion(&r, serde_json::json!(1), T0 + 5))
        .await
        .unwrap();
    store.halt_run(run, "forbidden", T0 + 6).await.unwrap();
    let again = request(run, "k1", "rec-1", T0 + 7);
    assert_eq!(begin(store, &again).await, Begin::Halted);
}

/// A completed key replays its stored result, at any later time, and claims nothing.
pub async fn begin_replays_completed_key(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    let result = serde_json::json!({ "receipt": "R-17", "amount": 250 });
    store
        .complete(completion(&r, result.clone(), T0 + 10))
        .await
        .unwrap();
    for now in [T0 + 11, T0 + 10 * DAY] {
        let again = request(id(), "k1", "rec-1", now);
        assert_eq!(
            begin(store, &again).await,
            Begin::Completed {
                result: result.clone(),
                completed_at_ms: T0 + 10
            }
        );
    }
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
}

/// The fingerprint is checked before completion (Stripe's rule): a completed key called with another
/// payload is refused, never answered with the result of a different intent.
pub async fn begin_key_reused_comes_before_completed(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    store
        .complete(completion(&r, serde_json::json!("done"), T0 + 1))
        .await
        .unwrap();
    let other = BeginRequest {
        fingerprint: "fp-2".into(),
        ..request(id(), "k1", "rec-1", T0 + 2)
    };
    assert_eq!(
        begin(store, &other).await,
        Begin::KeyReused {
            stored_fingerprint: "fp-1".to_owned()
        }
    );
}

/// A key known with another fingerprint is refused with the stored fingerprint.
pub async fn begin_rejects_key_reused_with_other_fingerprint(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    // Expired, so only the fingerprint can refuse it.
    let other = BeginRequest {
        fingerprint: "fp-2".into(),
        ..request(id(), "k1", "rec-1", T0 + LEASE + 1)
    };
    assert_eq!(
        begin(store, &other).await,
        Begin::KeyReused {
            stored_fingerprint: "fp-1".to_owned()
        }
    );
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
}

/// The fingerprint is checked before the live lease.
pub async fn begin_key_reused_comes_before_in_progress(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    let other = BeginRequest {
        fingerprint: "fp-2".into(),
        ..request(id(), "k1", "rec-1", T0 + 1)
    };
    assert!(matches!(
        begin(store, &other).await,
        Begin::KeyReused { .. }
    ));
}

/// A key failed terminally answers with its queue entry, never a new attempt.
pub async fn begin_points_failed_key_at_its_queue_entry(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    let logged = store
        .fail(failure(&r, Some((QueueKind::Owner, "loan-ops")), T0 + 1))
        .await
        .unwrap();
    let queued = logged
        .entry
        .queue_entry
        .expect("fail names its queue entry");
    for now in [T0 + 2, T0 + 10 * DAY] {
        let again = request(id(), "k1", "rec-1", now);
        match begin(store, &again).await {
            Begin::Failed { entry } => {
                assert_eq!(entry.id, queued);
                assert_eq!(entry.kind, QueueKind::Owner);
                assert_eq!(entry.name, "loan-ops");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
}

/// The fingerprint is checked before the terminal failure.
pub async fn begin_key_reused_comes_before_failed(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    store
        .fail(failure(
            &r,
            Some((QueueKind::DeadLetter, "dead-letter")),
            T0 + 1,
        ))
        .await
        .unwrap();
    let other = BeginRequest {
        fingerprint: "fp-2".into(),
        ..request(id(), "k1", "rec-1", T0 + 2)
    };
    assert!(matches!(
        begin(store, &other).await,
        Begin::KeyReused { .. }
    ));
}

/// While the claim's lease is live (until `now_ms + lease_ms`, exclusive), the key is in progress.
pub async fn begin_reports_in_progress_during_live_lease(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    for now in [T0, T0 + 1, T0 + LEASE - 1] {
        let again = request(id(), "k1", "rec-1", now);
        assert_eq!(
            begin(store, &again).await,
            Begin::InProgress {
                lease_until_ms: T0 + LEASE
            }
        );
    }
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
}

/// Another key on a leased record is busy, naming the holder.
pub async fn begin_reports_record_busy_for_other_key(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    let other = request(id(), "k2", "rec-1", T0 + LEASE - 1);
    assert_eq!(
        begin(store, &other).await,
        Begin::RecordBusy {
            holder_key: "k1".to_owned(),
            lease_until_ms: T0 + LEASE
        }
    );
    // Another record is free.
    claim(store, &request(id(), "k3", "rec-2", T0 + 1)).await;
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
}

/// Once the holder's lease expires, another key claims the record with the next token.
pub async fn begin_claims_record_after_other_key_lease_expires(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    let other = request(id(), "k2", "rec-1", T0 + LEASE);
    let c = claim(store, &other).await;
    assert_eq!(c.fencing_token, 2);
    assert!(
        !c.takeover,
        "k2 takes over the record, not a claim on its own key"
    );
}

/// The record lease is checked before the dedup window.
pub async fn begin_record_busy_comes_before_skipped(store: &dyn Store) {
    let run = id();
    let a = request(run, "k1", "rec-1", T0);
    claim(store, &a).await;
    store
        .complete(completion(&a, serde_json::json!(1), T0 + 1))
        .await
        .unwrap();
    let b = BeginRequest {
        dedup_ms: None,
        ..request(run, "k2", "rec-1", T0 + 2)
    };
    claim(store, &b).await;
    // k3 is both within k1's dedup window and behind k2's lease.
    let c = request(run, "k3", "rec-1", T0 + 3);
    assert!(matches!(begin(store, &c).await, Begin::RecordBusy { .. }));
}

/// (record, action) completed under another key within the window is skipped, measured from the
/// completion time; the store records nothing for the skip.
pub async fn begin_skips_within_dedup_window(store: &dyn Store) {
    let a = request(id(), "k1", "rec-1", T0);
    claim(store, &a).await;
    store
        .complete(completion(&a, serde_json::json!(1), T0 + 100))
        .await
        .unwrap();
    for now in [T0 + 101, T0 + 100 + DAY - 1] {
        let b = request(id(), "k2", "rec-1", now);
        assert_eq!(
            begin(store, &b).await,
            Begin::Skipped {
                previous_key: "k1".to_owned(),
                acted_at_ms: T0 + 100
            }
        );
    }
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
    let entries = store.log(&LogQuery::default()).await.unwrap();
    assert_eq!(
        entries.len(),
        1,
        "a skip is logged by the caller, not the store"
    );
}

/// At the end of the window (completion time + dedup), another key claims.
pub async fn begin_claims_after_dedup_window(store: &dyn Store) {
    let a = request(id(), "k1", "rec-1", T0);
    claim(store, &a).await;
    store
        .complete(completion(&a, serde_json::json!(1), T0 + 100))
        .await
        .unwrap();
    let b = request(id(), "k2", "rec-1", T0 + 100 + DAY);
    assert_eq!(claim(store, &b).await.fencing_token, 2);
}

/// The window is per (record, action): another action or another record is not skipped, and a
/// failed key does not count as acted.
pub async fn begin_dedup_is_per_record_and_action(store: &dyn Store) {
    let a = request(id(), "k1", "rec-1", T0);
    claim(store, &a).await;
    store
        .complete(completion(&a, serde_json::json!(1), T0 + 1))
        .await
        .unwrap();
    let other_action = BeginRequest {
        action: "notify".into(),
        ..request(id(), "k2", "rec-1", T0 + 2)
    };
    claim(store, &other_action).await;
    let other_record = request(id(), "k3", "rec-2", T0 + 3);
    claim(store, &other_record).await;
    store
        .fail(failure(
            &other_record,
            Some((QueueKind::Owner, "ops")),
            T0 + 4,
        ))
        .await
        .unwrap();
    let after_failure = request(id(), "k4", "rec-2", T0 + 5);
    claim(store, &after_failure).await;
}

/// Three actions complete on one record: a new key of each is skipped as acted under that action's
/// own last key, and a later completion of one action replaces only that action's mark.
pub async fn begin_dedup_keeps_the_marks_of_several_actions_on_one_record(store: &dyn Store) {
    let on_rec = |action: &str, key: &str, now_ms: Millis| BeginRequest {
        action: action.to_owned().into(),
        ..request(id(), key, "rec-1", now_ms)
    };
    let mut now = T0;
    for (action, key) in [("disburse", "d1"), ("notify", "n1"), ("audit", "a1")] {
        let r = on_rec(action, key, now);
        claim(store, &r).await;
        store
            .complete(completion(&r, serde_json::json!(key), now + 1))
            .await
            .unwrap();
        now += 2;
    }
    // The window is off for `notify`'s second key, so it acts and becomes the mark.
    let n2 = BeginRequest {
        dedup_ms: None,
        ..on_rec("notify", "n2", now)
    };
    claim(store, &n2).await;
    store
        .complete(completion(&n2, serde_json::json!("n2"), now + 1))
        .await
        .unwrap();
    now += 2;
    for (action, key, previous) in [
        ("disburse", "d9", "d1"),
        ("notify", "n9", "n2"),
        ("audit", "a9", "a1"),
    ] {
        match begin(store, &on_rec(action, key, now)).await {
            Begin::Skipped { previous_key, .. } => {
                assert_eq!(previous_key, previous, "{action}")
            }
            other => panic!("expected `{key}` to be skipped, got {other:?}"),
        }
    }
}

/// With `dedup_ms: None` the loop filter is off.
pub async fn begin_without_dedup_never_skips(store: &dyn Store) {
    let a = request(id(), "k1", "rec-1", T0);
    claim(store, &a).await;
    store
        .complete(completion(&a, serde_json::json!(1), T0 + 1))
        .await
        .unwrap();
    let b = BeginRequest {
        dedup_ms: None,
        ..request(id(), "k2", "rec-1", T0 + 2)
    };
    assert_eq!(claim(store, &b).await.fencing_token, 2);
}

/// A claim whose lease has expired (`now_ms >= lease_until`) is taken over, with the attempts logged
/// under the key and the record's next fencing token.
pub async fn begin_takes_over_expired_claim(store: &dyn Store) {
    let run = id();
    let r = request(run, "k1", "rec-1", T0);
    claim(store, &r).await;
    store
        .append_log(&entry(&r, 1, Outcome::Retrying, T0 + 10))
        .await
        .unwrap();
    store
        .append_log(&entry(&r, 2, Outcome::Retrying, T0 + 20))
        .await
        .unwrap();
    // Entries of other keys do not count.
    let unrelated = request(run, "k9", "rec-9", T0);
    store
        .append_log(&entry(&unrelated, 1, Outcome::Retrying, T0 + 21))
        .await
        .unwrap();
    let again = request(id(), "k1", "rec-1", T0 + LEASE);
    assert_eq!(
        claim(store, &again).await,
        Claim {
            fencing_token: 2,
            takeover: true,
            previous_attempts: 2
        }
    );
    // The new claim's lease is live from its own start.
    let third = request(id(), "k1", "rec-1", T0 + LEASE + 1);
    assert_eq!(
        begin(store, &third).await,
        Begin::InProgress {
            lease_until_ms: T0 + 2 * LEASE
        }
    );
}

/// Completing releases the record lease: the next key on the record claims at once.
pub async fn begin_claims_after_complete_on_same_record(store: &dyn Store) {
    let a = BeginRequest {
        dedup_ms: None,
        ..request(id(), "k1", "rec-1", T0)
    };
    claim(store, &a).await;
    store
        .complete(completion(&a, serde_json::json!(1), T0 + 1))
        .await
        .unwrap();
    let b = BeginRequest {
        dedup_ms: None,
        ..request(id(), "k2", "rec-1", T0 + 2)
    };
    assert_eq!(claim(store, &b).await.fencing_token, 2);
}
