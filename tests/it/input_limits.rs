//! Inputs that could break the store or the process: payloads, results and captured states nested
//! deeper than `MAX_DEPTH`, larger than the size limits, or holding `NaN` and infinities. A payload is
//! refused before acting (nothing runs, the key is not claimed); a result or a state comes after the
//! body ran, so its key is dead-lettered; and whatever is written reads back, as deep entries written
//! by an earlier release do. Each test runs on `MemoryStore` and on a `SqliteStore` file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actguard::log::NewLogEntry;
use actguard::store::QueueQuery;
use actguard::{
    ActionError, Agent, Classify, LimitError, MAX_DEPTH, MAX_PAYLOAD_BYTES, MAX_READ_DEPTH,
    MAX_RESULT_BYTES, MemoryStore, Outcome, QueueKind, Ran, Run, SqliteStore, Store, StoreError,
    agent_action,
};
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

/// `null` inside `.0` nested arrays, serialized lazily: any depth can be asked for without building
/// (or dropping) a structure that deep.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Deep(usize);

impl Serialize for Deep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 0 {
            return s.serialize_unit();
        }
        let mut seq = s.serialize_seq(Some(1))?;
        seq.serialize_element(&Deep(self.0 - 1))?;
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Deep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DeepVisitor;
        impl<'de> Visitor<'de> for DeepVisitor {
            type Value = Deep;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("null inside nested arrays")
            }
            fn visit_unit<E>(self) -> Result<Deep, E> {
                Ok(Deep(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Deep, A::Error> {
                let inner: Deep = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::custom("an empty array"))?;
                Ok(Deep(inner.0 + 1))
            }
        }
        d.deserialize_any(DeepVisitor)
    }
}

