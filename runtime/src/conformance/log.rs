//! The action log: appends, the head, the chain across `complete` and `fail`, queries.

use super::{T0, claim, completion, entry, failure, id, request};
use crate::log::{LogQuery, NewLogEntry, Outcome, verify_chain};
use crate::store::{Millis, QueueKind, Store};

/// Appends get seq 1, 2, 3, … and a chain that verifies; the stored entries read back unchanged.
pub async fn log_chain_verifies_after_many_appends(store: &dyn Store) {
    let run = id();
    let mut appended = Vec::new();
    for i in 0..200u32 {
        let r = request(run, &format!("k{}", i % 17), &format!("rec-{}", i % 5), T0);
        let e = NewLogEntry {
            message: Some(format!("step {i} — ünïcode ✓")),
            before: Some(serde_json::json!({ "flag": i % 2 == 0, "n": i, "big": u64::MAX })),
            fencing_token: Some(u64::from(i)),
            ..entry(&r, i % 4, Outcome::Retrying, T0 + Millis::from(i))
        };
        let logged = store.append_log(&e).await.unwrap();
        assert_eq!(logged.seq, u64::from(i) + 1);
        assert_eq!(logged.entry, e);
        appended.push(logged);
    }
    let all = store.log(&LogQuery::default()).await.unwrap();
    assert_eq!(all, appended);
    assert_eq!(verify_chain(&all), Ok(200));
    assert_eq!(all[0].prev_hash, crate::log::GENESIS_HASH);
}

/// `log_head` is the last entry's sequence number and hash; `None` while the log is empty.
pub async fn log_head_is_the_last_entry(store: &dyn Store) {
    assert_eq!(store.log_head().await.unwrap(), None);
    let run = id();
    let mut last = None;
    for i in 0..3u32 {
        let r = request(run, &format!("k{i}"), "rec", T0);
        let logged = store
            .append_log(&entry(&r, 1, Outcome::Retrying, T0 + Millis::from(i)))
            .await
            .unwrap();
        assert_eq!(
            store.log_head().await.unwrap(),
            Some(crate::log::LogHead::of(&logged))
        );
        last = Some(logged);
    }
    assert_eq!(last.unwrap().seq, 3);
}

/// `complete` and `fail` append their entries to the same chain, as `append_log` does.
pub async fn log_entries_of_complete_and_fail_join_the_chain(store: &dyn Store) {
    let run = id();
    let a = request(run, "k1", "rec-1", T0);
    claim(store, &a).await;
    let first = store
        .append_log(&entry(&a, 1, Outcome::Retrying, T0 + 1))
        .await
        .unwrap();
    let done = store
        .complete(completion(&a, serde_json::json!(7), T0 + 2))
        .await
        .unwrap();
    assert_eq!(done.seq, 2);
    assert_eq!(done.prev_hash, first.hash);
    let b = request(run, "k2", "rec-2", T0);
    claim(store, &b).await;
    let failed = store
        .fail(failure(&b, Some((QueueKind::Owner, "ops")), T0 + 3))
        .await
        .unwrap();
    assert_eq!(failed.seq, 3);
    assert_eq!(failed.prev_hash, done.hash);
    let all = store.log(&LogQuery::default()).await.unwrap();
    assert_eq!(all, vec![first, all[1].clone(), failed]);
    assert_eq!(crate::store::Appended::of(&all[1]), done);
    assert_eq!(
        all[1].entry,
        completion(&a, serde_json::json!(7), T0 + 2).entry
    );
    assert_eq!(verify_chain(&all), Ok(3));
}

/// Log queries filter by run, action, record, outcome and time range, and page with `after_seq` and
/// `limit`, always in sequence order.
pub async fn log_queries_filter_and_page(store: &dyn Store) {
    let runs = [id(), id()];
    let outcomes = [Outcome::Succeeded, Outcome::Retrying, Outcome::Skipped];
    for i in 0..30u32 {
        let mut r = request(
            runs[(i % 2) as usize],
            &format!("k{i}"),
            &format!("rec-{}", i % 3),
            T0,
        );
        r.action = if i % 5 == 0 { "notify" } else { "disburse" }.into();
        let e = entry(&r, 1, outcomes[(i % 3) as usize], T0 + Millis::from(i) * 10);
        store.append_log(&e).await.unwrap();
    }
    let all = store.log(&LogQuery::default()).await.unwrap();
    let seqs = |q: LogQuery| {
        let expected: Vec<u64> = all.iter().filter(|e| q.matches(e)).map(|e| e.seq).collect();
        (q, expected)
    };
    let cases = [
        seqs(LogQuery {
            run_id: Some(runs[1]),
            ..LogQuery::default()
        }),
        seqs(LogQuery {
            action: Some("notify".to_owned()),
            ..LogQuery::default()
        }),
        seqs(LogQuery {
            record: Some("rec-2".to_owned()),
            ..LogQuery::default()
        }),
        seqs(LogQuery {
            outcome: Some(Outcome::Skipped),
            ..LogQuery::default()
        }),
        seqs(LogQuery {
            from_ms: Some(T0 + 50),
            to_ms: Some(T0 + 120),
            ..LogQuery::default()
        }),
        seqs(LogQuery {
            after_seq: Some(25),
            ..LogQuery::default()
        }),
        seqs(LogQuery {
            run_id: Some(runs[0]),
            record: Some("rec-0".to_owned()),
            action: Some("disburse".to_owned()),
            outcome: Some(Outcome::Succeeded),
            ..LogQuery::default()
        }),
    ];
    for (query, expected) in cases {
        assert!(!expected.is_empty(), "{query:?} selects something");
        let got: Vec<u64> = store
            .log(&query)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(got, expected, "{query:?}");
    }
    // Hand-checked expectations, so a wrong `matches` cannot hide a wrong store.
    let from_to = LogQuery {
        from_ms: Some(T0 + 50),
        to_ms: Some(T0 + 120),
        ..LogQuery::default()
    };
    let got: Vec<u64> = store
        .log(&from_to)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, (6..=12).collect::<Vec<u64>>());
    let page = LogQuery {
        record: Some("rec-1".to_owned()),
        after_seq: Some(5),
        limit: Some(3),
        ..LogQuery::default()
    };
    let got: Vec<u64> = store
        .log(&page)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, vec![8, 11, 14]);
    let limited = LogQuery {
        limit: Some(0),
        ..LogQuery::default()
    };
    assert!(store.log(&limited).await.unwrap().is_empty());
}
