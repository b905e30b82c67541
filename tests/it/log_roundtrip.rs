//! Property: any log entry (text of any character, state of any JSON shape, any number) goes into a
//! store and comes back equal, chained: on the memory store, a SQLite file and (with the `postgres`
//! feature) PostgreSQL.

#[cfg(feature = "postgres")]
use crate::support::pg_support;

use actguard::log::NewLogEntry;
use actguard::{FailureKind, LogQuery, MemoryStore, Outcome, Route, SqliteStore, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

/// Text with the characters that break naive storage: quotes, escapes, controls, bidi overrides,
/// characters of several bytes. PostgreSQL's text cannot hold NUL, so `nul` says whether to use it.
fn text(nul: bool) -> BoxedStrategy<String> {
    let odd = if nul {
        "[a'\"\\\\%_\u{0}\u{1}\u{1b}\n\u{7f}\u{202e}é\u{1f600}]{0,8}"
    } else {
        "[a'\"\\\\%_\u{1}\u{1b}\n\u{7f}\u{202e}é\u{1f600}]{0,8}"
    };
    let any = if nul { "\\PC{0,16}" } else { "[^\u{0}]{0,16}" };
    prop_oneof![odd, any].boxed()
}

fn json(nul: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text(nul).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((text(nul), inner), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn entry(nul: bool) -> impl Strategy<Value = NewLogEntry> {
    let outcome = prop::sample::select(Outcome::ALL.to_vec());
    let kind = prop::option::of(prop::sample::select(vec![
        FailureKind::Transient,
        FailureKind::Validation,
        FailureKind::Conflict,
        FailureKind::Security,
    ]));
    let route = prop::option::of(prop::sample::select(vec![
        Route::Retry,
        Route::RouteOwner,
        Route::Escalate,
        Route::DeadLetter,
        Route::Halt,
    ]));
    (
        (
            any::<i64>(),
            any::<u128>(),
            text(nul),
            text(nul),
            text(nul),
            text(nul),
        ),
        (any::<u32>(), any::<bool>(), outcome, kind, route),
        (
            prop::option::of(text(nul)),
            prop::option::of(any::<u64>()),
            // A state of JSON `null` is no state: it reads back as `None`.
            prop::option::of(json(nul).prop_filter("a state", |v| !v.is_null())),
            prop::option::of(json(nul).prop_filter("a state", |v| !v.is_null())),
            prop::option::of(any::<u64>()),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (at_ms, run, action, record, key_text, key_digest),
                (attempt, retry, outcome, failure_kind, route),
                (message, queue_entry, before, after, fencing_token, duration_ms),
            )| NewLogEntry {
                at_ms,
                run_id: uuid::Uuid::from_u128(run),
                action: action.into(),
                record: record.into(),
                key_text: key_text.into(),
                key_digest: key_digest.into(),
                attempt,
                retry,
                outcome,
                failure_kind,
                route,
                message,
                queue_entry,
                before,
                after,
                fencing_token,
                duration_ms,
            },
        )
}

/// Appends generated entries to `store` one by one; each reads back equal, and the chain verifies.
fn round_trips(store: &dyn Store, nul: bool, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config::with_cases(cases));
    runner
        .run(&entry(nul), |e| {
            rt.block_on(async {
                let logged = store.append_log(&e).await.unwrap();
                prop_assert_eq!(&logged.entry, &e);
                let read = store
                    .log(&LogQuery {
                        after_seq: Some(logged.seq - 1),
                        limit: Some(1),
                        ..LogQuery::default()
                    })
                    .await
                    .unwrap();
                prop_assert_eq!(read, vec![logged]);
                Ok(())
            })
        })
        .unwrap();
    let verified = rt.block_on(actguard::verify(store)).unwrap();
    assert!(verified >= u64::from(cases), "{verified}");
}

#[test]
fn any_entry_round_trips_through_the_memory_store() {
    round_trips(&MemoryStore::new(), true, 256);
}

#[test]
fn any_entry_round_trips_through_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("actguard.db")).unwrap();
    round_trips(&store, true, 256);
}

#[cfg(feature = "postgres")]
#[test]
fn any_entry_round_trips_through_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, _schema) = rt.block_on(pg_support::fresh_store());
    round_trips(&store, false, 128);
    drop(store);
    drop(rt);
}
