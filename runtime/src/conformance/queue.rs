//! Operators' queues: entries and their filters, claim, resolve, discard, release, key state and
//! replay of a failed key.

use super::{
    DAY, T0, begin, claim, claim_op, completion, digest, discard_op, failed_key, failure, id,
    op_update, operator, request, resolve_op,
};
use crate::log::{LogQuery, Outcome, verify_chain};
use crate::store::{
    Begin, BeginRequest, Claim, Completion, KeyStatus, Millis, QueueKind, QueueOp, QueueQuery,
    QueueStatus, QueueUpdate, Store, StoreError,
};

/// Queue entries get ids 1, 2, 3, …; queries filter by kind, name, action, status and run, oldest
/// first.
pub async fn queue_entries_are_numbered_from_one_and_filtered(store: &dyn Store) {
    let run_a = id();
    let run_b = id();
    let specs = [
        (run_a, "disburse", QueueKind::Owner, "loan-ops"),
        (run_a, "disburse", QueueKind::Expert, "credit-risk"),
        (run_b, "notify", QueueKind::Owner, "loan-ops"),
        (run_b, "disburse", QueueKind::DeadLetter, "dead-letter"),
    ];
    for (i, (run, action, kind, name)) in specs.iter().enumerate() {
        let r = BeginRequest {
            action: (*action).into(),
            ..request(*run, &format!("k{i}"), &format!("rec-{i}"), T0)
        };
        claim(store, &r).await;
        let logged = store
            .fail(failure(&r, Some((*kind, name)), T0 + i as Millis))
            .await
            .unwrap();
        assert_eq!(logged.entry.queue_entry, Some(i as u64 + 1));
    }
    let ids =
        |entries: Vec<crate::store::QueueEntry>| entries.iter().map(|e| e.id).collect::<Vec<_>>();
    let all = store.queue_entries(&QueueQuery::default()).await.unwrap();
    assert_eq!(ids(all.clone()), vec![1, 2, 3, 4]);
    assert!(all.iter().all(|e| e.status == QueueStatus::Open));
    assert_eq!(all[2].action, "notify");
    assert_eq!(all[2].created_ms, T0 + 2);
    let q = |f: fn(&mut QueueQuery)| {
        let mut query = QueueQuery::default();
        f(&mut query);
        query
    };
    let owner = store
        .queue_entries(&q(|q| q.kind = Some(QueueKind::Owner)))
        .await
        .unwrap();
    assert_eq!(ids(owner), vec![1, 3]);
    let named = store
        .queue_entries(&q(|q| q.name = Some("credit-risk".to_owned())))
        .await
        .unwrap();
    assert_eq!(ids(named), vec![2]);
    let action = store
        .queue_entries(&q(|q| q.action = Some("disburse".to_owned())))
        .await
        .unwrap();
    assert_eq!(ids(action), vec![1, 2, 4]);
    let of_run = store
        .queue_entries(&QueueQuery {
            run_id: Some(run_b),
            ..QueueQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(of_run), vec![3, 4]);
    let open_owner = store
        .queue_entries(&QueueQuery {
            kind: Some(QueueKind::Owner),
            status: Some(QueueStatus::Open),
            run_id: Some(run_b),
            ..QueueQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(open_owner), vec![3]);
    let resolved = store
        .queue_entries(&q(|q| q.status = Some(QueueStatus::Resolved)))
        .await
        .unwrap();
    assert!(resolved.is_empty());
    assert_eq!(
        store.queue_entry(4).await.unwrap().unwrap().kind,
        QueueKind::DeadLetter
    );
    assert_eq!(store.queue_entry(5).await.unwrap(), None);
}

/// Open → claimed → resolved, each change with its operator log entry naming the queue entry.
pub async fn queue_update_claims_resolves_and_logs(store: &dyn Store) {
    let (r, q) = failed_key(store, "k1", T0).await;
    let claimed = store
        .queue_update(&op_update(&r, q, claim_op("alice"), T0 + 10))
        .await
        .unwrap();
    assert_eq!(claimed.status, QueueStatus::Claimed);
    assert_eq!(claimed.claimed_by.as_deref(), Some("alice"));
    assert_eq!(claimed.closed_ms, None);
    let resolved = store
        .queue_update(&op_update(
            &r,
            q,
            resolve_op("bob", "fixed the IBAN"),
            T0 + 20,
        ))
        .await
        .unwrap();
    assert_eq!(resolved.status, QueueStatus::Resolved);
    assert_eq!(resolved.claimed_by.as_deref(), Some("bob"));
    assert_eq!(resolved.note.as_deref(), Some("fixed the IBAN"));
    assert_eq!(resolved.closed_ms, Some(T0 + 20));
    assert_eq!(store.queue_entry(q).await.unwrap(), Some(resolved));
    let log = store.log(&LogQuery::default()).await.unwrap();
    assert_eq!(verify_chain(&log), Ok(3));
    let ops: Vec<_> = log
        .iter()
        .filter(|e| e.entry.outcome == Outcome::Operator)
        .collect();
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|e| e.entry.queue_entry == Some(q)));
    // The key stays failed: a later call still answers with the (now resolved) entry.
    assert!(matches!(
        begin(store, &request(id(), "k1", "rec-k1", T0 + 30)).await,
        Begin::Failed { entry } if entry.id == q
    ));
}

