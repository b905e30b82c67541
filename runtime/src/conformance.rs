//! The conformance suite every [`Store`] must pass (feature `conformance`).
//!
//! Each case is an async function taking `&dyn Store` and panicking on a violation of the contract
//! documented on [`Store`]. Cases use only the trait, pass time as plain `now_ms` numbers (no clock),
//! and expect a fresh, empty store.
//!
//! [`conformance_suite!`](crate::conformance_suite) expands to one `#[tokio::test]` per case, so each
//! store gets named tests:
//!
//! ```
//! // tests/conformance_sqlite.rs
//! fn store() -> (actguard::SqliteStore, tempfile::TempDir) {
//!     let dir = tempfile::tempdir().unwrap();
//!     (actguard::SqliteStore::open(dir.path().join("actguard.db")).unwrap(), dir)
//! }
//!
//! actguard::conformance_suite!(store());
//! # fn main() {}
//! ```
//!
//! The expression is evaluated once per test (twice for the cases comparing two stores) and must give
//! a [`Fixture`]: a store, or a `(store, guard)` pair whose guard (a temporary directory, a container)
//! lives as long as the test. A store that outlives its handle (a file, a database schema) should
//! come in a fixture of its own type that also implements [`Fixture::reopen`], so that the cases about
//! what a store keeps across processes can open it again.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use crate::log::{LogQuery, NewLogEntry, Outcome, verify_chain};
use crate::policy::{FailureKind, Route};
use crate::store::{
    Begin, BeginRequest, Claim, Completion, Failure, KeyStatus, Millis, NewQueueEntry, QueueEntry,
    QueueKind, QueueOp, QueueQuery, QueueRef, QueueStatus, QueueUpdate, Renewal, RunState, Store,
    StoreError,
};

/// What a case runs against: a store, or a store with something that must live as long as it.
pub trait Fixture: Send + Sync + 'static {
    /// The store under test.
    fn store(&self) -> &dyn Store;

    /// The same store opened again, as another process would open it (the same file, the same
    /// schema), while [`store`](Self::store) stays open. `None` (the default): the store does not
    /// outlive its handle, as a store in memory.
    fn reopen(&self) -> Reopened<'_> {
        Box::pin(async { None })
    }
}

/// What [`Fixture::reopen`] answers.
pub type Reopened<'a> = Pin<Box<dyn Future<Output = Option<Box<dyn Store>>> + Send + 'a>>;

