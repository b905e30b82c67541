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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use crate::log::{NewLogEntry, Outcome};
use crate::policy::{FailureKind, Route};
use crate::store::{
    Begin, BeginRequest, Claim, Completion, Failure, Millis, NewQueueEntry, QueueKind, QueueOp,
    QueueUpdate, Store,
};

mod attempts;
mod begin;
mod claims;
mod concurrency;
mod depth;
mod log;
mod queue;
mod redaction;
mod runs;

pub use self::log::*;
pub use attempts::*;
pub use begin::*;
pub use claims::*;
pub use concurrency::*;
pub use depth::*;
pub use queue::*;
pub use redaction::*;
pub use runs::*;

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
// Operators: a failed key and the updates of its queue entry
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