/// `[[…[null]…]]` as a JSON value, `depth` levels deep.
fn nested(depth: usize) -> Value {
    let mut v = Value::Null;
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

#[derive(Debug, Classify, thiserror::Error)]
enum Fault {
    #[error("the downstream is unavailable")]
    #[classify(transient)]
    Unavailable,
}

/// Files a document under `id`; fails when asked to.
#[agent_action(key = "file:{id}", record = "{id}", retries = 0)]
async fn file(
    run: &Run,
    #[dep] calls: &AtomicU32,
    id: u32,
    doc: &Deep,
    fail: bool,
) -> Result<u32, Fault> {
    let _ = (run, doc);
    calls.fetch_add(1, Ordering::SeqCst);
    if fail {
        return Err(Fault::Unavailable);
    }
    Ok(id)
}

/// Prices an order: the payload holds a float.
#[agent_action(key = "price:{order}", record = "{order}")]
async fn price(run: &Run, #[dep] calls: &AtomicU32, order: u32, amount: f64) -> Result<(), Fault> {
    let _ = (run, order, amount);
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    sku: String,
    price: f64,
}

/// Files lines: the float is nested in the payload.
#[agent_action(key = "lines:{order}", record = "{order}")]
async fn file_lines(
    run: &Run,
    #[dep] calls: &AtomicU32,
    order: u32,
    lines: &[Line],
) -> Result<(), Fault> {
    let _ = (run, order, lines);
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Stores a blob: the payload's size is the blob's.
#[agent_action(key = "blob:{id}", record = "{id}")]
async fn store_blob(run: &Run, #[dep] calls: &AtomicU32, id: u32, blob: &str) -> Result<(), Fault> {
    let _ = (run, id, blob);
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Answers a result `depth` levels deep.
#[agent_action(key = "answer:{id}", record = "{id}")]
async fn answer(run: &Run, #[dep] calls: &AtomicU32, id: u32, depth: usize) -> Result<Deep, Fault> {
    let _ = run;
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(Deep(depth))
}

/// Answers a result of `len` bytes of text.
#[agent_action(key = "report:{id}", record = "{id}")]
async fn report(run: &Run, #[dep] calls: &AtomicU32, id: u32, len: usize) -> Result<String, Fault> {
    let _ = run;
    calls.fetch_add(1, Ordering::SeqCst);
    Ok("x".repeat(len))
}

/// Answers a float: `NaN`, infinite, or 0.1.
#[agent_action(key = "measure:{id}", record = "{id}")]
async fn measure(run: &Run, #[dep] calls: &AtomicU32, id: u32, nan: bool) -> Result<f64, Fault> {
    let _ = (run, id);
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(if nan { f64::NAN } else { 0.1 })
}

/// Captures states `before` and `after` levels deep, then succeeds or fails.
#[agent_action(key = "relabel:{id}", record = "{id}", retries = 0)]
async fn relabel(run: &Run, id: u32, before: usize, after: usize, fail: bool) -> Result<(), Fault> {
    let _ = id;
    run.attempt().before(&Deep(before));
    run.attempt().after(&Deep(after));
    if fail {
        return Err(Fault::Unavailable);
    }
    Ok(())
}

/// A store's name, an agent on it, the store itself, and the directory a file store lives in.
type Setup = (&'static str, Agent, Arc<dyn Store>, Option<TempDir>);

/// An agent on each store.
fn agents() -> Vec<Setup> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("actguard.db")).unwrap());
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    [("memory", memory, None), ("sqlite", sqlite, Some(dir))]
        .into_iter()
        .map(|(name, store, dir)| {
            let agent = Agent::builder()
                .shared_store(store.clone())
                .build()
                .unwrap();
            (name, agent, store, dir)
        })
        .collect()
}

async fn log(store: &dyn Store) -> Vec<actguard::LogEntry> {
    store.log(&Default::default()).await.expect("the log reads")
}

fn refused<T: std::fmt::Debug>(name: &str, result: Result<T, ActionError<Fault>>) -> LimitError {
    match result {
        Err(error @ ActionError::PayloadRefused { .. }) => {
            assert_eq!(error.ran(), Ran::No, "{name}");
            assert!(error.to_string().contains("did not run"), "{name}: {error}");
            let ActionError::PayloadRefused { error, .. } = error else {
                unreachable!()
            };
            error
        }
        other => panic!("{name}: not refused: {other:?}"),
    }
}

/// A payload nested too deep is refused before acting, however deep (10,000 levels used to
/// exhaust the stack; 127 made a failing call panic with its key left claimed): the body does not
/// run, nothing is logged, and the key is free for a later call with a payload within the limits.
#[tokio::test(start_paused = true)]
async fn a_payload_nested_too_deep_is_refused_before_acting_and_leaves_the_key_free() {
    for (name, agent, store, _dir) in agents() {
        let calls = AtomicU32::new(0);
        let run = agent.start_run();
        for (id, depth) in [(1, MAX_DEPTH + 1), (2, 127), (3, 10_000)] {
            for fail in [true, false] {
                let error = refused(name, file(&run, &calls, id, &Deep(depth), fail).await);
                let LimitError::TooDeep { what, path, max } = &error else {
                    panic!("{name}: {error:?}");
                };
                assert_eq!(*max, MAX_DEPTH, "{name}");
                assert_eq!(what, "the payload parameter `doc`", "{name}");
                assert!(path.starts_with("doc[0][0]"), "{name}: {path}");
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{name}: nothing ran");
        assert!(
            log(store.as_ref()).await.is_empty(),
            "{name}: nothing logged"
        );
        // The same keys act for a payload within the limits (the deepest allowed), at once: no claim
        // was left to wait for.
        for id in [1, 2, 3] {
            assert_eq!(
                file(&run, &calls, id, &Deep(MAX_DEPTH), false)
                    .await
                    .unwrap(),
                id,
                "{name}"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{name}");
        // A failing call with the deepest payload allowed keeps it in its queue entry, readable.
        let error = file(&run, &calls, 4, &Deep(MAX_DEPTH), true)
            .await
            .unwrap_err();
        let queue = error.queue_entry().expect("dead-lettered").id;
        let entry = store.queue_entry(queue).await.unwrap().unwrap();
        assert_eq!(
            entry.payload,
            json!({"doc": nested(MAX_DEPTH), "fail": true, "id": 4}),
            "{name}"
        );
        assert_eq!(agent.verify().await.unwrap(), 4, "{name}");
    }
}

/// `NaN` and the infinities are refused before acting, wherever they are in the payload: stored as
/// `null`, two different payloads would fingerprint the same.
#[tokio::test(start_paused = true)]
async fn non_finite_floats_in_a_payload_are_refused_before_acting() {
    for (name, agent, store, _dir) in agents() {
        let calls = AtomicU32::new(0);
        let run = agent.start_run();
        for (amount, value) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            let error = refused(name, price(&run, &calls, 1, amount).await);
            assert_eq!(
                error,
                LimitError::NonFinite {
                    what: "the payload parameter `amount`".into(),
                    path: "amount".into(),
                    value
                },
                "{name}"
            );
            assert!(error.to_string().contains("JSON has no such number"));
        }
        let bad = [
            Line {
                sku: "A".into(),
                price: 1.5,
            },
            Line {
                sku: "B".into(),
                price: f64::NAN,
            },
        ];
        let error = refused(name, file_lines(&run, &calls, 7, &bad).await);
        assert!(
            matches!(&error, LimitError::NonFinite { path, .. } if path == "lines[1].price"),
            "{name}: {error:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{name}");
        assert!(log(store.as_ref()).await.is_empty(), "{name}");
        // The same key acts with a finite amount.
        price(&run, &calls, 1, 2.5).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{name}");
    }
}

/// A payload larger than `MAX_PAYLOAD_BYTES` as canonical JSON is refused; one exactly that large
/// acts.
#[tokio::test(start_paused = true)]
async fn a_payload_over_the_size_limit_is_refused() {
    for (name, agent, store, _dir) in agents() {
        let calls = AtomicU32::new(0);
        let run = agent.start_run();
        // `{"blob":"…","id":1}`: 18 bytes around the blob.
        let fits = "x".repeat(MAX_PAYLOAD_BYTES - 18);
        let over = "x".repeat(MAX_PAYLOAD_BYTES - 17);
        let error = refused(name, store_blob(&run, &calls, 1, &over).await);
        assert_eq!(
            error,
            LimitError::TooLarge {
                what: "the payload".into(),
                kind: "payload",
                max: MAX_PAYLOAD_BYTES
            },
            "{name}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{name}");
        store_blob(&run, &calls, 1, &fits).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{name}");
        let digest = log(store.as_ref()).await[0].entry.key_digest.clone();
        let key = store
            .key_state(&digest)
            .await
            .unwrap()
            .expect("the key is stored");
        let stored = serde_json::to_string(&key.payload).unwrap();
        assert_eq!(stored.len(), MAX_PAYLOAD_BYTES, "{name}");
    }
}

/// A result nested 10,000 levels deep: the call ran, so its key is dead-lettered (never run again),
/// and the store, its log and its queues still read and verify.
#[tokio::test(start_paused = true)]
async fn a_result_nested_too_deep_dead_letters_the_key_and_the_log_still_verifies() {
    for (name, agent, store, _dir) in agents() {
        let calls = AtomicU32::new(0);
        let run = agent.start_run();
        for (id, depth) in [(1, 10_000), (2, 127), (3, MAX_DEPTH + 1)] {
            let error = answer(&run, &calls, id, depth).await.unwrap_err();
            let ActionError::ResultNotStored { message, .. } = &error else {
                panic!("{name}: {error:?}");
            };
            assert_eq!(error.ran(), Ran::Recorded, "{name}");
            assert!(
                message.contains("the result nests arrays and objects more than 64 levels"),
                "{name}: {message}"
            );
            assert!(
                matches!(
                    answer(&agent.start_run(), &calls, id, depth).await,
                    Err(ActionError::PreviouslyFailed { .. })
                ),
                "{name}: the key never runs again"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{name}");
        let entries = log(store.as_ref()).await;
        assert_eq!(entries.len(), 3, "{name}");
        assert!(
            entries
                .iter()
                .all(|e| e.entry.outcome == Outcome::DeadLettered && e.entry.after.is_none()),
            "{name}"
        );
        let queued = store.queue_entries(&QueueQuery::default()).await.unwrap();
        assert_eq!(queued.len(), 3, "{name}");
        assert!(queued.iter().all(|q| q.kind == QueueKind::DeadLetter));
        assert_eq!(agent.verify().await.unwrap(), 3, "{name}");
    }
}

/// The deepest result allowed, and one at the size limit, complete, replay and read back from the
/// log as they were; one byte more is not stored.
#[tokio::test(start_paused = true)]
async fn results_at_the_limits_round_trip_through_the_log() {
    for (name, agent, store, _dir) in agents() {
        let calls = AtomicU32::new(0);
        let run = agent.start_run();
        assert_eq!(
            answer(&run, &calls, 1, MAX_DEPTH).await.unwrap(),
            Deep(MAX_DEPTH),
            "{name}"
        );
        // Replayed from the store, not run again.
        assert_eq!(
            answer(&agent.start_run(), &calls, 1, MAX_DEPTH)
                .await
                .unwrap(),
            Deep(MAX_DEPTH),
            "{name}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{name}");
        let entries = log(store.as_ref()).await;
        assert_eq!(
            entries.iter().map(|e| e.entry.outcome).collect::<Vec<_>>(),
            [Outcome::Succeeded, Outcome::Replayed],
            "{name}"
        );
        for e in &entries {
            assert_eq!(e.entry.after, Some(nested(MAX_DEPTH)), "{name}");
        }
        // `"…"`: two quotes around the text.
        let text = report(&run, &calls, 2, MAX_RESULT_BYTES - 2).await.unwrap();
        assert_eq!(text.len(), MAX_RESULT_BYTES - 2);
        let error = report(&run, &calls, 3, MAX_RESULT_BYTES - 1)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ActionError::ResultNotStored { message, .. } if message.contains("larger than 4194304 bytes")),
            "{name}: {error:?}"
        );
        assert_eq!(agent.verify().await.unwrap(), 4, "{name}");
    }
}

/// A `NaN` result is not stored as `null` (it could never replay as a float): the key is
/// dead-lettered. A finite one replays.
#[tokio::test(start_paused = true)]
async fn a_non_finite_result_is_not_stored() {
    for (name, agent, _store, _dir) in agents() {
        let calls = AtomicU32::new(0);
        let run = agent.start_run();
        let error = measure(&run, &calls, 1, true).await.unwrap_err();
        assert!(
            matches!(&error, ActionError::ResultNotStored { message, .. } if message.contains("the result holds NaN")),
            "{name}: {error:?}"
        );
        assert_eq!(measure(&run, &calls, 2, false).await.unwrap(), 0.1);
        assert_eq!(measure(&run, &calls, 2, false).await.unwrap(), 0.1);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{name}");
    }
}

/// Captured states are stored like results: within the limits they are logged; beyond them a
/// success is dead-lettered (with the state that could be kept), and a failure's entry says why its
/// state is missing.
#[tokio::test(start_paused = true)]
async fn captured_states_are_held_to_the_limits_of_results() {
    for (name, agent, store, _dir) in agents() {
        let run = agent.start_run();
        relabel(&run, 1, MAX_DEPTH, MAX_DEPTH, false).await.unwrap();
        let error = relabel(&run, 2, 10_000, 1, false).await.unwrap_err();
        let ActionError::ResultNotStored { message, .. } = &error else {
            panic!("{name}: {error:?}");
        };
        assert!(
            message.contains("the state captured before the write nests"),
            "{name}: {message}"
        );
        let error = relabel(&run, 3, 1, MAX_DEPTH, true).await.unwrap_err();
        assert!(
            matches!(error, ActionError::DeadLettered { .. }),
            "{name}: {error:?}"
        );
        let error = relabel(&run, 4, MAX_DEPTH + 1, 1, true).await.unwrap_err();
        assert!(
            matches!(error, ActionError::DeadLettered { .. }),
            "{name}: {error:?}"
        );
        let entries = log(store.as_ref()).await;
        let states: Vec<_> = entries
            .iter()
            .map(|e| (e.entry.before.clone(), e.entry.after.clone()))
            .collect();
        assert_eq!(
            states,
            [
                (Some(nested(MAX_DEPTH)), Some(nested(MAX_DEPTH))),
                // The state that could be kept is.
                (None, Some(nested(1))),
                (Some(nested(1)), None),
                (None, None),
            ],
            "{name}"
        );
        let note = entries[3].entry.message.as_deref().unwrap();
        assert!(
            note.starts_with("the downstream is unavailable (its state before the write is not logged: the state captured before the write nests"),
            "{name}: {note}"
        );
        assert_eq!(agent.verify().await.unwrap(), 4, "{name}");
    }
}

/// An entry as an earlier release could write it, with no limit: a `before` state `depth` levels
/// deep, appended straight to the store.
fn old_entry(depth: usize) -> NewLogEntry {
    NewLogEntry {
        at_ms: 1_700_000_000_000,
        run_id: Uuid::from_u128(1),
        action: "relabel".into(),
        record: "S-1".into(),
        key_text: format!("relabel:{depth}").into(),
        key_digest: format!("digest:{depth}").into(),
        attempt: 1,
        retry: false,
        outcome: Outcome::Succeeded,
        failure_kind: None,
        route: None,
        message: None,
        queue_entry: None,
        before: Some(nested(depth)),
        after: Some(json!("done")),
        fencing_token: Some(1),
        duration_ms: 1,
    }
}

/// Entries deeper than `serde_json` reads by default (an earlier release wrote them: a result 127
/// levels deep made the whole log unreadable, and `verify` called it tampered) read and verify up to
/// `MAX_READ_DEPTH`; a deeper one is reported as too deep to read, not as damage.
#[tokio::test]
async fn deep_entries_of_an_earlier_release_read_back_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("actguard.db");
    let store = SqliteStore::open(&path).unwrap();
    // The entry's own object is one level more.
    for depth in [126, 127, 200, MAX_READ_DEPTH - 1] {
        store.append_log(&old_entry(depth)).await.unwrap();
    }
    store.close().unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let entries = log(&store).await;
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[3].entry.before, Some(nested(MAX_READ_DEPTH - 1)));
    assert_eq!(actguard::verify(&store).await.unwrap(), 4);

    store.append_log(&old_entry(MAX_READ_DEPTH)).await.unwrap();
    match store.log(&Default::default()).await {
        Err(StoreError::TooDeep(message)) => {
            assert!(message.contains("log entry"), "{message}");
            assert!(message.contains("is not damaged"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match actguard::verify(&store).await {
        Err(actguard::VerifyError::Store(StoreError::TooDeep(_))) => {}
        other => panic!("{other:?}"),
    }
}

/// A value `depth` levels deep whose innermost level holds `leaf`, each level an array or an object
/// as `shape` says (bit `i` for level `i`).
fn shaped(depth: usize, shape: u64, leaf: Value) -> Value {
    let mut v = leaf;
    for level in 0..depth {
        v = if shape >> (level % 64) & 1 == 1 {
            json!({ "k": v })
        } else {
            Value::Array(vec![v])
        };
    }
    v
}

use proptest::strategy::Strategy as _;

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(256))]

    /// Any depth, any mix of arrays and objects, any leaf: the payload builder answers (never a panic),
    /// refuses exactly the values deeper than `MAX_DEPTH` or holding a non-finite float, and a value it
    /// takes reads back equal.
    #[test]
    fn a_payload_is_refused_exactly_beyond_the_limits(
        depth in 0usize..400,
        shape in proptest::num::u64::ANY,
        leaf in proptest::prop_oneof![
            proptest::strategy::Just(json!(null)),
            proptest::num::i64::ANY.prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::from),
        ],
        non_finite in proptest::prop_oneof![
            proptest::strategy::Just(None),
            proptest::strategy::Just(Some(f64::NAN)),
            proptest::strategy::Just(Some(f64::INFINITY)),
            proptest::strategy::Just(Some(f64::NEG_INFINITY)),
        ],
    ) {
        let value = shaped(depth, shape, leaf.clone());
        let mut builder = actguard::__private::PayloadBuilder::new();
        let answer = match non_finite {
            // A float is not a `Value` (it cannot hold one that is not finite): a pair carries it.
            Some(f) => builder.field("p", &(value.clone(), f)).map(|b| b.finish()),
            None => builder.field("p", &value).map(|b| b.finish()),
        };
        // The pair adds one level.
        let levels = depth + usize::from(non_finite.is_some());
        let refused = levels > actguard::MAX_DEPTH || non_finite.is_some();
        proptest::prop_assert_eq!(answer.is_err(), refused, "depth {}: {:?}", depth, answer.as_ref().err().map(ToString::to_string));
        if let Ok(payload) = answer {
            proptest::prop_assert_eq!(payload.json.value()["p"].clone(), value);
        }
    }
}
