//! Concurrency: callers racing on one key, one record, one log.

use std::collections::HashSet;

use super::{T0, completion, entry, id, request};
use crate::log::{LogQuery, Outcome, verify_chain};
use crate::store::{Begin, BeginRequest, Claim, Completion, Millis, Store};

const TASKS: usize = 32;

/// Runs `futures` at the same time, each on its own thread (released together by a barrier), and
/// returns their outputs in order. Cases borrow the store, so they cannot `tokio::spawn`; scoped
/// threads give the same contention. Needs a multi-thread runtime.
fn in_parallel<T: Send, F: std::future::Future<Output = T> + Send>(futures: Vec<F>) -> Vec<T> {
    let handle = tokio::runtime::Handle::current();
    let barrier = std::sync::Barrier::new(futures.len());
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let threads: Vec<_> = futures
                .into_iter()
                .map(|f| {
                    let (handle, barrier) = (&handle, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        handle.block_on(f)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a concurrent caller panicked"))
                .collect()
        })
    })
}

/// 32 callers begin the same key at the same time: exactly one claims it, the others see it in
/// progress.
pub async fn concurrent_begins_on_one_key_claim_once(store: &dyn Store) {
    let requests: Vec<BeginRequest> = (0..TASKS)
        .map(|_| request(id(), "k1", "rec-1", T0))
        .collect();
    let answers = in_parallel(requests.iter().map(|r| store.begin(r)).collect());
    let claimed = answers
        .iter()
        .filter(|a| matches!(a, Ok(Begin::Claimed(_))))
        .count();
    assert_eq!(claimed, 1, "answers: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Ok(Begin::Claimed(_)) | Ok(Begin::InProgress { .. }))),
        "answers: {answers:?}"
    );
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
}

/// 32 callers on 32 records all claim, each with token 1.
pub async fn concurrent_begins_on_distinct_records_all_claim(store: &dyn Store) {
    let run = id();
    let requests: Vec<BeginRequest> = (0..TASKS)
        .map(|i| request(run, &format!("k{i}"), &format!("rec-{i}"), T0))
        .collect();
    let answers = in_parallel(requests.iter().map(|r| store.begin(r)).collect());
    for a in &answers {
        assert_eq!(
            a.as_ref().unwrap(),
            &Begin::Claimed(Claim {
                fencing_token: 1,
                takeover: false,
                previous_attempts: 0
            })
        );
    }
    let completions: Vec<Completion> = requests
        .iter()
        .map(|r| completion(r, serde_json::json!(r.key_text), T0 + 1))
        .collect();
    let done = in_parallel(completions.into_iter().map(|c| store.complete(c)).collect());
    let seqs: HashSet<u64> = done.into_iter().map(|d| d.unwrap().seq).collect();
    assert_eq!(seqs.len(), TASKS);
}

/// 32 callers begin 32 different keys on one record at the same time: exactly one claims the record
/// (token 1), the others find it busy, held by the winner's key.
pub async fn concurrent_begins_of_distinct_keys_on_one_record_claim_once(store: &dyn Store) {
    let run = id();
    let requests: Vec<BeginRequest> = (0..TASKS)
        .map(|i| request(run, &format!("k{i}"), "rec-1", T0))
        .collect();
    let answers = in_parallel(requests.iter().map(|r| store.begin(r)).collect());
    let winners: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Ok(Begin::Claimed(_))))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "answers: {answers:?}");
    let winner = &requests[winners[0]].key_text;
    for (i, a) in answers.iter().enumerate() {
        match a {
            Ok(Begin::Claimed(c)) => assert_eq!(c.fencing_token, 1),
            Ok(Begin::RecordBusy { holder_key, .. }) => {
                assert_eq!(holder_key, winner, "caller {i} names the holder")
            }
            other => panic!("caller {i}: {other:?}"),
        }
    }
    assert_eq!(store.current_fencing_token("rec-1").await.unwrap(), Some(1));
}

/// 32 callers appending 8 entries each, at the same time: one chain, no gaps, no repeats.
pub async fn concurrent_appends_chain_without_gaps(store: &dyn Store) {
    let run = id();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| async move {
            let r = request(run, &format!("k{t}"), "rec-1", T0);
            let mut seqs = Vec::new();
            for i in 0..8 {
                let e = entry(&r, i + 1, Outcome::Retrying, T0 + Millis::from(i));
                seqs.push(store.append_log(&e).await.unwrap().seq);
            }
            seqs
        })
        .collect();
    let per_task = in_parallel(tasks);
    for seqs in &per_task {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one caller's entries stay in order"
        );
    }
    let mut seqs: Vec<u64> = per_task.into_iter().flatten().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=(TASKS as u64 * 8)).collect::<Vec<_>>());
    let log = store.log(&LogQuery::default()).await.unwrap();
    assert_eq!(verify_chain(&log), Ok(TASKS as u64 * 8));
}
