//! Deep values: what is stored at the deepest nesting reads back as it was.

use super::{T0, begin, claim, completion, entry, failure, id, request};
use crate::log::{LogQuery, NewLogEntry, Outcome, verify_chain};
use crate::store::{Begin, BeginRequest, QueueKind, Store};

/// `[[…[null]…]]`, `depth` levels deep.
fn nested(depth: usize) -> serde_json::Value {
    let mut v = serde_json::Value::Null;
    for _ in 0..depth {
        v = serde_json::Value::Array(vec![v]);
    }
    v
}

/// What the guarded call stores at its deepest ([`MAX_DEPTH`](crate::MAX_DEPTH): a payload
/// parameter, a result, a captured state) reads back as it was: the payload, the result, the queue
/// entry, the log. So do log entries an earlier release wrote nested deeper than `serde_json` reads
/// by default, up to [`MAX_READ_DEPTH`](crate::MAX_READ_DEPTH) levels counting the entry's own
/// object; the chain verifies over them.
pub async fn deep_values_read_back_up_to_the_read_depth(store: &dyn Store) {
    let deepest = nested(crate::MAX_DEPTH);
    let payload = serde_json::json!({ "doc": deepest.clone() });
    let r = BeginRequest {
        payload: payload.clone().into(),
        ..request(id(), "k-deep", "rec-deep", T0)
    };
    claim(store, &r).await;
    let mut done = completion(&r, deepest.clone(), T0 + 1);
    done.entry.before = Some(deepest.clone());
    store.complete(done).await.unwrap();
    let k = store.key_state(&r.key_digest).await.unwrap().unwrap();
    assert_eq!(
        (k.payload, k.result),
        (payload.clone(), Some(deepest.clone()))
    );
    match begin(
        store,
        &BeginRequest {
            claim_id: id(),
            ..r.clone()
        },
    )
    .await
    {
        Begin::Completed { result, .. } => assert_eq!(result, deepest),
        other => panic!("expected the deep result replayed, got {other:?}"),
    }

    let f = BeginRequest {
        payload: payload.clone().into(),
        ..request(id(), "k-deep-failed", "rec-deep-failed", T0)
    };
    claim(store, &f).await;
    let mut failed = failure(&f, Some((QueueKind::DeadLetter, "dead-letter")), T0 + 1);
    failed.entry.before = Some(deepest.clone());
    let queue = store.fail(failed).await.unwrap().entry.queue_entry.unwrap();
    let q = store.queue_entry(queue).await.unwrap().unwrap();
    assert_eq!(q.payload, payload);

    for depth in [127, crate::MAX_READ_DEPTH - 1] {
        let old = NewLogEntry {
            before: Some(nested(depth)),
            ..entry(
                &request(id(), "k-old", "rec-old", T0),
                1,
                Outcome::Succeeded,
                T0 + 2,
            )
        };
        store.append_log(&old).await.unwrap();
    }
    let log = store.log(&LogQuery::default()).await.unwrap();
    let befores: Vec<_> = log.iter().map(|e| e.entry.before.clone()).collect();
    assert_eq!(
        befores,
        [
            Some(deepest.clone()),
            Some(deepest.clone()),
            Some(nested(127)),
            Some(nested(crate::MAX_READ_DEPTH - 1))
        ]
    );
    assert_eq!(log[0].entry.after, Some(deepest));
    assert_eq!(verify_chain(&log).unwrap(), 4);
}