impl<S: Store> Fixture for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl<S: Store, G: Send + Sync + 'static> Fixture for (S, G) {
    fn store(&self) -> &dyn Store {
        &self.0
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each running the case against a fresh
/// fixture made by `$make` (a [`Fixture`](crate::conformance::Fixture) expression, evaluated inside the
/// test's runtime). Needs `tokio` (with `macros` and `rt-multi-thread`) in the calling crate.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::__conformance_cases! { ($make)
            begin_claims_fresh_key
            begin_refuses_halted_run
            begin_halted_comes_before_completed
            begin_replays_completed_key
            begin_key_reused_comes_before_completed
            begin_rejects_key_reused_with_other_fingerprint
            begin_key_reused_comes_before_in_progress
            begin_points_failed_key_at_its_queue_entry
            begin_key_reused_comes_before_failed
            begin_reports_in_progress_during_live_lease
            begin_reports_record_busy_for_other_key
            begin_claims_record_after_other_key_lease_expires
            begin_record_busy_comes_before_skipped
            begin_skips_within_dedup_window
            begin_claims_after_dedup_window
            begin_dedup_is_per_record_and_action
            begin_dedup_keeps_the_marks_of_several_actions_on_one_record
            begin_without_dedup_never_skips
            begin_takes_over_expired_claim
            begin_claims_after_complete_on_same_record
            fencing_tokens_strictly_increase_per_record
            complete_after_takeover_is_claim_lost
            fail_after_takeover_is_claim_lost
            complete_with_unknown_claim_is_claim_lost
            fail_with_queue_entry_fails_key_terminally
            fail_without_queue_entry_releases_claim
            halt_run_is_true_only_the_first_time
            run_state_reports_halt
            queue_entries_are_numbered_from_one_and_filtered
            log_chain_verifies_after_many_appends
            log_head_is_the_last_entry
            log_entries_of_complete_and_fail_join_the_chain
            log_queries_filter_and_page
            concurrent_begins_on_one_key_claim_once
            concurrent_begins_on_distinct_records_all_claim
            concurrent_begins_of_distinct_keys_on_one_record_claim_once
            concurrent_appends_chain_without_gaps
            queue_update_claims_resolves_and_logs
            queue_update_discards_a_claimed_entry
            queue_update_refuses_terminal_entries_and_unknown_ids
            queue_entries_filter_by_age
            key_state_reports_payload_status_result_and_entry
            begin_replays_failed_key_with_its_open_queue_entry
            failed_replay_updates_the_same_queue_entry
            replay_of_a_closed_or_other_entry_is_refused
            resolve_with_release_frees_the_key_for_any_payload
            resolve_without_release_keeps_the_key_failed
            a_release_may_follow_a_resolve
            complete_sent_again_by_its_claim_converges
            renew_extends_the_claim_and_the_record_lease
            renew_after_takeover_is_claim_lost
            begin_after_release_starts_a_new_call
            takeover_after_release_counts_only_the_new_call
            takeover_counts_the_dead_workers_attempt
            takeover_counts_the_attempts_each_dead_worker_logged
            takeover_of_a_silent_takeover_counts_one_more
            replay_starts_a_new_call_whatever_was_attempted_before
            takeover_after_replay_counts_from_the_replay
            takeover_by_a_replay_counts_the_dead_replays_attempt
            refail_merge_updates_every_field_of_the_entry
            refail_merge_accumulates_across_replays
            halted_replay_leaves_the_key_failed_on_its_open_entry
            deep_values_read_back_up_to_the_read_depth
        }
        $crate::__conformance_fixture_cases! { ($make)
            redaction_key_is_kept_and_differs_between_stores
        }
    };
}

/// Implementation detail of [`conformance_suite!`]: the cases that compare two fresh fixtures.
#[macro_export]
#[doc(hidden)]
macro_rules! __conformance_fixture_cases {
    (($make:expr) $($case:ident)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let first = $make;
                let second = $make;
                $crate::conformance::$case(&first, &second).await;
            }
        )*
    };
}