/// A claimed entry may be discarded.
pub async fn queue_update_discards_a_claimed_entry(store: &dyn Store) {
    let (r, q) = failed_key(store, "k1", T0).await;
    store
        .queue_update(&op_update(&r, q, claim_op("alice"), T0 + 10))
        .await
        .unwrap();
    let discarded = store
        .queue_update(&op_update(&r, q, discard_op("alice", "duplicate"), T0 + 11))
        .await
        .unwrap();
    assert_eq!(discarded.status, QueueStatus::Discarded);
    assert_eq!(discarded.closed_ms, Some(T0 + 11));
}

/// Anything from a terminal status is a conflict naming the entry and its status; claiming a claimed
/// entry too; an unknown id is not found; a refused update logs nothing.
pub async fn queue_update_refuses_terminal_entries_and_unknown_ids(store: &dyn Store) {
    let (r, q) = failed_key(store, "k1", T0).await;
    store
        .queue_update(&op_update(&r, q, claim_op("alice"), T0 + 10))
        .await
        .unwrap();
    match store
        .queue_update(&op_update(&r, q, claim_op("bob"), T0 + 11))
        .await
    {
        Err(StoreError::Conflict(m)) => {
            assert!(
                m.contains(&format!("queue entry {q}")) && m.contains("claimed"),
                "{m}"
            )
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    store
        .queue_update(&op_update(&r, q, resolve_op("alice", "done"), T0 + 12))
        .await
        .unwrap();
    for op in [
        claim_op("bob"),
        resolve_op("bob", "again"),
        discard_op("bob", "drop"),
    ] {
        match store.queue_update(&op_update(&r, q, op, T0 + 13)).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains("resolved"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert!(matches!(
        store
            .queue_update(&op_update(&r, 9_999, claim_op("bob"), T0 + 14))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let entry = store.queue_entry(q).await.unwrap().unwrap();
    assert_eq!(
        (entry.status, entry.note.as_deref()),
        (QueueStatus::Resolved, Some("done"))
    );
    let log = store.log(&LogQuery::default()).await.unwrap();
    assert_eq!(verify_chain(&log), Ok(3));
}

/// `older_than_ms` and `newer_than_ms` select by creation time, both inclusive.
pub async fn queue_entries_filter_by_age(store: &dyn Store) {
    let (_, a) = failed_key(store, "k1", T0).await;
    let (_, b) = failed_key(store, "k2", T0 + DAY).await;
    let (_, c) = failed_key(store, "k3", T0 + 2 * DAY).await;
    let ids = |v: Vec<crate::store::QueueEntry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let older = QueueQuery {
        older_than_ms: Some(T0 + DAY + 1),
        ..QueueQuery::default()
    };
    assert_eq!(ids(store.queue_entries(&older).await.unwrap()), [a, b]);
    let newer = QueueQuery {
        newer_than_ms: Some(T0 + DAY + 1),
        ..QueueQuery::default()
    };
    assert_eq!(ids(store.queue_entries(&newer).await.unwrap()), [b, c]);
    let between = QueueQuery {
        newer_than_ms: Some(T0 + 2),
        older_than_ms: Some(T0 + 2 * DAY),
        status: Some(QueueStatus::Open),
        ..QueueQuery::default()
    };
    assert_eq!(ids(store.queue_entries(&between).await.unwrap()), [b]);
}

/// What a key was called with and what became of it.
pub async fn key_state_reports_payload_status_result_and_entry(store: &dyn Store) {
    assert_eq!(store.key_state(&digest("none")).await.unwrap(), None);
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    let k = store.key_state(&r.key_digest).await.unwrap().unwrap();
    assert_eq!(
        (
            k.status,
            k.payload.clone(),
            k.action.as_str(),
            k.key_text.as_str()
        ),
        (KeyStatus::Claimed, r.payload.value(), "disburse", "k1")
    );
    assert_eq!(
        (k.record.as_str(), k.fingerprint.as_str()),
        ("rec-1", "fp-1")
    );
    store
        .complete(completion(&r, serde_json::json!({"receipt": 7}), T0 + 1))
        .await
        .unwrap();
    let k = store.key_state(&r.key_digest).await.unwrap().unwrap();
    assert_eq!(k.status, KeyStatus::Completed);
    assert_eq!(k.result, Some(serde_json::json!({"receipt": 7})));
    let (f, q) = failed_key(store, "k2", T0).await;
    let k = store.key_state(&f.key_digest).await.unwrap().unwrap();
    assert_eq!(
        (k.status, k.queue_entry, k.result),
        (KeyStatus::Failed, Some(q), None)
    );
}

/// A begin that replays exactly the failed key's open entry claims the key again (next fencing token,
/// no takeover, attempts afresh); its completion marks the entry replayed.
pub async fn begin_replays_failed_key_with_its_open_queue_entry(store: &dyn Store) {
    let (r, q) = failed_key(store, "k1", T0).await;
    let again = BeginRequest {
        replay_of: Some(q),
        ..request(id(), "k1", "rec-k1", T0 + 10)
    };
    let c = claim(store, &again).await;
    assert_eq!(
        c,
        Claim {
            fencing_token: 2,
            takeover: false,
            previous_attempts: 0
        }
    );
    let done = Completion {
        replay_of: Some(q),
        ..completion(&again, serde_json::json!("ok"), T0 + 11)
    };
    store.complete(done).await.unwrap();
    let e = store.queue_entry(q).await.unwrap().unwrap();
    assert_eq!(
        (e.status, e.closed_ms),
        (QueueStatus::Replayed, Some(T0 + 11))
    );
    assert!(matches!(
        begin(store, &request(id(), "k1", "rec-k1", T0 + 12)).await,
        Begin::Completed { result, .. } if result == serde_json::json!("ok")
    ));
    let _ = r;
}

/// A replay that fails again updates the same entry (attempts added, the new failure, open again) and
/// the key keeps pointing at it; no new entry is created.
pub async fn failed_replay_updates_the_same_queue_entry(store: &dyn Store) {
    let (_, q) = failed_key(store, "k1", T0).await;
    store
        .queue_update(&QueueUpdate {
            id: q,
            op: claim_op("alice"),
            now_ms: T0 + 5,
            entry: operator(&request(id(), "k1", "rec-k1", T0 + 5), T0 + 5, "claimed"),
        })
        .await
        .unwrap();
    let again = BeginRequest {
        replay_of: Some(q),
        ..request(id(), "k1", "rec-k1", T0 + 10)
    };
    claim(store, &again).await;
    let mut refail = failure(
        &again,
        Some((QueueKind::DeadLetter, "dead-letter")),
        T0 + 20,
    );
    refail.replay_of = Some(q);
    if let Some(n) = refail.queue_entry.as_mut() {
        n.attempts = 2;
        n.message = "still unavailable".to_owned();
    }
    let logged = store.fail(refail).await.unwrap();
    assert_eq!(logged.entry.queue_entry, Some(q));
    let all = store.queue_entries(&QueueQuery::default()).await.unwrap();
    assert_eq!(all.len(), 1);
    let e = &all[0];
    assert_eq!(e.id, q);
    assert_eq!(e.status, QueueStatus::Open);
    assert_eq!(e.attempts, 3);
    assert_eq!(e.last_failure_ms, T0 + 20);
    assert_eq!(e.first_failure_ms, T0 + 1);
    assert_eq!(e.message, "still unavailable");
    assert_eq!(e.kind, QueueKind::DeadLetter);
    assert!(matches!(
        begin(store, &request(id(), "k1", "rec-k1", T0 + 30)).await,
        Begin::Failed { entry } if entry.id == q && entry.kind == QueueKind::DeadLetter
    ));
    // And it can be replayed again.
    let third = BeginRequest {
        replay_of: Some(q),
        ..request(id(), "k1", "rec-k1", T0 + 40)
    };
    claim(store, &third).await;
}

/// A replay naming another entry, or an entry already closed, answers `Failed` as before.
pub async fn replay_of_a_closed_or_other_entry_is_refused(store: &dyn Store) {
    let (r, q) = failed_key(store, "k1", T0).await;
    let (_, other) = failed_key(store, "k2", T0).await;
    let wrong = BeginRequest {
        replay_of: Some(other),
        ..request(id(), "k1", "rec-k1", T0 + 10)
    };
    assert!(matches!(begin(store, &wrong).await, Begin::Failed { entry } if entry.id == q));
    store
        .queue_update(&op_update(&r, q, discard_op("alice", "obsolete"), T0 + 11))
        .await
        .unwrap();
    let closed = BeginRequest {
        replay_of: Some(q),
        ..request(id(), "k1", "rec-k1", T0 + 12)
    };
    assert!(matches!(begin(store, &closed).await, Begin::Failed { entry } if entry.id == q));
}

/// A resolve that releases its key (an operator corrected the source data): the key is released
/// without a fingerprint, and the next call claims it afresh with any payload.
pub async fn resolve_with_release_frees_the_key_for_any_payload(store: &dyn Store) {
    let (r, entry) = failed_key(store, "k-release", T0).await;
    let release = QueueOp::Resolve {
        by: "ana".into(),
        note: "amount corrected".into(),
        release: true,
    };
    let resolved = store
        .queue_update(&op_update(&r, entry, release, T0 + 5))
        .await
        .unwrap();
    assert_eq!(resolved.status, QueueStatus::Resolved);
    let state = store.key_state(&r.key_digest).await.unwrap().unwrap();
    assert_eq!(state.status, KeyStatus::Released);

    let mut corrected = request(id(), "k-release", &r.record, T0 + 10);
    corrected.fingerprint = "fp-corrected".into();
    let c = claim(store, &corrected).await;
    assert_eq!((c.takeover, c.previous_attempts), (false, 0));
    store
        .complete(completion(&corrected, serde_json::json!("ok"), T0 + 11))
        .await
        .unwrap();
    // From now on the key holds the corrected payload's fingerprint.
    let state = store.key_state(&r.key_digest).await.unwrap().unwrap();
    assert_eq!(state.fingerprint, "fp-corrected");
    let mut old = request(id(), "k-release", &r.record, T0 + 12);
    old.fingerprint = "fp-1".into();
    assert_eq!(
        begin(store, &old).await,
        Begin::KeyReused {
            stored_fingerprint: "fp-corrected".into()
        }
    );
}

/// A resolve without release settles the entry only: the key keeps answering its entry, and another
/// payload under it is still a reused key.
pub async fn resolve_without_release_keeps_the_key_failed(store: &dyn Store) {
    let (r, entry) = failed_key(store, "k-keep", T0).await;
    store
        .queue_update(&op_update(
            &r,
            entry,
            resolve_op("ana", "done elsewhere"),
            T0 + 5,
        ))
        .await
        .unwrap();
    match begin(store, &request(id(), "k-keep", &r.record, T0 + 10)).await {
        Begin::Failed { entry: e } => assert_eq!(e.id, entry),
        other => panic!("expected the failed key's entry, got {other:?}"),
    }
    let mut other = request(id(), "k-keep", &r.record, T0 + 10);
    other.fingerprint = "fp-2".into();
    assert!(matches!(
        begin(store, &other).await,
        Begin::KeyReused { .. }
    ));
}

/// A release forgotten at the resolve can follow it: resolving a resolved entry again with release
/// frees its key (the entry stays resolved); without release, a resolved entry cannot be resolved
/// again, and a discarded one cannot be released.
pub async fn a_release_may_follow_a_resolve(store: &dyn Store) {
    let (r, entry) = failed_key(store, "k-late-release", T0).await;
    store
        .queue_update(&op_update(&r, entry, resolve_op("ana", "fixed"), T0 + 1))
        .await
        .unwrap();
    assert!(matches!(
        store
            .queue_update(&op_update(&r, entry, resolve_op("ana", "again"), T0 + 2))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let release = QueueOp::Resolve {
        by: "ana".into(),
        note: "and release it".into(),
        release: true,
    };
    let e = store
        .queue_update(&op_update(&r, entry, release.clone(), T0 + 3))
        .await
        .unwrap();
    assert_eq!(e.status, QueueStatus::Resolved);
    let state = store.key_state(&r.key_digest).await.unwrap().unwrap();
    assert_eq!(state.status, KeyStatus::Released);

    let (d, discarded) = failed_key(store, "k-discarded", T0).await;
    store
        .queue_update(&op_update(
            &d,
            discarded,
            discard_op("ana", "never"),
            T0 + 1,
        ))
        .await
        .unwrap();
    assert!(matches!(
        store
            .queue_update(&op_update(&d, discarded, release, T0 + 2))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let state = store.key_state(&d.key_digest).await.unwrap().unwrap();
    assert_eq!(state.status, KeyStatus::Failed);
}
