//! Counting attempts: the retry budget belongs to one call of one key, across releases, takeovers
//! and replays.

use super::{LEASE, T0, begin, claim, digest, entry, failed_key, failure, id, request};
use crate::log::Outcome;
use crate::policy::FailureKind;
use crate::store::{
    Begin, BeginRequest, Claim, Failure, KeyStatus, Millis, QueueEntry, QueueKind, QueueQuery,
    QueueRef, QueueStatus, Store,
};

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