/// Implementation detail of [`conformance_suite!`].
#[macro_export]
#[doc(hidden)]
macro_rules! __conformance_cases {
    (($make:expr) $($case:ident)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $make;
                $crate::conformance::$case($crate::conformance::Fixture::store(&fixture)).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------------
// Building requests
// ---------------------------------------------------------------------------------------------------

/// The start of time for every case.
const T0: Millis = 1_700_000_000_000;
const LEASE: Millis = 30_000;
const DAY: Millis = 86_400_000;

fn id() -> Uuid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Uuid::from_u128(
        0xac7_0000_0000_0000_0000_0000_0000 + u128::from(NEXT.fetch_add(1, Ordering::Relaxed)),
    )
}

fn digest(key: &str) -> String {
    format!("digest:{key}")
}

/// A request for `key` on `record` by `run`, with fingerprint `fp-1`.
fn request(run: Uuid, key: &str, record: &str, now_ms: Millis) -> BeginRequest {
    BeginRequest {
        run_id: run,
        action: "disburse".into(),
        key_text: key.into(),
        key_digest: digest(key).into(),
        record: record.into(),
        fingerprint: "fp-1".into(),
        payload: serde_json::json!({ "key": key }).into(),
        claim_id: id(),
        now_ms,
        lease_ms: LEASE,
        dedup_ms: Some(DAY),
        replay_of: None,
    }
}

fn entry(r: &BeginRequest, attempt: u32, outcome: Outcome, at_ms: Millis) -> NewLogEntry {
    NewLogEntry {
        at_ms,
        run_id: r.run_id,
        action: r.action.clone(),
        record: r.record.clone(),
        key_text: r.key_text.clone(),
        key_digest: r.key_digest.clone(),
        attempt,
        retry: attempt > 1,
        outcome,
        failure_kind: None,
        route: None,
        message: None,
        queue_entry: None,
        before: None,
        after: None,
        fencing_token: None,
        duration_ms: 3,
    }
}

fn completion(r: &BeginRequest, result: serde_json::Value, now_ms: Millis) -> Completion {
    Completion {
        key_digest: r.key_digest.clone(),
        claim_id: r.claim_id,
        action: r.action.clone(),
        record: r.record.clone(),
        result: result.clone(),
        entry: NewLogEntry {
            after: Some(result),
            ..entry(r, 1, Outcome::Succeeded, now_ms)
        },
        now_ms,
        replay_of: None,
    }
}

fn queue_entry(r: &BeginRequest, kind: QueueKind, name: &str, now_ms: Millis) -> NewQueueEntry {
    NewQueueEntry {
        kind,
        name: name.to_owned(),
        run_id: r.run_id,
        action: r.action.to_string(),
        key_text: r.key_text.to_string(),
        key_digest: r.key_digest.to_string(),
        record: r.record.to_string(),
        payload: r.payload.value(),
        failure_kind: FailureKind::Validation,
        message: "amount is negative".to_owned(),
        attempts: 1,
        first_failure_ms: now_ms,
        last_failure_ms: now_ms,
    }
}

fn failure(r: &BeginRequest, queue: Option<(QueueKind, &str)>, now_ms: Millis) -> Failure {
    let (outcome, route, kind) = match queue {
        Some((QueueKind::DeadLetter, _)) => (
            Outcome::DeadLettered,
            Route::DeadLetter,
            FailureKind::Transient,
        ),
        Some((QueueKind::Expert, _)) => (Outcome::Routed, Route::Escalate, FailureKind::Conflict),
        Some((QueueKind::Owner | QueueKind::Approval, _)) => {
            (Outcome::Routed, Route::RouteOwner, FailureKind::Validation)
        }
        Some((QueueKind::Security, _)) | None => {
            (Outcome::Halted, Route::Halt, FailureKind::Security)
        }
    };
    Failure {
        key_digest: r.key_digest.clone(),
        claim_id: r.claim_id,
        queue_entry: queue.map(|(k, name)| NewQueueEntry {
            failure_kind: kind,
            ..queue_entry(r, k, name, now_ms)
        }),
        entry: NewLogEntry {
            failure_kind: Some(kind),
            route: Some(route),
            message: Some("refused".to_owned()),
            ..entry(r, 1, outcome, now_ms)
        },
        now_ms,
        replay_of: None,
    }
}

async fn begin(store: &dyn Store, r: &BeginRequest) -> Begin {
    store.begin(r).await.expect("begin reaches the store")
}

async fn claim(store: &dyn Store, r: &BeginRequest) -> Claim {
    match begin(store, r).await {
        Begin::Claimed(c) => c,
        other => panic!("expected `{}` to be claimed, got {other:?}", r.key_text),
    }
}

// ---------------------------------------------------------------------------------------------------
// begin, branch by branch, in the documented order
// ---------------------------------------------------------------------------------------------------

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

/// `halt_run` answers `true` once, then `false`, so the alert goes out once.
pub async fn halt_run_is_true_only_the_first_time(store: &dyn Store) {
    let run = id();
    assert!(store.halt_run(run, "forbidden", T0).await.unwrap());
    assert!(
        !store
            .halt_run(run, "forbidden again", T0 + 1)
            .await
            .unwrap()
    );
    assert!(!store.halt_run(run, "and again", T0 + 2).await.unwrap());
    assert!(store.halt_run(id(), "another run", T0 + 3).await.unwrap());
}

/// A run is active until halted; the first halt's reason and time are kept.
pub async fn run_state_reports_halt(store: &dyn Store) {
    let run = id();
    assert_eq!(store.run_state(run).await.unwrap(), RunState::Active);
    store.halt_run(run, "token leaked", T0 + 5).await.unwrap();
    store.halt_run(run, "second reason", T0 + 9).await.unwrap();
    assert_eq!(
        store.run_state(run).await.unwrap(),
        RunState::Halted {
            reason: "token leaked".to_owned(),
            at_ms: T0 + 5
        }
    );
    assert_eq!(store.run_state(id()).await.unwrap(), RunState::Active);
}

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

// ---------------------------------------------------------------------------------------------------
// The action log
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// operators: queue updates, key state, replay
// ---------------------------------------------------------------------------------------------------

/// A key failed into the owner queue `loan-ops`; returns its request and queue entry id.
async fn failed_key(store: &dyn Store, key: &str, now_ms: Millis) -> (BeginRequest, u64) {
    let r = request(id(), key, &format!("rec-{key}"), now_ms);
    claim(store, &r).await;
    let logged = store
        .fail(failure(
            &r,
            Some((QueueKind::Owner, "loan-ops")),
            now_ms + 1,
        ))
        .await
        .unwrap();
    (
        r,
        logged
            .entry
            .queue_entry
            .expect("fail names its queue entry"),
    )
}

fn operator(r: &BeginRequest, at_ms: Millis, message: &str) -> NewLogEntry {
    NewLogEntry {
        attempt: 0,
        retry: false,
        message: Some(message.to_owned()),
        ..entry(r, 0, Outcome::Operator, at_ms)
    }
}

fn op_update(r: &BeginRequest, id: u64, op: QueueOp, now_ms: Millis) -> QueueUpdate {
    QueueUpdate {
        id,
        entry: operator(r, now_ms, &format!("{op:?}")),
        op,
        now_ms,
    }
}

fn claim_op(by: &str) -> QueueOp {
    QueueOp::Claim { by: by.to_owned() }
}

fn resolve_op(by: &str, note: &str) -> QueueOp {
    QueueOp::Resolve {
        by: by.to_owned(),
        note: note.to_owned(),
        release: false,
    }
}

fn discard_op(by: &str, note: &str) -> QueueOp {
    QueueOp::Discard {
        by: by.to_owned(),
        note: note.to_owned(),
    }
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

// ---------------------------------------------------------------------------------------------------
// Counting attempts: the retry budget belongs to one call of one key
// ---------------------------------------------------------------------------------------------------

/// `key` (on record `rec-{key}`) claimed by a run that made `attempts` attempts, each but the last
/// logged as retrying, the last dead-lettered; returns its request and queue entry id.
async fn dead_lettered_key(
    store: &dyn Store,
    key: &str,
    attempts: u32,
    now_ms: Millis,
) -> (BeginRequest, u64) {
    let r = request(id(), key, &format!("rec-{key}"), now_ms);
    claim(store, &r).await;
    for n in 1..attempts {
        store
            .append_log(&entry(&r, n, Outcome::Retrying, now_ms + Millis::from(n)))
            .await
            .unwrap();
    }
    let mut f = failure(
        &r,
        Some((QueueKind::DeadLetter, "dead-letter")),
        now_ms + Millis::from(attempts),
    );
    f.entry.attempt = attempts;
    f.entry.retry = attempts > 1;
    if let Some(q) = f.queue_entry.as_mut() {
        q.attempts = attempts;
        q.first_failure_ms = now_ms + 1;
    }
    let logged = store.fail(f).await.unwrap();
    (
        r,
        logged
            .entry
            .queue_entry
            .expect("fail names its queue entry"),
    )
}

/// A new run's request replaying queue entry `q` of `key` (on record `rec-{key}`).
fn replay_request(key: &str, q: u64, now_ms: Millis) -> BeginRequest {
    BeginRequest {
        replay_of: Some(q),
        ..request(id(), key, &format!("rec-{key}"), now_ms)
    }
}

/// The release of `r`'s claim by a halt (no queue entry), its log entry at `attempt` (0: not an
/// attempt, as a call refused before its retry logs it).
fn release(r: &BeginRequest, attempt: u32, now_ms: Millis) -> Failure {
    let mut f = failure(r, None, now_ms);
    f.entry.attempt = attempt;
    f.entry.retry = attempt > 1;
    f
}

/// A key released by a halt (`fail` without a queue entry) and claimed again, by a new run, is a new
/// call: no takeover and no previous attempts, whatever attempts were logged under the key before. And
/// so again after the new call is released in turn.
pub async fn begin_after_release_starts_a_new_call(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    for n in 1..=2 {
        store
            .append_log(&entry(&r, n, Outcome::Retrying, T0 + Millis::from(n)))
            .await
            .unwrap();
    }
    // A security failure of attempt 3 halts the run and releases the key.
    store.fail(release(&r, 3, T0 + 3)).await.unwrap();
    let second = request(id(), "k1", "rec-1", T0 + 4);
    assert_eq!(
        claim(store, &second).await,
        Claim {
            fencing_token: 2,
            takeover: false,
            previous_attempts: 0
        },
        "a released key claimed again starts a new call"
    );
    // The second call fails its first attempt and is refused before its retry (the run was halted).
    store
        .append_log(&entry(&second, 1, Outcome::Retrying, T0 + 5))
        .await
        .unwrap();
    store.fail(release(&second, 0, T0 + 6)).await.unwrap();
    let third = request(id(), "k1", "rec-1", T0 + 7);
    assert_eq!(
        claim(store, &third).await,
        Claim {
            fencing_token: 3,
            takeover: false,
            previous_attempts: 0
        },
        "released twice, claimed again: still a new call"
    );
}

/// The call that claims a released key owns the budget from then on: when it dies and its claim is
/// taken over, only its own attempt counts, not those logged before the release.
pub async fn takeover_after_release_counts_only_the_new_call(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    for n in 1..=2 {
        store
            .append_log(&entry(&r, n, Outcome::Retrying, T0 + Millis::from(n)))
            .await
            .unwrap();
    }
    store.fail(release(&r, 3, T0 + 3)).await.unwrap();
    // A new run claims the key (attempt 1), logs nothing and dies.
    let second = request(id(), "k1", "rec-1", T0 + 10);
    claim(store, &second).await;
    let taker = request(id(), "k1", "rec-1", T0 + 10 + LEASE);
    assert_eq!(
        claim(store, &taker).await,
        Claim {
            fencing_token: 3,
            takeover: true,
            previous_attempts: 1
        },
        "only the dead call's own attempt counts"
    );
}

/// A worker that claimed a key was running its first attempt when it died, even if it logged
/// nothing: the takeover counts that attempt.
pub async fn takeover_counts_the_dead_workers_attempt(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    let taker = request(id(), "k1", "rec-1", T0 + LEASE);
    assert_eq!(
        claim(store, &taker).await,
        Claim {
            fencing_token: 2,
            takeover: true,
            previous_attempts: 1
        }
    );
}

/// Every dead worker's attempts count: a claim counts as starting attempt `previous_attempts + 1`, and
/// an entry logged with attempt `n` raises the count to at least `n`. Attempts 1 and 2 logged → 2; the
/// taker (attempt 3) logs attempt 3 and dies → 3; the next taker (attempt 4) logs nothing and dies → 4.
pub async fn takeover_counts_the_attempts_each_dead_worker_logged(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    for n in 1..=2 {
        store
            .append_log(&entry(&r, n, Outcome::Retrying, T0 + Millis::from(n)))
            .await
            .unwrap();
    }
    let mut now = T0 + LEASE;
    let second = request(id(), "k1", "rec-1", now);
    assert_eq!(
        claim(store, &second).await,
        Claim {
            fencing_token: 2,
            takeover: true,
            previous_attempts: 2
        }
    );
    store
        .append_log(&entry(&second, 3, Outcome::Retrying, now + 1))
        .await
        .unwrap();
    now += LEASE;
    let third = request(id(), "k1", "rec-1", now);
    assert_eq!(
        claim(store, &third).await,
        Claim {
            fencing_token: 3,
            takeover: true,
            previous_attempts: 3
        },
        "the taker's logged attempt 3 counts"
    );
    now += LEASE;
    let fourth = request(id(), "k1", "rec-1", now);
    assert_eq!(
        claim(store, &fourth).await,
        Claim {
            fencing_token: 4,
            takeover: true,
            previous_attempts: 4
        },
        "a taker that logged nothing was running attempt 4"
    );
}

/// Takeovers of takeovers whose workers all died without logging: each one counts one attempt more.
pub async fn takeover_of_a_silent_takeover_counts_one_more(store: &dyn Store) {
    let r = request(id(), "k1", "rec-1", T0);
    claim(store, &r).await;
    for n in 1..=3u32 {
        let taker = request(id(), "k1", "rec-1", T0 + Millis::from(n) * LEASE);
        assert_eq!(
            claim(store, &taker).await,
            Claim {
                fencing_token: u64::from(n) + 1,
                takeover: true,
                previous_attempts: n
            },
            "takeover {n}"
        );
    }
}

/// A replay of a failed key's open queue entry is a new call: no takeover and no previous attempts,
/// however many attempts the failed call made; and again when that replay failed too.
pub async fn replay_starts_a_new_call_whatever_was_attempted_before(store: &dyn Store) {
    let (_, q) = dead_lettered_key(store, "k1", 3, T0).await;
    let replay = replay_request("k1", q, T0 + 10);
    assert_eq!(
        claim(store, &replay).await,
        Claim {
            fencing_token: 2,
            takeover: false,
            previous_attempts: 0
        }
    );
    for n in 1..=2 {
        store
            .append_log(&entry(
                &replay,
                n,
                Outcome::Retrying,
                T0 + 10 + Millis::from(n),
            ))
            .await
            .unwrap();
    }
    let mut refail = failure(
        &replay,
        Some((QueueKind::DeadLetter, "dead-letter")),
        T0 + 13,
    );
    refail.replay_of = Some(q);
    refail.entry.attempt = 3;
    if let Some(n) = refail.queue_entry.as_mut() {
        n.attempts = 3;
    }
    store.fail(refail).await.unwrap();
    let again = replay_request("k1", q, T0 + 20);
    assert_eq!(
        claim(store, &again).await,
        Claim {
            fencing_token: 3,
            takeover: false,
            previous_attempts: 0
        },
        "a second replay is a new call too"
    );
}

/// A replay's claim taken over counts the replay's attempts only, not those of the call that failed
/// before it: the key failed after 3 attempts, the replay logged its attempt 1 and died → 1.
pub async fn takeover_after_replay_counts_from_the_replay(store: &dyn Store) {
    let (_, q) = dead_lettered_key(store, "k1", 3, T0).await;
    let replay = replay_request("k1", q, T0 + 10);
    claim(store, &replay).await;
    store
        .append_log(&entry(&replay, 1, Outcome::Retrying, T0 + 11))
        .await
        .unwrap();
    let taker = request(id(), "k1", "rec-k1", T0 + 10 + LEASE);
    assert_eq!(
        claim(store, &taker).await,
        Claim {
            fencing_token: 3,
            takeover: true,
            previous_attempts: 1
        }
    );
}

/// A replay of the same entry that finds the previous replay's claim expired takes it over, and counts
/// the dead replay's (unlogged) attempt, not the attempts of the call that failed before it.
pub async fn takeover_by_a_replay_counts_the_dead_replays_attempt(store: &dyn Store) {
    let (_, q) = dead_lettered_key(store, "k1", 3, T0).await;
    let replay = replay_request("k1", q, T0 + 10);
    claim(store, &replay).await;
    let taker = replay_request("k1", q, T0 + 10 + LEASE);
    assert_eq!(
        claim(store, &taker).await,
        Claim {
            fencing_token: 3,
            takeover: true,
            previous_attempts: 1
        }
    );
}

/// A replay that fails again with a queue entry merges into the entry it replays: attempts added; the
/// new failure's time, message, failure kind, queue kind and name; open again and not closed; its
/// first failure and creation time kept. No new entry; the key stays failed, pointing at it.
pub async fn refail_merge_updates_every_field_of_the_entry(store: &dyn Store) {
    let (_, q) = failed_key(store, "k1", T0).await;
    let before = store
        .queue_entry(q)
        .await
        .unwrap()
        .expect("the entry exists");
    let replay = replay_request("k1", q, T0 + 10);
    claim(store, &replay).await;
    let mut refail = failure(
        &replay,
        Some((QueueKind::DeadLetter, "dead-letter")),
        T0 + 20,
    );
    refail.replay_of = Some(q);
    if let Some(n) = refail.queue_entry.as_mut() {
        n.attempts = 4;
        n.message = "ledger unavailable".to_owned();
        n.first_failure_ms = T0 + 11;
    }
    let logged = store.fail(refail).await.unwrap();
    assert_eq!(logged.entry.queue_entry, Some(q), "the log names the entry");
    let after = store
        .queue_entry(q)
        .await
        .unwrap()
        .expect("the entry exists");
    let expected = QueueEntry {
        kind: QueueKind::DeadLetter,
        name: "dead-letter".to_owned(),
        failure_kind: FailureKind::Transient,
        message: "ledger unavailable".to_owned(),
        attempts: before.attempts + 4,
        last_failure_ms: T0 + 20,
        status: QueueStatus::Open,
        closed_ms: None,
        // Which run the entry names after a replay is not part of this rule.
        run_id: after.run_id,
        ..before.clone()
    };
    assert_eq!(after, expected);
    assert_eq!((after.first_failure_ms, after.created_ms), (T0 + 1, T0 + 1));
    assert_eq!(
        store.queue_entries(&QueueQuery::default()).await.unwrap(),
        vec![after],
        "no new entry"
    );
    let k = store.key_state(&digest("k1")).await.unwrap().unwrap();
    assert_eq!((k.status, k.queue_entry), (KeyStatus::Failed, Some(q)));
    assert_eq!(
        begin(store, &request(id(), "k1", "rec-k1", T0 + 30)).await,
        Begin::Failed {
            entry: QueueRef {
                id: q,
                kind: QueueKind::DeadLetter,
                name: "dead-letter".to_owned()
            }
        }
    );
}

/// Replayed and failed again twice: the same entry accumulates the attempts of every call and takes
/// the latest failure each time.
pub async fn refail_merge_accumulates_across_replays(store: &dyn Store) {
    let (_, q) = failed_key(store, "k1", T0).await;
    let spells = [
        (
            T0 + 10,
            QueueKind::DeadLetter,
            "dead-letter",
            2,
            "ledger unavailable",
        ),
        (T0 + 40, QueueKind::Expert, "credit-risk", 4, "loan frozen"),
    ];
    let mut attempts = 1;
    for (at, kind, name, made, message) in spells {
        let replay = replay_request("k1", q, at);
        assert_eq!(claim(store, &replay).await.previous_attempts, 0);
        let mut refail = failure(&replay, Some((kind, name)), at + 5);
        refail.replay_of = Some(q);
        if let Some(n) = refail.queue_entry.as_mut() {
            n.attempts = made;
            n.message = message.to_owned();
        }
        let logged = store.fail(refail).await.unwrap();
        assert_eq!(logged.entry.queue_entry, Some(q));
        attempts += made;
        let e = store.queue_entry(q).await.unwrap().unwrap();
        assert_eq!(
            (
                e.attempts,
                e.kind,
                e.name.as_str(),
                e.message.as_str(),
                e.last_failure_ms,
                e.first_failure_ms,
                e.created_ms,
                e.status
            ),
            (
                attempts,
                kind,
                name,
                message,
                at + 5,
                T0 + 1,
                T0 + 1,
                QueueStatus::Open
            ),
            "after the replay at {at}"
        );
        assert!(matches!(
            begin(store, &request(id(), "k1", "rec-k1", at + 6)).await,
            Begin::Failed { entry } if entry.id == q && entry.kind == kind && entry.name == name
        ));
    }
    assert_eq!(attempts, 7);
    assert_eq!(
        store
            .queue_entries(&QueueQuery::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A replay that halts (`fail` without a queue entry) leaves the key failed, pointing at the same
/// entry, still open and as it was; a later plain call answers `Failed`, and the entry can be
/// replayed again, as a new call.
pub async fn halted_replay_leaves_the_key_failed_on_its_open_entry(store: &dyn Store) {
    let (_, q) = failed_key(store, "k1", T0).await;
    let before = store
        .queue_entry(q)
        .await
        .unwrap()
        .expect("the entry exists");
    let replay = replay_request("k1", q, T0 + 10);
    claim(store, &replay).await;
    let mut halted = release(&replay, 1, T0 + 11);
    halted.replay_of = Some(q);
    store.fail(halted).await.unwrap();
    let k = store.key_state(&digest("k1")).await.unwrap().unwrap();
    assert_eq!((k.status, k.queue_entry), (KeyStatus::Failed, Some(q)));
    assert_eq!(
        store.queue_entry(q).await.unwrap(),
        Some(before),
        "the entry stays open, unchanged"
    );
    assert!(matches!(
        begin(store, &request(id(), "k1", "rec-k1", T0 + 12)).await,
        Begin::Failed { entry } if entry.id == q
    ));
    assert_eq!(
        claim(store, &replay_request("k1", q, T0 + 13)).await,
        Claim {
            fencing_token: 3,
            takeover: false,
            previous_attempts: 0
        }
    );
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

// ---------------------------------------------------------------------------------------------------
// The redaction secret
// ---------------------------------------------------------------------------------------------------

/// The redaction secret ([`Store::redaction_key`]) is the store's: the same every time it is asked,
/// the same once the store is opened again (as by another process), and not another store's (two
/// fresh stores give one value different digests). A store that keeps none answers `None` always.
pub async fn redaction_key_is_kept_and_differs_between_stores(
    first: &dyn Fixture,
    second: &dyn Fixture,
) {
    let (Some(a), Some(b)) = (
        first.store().redaction_key(),
        second.store().redaction_key(),
    ) else {
        assert!(
            first.store().redaction_key().is_none() && second.store().redaction_key().is_none(),
            "a store keeps a redaction secret or never does"
        );
        return;
    };
    let again = first
        .store()
        .redaction_key()
        .expect("a store keeps its redaction secret");
    assert_eq!(
        again.id(),
        a.id(),
        "the secret is the same when asked again"
    );
    assert_ne!(a.id(), b.id(), "two stores have distinct secrets");
    let value = crate::Redacted::new("1234");
    assert_ne!(
        value.digest_with(&a),
        value.digest_with(&b),
        "one value has different digests in two stores"
    );
    if let Some(reopened) = first.reopen().await {
        let kept = reopened
            .redaction_key()
            .expect("a reopened store keeps its redaction secret");
        assert_eq!(kept.id(), a.id(), "the secret survives reopening the store");
        assert_eq!(value.digest_with(&kept), value.digest_with(&a));
        // The reopened handle is the same store: what one writes, the other reads.
        let r = request(id(), "reopened", "rec-reopened", T0);
        claim(first.store(), &r).await;
        assert_eq!(
            reopened
                .current_fencing_token("rec-reopened")
                .await
                .expect("the reopened store answers"),
            Some(1)
        );
    }
}

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
